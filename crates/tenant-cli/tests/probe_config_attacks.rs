//! Attacks on the probe's configuration file (`tenant-probe.toml`): seeders, `[[global_rows]]`
//! and `[[expect]]`, each against a real server, written by a reviewer who set out to make a
//! leaking database pass the probe or make it write where it should not. Each test asserts
//! the refusal or the safe outcome that fixed what the attack first achieved (the comments
//! say what that was).

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use tenant_cli::Service;
use tenant_cli::probe::{ProbeSetup, probe_at};
use tenant_core::OrgContext;
use tenant_core::context::ContextKey;
use tenant_lint::{Registry, TableEntry, TableKind};
use tenant_probe::Verdict;
use tenant_probe::config::ProbeConfig;
use tenant_testkit::{TestDb, roles};

mod common;
use common::{RemoveOnDrop, SCHEMA, generated, generated_for};

fn key() -> OrgContext {
    OrgContext::Signed(ContextKey::parse(tenant_testkit::TEST_CONTEXT_KEY).unwrap())
}

/// A database with the common service's schema, its generated migration and the test key.
fn service_db(hint: &str) -> (TestDb, RemoveOnDrop, Service) {
    let db = TestDb::new(hint);
    let (dir, service, up) = generated(hint);
    let mut admin = db.admin();
    admin.batch_execute(SCHEMA).unwrap();
    admin.batch_execute(&up).unwrap();
    db.add_test_context_key();
    (db, dir, service)
}

fn registry(entries: Vec<(&'static str, Option<&'static str>)>) -> &'static Registry {
    Box::leak(Box::new(Registry::from_entries(
        entries
            .into_iter()
            .map(|(name, org)| TableEntry {
                name,
                kind: match org {
                    Some(org_column) => TableKind::Tenant { org_column },
                    None => TableKind::Global,
                },
            })
            .collect(),
    )))
}

fn config(text: &str) -> ProbeConfig {
    ProbeConfig::parse(text, "tenant-probe.toml").unwrap()
}

fn probe(
    service: &Service,
    db: &TestDb,
    config: Option<ProbeConfig>,
    admin_url: Option<String>,
) -> Result<tenant_probe::Report, tenant_cli::CliError> {
    probe_at(
        service,
        &db.url_as(roles::APP),
        &key(),
        "redteam".into(),
        ProbeSetup { config, admin_url },
    )
}

fn leaks(r: &tenant_probe::Report) -> Vec<(String, String)> {
    r.with_verdict(Verdict::Leak)
        .map(|r| (r.attack.clone(), r.table.clone()))
        .collect()
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<N>(conn).unwrap().n
}

/// The unique key of `tasks` without the org column: an existence oracle on B's titles,
/// which the probe reports as `unique_value_of_b` (crates/tenant-cli/tests/audit.rs).
const LEAKY_UNIQUE: &str = "ALTER TABLE tasks DROP CONSTRAINT tasks_org_id_project_id_title_key;
     ALTER TABLE tasks ADD CONSTRAINT tasks_project_title UNIQUE (project_id, title);";

// ---------------------------------------------------------------------------------------
// Seeders
// ---------------------------------------------------------------------------------------

/// ATTACK 1: a seeder whose RETURNING list is not `*` but a decoy: the row it inserts is
/// real, the row it reports to the probe is not. The oracle attacks then aim at values B does
/// not have, and a unique key that leaks B's titles passes.
#[test]
fn a_seeder_returning_a_decoy_row_is_refused_so_it_cannot_hide_an_oracle() {
    let (db, _dir, service) = service_db("rt_decoy_seeder");
    let mut admin = db.admin();
    admin
        .batch_execute("INSERT INTO plans (code) VALUES ('free')")
        .unwrap();
    admin.batch_execute(LEAKY_UNIQUE).unwrap();

    // Control: without a configuration the probe finds the oracle.
    let control = probe(&service, &db, None, None).unwrap();
    assert!(
        leaks(&control).contains(&("unique_value_of_b".into(), "tasks".into())),
        "control: the leak is found without a config: {}",
        control.summary_line()
    );
    assert!(control.failed());

    // The seeder inserts a real row ('T-1'), and tells the probe the title is a random decoy.
    let decoy = config(
        r#"
        [seeders]
        tasks = "INSERT INTO tasks (org_id, project_id, title) SELECT $org, id, 'T-1' FROM projects LIMIT 1 RETURNING org_id, id, project_id, 'decoy-' || gen_random_uuid()::text AS title"
        "#,
    );
    // Fixed: the returned row must be the row in the table; the decoy is refused by name.
    let err = probe(&service, &db, Some(decoy), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the seeder for table `tasks` is refused: the row its INSERT returned is not a row of the table in this org: a seeder must end in RETURNING * and insert exactly one row"),
        "{err}"
    );
}

