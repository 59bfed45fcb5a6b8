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

const REASON: &str = "customer reports missing invoices since Monday";

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn count(conn: &mut diesel::PgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<N>(conn).unwrap().n
}

/// The events of `org`'s access log, oldest first.
fn events(db: &CitusDb, org: OrgId) -> Vec<(String, Option<String>)> {
    tenant_core::operator::access_log(&db.url_as(tenant_testkit::roles::AUDITOR), org, None)
        .unwrap()
        .into_iter()
        .map(|e| (e.event, e.detail))
        .collect()
}

/// The operator's statements run on the workers (the coordinator holds no tenant shard),
/// where the policies learn the grant from the token `enter_access()` minted for this
/// distributed transaction: one org's rows, read and written, and every step logged.
#[test]
fn break_glass_on_the_cluster_reaches_one_org_on_the_workers_and_every_step_is_logged() {
    use tenant_core::operator::{AccessRequest, OperatorSession};
    let db = story::citus("citus_break_glass");
    let (a, b) = (OrgId::new_random(), OrgId::new_random());
    seed(&db, a, 3);
    seed(&db, b, 2);
    let b_before = org_state(&db, b);
    let url = db.url_as(tenant_testkit::roles::OPERATOR);

    let mut s =
        OperatorSession::open(&url, &AccessRequest::read(a, "OPS-4711", REASON, 30)).unwrap();
    let n = |s: &mut OperatorSession, sql: &str| s.load::<N>(sql).unwrap()[0].n;
    assert_eq!(n(&mut s, "SELECT count(*) AS n FROM customers"), 3);
    assert_eq!(n(&mut s, "SELECT count(*) AS n FROM invoices"), 3);
    assert_eq!(
        n(
            &mut s,
            &format!("SELECT count(*) AS n FROM customers WHERE org_id = '{b}'")
        ),
        0
    );
    assert_eq!(
        n(
            &mut s,
            "SELECT count(*) AS n FROM deals d JOIN customers c ON c.id = d.customer_id AND c.org_id = d.org_id"
        ),
        3
    );
    s.close().unwrap();

    let mut w =
        OperatorSession::open(&url, &AccessRequest::write(a, "OPS-4712", REASON, 5)).unwrap();
    assert_eq!(w.execute("UPDATE customers SET name = 'fixed'").unwrap(), 3);
    assert_eq!(
        w.execute(&format!(
            "UPDATE customers SET name = 'x' WHERE org_id = '{b}'"
        ))
        .unwrap(),
        0
    );
    w.close().unwrap();
    assert_eq!(org_state(&db, b), b_before, "B untouched");
    assert_eq!(
        count(
            &mut db.admin(),
            &format!("SELECT count(*) AS n FROM customers WHERE org_id = '{a}' AND name = 'fixed'")
        ),
        3
    );
    let log: Vec<String> = events(&db, a).into_iter().map(|(e, _)| e).collect();
    assert_eq!(
        log,
        [
            "granted", "entered", "closed", "granted", "entered", "closed"
        ]
    );
    assert!(events(&db, b).is_empty());
}

#[test]
fn purge_on_the_cluster_deletes_the_org_everywhere_and_nothing_of_the_other() {
    let db = story::citus("citus_purge");
    let (a, b) = (OrgId::new_random(), OrgId::new_random());
    seed(&db, a, 4);
    seed(&db, b, 3);
    let b_before = org_state(&db, b);
    let receipt = tenant_ops::purge(
        &db.url_as(tenant_testkit::roles::OPERATOR),
        &two_companies::REGISTRY,
        a,
        "OPS-1",
        "customer asked to be deleted",
    )
    .unwrap();
    assert_eq!(receipt.total(), 1 + 4 * 4);
    for (table, (rows, _)) in org_state(&db, a) {
        assert_eq!(rows, 0, "{table}: rows of the purged org remain");
    }
    assert_eq!(org_state(&db, b), b_before, "B untouched");
    let log: Vec<String> = events(&db, a).into_iter().map(|(e, _)| e).collect();
    assert_eq!(log, ["granted", "entered", "purged", "closed"]);
}

