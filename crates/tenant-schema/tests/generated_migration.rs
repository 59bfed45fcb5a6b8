//! The generated RLS migration: the checked-in copy is current, and applied to a real server
//! it yields exactly the catalog state the design asks for.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use diesel_migrations::MigrationHarness;
use tenant_schema::{RlsOptions, generate};
use tenant_testkit::TestDb;

const MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");

/// The generated RLS migrations, oldest first.
fn rls_dirs() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(MIGRATIONS_DIR)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join(tenant_schema::MANIFEST_FILE).exists())
        .collect();
    dirs.sort();
    dirs
}

/// Every migration after the first (the story's schema), newest first: the generated RLS
/// migrations and what came after them.
fn migrations_after_the_schema() -> usize {
    std::fs::read_dir(MIGRATIONS_DIR)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("up.sql").exists())
        .count()
        - 1
}

#[test]
fn the_latest_rls_manifest_matches_the_registry() {
    let dirs = rls_dirs();
    let latest = dirs
        .last()
        .expect("no generated RLS migration with a manifest under migrations/");
    let recorded = tenant_schema::read_manifest(
        &std::fs::read_to_string(latest.join(tenant_schema::MANIFEST_FILE)).unwrap(),
    )
    .unwrap();
    let current = tenant_schema::fragments(&two_companies::REGISTRY, &RlsOptions::default());
    assert!(
        recorded == current,
        "the registry changed since {} was generated: run `cargo xtask gen` and commit the new migration",
        latest.display()
    );
}

#[test]
fn the_latest_rls_migration_begins_with_the_shared_objects_written_now() {
    let latest = rls_dirs().pop().unwrap();
    let up = std::fs::read_to_string(latest.join("up.sql")).unwrap();
    assert!(
        tenant_schema::shared_refresh(&up, &RlsOptions::default()).is_none(),
        "the shared objects (functions, roles) changed since {} was generated: run `cargo xtask gen` and commit the new migration",
        latest.display()
    );
}

#[test]
fn a_shared_refresh_applies_the_current_objects_and_its_down_the_previous_migration() {
    let options = RlsOptions::default();
    let current = tenant_schema::shared_objects(&options);
    let full = generate(&two_companies::REGISTRY, &options).up;
    assert!(full.starts_with(&current));
    assert_eq!(tenant_schema::shared_refresh(&full, &options), None);
    let old = full.replacen("-- With the signed context", "-- An older version", 1);
    let refresh = tenant_schema::shared_refresh(&old, &options).unwrap();
    assert_eq!((refresh.up, refresh.down), (current, old));
}

#[test]
fn the_first_rls_migration_is_exactly_what_its_manifest_assembles() {
    let first = rls_dirs().into_iter().next().unwrap();
    let recorded = tenant_schema::read_manifest(
        &std::fs::read_to_string(first.join(tenant_schema::MANIFEST_FILE)).unwrap(),
    )
    .unwrap();
    // The per-table fragments; the shared preamble before them is the generator's of the
    // time (later migrations carry later preambles, e.g. operator access).
    let ups: String = recorded.iter().map(|f| f.up.as_str()).collect();
    let downs: String = recorded.iter().rev().map(|f| f.down.as_str()).collect();
    let up = std::fs::read_to_string(first.join("up.sql")).unwrap();
    let down = std::fs::read_to_string(first.join("down.sql")).unwrap();
    assert!(
        up.ends_with(&ups),
        "{} was edited by hand (up.sql)",
        first.display()
    );
    assert!(
        down.contains(&downs),
        "{} was edited by hand (down.sql)",
        first.display()
    );
}

