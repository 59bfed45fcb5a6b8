//! The async path (`AsyncTenantPool`, `AsyncOrgScoped`) against a real server, written as
//! attacks: two orgs' tasks at once on a small pool, a handle dropped or a future cancelled
//! mid-transaction, a statement built for one org sent through another's handle, the pool
//! built for a role or key it must refuse. Each asserts what reached the database (read as
//! the admin, past row-level security), not only what the handle returned.

#![cfg(feature = "async")]
// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{committed, customer, key, story};
use diesel::prelude::*;
use tenant_core::{
    AsyncTenantPool, ContextKey, Isolation, OrgId, TenantError, TenantPool, UnsafeConfig,
};
use tenant_testkit::{TestDb, roles};
use two_companies::schema::{customers, orgs};
use uuid::Uuid;

async fn setup(hint: &str, max: u32) -> (TestDb, AsyncTenantPool) {
    let db = story(hint);
    let pool = TenantPool::builder(db.app_url(), &two_companies::REGISTRY, key())
        .max_size(max)
        .build_async()
        .await
        .expect("async pool as tenant_app");
    (db, pool)
}

async fn org_named(pool: &AsyncTenantPool, name: &str) -> OrgId {
    let org = OrgId::new_random();
    pool.with_org(org, async |s| {
        s.execute(s.insert(orgs::table, orgs::name.eq(name))).await
    })
    .await
    .unwrap();
    org
}

/// Rows of `customers` per org, as the admin sees them (no row-level security).
fn rows_by_org(db: &TestDb) -> Vec<(Uuid, String)> {
    customers::table
        .select((customers::org_id, customers::name))
        .order(customers::name)
        .load(&mut db.admin())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_orgs_tasks_at_once_write_and_read_only_their_own_rows() {
    let (db, pool) = setup("async_two_orgs", 4).await;
    let a = org_named(&pool, "A").await;
    let b = org_named(&pool, "B").await;
    let pool = Arc::new(pool);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let pool = Arc::clone(&pool);
        let (org, tag) = if i % 2 == 0 { (a, "a") } else { (b, "b") };
        tasks.push(tokio::spawn(async move {
            pool.with_org(org, async |s| {
                s.execute(s.insert(customers::table, customer(&format!("{tag}-{i:03}"))))
                    .await?;
                let seen: Vec<(Uuid, String)> = s
                    .load(
                        s.query(customers::table)
                            .select((customers::org_id, customers::name)),
                    )
                    .await?;
                Ok::<_, TenantError>(seen)
            })
            .await
            .map(|seen| (org, tag, seen))
        }));
    }
    for task in tasks {
        let (org, tag, seen) = task.await.unwrap().unwrap();
        assert!(!seen.is_empty());
        for (row_org, name) in seen {
            assert_eq!(row_org, org.as_uuid(), "{name} seen by org {tag}");
            assert!(name.starts_with(tag), "{name} seen by org {tag}");
        }
    }
    // What reached the database: each row in the org of the task that wrote it.
    let rows = rows_by_org(&db);
    assert_eq!(rows.len(), 200);
    for (org, name) in rows {
        let expected = if name.starts_with('a') { a } else { b };
        assert_eq!(org, expected.as_uuid(), "{name}");
    }
    let m = pool.metrics();
    assert_eq!(m.transactions_committed, 202, "{m:?}");
    assert_eq!(m.transactions_rolled_back, 0, "{m:?}");
}

#[tokio::test]
async fn a_statement_built_for_one_org_is_refused_on_another_orgs_handle() {
    let (db, pool) = setup("async_mismatch", 2).await;
    let a = org_named(&pool, "A").await;
    let b = org_named(&pool, "B").await;
    let on_a = pool.begin(a).await.unwrap();
    let mut on_b = pool.begin(b).await.unwrap();
    let built_for_a = on_a.insert(customers::table, customer("smuggled"));
    let err = on_b.execute(built_for_a).await.unwrap_err();
    assert!(matches!(err, TenantError::OrgMismatch), "{err:?}");
    // Refused before it was sent: b's transaction is still usable and commits.
    on_b.execute(on_b.insert(customers::table, customer("b-own")))
        .await
        .unwrap();
    on_b.commit().await.unwrap();
    on_a.rollback().await.unwrap();
    assert_eq!(committed(&db, "smuggled"), 0);
    assert_eq!(rows_by_org(&db), vec![(b.as_uuid(), "b-own".to_owned())]);
}

