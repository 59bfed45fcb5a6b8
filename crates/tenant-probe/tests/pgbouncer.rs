//! Through PgBouncer in transaction mode (`cargo xtask test` starts it and sets
//! `TENANT_PGBOUNCER_URL`): many clients share four server connections; no org context ever
//! crosses between them, scoped transactions work with the prepared-statement cache off, and
//! the probe finds no leak; the same in the signed mode, with tokens that name no backend.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use diesel::prelude::*;
use tenant_core::{OrgId, TenantError, TenantPool};
use tenant_testkit::{TEST_PASSWORD, TestDb, roles, url_for};
use two_companies::schema::{customers, orgs};

/// The URL of `db` as the application role, through PgBouncer.
fn through_bouncer(db: &TestDb) -> String {
    let base = std::env::var("TENANT_PGBOUNCER_URL").expect(
        "TENANT_PGBOUNCER_URL: run these tests with `cargo xtask test`, which starts PgBouncer",
    );
    url_for(&base, roles::APP, Some(TEST_PASSWORD), db.name())
}

/// A pool in the opt-in plain mode through PgBouncer.
fn plain_pool(db: &TestDb, size: u32) -> TenantPool {
    TenantPool::builder(
        through_bouncer(db),
        &two_companies::REGISTRY,
        tenant_core::OrgContext::TrustEveryStatement,
    )
    .max_size(size)
    .prepared_statement_cache(false)
    .build()
    .unwrap()
}

#[test]
fn sixteen_plain_clients_through_four_server_connections_cross_no_row() {
    let db = common::plain_story("bouncer_clients");
    sixteen_clients(&db, plain_pool(&db, 16));
}

#[test]
fn sixteen_signed_clients_through_four_server_connections_cross_no_row() {
    let db = common::signed_db("bouncer_signed");
    let pool = TenantPool::builder(
        through_bouncer(&db),
        &two_companies::REGISTRY,
        common::key("k1", &common::K1),
    )
    .max_size(16)
    .transaction_pooler()
    .build()
    .unwrap();
    sixteen_clients(&db, pool);
}

/// 16 threads, 60 transactions each over 8 orgs, each inserting and reading its org's rows.
fn sixteen_clients(db: &TestDb, pool: TenantPool) {
    let pool = Arc::new(pool);
    let orgs: Vec<OrgId> = (0..8).map(|_| OrgId::new_random()).collect();
    for (i, &org) in orgs.iter().enumerate() {
        pool.with_org(org, |s| {
            s.execute(s.insert(orgs::table, orgs::name.eq(format!("org {i}"))))
        })
        .unwrap();
    }
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let (pool, orgs) = (Arc::clone(&pool), orgs.clone());
            std::thread::spawn(move || {
                let mut crossed = 0;
                for n in 0..60 {
                    let org = orgs[(t + n) % orgs.len()];
                    let seen: Vec<Option<uuid::Uuid>> = pool
                        .with_org(org, |s| {
                            s.execute(s.insert(
                                customers::table,
                                (
                                    customers::name.eq(format!("t{t} n{n}")),
                                    customers::email.eq(format!("t{t}n{n}@x")),
                                ),
                            ))?;
                            let mine: Vec<uuid::Uuid> =
                                s.load(s.query(customers::table).select(customers::org_id))?;
                            Ok::<_, TenantError>(mine.into_iter().map(Some).collect())
                        })
                        .unwrap();
                    crossed += seen.iter().filter(|o| **o != Some(org.as_uuid())).count();
                }
                crossed
            })
        })
        .collect();
    let crossed: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(crossed, 0);
    // 16 clients, 960 transactions: PgBouncer served them from at most four server connections.
    let servers: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
        "(SELECT count(*) FROM pg_stat_activity WHERE usename = 'tenant_app' AND datname = '{}')",
        db.name()
    )))
    .get_result(&mut db.admin())
    .unwrap();
    assert!(servers <= 4, "{servers} server connections");
    // Every committed row is there, in its org.
    let total: i64 = orgs
        .iter()
        .map(|&o| {
            pool.with_org(o, |s| {
                s.get_result::<i64, _>(s.query(customers::table).count())
            })
            .unwrap()
        })
        .sum();
    assert_eq!(total, 16 * 60);
}

#[test]
fn the_probe_finds_no_leak_through_pgbouncer_in_the_plain_mode() {
    let db = common::plain_story("bouncer_probe");
    let url = through_bouncer(&db);
    let mut options = tenant_probe::ProbeOptions::new(
        &url,
        &two_companies::REGISTRY,
        tenant_core::OrgContext::TrustEveryStatement,
    );
    options.progress = false;
    let report = tenant_probe::run(&options).unwrap();
    let s = report.summary();
    assert_eq!((s.leak, s.not_run), (0, 0), "{}", report.markdown());
    assert!(s.pass > 150, "{}", report.summary_line());
}

#[test]
fn the_probe_finds_no_hop_and_no_leak_through_pgbouncer_in_the_signed_mode() {
    let db = common::signed_db("bouncer_signed_probe");
    let report = common::signed_probe_finds_nothing(&through_bouncer(&db), None);
    assert!(report.summary().pass > 150, "{}", report.summary_line());
}
