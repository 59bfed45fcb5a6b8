//! The application layer and the database layer on a real Citus cluster: a coordinator and
//! two workers (`cargo xtask test` starts it and sets `TENANT_CITUS_URL` and
//! `TENANT_CITUS_WORKER_URLS`), the story's schema distributed by org with the generated
//! Citus migration.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use tenant_core::{OrgContext, OrgId, TenantError, TenantPool};
use tenant_testkit::citus::CitusDb;
use tenant_testkit::{roles, story};
use two_companies::schema::{customers, deals, orgs};

/// The service's pool on the coordinator: the plain context, set with SET LOCAL.
fn pool(db: &CitusDb) -> TenantPool {
    TenantPool::builder(
        db.app_url(),
        &two_companies::REGISTRY,
        OrgContext::TrustEveryStatement,
    )
    .max_size(2)
    .set_local_context()
    .build()
    .unwrap()
}

/// Org `org` with `n` customers, each with one deal.
fn seed(pool: &TenantPool, org: OrgId, n: usize) {
    pool.with_org(org, |s| {
        s.execute(s.insert(orgs::table, orgs::name.eq(format!("org {org}"))))?;
        for i in 0..n {
            let id: uuid::Uuid = s.get_result(
                s.insert(
                    customers::table,
                    (
                        customers::name.eq(format!("c{i}")),
                        customers::email.eq(format!("{i}@{org}")),
                    ),
                )
                .returning(customers::id),
            )?;
            s.execute(s.insert(
                deals::table,
                (
                    deals::customer_id.eq(id),
                    deals::title.eq(format!("deal {i}")),
                    deals::amount_cents.eq(100 * i as i64),
                    deals::currency.eq("EUR"),
                    deals::stage.eq("open"),
                ),
            ))?;
        }
        Ok::<_, TenantError>(())
    })
    .unwrap();
}

/// `EXPLAIN` of a scoped statement's own SQL (from `debug_sql`, its uuid binds written as
/// literals), run in the scoped transaction.
fn explain(conn: &mut PgConnection, debug_sql: &str) -> String {
    let (sql, binds) = debug_sql.split_once(" -- binds: ").unwrap();
    let binds: Vec<&str> = binds
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(", ")
        .collect();
    let mut sql = sql.to_owned();
    // $10 before $1.
    for (i, bind) in binds.iter().enumerate().rev() {
        let value = if bind.len() == 36 && bind.chars().filter(|c| *c == '-').count() == 4 {
            format!("'{bind}'::uuid")
        } else if bind.parse::<i64>().is_ok() {
            bind.to_string()
        } else {
            format!("'{}'", bind.trim_matches('"').replace('\'', "''"))
        };
        sql = sql.replace(&format!("${}", i + 1), &value);
    }
    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }
    diesel::sql_query(format!("EXPLAIN {sql}"))
        .load::<Line>(conn)
        .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"))
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_scoped_statement_runs_on_one_shard_of_one_node() {
    let db = story::citus("citus_routing");
    let pool = pool(&db);
    let (a, b) = (OrgId::new_random(), OrgId::new_random());
    seed(&pool, a, 3);
    seed(&pool, b, 2);
    let before = db.routing_counters();
    // Reads, a join between colocated tables, scoped sub-queries, writes: eight statements.
    let statements = pool
        .with_org(a, |s| {
            let names: Vec<String> = s.load(s.query(customers::table).select(customers::name))?;
            assert_eq!(names.len(), 3);
            let joined: Vec<(String, String)> = s.load(
                s.query(deals::table)
                    .inner_join(customers::table)
                    .select((deals::title, customers::name)),
            )?;
            assert_eq!(joined.len(), 3);
            let named_c0 = s
                .query(customers::table)
                .filter(customers::name.eq("c0"))
                .select(customers::id);
            let of_c0: Vec<String> = s.load(
                s.query(deals::table)
                    .filter(deals::customer_id.eq_any(named_c0.into_subquery()))
                    .select(deals::title),
            )?;
            assert_eq!(of_c0, ["deal 0"]);
            let has_deal = s
                .query(deals::table)
                .filter(deals::customer_id.eq(customers::id));
            let with_deals: i64 = s.get_result(
                s.query(customers::table)
                    .filter(has_deal.select(deals::id).into_subquery().exists())
                    .count(),
            )?;
            assert_eq!(with_deals, 3);
            let updated = s.execute(
                s.update(deals::table)
                    .filter(deals::title.eq("deal 1"))
                    .set(deals::stage.eq("won")),
            )?;
            assert_eq!(updated, 1);
            let deleted = s.execute(s.delete(deals::table).filter(deals::title.eq("deal 2")))?;
            assert_eq!(deleted, 1);
            let n: i64 = s.get_result(s.query(deals::table).count())?;
            assert_eq!(n, 2);
            let won: i64 =
                s.get_result(s.query(deals::table).filter(deals::stage.eq("won")).count())?;
            assert_eq!(won, 1);
            Ok::<_, TenantError>(8)
        })
        .unwrap();
    let after = db.routing_counters();
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (statements, 0),
        "(single-shard, multi-shard) queries of the scoped workload"
    );

    // The plan of each shape names one task, on one node.
    pool.with_org(a, |s| {
        let join = s
            .query(deals::table)
            .inner_join(customers::table)
            .select((deals::title, customers::name))
            .debug_sql();
        let named_c0 = s
            .query(customers::table)
            .filter(customers::name.eq("c0"))
            .select(customers::id);
        let sub = s
            .query(deals::table)
            .filter(deals::customer_id.eq_any(named_c0.into_subquery()))
            .select(deals::title)
            .debug_sql();
        let conn = s.raw_connection_unchecked("test: EXPLAIN the scoped statements' own SQL");
        for sql in [join, sub] {
            let plan = explain(conn, &sql);
            assert!(plan.contains("Task Count: 1"), "{sql}\n{plan}");
            assert_eq!(plan.matches("Node: host=").count(), 1, "{plan}");
        }
        Ok::<_, TenantError>(())
    })
    .unwrap();
}

