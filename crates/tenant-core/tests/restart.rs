//! The server restarted, and down for a while, under a pool that holds connections: on a
//! cluster of the test's own (from the machine's binaries, like `cargo xtask test`'s), since
//! the shared one serves every other test. The pool recovers by itself: the first request
//! after the restart succeeds, on a new connection, with its own org and nothing stale; while
//! the server is down, checkouts fail within the pool's timeout and say so.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{Integer, Nullable, Text};
use tenant_core::{OrgId, TenantError, TenantPool};
use tenant_testkit::TestDb;
use tenant_testkit::cluster::Cluster;
use two_companies::schema::{customers, orgs};

/// Stops the test's cluster whatever happens (its data stays for the next run).
struct Running(Cluster);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}

/// Backend pid and verified org of the transaction, and the org ids of the rows it sees.
fn look(
    pool: &TenantPool,
    org: OrgId,
) -> Result<(i32, Option<String>, Vec<uuid::Uuid>), TenantError> {
    pool.with_org(org, |s| {
        let raw = s.raw_connection_unchecked("test: which backend, which setting");
        let pid: i32 =
            diesel::select(diesel::dsl::sql::<Integer>("pg_backend_pid()")).get_result(raw)?;
        let setting: Option<String> = diesel::select(diesel::dsl::sql::<Nullable<Text>>(
            "tenant_context.verified_org()::text",
        ))
        .get_result(raw)?;
        let seen = s.load(s.query(customers::table).select(customers::org_id))?;
        Ok((pid, setting, seen))
    })
}

#[test]
fn after_a_server_restart_the_pool_recovers_with_new_connections_and_no_stale_context() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap();
    let cluster = Running(Cluster::named(&root, "tenant-pg-restart").start().unwrap());
    let db = TestDb::on(&cluster.0.url(), "restart");
    two_companies::migrate(&db.admin_url()).unwrap();
    db.add_test_context_key();
    let pool = TenantPool::builder(
        db.app_url(),
        &two_companies::REGISTRY,
        tenant_core::context::ContextKey::parse(tenant_testkit::TEST_CONTEXT_KEY).unwrap(),
    )
    .max_size(3)
    .connection_timeout(Duration::from_millis(1500))
    .build()
    .unwrap();
    let orgs: Vec<OrgId> = (0..3).map(|_| OrgId::new_random()).collect();
    for (i, &org) in orgs.iter().enumerate() {
        pool.with_org(org, |s| {
            s.execute(s.insert(orgs::table, orgs::name.eq(format!("org {i}"))))?;
            s.execute(s.insert(
                customers::table,
                (
                    customers::name.eq(format!("c{i}")),
                    customers::email.eq(format!("c{i}@x")),
                ),
            ))
        })
        .unwrap();
    }
    // The pool holds three open connections, idle.
    let held: Vec<_> = orgs.iter().map(|&o| pool.begin(o).unwrap()).collect();
    let before: Vec<i32> = held
        .into_iter()
        .map(|mut s| {
            let pid = diesel::select(diesel::dsl::sql::<Integer>("pg_backend_pid()"))
                .get_result(s.raw_connection_unchecked("test: pid"))
                .unwrap();
            s.commit().unwrap();
            pid
        })
        .collect();
    assert_eq!(pool.state(), (3, 3), "three connections, all idle");

    cluster.0.restart().unwrap();

    // The first request after the restart goes through: the dead connections are discarded
    // (nothing ran on them) and a new one serves it, with this request's org only.
    let (pid, setting, seen) = look(&pool, orgs[0]).unwrap();
    assert!(
        !before.contains(&pid),
        "a new backend, not one from before the restart"
    );
    assert_eq!(setting, Some(orgs[0].to_string()));
    assert_eq!(seen, [orgs[0].as_uuid()]);
    // Many requests at once, every org: each sees its own row and nothing else.
    let pool = Arc::new(pool);
    let barrier = Arc::new(Barrier::new(6));
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let (pool, barrier, org) = (Arc::clone(&pool), Arc::clone(&barrier), orgs[t % 3]);
            std::thread::spawn(move || {
                barrier.wait();
                (org, look(&pool, org).unwrap())
            })
        })
        .collect();
    for t in threads {
        let (org, (_, setting, seen)) = t.join().unwrap();
        assert_eq!(setting, Some(org.to_string()));
        assert_eq!(seen, [org.as_uuid()]);
    }

    // Down: a checkout fails within the pool's timeout, naming it; nothing hangs.
    cluster.0.stop().unwrap();
    let err = look(&pool, orgs[1]).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, TenantError::Pool(_) | TenantError::ConnectionLost)
            && (message.contains("within 1.5s")
                || message.contains("connection to the server was lost")),
        "{message}"
    );
    // Up again: served, with everything committed before still there.
    let cluster = Running(Cluster::named(&root, "tenant-pg-restart").start().unwrap());
    let (_, setting, seen) = look(&pool, orgs[1]).unwrap();
    assert_eq!(
        (setting, seen),
        (Some(orgs[1].to_string()), vec![orgs[1].as_uuid()])
    );
    drop(db);
    drop(cluster);
}
