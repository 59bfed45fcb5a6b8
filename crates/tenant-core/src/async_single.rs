//! One-flight transactions of the async path: a scoped transaction of one statement sends the
//! opening message, the statement and COMMIT together, one network round trip
//! ([`AsyncTenantPool::load_one`], [`AsyncTenantPool::execute_one`]).
//!
//! diesel-async pipelines the requests of futures polled together on one connection, in the
//! order they are first polled; a statement goes out on its first poll when the connection
//! has it prepared already, and only after a round trip to prepare it otherwise (which would
//! put it behind the COMMIT, outside the transaction). So a statement is sent in one flight
//! only when this connection ran it before, with diesel-async's statement cache on and never
//! limited (`async_manager.rs`); else the transaction takes the usual three round trips, which
//! prepares it for next time.
//!
//! Invariant: the statement is sent after the opening and before COMMIT, inside the
//! transaction, and it is the checked rendering, as on every path. Errors keep their meaning:
//! a failed opening or statement commits nothing (the server turns that COMMIT into a
//! ROLLBACK), and a connection lost with the flight out is
//! [`TenantError::CommitOutcomeUnknown`] (the COMMIT may have run).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use deadpool::managed::Object;
use diesel::pg::Pg;
use diesel::query_builder::{Query, QueryFragment};
use diesel::result::QueryResult;
use diesel_async::futures_util::TryStreamExt;
use diesel_async::methods::{ExecuteDsl, LoadQuery};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

use crate::async_manager::{AsyncConnectionManager, load_all};
use crate::async_pool::AsyncTenantPool;
use crate::async_scoped::{AsyncOrgScoped, checked};
use crate::dsl::{ScopedQuery, SqlTypeOf, sealed};
use crate::opening::LEFTOVER;
use crate::telemetry::{self, Outcome};
use crate::verify::CheckedStatement;
use crate::{Isolation, OrgId, TenantError};

/// The query builders of one org without a transaction: what the closure of
/// [`AsyncTenantPool::load_one`] and [`AsyncTenantPool::execute_one`] builds its statement
/// with (`query`, `insert`, `update`, `delete`, `read_global`, as on a scoped handle).
#[derive(Debug, Clone, Copy)]
pub struct OrgStatements {
    org: OrgId,
}

impl OrgStatements {
    /// The org the statements are built for.
    pub fn org(&self) -> OrgId {
        self.org
    }
}

/// How the one flight went, before it is mapped to the caller's result.
enum Flight<R> {
    Done(R),
    /// The opening refused the connection (state left on it): nothing ran, and the
    /// connection is closed.
    Discarded(TenantError),
    Failed(TenantError),
}

impl AsyncTenantPool {
    /// Loads the rows of the one statement `build` makes for `org`, in a transaction of its
    /// own: one network round trip when this connection ran the statement before (see the
    /// module docs), three otherwise.
    ///
    /// ```no_run
    /// # diesel::table! { invoices (id) { id -> Uuid, org_id -> Uuid, total_cents -> BigInt } }
    /// # tenant_lint::registry! { pub static REGISTRY; tenant invoices => org_id; }
    /// # async fn run(pool: tenant_core::AsyncTenantPool, org: tenant_core::OrgId) -> Result<(), tenant_core::TenantError> {
    /// let totals: Vec<i64> = pool
    ///     .load_one(org, |q| q.query(invoices::table).select(invoices::total_cents))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`AsyncOrgScoped::load`] and [`AsyncOrgScoped::commit`].
    pub async fn load_one<U, Q>(
        &self,
        org: OrgId,
        build: impl FnOnce(&OrgStatements) -> Q,
    ) -> Result<Vec<U>, TenantError>
    where
        Q: ScopedQuery,
        Q::Query: Query + QueryFragment<Pg>,
        CheckedStatement<SqlTypeOf<Q>>: LoadQuery<'static, AsyncPgConnection, U>,
        for<'c> CheckedStatement<SqlTypeOf<Q>>: LoadQuery<'static, &'c AsyncPgConnection, U>,
        U: Send + 'static,
        SqlTypeOf<Q>: 'static,
    {
        let (built_for, query) = build(&OrgStatements { org }).into_parts(sealed::Token(()));
        if built_for != org {
            return Err(self.refused(TenantError::OrgMismatch));
        }
        let statement: CheckedStatement<SqlTypeOf<Q>> =
            checked(&query, org, &self.tables).map_err(|e| self.refused(e))?;
        drop(query);
        self.one_flight(
            org,
            statement,
            load_pipelined::<_, U>,
            load_stepwise::<_, U>,
        )
        .await
    }