/// `count(*)` of `table` on `conn`.
fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(sql)
        .get_result::<N>(conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}

#[test]
fn the_org_reaches_the_workers_and_without_it_no_node_shows_a_row() {
    let db = story::citus("citus_context");
    let pool = pool(&db);
    let (a, b) = (OrgId::new_random(), OrgId::new_random());
    seed(&pool, a, 3);
    seed(&pool, b, 2);
    // The scoped path: the workers answer with the org's rows only.
    let seen: Vec<uuid::Uuid> = pool
        .with_org(a, |s| {
            s.load(s.query(customers::table).select(customers::org_id))
        })
        .unwrap();
    assert_eq!(seen, vec![a.as_uuid(); 3]);

    // Any SQL as the application role on the coordinator: no org, no row on any worker.
    let mut app = PgConnection::establish(&db.app_url()).unwrap();
    assert_eq!(count(&mut app, "SELECT count(*) AS n FROM customers"), 0);
    assert_eq!(
        count(
            &mut app,
            &format!("SELECT count(*) AS n FROM customers WHERE org_id = '{a}'")
        ),
        0
    );
    // With org A set, B's rows stay out, whether the query routes to B's shard or fans out.
    app.batch_execute(&format!(
        "BEGIN; {}",
        tenant_testkit::citus::set_local_org(a)
    ))
    .unwrap();
    assert_eq!(
        count(
            &mut app,
            &format!("SELECT count(*) AS n FROM customers WHERE org_id = '{b}'")
        ),
        0
    );
    assert_eq!(count(&mut app, "SELECT count(*) AS n FROM customers"), 3);
    assert_eq!(count(&mut app, "SELECT count(*) AS n FROM deals"), 3);
    app.batch_execute("ROLLBACK").unwrap();

    // On the workers themselves, as the application role: the distributed table and every
    // shard of it show nothing without an org, and only the org's rows with one.
    let mut total_a = 0;
    for (url, port) in db.worker_urls_as(roles::APP).iter().zip(db.worker_ports()) {
        let mut w = PgConnection::establish(url).unwrap();
        assert_eq!(count(&mut w, "SELECT count(*) AS n FROM customers"), 0);
        for shard in shards_of(&db, port, "customers") {
            let sql = format!("SELECT count(*) AS n FROM {shard}");
            assert_eq!(count(&mut w, &sql), 0, "{shard} without an org");
            w.batch_execute(&format!(
                "BEGIN; {}",
                tenant_testkit::citus::set_local_org(a)
            ))
            .unwrap();
            total_a += count(&mut w, &sql);
            assert_eq!(
                count(
                    &mut w,
                    &format!("SELECT count(*) AS n FROM {shard} WHERE org_id <> '{a}'")
                ),
                0
            );
            w.batch_execute("ROLLBACK").unwrap();
        }
    }
    assert_eq!(total_a, 3, "A's rows, found shard by shard on the workers");
}

