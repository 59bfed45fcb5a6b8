//! Pattern 2, a job over every org, on a real server: the list of orgs from a role that can
//! read their ids and nothing else; one scoped transaction per org, proved from the rows' own
//! transaction ids (`xmin`); one org failing rolls back that org only and the run goes on; a job
//! step handed another org's ids changes nothing.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::NaiveDate;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use saas_patterns::nightly::{JobOptions, list_orgs, mark_overdue, mark_paid, run_overdue_job};
use saas_patterns::schema::invoices;
use saas_patterns::signup::{SignUp, sign_up};
use tenant_core::{OrgId, TenantError, TenantPool, Timeout};
use tenant_testkit::{TestDb, roles};
use uuid::Uuid;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 5).unwrap()
}

/// An org with four invoices, numbered as in every org: INV-001 and INV-002 open and past due
/// (the job marks them), INV-003 open and due later, INV-004 paid and past due.
fn org_with_invoices(pool: &TenantPool, name: &str) -> OrgId {
    let email = format!("owner@{}.example", name.to_lowercase());
    let org = sign_up(
        pool,
        &SignUp {
            org_name: name,
            owner_email: &email,
            plan: "team",
        },
        today(),
    )
    .unwrap()
    .org;
    let day = |d: i64| today() + chrono::TimeDelta::days(d);
    pool.with_org(org, |s| {
        s.execute(
            s.insert_many(
                invoices::table,
                [
                    ("INV-001", day(-30), "open"),
                    ("INV-002", day(-1), "open"),
                    ("INV-003", day(10), "open"),
                    ("INV-004", day(-20), "paid"),
                ]
                .map(|(number, due_on, status)| {
                    (
                        invoices::number.eq(number),
                        invoices::total_cents.eq(120_000),
                        invoices::due_on.eq(due_on),
                        invoices::status.eq(status),
                    )
                }),
            ),
        )
    })
    .unwrap();
    org
}

/// The lister's URL: the testkit's BYPASSRLS login, given `SELECT (id) ON orgs` in this
/// database and nothing else.
fn lister_url(db: &TestDb) -> String {
    db.admin()
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA public TO {r}; GRANT SELECT (id) ON orgs TO {r}",
            r = roles::BYPASSRLS
        ))
        .unwrap();
    db.url_as(roles::BYPASSRLS)
}

/// A row as the admin sees it, with the id of the transaction that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
struct Written {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    org_id: Uuid,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    xmin: String,
}

/// Every invoice and activity entry, with `xmin`, by the admin.
fn written(admin: &mut PgConnection) -> BTreeMap<Uuid, Written> {
    diesel::sql_query(
        "SELECT 'invoices' AS table_name, id, org_id, status, xmin::text AS xmin FROM invoices \
         UNION ALL SELECT 'activity', id, org_id, kind, xmin::text FROM activity",
    )
    .load::<Written>(admin)
    .unwrap()
    .into_iter()
    .map(|w| (w.id, w))
    .collect()
}

fn numbers(marked: &[saas_patterns::nightly::Marked]) -> Vec<&str> {
    let mut n: Vec<&str> = marked.iter().map(|m| m.number.as_str()).collect();
    n.sort_unstable();
    n
}

