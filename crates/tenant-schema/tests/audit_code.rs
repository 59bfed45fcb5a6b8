//! The audit against what an administrator can add beside the generated protection of a
//! signed database: code that runs on tenant tables (rules, triggers), writes to global
//! tables, partitions moved between schemas, look-alike verifiers, functions put into
//! `pg_catalog`, and SECURITY DEFINER helpers that sign tokens. Each test builds the weakness,
//! shows what it gives the application role (another org's rows, or a token for one), then
//! the finding.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{migrated, run, set_org_sql};
use diesel::RunQueryDsl;
use diesel::connection::SimpleConnection;
use tenant_schema::audit::{Finding, Severity};
use tenant_testkit::{TestDb, roles};

const A: &str = "00000000-0000-4000-8000-00000000000a";
const B: &str = "00000000-0000-4000-8000-00000000000b";

/// The story with orgs A and B, each with one customer (`alice`, `bob-secret`).
fn two_orgs(hint: &str) -> TestDb {
    let db = migrated(hint);
    db.admin()
        .batch_execute(&format!(
            "INSERT INTO orgs (id, name) VALUES ('{A}', 'A'), ('{B}', 'B');
             INSERT INTO customers (org_id, name, email) VALUES
               ('{A}', 'alice', 'alice@a.example'), ('{B}', 'bob-secret', 'bob@b.example');"
        ))
        .unwrap();
    db
}

/// What `sql` (a text-valued scalar expression) gives org A's session of the application role,
/// after `before` (statements run in the same transaction first, as A).
fn as_a(db: &TestDb, before: &str, sql: &str) -> String {
    #[derive(diesel::QueryableByName)]
    struct V {
        #[diesel(sql_type = diesel::sql_types::Text)]
        v: String,
    }
    let mut app = db.connect_as(roles::APP);
    let set_a = set_org_sql(&mut app, A);
    diesel::Connection::transaction(&mut app, |c| {
        c.batch_execute(&set_a)?;
        if !before.is_empty() {
            c.batch_execute(before)?;
        }
        diesel::sql_query(format!("SELECT coalesce(({sql})::text, '') AS v")).get_result::<V>(c)
    })
    .unwrap()
    .v
}

/// Org B's session of the application role adds the customer `name` (`name@b.example`).
fn insert_as_b(db: &TestDb, name: &str) {
    let mut app = db.connect_as(roles::APP);
    let set_b = set_org_sql(&mut app, B);
    app.batch_execute(&format!(
        "BEGIN; {set_b}; INSERT INTO customers (org_id, name, email) VALUES ('{B}', '{name}', '{name}@b.example'); COMMIT"
    ))
    .unwrap();
}

fn of(findings: &[Finding], rule: &str) -> Vec<(String, Severity)> {
    findings
        .iter()
        .filter(|f| f.rule == rule)
        .map(|f| (f.object.clone(), f.severity))
        .collect()
}

#[test]
fn a_rule_that_copies_rows_into_a_global_table_is_an_error() {
    let db = two_orgs("audit_rule_copy");
    db.admin()
        .batch_execute(
            "CREATE RULE copy_out AS ON INSERT TO customers DO ALSO
               INSERT INTO currencies (code, name) VALUES (upper(left(NEW.name, 3)), NEW.email);",
        )
        .unwrap();
    // B's next customer, through the rule, where A reads it (the rule runs as the owner).
    insert_as_b(&db, "carol");
    assert_eq!(
        as_a(&db, "", "SELECT name FROM currencies WHERE code = 'CAR'"),
        "carol@b.example"
    );
    assert_eq!(
        of(&run(&db).findings, "code-on-tenant-table"),
        [(
            "public.customers (rule copy_out)".to_owned(),
            Severity::Error
        )]
    );
}