    /// Runs the one insert, update or delete `build` makes for `org`, in a transaction of its
    /// own, and returns the number of rows affected; one round trip as
    /// [`load_one`](Self::load_one).
    ///
    /// # Errors
    /// As [`AsyncOrgScoped::execute`] and [`AsyncOrgScoped::commit`].
    pub async fn execute_one<Q>(
        &self,
        org: OrgId,
        build: impl FnOnce(&OrgStatements) -> Q,
    ) -> Result<usize, TenantError>
    where
        Q: ScopedQuery,
        Q::Query: QueryFragment<Pg>,
    {
        let (built_for, query) = build(&OrgStatements { org }).into_parts(sealed::Token(()));
        if built_for != org {
            return Err(self.refused(TenantError::OrgMismatch));
        }
        let statement: CheckedStatement<()> =
            checked(&query, org, &self.tables).map_err(|e| self.refused(e))?;
        drop(query);
        self.one_flight(org, statement, execute_pipelined, execute_stepwise)
            .await
    }

    /// Counts and logs a refusal before any connection was taken.
    fn refused(&self, e: TenantError) -> TenantError {
        self.counters.error(&e);
        tracing::warn!(class = e.class(), "tenant.refused");
        e
    }

    /// Runs `statement` in a transaction of `org`: `pipelined` in one flight when the
    /// connection has it prepared, else `stepwise` in a scoped handle.
    ///
    /// The two ways are functions returning boxed `Send` futures, not closures: a future that
    /// borrows the connection through a higher-ranked closure argument cannot be proved `Send`
    /// where a web framework needs it (rustc's "not general enough").
    async fn one_flight<ST, R>(
        &self,
        org: OrgId,
        statement: CheckedStatement<ST>,
        pipelined: Pipelined<ST, R>,
        stepwise: Stepwise<ST, R>,
    ) -> Result<R, TenantError> {
        let key = statement.cache_key();
        let mut attempts = self.pool.status().max_size + 1;
        let mut conn = loop {
            let conn = self.checkout(org).await?;
            attempts -= 1;
            let warm =
                conn.statement_cache && key.as_ref().is_some_and(|k| conn.prepared.contains(k));
            if warm {
                break conn;
            }
            // Not prepared on this connection: the usual round trips, which prepare it.
            let opening = self.plan.opening(conn.backend)?;
            let mut scoped = match AsyncOrgScoped::open(
                conn,
                org,
                Arc::clone(&self.tables),
                opening,
                Isolation::ReadCommitted,
                Arc::clone(&self.counters),
            )
            .await
            {
                Ok(scoped) => scoped,
                Err(TenantError::ConnectionLost | TenantError::SessionContextLeft)
                    if attempts > 0 =>
                {
                    self.counters.discarded();
                    continue;
                }
                Err(e) => return Err(e),
            };
            let value = stepwise(&mut scoped, org, statement).await;
            return match value {
                Ok(value) => scoped.commit().await.map(|()| value),
                Err(e) => {
                    let _ = scoped.rollback().await;
                    Err(e)
                }
            };
        };
        // The opening borrows the key: made into its text before anything is awaited.
        let (mode, sql) = {
            let opening = self.plan.opening(conn.backend)?;
            (
                opening.mode(),
                opening.message(Isolation::ReadCommitted.begin(), org),
            )
        };
        let span = telemetry::transaction_span(org, mode, Isolation::ReadCommitted, true);
        let started = std::time::Instant::now();
        conn.in_transaction = true;
        self.counters.begun();
        let flight = send(&mut conn, &sql, statement, pipelined).await;
        let (outcome, result) = match flight {
            Flight::Done(value) => (Outcome::Committed, Ok(value)),
            Flight::Discarded(e) => {
                self.counters.discarded();
                tracing::warn!(org = %org, class = e.class(), "tenant.connection_discarded");
                (Outcome::RolledBack, Err(e))
            }
            Flight::Failed(e) => (Outcome::RolledBack, Err(e)),
        };
        if let Err(e) = &result {
            telemetry::error_event(&span, e);
            self.counters.error(e);
        }
        telemetry::transaction_ended(&span, Some(&self.counters), outcome, 1, started);
        if conn.in_transaction {
            // The flight did not end the transaction for certain: the session goes with it.
            drop(Object::take(conn));
        }
        result
    }
}

