//! [`OrgScoped`], the only way to reach tenant rows: a database transaction with the session's
//! org set transaction-locally.
//!
//! Invariant (docs/design.md invariant 2): an `OrgScoped` exists only after `BEGIN` and
//! `set_config('tenant.org_id', org, true)` ran, in one simple-query message (one round trip).
//! The setting is local to the transaction, so it cannot outlive it or reach the next user of a
//! pooled connection. The handle never exposes the connection: no `Deref`, no `AsMut`.

use std::sync::Arc;

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
use diesel::result::Error as DieselError;
use diesel::{PgConnection, QueryResult};
use tenant_lint::Registry;

use crate::manager::{TenantConnectionManager, session_org_setting, session_verified_org};
use crate::opening::{LEFTOVER, Opening};
use crate::telemetry::{self, Counters, Outcome};
use crate::verify::{CheckedStatement, Checks, tables_of, verify};
use crate::{OrgId, TenantError};

/// A pooled connection, held only inside an [`OrgScoped`]. It offers nothing on its own.
pub struct Pooled(pub(crate) r2d2::PooledConnection<TenantConnectionManager>);

impl std::fmt::Debug for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pooled")
    }
}

/// A connection an [`OrgScoped`] can run on: a pooled one ([`Pooled`]) or a
/// `&mut PgConnection` you own. Sealed.
pub trait ScopedConnection: sealed::Sealed {}

pub(crate) mod sealed {
    use diesel::PgConnection;

    /// Access to the raw connection, visible only inside this crate.
    pub trait Sealed {
        /// The raw connection.
        fn pg(&mut self) -> &mut PgConnection;
    }
}

impl sealed::Sealed for Pooled {
    fn pg(&mut self) -> &mut PgConnection {
        &mut self.0.conn
    }
}
impl ScopedConnection for Pooled {}

impl sealed::Sealed for &mut PgConnection {
    fn pg(&mut self) -> &mut PgConnection {
        self
    }
}
impl ScopedConnection for &mut PgConnection {}

/// Where a scoped transaction is (the async handle's too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxState {
    /// Statements may run.
    Open,
    /// A statement failed: only a rollback is left.
    Aborted,
    /// Committed or rolled back.
    Finished,
}

/// The isolation level of a scoped transaction (PostgreSQL's; `ReadCommitted` is its default).
/// Under `RepeatableRead` and `Serializable` PostgreSQL may roll a transaction back with a
/// serialization failure (SQLSTATE 40001), which
/// [`TenantPool::with_org_retry_isolated`](crate::TenantPool::with_org_retry_isolated) retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Each statement sees what was committed before it started.
    #[default]
    ReadCommitted,
    /// The whole transaction sees one snapshot.
    RepeatableRead,
    /// As if the transactions ran one after another.
    Serializable,
}

impl Isolation {
    /// Every characteristic named, so that session defaults an earlier transaction may have
    /// left (`default_transaction_read_only`, `..._isolation`, `..._deferrable`, which apply
    /// at BEGIN, before the opening's reset) change nothing.
    pub(crate) fn begin(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => {
                "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE, NOT DEFERRABLE"
            }
            Isolation::RepeatableRead => {
                "BEGIN ISOLATION LEVEL REPEATABLE READ, READ WRITE, NOT DEFERRABLE"
            }
            Isolation::Serializable => {
                "BEGIN ISOLATION LEVEL SERIALIZABLE, READ WRITE, NOT DEFERRABLE"
            }
        }
    }

    /// The level's name, as tracing records it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::RepeatableRead => "repeatable_read",
            Isolation::Serializable => "serializable",
        }
    }
}

/// A database transaction whose session org is set: every query through it is confined to
/// that org by the library (an org filter) and by the database (row-level security).
///
/// Obtained from [`TenantPool::begin`](crate::TenantPool::begin),
/// [`TenantPool::with_org`](crate::TenantPool::with_org), or [`OrgScoped::begin`] over a
/// connection you own. [`commit`](Self::commit) ends it; dropping it rolls back.
pub struct OrgScoped<C: ScopedConnection> {
    conn: C,
    org: OrgId,
    state: TxState,
    tables: Arc<Checks>,
    /// Open savepoints above the transaction itself.
    savepoints: u32,
    /// This handle, among all handles of the process: a savepoint whose closure swapped the
    /// handle it was given with another finds another id afterwards.
    id: u64,
    /// Whether the org travels as a signed token (what `verify_context` reads back).
    signed: bool,
    /// The `tenant.transaction` span (`telemetry.rs`); disabled when no subscriber wants it.
    span: tracing::Span,
    /// When the transaction opened.
    started: std::time::Instant,
    /// Statements sent since.
    statements: u32,
    /// The pool's counters (none for a connection of the caller's own).
    counters: Option<Arc<Counters>>,
}

