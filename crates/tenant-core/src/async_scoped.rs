//! [`AsyncOrgScoped`] (the `async` feature): the async path's scoped transaction, from an
//! [`AsyncTenantPool`](crate::AsyncTenantPool).
//!
//! Invariant (as [`OrgScoped`](crate::OrgScoped)'s): an `AsyncOrgScoped` exists only after the
//! opening message (`opening.rs`: BEGIN, the reset and check of what an earlier transaction
//! left, the org) ran in one simple-query message; every statement is rendered once, checked
//! (`verify.rs`) and sent as checked; the handle never exposes the connection. What the sync
//! handle does in `Drop` (roll back) cannot wait on the network here: a handle dropped
//! before it ended rolls back on a task of the runtime, its connection returning to the pool
//! only when the server confirmed; with a statement in flight (a cancelled future) it takes
//! the connection out of the pool and closes it, which ends the transaction on the server at
//! once.

use std::sync::Arc;

use deadpool::managed::Object;
use diesel::pg::{Pg, PgMetadataCacheKey, PgMetadataLookup, PgTypeMetadata};
use diesel::query_builder::{Query, QueryFragment};
use diesel::result::QueryResult;
use diesel_async::methods::{ExecuteDsl, LoadQuery};
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, TransactionManager};

use crate::async_manager::{AsyncConnectionManager, load_all};
use crate::dsl::{ScopedQuery, ScopedSelect, SqlTypeOf, sealed};
use crate::opening::{LEFTOVER, Opening};
use crate::scoped::TxState;
use crate::telemetry::{self, Counters, Outcome};
use crate::verify::{CheckedStatement, Checks, verify};
use crate::{Isolation, OrgId, TenantError};

/// The type lookup of a statement rendered for the async path: it cannot query the database
/// while rendering, so a bind of a custom SQL type (an enum type, say) is refused, before
/// anything is sent, with the type's name.
struct NoCustomTypes {
    refused: Option<String>,
}

impl PgMetadataLookup for NoCustomTypes {
    fn lookup_type(&mut self, type_name: &str, schema: Option<&str>) -> PgTypeMetadata {
        let name = match schema {
            Some(schema) => format!("{schema}.{type_name}"),
            None => type_name.to_owned(),
        };
        self.refused.get_or_insert(name.clone());
        PgTypeMetadata::from_result(Err(diesel::pg::FailedToLookupTypeError::new(
            PgMetadataCacheKey::new(schema.map(|s| s.to_owned().into()), name.into()),
        )))
    }
}

/// Renders `query` once for the async path and checks that rendering for `org`
/// ([`crate::verify`]): what is sent is this statement, not the query.
pub(crate) fn checked<Q: QueryFragment<Pg>, ST>(
    query: &Q,
    org: OrgId,
    tables: &Checks,
) -> Result<CheckedStatement<ST>, TenantError> {
    let mut lookup = NoCustomTypes { refused: None };
    let statement =
        CheckedStatement::render(query, &mut lookup).map_err(|e| match lookup.refused.take() {
            Some(name) => TenantError::Pool(format!(
                "a bound value of the custom SQL type `{name}` cannot be sent on the async path \
                 yet (its type id would need a query while rendering): run this statement \
                 through the sync TenantPool"
            )),
            None => e,
        })?;
    verify(&statement, org, tables)?;
    Ok(statement)
}

/// A database transaction whose session org is set, on the async path: every query through
/// it is confined to that org by the library (the same DSL as
/// [`OrgScoped`](crate::OrgScoped)'s: `query`, `insert`, `update`, `delete`, `read_global`)
/// and by the database (row-level security).
///
/// Obtained from [`AsyncTenantPool::begin`](crate::AsyncTenantPool::begin) or
/// [`AsyncTenantPool::with_org`](crate::AsyncTenantPool::with_org).
/// [`commit`](Self::commit) ends it; dropping it rolls back.
pub struct AsyncOrgScoped {
    /// `None` once the connection was taken out of the pool (a handle dropped unfinished).
    conn: Option<Object<AsyncConnectionManager>>,
    org: OrgId,
    state: TxState,
    tables: Arc<Checks>,
    /// This handle, among all handles of the process (see `OrgScoped`).
    id: u64,
    /// Whether the org travels as a signed token (what `verify_context` reads back).
    signed: bool,
    /// A statement was sent and its reply not yet read (its future may be dropped).
    in_flight: bool,
    span: tracing::Span,
    started: std::time::Instant,
    statements: u32,
    counters: Arc<Counters>,
}

