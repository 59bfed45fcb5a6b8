//! The generated Citus migration on a real cluster (a coordinator and two workers; `cargo
//! xtask test` starts it and sets `TENANT_CITUS_URL` and `TENANT_CITUS_WORKER_URLS`): it
//! applies to the story's schema as it is, its down reverses it, and a registry change
//! generates an incremental migration that applies too. What the workers hold is read on
//! the workers.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};
use tenant_schema::citus;
use tenant_testkit::citus::CitusDb;
use tenant_testkit::story;

#[derive(QueryableByName, Debug, PartialEq)]
struct Shard {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    owner: String,
    #[diesel(sql_type = Bool)]
    rls: bool,
    #[diesel(sql_type = Bool)]
    forced: bool,
    #[diesel(sql_type = BigInt)]
    policies: i64,
    /// The application role's privileges, as `has_table_privilege` answers them.
    #[diesel(sql_type = Text)]
    app: String,
}

/// Every shard of `table` on every worker, with its protection.
fn shards(db: &CitusDb, table: &str) -> Vec<Shard> {
    let mut all = Vec::new();
    for url in db.worker_admin_urls() {
        let mut conn = PgConnection::establish(&url).unwrap();
        // Citus hides shards from the catalog of other clients.
        conn.batch_execute("SET citus.override_table_visibility TO off")
            .unwrap();
        all.extend(
            diesel::sql_query(format!(
                "SELECT c.relname::text AS name, pg_get_userbyid(c.relowner)::text AS owner,
                        c.relrowsecurity AS rls, c.relforcerowsecurity AS forced,
                        (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies,
                        concat_ws(',',
                          CASE WHEN has_table_privilege('tenant_app', c.oid, 'SELECT') THEN 'SELECT' END,
                          CASE WHEN has_table_privilege('tenant_app', c.oid, 'INSERT') THEN 'INSERT' END,
                          CASE WHEN has_table_privilege('tenant_app', c.oid, 'UPDATE') THEN 'UPDATE' END,
                          CASE WHEN has_table_privilege('tenant_app', c.oid, 'DELETE') THEN 'DELETE' END,
                          CASE WHEN has_table_privilege('tenant_app', c.oid, 'TRUNCATE') THEN 'TRUNCATE' END,
                          CASE WHEN has_table_privilege('tenant_app', c.oid, 'REFERENCES') THEN 'REFERENCES' END,
                          CASE WHEN has_table_privilege('tenant_app', c.oid, 'TRIGGER') THEN 'TRIGGER' END) AS app
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname ~ '^{table}_[0-9]+$'
                 ORDER BY 1"
            ))
            .load::<Shard>(&mut conn)
            .unwrap(),
        );
    }
    all
}

/// The distributed tables: name, method (`h` hash, `n` reference) and colocation group.
fn distribution(db: &CitusDb) -> Vec<(String, String, i64)> {
    #[derive(QueryableByName)]
    struct Dist {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        method: String,
        #[diesel(sql_type = BigInt)]
        colocation: i64,
    }
    diesel::sql_query(
        "SELECT logicalrelid::text AS name, partmethod::text AS method,
                colocationid::bigint AS colocation
         FROM pg_dist_partition ORDER BY 1",
    )
    .load::<Dist>(&mut db.admin())
    .unwrap()
    .into_iter()
    .map(|d| (d.name, d.method, d.colocation))
    .collect()
}

const TENANT_TABLES: [&str; 5] = ["orgs", "customers", "deals", "proposals", "invoices"];

/// Every shard of the tenant tables is protected as the table is: owner, row-level security
/// enabled and forced, its five policies, and only DML for the application role.
fn assert_every_shard_protected(db: &CitusDb, tables: &[&str]) {
    for table in tables {
        let shards = shards(db, table);
        // 32 shards (Citus's default count), spread over both workers.
        assert_eq!(shards.len(), 32, "{table}: {shards:#?}");
        for s in &shards {
            assert_eq!(
                (
                    s.owner.as_str(),
                    s.rls,
                    s.forced,
                    s.policies,
                    s.app.as_str()
                ),
                ("tenant_owner", true, true, 5, "SELECT,INSERT,UPDATE,DELETE"),
                "{}",
                s.name
            );
        }
    }
}

#[test]
fn the_migration_distributes_the_story_by_org_and_protects_every_shard() {
    let db = story::citus("citus_migration");
    let dist = distribution(&db);
    let tenant_group = dist.iter().find(|d| d.0 == "orgs").unwrap().2;
    for (name, method, group) in &dist {
        if name == "currencies" || name == "tenant_audit.operator_key" {
            // The operator's token key has a copy on every node, as global tables do.
            assert_eq!(method, "n", "{name}: a reference table");
        } else {
            assert_eq!(
                (method.as_str(), *group),
                ("h", tenant_group),
                "{name}: hash-distributed, colocated with orgs"
            );
        }
    }
    assert_eq!(dist.len(), 7);
    assert_every_shard_protected(&db, &TENANT_TABLES);
    // The foreign keys set aside for the distribution are back, on the coordinator and on
    // every shard.
    let mut admin = db.admin();
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let fks: N = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace",
    )
    .get_result(&mut admin)
    .unwrap();
    // customers -> orgs; deals, proposals -> orgs, customers, currencies; invoices -> orgs,
    // customers, deals, currencies.
    assert_eq!(fks.n, 11);
}

