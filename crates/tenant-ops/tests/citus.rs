//! Per-org operations on a real Citus cluster (`cargo xtask test` starts it and sets
//! `TENANT_CITUS_URL`): export and restore go through the coordinator with the org set as
//! the workers learn it (SET LOCAL), and give back every row of the org and nothing of the
//! other.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use diesel::connection::SimpleConnection;
use diesel::{QueryableByName, RunQueryDsl};
use tenant_core::{OrgContext, OrgId};
use tenant_ops::{export, restore};
use tenant_testkit::citus::{CitusDb, set_local_org};
use tenant_testkit::story;

/// Org `org` with `n` customers, each with a deal, a proposal and an invoice, written as the
/// application role through the coordinator.
fn seed(db: &CitusDb, org: OrgId, n: usize) {
    let mut app = diesel::PgConnection::establish(&db.app_url()).unwrap();
    app.batch_execute(&format!(
        "BEGIN; {set};
         INSERT INTO orgs (id, name) VALUES ('{org}', 'Org {org}');
         COMMIT;",
        set = set_local_org(org)
    ))
    .unwrap();
    for i in 0..n {
        let (c, d) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        app.batch_execute(&format!(
            "BEGIN; {set};
             INSERT INTO customers (id, name, email) VALUES ('{c}', 'customer {i}', '{i}@{org}');
             INSERT INTO deals (id, customer_id, title, amount_cents, currency, stage)
               VALUES ('{d}', '{c}', 'deal {i}', {i}, 'EUR', 'won');
             INSERT INTO proposals (customer_id, title, body, total_cents, currency, drafted_by)
               VALUES ('{c}', 'proposal {i}', 'it''s a deal', 250, 'USD', 'twin');
             INSERT INTO invoices (customer_id, deal_id, number, total_cents, currency, due_on)
               VALUES ('{c}', '{d}', 'INV-{i}', 100, 'EUR', date '2026-12-01');
             COMMIT;",
            set = set_local_org(org)
        ))
        .unwrap();
    }
}

use diesel::Connection as _;

#[derive(QueryableByName)]
struct Digest {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    rows: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    md5: String,
}

/// Row count and checksum of `org`'s rows in every tenant table, read by the admin.
fn org_state(db: &CitusDb, org: OrgId) -> BTreeMap<&'static str, (i64, String)> {
    let mut admin = db.admin();
    [
        ("orgs", "id"),
        ("customers", "org_id"),
        ("deals", "org_id"),
        ("proposals", "org_id"),
        ("invoices", "org_id"),
    ]
    .into_iter()
    .map(|(t, col)| {
        let d: Digest = diesel::sql_query(format!(
            "SELECT count(*) AS rows, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) AS md5 \
             FROM {t} x WHERE {col} = '{org}'"
        ))
        .get_result(&mut admin)
        .unwrap();
        (t, (d.rows, d.md5))
    })
    .collect()
}

#[test]
fn export_and_restore_on_the_cluster_give_the_org_back_and_never_touch_the_other() {
    let db = story::citus("citus_ops");
    let (a, b) = (OrgId::new_random(), OrgId::new_random());
    seed(&db, a, 12);
    seed(&db, b, 7);
    let (a_before, b_before) = (org_state(&db, a), org_state(&db, b));
    assert_eq!(a_before["invoices"].0, 12);
    let registry = &two_companies::REGISTRY;
    let context = OrgContext::TrustEveryStatement;

    let exported = export(&db.app_url(), registry, a, &context).unwrap();
    let rows: usize = exported.manifest.tables.iter().map(|t| t.rows).sum();
    assert_eq!(rows, 1 + 4 * 12, "every row of A, none of B");
    let file = exported.to_json();
    assert!(!file.contains(&b.to_string()));

    // A restore onto the org's rows is refused without --replace, and writes nothing.
    assert!(restore(&db.app_url(), registry, &file, false, &context).is_err());
    let receipt = restore(&db.app_url(), registry, &file, true, &context).unwrap();
    assert_eq!(receipt.total(), rows as u64);
    assert_eq!(org_state(&db, a), a_before, "A's rows back exactly");
    assert_eq!(org_state(&db, b), b_before, "B untouched");
}

#[test]
fn a_pool_without_set_local_is_refused_on_a_coordinator_naming_the_fix() {
    let db = story::citus("citus_pool_refused");
    let err = tenant_core::TenantPool::builder(
        db.app_url(),
        &two_companies::REGISTRY,
        OrgContext::TrustEveryStatement,
    )
    .build()
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("Citus coordinator") && err.contains(".set_local_context()"),
        "{err}"
    );
}

