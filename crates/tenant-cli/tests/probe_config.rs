//! The probe's configuration file on a fresh database, through `probe --config --admin-url`:
//! a tenant table referencing an empty global table cannot be seeded (NOT RUN, which fails the
//! run); expectations with reasons accept those outcomes, and one that no longer holds fails
//! the run; `global_rows` adds one row to the empty global table with the admin role, so every
//! attack runs, and deletes it afterwards; a leak is never accepted; a global row for a
//! tenant table, a missing admin URL, an unknown column and a file that does not parse are
//! refused naming what is wrong.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::ExitCode;

use diesel::connection::SimpleConnection;
use tenant_cli::Service;
use tenant_cli::probe::{ProbeSetup, probe_at};
use tenant_core::IntoOrgContext;
use tenant_testkit::{TestDb, roles};

mod common;
use common::{SCHEMA, args, generated};

/// Expects the NOT RUN of both tenant tables while `plans` is empty.
const EXPECT_NOT_SEEDED: &str = r#"
[[expect]]
attack = "seed"
table = "projects"
verdict = "not_run"
reason = "plans is filled by the billing service's deploy, after this check"

[[expect]]
attack = "seed"
table = "tasks"
verdict = "not_run"
reason = "its projects cannot be seeded before plans is filled"
"#;

/// A row for `plans`, with a value that must survive quoting.
const GLOBAL_PLAN: &str = r#"
[[global_rows]]
table = "plans"
values = { code = "probe's plan" }
"#;

fn plans(db: &TestDb) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let n: N = diesel::RunQueryDsl::get_result(
        diesel::sql_query("SELECT count(*) AS n FROM plans"),
        &mut db.admin(),
    )
    .unwrap();
    n.n
}

fn json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("probe.json")).unwrap()).unwrap()
}