/// The shards of `table` placed on the worker at `url` (the admin reads the placements).
fn shards_of(db: &CitusDb, port: u16, table: &str) -> Vec<String> {
    #[derive(QueryableByName)]
    struct Shard {
        #[diesel(sql_type = Text)]
        name: String,
    }
    diesel::sql_query(format!(
        "SELECT shard_name(logicalrelid, shardid)::text AS name
         FROM pg_dist_shard JOIN pg_dist_placement USING (shardid)
         JOIN pg_dist_node USING (groupid)
         WHERE logicalrelid = '{table}'::regclass AND nodeport = {port}"
    ))
    .load::<Shard>(&mut db.admin())
    .unwrap()
    .into_iter()
    .map(|s| s.name)
    .collect()
}

/// What the coordinator logged of the commands it sent to the workers (`issuing ...` lines,
/// `citus.log_remote_commands`), read by the admin from the server log.
fn issued_commands(db: &CitusDb) -> Vec<String> {
    #[derive(QueryableByName)]
    struct Log {
        #[diesel(sql_type = Text)]
        text: String,
    }
    let log: Log = diesel::sql_query(
        "SELECT pg_read_file(current_setting('data_directory') || '/../server.log') AS text",
    )
    .get_result(&mut db.admin())
    .unwrap();
    log.text
        .lines()
        .filter_map(|l| l.split_once("issuing ").map(|(_, c)| c.to_owned()))
        .collect()
}

/// Citus sends a SET LOCAL or RESET on to the workers as the text of the query that ran it;
/// the opening message runs each in a DO block of its own, so that the workers get the org
/// and the resets and nothing else of it.
#[test]
fn the_workers_get_the_org_and_the_resets_and_nothing_else_of_the_opening() {
    let db = story::citus("citus_opening");
    db.admin()
        .batch_execute(&format!(
            "ALTER ROLE {app} IN DATABASE \"{name}\" SET citus.log_remote_commands = on;
             ALTER ROLE {app} IN DATABASE \"{name}\" SET log_min_messages = notice;",
            app = roles::APP,
            name = db.name()
        ))
        .unwrap();
    let pool = pool(&db);
    let org = OrgId::new_random();
    seed(&pool, org, 1);
    let issued = issued_commands(&db);
    let with_org: Vec<&String> = issued
        .iter()
        .filter(|c| c.contains(&org.to_string()))
        .collect();
    assert!(
        with_org
            .iter()
            .any(|c| c.contains(&format!("SET LOCAL tenant.org_id = '{org}'"))),
        "{with_org:#?}"
    );
    for c in &with_org {
        for opening_only in ["TimeZone", "pg_my_temp_schema", "setseed", "UNLISTEN"] {
            assert!(!c.contains(opening_only), "sent to a worker: {c}");
        }
    }

    // The behaviour worked around: a SET LOCAL at the top level of a message goes to the
    // workers with the whole message.
    let mut app = PgConnection::establish(&db.app_url()).unwrap();
    app.batch_execute(&format!(
        "BEGIN; SELECT 'top-level-marker'; SET LOCAL tenant.org_id = '{org}'"
    ))
    .unwrap();
    assert_eq!(count(&mut app, "SELECT count(*) AS n FROM customers"), 1);
    app.batch_execute("ROLLBACK").unwrap();
    assert!(
        issued_commands(&db)
            .iter()
            .any(|c| c.contains("SELECT 'top-level-marker'")),
        "Citus no longer forwards the whole message: the DO blocks may be unneeded"
    );
}

