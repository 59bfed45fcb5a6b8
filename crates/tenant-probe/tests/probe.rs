//! The probe against the real server: the example schema has no leak and every attack runs;
//! the database is the same afterwards; and each deliberately broken database is caught by
//! the exact attack that should catch it.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use tenant_core::TenantPool;
use tenant_probe::{Observed, PoolUnderTest, ProbeOptions, Report, Verdict};
use tenant_testkit::TestDb;
use uuid::Uuid;

/// The example schema, with committed rows of two real orgs (so "nothing changed" and "no
/// org sees nothing" are about real data, not an empty database).
fn example(hint: &str) -> TestDb {
    example_of(common::story(hint))
}

/// [`example`]'s rows in `db`.
fn example_of(db: TestDb) -> TestDb {
    db.admin()
        .batch_execute(
            "INSERT INTO orgs (id, name) VALUES
               ('00000000-0000-4000-8000-000000000001', 'Real A'), ('00000000-0000-4000-8000-000000000002', 'Real B');
             INSERT INTO customers (id, org_id, name, email) VALUES
               ('00000000-0000-4000-8000-0000000000c1', '00000000-0000-4000-8000-000000000001', 'alice', 'alice@a'),
               ('00000000-0000-4000-8000-0000000000c2', '00000000-0000-4000-8000-000000000002', 'bob', 'bob@b');
             INSERT INTO deals (org_id, customer_id, title, amount_cents, currency, stage) VALUES
               ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000000c1', 'a deal', 100, 'EUR', 'won'),
               ('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-0000000000c2', 'b deal', 200, 'USD', 'open');",
        )
        .unwrap();
    db
}

fn probe_with(db: &TestDb, pool: Option<&dyn PoolUnderTest>, seeders: &[(&str, &str)]) -> Report {
    let registry = &two_companies::REGISTRY;
    let url = db.app_url();
    let mut options = ProbeOptions::new(&url, registry, common::test_key());
    options.pool = pool;
    options.progress = false;
    options.seeders = seeders
        .iter()
        .map(|(t, s)| ((*t).to_owned(), (*s).to_owned()))
        .collect();
    tenant_probe::run(&options).unwrap()
}

fn probe(db: &TestDb) -> Report {
    probe_with(db, None, &[])
}

/// Breaks the example database with `setup` (as the admin), probes it.
fn probe_after(hint: &str, setup: &str) -> Report {
    let db = example(hint);
    db.admin().batch_execute(setup).unwrap();
    probe(&db)
}

/// The verdict and outcome of `attack` on `table` (the one result; panics if not exactly one).
fn result<'r>(report: &'r Report, attack: &str, table: &str) -> &'r tenant_probe::AttackResult {
    let found: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.attack == attack && r.table == table)
        .collect();
    assert_eq!(found.len(), 1, "{attack} on {table}: {found:#?}");
    found[0]
}

