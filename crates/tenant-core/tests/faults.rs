//! Faults on the real server: a backend killed in the middle of a scoped transaction, a pool
//! with no connection left, and a panic on one thread while others work. In each, the caller
//! gets a clear error, nothing half-done stays, and the pool goes on with clean connections.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{backend_pid, org_with_customer, setup};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use tenant_core::{OrgId, TenantError, TenantPool};
use two_companies::schema::customers;

fn customer_count(pool: &TenantPool, org: OrgId) -> i64 {
    pool.with_org(org, |s| s.get_result(s.query(customers::table).count()))
        .unwrap()
}

#[test]
fn a_backend_killed_mid_transaction_loses_its_writes_and_the_pool_goes_on() {
    let (db, pool) = setup("fault_kill", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let result = pool.with_org(a, |s| {
        s.execute(s.insert(
            customers::table,
            (
                customers::name.eq("carol"),
                customers::email.eq("carol@example.com"),
            ),
        ))?;
        let pid = backend_pid(s);
        // An administrator (or the server) ends the backend while the transaction is open.
        db.admin()
            .batch_execute(&format!("SELECT pg_terminate_backend({pid})"))
            .unwrap();
        s.get_result::<i64, _>(s.query(customers::table).count())
    });
    let err = result.unwrap_err();
    assert!(
        matches!(&err, TenantError::Database(_)),
        "a database error, not a panic or a silent success: {err:?}"
    );
    // The insert was never committed, and the next checkout is a new, clean connection.
    assert_eq!(customer_count(&pool, a), 1);
    let fresh = pool
        .with_org(a, |s| {
            let setting: Option<String> = s.get_result(
                s.read_global(two_companies::schema::currencies::table)
                    .select(diesel::dsl::sql::<
                        diesel::sql_types::Nullable<diesel::sql_types::Text>,
                    >(
                        "current_setting('tenant.org_id', true)"
                    ))
                    .limit(1),
            )?;
            Ok::<_, TenantError>(setting)
        })
        .unwrap();
    assert_eq!(
        fresh,
        Some(a.to_string()),
        "the org of this transaction, nothing else"
    );
}

#[test]
fn an_exhausted_pool_times_out_with_an_error_naming_its_size_and_timeout() {
    let (db, _) = setup("fault_exhausted", 1);
    let pool = TenantPool::builder(db.app_url(), &two_companies::REGISTRY)
        .max_size(1)
        .connection_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let held = pool.begin(a).unwrap();
    let err = pool.begin(a).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, TenantError::Pool(_))
            && message.contains("within 300ms")
            && message.contains("pool of at most 1"),
        "{message}"
    );
    held.rollback().unwrap();
    // Released: the pool serves again.
    assert_eq!(customer_count(&pool, a), 1);
}

#[test]
fn a_panic_in_one_thread_leaves_the_others_and_the_pool_clean() {
    let (_db, pool) = setup("fault_panic", 4);
    let pool = Arc::new(pool);
    let orgs: Vec<OrgId> = (0..4)
        .map(|i| org_with_customer(&pool, &format!("org {i}"), &format!("c{i}")).0)
        .collect();
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = orgs
        .iter()
        .enumerate()
        .map(|(i, &org)| {
            let (pool, barrier) = (Arc::clone(&pool), Arc::clone(&barrier));
            std::thread::spawn(move || {
                pool.with_org(org, |s| {
                    s.execute(s.insert(
                        customers::table,
                        (
                            customers::name.eq(format!("t{i}")),
                            customers::email.eq(format!("t{i}@x")),
                        ),
                    ))?;
                    // Every thread is inside its transaction before thread 0 panics.
                    barrier.wait();
                    if i == 0 {
                        panic!("a bug in one request handler");
                    }
                    s.get_result::<i64, _>(s.query(customers::table).count())
                })
            })
        })
        .collect();
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
    assert!(outcomes[0].is_err(), "thread 0 panicked");
    for (i, o) in outcomes.iter().enumerate().skip(1) {
        let seen = o.as_ref().ok().and_then(|r| r.as_ref().ok()).copied();
        assert_eq!(seen, Some(2), "thread {i} sees its own two customers");
    }
    // The panicking thread's insert is gone; the others' committed; no org saw another's row.
    let counts: Vec<i64> = orgs.iter().map(|&o| customer_count(&pool, o)).collect();
    assert_eq!(counts, [1, 2, 2, 2]);
}

#[test]
fn a_deadlock_between_two_writers_is_retried_and_both_commit() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let (_db, pool) = setup("fault_deadlock", 2);
    let (a, x) = org_with_customer(&pool, "A", "x");
    let y = pool
        .with_org(a, |s| {
            s.get_result::<uuid::Uuid, _>(
                s.insert(
                    customers::table,
                    (customers::name.eq("y"), customers::email.eq("y@x")),
                )
                .returning(customers::id),
            )
        })
        .unwrap();
    let pool = Arc::new(pool);
    let barrier = Arc::new(Barrier::new(2));
    let attempts = Arc::new(AtomicU32::new(0));
    let writers: Vec<_> = [(x, y), (y, x)]
        .into_iter()
        .enumerate()
        .map(|(t, (first, second))| {
            let (pool, barrier, attempts) = (
                Arc::clone(&pool),
                Arc::clone(&barrier),
                Arc::clone(&attempts),
            );
            std::thread::spawn(move || {
                let mut tries = 0;
                pool.with_org_retry(a, 3, |s| {
                    tries += 1;
                    attempts.fetch_add(1, Ordering::SeqCst);
                    let name = format!("writer {t}");
                    s.execute(
                        s.update(customers::table)
                            .filter(customers::id.eq(first))
                            .set(customers::name.eq(&name)),
                    )?;
                    // The first attempts lock one row each, then want the other's: a deadlock.
                    if tries == 1 {
                        barrier.wait();
                    }
                    s.execute(
                        s.update(customers::table)
                            .filter(customers::id.eq(second))
                            .set(customers::name.eq(&name)),
                    )
                })
            })
        })
        .collect();
    for w in writers {
        assert_eq!(w.join().unwrap().unwrap(), 1);
    }
    // PostgreSQL broke the deadlock by rolling one back; that one ran again.
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    // A constraint violation is not retried.
    let mut tried = 0;
    let err = pool
        .with_org_retry(a, 5, |s| {
            tried += 1;
            s.execute(s.insert(
                customers::table,
                (customers::name.eq("again"), customers::email.eq("y@x")),
            ))
        })
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(tried, 1);
}
