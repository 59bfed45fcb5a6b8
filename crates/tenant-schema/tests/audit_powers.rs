//! The audit reads every source of privilege, not only table grants: each test builds one
//! weakness as an administrator could, shows the access it gives the application or operator
//! role, and then the audit's finding, with the statement that takes it away.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{migrated, objects, run, run_as};
use diesel::RunQueryDsl;
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Bool};
use tenant_schema::audit::{AuditOptions, Finding, Severity};
use tenant_testkit::{TestDb, roles};

fn of_rule(findings: Vec<Finding>, rule: &str) -> Vec<Finding> {
    findings.into_iter().filter(|f| f.rule == rule).collect()
}

/// The default audit options with `change` made to the generator's options.
fn audit_options(change: impl FnOnce(&mut tenant_schema::RlsOptions)) -> AuditOptions {
    let mut options = AuditOptions::default();
    change(&mut options.rls);
    options
}

fn yes(conn: &mut diesel::PgConnection, sql: &str) -> bool {
    diesel::select(diesel::dsl::sql::<Bool>(sql))
        .get_result(conn)
        .unwrap()
}

#[test]
fn a_role_that_can_create_objects_is_an_error_for_each_way_it_can() {
    let db = migrated("audit_can_create");
    db.admin()
        .batch_execute(
            "DO $$ BEGIN EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database()); END $$; \
             GRANT CREATE ON SCHEMA public TO tenant_app; \
             GRANT EXECUTE ON FUNCTION lo_from_bytea(oid, bytea) TO tenant_app;",
        )
        .unwrap();
    // What they give the application role: a temporary table that shadows a tenant table for
    // the rest of the session, a table of its own, a large object.
    let mut app = db.connect_as(roles::APP);
    app.batch_execute(
        "CREATE TEMP TABLE customers (LIKE public.customers); \
         CREATE TABLE public.spy (loot text); SELECT lo_from_bytea(0, 'loot');",
    )
    .unwrap();
    let f = of_rule(run(&db).findings, "role-can-create");
    let temp = format!("TEMPORARY on database {}", db.name());
    assert_eq!(
        objects(&f),
        [
            ("tenant_app: CREATE on schema public", Severity::Error),
            (
                "tenant_app: EXECUTE on function lo_from_bytea(oid,bytea)",
                Severity::Error
            ),
            (format!("tenant_app: {temp}").as_str(), Severity::Error),
            (format!("tenant_operator: {temp}").as_str(), Severity::Error),
        ]
    );
    assert_eq!(
        f[0].fix,
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC, tenant_app"
    );
    assert_eq!(
        f[2].fix,
        format!(
            "REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC, tenant_app",
            db.name()
        )
    );
}

/// The story's schema protected in the signed mode, with one key, `k1`.
fn signed(hint: &str) -> TestDb {
    let db = tenant_testkit::story::with(hint, &tenant_schema::RlsOptions::default());
    db.admin()
        .batch_execute("SELECT tenant_context.add_key('k1', '\\x4242424242424242424242424242424242424242424242424242424242424242')")
        .unwrap();
    db
}

#[test]
fn a_column_grant_on_the_signed_contexts_keys_is_an_error_naming_the_columns() {
    let db = signed("audit_key_columns");
    db.admin()
        .batch_execute("GRANT SELECT (kid, ipad, opad) ON tenant_context.keys TO tenant_app")
        .unwrap();
    // What it gives: the HMAC pads, with which the application signs a token for any org.
    let mut app = db.connect_as(roles::APP);
    let pads: i64 = diesel::select(diesel::dsl::sql::<BigInt>(
        "(SELECT count(*) FROM tenant_context.keys WHERE ipad IS NOT NULL AND opad IS NOT NULL)",
    ))
    .get_result(&mut app)
    .unwrap();
    assert_eq!(pads, 1);
    let options = audit_options(|o| o.context = tenant_schema::ContextMode::Signed);
    let f = of_rule(
        run_as(&db, roles::APP, &options).findings,
        "context-keys-readable",
    );
    assert_eq!(objects(&f), [("tenant_context.keys", Severity::Error)]);
    assert!(f[0].why.contains("tenant_app:SELECT(ipad)"), "{}", f[0].why);
    assert!(
        f[0].fix
            .contains("REVOKE ALL (\"ipad\") ON tenant_context.keys FROM \"tenant_app\"")
            && f[0]
                .fix
                .contains("REVOKE ALL (\"opad\") ON tenant_context.keys FROM \"tenant_app\""),
        "{}",
        f[0].fix
    );
}