#[test]
fn the_job_runs_one_transaction_per_org_and_touches_each_org_only_in_its_own() {
    let db = common::database("nightly_per_org");
    let pool = common::pool(&db, 2);
    let mut admin = db.admin();
    let mut seeded: Vec<OrgId> = ["Acme", "Globex", "Initech"]
        .map(|n| org_with_invoices(&pool, n))
        .to_vec();
    seeded.sort();

    // The list: every org, read by a role that can read nothing but the ids.
    let lister = lister_url(&db);
    let orgs = list_orgs(&lister).unwrap();
    assert_eq!(orgs, seeded);
    let mut probe = PgConnection::establish(&lister).unwrap();
    for denied in ["SELECT name FROM orgs", "SELECT count(*) FROM invoices"] {
        let err = probe.batch_execute(denied).unwrap_err().to_string();
        assert!(err.contains("permission denied"), "{denied}: {err}");
    }

    let before = written(&mut admin);
    let report = run_overdue_job(&pool, &orgs, today(), JobOptions::default());
    assert!(report.is_complete(), "{:?}", report.failed);
    assert_eq!(report.done.iter().map(|d| d.org).collect::<Vec<_>>(), orgs);
    for done in &report.done {
        assert_eq!(numbers(&done.marked), ["INV-001", "INV-002"]);
    }

    // From the rows: what the job wrote, grouped by the transaction that wrote it.
    let after = written(&mut admin);
    let mut by_transaction: BTreeMap<&str, BTreeSet<Uuid>> = BTreeMap::new();
    let mut changed = 0;
    for (id, row) in &after {
        if before.get(id) == Some(row) {
            continue;
        }
        changed += 1;
        by_transaction
            .entry(row.xmin.as_str())
            .or_default()
            .insert(row.org_id);
    }
    // Two invoices and one activity entry per org, nothing else.
    assert_eq!(changed, 3 * 3);
    assert_eq!(
        by_transaction.len(),
        3,
        "one transaction per org, not one for all: {by_transaction:?}"
    );
    for orgs_of_one_transaction in by_transaction.values() {
        assert_eq!(orgs_of_one_transaction.len(), 1, "{by_transaction:?}");
    }
    for (id, row) in &after {
        let expected = match before
            .get(id)
            .map(|b| (b.table_name.as_str(), b.status.as_str()))
        {
            Some(("invoices", "open")) if row.status == "overdue" => continue,
            Some(_) => before[id].clone(),
            None => {
                assert_eq!(
                    (row.table_name.as_str(), row.status.as_str()),
                    ("activity", "invoices_overdue")
                );
                continue;
            }
        };
        assert_eq!(row, &expected, "the job changed a row it had no reason to");
    }

    // A second run finds nothing more to do, in any org.
    let again = run_overdue_job(&pool, &orgs, today(), JobOptions::default());
    assert!(again.is_complete());
    assert!(again.done.iter().all(|d| d.marked.is_empty()));
    assert_eq!(written(&mut admin), after);
}

#[test]
fn one_org_failing_rolls_back_that_org_only_and_the_run_goes_on() {
    let db = common::database("nightly_failure");
    let pool = common::pool(&db, 1);
    let acme = org_with_invoices(&pool, "Acme");
    let busy = org_with_invoices(&pool, "Busy");
    let globex = org_with_invoices(&pool, "Globex");
    let mut admin = db.admin();
    let before = written(&mut admin);

    // Another session holds a lock on one of Busy's overdue invoices for the whole run (a
    // long transaction, a person editing it): the job's update in Busy must wait for it.
    // Were the job's wait unbounded, the server would end the holder's session after 20
    // seconds and the job would then finish Busy: the assertions below fail, not hang.
    let mut holder = db.admin();
    holder
        .batch_execute(&format!(
            "SET idle_in_transaction_session_timeout = '20s'; BEGIN; \
             SELECT 1 FROM invoices WHERE org_id = '{}' AND number = 'INV-002' FOR UPDATE",
            busy.as_uuid()
        ))
        .unwrap();
    let options = JobOptions {
        lock_timeout: Duration::from_millis(200),
        ..JobOptions::default()
    };
    let report = run_overdue_job(&pool, &[acme, busy, globex], today(), options);

    assert_eq!(
        report.done.iter().map(|d| d.org).collect::<Vec<_>>(),
        [acme, globex],
        "the orgs before and after the failed one are done"
    );
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].org, busy);
    assert!(
        matches!(report.failed[0].error, TenantError::Timeout(Timeout::Lock)),
        "{:?}",
        report.failed[0].error
    );
    // Busy's transaction rolled back whole: none of its rows changed, INV-001 (not locked)
    // included, and its feed has no entry of the job.
    let after = written(&mut admin);
    for (id, row) in &after {
        if row.org_id == busy.as_uuid() {
            assert_eq!(before.get(id), Some(row), "Busy's row changed");
        }
    }
    for org in [acme, globex] {
        let overdue = after
            .values()
            .filter(|r| r.org_id == org.as_uuid() && r.status == "overdue")
            .count();
        assert_eq!(overdue, 2);
    }

    // The lock gone, the next run finishes Busy and finds nothing left elsewhere.
    holder.batch_execute("ROLLBACK").unwrap();
    let next = run_overdue_job(&pool, &[acme, busy, globex], today(), JobOptions::default());
    assert!(next.is_complete(), "{:?}", next.failed);
    let marked: Vec<(OrgId, usize)> = next.done.iter().map(|d| (d.org, d.marked.len())).collect();
    assert_eq!(marked, [(acme, 0), (busy, 2), (globex, 0)]);
}