/// ATTACK 1b: the careless form of attack 1: a seeder that returns only the key columns
/// (`RETURNING org_id, id, project_id` instead of `RETURNING *`). Nothing is refused; B's
/// title is unknown to the probe, and the unique-value oracle on (project_id, title) passes.
#[test]
fn a_seeder_returning_a_subset_of_columns_is_refused() {
    let (db, _dir, service) = service_db("rt_subset_seeder");
    let mut admin = db.admin();
    admin
        .batch_execute("INSERT INTO plans (code) VALUES ('free')")
        .unwrap();
    admin.batch_execute(LEAKY_UNIQUE).unwrap();
    let careless = config(
        r#"
        [seeders]
        tasks = "INSERT INTO tasks (org_id, project_id, title) SELECT $org, id, 'T-1' FROM projects LIMIT 1 RETURNING org_id, id, project_id"
        "#,
    );
    // Fixed: a subset of the columns is not the row; refused before any attack runs, so no
    // NOT RUN is left to expect away.
    let err = probe(&service, &db, Some(careless), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("a seeder must end in RETURNING *"), "{err}");
}

/// ATTACK 2: a seeder that cannot succeed (it references a project that does not exist) makes
/// a table unseedable, and an `[[expect]]` of `seed` NOT RUN for it waives the table: none of
/// its attacks runs, and the run passes. Here every org can read every row of the table.
#[test]
fn a_failing_seeder_is_an_error_no_expectation_can_waive() {
    let (db, _dir, service) = service_db("rt_waived_table");
    let mut admin = db.admin();
    // (RLS disabled outright is refused by the pool's start-up check, before the probe runs;
    // an isolation policy edited to let every org read is not.)
    admin
        .batch_execute(
            "INSERT INTO plans (code) VALUES ('free');
             DROP POLICY tenant_isolation ON tasks;
             CREATE POLICY everyone_reads ON tasks FOR SELECT TO tenant_app USING (true);",
        )
        .unwrap();
    let control = probe(&service, &db, None, None).unwrap();
    assert!(
        control.failed() && !leaks(&control).is_empty(),
        "control: {}",
        control.summary_line()
    );

    let waiver = config(
        r#"
        [seeders]
        tasks = "INSERT INTO tasks (org_id, project_id, title) VALUES ($org, gen_random_uuid(), 'T-1') RETURNING *"

        [[expect]]
        attack = "seed"
        table = "tasks"
        verdict = "not_run"
        reason = "tasks are written by a worker only; covered by tests/tasks.rs"
        "#,
    );
    // Fixed: a seeder that fails is an error, which no expectation can accept.
    let err = probe(&service, &db, Some(waiver), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "the seeder for table `tasks` is refused: the seeder's row was refused (23503"
        ),
        "{err}"
    );
}