/// Sends the opening, `statement` and COMMIT in one flight on `conn` and reads the three
/// replies. The transaction has ended (committed, or turned into a ROLLBACK by the server)
/// exactly when `conn.in_transaction` is false afterwards.
async fn send<ST, R>(
    conn: &mut Object<AsyncConnectionManager>,
    opening: &str,
    statement: CheckedStatement<ST>,
    pipelined: Pipelined<ST, R>,
) -> Flight<R> {
    let shared: &AsyncPgConnection = &conn.conn;
    let (mut open_on, mut commit_on) = (shared, shared);
    // Polled in this order on their first poll, so sent in this order: the opening, the
    // statement (prepared on this connection: no round trip before it), COMMIT.
    let (opened, ran, committed) = diesel_async::futures_util::future::join3(
        SimpleAsyncConnection::batch_execute(&mut open_on, opening),
        pipelined(statement, shared),
        SimpleAsyncConnection::batch_execute(&mut commit_on, "COMMIT"),
    )
    .await;
    let opened = opened.map_err(|e| {
        if e.to_string().contains(LEFTOVER) {
            TenantError::SessionContextLeft
        } else {
            e.into()
        }
    });
    let ran = ran.map_err(TenantError::from);
    let committed = committed.map_err(TenantError::from);
    // The connection went with the flight out: the COMMIT may have run.
    let lost = |e: Option<&TenantError>| matches!(e, Some(TenantError::ConnectionLost));
    if lost(opened.as_ref().err()) || lost(ran.as_ref().err()) || lost(committed.as_ref().err()) {
        return Flight::Failed(TenantError::CommitOutcomeUnknown);
    }
    if let Err(e) = opened {
        // Nothing of the flight committed (the server turned the COMMIT into a ROLLBACK). A
        // connection whose opening found state left on it stays marked, and is closed.
        if matches!(e, TenantError::SessionContextLeft) {
            return Flight::Discarded(e);
        }
        if committed.is_ok() {
            conn.in_transaction = false;
        }
        return Flight::Failed(e);
    }
    // COMMIT answered: the transaction is over either way (committed, or rolled back when
    // the statement failed).
    if committed.is_ok() {
        conn.in_transaction = false;
    }
    match (ran, committed) {
        (Err(e), _) | (Ok(_), Err(e)) => Flight::Failed(e),
        (Ok(value), Ok(())) => Flight::Done(value),
    }
}

/// A boxed `Send` future borrowing for `'a`.
type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends a checked statement on a shared connection (pipelined with the opening and COMMIT).
type Pipelined<ST, R> =
    for<'c> fn(CheckedStatement<ST>, &'c AsyncPgConnection) -> Boxed<'c, QueryResult<R>>;

/// Runs a checked statement in a scoped handle (the stepwise way).
type Stepwise<ST, R> = for<'s> fn(
    &'s mut AsyncOrgScoped,
    OrgId,
    CheckedStatement<ST>,
) -> Boxed<'s, Result<R, TenantError>>;

fn load_pipelined<'c, ST, U>(
    statement: CheckedStatement<ST>,
    conn: &'c AsyncPgConnection,
) -> Boxed<'c, QueryResult<Vec<U>>>
where
    for<'a> CheckedStatement<ST>: LoadQuery<'static, &'a AsyncPgConnection, U>,
    U: Send + 'static,
    ST: 'static,
{
    // Everything inside the block, which its first poll runs up to the send.
    Box::pin(async move {
        let mut conn = conn;
        LoadQuery::internal_load(statement, &mut conn)
            .await?
            .try_collect()
            .await
    })
}

fn load_stepwise<'s, ST, U>(
    scoped: &'s mut AsyncOrgScoped,
    org: OrgId,
    statement: CheckedStatement<ST>,
) -> Boxed<'s, Result<Vec<U>, TenantError>>
where
    CheckedStatement<ST>: LoadQuery<'static, AsyncPgConnection, U>,
    U: Send + 'static,
    ST: 'static,
{
    Box::pin(scoped.run_checked(org, statement, async |s, conn| load_all(conn, s).await))
}

fn execute_pipelined<'c>(
    statement: CheckedStatement<()>,
    conn: &'c AsyncPgConnection,
) -> Boxed<'c, QueryResult<usize>> {
    Box::pin(async move {
        let mut conn = conn;
        ExecuteDsl::execute(statement, &mut conn).await
    })
}

fn execute_stepwise<'s>(
    scoped: &'s mut AsyncOrgScoped,
    org: OrgId,
    statement: CheckedStatement<()>,
) -> Boxed<'s, Result<usize, TenantError>> {
    Box::pin(scoped.run_checked(org, statement, async |s, conn| {
        ExecuteDsl::execute(s, conn).await
    }))
}