/// The attack, as the bug it usually is: a job that keeps state from one org's iteration into
/// the next (here, the ids it marked) and acts on it in the next org's transaction, through the
/// example's own step, through the scoped DSL with another org's id, and through raw SQL on the
/// escape hatch. Nothing crosses: the other org's rows are written only by the other org's
/// transaction.
#[test]
fn a_job_step_handed_another_orgs_ids_changes_nothing() {
    let db = common::database("nightly_attack");
    let pool = common::pool(&db, 1);
    let acme = org_with_invoices(&pool, "Acme");
    let globex = org_with_invoices(&pool, "Globex");
    let mut admin = db.admin();

    let mut carried: Vec<Uuid> = Vec::new();
    let mut paid_elsewhere = Vec::new();
    for org in [acme, globex] {
        let (marked, paid, dsl, raw) = pool
            .with_org(org, |s| {
                let marked = mark_overdue(s, today(), Duration::from_secs(5))?;
                // The bug: ids of the previous org, acted on in this one.
                let paid = mark_paid(s, &carried)?;
                let dsl = match carried.first() {
                    Some(_) => s.execute(
                        s.update(invoices::table)
                            .filter(invoices::org_id.eq(acme.as_uuid()))
                            .set(invoices::status.eq("paid")),
                    )?,
                    None => 0,
                };
                let raw = diesel::sql_query(
                    "UPDATE invoices SET status = 'paid' WHERE id = ANY($1)",
                )
                .bind::<diesel::sql_types::Array<SqlUuid>, _>(&carried)
                .execute(s.raw_connection_unchecked(
                    "test: raw SQL with another org's ids, to show the database layer alone refuses it",
                ))
                .map_err(TenantError::from)?;
                Ok::<_, TenantError>((marked, paid, dsl, raw))
            })
            .unwrap();
        paid_elsewhere.push((org, paid, dsl, raw));
        carried = marked.iter().map(|m| m.id).collect();
    }
    assert_eq!(carried.len(), 2);
    assert_eq!(paid_elsewhere, [(acme, 0, 0, 0), (globex, 0, 0, 0)]);

    // From outside row-level security: Acme's invoices are as Acme's own transaction left them
    // (overdue, written by one transaction, the one that wrote Acme's feed entry).
    let rows = written(&mut admin);
    let acme_invoices: Vec<&Written> = rows
        .values()
        .filter(|r| r.org_id == acme.as_uuid() && r.table_name == "invoices")
        .collect();
    let statuses: BTreeMap<&str, usize> = acme_invoices.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.status.as_str()).or_default() += 1;
        m
    });
    assert_eq!(
        statuses,
        BTreeMap::from([("open", 1), ("overdue", 2), ("paid", 1)])
    );
    let acme_job_xmin: BTreeSet<&str> = rows
        .values()
        .filter(|r| {
            r.org_id == acme.as_uuid() && (r.status == "overdue" || r.status == "invoices_overdue")
        })
        .map(|r| r.xmin.as_str())
        .collect();
    assert_eq!(acme_job_xmin.len(), 1, "{acme_job_xmin:?}");
    let globex_xmins: BTreeSet<&str> = rows
        .values()
        .filter(|r| {
            r.org_id == globex.as_uuid()
                && (r.status == "overdue" || r.status == "invoices_overdue")
        })
        .map(|r| r.xmin.as_str())
        .collect();
    assert!(acme_job_xmin.is_disjoint(&globex_xmins));
}