/// The next handle's id.
static NEXT_HANDLE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl std::fmt::Debug for AsyncOrgScoped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncOrgScoped")
            .field("org", &self.org)
            .field("state", &self.state)
            .finish()
    }
}

impl AsyncOrgScoped {
    pub(crate) async fn open(
        mut conn: Object<AsyncConnectionManager>,
        org: OrgId,
        tables: Arc<Checks>,
        opening: Opening<'_>,
        isolation: Isolation,
        counters: Arc<Counters>,
    ) -> Result<Self, TenantError> {
        let span = telemetry::transaction_span(org, opening.mode(), isolation, false);
        let started = std::time::Instant::now();
        let sql = opening.message(isolation.begin(), org);
        let signed = matches!(opening, Opening::Signed { .. });
        // Set before anything is sent: a future cancelled from here on leaves a connection the
        // pool never hands out again.
        conn.in_transaction = true;
        if let Err(e) = AnsiTransactionManager::begin_transaction_sql(&mut conn.conn, &sql).await {
            let e = if e.to_string().contains(LEFTOVER) {
                TenantError::SessionContextLeft
            } else {
                e.into()
            };
            telemetry::error_event(&span, &e);
            counters.error(&e);
            // Closed, not returned: it may sit in a failed transaction, or be dead.
            drop(Object::take(conn));
            return Err(e);
        }
        counters.begun();
        Ok(Self {
            conn: Some(conn),
            org,
            state: TxState::Open,
            tables,
            id: NEXT_HANDLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            signed,
            in_flight: false,
            span,
            started,
            statements: 0,
            counters,
        })
    }

    /// The org this handle is scoped to.
    pub fn org(&self) -> OrgId {
        self.org
    }