#[test]
fn the_down_migration_removes_the_protection_keeps_the_distribution_and_up_applies_again() {
    let db = story::citus("citus_down");
    let options = story::citus_options();
    let m = citus::generate(&two_companies::REGISTRY, &options).unwrap();
    let mut admin = db.admin();
    let distributed = distribution(&db);
    admin.transaction(|c| c.batch_execute(&m.down)).unwrap();
    for table in TENANT_TABLES {
        for s in shards(&db, table) {
            assert_eq!(
                (s.rls, s.forced, s.policies),
                (false, false, 0),
                "{}",
                s.name
            );
            assert!(!s.app.contains("SELECT"), "{}: {}", s.name, s.app);
        }
    }
    assert_eq!(distribution(&db), distributed, "the distribution stays");
    // Up again, on the distributed tables: the protection is back, nothing is distributed
    // twice.
    admin.transaction(|c| c.batch_execute(&m.up)).unwrap();
    assert_every_shard_protected(&db, &TENANT_TABLES);
    assert_eq!(distribution(&db), distributed);
}

mod grown {
    //! The story's registry with one more tenant table, `notes`.
    diesel::table! { currencies (code) { code -> Text } }
    diesel::table! { orgs (id) { id -> Uuid } }
    diesel::table! { customers (org_id, id) { org_id -> Uuid, id -> Uuid } }
    diesel::table! { deals (org_id, id) { org_id -> Uuid, id -> Uuid } }
    diesel::table! { proposals (org_id, id) { org_id -> Uuid, id -> Uuid } }
    diesel::table! { invoices (org_id, id) { org_id -> Uuid, id -> Uuid } }
    diesel::table! { notes (org_id, id) { org_id -> Uuid, id -> Uuid } }
    tenant_lint::registry! {
        pub static REGISTRY;
        global currencies;
        tenant orgs => id;
        tenant customers => org_id;
        tenant deals => org_id;
        tenant proposals => org_id;
        tenant invoices => org_id;
        tenant notes => org_id;
    }
}

