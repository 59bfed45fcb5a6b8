//! [`TenantPool`]: an r2d2 pool of diesel `PgConnection`s that refuses an unsafe role at start
//! and discards any connection that carries an org context when a scoped transaction opens
//! on it (the check travels in the opening message; see `OrgScoped::open`).
//!
//! Invariant: nothing here hands out a raw connection. Connections leave the pool only inside
//! an [`OrgScoped`] handle, whose transaction has the org set.

use std::sync::Arc;
use std::time::Duration;

use tenant_lint::Registry;

use crate::context::ContextKey;
use crate::manager::TenantConnectionManager;
use crate::org_context::{IntoOrgContext, OrgContext};
use crate::plan::ContextPlan;
use crate::scoped::{OrgScoped, Pooled};
use crate::startup::{
    check_role_and_schema, reads_org_setting, trusts_org_setting, verifies_tokens,
};
use crate::telemetry::Counters;
use crate::verify::{Checks, tables_of};
use crate::{Isolation, OrgId, TenantError};

/// Builds a [`TenantPool`]; see [`TenantPool::builder`].
pub struct TenantPoolBuilder {
    url: String,
    registry: &'static Registry,
    max_size: u32,
    min_idle: Option<u32>,
    connection_timeout: Duration,
    signing: Option<ContextKey>,
    statement_cache: bool,
    set_local: bool,
    set_local_on_citus: bool,
    transaction_pooler: bool,
    hide_org: bool,
}

/// Without the URL, which may carry the application role's password.
impl std::fmt::Debug for TenantPoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantPoolBuilder")
            .field("url", &"[redacted]")
            .field("max_size", &self.max_size)
            .field("min_idle", &self.min_idle)
            .field("connection_timeout", &self.connection_timeout)
            .field("signing", &self.signing)
            .field("statement_cache", &self.statement_cache)
            .field("set_local", &self.set_local)
            .field("set_local_on_citus", &self.set_local_on_citus)
            .field("transaction_pooler", &self.transaction_pooler)
            .field("hide_org", &self.hide_org)
            .finish_non_exhaustive()
    }
}

impl TenantPoolBuilder {
    /// Keeps the org id out of the statement text other sessions of the role read in
    /// `pg_stat_activity`: the opening message places it past the part PostgreSQL records
    /// (`track_activity_query_size`), as the signed context always does with its token. In
    /// the plain mode ([`OrgContext::TrustEveryStatement`]) an org id seen there tells injected SQL which org to hop to
    /// (docs/threat-model.md #5); it costs about a kilobyte more per opening message. (The signed
    /// context hides its token anyway, and an org id alone is worth nothing there.)
    pub fn hide_org_in_activity(mut self) -> Self {
        self.hide_org = true;
        self
    }

    /// The pool reaches PostgreSQL through a pooler in transaction mode (PgBouncer
    /// `pool_mode = transaction`), where consecutive transactions of one client connection may
    /// run on different server connections. Turns off diesel's prepared-statement cache (see
    /// [`prepared_statement_cache`](Self::prepared_statement_cache)), and signed tokens name no
    /// backend (the client cannot know which server process runs its transaction); they stay
    /// out of the text other sessions can read, as always.
    pub fn transaction_pooler(mut self) -> Self {
        self.transaction_pooler = true;
        self.statement_cache = false;
        self
    }

    /// Sets the org with `SET LOCAL tenant.org_id = '<org>'` instead of `set_config`: the form
    /// Citus propagates to its workers. Same guarantees otherwise (transaction-local, one
    /// message with BEGIN, a leftover org refused); only with
    /// [`OrgContext::TrustEveryStatement`] (the signed context's verifier cannot run on Citus
    /// workers).
    pub fn set_local_context(mut self) -> Self {
        self.set_local = true;
        self
    }

    /// [`set_local_context`](Self::set_local_context) if the database turns out to be a Citus
    /// coordinator (the start-up check reads it, no extra query), `set_config` otherwise: for
    /// a tool that serves both, such as tenant-ops' export and restore.
    pub fn set_local_context_on_citus(mut self) -> Self {
        self.set_local_on_citus = true;
        self
    }