#[test]
fn an_incremental_migration_protects_only_what_changed_and_reverts_exactly() {
    use tenant_schema::audit::{AuditOptions, audit};
    diesel::table! { currencies (code) { code -> Text } }
    diesel::table! { orgs (id) { id -> Uuid } }
    diesel::table! { customers (id) { id -> Uuid, org_id -> Uuid } }
    diesel::table! { deals (id) { id -> Uuid, org_id -> Uuid } }
    diesel::table! { proposals (id) { id -> Uuid, org_id -> Uuid } }
    tenant_lint::registry! {
        static WITHOUT_INVOICES;
        global currencies;
        tenant orgs => id;
        tenant customers => org_id;
        tenant deals => org_id;
        tenant proposals => org_id;
    }
    let options = RlsOptions::default();
    let before = tenant_schema::fragments(&WITHOUT_INVOICES, &options);
    let after = tenant_schema::fragments(&two_companies::REGISTRY, &options);
    assert!(
        tenant_schema::incremental(&after, &after, &options).is_none(),
        "no change, no migration"
    );
    let step = tenant_schema::incremental(&before, &after, &options).unwrap();
    assert!(
        step.up.contains("-- invoices joined the registry."),
        "{}",
        step.up
    );
    assert!(
        !step.up.contains("ON \"deals\""),
        "unchanged tables are not touched:\n{}",
        step.up
    );

    let db = TestDb::new("schema_incremental");
    let mut admin = db.admin();
    // The story's schema, with the indexes and keys the audit asks for.
    for sql in two_companies::SCHEMA_SQL {
        admin.batch_execute(sql).unwrap();
    }
    admin
        .batch_execute(&tenant_schema::assemble(&before, &options).up)
        .unwrap();
    let findings = |registry: &'static tenant_lint::Registry| {
        let mut reader =
            tenant_core::admin::CatalogReader::connect(&db.app_url(), "test: audit").unwrap();
        let mut f: Vec<(String, String)> = audit(&mut reader, registry, &AuditOptions::default())
            .unwrap()
            .findings
            .into_iter()
            .map(|f| (f.rule.to_owned(), f.object))
            .collect();
        f.sort();
        f
    };
    let before_step = findings(&two_companies::REGISTRY);
    assert!(
        before_step.contains(&("rls-not-enabled".into(), "invoices".into())),
        "{before_step:?}"
    );
    admin
        .batch_execute(&format!("BEGIN; {} COMMIT;", step.up))
        .unwrap();
    assert_eq!(
        findings(&two_companies::REGISTRY),
        Vec::<(String, String)>::new()
    );
    admin
        .batch_execute(&format!("BEGIN; {} COMMIT;", step.down))
        .unwrap();
    assert_eq!(
        findings(&two_companies::REGISTRY),
        before_step,
        "down restores the state before the step"
    );
}

#[derive(QueryableByName, Debug, PartialEq)]
struct TableState {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Bool)]
    rls: bool,
    #[diesel(sql_type = Bool)]
    forced: bool,
    #[diesel(sql_type = Text)]
    owner: String,
    #[diesel(sql_type = Text)]
    policies: String,
    #[diesel(sql_type = Text)]
    app_privileges: String,
    #[diesel(sql_type = Bool)]
    org_index: bool,
}

fn table_states(conn: &mut PgConnection) -> Vec<TableState> {
    diesel::sql_query(
        "SELECT c.relname::text AS name, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced, \
                pg_get_userbyid(c.relowner)::text AS owner, \
                coalesce((SELECT string_agg(p.polname || ':' || CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END \
                                 || ':' || coalesce(nullif(array_to_string(ARRAY(SELECT rolname FROM pg_roles WHERE oid = ANY(p.polroles)), ','), ''), 'public'), ' ' ORDER BY p.polname) \
                          FROM pg_policy p WHERE p.polrelid = c.oid), '') AS policies, \
                concat_ws(',', \
                  CASE WHEN has_table_privilege('tenant_app', c.oid, 'SELECT') THEN 'SELECT' END, \
                  CASE WHEN has_table_privilege('tenant_app', c.oid, 'INSERT') THEN 'INSERT' END, \
                  CASE WHEN has_table_privilege('tenant_app', c.oid, 'UPDATE') THEN 'UPDATE' END, \
                  CASE WHEN has_table_privilege('tenant_app', c.oid, 'DELETE') THEN 'DELETE' END, \
                  CASE WHEN has_table_privilege('tenant_app', c.oid, 'TRUNCATE') THEN 'TRUNCATE' END, \
                  CASE WHEN has_table_privilege('tenant_app', c.oid, 'REFERENCES') THEN 'REFERENCES' END, \
                  CASE WHEN has_table_privilege('tenant_app', c.oid, 'TRIGGER') THEN 'TRIGGER' END) AS app_privileges, \
                EXISTS (SELECT FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                        WHERE i.indrelid = c.oid AND a.attname IN ('org_id', 'id') AND c.relname <> 'currencies') AS org_index \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> '__diesel_schema_migrations' \
         ORDER BY c.relname",
    )
    .load(conn)
    .unwrap()
}

fn expected_tenant(name: &str) -> TableState {
    TableState {
        name: name.into(),
        rls: true,
        forced: true,
        owner: "tenant_owner".into(),
        policies: "tenant_app_access:permissive:tenant_app tenant_isolation:restrictive:public \
                   tenant_operator_read:permissive:tenant_operator tenant_operator_write:permissive:tenant_operator \
                   tenant_owner_lookup:permissive:tenant_owner"
            .into(),
        app_privileges: "SELECT,INSERT,UPDATE,DELETE".into(),
        org_index: true,
    }
}