fn verdicts(v: &serde_json::Value, verdict: &str) -> Vec<(String, String)> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verdict"] == verdict)
        .map(|r| {
            (
                r["attack"].as_str().unwrap().to_owned(),
                r["table"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Runs the probe through the library with `config` (TOML) and `admin_url`; the error text.
fn probe_error(service: &Service, app: &str, config: &str, admin_url: Option<&str>) -> String {
    let setup = ProbeSetup {
        config: Some(
            tenant_probe::config::ProbeConfig::parse(config, "tenant-probe.toml").unwrap(),
        ),
        admin_url: admin_url.map(str::to_owned),
    };
    let context =
        tenant_core::context::ContextKey::parse(tenant_testkit::TEST_CONTEXT_KEY).unwrap();
    probe_at(
        service,
        app,
        &context.into_org_context(),
        "test".into(),
        setup,
    )
    .unwrap_err()
    .to_string()
}

#[test]
fn a_fresh_database_is_probed_with_expectations_and_rows_for_its_empty_global_tables() {
    let db = TestDb::new("cli_probe_config");
    let (dir, service, up) = generated("probe-config");
    let dir = &dir.0;
    let mut admin = db.admin();
    admin.batch_execute(SCHEMA).unwrap();
    admin.batch_execute(&up).unwrap();
    db.add_test_context_key();
    let app = db.url_as(roles::APP);
    let owner = db.admin_url();
    let key_file = dir.join("context.key");
    std::fs::write(&key_file, tenant_testkit::TEST_CONTEXT_KEY).unwrap();
    let key = key_file.display().to_string();
    let out = dir.join("probe");
    let out_text = out.display().to_string();
    let probe = |extra: &[&str]| {
        let mut a = args("probe", &app);
        a.extend(["--out", &out_text, "--context-key-file", &key]);
        a.extend(extra);
        tenant_cli::run(&service, a)
    };
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };

    // No configuration: `plans` is empty, so neither tenant table can be seeded, and the run
    // fails on the attacks that could not run.
    assert_eq!(probe(&[]), ExitCode::FAILURE);
    let v = json(&out);
    assert_eq!(
        verdicts(&v, "not_run"),
        [
            ("seed".to_owned(), "projects".to_owned()),
            ("seed".to_owned(), "tasks".to_owned())
        ]
    );
    assert!(
        v["unseedable"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("references plans, which has no row to reference"),
        "{}",
        v["unseedable"]
    );

    // Expecting both does not make a pass: a run that attacked no tenant table proved nothing.
    let expect = file("expect.toml", EXPECT_NOT_SEEDED);
    assert_eq!(probe(&["--config", &expect]), ExitCode::FAILURE);
    let v = json(&out);
    assert_eq!(
        (
            v["verdict"].as_str(),
            v["summary"]["not_run_expected"].as_u64()
        ),
        (Some("fail"), Some(2))
    );
    let md = std::fs::read_to_string(out.join("probe.md")).unwrap();
    assert!(
        md.contains("2 not run (2 expected), no tenant table attacked: FAIL"),
        "{md}"
    );

    // Refusals before anything is written, each naming what is wrong.
    let err = probe_error(&service, &app, GLOBAL_PLAN, None);
    assert!(
        err.contains("global table `plans`: it is empty, and adding a row takes a role that may write global tables: give the admin role's URL (--admin-url)"),
        "{err}"
    );
    let err = probe_error(
        &service,
        &app,
        "[[global_rows]]\ntable = \"projects\"",
        Some(&owner),
    );
    assert!(
        err.contains("global table `projects`: it is not a global table of the registry"),
        "{err}"
    );
    let err = probe_error(
        &service,
        &app,
        &GLOBAL_PLAN.replace("code =", "cdoe ="),
        Some(&owner),
    );
    assert!(err.contains("it has no column `cdoe`"), "{err}");
    assert_eq!(plans(&db), 0, "a refused configuration wrote nothing");
    let broken = file(
        "broken.toml",
        "[[expect]]\nattack = \"seed\"\nverdict = \"leak\"",
    );
    assert_eq!(probe(&["--config", &broken]), ExitCode::FAILURE);

    // The row for `plans`: every attack runs on both tables, none leaks, nothing is left.
    let seeded = file("seeded.toml", GLOBAL_PLAN);
    assert_eq!(
        probe(&["--config", &seeded, "--admin-url", &owner]),
        ExitCode::SUCCESS
    );
    let v = json(&out);
    assert_eq!(v["summary"]["leak"], 0);
    assert_eq!(v["summary"]["not_run"], 0);
    assert_eq!(v["tables"], serde_json::json!(["projects", "tasks"]));
    assert!(
        v["global_rows"][0].as_str().unwrap().starts_with(
            "`plans` was empty: the probe added {\"code\": \"probe's plan\"} with the admin role"
        ),
        "{}",
        v["global_rows"]
    );
    assert_eq!(plans(&db), 0, "the probe deleted the row it added");

    // An expectation that no longer holds fails the run (the row is still deleted).
    let both = file("both.toml", &format!("{GLOBAL_PLAN}{EXPECT_NOT_SEEDED}"));
    assert_eq!(
        probe(&["--config", &both, "--admin-url", &owner]),
        ExitCode::FAILURE
    );
    let v = json(&out);
    assert_eq!(v["verdict"], "fail");
    assert_eq!(
        v["stale_expectations"][0],
        "the expectation for `seed` on `projects` matched no result: check the attack and table names against probe.md, or remove it"
    );
    assert_eq!(plans(&db), 0);

    // A table that cannot be seeded (a check the generator cannot satisfy), expected with a
    // reason: the run passes on the other table, and every report says what was accepted
    // and why.
    admin
        .batch_execute("ALTER TABLE tasks ADD CONSTRAINT tasks_ticket CHECK (title LIKE 'T-%')")
        .unwrap();
    let expect_tasks = file(
        "tasks.toml",
        &format!(
            "{GLOBAL_PLAN}
            [[expect]]
            attack = \"seed\"
            table = \"tasks\"
            verdict = \"not_run\"
            reason = \"titles follow the ticket format; tests/tasks.rs attacks tasks\""
        ),
    );
    assert_eq!(
        probe(&["--config", &expect_tasks, "--admin-url", &owner]),
        ExitCode::SUCCESS
    );
    let v = json(&out);
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["tables"], serde_json::json!(["projects"]));
    assert_eq!(v["summary"]["not_run_expected"], 1);
    let seed = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["attack"] == "seed")
        .unwrap()
        .clone();
    assert_eq!(
        (seed["table"].as_str(), seed["expected_by"].as_str()),
        (
            Some("tasks"),
            Some("titles follow the ticket format; tests/tasks.rs attacks tasks")
        )
    );
    let md = std::fs::read_to_string(out.join("probe.md")).unwrap();
    assert!(
        md.contains("1 not run (1 expected): PASS")
            && md.contains("expected by the configuration: titles follow the ticket format"),
        "{md}"
    );
    let junit = std::fs::read_to_string(out.join("probe.junit.xml")).unwrap();
    assert!(
        junit.contains(r#"errors="0""#) && junit.matches("<skipped").count() == 1,
        "{junit}"
    );
    assert_eq!(plans(&db), 0);
    // The better answer: a seeder (docs/probe.md's), and both tables are attacked.
    let seeder = file(
        "seeder.toml",
        &format!(
            "{GLOBAL_PLAN}
            [seeders]
            tasks = \"INSERT INTO tasks (org_id, project_id, title) SELECT $org, id, 'T-1' FROM projects LIMIT 1 RETURNING *\""
        ),
    );
    assert_eq!(
        probe(&["--config", &seeder, "--admin-url", &owner]),
        ExitCode::SUCCESS
    );
    let v = json(&out);
    assert_eq!(v["tables"], serde_json::json!(["projects", "tasks"]));
    assert_eq!(
        (
            v["summary"]["leak"].as_u64(),
            v["summary"]["not_run"].as_u64()
        ),
        (Some(0), Some(0))
    );
    admin
        .batch_execute("ALTER TABLE tasks DROP CONSTRAINT tasks_ticket")
        .unwrap();

    // A global table that has a row is never written: the probe uses the row that is there.
    admin
        .batch_execute("INSERT INTO plans (code) VALUES ('free')")
        .unwrap();
    assert_eq!(
        probe(&["--config", &seeded, "--admin-url", &owner]),
        ExitCode::SUCCESS
    );
    let v = json(&out);
    assert_eq!(
        v["global_rows"][0],
        "`plans` already had rows: the probe wrote nothing to it"
    );
    assert_eq!(plans(&db), 1);

    // A leak cannot be expected away: the same key without the org column leaks through
    // its unique-value oracle, and an expectation naming that attack does not excuse it.
    admin
        .batch_execute(
            "ALTER TABLE tasks DROP CONSTRAINT tasks_org_id_project_id_title_key;
             ALTER TABLE tasks ADD CONSTRAINT tasks_project_title UNIQUE (project_id, title);",
        )
        .unwrap();
    let excuse = file(
        "excuse.toml",
        "[[expect]]\nattack = \"unique_value_of_b\"\ntable = \"tasks\"\nverdict = \"finding\"\nreason = \"we accept this oracle, we promise\"",
    );
    assert_eq!(probe(&["--config", &excuse]), ExitCode::FAILURE);
    let v = json(&out);
    assert!(
        verdicts(&v, "leak").contains(&("unique_value_of_b".to_owned(), "tasks".to_owned())),
        "{v}"
    );
    assert_eq!(
        v["stale_expectations"][0],
        "`unique_value_of_b` on `tasks` was expected to be finding and was pass, LEAK: remove the expectation"
    );
}