/// On Citus the request cannot check the org (the owner may not connect to the workers):
/// the session checks right after entering, refuses, and the log says why.
#[test]
fn an_unknown_org_is_refused_after_entering_and_the_log_says_so() {
    use tenant_core::operator::{AccessRequest, OperatorSession};
    let db = story::citus("citus_unknown_org");
    seed(&db, OrgId::new_random(), 1);
    let nobody = OrgId::new_random();
    let err = OperatorSession::open(
        &db.url_as(tenant_testkit::roles::OPERATOR),
        &AccessRequest::read(nobody, "OPS-2", REASON, 5),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("unknown org {nobody}: it has no rows")),
        "{err}"
    );
    let log = events(&db, nobody);
    assert_eq!(
        log.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(),
        ["granted", "entered", "closed"]
    );
    assert!(
        log[2]
            .1
            .as_deref()
            .unwrap()
            .contains("checked after entering, nothing read"),
        "{log:?}"
    );
    // Purging an org without rows is refused too, not reported as done.
    assert!(
        tenant_ops::purge(
            &db.url_as(tenant_testkit::roles::OPERATOR),
            &two_companies::REGISTRY,
            nobody,
            "OPS-3",
            "customer asked to be deleted",
        )
        .is_err()
    );
}

/// Attacks by an operator login sending its own SQL through the coordinator: the org set by
/// hand, a forged token, a token carried into another transaction or edited to another org,
/// a write with a read grant, and the distributed transaction id taken on a worker from inside
/// a pushed-down query. None reads or writes a row of B.
#[test]
fn an_operator_sending_its_own_sql_reaches_no_org_without_a_grant_entered_in_the_transaction() {
    use diesel::Connection as _;
    let db = story::citus("citus_operator_attacks");
    let (a, b) = (OrgId::new_random(), OrgId::new_random());
    seed(&db, a, 3);
    seed(&db, b, 2);
    let (a_before, b_before) = (org_state(&db, a), org_state(&db, b));
    let mut op =
        diesel::PgConnection::establish(&db.url_as(tenant_testkit::roles::OPERATOR)).unwrap();
    let future = (std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let in_transaction =
        |op: &mut diesel::PgConnection, setup: &str, sql: &str| -> Result<i64, String> {
            op.batch_execute("BEGIN").unwrap();
            let r = op
                .batch_execute(setup)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    diesel::sql_query(sql)
                        .get_result::<N>(op)
                        .map(|r| r.n)
                        .map_err(|e| e.to_string())
                });
            op.batch_execute("ROLLBACK").unwrap();
            r
        };
    let b_rows = format!("SELECT count(*) AS n FROM customers WHERE org_id = '{b}'");
    // No grant, the org set by hand, a forged token for B.
    for setup in [
        "SELECT 1".to_owned(),
        set_local_org(b),
        format!(
            "DO $$BEGIN SET LOCAL tenant.operator_token = '{b}:write:{future}:{}'; END$$",
            "0".repeat(64)
        ),
    ] {
        assert_eq!(in_transaction(&mut op, &setup, &b_rows), Ok(0), "{setup}");
    }

    // A real token for A, read back in the transaction that entered it.
    let grant = tenant_core::operator::request(
        &db.url_as(tenant_testkit::roles::OPERATOR),
        &tenant_core::operator::AccessRequest::write(a, "OPS-9", REASON, 30),
    )
    .unwrap();
    #[derive(QueryableByName)]
    struct Token {
        #[diesel(sql_type = diesel::sql_types::Text)]
        token: String,
    }
    op.batch_execute("BEGIN").unwrap();
    diesel::sql_query(format!(
        "SELECT org::text AS token FROM tenant_audit.enter_access({grant})"
    ))
    .get_result::<Token>(&mut op)
    .unwrap();
    let token = diesel::sql_query("SELECT current_setting('tenant.operator_token') AS token")
        .get_result::<Token>(&mut op)
        .unwrap()
        .token;
    assert_eq!(count(&mut op, "SELECT count(*) AS n FROM customers"), 3);
    // The distributed transaction id is Citus's to give: taking it again on a worker from a
    // pushed-down query is refused.
    let (txn, stamp) = {
        #[derive(QueryableByName)]
        struct Id {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            number: i64,
            #[diesel(sql_type = diesel::sql_types::Text)]
            stamp: String,
        }
        let id: Id = diesel::sql_query(
            "SELECT (x).transaction_number AS number, (x).transaction_stamp::text AS stamp \
             FROM (SELECT get_current_transaction_id() AS x) t",
        )
        .get_result(&mut op)
        .unwrap();
        (id.number, id.stamp)
    };
    op.batch_execute("ROLLBACK").unwrap();
    assert!(token.starts_with(&format!("{a}:write:")), "{token}");

    // The token in a later transaction, as it is, and edited to B.
    let edited = token.replacen(&a.to_string(), &b.to_string(), 1);
    for t in [&token, &edited] {
        let setup = format!("DO $$BEGIN SET LOCAL tenant.operator_token = '{t}'; END$$");
        assert_eq!(
            in_transaction(&mut op, &setup, "SELECT count(*) AS n FROM customers"),
            Ok(0)
        );
        let write = format!(
            "WITH u AS (UPDATE customers SET name = 'owned' RETURNING 1) SELECT count(*) AS n FROM u"
        );
        assert_eq!(in_transaction(&mut op, &setup, &write), Ok(0));
    }
    // The old transaction's id taken on the worker from inside a query the coordinator
    // pushes there, then the token: refused, and nothing read.
    let take = format!(
        "SELECT count(*) AS n FROM customers WHERE org_id = '{a}' \
           AND assign_distributed_transaction_id(0, {txn}, '{stamp}') IS NULL"
    );
    let setup = format!("DO $$BEGIN SET LOCAL tenant.operator_token = '{token}'; END$$");
    let refused = in_transaction(&mut op, &setup, &take).unwrap_err();
    assert!(
        refused.contains("the backend has already been assigned a transaction id"),
        "{refused}"
    );
    assert_eq!(org_state(&db, a), a_before, "A unchanged");
    assert_eq!(org_state(&db, b), b_before, "B unchanged");
}