#[tokio::test]
async fn another_orgs_rows_are_not_reachable_by_id() {
    let (_db, pool) = setup("async_by_id", 2).await;
    let a = org_named(&pool, "A").await;
    let b = org_named(&pool, "B").await;
    let id = Uuid::now_v7();
    pool.with_org(a, async |s| {
        s.execute(s.insert(customers::table, (customers::id.eq(id), customer("alice"))))
            .await
    })
    .await
    .unwrap();
    // B asks for A's row by its id, reads, updates and deletes it: nothing of it.
    let (read, updated, deleted) = pool
        .with_org(b, async |s| {
            let read: Option<String> = s
                .first(
                    s.query(customers::table)
                        .filter(customers::id.eq(id))
                        .select(customers::name),
                )
                .await?;
            let updated = s
                .execute(
                    s.update(customers::table)
                        .filter(customers::id.eq(id))
                        .set(customers::name.eq("mallory")),
                )
                .await?;
            let deleted = s
                .execute(s.delete(customers::table).filter(customers::id.eq(id)))
                .await?;
            Ok::<_, TenantError>((read, updated, deleted))
        })
        .await
        .unwrap();
    assert_eq!((read, updated, deleted), (None, 0, 0));
    let name: String = pool
        .with_org(a, async |s| {
            s.get_result(
                s.query(customers::table)
                    .filter(customers::id.eq(id))
                    .select(customers::name),
            )
            .await
        })
        .await
        .unwrap();
    assert_eq!(name, "alice");
}

