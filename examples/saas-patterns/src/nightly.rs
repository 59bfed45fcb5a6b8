//! Pattern 2: a background job over every org. The example is the nightly job that marks
//! overdue invoices.
//!
//! **One scoped transaction per org.** [`run_overdue_job`] takes the orgs one at a time and
//! runs [`mark_overdue`] in a transaction of that org on the application's pool, as the
//! application role: the org filter of the scoped DSL and the row-level security policies hold
//! for the job exactly as for a request. Never one transaction for every org (one failure
//! would undo every org's work, and the work would need a role that sees every org), never a
//! role that bypasses row-level security for the work (a bug in the job would then reach every
//! org). `tests/nightly.rs` proves it from the rows themselves: every row the job changed
//! carries the id of the transaction that wrote it (`xmin`), and the rows of one transaction
//! all belong to one org.
//!
//! **Where the list of orgs comes from.** Not from the application role: `orgs` is a tenant
//! table, and every role without `BYPASSRLS` sees at most the row of its own org (the
//! generated restrictive policy applies to every role). [`list_orgs`] reads the ids with a
//! role of their own that has `BYPASSRLS` and `SELECT (id) ON orgs` and nothing else: it can
//! learn which orgs exist, not what they hold, and it does no work; its connection is closed
//! before the first org's transaction opens. (The job holds the service's context key anyway,
//! with which it may open a transaction of any org: the point of the per-org transactions is
//! that each unit of work, and each bug in it, stays inside one org.) A list from elsewhere
//! (a billing system) works the same; an id that names no org gets a transaction that sees
//! nothing and changes nothing.
//!
//! **When one org fails.** Its transaction rolls back, all of it, and the job goes on with the
//! next org; the failure is in the [`JobReport`] with the error, which carries no row data.
//! Serialization failures and deadlocks are retried ([`TenantPool::with_org_retry`]).
//! Each org's transaction waits for row locks at most [`JobOptions::lock_timeout`]: without a
//! bound, one org whose rows a long transaction holds would stall the job for every org after
//! it. The tests hold a lock on one org's invoice while the job runs: that org is reported
//! (`lock_timeout`), its rows are unchanged, and the orgs before and after it are done.

use std::time::Duration;

use chrono::NaiveDate;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use tenant_core::{OrgId, OrgScoped, ScopedConnection, TenantError, TenantPool};
use uuid::Uuid;

use crate::schema::{activity, invoices, orgs};

/// Why the orgs could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The lister's database could not be reached.
    #[error("cannot connect to list the orgs: {0}")]
    Connect(#[from] diesel::ConnectionError),
    /// The query failed (a role without the grant gets "permission denied").
    #[error("cannot list the orgs: {0}")]
    Query(#[from] diesel::result::Error),
    /// A row holds the nil uuid, which is no org id.
    #[error("an org id is the nil uuid")]
    NilOrg,
}

/// The ids of every org, in id order, read in a read-only transaction on a connection of its
/// own with `lister_url`: a role with `BYPASSRLS` and `SELECT (id) ON orgs` only (see the
/// module docs). The connection is closed when this returns.
///
/// # Errors
/// [`ListError`].
pub fn list_orgs(lister_url: &str) -> Result<Vec<OrgId>, ListError> {
    let mut conn = PgConnection::establish(lister_url)?;
    let ids: Vec<Uuid> = conn
        .build_transaction()
        .read_only()
        .run(|c| orgs::table.select(orgs::id).order(orgs::id).load(c))?;
    ids.into_iter()
        .map(|id| OrgId::new(id).map_err(|_| ListError::NilOrg))
        .collect()
}

/// How the job runs each org.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobOptions {
    /// The longest one org's transaction waits for a row lock before it fails (and is
    /// reported).
    pub lock_timeout: Duration,
    /// Attempts per org when PostgreSQL rolled the transaction back for a serialization
    /// failure or a deadlock.
    pub attempts: u32,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(5),
            attempts: 3,
        }
    }
}

/// An invoice the job marked overdue.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct Marked {
    /// Key.
    pub id: Uuid,
    /// Number.
    pub number: String,
}