    /// Whether connections keep diesel's prepared-statement cache (default on). Turn it off
    /// behind PgBouncer in transaction mode (1.20 and older, or without
    /// `max_prepared_statements`): a named prepared statement belongs to one server connection,
    /// and the next transaction of the same client may run on another. Every statement then
    /// goes out unnamed (parse, bind and execute in one round trip, as before).
    pub fn prepared_statement_cache(mut self, on: bool) -> Self {
        self.statement_cache = on;
        self
    }

    /// The most connections the pool opens (default 10).
    pub fn max_size(mut self, max_size: u32) -> Self {
        self.max_size = max_size;
        self
    }

    /// Idle connections kept open (default: none kept beyond use).
    pub fn min_idle(mut self, min_idle: Option<u32>) -> Self {
        self.min_idle = min_idle;
        self
    }

    /// How long a checkout waits for a connection (default 10 s).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Connects once, checks the role and the schema, then builds the pool.
    ///
    /// # Errors
    /// [`TenantError::UnsafeConfig`] naming the first problem found (superuser, BYPASSRLS,
    /// membership in such a role, ownership of a tenant table, TRUNCATE/REFERENCES/TRIGGER on
    /// one, a missing tenant table, RLS not forced, an org context set by default, a server
    /// recording more statement text than the signed context can hide);
    /// [`TenantError::Connect`] when the database cannot be reached;
    /// [`TenantError::ContextKey`] with a [`ContextKey`] when the database has no verifier or
    /// does not accept this service's tokens, or with `set_local_context` too; with
    /// [`OrgContext::TrustEveryStatement`] when the database's policies verify tokens.
    pub fn build(self) -> Result<TenantPool, TenantError> {
        let started = self.start()?;
        let pool = r2d2::Pool::builder()
            .max_size(started.max_size)
            .min_idle(started.min_idle)
            .connection_timeout(started.connection_timeout)
            // No query at checkout: the message that opens every scoped transaction refuses a
            // connection left with a session-level org (see `OrgScoped::open`), which saves a
            // round trip per transaction.
            .test_on_check_out(false)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(started.manager)
            .map_err(|e| TenantError::Pool(e.to_string()))?;
        Ok(TenantPool {
            pool,
            tables: started.tables,
            counters: Arc::default(),
            registry: started.registry,
            connection_timeout: started.connection_timeout,
            plan: started.plan,
            citus: started.citus,
        })
    }