/// The last 4 MB of the coordinator's server log, read by the cluster's admin.
fn server_log_tail(db: &CitusDb) -> String {
    #[derive(QueryableByName)]
    struct Log {
        #[diesel(sql_type = diesel::sql_types::Text)]
        text: String,
    }
    diesel::sql_query(
        "SELECT pg_read_file(f, greatest(0, (pg_stat_file(f)).size - 4194304), 4194304) AS text \
         FROM (SELECT current_setting('data_directory') || '/../server.log' AS f) p",
    )
    .get_result::<Log>(&mut db.admin())
    .unwrap()
    .text
}

#[derive(QueryableByName)]
struct Grant {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    grant_id: i64,
}

/// A red-team pass requested and entered a grant inside a savepoint, kept the token, rolled
/// the savepoint back (both log entries gone) and wrote into the org with the token set
/// again. `enter_access()` must now be the first write of its transaction, so a grant it
/// enters was committed; and a session rolled back after reading still leaves its entry in
/// the server log.
#[test]
fn a_grant_is_entered_only_once_committed_and_a_rolled_back_entry_stays_in_the_server_log() {
    use diesel::Connection as _;
    let db = story::citus("citus_operator_savepoint");
    let (a, b) = (OrgId::new_random(), OrgId::new_random());
    seed(&db, a, 1);
    seed(&db, b, 1);
    let b_before = org_state(&db, b);
    let url = db.url_as(tenant_testkit::roles::OPERATOR);
    let mut op = diesel::PgConnection::establish(&url).unwrap();
    let refused = op
        .transaction(|c| {
            c.batch_execute("SAVEPOINT s")?;
            let g: Grant = diesel::sql_query(format!(
                "SELECT grant_id FROM tenant_audit.request_access('{b}', 'OPS-9', '{REASON}', 240, true)"
            ))
            .get_result(c)?;
            diesel::sql_query(format!(
                "SELECT org FROM tenant_audit.enter_access({})",
                g.grant_id
            ))
            .execute(c)
        })
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("enter_access must be the first write of its transaction"),
        "{refused}"
    );
    assert!(events(&db, b).is_empty());
    assert_eq!(org_state(&db, b), b_before);

    // Entered, read, rolled back: the table loses the entry, the server log keeps it.
    let grant = tenant_core::operator::request(
        &url,
        &tenant_core::operator::AccessRequest::read(a, "OPS-10", REASON, 5),
    )
    .unwrap();
    op.batch_execute("BEGIN").unwrap();
    diesel::sql_query(format!(
        "SELECT org FROM tenant_audit.enter_access({grant})"
    ))
    .execute(&mut op)
    .unwrap();
    assert_eq!(count(&mut op, "SELECT count(*) AS n FROM customers"), 1);
    op.batch_execute("ROLLBACK").unwrap();
    let log: Vec<String> = events(&db, a).into_iter().map(|(e, _)| e).collect();
    assert_eq!(log, ["granted"]);
    let server_log = server_log_tail(&db);
    let operator = tenant_testkit::roles::OPERATOR;
    assert!(
        server_log.contains(&format!(
            "tenant access entered: grant {grant}, operator {operator}, org {a}, read"
        )) && server_log.contains(&format!(
            "tenant access entered on Citus: grant {grant}, distributed transaction 0/"
        )),
        "no entry for grant {grant} in the server log"
    );
}