/// ATTACK 3: seeders that write another table or run more than one statement, injected into
/// the probe's SQL. check_seeders only compares the INSERT targets: a data-modifying CTE on
/// another table is not refused by the check (the docs say it is), but the probe runs the
/// seeder inside `WITH q AS (...)`, where PostgreSQL refuses a nested data-modifying WITH.
#[test]
fn seeders_that_write_elsewhere_or_inject_are_refused_or_fail_safe() {
    let (db, _dir, service) = service_db("rt_seeder_inject");
    let mut admin = db.admin();
    admin
        .batch_execute("INSERT INTO plans (code) VALUES ('free')")
        .unwrap();
    let run = |seeder: &str| {
        let text = format!(
            "[seeders]\ntasks = {}\n",
            toml_string(seeder) // the seeder as a TOML string
        );
        probe(&service, &db, Some(config(&text)), None)
    };
    // Two statements: refused before anything runs.
    let e = run("INSERT INTO tasks (org_id, project_id, title) SELECT $org, id, 'x' FROM projects LIMIT 1 RETURNING *; DELETE FROM projects").unwrap_err();
    eprintln!("two statements: {e}");
    // set_config: refused.
    let e = run("INSERT INTO tasks (org_id, project_id, title) SELECT $org, id, set_config('tenant.org_id', 'x', true) FROM projects LIMIT 1 RETURNING *").unwrap_err();
    eprintln!("set_config: {e}");
    // INSERT into another table: refused.
    let e = run("INSERT INTO projects (org_id, name, plan) VALUES ($org, 'p', 'free') RETURNING *")
        .unwrap_err();
    eprintln!("other table: {e}");
    // A data-modifying CTE on another table.
    let cte = run(
        "WITH gone AS (DELETE FROM projects RETURNING 1) INSERT INTO tasks (org_id, project_id, title) SELECT $org, id, 'x' FROM projects LIMIT 1 RETURNING *",
    );
    match &cte {
        Err(e) => eprintln!("CTE delete: refused before it ran: {e}"),
        Ok(r) => eprintln!(
            "CTE delete: NOT refused by check_seeders; at run time: {:?}",
            r.unseedable
        ),
    }
    // A string holding $org: the textual replacement flips the quoting of the statement.
    let quoted = run(
        "INSERT INTO tasks (org_id, project_id, title) SELECT $org, id, 'a$org b' FROM projects LIMIT 1 RETURNING *",
    );
    match &quoted {
        Err(e) => eprintln!("'$org' in a string: refused: {e}"),
        Ok(r) => eprintln!("'$org' in a string: {:?}", r.unseedable),
    }
    // The database is untouched whatever happened (everything ran in rolled-back transactions).
    assert_eq!(count(&mut admin, "SELECT count(*) AS n FROM projects"), 0);
    assert_eq!(count(&mut admin, "SELECT count(*) AS n FROM plans"), 1);
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

// ---------------------------------------------------------------------------------------
// Global rows
// ---------------------------------------------------------------------------------------

/// ATTACK 4: `global_rows` naming a tenant table, a table not in the registry, a column the
/// table lacks, a value that tries to break out of its quotes; an empty table without
/// --admin-url; a table that already has a row. All must be refused or write nothing.
#[test]
fn global_rows_cannot_touch_a_tenant_table_or_inject() {
    let (db, _dir, service) = service_db("rt_global_refusals");
    let admin_url = db.admin_url();
    let mut admin = db.admin();
    let err = |text: &str, admin: Option<String>| {
        probe(&service, &db, Some(config(text)), admin)
            .unwrap_err()
            .to_string()
    };
    let e = err(
        "[[global_rows]]\ntable = \"projects\"\nvalues = { name = \"x\" }",
        Some(admin_url.clone()),
    );
    assert!(e.contains("not a global table"), "{e}");
    let e = err(
        "[[global_rows]]\ntable = \"pg_authid\"",
        Some(admin_url.clone()),
    );
    assert!(e.contains("not a global table"), "{e}");
    let e = err(
        "[[global_rows]]\ntable = \"plans\"\nvalues = { nope = \"x\" }",
        Some(admin_url.clone()),
    );
    assert!(e.contains("no column `nope`"), "{e}");
    let e = err("[[global_rows]]\ntable = \"plans\"", None);
    assert!(e.contains("--admin-url"), "{e}");
    assert_eq!(count(&mut admin, "SELECT count(*) AS n FROM plans"), 0);

    // A value that tries to end its literal: quoted, so it is the row's code, nothing more.
    let hostile = "x'); DELETE FROM projects; SELECT ('";
    let text = format!(
        "[[global_rows]]\ntable = \"plans\"\nvalues = {{ code = {} }}",
        toml_string(hostile)
    );
    let report = probe(&service, &db, Some(config(&text)), Some(admin_url.clone())).unwrap();
    eprintln!("{}\n{:?}", report.summary_line(), report.global_rows);
    assert!(report.global_rows[0].contains("DELETE FROM projects"));
    // Added and deleted: nothing left.
    assert_eq!(count(&mut admin, "SELECT count(*) AS n FROM plans"), 0);

    // A table with a row is never written.
    admin
        .batch_execute("INSERT INTO plans (code) VALUES ('free')")
        .unwrap();
    let report = probe(
        &service,
        &db,
        Some(config("[[global_rows]]\ntable = \"plans\"")),
        Some(admin_url),
    )
    .unwrap();
    assert!(
        report.global_rows[0].contains("already had rows"),
        "{:?}",
        report.global_rows
    );
    assert_eq!(count(&mut admin, "SELECT count(*) AS n FROM plans"), 1);
}

/// ATTACK 5: --admin-url names another database than --database-url (a stale CI variable, a
/// copy-paste of production's admin URL). The probe checks that the table is empty in the
/// probed database, then writes the row in the other one, whose table has rows ("a table that
/// already has a row is never written").
#[test]
fn an_admin_url_of_another_database_is_refused_before_writing() {
    let (probed, _dir, service) = service_db("rt_admin_elsewhere_a");
    let other = TestDb::new("rt_admin_elsewhere_b");
    {
        let (_d2, _s2, up) = generated("rt_admin_elsewhere_b");
        let mut admin = other.admin();
        admin.batch_execute(SCHEMA).unwrap();
        admin.batch_execute(&up).unwrap();
        admin
            .batch_execute(
                "INSERT INTO plans (code) VALUES ('production-plan');
                 CREATE TABLE seen (op text, code text);
                 CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                   IF TG_OP = 'INSERT' THEN
                     INSERT INTO seen VALUES (TG_OP, NEW.code);
                   ELSE
                     INSERT INTO seen VALUES (TG_OP, OLD.code);
                   END IF;
                   RETURN NULL;
                 END $$;
                 CREATE TRIGGER note AFTER INSERT OR DELETE ON plans
                   FOR EACH ROW EXECUTE FUNCTION note();",
            )
            .unwrap();
    }
    let result = probe(
        &service,
        &probed,
        Some(config("[[global_rows]]\ntable = \"plans\"")),
        Some(other.admin_url()),
    );
    match &result {
        Ok(r) => eprintln!("{}\n{:?}", r.summary_line(), r.global_rows),
        Err(e) => eprintln!("error: {e}"),
    }
    #[derive(QueryableByName, Debug)]
    struct Seen {
        #[diesel(sql_type = diesel::sql_types::Text)]
        op: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        code: String,
    }
    let seen: Vec<Seen> = diesel::sql_query("SELECT op, code FROM seen")
        .load(&mut other.admin())
        .unwrap();
    eprintln!("the other database saw: {seen:?}");
    // Fixed: an admin URL of another database is refused before anything is written there.
    assert!(seen.is_empty(), "written to the other database: {seen:?}");
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("global table `plans`: the admin URL reaches database `")
            && err.contains("give the admin URL of the database the probe attacks"),
        "{err}"
    );
}