#[test]
fn a_table_that_joins_the_registry_is_distributed_and_protected_by_an_incremental_migration() {
    let db = story::citus("citus_incremental");
    let options = story::citus_options();
    let mut admin = db.admin();
    // The service adds a table (its own migration), with a foreign key to a distributed one.
    admin
        .batch_execute(
            "CREATE TABLE notes (
                 org_id uuid NOT NULL REFERENCES orgs (id),
                 id uuid NOT NULL DEFAULT gen_random_uuid(),
                 customer_id uuid NOT NULL,
                 body text NOT NULL,
                 PRIMARY KEY (org_id, id),
                 FOREIGN KEY (org_id, customer_id) REFERENCES customers (org_id, id)
             )",
        )
        .unwrap();
    let previous = citus::fragments(&two_companies::REGISTRY, &options).unwrap();
    let step = citus::incremental(&grown::REGISTRY, &previous, &options)
        .unwrap()
        .expect("a table joined: something to migrate");
    assert!(step.up.contains("-- notes joined the registry."));
    assert!(!step.up.contains("-- customers changed."), "{}", step.up);
    admin.transaction(|c| c.batch_execute(&step.up)).unwrap();
    let dist = distribution(&db);
    let group = |t: &str| dist.iter().find(|d| d.0 == t).map(|d| d.2);
    assert_eq!(group("notes"), group("orgs"), "{dist:?}");
    assert_every_shard_protected(&db, &["notes"]);

    // A's note is A's alone, through the coordinator as the application role.
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let mut app = PgConnection::establish(&db.app_url()).unwrap();
    for org in [a, b] {
        let customer = uuid::Uuid::new_v4();
        app.batch_execute(&format!(
            "BEGIN; {set_org};
             INSERT INTO orgs (id, name) VALUES ('{org}', 'o');
             INSERT INTO customers (id, name, email) VALUES ('{customer}', 'c', 'c@x');
             INSERT INTO notes (customer_id, body) VALUES ('{customer}', 'secret of {org}');
             COMMIT;",
            set_org = tenant_testkit::citus::set_local_org(org)
        ))
        .unwrap();
    }
    #[derive(QueryableByName)]
    struct Body {
        #[diesel(sql_type = Text)]
        body: String,
    }
    app.batch_execute(&format!(
        "BEGIN; {}",
        tenant_testkit::citus::set_local_org(a)
    ))
    .unwrap();
    let seen: Vec<String> = diesel::sql_query("SELECT body FROM notes")
        .load::<Body>(&mut app)
        .unwrap()
        .into_iter()
        .map(|b| b.body)
        .collect();
    app.batch_execute("ROLLBACK").unwrap();
    assert_eq!(seen, [format!("secret of {a}")]);

    // Its down takes the new table's protection away and leaves the rest as it was.
    admin.transaction(|c| c.batch_execute(&step.down)).unwrap();
    for s in shards(&db, "notes") {
        assert_eq!((s.rls, s.policies), (false, 0), "{}", s.name);
    }
    assert_every_shard_protected(&db, &TENANT_TABLES);
}

#[test]
fn the_audit_reads_every_worker_and_a_shard_that_lost_its_protection_is_an_error() {
    let db = story::citus("citus_audit");
    let report = story::audit_cluster(&db);
    // What a fresh cluster shows: the plain context, by name, on every table, and nothing else
    // (the inline policy form is the one Citus takes; Citus's signals by global pid are
    // revoked with its other powers).
    let mut rules: Vec<&str> = report.findings.iter().map(|f| f.rule).collect();
    rules.dedup();
    assert_eq!(
        rules,
        ["org-context-trusts-every-statement"],
        "{:#?}",
        report.findings
    );

    // Someone changes two shards on the second worker by hand.
    let worker = &db.worker_admin_urls()[1];
    let port = db.worker_ports()[1];
    let node = format!("localhost:{port}");
    let customers = shards(&db, "customers")
        .into_iter()
        .map(|s| s.name)
        .find(|name| shard_is_on(&db, name, port))
        .unwrap();
    let deals = shards(&db, "deals")
        .into_iter()
        .map(|s| s.name)
        .find(|name| shard_is_on(&db, name, port))
        .unwrap();
    PgConnection::establish(worker)
        .unwrap()
        .batch_execute(&format!(
            "SET citus.enable_manual_changes_to_shards = on;
             DROP POLICY tenant_isolation ON {customers};
             ALTER TABLE {deals} NO FORCE ROW LEVEL SECURITY;
             GRANT TRUNCATE ON {deals} TO tenant_app;"
        ))
        .unwrap();
    let report = story::audit_cluster(&db);
    let found: Vec<(&str, &str, &str)> = report
        .findings
        .iter()
        .filter(|f| f.severity == tenant_schema::audit::Severity::Error)
        .map(|f| (f.rule, f.object.as_str(), f.why.as_str()))
        .collect();
    assert_eq!(found.len(), 2, "{found:#?}");
    let customers_finding = format!("{customers} on {node}");
    let deals_finding = format!("{deals} on {node}");
    assert!(
        found
            .iter()
            .any(|(rule, object, why)| *rule == "shard-not-protected"
                && *object == customers_finding
                && why.contains("policy tenant_isolation missing")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|(rule, object, why)| *rule == "shard-not-protected"
                && *object == deals_finding
                && why.contains("row-level security forced: false")
                && why.contains("TRUNCATE")),
        "{found:#?}"
    );
}

/// Whether shard `name` (`<table>_<shard id>`) is placed on the worker listening on `port`.
fn shard_is_on(db: &CitusDb, name: &str, port: u16) -> bool {
    db.shard_port(name.rsplit('_').next().unwrap().parse().unwrap()) == port
}

