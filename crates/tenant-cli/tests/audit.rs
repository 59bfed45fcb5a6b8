//! A service with a schema of its own (not the example's) through every command, on a real
//! server: `gen` writes its migration; applied, `audit` finds nothing and `evidence` writes its
//! files; `probe` passes (a unique key with the org column beside a composite foreign key is
//! no false NOT RUN) and finds the key without it; `org export`, `restore` and `purge` and
//! `access report` run on its tables; a registered table that lost its protection fails
//! `audit` and `evidence` with exit code 1.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::ExitCode;

use diesel::connection::SimpleConnection;
use tenant_testkit::{TestDb, roles};

mod common;
use common::{SCHEMA, args, generated};

#[test]
fn a_service_with_its_own_schema_goes_through_every_command() {
    let db = TestDb::new("cli_own_schema");
    let (dir, service, up) = generated("own");
    let dir = &dir.0;
    let mut admin = db.admin();
    admin.batch_execute(SCHEMA).unwrap();
    admin.batch_execute(&up).unwrap();

    let app = db.url_as(roles::APP);
    let report = tenant_cli::catalog::audit(&service, &app).unwrap();
    assert_eq!(report.error_count(), 0, "{:#?}", report.findings);
    assert_eq!(
        tenant_cli::run(&service, args("audit", &app)),
        ExitCode::SUCCESS
    );
    // The same database through the `tenant-safe` binary, without the service's code: the
    // tables read from the catalog, the org column named or the default.
    assert_eq!(
        tenant_cli::run_standalone(["tenant-safe", "audit", "--database-url", &app]),
        ExitCode::SUCCESS
    );
    let discovered = tenant_cli::discover::registry_from_catalog(&app, "public", "org_id").unwrap();
    let tables: Vec<(&str, bool)> = discovered
        .tables()
        .map(|t| (t.name, t.is_tenant()))
        .collect();
    assert_eq!(
        tables,
        [("plans", false), ("projects", true), ("tasks", true)]
    );
    assert_eq!(
        tenant_cli::run_standalone([
            "tenant-safe",
            "--org-column",
            "tenant_id",
            "audit",
            "--database-url",
            &app
        ]),
        ExitCode::FAILURE,
        "no table has the column: refused, not an empty success"
    );
    assert_eq!(
        tenant_cli::run_standalone(["tenant-safe", "gen"]),
        ExitCode::FAILURE,
        "gen needs the service's registry"
    );
    let out = dir.join("evidence");
    let mut evidence = args("evidence", &app);
    let out_text = out.display().to_string();
    evidence.extend(["--out", &out_text, "--commit", "0000000"]);
    assert_eq!(
        tenant_cli::run(&service, evidence.clone()),
        ExitCode::SUCCESS
    );
    let md = std::fs::read_to_string(out.join("evidence.md")).unwrap();
    assert!(md.contains("`tasks`") && md.contains("`projects`"), "{md}");

    // The probe from two synthetic orgs, with the service's key (the database holds it). A
    // tenant row needs a plan to reference: global tables are the service's to fill (the
    // application role may not write them), as its own migrations do.
    let key_file = dir.join("context.key");
    std::fs::write(&key_file, tenant_testkit::TEST_CONTEXT_KEY).unwrap();
    let owner = db.admin_url();
    let key_path = key_file.display().to_string();
    let add = [
        "xtask",
        "context-key",
        "add",
        "--database-url",
        &owner,
        "--from-file",
        &key_path,
    ];
    assert_eq!(tenant_cli::run(&service, add), ExitCode::SUCCESS);
    assert_eq!(
        tenant_cli::run(&service, add),
        ExitCode::FAILURE,
        "a taken id"
    );
    let list = ["xtask", "context-key", "list", "--database-url", &owner];
    assert_eq!(tenant_cli::run(&service, list), ExitCode::SUCCESS);
    let keys = tenant_core::keys::list(&owner).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].kid, tenant_testkit::TEST_CONTEXT_KEY_ID);
    admin
        .batch_execute("INSERT INTO plans (code) VALUES ('free')")
        .unwrap();
    let probe_out = dir.join("probe").display().to_string();
    let key_text = key_file.display().to_string();
    let mut probe = args("probe", &app);
    probe.extend(["--out", &probe_out, "--context-key-file", &key_text]);
    assert_eq!(tenant_cli::run(&service, probe.clone()), ExitCode::SUCCESS);
    let json = std::fs::read_to_string(dir.join("probe/probe.json")).unwrap();
    assert!(
        json.contains("\"leak\": 0") && json.contains("\"not_run\": 0"),
        "{json}"
    );
    // Without a key it refuses to start, naming both ways.
    assert_eq!(
        tenant_cli::run(&service, args("probe", &app)),
        ExitCode::FAILURE
    );

    // Per-org operations on the service's tables: export, restore over it, purge.
    let org = "0193a5b6-0000-7000-8000-00000000000a";
    admin
        .batch_execute(&format!(
            "INSERT INTO projects (org_id, name, plan) VALUES ('{org}', 'p1', 'free'), ('{org}', 'p2', 'free');
             INSERT INTO tasks (org_id, project_id, title) SELECT org_id, id, 'first' FROM projects WHERE org_id = '{org}';"
        ))
        .unwrap();
    let file = dir.join("org.json").display().to_string();
    let mut export = vec!["xtask", "org", "export", "--org", org, "--out", &file];
    export.extend(["--database-url", &app, "--context-key-file", &key_text]);
    assert_eq!(tenant_cli::run(&service, export), ExitCode::SUCCESS);
    let exported = std::fs::read_to_string(&file).unwrap();
    assert!(exported.contains("\"first\"") && exported.contains("\"p2\""));
    let mut restore = vec![
        "xtask",
        "org",
        "restore",
        "--in",
        &file,
        "--replace",
        "--unsealed",
    ];
    restore.extend(["--database-url", &app, "--context-key-file", &key_text]);
    assert_eq!(
        tenant_cli::run(&service, restore.clone()),
        ExitCode::SUCCESS
    );
    let operator = db.url_as(roles::OPERATOR);
    let purge = [
        "xtask",
        "org",
        "purge",
        "--org",
        org,
        "--ticket",
        "OPS-1",
        "--reason",
        "the customer asked to be deleted",
        "--database-url",
        &operator,
    ];
    assert_eq!(tenant_cli::run(&service, purge), ExitCode::SUCCESS);
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let left: N = diesel::RunQueryDsl::get_result(
        diesel::sql_query(format!(
            "SELECT (SELECT count(*) FROM projects WHERE org_id = '{org}') + (SELECT count(*) FROM tasks WHERE org_id = '{org}') AS n"
        )),
        &mut admin,
    )
    .unwrap();
    assert_eq!(left.n, 0, "the purge left rows of the org");
    let auditor = db.url_as(roles::AUDITOR);
    let report = [
        "xtask",
        "access",
        "report",
        "--org",
        org,
        "--database-url",
        &auditor,
    ];
    assert_eq!(tenant_cli::run(&service, report), ExitCode::SUCCESS);
    // A rotation adds a second key and gives the first an end.
    let rotate = [
        "xtask",
        "context-key",
        "rotate",
        "--database-url",
        &owner,
        "--kid",
        "k2",
        "--retire-after",
        "5",
    ];
    assert_eq!(tenant_cli::run(&service, rotate), ExitCode::SUCCESS);
    let keys = tenant_core::keys::list(&owner).unwrap();
    assert_eq!(
        keys.iter()
            .map(|k| (k.kid.as_str(), k.retire_after.is_some()))
            .collect::<Vec<_>>(),
        [(tenant_testkit::TEST_CONTEXT_KEY_ID, true), ("k2", false)]
    );
    // With --out the key goes to a new file only its owner reads, never over an existing one.
    let out_file = dir.join("k3.key");
    let out_text = out_file.display().to_string();
    let rotate_out = [
        "xtask",
        "context-key",
        "rotate",
        "--database-url",
        &owner,
        "--kid",
        "k3",
        "--out",
        &out_text,
    ];
    assert_eq!(tenant_cli::run(&service, rotate_out), ExitCode::SUCCESS);
    let line = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(
        tenant_core::context::ContextKey::parse(&line)
            .unwrap()
            .kid(),
        "k3"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&out_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = rotate_out.map(|a| if a == "k3" { "k4" } else { a });
    assert_eq!(
        tenant_cli::run(&service, again),
        ExitCode::FAILURE,
        "an existing key file is never overwritten"
    );
    assert!(
        !tenant_core::keys::list(&owner)
            .unwrap()
            .iter()
            .any(|k| k.kid == "k4"),
        "and no key is added that no file holds"
    );

    // The same key without the org column is an existence oracle on B's titles, foreign
    // key or not: the probe says so.
    admin
        .batch_execute(
            "ALTER TABLE tasks DROP CONSTRAINT tasks_org_id_project_id_title_key;
             ALTER TABLE tasks ADD CONSTRAINT tasks_project_title UNIQUE (project_id, title);",
        )
        .unwrap();
    assert_eq!(tenant_cli::run(&service, probe.clone()), ExitCode::FAILURE);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("probe/probe.json")).unwrap())
            .unwrap();
    let leaks: Vec<(&str, &str)> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verdict"] == "leak")
        .map(|r| (r["attack"].as_str().unwrap(), r["table"].as_str().unwrap()))
        .collect();
    assert!(leaks.contains(&("unique_value_of_b", "tasks")), "{leaks:?}");
    admin
        .batch_execute(
            "ALTER TABLE tasks DROP CONSTRAINT tasks_project_title;
             ALTER TABLE tasks ADD CONSTRAINT tasks_org_id_project_id_title_key UNIQUE (org_id, project_id, title);",
        )
        .unwrap();

    // A registered table without its protection: both fail, naming the table.
    admin
        .batch_execute("ALTER TABLE tasks NO FORCE ROW LEVEL SECURITY")
        .unwrap();
    let report = tenant_cli::catalog::audit(&service, &app).unwrap();
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.object == "tasks" && f.severity == tenant_schema::audit::Severity::Error),
        "{:#?}",
        report.findings
    );
    assert_eq!(
        tenant_cli::run(&service, args("audit", &app)),
        ExitCode::FAILURE
    );
    assert_eq!(tenant_cli::run(&service, evidence), ExitCode::FAILURE);
    assert_eq!(
        tenant_cli::run_standalone(["tenant-safe", "audit", "--database-url", &app]),
        ExitCode::FAILURE,
        "the binary sees it too"
    );
}