#[test]
fn applied_it_forces_rls_with_a_restrictive_policy_and_grants_only_dml_on_every_tenant_table() {
    let db = TestDb::new("schema_applied");
    two_companies::migrate(&db.admin_url()).unwrap();
    let mut admin = db.admin();
    let mut expected: Vec<TableState> = ["customers", "deals", "invoices", "orgs", "proposals"]
        .into_iter()
        .map(expected_tenant)
        .collect();
    expected.insert(
        0,
        TableState {
            name: "currencies".into(),
            rls: false,
            forced: false,
            owner: "tenant_owner".into(),
            policies: String::new(),
            app_privileges: "SELECT".into(),
            org_index: false,
        },
    );
    assert_eq!(table_states(&mut admin), expected);
}

#[test]
fn down_then_up_restores_the_same_state_and_up_is_idempotent() {
    let db = TestDb::new("schema_roundtrip");
    two_companies::migrate(&db.admin_url()).unwrap();
    let mut admin = db.admin();
    let applied = table_states(&mut admin);
    let migration = generate(&two_companies::REGISTRY, &RlsOptions::default());

    for _ in 0..migrations_after_the_schema() {
        admin
            .revert_last_migration(two_companies::MIGRATIONS)
            .unwrap();
    }
    let reverted = table_states(&mut admin);
    assert!(
        reverted
            .iter()
            .all(|t| !t.rls && !t.forced && t.policies.is_empty()),
        "{reverted:?}"
    );
    assert!(
        reverted.iter().all(|t| t.app_privileges.is_empty()),
        "{reverted:?}"
    );

    admin
        .run_pending_migrations(two_companies::MIGRATIONS)
        .unwrap();
    assert_eq!(table_states(&mut admin), applied);
    // Running up.sql again on an applied database changes nothing and fails on nothing.
    admin.batch_execute(&migration.up).unwrap();
    assert_eq!(table_states(&mut admin), applied);
}

fn default_of(conn: &mut PgConnection, table: &str, column: &str) -> String {
    #[derive(QueryableByName)]
    struct D {
        #[diesel(sql_type = Text)]
        d: String,
    }
    diesel::sql_query(
        "SELECT coalesce((SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d \
           JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum \
           WHERE d.adrelid = $1::regclass AND a.attname = $2), '') AS d",
    )
    .bind::<Text, _>(table)
    .bind::<Text, _>(column)
    .get_result::<D>(conn)
    .unwrap()
    .d
}

#[test]
fn the_org_column_defaults_to_the_session_org_and_down_removes_only_that_default() {
    let db = TestDb::new("schema_defaults");
    two_companies::migrate(&db.admin_url()).unwrap();
    let mut admin = db.admin();
    assert_eq!(
        default_of(&mut admin, "invoices", "org_id"),
        "tenant_context.verified_org()",
        "the org the signed context verifies (the default mode)"
    );
    assert_eq!(
        default_of(&mut admin, "orgs", "id"),
        "gen_random_uuid()",
        "a default the schema set stays"
    );
    for _ in 0..migrations_after_the_schema() {
        admin
            .revert_last_migration(two_companies::MIGRATIONS)
            .unwrap();
    }
    assert_eq!(default_of(&mut admin, "invoices", "org_id"), "");
    assert_eq!(default_of(&mut admin, "orgs", "id"), "gen_random_uuid()");
}

#[test]
fn the_index_leading_with_org_is_created_only_where_none_exists() {
    diesel::table! { notes (id) { id -> Uuid, org_id -> Uuid, body -> Text } }
    tenant_lint::registry! { static NOTES; tenant notes => org_id; }
    let db = TestDb::new("schema_index");
    let mut admin = db.admin();
    admin
        .batch_execute(
            "CREATE TABLE notes (id uuid PRIMARY KEY, org_id uuid NOT NULL, body text NOT NULL)",
        )
        .unwrap();
    admin
        .batch_execute(&generate(&NOTES, &RlsOptions::default()).up)
        .unwrap();
    let index_count = |conn: &mut PgConnection| -> i64 {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(SELECT count(*) FROM pg_indexes WHERE tablename = 'notes' AND indexname = 'notes_org_id_tenant_idx')",
        ))
        .get_result(conn)
        .unwrap()
    };
    assert_eq!(index_count(&mut admin), 1);
    // The story's tables already lead unique keys with org_id: no extra index there.
    let db2 = TestDb::new("schema_index_story");
    two_companies::migrate(&db2.admin_url()).unwrap();
    let extra: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT count(*) FROM pg_indexes WHERE indexname LIKE '%_tenant_idx')",
    ))
    .get_result(&mut db2.admin())
    .unwrap();
    assert_eq!(extra, 0);
}