#[test]
fn a_trigger_that_writes_a_global_table_the_app_may_write_is_found_twice() {
    let db = two_orgs("audit_trigger_copy");
    db.admin()
        .batch_execute(
            "GRANT INSERT ON currencies TO tenant_app;
             CREATE FUNCTION public.copy_email() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
             BEGIN INSERT INTO currencies (code, name) VALUES (upper(left(NEW.name, 3)), NEW.email); RETURN NEW; END $$;
             CREATE TRIGGER copy_email AFTER INSERT ON customers FOR EACH ROW EXECUTE FUNCTION public.copy_email();",
        )
        .unwrap();
    insert_as_b(&db, "dave");
    assert_eq!(
        as_a(&db, "", "SELECT name FROM currencies WHERE code = 'DAV'"),
        "dave@b.example"
    );
    let report = run(&db);
    assert_eq!(
        of(&report.findings, "global-table-writable"),
        [("currencies".to_owned(), Severity::Error)]
    );
    assert_eq!(
        of(&report.findings, "code-on-tenant-table"),
        [(
            "public.customers.copy_email (public.copy_email)".to_owned(),
            Severity::Warning
        )]
    );
}

#[test]
fn a_partition_moved_away_and_replaced_is_judged_by_its_own_policies() {
    let db = migrated("audit_partition_swap");
    db.admin()
        .batch_execute(
            "CREATE TABLE notes (org_id uuid NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(), body text,
               PRIMARY KEY (org_id, id)) PARTITION BY HASH (org_id);
             CREATE TABLE notes_p0 PARTITION OF notes FOR VALUES WITH (MODULUS 1, REMAINDER 0);",
        )
        .unwrap();
    diesel::table! { notes (id) { id -> Uuid, org_id -> Uuid } }
    tenant_lint::registry! { static NOTES; tenant notes => org_id; }
    db.admin()
        .batch_execute(&tenant_schema::generate(&NOTES, &tenant_schema::RlsOptions::default()).up)
        .unwrap();
    db.admin()
        .batch_execute(&format!(
            "INSERT INTO notes (org_id, body) VALUES ('{B}', 'B secret');
             CREATE SCHEMA archive AUTHORIZATION tenant_owner;
             ALTER TABLE notes DETACH PARTITION notes_p0;
             ALTER TABLE notes_p0 SET SCHEMA archive;
             CREATE TABLE public.notes_p0 PARTITION OF notes FOR VALUES WITH (MODULUS 1, REMAINDER 0);
             ALTER TABLE public.notes_p0 OWNER TO tenant_owner;
             INSERT INTO public.notes_p0 SELECT * FROM archive.notes_p0;
             ALTER TABLE public.notes_p0 ENABLE ROW LEVEL SECURITY;
             ALTER TABLE public.notes_p0 FORCE ROW LEVEL SECURITY;
             CREATE POLICY reporting_read ON public.notes_p0 FOR SELECT TO tenant_app USING (true);
             GRANT SELECT ON public.notes_p0 TO tenant_app;"
        ))
        .unwrap();
    assert_eq!(
        as_a(&db, "", "SELECT string_agg(body, ',') FROM notes_p0"),
        "B secret"
    );
    let mut reader =
        tenant_core::admin::CatalogReader::connect(&db.app_url(), "test: audit").unwrap();
    let report = tenant_schema::audit::audit(
        &mut reader,
        &NOTES,
        &tenant_schema::audit::AuditOptions::default(),
    )
    .unwrap();
    // The archived copy's generated policies no longer stand in for the new partition's.
    assert_eq!(
        of(&report.findings, "partition-not-protected"),
        [(
            "public.notes_p0 (partition of notes)".to_owned(),
            Severity::Error
        )]
    );
    assert_eq!(
        of(&report.findings, "unexpected-permissive-policy"),
        [("notes_p0.reporting_read".to_owned(), Severity::Error)]
    );
}