/// A managed server's administrator is no superuser: the generated migration makes it a
/// member of the table owner and lets the owner create in the schema (what handing tables to
/// it needs), leaves PostgreSQL's own functions as they are with a warning, and the audit then
/// names what stays open instead of the migration failing.
#[test]
fn an_administrator_who_is_no_superuser_applies_the_migration_and_the_audit_names_what_it_could_not_do()
 {
    let db = TestDb::new("cli_managed");
    let admin_name = "ts_test_managed_admin";
    let password = tenant_testkit::TEST_PASSWORD;
    db.admin()
        .batch_execute(&format!(
            "DO $$ BEGIN
               CREATE ROLE {admin_name} LOGIN CREATEROLE PASSWORD '{password}';
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$;
             ALTER DATABASE \"{db}\" OWNER TO {admin_name};",
            db = db.name()
        ))
        .unwrap();
    // From PostgreSQL 16 a role that creates another holds it WITH ADMIN OPTION only (no SET,
    // no INHERIT): the administrator gets exactly that in the four roles, as if it had created
    // them itself (here a superuser created them first; without ADMIN OPTION it could not
    // alter them), and the migration must grant itself SET on the owner to hand tables to it
    // (`ALTER TABLE ... OWNER TO` needs it).
    let version: i32 = diesel::RunQueryDsl::get_result(
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
            "current_setting('server_version_num')::int",
        )),
        &mut db.admin(),
    )
    .unwrap();
    if version >= 160_000 {
        for role in [
            "tenant_owner",
            "tenant_app",
            "tenant_operator",
            "tenant_auditor",
        ] {
            db.admin()
                .batch_execute(&format!(
                    "REVOKE {role} FROM {admin_name} CASCADE;
                     GRANT {role} TO {admin_name} WITH ADMIN TRUE, INHERIT FALSE, SET FALSE;"
                ))
                .unwrap();
        }
    }
    let (_dir, service, up) = generated("managed");

    let managed = tenant_testkit::url_for(
        &tenant_testkit::admin_url(),
        admin_name,
        Some(password),
        db.name(),
    );
    let mut conn = <diesel::PgConnection as diesel::Connection>::establish(&managed).unwrap();
    conn.batch_execute(SCHEMA).unwrap();
    diesel::Connection::transaction(&mut conn, |c| c.batch_execute(&up))
        .expect("the generated migration, applied by an administrator who is no superuser");

    let report = tenant_cli::catalog::audit(&service, &db.url_as(roles::APP)).unwrap();
    let rules: std::collections::BTreeSet<&str> = report.findings.iter().map(|f| f.rule).collect();
    assert!(
        rules.contains("role-can-signal") && rules.contains("role-can-create"),
        "{:#?}",
        report.findings
    );
    // Nothing about the tables: the owner, the policies and the grants are as generated.
    assert!(
        report
            .findings
            .iter()
            .filter(|f| f.object == "projects" || f.object == "tasks")
            .all(|f| f.severity != tenant_schema::audit::Severity::Error),
        "{:#?}",
        report.findings
    );
}