#[test]
fn the_migration_refuses_an_app_role_that_can_act_as_the_owner() {
    // Roles are cluster-wide: this test uses its own, so parallel tests never see them.
    diesel::table! { notes (id) { id -> Uuid, org_id -> Uuid } }
    tenant_lint::registry! { static NOTES; tenant notes => org_id; }
    let db = TestDb::new("schema_refuse");
    let owner = format!("{}_owner", db.name());
    let app = format!("{}_app", db.name());
    let mut admin = db.admin();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {owner} NOLOGIN; CREATE ROLE {app} NOLOGIN IN ROLE {owner};
             CREATE TABLE notes (id uuid PRIMARY KEY, org_id uuid NOT NULL);"
        ))
        .unwrap();
    let options = RlsOptions {
        owner_role: owner.clone(),
        app_role: app.clone(),
        ..RlsOptions::default()
    };
    let up = generate(&NOTES, &options).up;
    let result = admin.batch_execute(&format!("BEGIN; {up} COMMIT;"));
    let _ = admin.batch_execute("ROLLBACK");
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains(&format!("role {app} is a member of {owner}")),
        "{err}"
    );
    // Nothing of the failed migration stayed.
    let forced: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT count(*) FROM pg_class WHERE relforcerowsecurity)",
    ))
    .get_result(&mut admin)
    .unwrap();
    assert_eq!(forced, 0);
    admin
        .batch_execute(&format!(
            "DROP TABLE notes; DROP ROLE {app}; DROP ROLE {owner};"
        ))
        .unwrap();
}

/// The signed context's view binds its names when it is created: applied by a session whose
/// search path puts a schema with look-alike functions first (a writable `public` on an old
/// cluster, say), it still calls PostgreSQL's own, and the session's path is as it was after.
#[test]
fn the_signed_context_view_binds_to_pg_catalog_whatever_the_migrating_sessions_path() {
    let db = TestDb::new("signed_view_path");
    two_companies::migrate(&db.admin_url()).unwrap();
    let options = RlsOptions {
        context: tenant_schema::ContextMode::Signed,
        ..RlsOptions::default()
    };
    let mut admin = db.admin();
    admin
        .batch_execute(
            "CREATE SCHEMA lookalike; \
             CREATE FUNCTION lookalike.convert_to(text, text) RETURNS bytea LANGUAGE sql AS $$ SELECT '\\x00'::bytea $$; \
             CREATE FUNCTION lookalike.split_part(text, text, bigint) RETURNS text LANGUAGE sql AS $$ SELECT 'k1'::text $$; \
             SET search_path = lookalike, public",
        )
        .unwrap();
    admin
        .batch_execute(&generate(&two_companies::REGISTRY, &options).up)
        .unwrap();
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        path: String,
        #[diesel(sql_type = Text)]
        definition: String,
        #[diesel(sql_type = Bool)]
        depends_on_lookalike: bool,
    }
    let row: Row = diesel::sql_query(
        "SELECT current_setting('search_path') AS path, \
                pg_get_viewdef('tenant_context.current_org'::regclass) AS definition, \
                EXISTS (SELECT FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid \
                        JOIN pg_proc p ON d.refclassid = 'pg_proc'::regclass AND p.oid = d.refobjid \
                        WHERE r.ev_class = 'tenant_context.current_org'::regclass \
                          AND p.pronamespace = 'lookalike'::regnamespace) AS depends_on_lookalike",
    )
    .get_result(&mut admin)
    .unwrap();
    assert_eq!(row.path, "lookalike, public");
    assert!(!row.depends_on_lookalike, "{}", row.definition);
    assert!(row.definition.contains("sha256"), "{}", row.definition);
}

#[test]
fn the_signed_migration_applies_where_none_of_its_roles_exist_yet() {
    // Every role name new to the cluster: the signed context's grants name the operator role,
    // so the roles must exist before them (they once came after, hidden by roles the shared
    // test cluster already had).
    let db = TestDb::new("schema_fresh_roles");
    let tag = db.name().replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let options = RlsOptions {
        context: tenant_schema::ContextMode::Signed,
        owner_role: format!("{tag}_owner"),
        app_role: format!("{tag}_app"),
        operator_role: format!("{tag}_operator"),
        auditor_role: format!("{tag}_auditor"),
        ..RlsOptions::default()
    };
    let mut admin = db.admin();
    for sql in two_companies::SCHEMA_SQL {
        admin.batch_execute(sql).unwrap();
    }
    admin
        .batch_execute(&generate(&two_companies::REGISTRY, &options).up)
        .unwrap();
    let granted: bool = diesel::select(diesel::dsl::sql::<Bool>(&format!(
        "has_function_privilege('{tag}_operator', 'tenant_context.verified_org()', 'EXECUTE')"
    )))
    .get_result(&mut admin)
    .unwrap();
    assert!(granted);
}