fn leaks(report: &Report) -> Vec<(String, String)> {
    report
        .with_verdict(Verdict::Leak)
        .map(|r| (r.attack.clone(), r.table.clone()))
        .collect()
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

#[derive(QueryableByName, PartialEq, Eq, Debug)]
struct TableState {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    rows: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    checksum: String,
}

/// Row count and checksum of every table, read by the admin (no RLS).
fn state(db: &TestDb) -> BTreeMap<String, TableState> {
    let mut admin = db.admin();
    let tables: Vec<Name> = diesel::sql_query(
        "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .load(&mut admin)
    .unwrap();
    tables
        .into_iter()
        .map(|t| {
            let s: TableState = diesel::sql_query(format!(
                "SELECT count(*) AS rows, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) AS checksum FROM \"{}\" x",
                t.name
            ))
            .get_result(&mut admin)
            .unwrap();
            (t.name, s)
        })
        .collect()
}

#[test]
fn the_example_schema_has_no_leak_every_attack_runs_and_nothing_changes() {
    let db = example("probe_clean");
    let before = state(&db);
    let pool = TenantPool::builder(db.app_url(), &two_companies::REGISTRY, common::test_key())
        .max_size(1)
        .build()
        .unwrap();
    let report = probe_with(&db, Some(&pool), &[]);
    let after = state(&db);

    assert_eq!(
        leaks(&report),
        Vec::<(String, String)>::new(),
        "{}",
        report.markdown()
    );
    assert!(report.unseedable.is_empty(), "{:?}", report.unseedable);
    let s = report.summary();
    assert_eq!(s.not_run, 0, "{}", report.markdown());
    // The default (signed) mode: nothing to report by name either.
    assert_eq!(s.finding, 0, "{}", report.markdown());
    assert!(!report.failed());
    assert_eq!(
        report.tables,
        ["orgs", "customers", "deals", "proposals", "invoices"]
    );
    // Every family ran, on every table where it applies.
    for family in [
        "read",
        "write",
        "no-org",
        "org-hopping",
        "privilege",
        "oracle",
        "side-channel",
        "pool",
    ] {
        assert!(
            report.results.iter().any(|r| r.family == family),
            "no {family} attack ran"
        );
    }
    for table in &report.tables {
        for attack in [
            "read_by_key",
            "full_scan",
            "insert_into_b",
            "update_moving_row_to_b",
            "merge_update",
            "empty_org_read",
            "fresh_connection_read",
            "after_scoped_read",
            "row_security_off",
            "set_role_owner",
            "truncate",
            "drop_policy",
        ] {
            assert_eq!(
                result(&report, attack, table).verdict,
                Verdict::Pass,
                "{attack} on {table}"
            );
        }
        // orgs is keyed by its org column: there is no key of B's to upsert onto.
        if table != "orgs" {
            assert_eq!(
                result(&report, "upsert_onto_b_key", table).verdict,
                Verdict::Pass,
                "upsert on {table}"
            );
        }
        // Org hopping gets nothing: the policies verify a token the session cannot make.
        for attack in ["set_config_hop", "set_local_hop", "injected_hop"] {
            let r = result(&report, attack, table);
            assert_eq!(
                (r.verdict, &r.observed),
                (Verdict::Pass, &Observed::Rows(0)),
                "{attack} on {table}"
            );
        }
    }
    // The exact refusals.
    let moved = result(&report, "update_moving_row_to_b", "deals");
    assert!(
        matches!(&moved.observed, Observed::Refused { sqlstate, message }
        if sqlstate == "42501" && message.contains("row-level security policy")),
        "{moved:?}"
    );
    let off = result(&report, "row_security_off", "customers");
    assert!(
        matches!(&off.observed, Observed::Refused { sqlstate, .. } if sqlstate == "42501"),
        "{off:?}"
    );
    let fk = report
        .results
        .iter()
        .find(|r| r.attack == "foreign_key_to_b" && r.table == "deals")
        .unwrap();
    assert!(
        matches!(&fk.observed, Observed::Refused { sqlstate, .. } if sqlstate == "23503"),
        "{fk:?}"
    );
    assert_eq!(
        result(&report, "session_context_reuse", "").verdict,
        Verdict::Pass
    );
    for attack in ["role_bypasses_rls", "member_of_a_bypassing_role"] {
        assert_eq!(
            result(&report, attack, "").verdict,
            Verdict::Pass,
            "{attack}"
        );
    }
    // Side channels are reported, not judged.
    assert_eq!(
        result(&report, "explain_estimates", "").verdict,
        Verdict::Observed
    );
    // Evidence of the run.
    assert_eq!(report.evidence_digest.as_ref().map(String::len), Some(64));
    assert!(report.junit().contains("<testsuites name=\"tenant-probe\""));
    // Nothing the probe did stayed.
    assert_eq!(before, after);
    assert_eq!(after["deals"].rows, 2);
}

#[test]
fn rls_not_forced_with_the_app_as_owner_is_caught() {
    let report = probe_after(
        "probe_owner",
        "ALTER TABLE customers NO FORCE ROW LEVEL SECURITY; ALTER TABLE customers OWNER TO tenant_app;",
    );
    let r = result(&report, "read_by_key", "customers");
    assert_eq!(
        (r.verdict, &r.observed),
        (Verdict::Leak, &Observed::Rows(1))
    );
    assert_eq!(
        result(&report, "set_role_owner", "customers").verdict,
        Verdict::Leak
    );
    assert_eq!(
        result(&report, "read_by_key", "deals").verdict,
        Verdict::Pass
    );
    assert!(report.failed());
}

#[test]
fn a_permissive_tenant_policy_with_an_always_true_policy_beside_it_is_caught() {
    let report = probe_after(
        "probe_permissive",
        "DROP POLICY tenant_isolation ON deals;
         CREATE POLICY tenant_isolation ON deals AS PERMISSIVE
           USING (org_id = (SELECT nullif(current_setting('tenant.org_id', true), '')::uuid));
         CREATE POLICY debug_all ON deals AS PERMISSIVE USING (true) WITH CHECK (true);",
    );
    for attack in ["read_by_key", "full_scan", "subquery"] {
        let r = result(&report, attack, "deals");
        assert_eq!(r.verdict, Verdict::Leak, "{attack}: {r:?}");
    }
    let insert = result(&report, "insert_into_b", "deals");
    assert_eq!(
        (insert.verdict, &insert.observed),
        (Verdict::Leak, &Observed::Rows(1))
    );
    assert!(
        leaks(&report).iter().all(|(_, t)| t == "deals"),
        "{:?}",
        leaks(&report)
    );
}

#[test]
fn a_missing_tenant_policy_on_one_table_is_caught() {
    // The org predicate is in both generated policies (the restrictive one and the
    // application's permissive one): a table that lost it in both.
    let report = probe_after(
        "probe_no_policy",
        "DROP POLICY tenant_isolation ON proposals;
         ALTER POLICY tenant_app_access ON proposals USING (true) WITH CHECK (true);",
    );
    let r = result(&report, "full_scan", "proposals");
    assert_eq!(r.verdict, Verdict::Leak, "{r:?}");
    // The real rows of other orgs show up too, not only the probe's.
    assert!(matches!(r.observed, Observed::Rows(n) if n >= 1));
    assert!(
        leaks(&report).iter().all(|(_, t)| t == "proposals"),
        "{:?}",
        leaks(&report)
    );
}

#[test]
fn a_truncate_grant_is_caught() {
    let report = probe_after(
        "probe_truncate",
        "GRANT TRUNCATE ON invoices TO tenant_app;",
    );
    let r = result(&report, "truncate", "invoices");
    assert_eq!(r.verdict, Verdict::Leak, "{r:?}");
    assert_eq!(r.note, "B's rows of the table changed");
    assert_eq!(
        leaks(&report),
        [("truncate".to_owned(), "invoices".to_owned())]
    );
}

#[test]
fn a_foreign_key_without_the_org_column_is_caught() {
    let report = probe_after(
        "probe_fk",
        "ALTER TABLE deals DROP CONSTRAINT deals_org_id_customer_id_fkey;
         ALTER TABLE customers ADD CONSTRAINT customers_id_key UNIQUE (id);
         ALTER TABLE deals ADD CONSTRAINT deals_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id);",
    );
    let r = result(&report, "foreign_key_to_b", "deals");
    assert_eq!(
        (r.verdict, &r.observed),
        (Verdict::Leak, &Observed::Rows(1)),
        "{r:?}"
    );
    assert!(
        r.expected.contains("deals_customer_id_fkey"),
        "{}",
        r.expected
    );
}

#[test]
fn a_unique_key_without_the_org_column_is_caught() {
    let report = probe_after(
        "probe_unique",
        "ALTER TABLE customers DROP CONSTRAINT customers_org_id_email_key;
         ALTER TABLE customers ADD CONSTRAINT customers_email_key UNIQUE (email);",
    );
    let r = report
        .results
        .iter()
        .find(|r| r.attack == "unique_value_of_b" && r.expected.contains("customers_email_key"))
        .unwrap();
    assert_eq!(r.verdict, Verdict::Leak, "{r:?}");
    assert!(
        matches!(&r.observed, Observed::Refused { sqlstate, message }
        if sqlstate == "23505" && message.contains("customers_email_key")),
        "{r:?}"
    );
}

#[test]
fn a_primary_key_without_the_org_column_is_an_existence_oracle_three_ways() {
    let report = probe_after(
        "probe_pkey",
        "ALTER TABLE invoices DROP CONSTRAINT invoices_pkey;
         ALTER TABLE invoices ADD CONSTRAINT invoices_pkey PRIMARY KEY (id);",
    );
    let on_pkey = |attack: &str| {
        report
            .results
            .iter()
            .find(|r| {
                r.attack == attack && r.table == "invoices" && r.expected.contains("invoices_pkey")
            })
            .unwrap_or_else(|| panic!("{attack}: {:#?}", report.results))
    };
    // A plain insert of B's id collides (23505); DO NOTHING inserts nothing; DO UPDATE meets
    // B's row and row-level security refuses it: each tells A that B's id exists.
    let plain = on_pkey("unique_value_of_b");
    assert!(
        matches!(&plain.observed, Observed::Refused { sqlstate, .. } if sqlstate == "23505"),
        "{plain:?}"
    );
    let nothing = on_pkey("on_conflict_nothing_with_b_key");
    assert_eq!(nothing.observed, Observed::Rows(0), "{nothing:?}");
    let update = on_pkey("on_conflict_update_with_b_key");
    assert!(
        matches!(&update.observed, Observed::Refused { sqlstate, .. } if sqlstate == "42501"),
        "{update:?}"
    );
    for r in [plain, nothing, update] {
        assert_eq!(r.verdict, Verdict::Leak, "{r:?}");
    }
    assert_eq!(
        leaks(&report),
        [
            ("unique_value_of_b".to_owned(), "invoices".to_owned()),
            (
                "on_conflict_nothing_with_b_key".to_owned(),
                "invoices".to_owned()
            ),
            (
                "on_conflict_update_with_b_key".to_owned(),
                "invoices".to_owned()
            ),
        ]
    );
}

#[test]
fn a_view_without_security_invoker_is_caught() {
    // Owned by the admin (a superuser), so it reads past RLS.
    let report = probe_after(
        "probe_view",
        "CREATE VIEW deal_titles AS SELECT org_id, title FROM deals;
         GRANT SELECT ON deal_titles TO tenant_app;",
    );
    let r = result(&report, "read_through_view", "public.deal_titles");
    assert_eq!(r.verdict, Verdict::Leak, "{r:?}");
    // The real orgs' two deals and the probe's B deal.
    assert_eq!(r.observed, Observed::Rows(3));
}

/// A pool that sets the org at session level and never checks what a connection carries.
struct SessionLevelPool(Pool<ConnectionManager<PgConnection>>);

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = diesel::sql_types::Text)]
    value: String,
}

