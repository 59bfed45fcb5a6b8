//! [`AsyncTenantPool`] (the `async` feature): a deadpool pool of diesel-async
//! `AsyncPgConnection`s that hands out only [`AsyncOrgScoped`] handles.
//!
//! Invariant: the async pool is the sync pool with another transport. It is built by the same
//! builder ([`TenantPoolBuilder::build_async`]), whose start-up check (role, schema, context
//! mode, the signed-context round trip) runs unchanged on one blocking connection; every
//! transaction opens with the message the same [`ContextPlan`] picks; a new connection is
//! refused when the role's settings changed since start-up, as in the r2d2 manager. A
//! connection whose transaction did not end by a commit or rollback the handle saw succeed
//! (a dropped handle, a cancelled future, a failed opening) is closed, never reused.

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{Object, Pool, PoolError};
use tenant_lint::Registry;

use crate::async_manager::AsyncConnectionManager;
use crate::async_scoped::AsyncOrgScoped;
use crate::plan::ContextPlan;
use crate::pool::TenantPoolBuilder;
use crate::telemetry::Counters;
use crate::verify::Checks;
use crate::{Isolation, OrgId, TenantError};

/// A pool of async PostgreSQL connections for the application role, handing out only
/// [`AsyncOrgScoped`] handles: [`TenantPool`](crate::TenantPool) for tokio services.
///
/// ```no_run
/// # diesel::table! { invoices (id) { id -> Uuid, org_id -> Uuid, total_cents -> BigInt } }
/// # tenant_lint::registry! { pub static REGISTRY; tenant invoices => org_id; }
/// use tenant_core::{AsyncTenantPool, OrgId, TenantError, TenantPool};
///
/// # async fn run() -> Result<(), TenantError> {
/// let key = tenant_core::ContextKey::require_env("TENANT_CONTEXT_KEY")?;
/// let pool: AsyncTenantPool = TenantPool::builder("postgres://tenant_app@localhost/app", &REGISTRY, key)
///     .build_async()
///     .await?;
/// let org: OrgId = "0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e".parse()?;
/// let totals: Vec<i64> = pool
///     .with_org(org, async |s| {
///         s.load(s.query(invoices::table).select(invoices::total_cents)).await
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AsyncTenantPool {
    pub(crate) pool: Pool<AsyncConnectionManager>,
    pub(crate) tables: Arc<Checks>,
    pub(crate) counters: Arc<Counters>,
    registry: &'static Registry,
    connection_timeout: Duration,
    pub(crate) plan: Arc<ContextPlan>,
    citus: bool,
}

impl TenantPoolBuilder {
    /// Builds an [`AsyncTenantPool`] (the `async` feature) with this builder's options: the
    /// same start-up check as [`build`](Self::build), run on a blocking thread of the tokio
    /// runtime, then a deadpool pool of diesel-async connections. `min_idle` does not apply
    /// (deadpool opens connections on demand).
    ///
    /// # Errors
    /// As [`build`](Self::build); [`TenantError::Pool`] when the pool cannot be built.
    pub async fn build_async(self) -> Result<AsyncTenantPool, TenantError> {
        let started = tokio::task::spawn_blocking(move || self.start())
            .await
            .map_err(|e| TenantError::Pool(format!("the start-up check did not finish: {e}")))??;
        let manager = AsyncConnectionManager {
            read_backend: started.manager.read_backend,
            statement_cache: started.manager.statement_cache,
            role_settings: started.manager.role_settings.clone().unwrap_or_default(),
            url: started.manager.url,
        };
        let max_size = usize::try_from(started.max_size).unwrap_or(usize::MAX);
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .wait_timeout(Some(started.connection_timeout))
            .create_timeout(Some(started.connection_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| TenantError::Pool(e.to_string()))?;
        Ok(AsyncTenantPool {
            pool,
            tables: started.tables,
            counters: Arc::default(),
            registry: started.registry,
            connection_timeout: started.connection_timeout,
            plan: Arc::new(started.plan),
            citus: started.citus,
        })
    }
}

impl AsyncTenantPool {
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
    /// The handle must be [`commit`](AsyncOrgScoped::commit)ted; dropping it rolls back (the
    /// connection is closed, which ends its transaction on the server at once).
    ///
    /// # Errors
    /// As [`TenantPool::begin`](crate::TenantPool::begin).
    pub async fn begin(&self, org: OrgId) -> Result<AsyncOrgScoped, TenantError> {
        self.begin_isolated(org, Isolation::ReadCommitted).await
    }