/// The next handle's id.
static NEXT_HANDLE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl<C: ScopedConnection> std::fmt::Debug for OrgScoped<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgScoped")
            .field("org", &self.org)
            .field("state", &self.state)
            .finish()
    }
}

impl<'c> OrgScoped<&'c mut PgConnection> {
    /// Opens a transaction scoped to `org` on a connection you own.
    ///
    /// `registry` says which tables are tenant tables, for the check every statement passes
    /// before it is sent. No role check runs here (that is [`TenantPool`](crate::TenantPool)'s
    /// job at start-up): prefer the pool, and connect as the application role.
    pub fn begin(
        conn: &'c mut PgConnection,
        org: OrgId,
        registry: &Registry,
    ) -> Result<Self, TenantError> {
        Self::on_own(conn, org, registry, Opening::Setting)
    }

    /// [`begin`](Self::begin) setting the org with `SET LOCAL` and a literal, the form Citus
    /// propagates to its workers (`citus.propagate_set_commands = local`).
    ///
    /// # Errors
    /// As [`begin`](Self::begin).
    pub fn begin_set_local(
        conn: &'c mut PgConnection,
        org: OrgId,
        registry: &Registry,
    ) -> Result<Self, TenantError> {
        Self::on_own(conn, org, registry, Opening::SetLocal)
    }

    /// [`begin`](Self::begin) with the signed org context (the default mode): the org is
    /// set as a token signed with `key` for `backend` (this connection's, read once with
    /// [`Backend::read`](crate::context::Backend::read)), which the database verifies.
    ///
    /// Only the token is set, not `tenant.org_id`: for a database whose tenant tables all
    /// verify tokens. A [`TenantPool`](crate::TenantPool) given a key finds out at start-up
    /// whether some column default still reads the plain setting, and then sets both.
    ///
    /// # Errors
    /// As [`begin`](Self::begin), and
    /// [`UnsafeConfig::RecordedTextTooLarge`](crate::UnsafeConfig::RecordedTextTooLarge).
    pub fn begin_signed(
        conn: &'c mut PgConnection,
        org: OrgId,
        registry: &Registry,
        key: &crate::context::ContextKey,
        backend: crate::context::Backend,
    ) -> Result<Self, TenantError> {
        backend.check_recorded_text()?;
        let opening = Opening::Signed {
            key,
            backend,
            org_setting: false,
        };
        Self::on_own(conn, org, registry, opening)
    }

    fn on_own(
        conn: &'c mut PgConnection,
        org: OrgId,
        registry: &Registry,
        opening: Opening<'_>,
    ) -> Result<Self, TenantError> {
        Self::open(
            conn,
            org,
            Arc::new(tables_of(registry)),
            opening,
            Isolation::ReadCommitted,
            None,
        )
    }
}

impl<C: ScopedConnection> OrgScoped<C> {
    pub(crate) fn open(
        mut conn: C,
        org: OrgId,
        tables: Arc<Checks>,
        opening: Opening<'_>,
        isolation: Isolation,
        counters: Option<Arc<Counters>>,
    ) -> Result<Self, TenantError> {
        let span = telemetry::transaction_span(org, opening.mode(), isolation, false);
        let started = std::time::Instant::now();
        // One simple-query message: BEGIN, the check and reset of what an earlier
        // transaction may have left in the session, and the transaction-local org travel
        // together (`opening.rs`). A connection the check refuses never runs a statement.
        let sql = opening.message(isolation.begin(), org);
        let signed = matches!(opening, Opening::Signed { .. });
        if let Err(e) = AnsiTransactionManager::begin_transaction_sql(conn.pg(), &sql) {
            // The server may be inside an aborted transaction block, or the connection dead:
            // leave it in no state diesel would reuse, so the pool drops it on return.
            use diesel::connection::SimpleConnection;
            let _ = conn.pg().batch_execute("ROLLBACK");
            AnsiTransactionManager::transaction_manager_status_mut(conn.pg()).set_in_error();
            let e = if e.to_string().contains(LEFTOVER) {
                TenantError::SessionContextLeft
            } else {
                e.into()
            };
            telemetry::error_event(&span, &e);
            if let Some(c) = &counters {
                c.error(&e);
            }
            return Err(e);
        }
        if let Some(c) = &counters {
            c.begun();
        }
        Ok(Self {
            conn,
            org,
            state: TxState::Open,
            tables,
            savepoints: 0,
            id: NEXT_HANDLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            signed,
            span,
            started,
            statements: 0,
            counters,
        })
    }