impl PoolUnderTest for SessionLevelPool {
    fn query_in_org(&self, org: Uuid, sql: &str) -> Result<String, String> {
        let mut conn = self.0.get().map_err(|e| e.to_string())?;
        conn.batch_execute(&format!(
            "SELECT set_config('tenant.org_id', '{org}', false)"
        ))
        .map_err(|e| e.to_string())?;
        conn.transaction(|c| {
            diesel::sql_query(format!("SELECT ({sql})::text AS value"))
                .get_result::<Value>(c)
                .map(|v| v.value)
        })
        .map_err(|e| e.to_string())
    }

    fn execute_in_org(&self, org: Uuid, sql: &str) -> Result<String, String> {
        let mut conn = self.0.get().map_err(|e| e.to_string())?;
        conn.batch_execute(&format!(
            "SELECT set_config('tenant.org_id', '{org}', false)"
        ))
        .map_err(|e| e.to_string())?;
        conn.transaction(|c| {
            c.batch_execute(sql)?;
            diesel::sql_query("SELECT pg_backend_pid()::text AS value")
                .get_result::<Value>(c)
                .map(|v| v.value)
        })
        .map_err(|e| e.to_string())
    }
}

#[test]
fn a_pool_that_sets_the_context_at_session_level_is_caught() {
    let db = example("probe_pool");
    let pool = SessionLevelPool(
        Pool::builder()
            .max_size(1)
            .build(ConnectionManager::new(db.app_url()))
            .unwrap(),
    );
    let report = probe_with(&db, Some(&pool), &[]);
    let r = result(&report, "session_context_reuse", "");
    assert_eq!(r.verdict, Verdict::Leak, "{r:?}");
    // It resets nothing between checkouts: every kind of state the role may still create
    // reaches the next one (temporary tables are refused by the privilege the migration
    // revokes, so that kind passes).
    let mut found = leaks(&report);
    found.sort();
    assert_eq!(
        found,
        [
            "session_context_reuse",
            "state_advisory_lock",
            "state_holdable_cursor",
            "state_listen",
            "state_prepared_statement",
            "state_read_only_default",
            "state_search_path",
            "state_session_setting",
        ]
        .map(|a| (a.to_owned(), String::new()))
    );
}