    /// [`begin`](Self::begin) at isolation level `isolation` (set in the same message).
    ///
    /// # Errors
    /// As [`begin`](Self::begin).
    pub async fn begin_isolated(
        &self,
        org: OrgId,
        isolation: Isolation,
    ) -> Result<AsyncOrgScoped, TenantError> {
        // A connection the server closed (a restart) or that carries a leftover session-level
        // org was closed: try another, up to the pool's size plus one, as the sync pool does.
        let mut attempts = self.pool.status().max_size + 1;
        loop {
            let conn = self.checkout(org).await?;
            let opening = self.plan.opening(conn.backend)?;
            let outcome = AsyncOrgScoped::open(
                conn,
                org,
                Arc::clone(&self.tables),
                opening,
                isolation,
                Arc::clone(&self.counters),
            )
            .await;
            attempts -= 1;
            match outcome {
                Err(
                    discarded @ (TenantError::ConnectionLost | TenantError::SessionContextLeft),
                ) if attempts > 0 => {
                    self.counters.discarded();
                    tracing::warn!(
                        org = %org,
                        class = discarded.class(),
                        "tenant.connection_discarded"
                    );
                }
                done => return done,
            }
        }
    }

    pub(crate) async fn checkout(
        &self,
        org: OrgId,
    ) -> Result<Object<AsyncConnectionManager>, TenantError> {
        self.pool.get().await.map_err(|e| {
            let e = match e {
                PoolError::Backend(e) => e,
                PoolError::Timeout(_) => TenantError::Pool(format!(
                    "no connection within {:?} (pool of at most {})",
                    self.connection_timeout,
                    self.pool.status().max_size
                )),
                other => TenantError::Pool(other.to_string()),
            };
            self.counters.error(&e);
            if matches!(e, TenantError::Pool(_)) {
                tracing::warn!(org = %org, class = e.class(), "tenant.pool_exhausted");
            }
            e
        })
    }

    /// Runs `f` in a transaction scoped to `org`: commits when `f` returns `Ok`, rolls back
    /// on `Err` (and when the future is dropped before it finished).
    ///
    /// # Errors
    /// `f`'s error, or the pool's or the database's.
    pub async fn with_org<T, E, F>(&self, org: OrgId, f: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut AsyncOrgScoped) -> Result<T, E>,
        E: From<TenantError>,
    {
        self.with_org_isolated(org, Isolation::ReadCommitted, f)
            .await
    }

    /// [`with_org`](Self::with_org) at isolation level `isolation`.
    ///
    /// # Errors
    /// As [`with_org`](Self::with_org).
    pub async fn with_org_isolated<T, E, F>(
        &self,
        org: OrgId,
        isolation: Isolation,
        f: F,
    ) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut AsyncOrgScoped) -> Result<T, E>,
        E: From<TenantError>,
    {
        let mut scoped = self.begin_isolated(org, isolation).await?;
        let id = scoped.id();
        let value = f(&mut scoped).await;
        // `f` swapped the handle it was given with another: committing what is here now would
        // commit the other's transaction as this one's (see `TenantPool::with_org_isolated`).
        if scoped.id() != id {
            let e = TenantError::HandleSwapped;
            self.counters.error(&e);
            tracing::warn!(org = %org, class = e.class(), "tenant.refused");
            return Err(e.into());
        }
        match value {
            Ok(value) => {
                scoped.commit().await?;
                Ok(value)
            }
            Err(e) => {
                // The error that ended the transaction is the one to report.
                let _ = scoped.rollback().await;
                Err(e)
            }
        }
    }

    /// [`with_org`](Self::with_org), retried when PostgreSQL rolled the transaction back for
    /// a serialization failure or a deadlock, at most `attempts` times in all (see
    /// [`TenantPool::with_org_retry`](crate::TenantPool::with_org_retry)).
    ///
    /// # Errors
    /// The last error when every attempt failed, or the first that is not retryable.
    pub async fn with_org_retry<T, F>(
        &self,
        org: OrgId,
        attempts: u32,
        f: F,
    ) -> Result<T, TenantError>
    where
        F: AsyncFnMut(&mut AsyncOrgScoped) -> Result<T, TenantError>,
    {
        self.with_org_retry_isolated(org, Isolation::ReadCommitted, attempts, f)
            .await
    }

    /// [`with_org_retry`](Self::with_org_retry) at isolation level `isolation`.
    ///
    /// # Errors
    /// As [`with_org_retry`](Self::with_org_retry).
    pub async fn with_org_retry_isolated<T, F>(
        &self,
        org: OrgId,
        isolation: Isolation,
        attempts: u32,
        mut f: F,
    ) -> Result<T, TenantError>
    where
        F: AsyncFnMut(&mut AsyncOrgScoped) -> Result<T, TenantError>,
    {
        let mut attempt = 1;
        loop {
            match self
                .with_org_isolated(org, isolation, async |s| f(s).await)
                .await
            {
                Err(e) if e.is_retryable() && attempt < attempts.max(1) => {
                    self.counters.retry();
                    tracing::info!(org = %org, attempt, class = e.class(), "tenant.retry");
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// The pool's counters since it was built (as [`TenantPool::metrics`](crate::TenantPool::metrics)).
    pub fn metrics(&self) -> crate::telemetry::Metrics {
        self.counters.snapshot()
    }

    /// Pool statistics: `(connections, idle)`.
    pub fn state(&self) -> (usize, usize) {
        let s = self.pool.status();
        (s.size, s.available)
    }
}