    /// Records how the transaction ended, once (`telemetry.rs`).
    fn ended(&mut self, outcome: Outcome) {
        telemetry::transaction_ended(
            &self.span,
            self.counters.as_deref(),
            outcome,
            self.statements,
            self.started,
        );
    }

    /// Counts and logs an error raised in this transaction.
    pub(crate) fn failed(&self, e: &TenantError) {
        telemetry::error_event(&self.span, e);
        if let Some(c) = &self.counters {
            c.error(e);
        }
    }

    /// The org this handle is scoped to.
    pub fn org(&self) -> OrgId {
        self.org
    }

    /// This handle's process-unique id (what tells a swapped handle).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Commits the transaction.
    ///
    /// # Errors
    /// [`TenantError::TransactionAborted`] if a statement failed earlier (the transaction is
    /// rolled back: PostgreSQL would have turned the COMMIT into a silent ROLLBACK), or the
    /// database's refusal to commit.
    pub fn commit(mut self) -> Result<(), TenantError> {
        match self.state {
            // With a savepoint still open (only after a panic unwound through `savepoint`), a
            // COMMIT would only release the savepoint: refused below instead.
            TxState::Open if self.savepoints == 0 => {
                self.state = TxState::Finished;
                let result =
                    AnsiTransactionManager::commit_transaction(self.conn.pg()).map_err(|e| {
                        match TenantError::from(e) {
                            TenantError::ConnectionLost => TenantError::CommitOutcomeUnknown,
                            other => other,
                        }
                    });
                match &result {
                    Ok(()) => self.ended(Outcome::Committed),
                    Err(e) => {
                        self.failed(e);
                        self.ended(Outcome::RolledBack);
                    }
                }
                result
            }
            TxState::Open | TxState::Aborted | TxState::Finished => {
                self.failed(&TenantError::TransactionAborted);
                self.finish_rollback();
                Err(TenantError::TransactionAborted)
            }
        }
    }

    /// Rolls the transaction back.
    pub fn rollback(mut self) -> Result<(), TenantError> {
        self.state = TxState::Finished;
        self.ended(Outcome::RolledBack);
        AnsiTransactionManager::rollback_transaction(self.conn.pg())?;
        Ok(())
    }

    /// Checks that the session's org context is still the one this handle was opened for:
    /// one round trip. If it is not, the transaction will refuse to commit.
    ///
    /// # Errors
    /// [`TenantError::NoOrgContext`] when the setting is gone, [`TenantError::OrgContextChanged`]
    /// when it names another value.
    pub fn verify_context(&mut self) -> Result<(), TenantError> {
        let setting = if self.signed {
            self.run(self.org, session_verified_org)?
                .map(|org| org.hyphenated().to_string())
        } else {
            self.run(self.org, session_org_setting)?
        };
        let refused = match setting {
            Some(v) if v == self.org.sql_literal() => return Ok(()),
            None => TenantError::NoOrgContext,
            Some(_) => TenantError::OrgContextChanged,
        };
        self.state = TxState::Aborted;
        self.failed(&refused);
        Err(refused)
    }

    /// Renders `query` once, checks that rendering (see [`crate::verify`]) and runs exactly it
    /// with `f`, tracking failures. `ST` is the SQL type of the rows.
    pub(crate) fn run_verified<Q, ST, R>(
        &mut self,
        org: OrgId,
        query: Q,
        f: impl FnOnce(CheckedStatement<ST>, &mut PgConnection) -> QueryResult<R>,
    ) -> Result<R, TenantError>
    where
        Q: QueryFragment<Pg>,
    {
        // A refused statement is never sent, so the transaction stays usable. What is sent is
        // the rendering that was checked, not the query; see `verify::CheckedStatement`.
        let checked = self.usable(org).and_then(|()| {
            let statement = CheckedStatement::render(&query, self.conn.pg())?;
            verify(&statement, self.org, &self.tables)?;
            Ok(statement)
        });
        drop(query);
        match checked {
            Ok(statement) => self.run(org, |conn| map(f(statement, conn))),
            Err(e) => {
                self.failed(&e);
                Err(e)
            }
        }
    }

    /// The raw connection under this scoped transaction, for what the DSL cannot express.
    ///
    /// Nothing run through it is checked, and a statement that fails through it is not seen by
    /// the handle (so `commit` cannot refuse on its account). The name and the written `reason`
    /// exist so that `cargo xtask lint` can list every use for review.
    pub fn raw_connection_unchecked(&mut self, reason: &'static str) -> &mut PgConnection {
        let _ = reason;
        self.conn.pg()
    }