#[test]
fn a_table_the_generator_cannot_fill_is_reported_and_a_seeder_fills_it() {
    let db = example("probe_seeder");
    db.admin()
        .batch_execute(
            "ALTER TABLE customers ADD CONSTRAINT customers_email_check CHECK (email LIKE '%@%')",
        )
        .unwrap();
    let report = probe(&db);
    let unseedable: Vec<&str> = report.unseedable.iter().map(|(t, _)| t.as_str()).collect();
    // Its children cannot be seeded either: each says why.
    assert_eq!(unseedable, ["customers", "deals", "proposals", "invoices"]);
    assert!(
        report.unseedable[0].1.contains("23514"),
        "{:?}",
        report.unseedable[0]
    );
    assert!(
        report.unseedable[1].1.contains("references customers"),
        "{:?}",
        report.unseedable[1]
    );
    assert!(report.failed());
    assert_eq!(report.summary().not_run, 4);

    let seeded = probe_with(
        &db,
        None,
        &[(
            "customers",
            "INSERT INTO customers (org_id, name, email) VALUES ($org, 'probe', 'probe-' || gen_random_uuid() || '@example.com') RETURNING *",
        )],
    );
    assert!(seeded.unseedable.is_empty(), "{:?}", seeded.unseedable);
    assert!(
        !seeded.failed(),
        "{}\n{:?}",
        seeded.summary_line(),
        leaks(&seeded)
    );
}

