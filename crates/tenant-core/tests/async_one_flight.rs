//! One-flight transactions of the async path (`AsyncTenantPool::load_one`, `execute_one`)
//! against a real server, through a proxy that counts the client's round trips: a statement
//! the connection has prepared goes out with the opening and COMMIT in one flight, and still
//! runs inside the transaction, in its org (were it sent after the COMMIT, it would run with
//! no org and find nothing).

#![cfg(feature = "async")]
// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{committed, customer, key, story};
use diesel::prelude::*;
use tenant_core::{AsyncTenantPool, OrgId, OrgStatements, TenantError, TenantPool};
use tenant_testkit::TestDb;
use tenant_testkit::flight_proxy::FlightProxy;
use two_companies::schema::{customers, orgs};
use uuid::Uuid;

/// A pool of one connection through a flight-counting proxy.
async fn setup(hint: &str) -> (TestDb, FlightProxy, AsyncTenantPool) {
    let db = story(hint);
    let proxy = FlightProxy::start(&db.app_url()).unwrap();
    let pool = TenantPool::builder(proxy.url(&db.app_url()), &two_companies::REGISTRY, key())
        .max_size(1)
        .build_async()
        .await
        .unwrap();
    (db, proxy, pool)
}

async fn org_with(pool: &AsyncTenantPool, name: &str) -> OrgId {
    let org = OrgId::new_random();
    pool.with_org(org, async |s| {
        s.execute(s.insert(orgs::table, orgs::name.eq(name)))
            .await?;
        s.execute(s.insert(customers::table, customer(name))).await
    })
    .await
    .unwrap();
    org
}

/// The customers' names of the org, as the closure of `load_one`.
macro_rules! names {
    () => {
        |q: &OrgStatements| {
            q.query(customers::table)
                .select(customers::name)
                .order(customers::name)
        }
    };
}

// The default current-thread runtime: every request of a flight is queued before the
// connection task writes any, so the proxy's count is exact.
#[tokio::test]
async fn a_prepared_statement_goes_out_with_the_opening_and_commit_in_one_flight() {
    let (_db, proxy, pool) = setup("one_flight_load").await;
    let a = org_with(&pool, "acme").await;
    let b = org_with(&pool, "bolt").await;

    let before = proxy.flights();
    let rows: Vec<String> = pool.load_one(a, names!()).await.unwrap();
    assert_eq!(rows, ["acme"]);
    // New on this connection: the opening, the prepare, the statement, COMMIT.
    assert_eq!(proxy.flights() - before, 4);

    // Prepared now: one flight each, alternating orgs on the one connection, and each sees
    // its own org's row (the statement ran inside its transaction).
    for (org, name) in [(b, "bolt"), (a, "acme"), (b, "bolt")] {
        let before = proxy.flights();
        let rows: Vec<String> = pool.load_one(org, names!()).await.unwrap();
        assert_eq!(proxy.flights() - before, 1, "{name}");
        assert_eq!(rows, [name]);
    }
    let m = pool.metrics();
    assert_eq!(m.transactions_rolled_back, 0, "{m:?}");
}

#[tokio::test]
async fn a_write_in_one_flight_commits_in_its_org_and_a_failed_one_commits_nothing() {
    let (db, proxy, pool) = setup("one_flight_write").await;
    let a = org_with(&pool, "acme").await;
    let id = Uuid::now_v7();
    let insert = |id: Uuid, name: &'static str| {
        move |q: &OrgStatements| q.insert(customers::table, (customers::id.eq(id), customer(name)))
    };
    assert_eq!(
        pool.execute_one(a, insert(Uuid::now_v7(), "first"))
            .await
            .unwrap(),
        1
    );
    let before = proxy.flights();
    assert_eq!(pool.execute_one(a, insert(id, "second")).await.unwrap(), 1);
    assert_eq!(proxy.flights() - before, 1);
    let org_of: Uuid = customers::table
        .filter(customers::id.eq(id))
        .select(customers::org_id)
        .get_result(&mut db.admin())
        .unwrap();
    assert_eq!(org_of, a.as_uuid());

    // The same id again: the statement fails, the server turns the COMMIT sent with it into
    // a ROLLBACK, and the connection serves the next transaction.
    let before = proxy.flights();
    let err = pool.execute_one(a, insert(id, "dup")).await.unwrap_err();
    assert_eq!(proxy.flights() - before, 1);
    assert!(matches!(err, TenantError::Database(_)), "{err:?}");
    assert_eq!(committed(&db, "dup"), 0);
    let rows: Vec<String> = pool.load_one(a, names!()).await.unwrap();
    assert_eq!(rows, ["acme", "first", "second"]);
    assert_eq!(pool.state().0, 1, "the connection was kept");
}

#[tokio::test]
async fn a_statement_built_for_another_org_is_refused_before_anything_is_sent() {
    let (db, proxy, pool) = setup("one_flight_mismatch").await;
    let a = org_with(&pool, "acme").await;
    let b = org_with(&pool, "bolt").await;
    // Keep the builders of A's call, and use them in B's.
    let mut kept: Option<OrgStatements> = None;
    let _: Vec<String> = pool
        .load_one(a, |q| {
            kept = Some(*q);
            names!()(q)
        })
        .await
        .unwrap();
    let of_a = kept.unwrap();
    let before = proxy.flights();
    let err = pool
        .execute_one(b, |_| of_a.insert(customers::table, customer("smuggled")))
        .await
        .unwrap_err();
    assert!(matches!(err, TenantError::OrgMismatch), "{err:?}");
    assert_eq!(proxy.flights(), before, "nothing was sent");
    assert_eq!(committed(&db, "smuggled"), 0);
}
