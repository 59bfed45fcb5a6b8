//! The async pool under a server restart: on a cluster of the test's own (the shared one serves
//! every other test). Every idle connection of the pool is dead after the restart; the first
//! transaction after it must succeed on a new connection, in its own org, the dead ones
//! discarded without a statement run on them.

#![cfg(feature = "async")]
// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};
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

#[tokio::test]
async fn after_a_server_restart_the_async_pool_recovers_on_new_connections() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap();
    let cluster = Running(
        Cluster::named(&root, "tenant-pg-async-restart")
            .start()
            .unwrap(),
    );
    let db = TestDb::on(&cluster.0.url(), "async_restart");
    two_companies::migrate(&db.admin_url()).unwrap();
    db.add_test_context_key();
    let pool = TenantPool::builder(
        db.app_url(),
        &two_companies::REGISTRY,
        tenant_core::context::ContextKey::parse(tenant_testkit::TEST_CONTEXT_KEY).unwrap(),
    )
    .max_size(3)
    .connection_timeout(Duration::from_millis(1500))
    .build_async()
    .await
    .unwrap();
    let orgs: Vec<OrgId> = (0..3).map(|_| OrgId::new_random()).collect();
    for (i, &org) in orgs.iter().enumerate() {
        pool.with_org(org, async |s| {
            s.execute(s.insert(orgs::table, orgs::name.eq(format!("org {i}"))))
                .await?;
            s.execute(s.insert(
                customers::table,
                (
                    customers::name.eq(format!("c{i}")),
                    customers::email.eq(format!("c{i}@x")),
                ),
            ))
            .await
        })
        .await
        .unwrap();
    }
    // Three connections open at once, then idle in the pool.
    let mut held = Vec::new();
    for &org in &orgs {
        held.push(pool.begin(org).await.unwrap());
    }
    for s in held {
        s.commit().await.unwrap();
    }
    assert_eq!(pool.state(), (3, 3));

    let restarted = cluster.0.restart();
    restarted.unwrap();

    // Each org's first transaction after the restart: the right rows, on a new connection.
    for (i, &org) in orgs.iter().enumerate() {
        let seen: Vec<(uuid::Uuid, String)> = pool
            .with_org(org, async |s| {
                s.load(
                    s.query(customers::table)
                        .select((customers::org_id, customers::name)),
                )
                .await
            })
            .await
            .unwrap();
        assert_eq!(seen, vec![(org.as_uuid(), format!("c{i}"))]);
    }
    let m = pool.metrics();
    assert!(m.connections_discarded >= 1, "{m:?}");
    assert_eq!(
        m.errors_of("connection_lost"),
        m.connections_discarded,
        "{m:?}"
    );
}