/// What the next transaction on a pool of one connection sees of customers named `name`.
async fn seen_by_next(pool: &AsyncTenantPool, org: OrgId, name: &'static str) -> i64 {
    pool.with_org(org, async |s| {
        s.get_result(
            s.query(customers::table)
                .filter(customers::name.eq(name))
                .count(),
        )
        .await
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_handle_dropped_unfinished_commits_nothing_and_leaves_nothing_to_the_next() {
    let (db, pool) = setup("async_dropped", 1).await;
    let a = org_named(&pool, "A").await;
    let mut s = pool.begin(a).await.unwrap();
    s.execute(s.insert(customers::table, customer("dropped")))
        .await
        .unwrap();
    drop(s);
    assert_eq!(committed(&db, "dropped"), 0);
    assert_eq!(pool.metrics().transactions_rolled_back, 1);
    // The pool has one connection: the next transaction runs on it once the rollback the
    // drop started came back (or on a new one, had it failed), never inside the dropped
    // transaction, where the row would be visible.
    assert_eq!(seen_by_next(&pool, a, "dropped").await, 0);
    assert_eq!(committed(&db, "dropped"), 0);
    pool.with_org(a, async |s| {
        s.execute(s.insert(customers::table, customer("after")))
            .await
    })
    .await
    .unwrap();
    assert_eq!(committed(&db, "after"), 1);
}

#[tokio::test]
async fn a_future_cancelled_mid_transaction_commits_nothing() {
    let (db, pool) = setup("async_cancelled", 1).await;
    let a = org_named(&pool, "A").await;
    let (inserted_tx, inserted_rx) = tokio::sync::oneshot::channel::<()>();
    let work = pool.with_org(a, async |s| {
        s.execute(s.insert(customers::table, customer("cancelled")))
            .await?;
        let _ = inserted_tx.send(());
        // Never finishes: the caller gives up (a client disconnect, a timeout).
        std::future::pending::<()>().await;
        Ok::<_, TenantError>(())
    });
    tokio::select! {
        _ = work => panic!("the transaction cannot finish"),
        _ = inserted_rx => {}
    }
    assert_eq!(committed(&db, "cancelled"), 0);
    assert_eq!(seen_by_next(&pool, a, "cancelled").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_cancelled_with_its_statement_in_flight_closes_the_connection() {
    let (db, pool) = setup("async_in_flight", 1).await;
    let a = org_named(&pool, "A").await;
    // The admin holds the table: the scoped insert waits on the lock, in flight.
    let mut admin = db.admin();
    diesel::connection::SimpleConnection::batch_execute(
        &mut admin,
        "BEGIN; LOCK TABLE customers IN ACCESS EXCLUSIVE MODE",
    )
    .unwrap();
    let url = db.admin_url();
    let waiting = tokio::task::spawn_blocking(move || {
        // Until the server shows the application role's statement waiting on the lock (a
        // condition, not a delay; bounded).
        let mut watcher = diesel::PgConnection::establish(&url).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let n: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                "(SELECT count(*) FROM pg_stat_activity WHERE usename = 'tenant_app' \
                 AND wait_event_type = 'Lock')",
            ))
            .get_result(&mut watcher)
            .unwrap();
            if n > 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the insert never waited"
            );
            std::thread::yield_now();
        }
    });
    let work = pool.with_org(a, async |s| {
        s.execute(s.insert(customers::table, customer("in-flight")))
            .await
    });
    tokio::select! {
        _ = work => panic!("the insert cannot finish while the table is locked"),
        seen = waiting => seen.unwrap(),
    }
    // Dropped with the insert in flight: closed at once, not returned to the pool.
    assert_eq!(pool.state(), (0, 0));
    diesel::connection::SimpleConnection::batch_execute(&mut admin, "ROLLBACK").unwrap();
    assert_eq!(seen_by_next(&pool, a, "in-flight").await, 0);
    assert_eq!(committed(&db, "in-flight"), 0);
}

#[tokio::test]
async fn a_failed_statement_aborts_the_transaction_and_commit_refuses() {
    let (db, pool) = setup("async_aborted", 2).await;
    let a = org_named(&pool, "A").await;
    let id = Uuid::now_v7();
    let mut s = pool.begin(a).await.unwrap();
    s.execute(s.insert(customers::table, (customers::id.eq(id), customer("first"))))
        .await
        .unwrap();
    let err = s
        .execute(s.insert(customers::table, (customers::id.eq(id), customer("dup"))))
        .await
        .unwrap_err();
    assert!(matches!(err, TenantError::Database(_)), "{err:?}");
    let later = s
        .execute(s.insert(customers::table, customer("later")))
        .await
        .unwrap_err();
    assert!(
        matches!(later, TenantError::TransactionAborted),
        "{later:?}"
    );
    assert!(matches!(
        s.commit().await,
        Err(TenantError::TransactionAborted)
    ));
    for name in ["first", "dup", "later"] {
        assert_eq!(committed(&db, name), 0, "{name}");
    }
}

#[tokio::test]
async fn the_signed_context_verifies_the_handles_org() {
    let (_db, pool) = setup("async_verify", 1).await;
    let a = org_named(&pool, "A").await;
    let mut s = pool
        .begin_isolated(a, Isolation::Serializable)
        .await
        .unwrap();
    s.verify_context().await.unwrap();
    s.commit().await.unwrap();
}

#[tokio::test]
async fn the_async_pool_refuses_what_the_sync_pool_refuses() {
    let (db, _pool) = setup("async_refusals", 1).await;
    let built = TenantPool::builder(db.url_as(roles::BYPASSRLS), &two_companies::REGISTRY, key())
        .build_async()
        .await;
    match built {
        Err(TenantError::UnsafeConfig(reason)) => assert_eq!(
            reason,
            UnsafeConfig::BypassRls {
                role: roles::BYPASSRLS.into()
            }
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A key the database does not hold: the start-up token round trip refuses it.
    let stranger = ContextKey::new("stranger", &[0x11; 32]).unwrap();
    let built = TenantPool::builder(db.app_url(), &two_companies::REGISTRY, stranger)
        .build_async()
        .await;
    match built {
        Err(TenantError::ContextKey(message)) => assert!(
            message.starts_with("the database does not accept this service's tokens (key stranger"),
            "{message}"
        ),
        other => panic!("expected the key refused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_retryable_failure_runs_the_transaction_again_and_nothing_of_the_failed_attempt_stays() {
    let (db, pool) = setup("async_retry", 1).await;
    let a = org_named(&pool, "A").await;
    let mut attempt = 0;
    let value = pool
        .with_org_retry(a, 3, async |s| {
            attempt += 1;
            s.execute(s.insert(customers::table, customer(&format!("try-{attempt}"))))
                .await?;
            if attempt == 1 {
                // What PostgreSQL reports for a serialization failure (40001).
                return Err(TenantError::Database(tenant_core::DbError {
                    kind: "serialization failure",
                    message: "could not serialize access due to concurrent update".into(),
                    constraint: None,
                    table: None,
                }));
            }
            Ok(attempt)
        })
        .await
        .unwrap();
    assert_eq!(value, 2);
    assert_eq!(
        committed(&db, "try-1"),
        0,
        "the failed attempt was rolled back"
    );
    assert_eq!(committed(&db, "try-2"), 1);
    assert_eq!(pool.metrics().retries, 1);
    // Not retryable: returned at once, after one attempt.
    let mut tries = 0;
    let err = pool
        .with_org_retry(a, 3, async |_| {
            tries += 1;
            Err::<(), _>(TenantError::OrgMismatch)
        })
        .await
        .unwrap_err();
    assert!(matches!(err, TenantError::OrgMismatch), "{err:?}");
    assert_eq!(tries, 1);
}