#[test]
fn a_column_grant_on_the_access_log_is_an_error_and_a_forged_entry_would_open_an_org() {
    let db = migrated("audit_log_columns");
    let org = tenant_core::OrgId::new_random();
    db.admin()
        .batch_execute(&format!(
            "INSERT INTO orgs (id, name) VALUES ('{org}', 'victim'); \
             GRANT INSERT (event, target_org, mode, expires_at, xact) ON tenant_audit.access_log TO tenant_operator;"
        ))
        .unwrap();
    // What the column grant allows: the operator forges its own 'granted' row, with no ticket
    // and no request, enters it and reads the org.
    let mut op = db.connect_as(roles::OPERATOR);
    common::forge_grant_and_enter(&mut op, &org.to_string());
    let seen: i64 = diesel::select(diesel::dsl::sql::<BigInt>("(SELECT count(*) FROM orgs)"))
        .get_result(&mut op)
        .unwrap();
    op.batch_execute("ROLLBACK").unwrap();
    assert_eq!(seen, 1, "the forged entry opened the org");
    let f = of_rule(run(&db).findings, "access-log-writable");
    assert_eq!(objects(&f), [("tenant_audit.access_log", Severity::Error)]);
    assert!(
        f[0].why.contains("tenant_operator:INSERT(target_org)"),
        "{}",
        f[0].why
    );
    assert!(
        f[0].fix.contains(
            "REVOKE ALL (\"target_org\") ON tenant_audit.access_log FROM \"tenant_operator\""
        ),
        "{}",
        f[0].fix
    );
}

#[test]
fn a_default_privilege_for_the_application_is_found_and_truncate_is_an_error() {
    let db = migrated("audit_default_acl");
    let mut admin = db.admin();
    admin
        .batch_execute(
            "ALTER DEFAULT PRIVILEGES FOR ROLE tenant_owner IN SCHEMA public GRANT TRUNCATE ON TABLES TO tenant_app; \
             ALTER DEFAULT PRIVILEGES FOR ROLE tenant_owner IN SCHEMA public GRANT SELECT ON SEQUENCES TO tenant_app; \
             GRANT CREATE ON SCHEMA public TO tenant_owner; \
             SET ROLE tenant_owner; CREATE TABLE public.later (org_id uuid NOT NULL, x int); RESET ROLE;",
        )
        .unwrap();
    // What it gives: TRUNCATE on a table nobody granted anything on, which RLS never governs.
    assert!(yes(
        &mut admin,
        "has_table_privilege('tenant_app', 'public.later', 'TRUNCATE')"
    ));
    let f = of_rule(run(&db).findings, "default-privilege");
    let admin_role = "tenant_owner";
    assert_eq!(
        objects(&f),
        [
            (
                format!("tenant_app: TRUNCATE on tables created by {admin_role} in schema public, to tenant_app").as_str(),
                Severity::Error
            ),
            (
                format!("tenant_app: SELECT on sequences created by {admin_role} in schema public, to tenant_app").as_str(),
                Severity::Warning
            ),
        ]
    );
    assert_eq!(
        f[0].fix,
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {admin_role} IN SCHEMA public REVOKE TRUNCATE ON TABLES FROM tenant_app"
        )
    );
}

#[test]
fn membership_in_a_data_role_or_a_library_role_is_an_error() {
    // Memberships are cluster-wide: a role of this test's own stands in for the application
    // role, so that no other test's audit sees them.
    let db = migrated("audit_membership");
    let app = "audit_membership_app";
    let mut admin = db.admin();
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {app} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             GRANT pg_read_all_data TO {app}; GRANT tenant_operator TO {app};"
        ))
        .unwrap();
    // What they give: the access log, past every grant.
    assert!(yes(
        &mut admin,
        &format!("has_table_privilege('{app}', 'tenant_audit.access_log', 'SELECT')")
    ));
    let options = audit_options(|o| o.app_role = app.into());
    let f = of_rule(
        run_as(&db, roles::APP, &options).findings,
        "role-membership",
    );
    assert_eq!(
        objects(&f),
        [
            (format!("{app}: pg_read_all_data").as_str(), Severity::Error),
            (format!("{app}: tenant_operator").as_str(), Severity::Error),
        ]
    );
    assert_eq!(f[0].fix, format!("REVOKE pg_read_all_data FROM {app}"));
}