/// From PostgreSQL 16 an administrator who is no superuser and did not create the table owner
/// (no ADMIN OPTION on it) may not make itself a member of it: the generated migration stops
/// with what to ask for, instead of failing later at the first `ALTER TABLE ... OWNER TO`.
/// (On 15 CREATEROLE grants any role that is no superuser's, so there is nothing to refuse.)
#[test]
fn an_administrator_who_may_not_grant_itself_the_owner_is_told_what_to_ask_for() {
    let db = TestDb::new("cli_managed_no_admin");
    let version: i32 = diesel::RunQueryDsl::get_result(
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
            "current_setting('server_version_num')::int",
        )),
        &mut db.admin(),
    )
    .unwrap();
    if version < 160_000 {
        return;
    }
    let admin_name = "ts_test_managed_admin_no_owner";
    let password = tenant_testkit::TEST_PASSWORD;
    db.admin()
        .batch_execute(&format!(
            "DO $$ BEGIN
               CREATE ROLE {admin_name} LOGIN CREATEROLE PASSWORD '{password}';
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$;
             REVOKE tenant_owner FROM {admin_name} CASCADE;
             ALTER DATABASE \"{db}\" OWNER TO {admin_name};",
            db = db.name()
        ))
        .unwrap();
    let (_dir, _service, up) = generated("managed_no_admin");
    let managed = tenant_testkit::url_for(
        &tenant_testkit::admin_url(),
        admin_name,
        Some(password),
        db.name(),
    );
    let mut conn = <diesel::PgConnection as diesel::Connection>::establish(&managed).unwrap();
    conn.batch_execute(SCHEMA).unwrap();
    let err = diesel::Connection::transaction(&mut conn, |c| c.batch_execute(&up))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "role {admin_name} may not make itself a member of tenant_owner"
        )),
        "{err}"
    );
}