    /// The start-up check of [`build`](Self::build) (and of the async pool's): connects
    /// once, checks the role and the schema, and decides how transactions will set the org.
    pub(crate) fn start(self) -> Result<Started, TenantError> {
        refuse_signed_set_local(self.set_local, self.signing.as_ref())?;
        let mut manager = TenantConnectionManager {
            url: self.url,
            statement_cache: self.statement_cache,
            read_backend: self.signing.is_some() || self.hide_org,
            role_settings: None,
        };
        let mut conn = r2d2::ManageConnection::connect(&manager)
            .map_err(|e| TenantError::Connect(e.to_string()))?;
        let database = check_role_and_schema(&mut conn.conn, self.registry)?;
        let set_local = self.set_local || (self.set_local_on_citus && database.citus);
        refuse_signed_set_local(set_local, self.signing.as_ref())?;
        if set_local && self.hide_org {
            // SET LOCAL carries the org as a literal at the start of the message: asked to
            // hide it, the pool would show it anyway.
            return Err(TenantError::ConflictingOptions(
                "hide_org_in_activity() cannot hide the org of set_local_context() (SET LOCAL \
                 names it at the start of the message other sessions read in \
                 pg_stat_activity): drop one of them"
                    .into(),
            ));
        }
        if database.citus && !set_local {
            // Without it the workers never learn the org: every scoped statement would find
            // no row and every write would be refused, with nothing saying why.
            return Err(TenantError::ContextKey(
                "this database is a Citus coordinator, whose workers learn the org only from \
                 SET LOCAL: build the pool with OrgContext::TrustEveryStatement and \
                 .set_local_context() (the signed context's verifier does not run on Citus \
                 workers; docs/scale-out.md)"
                    .into(),
            ));
        }
        if let Some(backend) = conn.backend {
            backend.check_recorded_text()?;
        }
        let signed_org_setting = match self.signing {
            Some(_) => {
                // A key for a database whose policies still believe the plain setting (the
                // plain mode, or the signed migration rolled back): the service would believe
                // no statement can switch its org, and one can. Refused.
                if let Some(table) = trusts_org_setting(&mut conn.conn, self.registry)? {
                    return Err(TenantError::ContextKey(format!(
                        "the policies of tenant table `{table}` read the plain setting \
                         tenant.org_id, which any statement can set: the database trusts every \
                         statement there (generated in the plain mode, or its signed migration \
                         rolled back). Apply the signed migration (`cargo xtask gen` with \
                         ContextMode::Signed), or, if the database is meant to trust every \
                         statement, build the pool with OrgContext::TrustEveryStatement"
                    )));
                }
                // A column default that still reads the setting gets it next to the token.
                reads_org_setting(&mut conn.conn, self.registry)?
            }
            None => {
                // Without a key, a table whose policy verifies tokens would show no rows and
                // refuse every write with a misleading message: refused here instead.
                if let Some(table) = verifies_tokens(&mut conn.conn, self.registry)? {
                    return Err(TenantError::ContextKey(format!(
                        "the policies of tenant table `{table}` verify a signed org token \
                         (tenant_context.current_org), and this pool was built with \
                         OrgContext::TrustEveryStatement, so it sends no token: pass the service's \
                         ContextKey to TenantPool::builder instead, the key the database holds \
                         (`cargo xtask context-key rotate` adds one and prints it)"
                    )));
                }
                false
            }
        };
        manager.role_settings = Some(crate::startup::role_settings(&mut conn.conn)?);
        let plan = ContextPlan {
            signing: self.signing.map(Arc::new),
            signed_org_setting,
            set_local,
            transaction_pooler: self.transaction_pooler,
            hide_org: self.hide_org,
        };
        let tables = Arc::new(tables_of(self.registry));
        if let Some(key) = plan.signing.as_deref() {
            // One token end to end, opened as every transaction of either pool will open
            // (`ContextPlan::token_verdict`).
            let org = OrgId::new_random();
            let opening = plan.opening(conn.backend)?;
            let mut scoped = OrgScoped::open(
                &mut conn.conn,
                org,
                Arc::clone(&tables),
                opening,
                Isolation::ReadCommitted,
                None,
            )?;
            let seen = scoped.verified_org();
            if seen.is_ok() {
                scoped.rollback()?;
            }
            plan.token_verdict(key, org, seen)?;
        }
        drop(conn);
        Ok(Started {
            manager,
            plan,
            tables,
            registry: self.registry,
            citus: database.citus,
            max_size: self.max_size,
            min_idle: self.min_idle,
            connection_timeout: self.connection_timeout,
        })
    }
}

/// What [`TenantPoolBuilder::start`] found and the options decided: everything a pool needs
/// but its connections.
pub(crate) struct Started {
    /// The connection manager, with the role's settings read at start-up.
    pub(crate) manager: TenantConnectionManager,
    pub(crate) plan: ContextPlan,
    /// The registry's checks, for every statement.
    pub(crate) tables: Arc<Checks>,
    pub(crate) registry: &'static Registry,
    /// The database is a Citus coordinator.
    pub(crate) citus: bool,
    pub(crate) max_size: u32,
    pub(crate) min_idle: Option<u32>,
    pub(crate) connection_timeout: Duration,
}

/// `set_local_context()` (asked for, or chosen for a Citus database) with a key: refused.
fn refuse_signed_set_local(
    set_local: bool,
    signing: Option<&ContextKey>,
) -> Result<(), TenantError> {
    if set_local && signing.is_some() {
        return Err(TenantError::ContextKey(
            "set_local_context() needs OrgContext::TrustEveryStatement: it is the Citus \
             form of the plain org setting, and the signed context's verifier cannot run on \
             Citus workers (docs/scale-out.md); drop set_local_context() to keep the signed \
             context"
                .into(),
        ));
    }
    Ok(())
}

/// A pool of PostgreSQL connections for the application role, handing out only
/// [`OrgScoped`] handles.
///
/// ```no_run
/// # diesel::table! { invoices (id) { id -> Uuid, org_id -> Uuid, total_cents -> BigInt } }
/// # tenant_lint::registry! { pub static REGISTRY; tenant invoices => org_id; }
/// use tenant_core::{OrgId, TenantPool, TenantError};
///
/// # let key = tenant_core::context::ContextKey::require_env("TENANT_CONTEXT_KEY")?;
/// let pool = TenantPool::builder("postgres://tenant_app@localhost/app", &REGISTRY, key).build()?;
/// let org: OrgId = "0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e".parse()?;
/// let totals: Vec<i64> = pool.with_org(org, |s| {
///     s.load(s.query(invoices::table).select(invoices::total_cents))
/// })?;
/// # Ok::<(), TenantError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TenantPool {
    pool: r2d2::Pool<TenantConnectionManager>,
    tables: Arc<Checks>,
    /// What `metrics` reads (`telemetry.rs`).
    counters: Arc<Counters>,
    registry: &'static Registry,
    connection_timeout: Duration,
    /// How transactions set the org (decided at start-up).
    plan: ContextPlan,
    /// The database is a Citus coordinator (read at start-up).
    citus: bool,
}