#[test]
fn the_plain_mode_reports_every_org_hop_as_a_finding_by_name() {
    // The opt-in mode that trusts every statement: the hops read B's row, and the report
    // names them findings (what the mode gives up), not leaks.
    let db = example_of(common::plain_story("probe_plain"));
    let url = db.app_url();
    let mut options = ProbeOptions::new(
        &url,
        &two_companies::REGISTRY,
        tenant_core::OrgContext::TrustEveryStatement,
    );
    options.progress = false;
    let report = tenant_probe::run(&options).unwrap();
    assert_eq!(leaks(&report), Vec::<(String, String)>::new());
    for table in &report.tables {
        for attack in ["set_config_hop", "set_local_hop", "injected_hop"] {
            let r = result(&report, attack, table);
            assert_eq!(
                (r.verdict, &r.observed),
                (Verdict::Finding, &Observed::Rows(1)),
                "{attack} on {table}"
            );
        }
    }
    // Every finding is a hop (the lateral and CTE forms hop where the planner runs the hop
    // before the scan).
    assert!(
        report
            .with_verdict(Verdict::Finding)
            .all(|r| r.family == "org-hopping" && r.observed == Observed::Rows(1))
    );
}

#[test]
fn a_probe_whose_context_does_not_match_the_database_refuses_to_run_naming_the_fix() {
    // Without the key, a signed database shows the probe no row and every attack would pass
    // for the wrong reason.
    let signed = common::story("probe_no_key");
    let url = signed.app_url();
    let options = ProbeOptions::new(
        &url,
        &two_companies::REGISTRY,
        tenant_core::OrgContext::TrustEveryStatement,
    );
    let err = tenant_probe::run(&options).unwrap_err().to_string();
    assert!(
        err.contains("verify a signed org token") && err.contains("TENANT_CONTEXT_KEY"),
        "{err}"
    );
    // With a key, a plain database is not the one the service's pool would accept.
    let plain = common::plain_story("probe_key_plain");
    let url = plain.app_url();
    let options = ProbeOptions::new(&url, &two_companies::REGISTRY, common::test_key());
    let err = tenant_probe::run(&options).unwrap_err().to_string();
    assert!(
        err.contains("generated in the plain mode") && err.contains("without a key"),
        "{err}"
    );
}

#[test]
fn a_seeder_that_is_not_one_insert_into_its_table_or_calls_an_unsafe_function_is_refused() {
    let db = example("probe_bad_seeder");
    let url = db.app_url();
    for (table, seeder, says) in [
        (
            "customers",
            "INSERT INTO customers (org_id, name, email) VALUES ($org, current_setting('tenant.org_token'), 'x@example.com') RETURNING *",
            "current_setting",
        ),
        (
            "customers",
            "INSERT INTO customers (org_id, name, email) SELECT $org, set_config('tenant.org_id', '00000000-0000-4000-8000-00000000000b', true), 'y@example.com' RETURNING *",
            "set_config",
        ),
        (
            "customers",
            "INSERT INTO deals (org_id, customer_id, title, amount_cents, currency, stage) VALUES ($org, gen_random_uuid(), 't', 1, 'EUR', 'open') RETURNING *",
            "not into `customers` alone",
        ),
    ] {
        let mut options = ProbeOptions::new(&url, &two_companies::REGISTRY, common::test_key());
        options.progress = false;
        options.seeders = [(table.to_owned(), seeder.to_owned())].into();
        let err = tenant_probe::run(&options).unwrap_err().to_string();
        assert!(
            err.contains("the seeder for table `customers` is refused") && err.contains(says),
            "{seeder}: {err}"
        );
    }
}