#[test]
fn a_look_alike_verifier_in_public_is_no_generated_org_policy() {
    let db = two_orgs("audit_look_alike_view");
    db.admin()
        .batch_execute(
            "CREATE VIEW public.current_org WITH (security_invoker) AS
               SELECT coalesce((SELECT org FROM tenant_context.current_org),
                               nullif(current_setting('tenant.support_org', true), '')::uuid) AS org;
             GRANT SELECT ON public.current_org TO tenant_app;
             ALTER POLICY tenant_isolation ON customers
               USING (org_id = (SELECT org FROM public.current_org)) WITH CHECK (org_id = (SELECT org FROM public.current_org));
             ALTER POLICY tenant_app_access ON customers
               USING (org_id = (SELECT org FROM public.current_org)) WITH CHECK (org_id = (SELECT org FROM public.current_org));",
        )
        .unwrap();
    assert_eq!(
        as_a(
            &db,
            "SELECT set_config('tenant.org_token', '', true), set_config('tenant.support_org', '00000000-0000-4000-8000-00000000000b', true)",
            "SELECT string_agg(name, ',') FROM customers"
        ),
        "bob-secret"
    );
    let report = run(&db);
    assert_eq!(
        of(&report.findings, "tenant-policy-missing"),
        [("customers".to_owned(), Severity::Error)]
    );
    assert_ne!(report.org_context, "signed");
}

#[test]
fn a_cast_through_a_function_put_into_pg_catalog_changes_what_the_view_reads() {
    // Needs a superuser (as an extension installed into pg_catalog would): the test's admin is.
    let db = two_orgs("audit_catalog_cast");
    let mut sql = tenant_schema::shared_objects(&tenant_schema::RlsOptions::default());
    sql = format!(
        "CREATE FUNCTION pg_catalog.text_to_uuid_rt(text) RETURNS uuid LANGUAGE sql STABLE AS
           $$ SELECT pg_catalog.uuid_in(COALESCE(NULLIF(pg_catalog.current_setting('tenant.as_org', true), ''), $1)::cstring) $$;
         CREATE CAST (text AS uuid) WITH FUNCTION pg_catalog.text_to_uuid_rt(text);
         {sql}"
    );
    db.admin().batch_execute(&sql).unwrap();
    assert_eq!(
        as_a(
            &db,
            "SELECT set_config('tenant.as_org', '00000000-0000-4000-8000-00000000000b', true)",
            "SELECT string_agg(name, ',') FROM customers"
        ),
        "bob-secret",
        "A's own token, verified, names B through the cast"
    );
    let changed = of(&run(&db).findings, "generated-object-changed");
    assert!(
        changed
            .iter()
            .any(|(o, s)| o == "tenant_context.current_org" && *s == Severity::Error),
        "{changed:?}"
    );
}

#[test]
fn a_definer_helper_that_signs_tokens_for_the_app_is_an_error() {
    let db = two_orgs("audit_support_token");
    db.admin()
        .batch_execute(
            "CREATE FUNCTION public.support_token(p_org uuid) RETURNS text LANGUAGE sql SECURITY DEFINER
               SET search_path = pg_catalog, pg_temp
               AS $$ SELECT tenant_context.sign_for_this_backend(p_org, clock_timestamp() + interval '5 minutes') $$;
             ALTER FUNCTION public.support_token(uuid) OWNER TO tenant_owner;
             REVOKE ALL ON FUNCTION public.support_token(uuid) FROM PUBLIC;
             GRANT EXECUTE ON FUNCTION public.support_token(uuid) TO tenant_app;",
        )
        .unwrap();
    assert_eq!(
        as_a(
            &db,
            "SELECT set_config('tenant.org_token', public.support_token('00000000-0000-4000-8000-00000000000b'), true)",
            "SELECT string_agg(name, ',') FROM customers"
        ),
        "bob-secret"
    );
    let f: Vec<Finding> = run(&db)
        .findings
        .into_iter()
        .filter(|f| f.rule == "security-definer-function")
        .collect();
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].severity, Severity::Error);
    assert!(f[0].why.contains("reaches tenant_context"), "{}", f[0].why);
}