/// The leak probe against the coordinator, setting the org as the service does (SET LOCAL):
/// no attack reads or writes the other org, and every attack ran (one Citus refuses is a
/// refusal in the report, not a skip).
#[test]
fn the_probe_finds_no_leak_on_the_cluster() {
    let db = story::citus("citus_probe");
    let url = db.app_url();
    let mut options = tenant_probe::ProbeOptions::new(
        &url,
        &two_companies::REGISTRY,
        OrgContext::TrustEveryStatement,
    );
    options.progress = false;
    // Not asked for: on a Citus database the probe sets the org with SET LOCAL by itself.
    options.set_local = false;
    let report = tenant_probe::run(&options).unwrap();
    let s = report.summary();
    assert_eq!((s.leak, s.not_run), (0, 0), "{}", report.markdown());
    assert!(!report.failed());
    // What Citus refuses on every tenant table, each with its own refusal: recorded, and
    // known here by name, so that a Citus that starts running one shows up.
    let mut refused: Vec<(String, String)> = report
        .with_verdict(tenant_probe::Verdict::Refused)
        .map(|r| (r.attack.clone(), r.observed.to_string()))
        .collect();
    refused.sort();
    refused.dedup();
    let names: Vec<&str> = refused.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        names,
        [
            "insert_select_into_b",
            "merge_delete",
            "merge_update",
            "self_join",
            "update_moving_row_to_b"
        ],
        "{refused:#?}"
    );
    assert_eq!(s.refused, 5 * 5, "five attacks on each of the five tables");
    for (attack, observed) in &refused {
        assert!(
            observed.starts_with("refused: 0A000") || observed.starts_with("refused: XX000"),
            "{attack}: {observed}"
        );
    }
    // The plain mode's findings: org hopping with SET LOCAL, on every table.
    assert_eq!(s.finding, 5, "{}", report.markdown());
    // Citus's powers, each tried and refused.
    let powers: Vec<&tenant_probe::AttackResult> = report
        .results
        .iter()
        .filter(|r| r.threat == "#37")
        .collect();
    assert_eq!(powers.len(), 15);
    assert!(
        powers
            .iter()
            .all(|r| r.verdict == tenant_probe::Verdict::Pass),
        "{}",
        report.markdown()
    );
}

/// The same probe against each worker, where any role that can connect may query the
/// distributed tables: Citus 13.2 runs an `INSERT ... SELECT` whose target shard is on the
/// node itself through a local copy that skips the WITH CHECK of the policies, so org A writes
/// a row into org B (through the coordinator, which holds no tenant shard, the same statement
/// is refused: 0A000). Exactly that, on every table, and nothing else: the deployment must
/// keep the application role off the workers (docs/scale-out.md), and this test fails the day
/// Citus changes it.
#[test]
fn through_a_worker_the_probe_finds_that_insert_select_into_another_org_skips_the_check() {
    let db = story::citus("citus_probe_workers");
    let workers = db.worker_urls_as(roles::APP);
    let ports = db.worker_ports();
    for (url, port) in workers.iter().zip(&ports) {
        for victim_here in [true, false] {
            // A victim whose (colocated) shards are on this worker, or on the other.
            let b = std::iter::repeat_with(uuid::Uuid::new_v4)
                .find(|b| (org_node(&db, *b) == *port) == victim_here)
                .unwrap();
            let mut options = tenant_probe::ProbeOptions::new(
                url,
                &two_companies::REGISTRY,
                OrgContext::TrustEveryStatement,
            );
            options.progress = false;
            options.set_local = true;
            options.orgs = Some((uuid::Uuid::new_v4(), b));
            let report = tenant_probe::run(&options).unwrap();
            assert_eq!(report.summary().not_run, 0, "{url}\n{}", report.markdown());
            let mut leaks: Vec<(&str, &str)> = report
                .with_verdict(tenant_probe::Verdict::Leak)
                .map(|r| (r.attack.as_str(), r.table.as_str()))
                .collect();
            leaks.sort_unstable();
            if victim_here {
                assert_eq!(
                    leaks,
                    ["customers", "deals", "invoices", "orgs", "proposals"]
                        .map(|t| ("insert_select_into_b", t)),
                    "Citus no longer skips the check through a worker? {url}"
                );
            } else {
                assert_eq!(leaks, [], "{url}\n{}", report.markdown());
            }
        }
    }
}