#[test]
fn large_objects_without_their_checks_are_an_error() {
    let db = migrated("audit_lo_compat");
    let mut admin = db.admin();
    admin
        .batch_execute(
            "SELECT lo_from_bytea(424242, 'another org''s export'); \
             DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET lo_compat_privileges = on', current_database()); END $$;",
        )
        .unwrap();
    // What it gives: the application reads a large object nobody granted it.
    let mut app = db.connect_as(roles::APP);
    assert!(yes(
        &mut app,
        "convert_from(lo_get(424242), 'UTF8') = 'another org''s export'"
    ));
    let f = of_rule(run(&db).findings, "large-object-compat");
    assert_eq!(
        objects(&f),
        [
            ("tenant_app: lo_compat_privileges = on", Severity::Error),
            (
                "tenant_operator: lo_compat_privileges = on",
                Severity::Error
            ),
        ]
    );
}

#[test]
fn a_role_that_can_stop_other_sessions_is_found() {
    let db = migrated("audit_signal");
    db.admin()
        .batch_execute("GRANT EXECUTE ON FUNCTION pg_cancel_backend(integer) TO tenant_app")
        .unwrap();
    // What it gives: one session of the role cancels another's statement (another org's).
    let mut victim = db.connect_as(roles::APP);
    let pid: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
        "pg_backend_pid()",
    ))
    .get_result(&mut victim)
    .unwrap();
    let mut app = db.connect_as(roles::APP);
    assert!(yes(&mut app, &format!("pg_cancel_backend({pid})")));
    let f = of_rule(run(&db).findings, "role-can-signal");
    assert_eq!(
        objects(&f),
        [(
            "tenant_app: EXECUTE on function pg_cancel_backend(integer)",
            Severity::Warning
        )]
    );
}

#[test]
fn a_role_default_the_application_set_for_itself_is_found() {
    let db = migrated("audit_role_setting");
    // The application role itself, as an injection would: PostgreSQL lets any role set its own
    // defaults.
    let mut app = db.connect_as(roles::APP);
    app.batch_execute(
        "DO $$ BEGIN \
           EXECUTE format('ALTER ROLE tenant_app IN DATABASE %I SET search_path = information_schema, public', current_database()); \
           EXECUTE format('ALTER ROLE tenant_app IN DATABASE %I SET work_mem = ''1GB''', current_database()); \
         END $$",
    )
    .unwrap();
    // What it gives: every new session of the role starts with them.
    let mut next = db.connect_as(roles::APP);
    assert!(yes(
        &mut next,
        "current_setting('search_path') = 'information_schema, public'"
    ));
    let f = of_rule(run(&db).findings, "role-setting");
    assert_eq!(
        objects(&f),
        [
            (
                "tenant_app: search_path=information_schema, public",
                Severity::Error
            ),
            ("tenant_app: work_mem=1GB", Severity::Warning),
        ]
    );
    assert_eq!(
        f[0].fix,
        format!(
            "ALTER ROLE tenant_app IN DATABASE {} RESET search_path",
            db.name()
        )
    );
}

#[test]
fn a_generated_signing_function_the_application_may_run_is_an_error() {
    let db = signed("audit_mac_grant");
    db.admin()
        .batch_execute("GRANT EXECUTE ON FUNCTION tenant_context.mac(text, text) TO tenant_app")
        .unwrap();
    // What it gives: the MAC of any text under the service's key, so a token for any org.
    let mut app = db.connect_as(roles::APP);
    assert!(yes(
        &mut app,
        "length(tenant_context.mac('k1', 'v1.00000000-0000-4000-8000-00000000000b.9999999999.0.k1')) = 64"
    ));
    let options = audit_options(|o| o.context = tenant_schema::ContextMode::Signed);
    let f = of_rule(
        run_as(&db, roles::APP, &options).findings,
        "generated-function-executable",
    );
    assert_eq!(
        objects(&f),
        [(
            "tenant_app: EXECUTE on tenant_context.mac(text,text)",
            Severity::Error
        )]
    );
}