#[test]
fn a_function_the_application_may_call_on_a_tenant_row_is_an_error() {
    let db = two_orgs("audit_row_function");
    db.admin()
        .batch_execute(
            "CREATE FUNCTION public.card(customers) RETURNS text LANGUAGE sql
               AS $$ SELECT $1.name || ' <' || $1.email || '>' $$;
             CREATE FUNCTION public.anything(anyelement) RETURNS text LANGUAGE sql
               AS $$ SELECT 'any' $$;
             CREATE FUNCTION public.on_text(text) RETURNS text LANGUAGE sql AS $$ SELECT $1 $$;",
        )
        .unwrap();
    // What it gives: `c.card` reads like a column and is the call `card(c)`, which the SQL
    // checker would refuse written as a call (an unregistered function).
    assert_eq!(
        as_a(&db, "", "SELECT c.card FROM customers c"),
        "alice <alice@a.example>"
    );
    assert_eq!(as_a(&db, "", "SELECT c.anything FROM customers c"), "any");
    assert_eq!(
        of(&run(&db).findings, "function-on-tenant-row"),
        vec![
            ("public.anything(anyelement)".to_owned(), Severity::Error),
            ("public.card(customers)".to_owned(), Severity::Error),
        ]
    );
    db.admin()
        .batch_execute(
            "REVOKE EXECUTE ON FUNCTION public.card(customers), public.anything(anyelement) FROM PUBLIC",
        )
        .unwrap();
    assert_eq!(of(&run(&db).findings, "function-on-tenant-row"), vec![]);
}

#[test]
fn a_function_declared_cheaper_than_one_operator_is_a_warning() {
    let db = two_orgs("audit_function_cost");
    db.admin()
        .batch_execute(
            "CREATE FUNCTION public.year_of(text) RETURNS date LANGUAGE plpgsql IMMUTABLE COST 0.01
               AS $$ BEGIN RETURN to_date($1, 'YYYY'); END $$;
             CREATE FUNCTION public.tidy(text) RETURNS text LANGUAGE plpgsql IMMUTABLE COST 0.01
               AS $$ BEGIN RETURN btrim($1); END $$;",
        )
        .unwrap();
    // What it gives: two calls, which the checker counts as two operators, cost PostgreSQL
    // 0.02; without RLS (the application layer alone) it evaluates them before the org
    // predicate, on B's row too.
    let plan: Vec<String> = {
        // A sequential scan, as for an org with a large share of the table.
        let mut admin = db.admin();
        admin
            .batch_execute("SET enable_indexscan = off; SET enable_bitmapscan = off")
            .unwrap();
        #[derive(diesel::QueryableByName)]
        struct Line {
            #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
            line: String,
        }
        diesel::sql_query(format!(
            "EXPLAIN (COSTS OFF) SELECT c.name FROM customers c
              WHERE c.org_id = '{A}' AND year_of(tidy(c.name)) IS NOT NULL"
        ))
        .load::<Line>(&mut admin)
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect()
    };
    assert!(
        plan.iter().any(|l| l
            .trim_start()
            .starts_with("Filter: ((year_of(tidy(name)) IS NOT NULL) AND (org_id =")),
        "{plan:?}"
    );
    assert_eq!(
        of(&run(&db).findings, "function-cost-below-one"),
        vec![
            ("public.tidy(text)".to_owned(), Severity::Warning),
            ("public.year_of(text)".to_owned(), Severity::Warning),
        ]
    );
    db.admin()
        .batch_execute(
            "ALTER FUNCTION public.year_of(text) COST 1; ALTER FUNCTION public.tidy(text) COST 1",
        )
        .unwrap();
    assert_eq!(of(&run(&db).findings, "function-cost-below-one"), vec![]);
}