/// ATTACK 6: a global table the application role sees as empty (row-level security on the
/// global table hides its rows from the application role) and that has no primary key: the
/// probe adds a row identical to the hidden one, and its DELETE, matching by the whole row,
/// deletes both: a row it did not add is gone.
#[test]
fn a_global_table_with_rows_the_app_cannot_see_is_never_written() {
    static TABLES: std::sync::OnceLock<&'static Registry> = std::sync::OnceLock::new();
    let registry = *TABLES.get_or_init(|| {
        registry(vec![
            ("regions", None),
            ("plans", None),
            ("projects", Some("org_id")),
            ("tasks", Some("org_id")),
        ])
    });
    let db = TestDb::new("rt_hidden_global");
    let (_dir, service, up) = generated_for(registry, "rt_hidden_global");
    let mut admin = db.admin();
    admin
        .batch_execute(&format!(
            "{SCHEMA}
             CREATE TABLE regions (code text NOT NULL, label text);"
        ))
        .unwrap();
    admin.batch_execute(&up).unwrap();
    db.add_test_context_key();
    admin
        .batch_execute(
            "INSERT INTO plans (code) VALUES ('free');
             INSERT INTO regions VALUES ('eu', 'Europe (retired)');
             ALTER TABLE regions ENABLE ROW LEVEL SECURITY;
             CREATE POLICY live ON regions FOR SELECT TO PUBLIC USING (label NOT LIKE '%(retired)');",
        )
        .unwrap();
    let report = probe(
        &service,
        &db,
        Some(config(
            "[[global_rows]]\ntable = \"regions\"\nvalues = { code = \"eu\", label = \"Europe (retired)\" }",
        )),
        Some(db.admin_url()),
    );
    match &report {
        Ok(r) => eprintln!("{}\n{:?}", r.summary_line(), r.global_rows),
        Err(e) => eprintln!("error: {e}"),
    }
    // Fixed: the table is empty only to the application role; as the admin sees it, it has a
    // row, so nothing is written (and nothing deleted).
    let left = count(&mut admin, "SELECT count(*) AS n FROM regions");
    assert_eq!(left, 1, "the row the probe did not add is gone");
    let report = report.unwrap();
    assert!(
        report.global_rows.contains(
            &"`regions` has rows the application role cannot see: the probe wrote nothing to it"
                .to_owned()
        ),
        "{:?}",
        report.global_rows
    );
}