/// The port of the worker holding org `org`'s shard of `orgs` (and, colocated, of every
/// tenant table).
fn org_node(db: &CitusDb, org: uuid::Uuid) -> u16 {
    #[derive(QueryableByName)]
    struct Shard {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let shard = diesel::sql_query(format!(
        "SELECT get_shard_id_for_distribution_column('orgs', '{org}'::uuid) AS id"
    ))
    .get_result::<Shard>(&mut db.admin())
    .unwrap()
    .id;
    db.shard_port(shard)
}

/// With a tenant shard on the coordinator, the service's own statements reach Citus's local
/// copy: an `INSERT ... SELECT` into the org whose shard is there skips the WITH CHECK. The
/// probe through the coordinator finds it, and the cluster audit names the tables.
#[test]
fn a_tenant_shard_on_the_coordinator_is_a_leak_the_probe_finds_and_the_audit_names() {
    #[derive(QueryableByName)]
    struct Int {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        v: i64,
    }
    let db = story::citus("citus_coordinator_shard");
    let mut admin = db.admin();
    let int = |admin: &mut PgConnection, sql: &str| -> i64 {
        diesel::sql_query(sql)
            .get_result::<Int>(admin)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .v
    };
    let coordinator = int(&mut admin, "SELECT current_setting('port')::bigint AS v");
    let b = uuid::Uuid::new_v4();
    let shard = int(
        &mut admin,
        &format!("SELECT get_shard_id_for_distribution_column('orgs', '{b}'::uuid) AS v"),
    );
    let from = org_node(&db, b);
    admin
        .batch_execute(&format!(
            "SELECT citus_set_node_property('localhost', {coordinator}, 'shouldhaveshards', true)"
        ))
        .unwrap();
    // Citus moves a shard over a connection as the table's owner, which the migration makes
    // NOLOGIN and without CREATE on the schema: the move needs both for its duration (roles
    // are the cluster's: one test changes them at a time).
    let _one = tenant_testkit::citus::one_setup_at_a_time();
    admin
        .batch_execute("ALTER ROLE tenant_owner LOGIN")
        .unwrap();
    admin
        .batch_execute("GRANT CREATE ON SCHEMA public TO tenant_owner")
        .unwrap();
    let moved = admin.batch_execute(&format!(
        "SELECT citus_move_shard_placement({shard}, 'localhost', {from}, 'localhost', \
         {coordinator}, shard_transfer_mode => 'block_writes')"
    ));
    admin
        .batch_execute("REVOKE CREATE ON SCHEMA public FROM tenant_owner")
        .unwrap();
    admin
        .batch_execute("ALTER ROLE tenant_owner NOLOGIN")
        .unwrap();
    moved.unwrap();

    let mut options = tenant_probe::ProbeOptions::new(
        &db.app_url(),
        &two_companies::REGISTRY,
        OrgContext::TrustEveryStatement,
    );
    options.progress = false;
    options.set_local = true;
    options.orgs = Some((uuid::Uuid::new_v4(), b));
    let report = tenant_probe::run(&options).unwrap();
    let mut leaks: Vec<(&str, &str)> = report
        .with_verdict(tenant_probe::Verdict::Leak)
        .map(|r| (r.attack.as_str(), r.table.as_str()))
        .collect();
    leaks.sort_unstable();
    assert_eq!(
        leaks,
        ["customers", "deals", "invoices", "orgs", "proposals"]
            .map(|t| ("insert_select_into_b", t)),
        "{}",
        report.markdown()
    );

    let audit = story::audit_cluster(&db);
    let named: Vec<&str> = audit
        .findings
        .iter()
        .filter(|f| f.rule == "coordinator-holds-tenant-shards")
        .map(|f| f.object.as_str())
        .collect();
    assert_eq!(
        named,
        ["customers", "deals", "invoices", "orgs", "proposals"]
    );
}

/// `sql` as `url`'s role, in a transaction with org `org` set, rolled back: `Ok(rows)` or the
/// server's refusal.
fn attempt(url: &str, org: OrgId, sql: &str) -> Result<usize, String> {
    let mut conn = PgConnection::establish(url).unwrap();
    conn.batch_execute(&format!(
        "BEGIN; {}",
        tenant_testkit::citus::set_local_org(org)
    ))
    .unwrap();
    let out = diesel::sql_query(sql)
        .execute(&mut conn)
        .map_err(|e| e.to_string());
    let _ = conn.batch_execute("ROLLBACK");
    out
}

/// What Citus lets every role do and the generated migration takes from PUBLIC (a red-team
/// pass used each to reach another org): run SQL on the workers, take another session's
/// distributed transaction and its intermediate results, list every session's statements
/// and every shard, lock any relation, call the internal metadata functions with a forged
/// application_name, signal other sessions. Refused to the application role on every node; the
/// application's own queries that need intermediate results still run.
#[test]
fn citus_powers_are_refused_to_the_application_role_on_every_node() {
    let db = story::citus("citus_powers");
    let pool = pool(&db);
    let a = OrgId::new_random();
    seed(&pool, a, 3);
    let attacks = [
        "SELECT run_command_on_workers('SELECT 1')",
        "SELECT run_command_on_all_nodes('SELECT 1')",
        "SELECT run_command_on_coordinator('SELECT 1')",
        "SELECT run_command_on_shards('customers', 'SELECT 1')",
        "SELECT * FROM master_run_on_worker(ARRAY['localhost'], ARRAY[5432], ARRAY['SELECT 1'], false)",
        "SELECT citus_run_local_command('SELECT 1')",
        "SELECT create_intermediate_result('1_1', 'SELECT 1')",
        "SELECT broadcast_intermediate_result('1_1', 'SELECT 1')",
        "SELECT * FROM get_all_active_transactions()",
        "SELECT * FROM get_global_active_transactions()",
        "SELECT * FROM citus_stat_activity",
        "SELECT * FROM citus_dist_stat_activity",
        "SELECT * FROM citus_locks",
        "SELECT * FROM citus_shards",
        "SELECT * FROM citus_shard_sizes()",
        "SELECT lock_relation_if_exists('public.customers', 'ACCESS EXCLUSIVE')",
        "SELECT pg_terminate_backend(pg_backend_pid() + 1)",
        "SELECT pg_cancel_backend(10000000001::bigint)",
        "SELECT lo_creat(-1)",
        "SELECT citus_update_shard_statistics(1)",
        "SELECT citus_total_relation_size('customers')",
        "SELECT * FROM citus_stat_counters",
        "SELECT * FROM pg_dist_transaction",
        "SELECT * FROM worker_partition_query_result('p', 'SELECT 1', 0, 'hash', '{-2147483648}', '{2147483647}', true, true, true)",
    ];
    let coordinator_only = [
        "SELECT assign_distributed_transaction_id(0, 1, now())",
        // Citus trusts a session whose application_name says it is its own.
        "SELECT citus_internal.delete_placement_metadata(1) \
         FROM (SELECT set_config('application_name', 'citus_internal gpid=10000000001', true)) s",
    ];
    let mut nodes = vec![db.app_url()];
    nodes.extend(db.worker_urls_as(roles::APP));
    for (n, url) in nodes.iter().enumerate() {
        let here: Vec<&str> = if n == 0 {
            attacks.iter().chain(&coordinator_only).copied().collect()
        } else {
            attacks.to_vec()
        };
        for sql in here {
            let out = attempt(url, a, sql);
            assert!(
                matches!(&out, Err(e) if e.contains("permission denied")),
                "node {n}: {sql}: {out:?}"
            );
        }
    }
    // A function call in a query routed to a worker runs there, as the caller, on a
    // connection Citus counts as its own: what the workers refuse is refused that way too.
    let b = OrgId::new_random();
    for (n, sql) in [
        "SELECT count(*), (SELECT count(*) FROM pg_stat_get_activity(NULL)) FROM customers WHERE org_id = '{b}'",
        "SELECT count(*), (SELECT count(*) FROM citus_internal_update_placement_metadata(0, 0, 0)) FROM customers WHERE org_id = '{b}'",
    ]
    .iter()
    .enumerate()
    {
        let out = attempt(&db.app_url(), a, &sql.replace("{b}", &b.to_string()));
        assert!(
            matches!(&out, Err(e) if e.contains("permission denied")),
            "pushed down {n}: {out:?}"
        );
    }
    // A query Citus plans with intermediate results (a materialized CTE joined back) still
    // runs for the application, on its own rows.
    let rows = attempt(
        &db.app_url(),
        a,
        "WITH c AS MATERIALIZED (SELECT org_id, id FROM customers ORDER BY name LIMIT 10)
         SELECT d.title FROM deals d JOIN c ON c.org_id = d.org_id AND c.id = d.customer_id
         WHERE d.org_id = (SELECT id FROM orgs LIMIT 1)",
    );
    assert_eq!(rows, Ok(3));
}