impl TenantPool {
    /// A builder for a pool connecting to `database_url` (a libpq URL or key=value string) as
    /// the application role, checked against `registry`, telling the database each
    /// transaction's org as `context` says: the service's [`ContextKey`] (the signed context,
    /// what the generated migrations verify by default; the database must hold the same key),
    /// or [`OrgContext::TrustEveryStatement`] for a database generated in the plain mode,
    /// which trusts every statement the application sends.
    ///
    /// ```no_run
    /// # diesel::table! { invoices (id) { id -> Uuid, org_id -> Uuid } }
    /// # tenant_lint::registry! { pub static REGISTRY; tenant invoices => org_id; }
    /// use tenant_core::{TenantPool, context::ContextKey};
    ///
    /// let key = ContextKey::require_env("TENANT_CONTEXT_KEY")?;
    /// let pool = TenantPool::builder("postgres://tenant_app@localhost/app", &REGISTRY, key)
    ///     .max_size(16)
    ///     .build()?;
    /// # Ok::<(), tenant_core::TenantError>(())
    /// ```
    pub fn builder(
        database_url: impl Into<String>,
        registry: &'static Registry,
        context: impl IntoOrgContext,
    ) -> TenantPoolBuilder {
        TenantPoolBuilder {
            url: database_url.into(),
            registry,
            max_size: 10,
            min_idle: Some(0),
            connection_timeout: Duration::from_secs(10),
            signing: match context.into_org_context() {
                OrgContext::Signed(key) => Some(key),
                OrgContext::TrustEveryStatement => None,
            },
            statement_cache: true,
            set_local: false,
            set_local_on_citus: false,
            transaction_pooler: false,
            hide_org: false,
        }
    }