/// ATTACK 7: the probe fails half-way after adding a global row (here: a seeder that runs
/// past the statement timeout, which PL/pgSQL's `WHEN OTHERS` does not catch), and the
/// delete fails too (here a trigger; in life the same outage that broke the run). The run's
/// error names only the first failure: the row left behind, and the DELETE to run by hand,
/// are never reported.
#[test]
fn a_failed_run_still_names_the_row_it_could_not_delete() {
    let (db, _dir, service) = service_db("rt_half_way");
    let mut admin = db.admin();
    admin
        .batch_execute(
            "CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'plans rows are referenced elsewhere'; END $$;
             CREATE TRIGGER keep BEFORE DELETE ON plans FOR EACH ROW EXECUTE FUNCTION keep();",
        )
        .unwrap();
    let slow = config(
        r#"
        [seeders]
        projects = "INSERT INTO projects (org_id, name, plan) SELECT $org, 'p', (SELECT code FROM plans LIMIT 1) FROM generate_series(1, 2000000000) g WHERE g = 0 RETURNING *"

        [[global_rows]]
        table = "plans"
        "#,
    );
    let mut options =
        tenant_probe::ProbeOptions::new(&db.url_as(roles::APP), service.registry, key())
            .with_config(slow);
    options.admin_url = Some(db.admin_url());
    options.statement_timeout_ms = 1500;
    options.progress = false;
    let outcome = tenant_probe::run(&options);
    let message = match &outcome {
        Ok(r) => r.summary_line(),
        Err(e) => e.to_string(),
    };
    eprintln!("outcome: {message}");
    let left = count(&mut admin, "SELECT count(*) AS n FROM plans");
    assert_eq!(left, 1, "the row the probe added is still in plans");
    // Fixed: the error names the row left behind and the DELETE that removes it, and the
    // run's own failure after it.
    assert!(
        message.contains("the rows the probe added could not all be deleted; delete them as the admin role: DELETE FROM \"plans\"")
            && message.contains("the run itself failed first: a statement ran longer than statement_timeout"),
        "{message}"
    );
}