    /// This handle's process-unique id (what tells a swapped handle).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn pg(&mut self) -> Result<&mut AsyncPgConnection, TenantError> {
        match self.conn.as_mut() {
            Some(conn) => Ok(&mut conn.conn),
            None => Err(TenantError::TransactionAborted),
        }
    }

    /// Records how the transaction ended, once.
    fn ended(&mut self, outcome: Outcome) {
        telemetry::transaction_ended(
            &self.span,
            Some(&self.counters),
            outcome,
            self.statements,
            self.started,
        );
    }

    fn failed(&self, e: &TenantError) {
        telemetry::error_event(&self.span, e);
        self.counters.error(e);
    }

    /// Commits the transaction.
    ///
    /// # Errors
    /// [`TenantError::TransactionAborted`] if a statement failed earlier (the transaction is
    /// rolled back), [`TenantError::CommitOutcomeUnknown`] when the connection was lost with
    /// the COMMIT in flight, or the database's refusal to commit.
    pub async fn commit(mut self) -> Result<(), TenantError> {
        self.settle_cancelled();
        if self.state != TxState::Open {
            self.failed(&TenantError::TransactionAborted);
            let _ = self.finish(false).await;
            return Err(TenantError::TransactionAborted);
        }
        self.finish(true).await
    }

    /// Rolls the transaction back.
    ///
    /// # Errors
    /// The database's error (the connection is then closed, which rolls back too).
    pub async fn rollback(mut self) -> Result<(), TenantError> {
        self.settle_cancelled();
        self.finish(false).await
    }

    /// A statement whose future was dropped in flight (a timeout around one call) may still
    /// run and succeed on the server: its outcome is unknown, so the transaction must not
    /// commit, and a ROLLBACK would wait behind its reply. The handle is aborted and the
    /// connection closed, which ends the transaction on the server.
    fn settle_cancelled(&mut self) {
        if self.in_flight {
            self.in_flight = false;
            if self.state == TxState::Open {
                self.state = TxState::Aborted;
                self.failed(&TenantError::TransactionAborted);
            }
            self.close();
        }
    }

    /// Ends the transaction by COMMIT (`commit`) or ROLLBACK; the connection goes back to the
    /// pool only when the server confirmed it.
    async fn finish(&mut self, commit: bool) -> Result<(), TenantError> {
        let was = self.state;
        self.state = TxState::Finished;
        let result = match self.pg() {
            Ok(conn) if commit => AnsiTransactionManager::commit_transaction(conn)
                .await
                .map_err(|e| match TenantError::from(e) {
                    TenantError::ConnectionLost => TenantError::CommitOutcomeUnknown,
                    other => other,
                }),
            Ok(conn) => AnsiTransactionManager::rollback_transaction(conn)
                .await
                .map_err(TenantError::from),
            // Closed already (a cancelled statement): the server ended the transaction.
            Err(_) if !commit => Ok(()),
            Err(e) => Err(e),
        };
        if was != TxState::Finished {
            match (&result, commit) {
                (Ok(()), true) => self.ended(Outcome::Committed),
                _ => self.ended(Outcome::RolledBack),
            }
        }
        match &result {
            Ok(()) => {
                if let Some(conn) = self.conn.as_mut() {
                    conn.in_transaction = false;
                }
            }
            Err(e) => {
                if commit {
                    self.failed(e);
                }
                self.close();
            }
        }
        result
    }

    /// Takes the connection out of the pool and closes it: the server ends its transaction.
    fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(Object::take(conn));
        }
    }

    /// Renders `query` once, checks that rendering (see [`crate::verify`]) and hands exactly
    /// it to `run`, tracking failures.
    async fn run_verified<Q, ST, R, F>(
        &mut self,
        org: OrgId,
        query: Q,
        run: F,
    ) -> Result<R, TenantError>
    where
        Q: QueryFragment<Pg>,
        F: AsyncFnOnce(CheckedStatement<ST>, &mut AsyncPgConnection) -> QueryResult<R>,
    {
        let checked = self
            .usable(org)
            .and_then(|()| checked(&query, self.org, &self.tables));
        drop(query);
        match checked {
            Ok(statement) => self.run_checked(org, statement, run).await,
            Err(e) => {
                self.failed(&e);
                Err(e)
            }
        }
    }

    /// Hands `statement` (checked for this handle's org) to `run`, tracking failures, and
    /// notes it as prepared on the connection when it ran.
    pub(crate) async fn run_checked<ST, R, F>(
        &mut self,
        org: OrgId,
        statement: CheckedStatement<ST>,
        run: F,
    ) -> Result<R, TenantError>
    where
        F: AsyncFnOnce(CheckedStatement<ST>, &mut AsyncPgConnection) -> QueryResult<R>,
    {
        let key = statement.cache_key();
        let result = self.run(org, async |conn| run(statement, conn).await).await;
        if let (Ok(_), Some(key), Some(conn)) = (&result, key, self.conn.as_mut())
            && conn.statement_cache
        {
            conn.prepared.insert(key);
        }
        result
    }

    /// Runs `f` on the connection for a statement built for `org`, tracking failures.
    async fn run<R, F>(&mut self, org: OrgId, f: F) -> Result<R, TenantError>
    where
        F: AsyncFnOnce(&mut AsyncPgConnection) -> QueryResult<R>,
    {
        self.settle_cancelled();
        if let Err(e) = self.usable(org) {
            self.failed(&e);
            return Err(e);
        }
        self.statements = self.statements.saturating_add(1);
        self.in_flight = true;
        let result = match self.pg() {
            Ok(conn) => f(conn).await.map_err(TenantError::from),
            Err(e) => Err(e),
        };
        self.in_flight = false;
        if let Err(e) = &result
            && !e.is_not_found()
        {
            self.failed(e);
            self.state = TxState::Aborted;
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

    /// Runs a scoped query and returns all rows (as [`OrgScoped::load`](crate::OrgScoped::load)).
    ///
    /// # Errors
    /// A refusal of the check (nothing is sent), or the database's error.
    pub async fn load<U, Q>(&mut self, query: Q) -> Result<Vec<U>, TenantError>
    where
        Q: ScopedQuery,
        Q::Query: Query + QueryFragment<Pg>,
        CheckedStatement<SqlTypeOf<Q>>: LoadQuery<'static, AsyncPgConnection, U>,
    {
        let (org, q) = query.into_parts(sealed::Token(()));
        self.run_verified(org, q, async |q, conn| load_all(conn, q).await)
            .await
    }

    /// Runs a scoped query and returns its first row; [`TenantError::is_not_found`] when there
    /// is none.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub async fn get_result<U, Q>(&mut self, query: Q) -> Result<U, TenantError>
    where
        Q: ScopedQuery,
        Q::Query: Query + QueryFragment<Pg>,
        CheckedStatement<SqlTypeOf<Q>>: LoadQuery<'static, AsyncPgConnection, U>,
    {
        let (org, q) = query.into_parts(sealed::Token(()));
        self.run_verified(org, q, async |q, conn| {
            let rows: Vec<U> = load_all(conn, q).await?;
            rows.into_iter()
                .next()
                .ok_or(diesel::result::Error::NotFound)
        })
        .await
    }

    /// Runs a scoped query and returns its first row, or `None`.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub async fn optional<U, Q>(&mut self, query: Q) -> Result<Option<U>, TenantError>
    where
        Q: ScopedQuery,
        Q::Query: Query + QueryFragment<Pg>,
        CheckedStatement<SqlTypeOf<Q>>: LoadQuery<'static, AsyncPgConnection, U>,
    {
        match self.get_result(query).await {
            Ok(row) => Ok(Some(row)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The first row of a scoped select (`LIMIT 1`), or `None`.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub async fn first<U, Q>(&mut self, query: ScopedSelect<Q>) -> Result<Option<U>, TenantError>
    where
        Q: diesel::query_dsl::methods::LimitDsl,
        diesel::dsl::Limit<Q>: Query + QueryFragment<Pg>,
        CheckedStatement<<diesel::dsl::Limit<Q> as Query>::SqlType>:
            LoadQuery<'static, AsyncPgConnection, U>,
    {
        self.optional(query.limit(1)).await
    }

    /// Runs a scoped insert, update or delete and returns the number of rows affected.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub async fn execute<Q>(&mut self, statement: Q) -> Result<usize, TenantError>
    where
        Q: ScopedQuery,
        Q::Query: QueryFragment<Pg>,
    {
        let (org, q) = statement.into_parts(sealed::Token(()));
        self.run_verified(org, q, async |q: CheckedStatement<()>, conn| {
            ExecuteDsl::execute(q, conn).await
        })
        .await
    }

    /// Checks that the session's org context is still the one this handle was opened for:
    /// one round trip (as [`OrgScoped::verify_context`](crate::OrgScoped::verify_context)).
    ///
    /// # Errors
    /// [`TenantError::NoOrgContext`] when the org is gone, [`TenantError::OrgContextChanged`]
    /// when it names another.
    pub async fn verify_context(&mut self) -> Result<(), TenantError> {
        let org = self.org;
        let seen = if self.signed {
            let rows: Vec<Option<uuid::Uuid>> = self
                .run(org, async |conn| {
                    load_all(conn, crate::manager::session_verified_org_query()).await
                })
                .await?;
            rows.into_iter()
                .next()
                .flatten()
                .map(|u| u.hyphenated().to_string())
        } else {
            let rows: Vec<String> = self
                .run(org, async |conn| {
                    load_all(conn, crate::manager::session_org_setting_query()).await
                })
                .await?;
            rows.into_iter().next().filter(|v| !v.is_empty())
        };
        let refused = match seen {
            Some(v) if v == org.sql_literal() => return Ok(()),
            None => TenantError::NoOrgContext,
            Some(_) => TenantError::OrgContextChanged,
        };
        self.state = TxState::Aborted;
        self.failed(&refused);
        Err(refused)
    }
}

impl Drop for AsyncOrgScoped {
    /// Rolls back on a task of the runtime, and the connection goes back to the pool when
    /// the server confirmed it. A statement whose future was dropped in flight still has its
    /// reply coming (a ROLLBACK would wait behind it, however long it runs), and outside a
    /// runtime nothing can run the ROLLBACK: then the connection is closed instead, which ends
    /// the transaction on the server at once.
    fn drop(&mut self) {
        if self.state == TxState::Finished {
            return;
        }
        self.ended(Outcome::RolledBack);
        self.state = TxState::Finished;
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !self.in_flight => {
                runtime.spawn(async move {
                    if AnsiTransactionManager::rollback_transaction(&mut conn.conn)
                        .await
                        .is_ok()
                    {
                        conn.in_transaction = false;
                    } else {
                        drop(Object::take(conn));
                    }
                });
            }
            _ => drop(Object::take(conn)),
        }
    }
}