    /// The registry the pool was checked against.
    pub fn registry(&self) -> &'static Registry {
        self.registry
    }

    /// Whether the database is a Citus coordinator (read by the start-up check).
    pub fn citus(&self) -> bool {
        self.citus
    }

    /// Checks out a connection and opens a transaction scoped to `org`.
    ///
    /// The handle must be [`commit`](OrgScoped::commit)ted; dropping it rolls back.
    pub fn begin(&self, org: OrgId) -> Result<OrgScoped<Pooled>, TenantError> {
        self.begin_isolated(org, Isolation::ReadCommitted)
    }

    /// [`begin`](Self::begin) at isolation level `isolation` (set in the same message).
    pub fn begin_isolated(
        &self,
        org: OrgId,
        isolation: Isolation,
    ) -> Result<OrgScoped<Pooled>, TenantError> {
        let conn = self.checkout(org, "")?;
        let open = |conn: r2d2::PooledConnection<TenantConnectionManager>| {
            // The manager reads the backend exactly when the plan needs it.
            let opening = self.plan.opening(conn.backend)?;
            OrgScoped::open(
                Pooled(conn),
                org,
                Arc::clone(&self.tables),
                opening,
                isolation,
                Some(Arc::clone(&self.counters)),
            )
        };
        // A connection that could not open a scoped transaction because the server closed it
        // (a restart: every idle connection of the pool is dead at once) or it carries a
        // leftover session-level org was marked broken and is dropped on return: try another,
        // up to the pool's size plus one, so that the last try is a new connection. Nothing
        // ran on the discarded ones.
        let mut outcome = open(conn);
        for _ in 0..self.pool.max_size() {
            match outcome {
                Err(
                    discarded @ (TenantError::ConnectionLost | TenantError::SessionContextLeft),
                ) => {
                    self.counters.discarded();
                    tracing::warn!(
                        org = %org,
                        class = discarded.class(),
                        "tenant.connection_discarded"
                    );
                    let conn = self.checkout(
                        org,
                        &format!(", after discarding a connection ({discarded})"),
                    )?;
                    outcome = open(conn);
                }
                done => return done,
            }
        }
        outcome
    }

    /// A connection from the pool for a transaction of `org`; a timeout is counted and logged
    /// (`tenant.pool_exhausted`), `after` saying what came before it.
    fn checkout(
        &self,
        org: OrgId,
        after: &str,
    ) -> Result<r2d2::PooledConnection<TenantConnectionManager>, TenantError> {
        self.pool.get().map_err(|e| {
            let e = TenantError::Pool(format!(
                "no connection within {:?} (pool of at most {}){after}: {e}",
                self.connection_timeout,
                self.pool.max_size()
            ));
            self.counters.error(&e);
            tracing::warn!(org = %org, class = e.class(), "tenant.pool_exhausted");
            e
        })
    }

    /// Runs `f` in a transaction scoped to `org`: commits when `f` returns `Ok`, rolls back
    /// on `Err` or panic.
    pub fn with_org<T, E, F>(&self, org: OrgId, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut OrgScoped<Pooled>) -> Result<T, E>,
        E: From<TenantError>,
    {
        self.with_org_isolated(org, Isolation::ReadCommitted, f)
    }

    /// [`with_org`](Self::with_org) at isolation level `isolation`.
    pub fn with_org_isolated<T, E, F>(&self, org: OrgId, isolation: Isolation, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut OrgScoped<Pooled>) -> Result<T, E>,
        E: From<TenantError>,
    {
        let mut scoped = self.begin_isolated(org, isolation)?;
        let id = scoped.id();
        let value = f(&mut scoped);
        // `f` swapped the handle it was given with another: committing what is here now would
        // commit the other's transaction as this one's. It is rolled back (dropped), and the
        // one this call opened is wherever `f` put it, uncommitted.
        if scoped.id() != id {
            let e = TenantError::HandleSwapped;
            self.counters.error(&e);
            tracing::warn!(org = %org, class = e.class(), "tenant.refused");
            return Err(e.into());
        }
        let value = value?;
        scoped.commit()?;
        Ok(value)
    }

    /// [`with_org`](Self::with_org), retried when PostgreSQL rolled the transaction back for
    /// a serialization failure or a deadlock ([`TenantError::is_retryable`]), at most
    /// `attempts` times in all. `f` runs again from the start in a new transaction, so it must
    /// do nothing outside the database that it cannot repeat. Any other error is returned at
    /// once.
    ///
    /// # Errors
    /// The last error when every attempt failed, or the first that is not retryable.
    pub fn with_org_retry<T, F>(&self, org: OrgId, attempts: u32, f: F) -> Result<T, TenantError>
    where
        F: FnMut(&mut OrgScoped<Pooled>) -> Result<T, TenantError>,
    {
        self.with_org_retry_isolated(org, Isolation::ReadCommitted, attempts, f)
    }

    /// [`with_org_retry`](Self::with_org_retry) at isolation level `isolation`: under
    /// `Serializable` (and `RepeatableRead`), PostgreSQL rolls back one of two transactions
    /// whose effects could not have happened one after the other (40001), and this runs it
    /// again.
    ///
    /// # Errors
    /// As [`with_org_retry`](Self::with_org_retry).
    pub fn with_org_retry_isolated<T, F>(
        &self,
        org: OrgId,
        isolation: Isolation,
        attempts: u32,
        mut f: F,
    ) -> Result<T, TenantError>
    where
        F: FnMut(&mut OrgScoped<Pooled>) -> Result<T, TenantError>,
    {
        let mut attempt = 1;
        loop {
            match self.with_org_isolated(org, isolation, &mut f) {
                Err(e) if e.is_retryable() && attempt < attempts.max(1) => {
                    self.counters.retry();
                    tracing::info!(org = %org, attempt, class = e.class(), "tenant.retry");
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// The pool's counters since it was built: transactions begun, committed and rolled
    /// back, statements sent, retries, discarded connections, errors by class
    /// ([`Metrics`](crate::telemetry::Metrics); no SQL, bound value or row data in any).
    pub fn metrics(&self) -> crate::telemetry::Metrics {
        self.counters.snapshot()
    }

    /// Pool statistics: `(connections, idle)`.
    pub fn state(&self) -> (u32, u32) {
        let s = self.pool.state();
        (s.connections, s.idle_connections)
    }
}