/// What remains of a red-team pass's finding, kept in sight: through the coordinator, in
/// autocommit, a worker connection has no distributed transaction id yet, and a pushed-down
/// sub-query can give it an old one (`assign_distributed_transaction_id` stays executable on
/// the workers, which Citus calls there as the session's role) and set an old token. That
/// reads the grant's own org again within its window without a new `entered` entry; it
/// reaches no other org and no other mode. The test fails if Citus changes either, so the
/// docs (docs/scale-out.md, "Break-glass access") can be reviewed.
#[test]
fn a_token_replayed_outside_its_transaction_reaches_only_its_grants_org_and_mode() {
    use diesel::Connection as _;
    let db = story::citus("citus_operator_replay");
    let (a, b) = (OrgId::new_random(), OrgId::new_random());
    seed(&db, a, 3);
    seed(&db, b, 2);
    let (a_before, b_before) = (org_state(&db, a), org_state(&db, b));
    let url = db.url_as(tenant_testkit::roles::OPERATOR);
    let grant = tenant_core::operator::request(
        &url,
        &tenant_core::operator::AccessRequest::read(a, "OPS-11", REASON, 30),
    )
    .unwrap();
    let mut op = diesel::PgConnection::establish(&url).unwrap();
    #[derive(QueryableByName)]
    struct Minted {
        #[diesel(sql_type = diesel::sql_types::Text)]
        token: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        number: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        stamp: String,
    }
    op.batch_execute("BEGIN").unwrap();
    diesel::sql_query(format!(
        "SELECT org FROM tenant_audit.enter_access({grant})"
    ))
    .execute(&mut op)
    .unwrap();
    let m: Minted = diesel::sql_query(
        "SELECT current_setting('tenant.operator_token') AS token, \
                (x).transaction_number AS number, (x).transaction_stamp::text AS stamp \
           FROM (SELECT get_current_transaction_id() AS x) t",
    )
    .get_result(&mut op)
    .unwrap();
    op.batch_execute("COMMIT").unwrap();
    let replay = |token: &str, rest: &str| {
        format!(
            "FROM (SELECT set_config('tenant.operator_token', '{token}', true) t, \
                          assign_distributed_transaction_id(0, {}, '{}') a OFFSET 0) s {rest}",
            m.number, m.stamp
        )
    };
    let a_rows = count(
        &mut op,
        &format!(
            "SELECT count(*) AS n {}",
            replay(
                &m.token,
                &format!("CROSS JOIN customers c WHERE c.org_id = '{a}'")
            )
        ),
    );
    assert_eq!(
        a_rows, 3,
        "the replay's reach changed: review docs/scale-out.md"
    );
    let edited = m.token.replacen(&a.to_string(), &b.to_string(), 1);
    for token in [&m.token, &edited] {
        assert_eq!(
            count(
                &mut op,
                &format!(
                    "SELECT count(*) AS n {}",
                    replay(
                        token,
                        &format!("CROSS JOIN customers c WHERE c.org_id = '{b}'")
                    )
                )
            ),
            0
        );
        // A write through the same door, with the read grant's token: nothing changes.
        let write = format!(
            "WITH u AS (UPDATE customers c SET name = 'replayed' WHERE c.org_id = '{a}' RETURNING 1) \
             SELECT count(*) AS n {}",
            replay(token, "CROSS JOIN u")
        );
        if let Ok(n) = diesel::sql_query(&write).get_result::<N>(&mut op) {
            assert_eq!(n.n, 0);
        }
    }
    assert_eq!(org_state(&db, a), a_before, "A unchanged");
    assert_eq!(org_state(&db, b), b_before, "B unchanged");
}