/// One org the job finished: its transaction committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgDone {
    /// The org.
    pub org: OrgId,
    /// The invoices it marked overdue.
    pub marked: Vec<Marked>,
}

/// One org the job could not finish: its transaction rolled back, nothing of it stayed.
#[derive(Debug)]
pub struct OrgFailed {
    /// The org.
    pub org: OrgId,
    /// Why (no row data: [`TenantError`] never carries any).
    pub error: TenantError,
}

/// What a run did, org by org, in the order of the list.
#[derive(Debug, Default)]
pub struct JobReport {
    /// The orgs whose transaction committed.
    pub done: Vec<OrgDone>,
    /// The orgs whose transaction failed.
    pub failed: Vec<OrgFailed>,
}

impl JobReport {
    /// Whether every org was done.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Runs [`mark_overdue`] for each org of `orgs`, each in a scoped transaction of its own on
/// `pool`; a failed org is reported and the run goes on.
pub fn run_overdue_job(
    pool: &TenantPool,
    orgs: &[OrgId],
    today: NaiveDate,
    options: JobOptions,
) -> JobReport {
    let mut report = JobReport::default();
    for &org in orgs {
        match pool.with_org_retry(org, options.attempts, |s| {
            mark_overdue(s, today, options.lock_timeout)
        }) {
            Ok(marked) => report.done.push(OrgDone { org, marked }),
            Err(error) => report.failed.push(OrgFailed { org, error }),
        }
    }
    report
}

/// In the handle's org: every open invoice due before `today` becomes overdue since `today`,
/// and the org's activity feed says which. Waits at most `lock_timeout` for a row lock.
///
/// # Errors
/// [`TenantError`]; the caller's transaction must then roll back (`with_org` does).
pub fn mark_overdue<C: ScopedConnection>(
    s: &mut OrgScoped<C>,
    today: NaiveDate,
    lock_timeout: Duration,
) -> Result<Vec<Marked>, TenantError> {
    bound_lock_wait(s, lock_timeout)?;
    let marked: Vec<Marked> = s.load(
        s.update(invoices::table)
            .filter(invoices::status.eq("open"))
            .filter(invoices::due_on.lt(today))
            .set((
                invoices::status.eq("overdue"),
                invoices::overdue_since.eq(today),
            ))
            .returning((invoices::id, invoices::number)),
    )?;
    if !marked.is_empty() {
        let numbers: Vec<&str> = marked.iter().map(|m| m.number.as_str()).collect();
        s.execute(s.insert(
            activity::table,
            (
                activity::kind.eq("invoices_overdue"),
                activity::detail.eq(format!(
                    "{} invoices became overdue: {}",
                    marked.len(),
                    numbers.join(", ")
                )),
            ),
        ))?;
    }
    Ok(marked)
}

/// In the handle's org: the invoices of `ids` that are not paid become paid; returns how many.
/// An id of another org's invoice changes nothing (the scoped update adds the org, and the
/// policy hides the row).
///
/// # Errors
/// [`TenantError`].
pub fn mark_paid<C: ScopedConnection>(
    s: &mut OrgScoped<C>,
    ids: &[Uuid],
) -> Result<usize, TenantError> {
    s.execute(
        s.update(invoices::table)
            .filter(invoices::id.eq_any(ids))
            .filter(invoices::status.ne("paid"))
            .set((
                invoices::status.eq("paid"),
                invoices::overdue_since.eq(None::<NaiveDate>),
            )),
    )
}

/// `SET LOCAL lock_timeout` for the rest of the handle's transaction. The scoped DSL has no
/// statement for it (the checker sends DML only), so it goes through the named escape hatch,
/// with a value formatted here from an integer: nothing of the caller's reaches the text.
fn bound_lock_wait<C: ScopedConnection>(
    s: &mut OrgScoped<C>,
    lock_timeout: Duration,
) -> Result<(), TenantError> {
    let ms = lock_timeout.as_millis().clamp(1, i32::MAX as u128);
    s.raw_connection_unchecked(
        "nightly job: bound the wait for row locks in this org's transaction, so that one busy org cannot stall the run (SET LOCAL ends with the transaction)",
    )
    .batch_execute(&format!("SET LOCAL lock_timeout = {ms}"))
    .map_err(TenantError::from)
}