    /// The org the database's signed-context verifier sees in this transaction (the pool's
    /// start-up check that the database accepts the service's tokens).
    pub(crate) fn verified_org(&mut self) -> Result<Option<uuid::Uuid>, TenantError> {
        session_verified_org(self.conn.pg())
    }

    /// Runs `f` in a savepoint: on `Err` (or a statement that failed inside) only the work since
    /// the savepoint is rolled back, and the transaction goes on.
    ///
    /// # Errors
    /// `f`'s error after rolling back to the savepoint; [`TenantError::TransactionAborted`] if a
    /// statement failed inside `f` although it returned `Ok`.
    pub fn savepoint<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<TenantError>,
    {
        if self.state != TxState::Open {
            return Err(TenantError::TransactionAborted.into());
        }
        AnsiTransactionManager::begin_transaction(self.conn.pg()).map_err(TenantError::from)?;
        self.savepoints = self.savepoints.saturating_add(1);
        let id = self.id;
        // A panic in `f` caught by the caller must not leave a handle that can commit: the
        // savepoint is still open, and a COMMIT now would only release it (the transaction
        // would be rolled back when the pool discards the connection, after `commit()` said
        // Ok). The handle is marked aborted and the panic goes on; `commit` then refuses and
        // rolls everything back (`savepoints` still counts the open savepoint).
        let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))) {
            Ok(result) => result,
            Err(panic) => {
                if self.id == id {
                    self.state = TxState::Aborted;
                }
                std::panic::resume_unwind(panic)
            }
        };
        // `f` swapped the handle with another: the closing steps would release or roll back
        // a savepoint of this transaction on the other's connection (a COMMIT of its whole
        // transaction, where it had none open). The other is left as it is; this one, wherever
        // the closure put it, still counts the open savepoint, so its commit refuses.
        if self.id != id {
            self.failed(&TenantError::HandleSwapped);
            return Err(TenantError::HandleSwapped.into());
        }
        self.savepoints = self.savepoints.saturating_sub(1);
        let failed_inside = self.state == TxState::Aborted;
        match result {
            Ok(value) if !failed_inside => {
                AnsiTransactionManager::commit_transaction(self.conn.pg())
                    .map_err(TenantError::from)?;
                Ok(value)
            }
            outcome => {
                AnsiTransactionManager::rollback_transaction(self.conn.pg())
                    .map_err(TenantError::from)?;
                self.state = TxState::Open;
                match outcome {
                    Ok(_) => Err(TenantError::TransactionAborted.into()),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Runs `f` on the connection for a query built for `org`, tracking failures.
    pub(crate) fn run<R>(
        &mut self,
        org: OrgId,
        f: impl FnOnce(&mut PgConnection) -> Result<R, TenantError>,
    ) -> Result<R, TenantError> {
        if let Err(e) = self.usable(org) {
            self.failed(&e);
            return Err(e);
        }
        self.statements = self.statements.saturating_add(1);
        let result = f(self.conn.pg());
        if let Err(e) = &result
            && !e.is_not_found()
        {
            self.failed(e);
            self.state = TxState::Aborted;
            if e.is_missing_prepared_statement() {
                // diesel would send the same name again on every later use: the pool
                // discards the connection (`has_broken`) instead of handing it to the next org.
                AnsiTransactionManager::transaction_manager_status_mut(self.conn.pg())
                    .set_in_error();
            }
        }
        result
    }

    /// Whether a statement built for `org` may run on this handle now.
    fn usable(&self, org: OrgId) -> Result<(), TenantError> {
        if org != self.org {
            return Err(TenantError::OrgMismatch);
        }
        if self.state != TxState::Open {
            return Err(TenantError::TransactionAborted);
        }
        Ok(())
    }

    fn finish_rollback(&mut self) {
        if self.state != TxState::Finished {
            self.ended(Outcome::RolledBack);
        }
        self.state = TxState::Finished;
        // One rollback per open savepoint, then the transaction itself. A failed rollback
        // leaves diesel's transaction manager broken; the pool then discards the connection
        // (`has_broken`), so nothing of this transaction is reused.
        for _ in 0..=self.savepoints {
            if AnsiTransactionManager::rollback_transaction(self.conn.pg()).is_err() {
                break;
            }
        }
        self.savepoints = 0;
    }
}

impl<C: ScopedConnection> Drop for OrgScoped<C> {
    fn drop(&mut self) {
        if self.state != TxState::Finished {
            self.finish_rollback();
        }
    }
}

/// Maps a diesel result into the crate's error.
pub(crate) fn map<R>(r: QueryResult<R>) -> Result<R, TenantError> {
    r.map_err(|e: DieselError| e.into())
}