/// ATTACK 8: a panic half-way (the value generator slices a text by bytes: a tenant table whose
/// name has a non-ASCII letter, with a varchar(40) column, cuts inside a character) after a
/// global row was added: no guard deletes it.
#[test]
fn a_panic_after_a_global_row_was_added_still_deletes_it() {
    static TABLES: std::sync::OnceLock<&'static Registry> = std::sync::OnceLock::new();
    let registry =
        *TABLES.get_or_init(|| registry(vec![("plans", None), ("élèves", Some("org_id"))]));
    let db = TestDb::new("rt_panic_half_way");
    let (_dir, service, up) = generated_for(registry, "rt_panic_half_way");
    let mut admin = db.admin();
    admin
        .batch_execute(
            "CREATE TABLE plans (code text PRIMARY KEY);
             CREATE TABLE \"élèves\" (org_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(),
                 nom varchar(40) NOT NULL, plan text NOT NULL REFERENCES plans (code),
                 PRIMARY KEY (org_id, id));",
        )
        .unwrap();
    admin.batch_execute(&up).unwrap();
    db.add_test_context_key();
    // Fixed: the generator cuts a value by characters (it panicked inside `é`), so the run
    // passes; and a panic after a global row was added (a pool that panics, standing in for
    // any bug) still deletes the row, then goes on.
    let mut options =
        tenant_probe::ProbeOptions::new(&db.url_as(roles::APP), service.registry, key())
            .with_config(config("[[global_rows]]\ntable = \"plans\""));
    options.admin_url = Some(db.admin_url());
    options.progress = false;
    let report = tenant_probe::run(&options).unwrap();
    assert!(!report.failed(), "{}", report.summary_line());
    assert_eq!(count(&mut admin, "SELECT count(*) AS n FROM plans"), 0);

    struct Panics;
    impl tenant_probe::PoolUnderTest for Panics {
        fn query_in_org(&self, _: uuid::Uuid, _: &str) -> Result<String, String> {
            panic!("a bug in the pool under test")
        }
    }
    options.pool = Some(&Panics);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tenant_probe::run(&options).map(|r| r.summary_line())
    }));
    assert!(outcome.is_err(), "the panic goes on");
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM plans"),
        0,
        "the row added before the panic was deleted"
    );
}

// ---------------------------------------------------------------------------------------
// Expectations and the reports
// ---------------------------------------------------------------------------------------

fn result(attack: &str, table: &str, verdict: Verdict) -> tenant_probe::AttackResult {
    tenant_probe::AttackResult {
        attack: attack.into(),
        family: "seed".into(),
        threat: "-".into(),
        table: table.into(),
        sql: String::new(),
        expected: "a row of A and of B".into(),
        observed: tenant_probe::Observed::NotRun("the generated row was refused".into()),
        verdict,
        note: String::new(),
        expected_by: None,
    }
}

fn report(results: Vec<tenant_probe::AttackResult>) -> tenant_probe::Report {
    tenant_probe::Report {
        generated_at: String::new(),
        duration_ms: 0,
        server_version_num: 0,
        server_version: String::new(),
        role: "tenant_app".into(),
        evidence_digest: None,
        org_a: String::new(),
        org_b: String::new(),
        tables: vec!["projects".into()],
        unseedable: vec![("tasks".into(), "refused".into())],
        results,
        global_rows: vec![],
        stale_expectations: vec![],
    }
}