#[test]
fn reading_the_servers_files_or_the_statistics_catalog_is_an_error() {
    let db = migrated("audit_reads_server");
    let mut admin = db.admin();
    admin
        .batch_execute(
            "GRANT EXECUTE ON FUNCTION pg_read_binary_file(text) TO tenant_app; \
             GRANT SELECT ON pg_catalog.pg_statistic TO tenant_app; \
             INSERT INTO orgs (id, name) VALUES ('00000000-0000-4000-8000-00000000000b', 'B'); \
             INSERT INTO customers (org_id, name, email) \
               SELECT '00000000-0000-4000-8000-00000000000b', 'bob', 'bob-' || g || '@b.test' FROM generate_series(1, 20) g; \
             ANALYZE customers;",
        )
        .unwrap();
    // What they give: a file under the data directory (the key table is one), and the most
    // common values of every org's columns.
    let mut app = db.connect_as(roles::APP);
    assert!(yes(
        &mut app,
        "length(pg_read_binary_file('PG_VERSION')) > 0"
    ));
    assert!(yes(
        &mut app,
        "EXISTS (SELECT FROM pg_statistic s WHERE s.starelid = 'customers'::regclass AND s.stavalues1::text LIKE '%bob%')"
    ));
    let f = of_rule(run(&db).findings, "role-reads-server");
    assert_eq!(
        objects(&f),
        [
            (
                "tenant_app: EXECUTE on function pg_read_binary_file(text)",
                Severity::Error
            ),
            ("tenant_app: SELECT on pg_statistic", Severity::Error),
        ]
    );
}

#[test]
fn createrole_and_replication_are_errors_and_the_pool_refuses_them() {
    // Role attributes are cluster-wide: roles of this test's own.
    let db = migrated("audit_attributes");
    let (app, login) = ("audit_attr_app", "audit_attr_login");
    let mut admin = db.admin();
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {app} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             ALTER ROLE {app} CREATEROLE REPLICATION; \
             DO $$ BEGIN CREATE ROLE {login} LOGIN PASSWORD '{pw}' IN ROLE tenant_app; \
               EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             ALTER ROLE {login} CREATEROLE;",
            pw = tenant_testkit::TEST_PASSWORD
        ))
        .unwrap();
    // What CREATEROLE gives on PostgreSQL 15: any role but a superuser's, the table owner's
    // too, granted by itself. From 16 only the roles it has ADMIN OPTION on (those it created),
    // so the same grant is refused; the attribute is an error on every version all the same.
    let self_grant = admin.batch_execute(&format!(
        "SET ROLE {app}; GRANT tenant_owner TO {app}; RESET ROLE;"
    ));
    if yes(
        &mut admin,
        "current_setting('server_version_num')::int >= 160000",
    ) {
        let err = self_grant.unwrap_err().to_string();
        assert!(err.contains("permission denied to grant role"), "{err}");
        admin.batch_execute("RESET ROLE").unwrap();
    } else {
        self_grant.unwrap();
        assert!(yes(
            &mut admin,
            &format!("pg_has_role('{app}', 'tenant_owner', 'MEMBER')")
        ));
        admin
            .batch_execute(&format!("REVOKE tenant_owner FROM {app}"))
            .unwrap();
    }
    let options = audit_options(|o| o.app_role = app.into());
    let f = of_rule(run_as(&db, roles::APP, &options).findings, "role-attribute");
    assert_eq!(
        objects(&f),
        [
            (format!("{app}: CREATEROLE").as_str(), Severity::Error),
            (format!("{app}: REPLICATION").as_str(), Severity::Error),
        ]
    );
    let key = tenant_core::context::ContextKey::parse(tenant_testkit::TEST_CONTEXT_KEY).unwrap();
    let err = tenant_core::TenantPool::builder(db.url_as(login), &two_companies::REGISTRY, key)
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("has CREATEROLE") && err.contains(&format!("ALTER ROLE {login} NOCREATEROLE")),
        "{err}"
    );
}

/// As tenant_app with org A set: the names of the customers `sql` shows.
fn names_as_app(db: &TestDb, sql: &str) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let mut app = db.connect_as(roles::APP);
    let set_a = common::set_org_sql(&mut app, "00000000-0000-4000-8000-00000000000a");
    diesel::Connection::transaction(&mut app, |c| {
        c.batch_execute(&set_a)?;
        diesel::sql_query(sql).load::<Name>(c)
    })
    .unwrap()
    .into_iter()
    .map(|n| n.name)
    .collect()
}