/// Citus 13.2 recreates every policy on its shards as a permissive one. The PostgreSQL form of
/// the org policy (restrictive, for every role) would then give any role with a table grant
/// the org it names in the setting. The Citus form binds the application role only, and the
/// audit reports the other.
#[test]
fn a_role_with_a_table_grant_reads_no_org_on_the_workers_and_the_audit_reports_the_form_that_would_let_it()
 {
    use tenant_testkit::{citus::set_local_org, roles};
    let db = story::citus("citus_operator_hop");
    let b = uuid::Uuid::new_v4();
    let mut app = PgConnection::establish(&db.app_url()).unwrap();
    app.batch_execute(&format!(
        "BEGIN; {};
         INSERT INTO orgs (id, name) VALUES ('{b}', 'victim');
         INSERT INTO customers (name, email) VALUES ('secret', 's@b');
         COMMIT;",
        set_local_org(b)
    ))
    .unwrap();
    // A reporting role someone granted SELECT, with no policy of its own.
    db.admin()
        .batch_execute(&format!("GRANT SELECT ON customers TO {}", roles::PLAIN))
        .unwrap();
    // The coordinator applies its own (restrictive) policies before it plans; on a worker,
    // where any role can connect and query the table, only the worker's copies apply.
    let reporter_reads = || -> Vec<i64> {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut seen = Vec::new();
        for url in db.worker_urls_as(roles::PLAIN) {
            let mut op = PgConnection::establish(&url).unwrap();
            op.batch_execute(&format!("BEGIN; {}", set_local_org(b)))
                .unwrap();
            seen.push(
                diesel::sql_query("SELECT count(*) AS n FROM customers")
                    .get_result::<N>(&mut op)
                    .unwrap()
                    .n,
            );
            op.batch_execute("ROLLBACK").unwrap();
        }
        seen
    };
    assert_eq!(reporter_reads(), [0, 0], "the generated Citus form");

    // The PostgreSQL form of the org policy on one table, created on the coordinator.
    let mut admin = db.admin();
    admin
        .batch_execute("DROP POLICY tenant_isolation ON customers")
        .unwrap();
    admin
        .batch_execute(
            "CREATE POLICY tenant_isolation ON customers AS RESTRICTIVE FOR ALL TO PUBLIC
             USING (org_id = nullif(current_setting('tenant.org_id', true), '')::uuid)
             WITH CHECK (org_id = nullif(current_setting('tenant.org_id', true), '')::uuid)",
        )
        .unwrap();
    // From either worker, the query reaches every shard: B's row, once each.
    assert_eq!(
        reporter_reads(),
        [1, 1],
        "Citus made the policy permissive on the shards"
    );
    let report = story::audit_cluster(&db);
    let widened: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.rule == "shard-not-protected")
        .map(|f| f.why.as_str())
        .collect();
    // Every shard of customers on both workers, and the workers' own copies of the table.
    assert_eq!(widened.len(), 34, "{widened:#?}");
    for why in &widened {
        assert!(
            why.contains("for tenant_operator, SELECT rows pass when any of")
                && why.contains(
                    "for any other role, SELECT rows pass when [(org_id = (NULLIF(current_setting('tenant.org_id'::text, true), ''::text))::uuid)] (on the coordinator: no row)"
                ),
            "{why}"
        );
    }
}

/// The evidence of a cluster audit names the workers it read and lists the cluster's checks.
#[test]
fn the_evidence_of_a_cluster_names_the_workers_and_the_cluster_checks() {
    let db = story::citus("citus_evidence");
    let report = story::audit_cluster(&db);
    assert_eq!(report.workers.len(), 2, "{:?}", report.workers);
    let evidence = tenant_schema::evidence::render(
        &report,
        &two_companies::REGISTRY,
        &tenant_schema::evidence::Provenance {
            generated_at: "2026-12-05T00:00:00Z".into(),
            git_commit: "test".into(),
        },
    );
    for worker in &report.workers {
        assert!(evidence.markdown.contains(worker.as_str()), "{worker}");
    }
    for (rule, _, _) in tenant_schema::audit::cluster::CLUSTER_CHECKS {
        assert!(
            evidence.markdown.contains(&format!("| `{rule}` |")),
            "{rule}"
        );
        assert!(
            evidence.json.contains(&format!("\"rule\": \"{rule}\"")),
            "{rule}"
        );
    }
    assert!(
        evidence.json.contains("\"verdict\": \"pass\""),
        "{}",
        evidence.markdown
    );
}