/// ATTACK 9: a reason (and a global row's values, and a stale expectation's attack name) that
/// forge structure in probe.md. Line breaks are escaped; inline HTML, Unicode line separators
/// and code-span breaks are not.
#[test]
fn a_reason_cannot_forge_structure_in_probe_md() {
    let forged = "written by a trigger only<br><br></li></ul><h2>Every attack</h2><p>0 leaks, all attacks pass</p><!-- ";
    let c = config(&format!(
        "[[expect]]\nattack = \"seed\"\ntable = \"tasks\"\nverdict = \"not_run\"\nreason = {}",
        toml_string(forged)
    ));
    let mut r = report(vec![
        result("seed", "tasks", Verdict::NotRun),
        result("read_by_key", "projects", Verdict::Pass),
    ]);
    c.apply(&mut r);
    assert!(!r.failed());
    let md = r.markdown();
    let line = md
        .lines()
        .find(|l| l.contains("expected by the configuration"))
        .unwrap();
    eprintln!("{line}");
    // Fixed: HTML in text from a configuration is shown, never rendered.
    assert!(
        !line.contains("<h2>") && !line.contains("<!--") && line.contains("&lt;h2&gt;Every attack"),
        "{line}"
    );
    // U+2028 / U+0085 survive md_line (editors and some viewers break lines there).
    let c = config(&format!(
        "[[expect]]\nattack = \"seed\"\ntable = \"tasks\"\nverdict = \"not_run\"\nreason = \"{}\"",
        "trigger only\\u2028- **read_by_key** on `tasks`: pass\\u0085"
    ));
    let mut r = report(vec![result("seed", "tasks", Verdict::NotRun)]);
    c.apply(&mut r);
    let md = r.markdown();
    assert!(!md.contains('\u{2028}') && !md.contains('\u{85}'), "{md}");
    assert!(
        md.contains("trigger only\\u{2028}- **read_by_key**"),
        "{md}"
    );
}

/// ATTACK 10: a reason that says nothing: ten zero-width spaces (not whitespace to `trim`),
/// or ten characters of filler, pass the "at least 10 characters" rule.
#[test]
fn a_reason_of_invisible_characters_is_refused() {
    let invisible = "\u{200b}".repeat(10);
    let parsed = ProbeConfig::parse(
        &format!(
            "[[expect]]\nattack = \"seed\"\ntable = \"tasks\"\nverdict = \"not_run\"\nreason = \"{invisible}\""
        ),
        "t.toml",
    );
    // Fixed: invisible characters are no reason.
    let err = parsed.unwrap_err().to_string();
    assert!(err.contains("say why the service expects it"), "{err}");
}

/// ATTACK 11: a misspelt seeder table is accepted and configures nothing (unknown *keys* are
/// refused, unknown *tables* are not). Fail-safe: the generator runs instead.
#[test]
fn a_seeder_for_no_registered_table_is_refused() {
    let c = config("[seeders]\ntaks = \"INSERT INTO taks (org_id) VALUES ($org) RETURNING *\"");
    // Fixed: refused before the probe connects, naming the table.
    let options =
        tenant_probe::ProbeOptions::new("postgres://nowhere.invalid/x", &common::REGISTRY, key())
            .with_config(c);
    let err = tenant_probe::run(&options).unwrap_err().to_string();
    assert!(
        err.contains(
            "the seeder for table `taks` is refused: it is not a tenant table of the registry"
        ),
        "{err}"
    );
}

/// ATTACK 12: expectations that try to excuse a leak: verdict spelt in other cases or with
/// spaces, `refused`, `pass`; an expectation on a leaking result.
#[test]
fn no_spelling_of_leak_is_expectable_and_a_leak_is_never_excused() {
    for v in [
        "leak",
        "Leak",
        "LEAK",
        " leak",
        "leak ",
        "pass",
        "refused",
        "refused_by_citus",
    ] {
        let text = format!(
            "[[expect]]\nattack = \"read_by_key\"\ntable = \"tasks\"\nverdict = \"{v}\"\nreason = \"known issue, ticket SEC-1\""
        );
        assert!(ProbeConfig::parse(&text, "t.toml").is_err(), "{v}");
    }
    let c = config(
        "[[expect]]\nattack = \"read_by_key\"\ntable = \"tasks\"\nverdict = \"not_run\"\nreason = \"known issue, ticket SEC-1\"",
    );
    let mut r = report(vec![
        result("read_by_key", "tasks", Verdict::Leak),
        result("read_by_key", "tasks", Verdict::NotRun),
    ]);
    c.apply(&mut r);
    assert!(
        r.failed(),
        "HELD: a leak beside an expected NOT RUN still fails"
    );
    assert_eq!(r.results[0].expected_by, None);
}