/// The story with org A (customer alice) and org B (customer bob-secret).
fn two_orgs(hint: &str) -> TestDb {
    let db = migrated(hint);
    db.admin()
        .batch_execute(
            "INSERT INTO orgs (id, name) VALUES ('00000000-0000-4000-8000-00000000000a', 'A'), \
               ('00000000-0000-4000-8000-00000000000b', 'B'); \
             INSERT INTO customers (org_id, name, email) VALUES \
               ('00000000-0000-4000-8000-00000000000a', 'alice', 'a@a.test'), \
               ('00000000-0000-4000-8000-00000000000b', 'bob-secret', 'b@b.test');",
        )
        .unwrap();
    db
}

#[test]
fn a_copy_of_a_tenant_table_under_its_name_in_another_schema_is_an_unregistered_relation() {
    let db = two_orgs("audit_same_name");
    db.admin()
        .batch_execute(
            "CREATE SCHEMA archive; CREATE TABLE archive.customers AS SELECT * FROM public.customers; \
             CREATE MATERIALIZED VIEW archive.orgs AS SELECT * FROM public.orgs; \
             GRANT USAGE ON SCHEMA archive TO tenant_app; \
             GRANT SELECT ON archive.customers, archive.orgs TO tenant_app;",
        )
        .unwrap();
    // What it gives: B's customers, under a registered name.
    assert_eq!(
        names_as_app(&db, "SELECT name FROM archive.customers ORDER BY name"),
        ["alice", "bob-secret"]
    );
    let f = of_rule(run(&db).findings, "unregistered-relation");
    assert_eq!(
        objects(&f),
        [
            ("archive.customers", Severity::Error),
            ("archive.orgs", Severity::Error)
        ]
    );
}

#[test]
fn an_operators_definer_function_and_a_definer_trigger_on_a_tenant_table_are_found() {
    let db = two_orgs("audit_definer_more");
    db.admin()
        .batch_execute(
            "CREATE SCHEMA ops; GRANT USAGE ON SCHEMA ops TO tenant_operator; \
             CREATE FUNCTION ops.all_customers() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER \
               SET search_path = pg_catalog, public AS $$ SELECT name FROM public.customers $$; \
             REVOKE EXECUTE ON FUNCTION ops.all_customers() FROM PUBLIC; \
             GRANT EXECUTE ON FUNCTION ops.all_customers() TO tenant_operator; \
             CREATE FUNCTION ops.copy_names() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER \
               SET search_path = pg_catalog, public AS $$ BEGIN \
                 NEW.name := (SELECT string_agg(name, ',' ORDER BY name) FROM public.customers); RETURN NEW; END $$; \
             REVOKE EXECUTE ON FUNCTION ops.copy_names() FROM PUBLIC; \
             CREATE TRIGGER copy_names BEFORE INSERT ON public.customers \
               FOR EACH ROW EXECUTE FUNCTION ops.copy_names();",
        )
        .unwrap();
    // What the trigger gives the application: B's names in a row of A's.
    assert_eq!(
        names_as_app(
            &db,
            "INSERT INTO customers (org_id, name, email) \
             VALUES ('00000000-0000-4000-8000-00000000000a', 'x', 'x@a.test') RETURNING name"
        ),
        ["alice,bob-secret"]
    );
    let f = of_rule(run(&db).findings, "security-definer-function");
    let objects: Vec<&str> = f.iter().map(|f| f.object.as_str()).collect();
    assert_eq!(
        objects,
        [
            "public.customers.copy_names (ops.copy_names)",
            "ops.all_customers()"
        ],
        "{f:#?}"
    );
}

#[test]
fn an_org_every_session_of_the_database_starts_with_is_an_error() {
    let db = two_orgs("audit_database_org");
    // A token for B that names no backend (as behind a transaction pooler), left as the
    // database's default by someone who once held it.
    let b = common::token("00000000-0000-4000-8000-00000000000b", 0);
    db.admin()
        .batch_execute(&format!(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET tenant.org_token = %L', \
               current_database(), '{b}'); END $$"
        ))
        .unwrap();
    // What it gives: a session that sets no org reads B's rows.
    let mut app = db.connect_as(roles::APP);
    assert!(yes(
        &mut app,
        "(SELECT string_agg(name, ',') FROM customers) = 'bob-secret'"
    ));
    let f = of_rule(run(&db).findings, "role-setting");
    assert_eq!(
        objects(&f),
        [(
            format!("every role: tenant.org_token={b} (this database, every role)").as_str(),
            Severity::Error
        )]
    );
}