/// An application role that bypasses row-level security is a finding on every worker where it
/// does, besides the coordinator's own finding.
#[test]
fn an_application_role_that_bypasses_rls_is_a_finding_on_each_worker() {
    let db = story::citus("citus_worker_role");
    let mut reader = tenant_core::admin::CatalogReader::connect(
        &db.url_as(tenant_testkit::roles::BYPASSRLS),
        "test: audit as a role that bypasses RLS",
    )
    .unwrap();
    let report = tenant_schema::audit::cluster::audit_cluster(
        &mut reader,
        &db.url_as(tenant_testkit::roles::BYPASSRLS),
        &two_companies::REGISTRY,
        &tenant_schema::audit::AuditOptions {
            rls: tenant_schema::RlsOptions {
                app_role: tenant_testkit::roles::BYPASSRLS.into(),
                ..story::citus_options()
            },
            ..tenant_schema::audit::AuditOptions::default()
        },
    )
    .unwrap();
    let on_workers: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.rule == "worker-app-role")
        .map(|f| f.why.as_str())
        .collect();
    assert_eq!(on_workers.len(), 2, "{:#?}", report.findings);
    assert!(
        on_workers
            .iter()
            .all(|w| w.contains("BYPASSRLS on this worker"))
    );
}

/// A worker the audit cannot read is a finding, never a silent skip.
#[test]
fn a_worker_the_audit_cannot_read_is_an_error_finding() {
    let db = story::citus("citus_worker_unreachable");
    let mut reader =
        tenant_core::admin::CatalogReader::connect(&db.app_url(), "test: cluster audit").unwrap();
    // The workers are reached as the URL's role: one that may not log in.
    let report = tenant_schema::audit::cluster::audit_cluster(
        &mut reader,
        &db.url_as("tenant_owner"),
        &two_companies::REGISTRY,
        &tenant_schema::audit::AuditOptions {
            rls: story::citus_options(),
            ..tenant_schema::audit::AuditOptions::default()
        },
    )
    .unwrap();
    let unreachable: Vec<&tenant_schema::audit::Finding> = report
        .findings
        .iter()
        .filter(|f| f.rule == "worker-unreachable")
        .collect();
    assert_eq!(unreachable.len(), 2, "{:#?}", report.findings);
    assert!(
        unreachable
            .iter()
            .all(|f| f.severity == tenant_schema::audit::Severity::Error
                && f.why.contains("not permitted to log in"))
    );
    assert!(report.workers.is_empty());
}

/// A Citus power given back on one worker (as a worker added after the migration has them)
/// is a finding naming the node and the function.
#[test]
fn a_citus_power_given_back_on_a_worker_is_a_finding() {
    let db = story::citus("citus_power_back");
    assert!(
        !story::audit_cluster(&db)
            .findings
            .iter()
            .any(|f| f.rule == "citus-power-executable"),
        "the migration takes every power"
    );
    let worker = &db.worker_admin_urls()[1];
    let port = db.worker_ports()[1];
    PgConnection::establish(worker)
        .unwrap()
        .batch_execute("GRANT EXECUTE ON FUNCTION run_command_on_workers(text, boolean) TO PUBLIC")
        .unwrap();
    let found: Vec<(String, String)> = story::audit_cluster(&db)
        .findings
        .into_iter()
        .filter(|f| f.rule == "citus-power-executable")
        .map(|f| (f.object, f.why))
        .collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].0, format!("tenant_app on localhost:{port}"));
    assert!(
        found[0].1.contains("run_command_on_workers(text,boolean)"),
        "{found:#?}"
    );
}

/// The key of the operators' tokens opens any org to a break-glass login: a grant on it is an
/// error naming the grantee and the revoke, and the grant reached every node's copy.
#[test]
fn a_grant_on_the_operator_key_is_an_error_naming_who_holds_it() {
    let db = story::citus("citus_operator_key");
    assert!(
        !story::audit_cluster(&db)
            .findings
            .iter()
            .any(|f| f.rule == "operator-key-readable"),
        "the migration grants the key to no one"
    );
    db.admin()
        .batch_execute("GRANT SELECT ON tenant_audit.operator_key TO tenant_operator")
        .unwrap();
    let found: Vec<_> = story::audit_cluster(&db)
        .findings
        .into_iter()
        .filter(|f| f.rule == "operator-key-readable")
        .collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].object, "tenant_audit.operator_key");
    assert!(found[0].why.contains("tenant_operator"), "{found:#?}");
    assert!(
        found[0]
            .fix
            .starts_with("REVOKE ALL ON tenant_audit.operator_key FROM \"tenant_operator\""),
        "{found:#?}"
    );
}