/// `(rows, rows of another org than `org`)` in shard `shard` of `table`, read by the admin on
/// the worker that holds it.
fn shard_rows(db: &CitusDb, table: &str, column: &str, shard: i64, org: OrgId) -> (i64, i64) {
    #[derive(QueryableByName)]
    struct Rows {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        all: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        others: i64,
    }
    let port = db.shard_port(shard);
    let url = db
        .worker_admin_urls()
        .into_iter()
        .zip(db.worker_ports())
        .find_map(|(url, p)| (p == port).then_some(url))
        .unwrap();
    let mut worker = diesel::PgConnection::establish(&url).unwrap();
    let r: Rows = diesel::sql_query(format!(
        "SELECT count(*) AS all, count(*) FILTER (WHERE {column} <> '{org}') AS others FROM {table}_{shard}"
    ))
    .get_result(&mut worker)
    .unwrap();
    (r.all, r.others)
}

#[test]
fn an_isolated_org_has_shards_of_its_own_and_its_scoped_queries_still_run_on_one() {
    let db = story::citus("citus_isolate");
    let (a, b) = (OrgId::new_random(), OrgId::new_random());
    seed(&db, a, 10);
    seed(&db, b, 5);
    let (a_before, b_before) = (org_state(&db, a), org_state(&db, b));
    let registry = &two_companies::REGISTRY;

    let isolated = tenant_ops::isolate(&db.admin_url(), registry, a).unwrap();
    let tables: Vec<&str> = isolated.shards.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        tables,
        ["orgs", "customers", "deals", "proposals", "invoices"]
    );
    for (table, shard) in &isolated.shards {
        let column = if table == "orgs" { "id" } else { "org_id" };
        let (all, others) = shard_rows(&db, table, column, *shard, a);
        assert_eq!(others, 0, "{table}: shard {shard} holds another org's rows");
        assert_eq!(
            all,
            a_before[table.as_str()].0,
            "{table}: every row of A is in its shard"
        );
    }
    assert_eq!(org_state(&db, a), a_before, "A's rows unchanged");
    assert_eq!(org_state(&db, b), b_before, "B's rows unchanged");

    // The org's scoped statements still run on one shard each, and see only its rows.
    let pool =
        tenant_core::TenantPool::builder(db.app_url(), registry, OrgContext::TrustEveryStatement)
            .set_local_context()
            .max_size(1)
            .build()
            .unwrap();
    let before = db.routing_counters();
    let (customers, deals): (Vec<uuid::Uuid>, i64) = pool
        .with_org(a, |s| {
            use two_companies::schema::{customers, deals};
            let c = s.load(s.query(customers::table).select(customers::org_id))?;
            let d = s.get_result(s.query(deals::table).inner_join(customers::table).count())?;
            Ok::<_, tenant_core::TenantError>((c, d))
        })
        .unwrap();
    let after = db.routing_counters();
    assert_eq!(customers, vec![a.as_uuid(); 10]);
    assert_eq!(deals, 10);
    assert_eq!((after.0 - before.0, after.1 - before.1), (2, 0));

    // The new shards are protected as the tables are.
    let audit = story::audit_cluster(&db);
    assert_eq!(audit.error_count(), 0, "{:#?}", audit.findings);

    // An org without rows, and one isolated already, are refused.
    let nobody = tenant_ops::isolate(&db.admin_url(), registry, OrgId::new_random())
        .unwrap_err()
        .to_string();
    assert!(nobody.contains("has no row in orgs"), "{nobody}");
    assert!(tenant_ops::isolate(&db.admin_url(), registry, a).is_err());
}

/// Break-glass access (and purge, which goes through it) does not work on Citus yet: refused
/// by name before anything is requested or logged.
#[test]
fn purge_and_break_glass_access_are_refused_on_the_cluster_with_nothing_logged() {
    let db = story::citus("citus_purge_refused");
    let a = OrgId::new_random();
    seed(&db, a, 2);
    let before = org_state(&db, a);
    let err = tenant_ops::purge(
        &db.url_as(tenant_testkit::roles::OPERATOR),
        &two_companies::REGISTRY,
        a,
        "OPS-1",
        "customer asked to be deleted",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("does not work on a Citus cluster yet")
            && err.contains("nothing was requested"),
        "{err}"
    );
    assert_eq!(org_state(&db, a), before);
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let logged: N = diesel::sql_query("SELECT count(*) AS n FROM tenant_audit.access_log")
        .get_result(&mut db.admin())
        .unwrap();
    assert_eq!(logged.n, 0);
}
