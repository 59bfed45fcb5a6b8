//! The signed org context (the hardened mode) against the real server: SQL in the session
//! cannot switch the org, tokens that are expired, for another backend, forged or under a
//! retired key give no org, keys rotate, an operator still goes through the log, and the probe
//! finds no hop.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer};
use tenant_core::context::Backend;
use tenant_core::operator::{AccessRequest, OperatorSession};
use tenant_core::{OrgContext, OrgId, TenantError, TenantPool};
use tenant_probe::{ProbeOptions, Verdict};
use tenant_schema::audit::Severity;
use tenant_testkit::{TestDb, roles, try_sql};
use two_companies::schema::{customers, orgs};

use common::{K1, K2, key, signed_db};

fn pool(db: &TestDb) -> TenantPool {
    pool_of(db, 2)
}

/// A signing pool of at most `size` connections.
fn pool_of(db: &TestDb, size: u32) -> TenantPool {
    TenantPool::builder(db.app_url(), &two_companies::REGISTRY, key("k1", &K1))
        .max_size(size)
        .build()
        .unwrap()
}

/// The audit of the story's registry at `url` (the application role).
fn audit_of(url: &str) -> tenant_schema::audit::Report {
    let mut reader = tenant_core::admin::CatalogReader::connect(url, "test: audit").unwrap();
    tenant_schema::audit::audit(
        &mut reader,
        &two_companies::REGISTRY,
        &tenant_schema::audit::AuditOptions::default(),
    )
    .unwrap()
}

fn org_with_customer(pool: &TenantPool, name: &str) -> OrgId {
    let org = OrgId::new_random();
    pool.with_org(org, |s| {
        s.execute(s.insert(orgs::table, orgs::name.eq(name)))?;
        s.execute(s.insert(
            customers::table,
            (
                customers::name.eq(name),
                customers::email.eq(format!("{name}@example.com")),
            ),
        ))
    })
    .unwrap();
    org
}

fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    diesel::select(diesel::dsl::sql::<BigInt>(&format!("({sql})")))
        .get_result(conn)
        .unwrap()
}

fn pid(conn: &mut PgConnection) -> i32 {
    diesel::select(diesel::dsl::sql::<Integer>("pg_backend_pid()"))
        .get_result(conn)
        .unwrap()
}

/// `customers`' org policy back on the plain setting any SQL can change (a database on its
/// way to the signed mode).
fn customers_back_on_the_plain_setting(db: &TestDb) {
    db.admin()
        .batch_execute(
            "DO $$ DECLARE p name; BEGIN \
               SELECT polname INTO p FROM pg_policy WHERE polrelid = 'public.customers'::regclass AND NOT polpermissive; \
               EXECUTE format('ALTER POLICY %I ON public.customers USING (org_id = (SELECT nullif(current_setting(''tenant.org_id'', true), '''')::uuid))', p); \
             END $$",
        )
        .unwrap();
}

/// Sets `token` on `conn` (transaction-local when `local`) as a bound parameter, so that it
/// never shows in the statement text other sessions read in `pg_stat_activity` (the probes
/// of this file look for tokens there, in every database of the cluster).
fn set_token(conn: &mut PgConnection, token: &str, local: bool) -> QueryResult<usize> {
    diesel::sql_query("SELECT set_config('tenant.org_token', $1, $2)")
        .bind::<diesel::sql_types::Text, _>(token)
        .bind::<diesel::sql_types::Bool, _>(local)
        .execute(conn)
}

/// The customers a transaction of the application role sees with `token` set in it.
fn customers_seen_with_token(conn: &mut PgConnection, token: &str) -> i64 {
    conn.transaction(|c| {
        set_token(c, token, true)?;
        Ok::<_, diesel::result::Error>(count(c, "SELECT count(*) FROM customers"))
    })
    .unwrap()
}

/// The probe's `token_in_activity` attack reads every session's statement text in the
/// cluster: the test whose pool shows a token there on purpose and the one whose probe must
/// find none take turns.
static STATEMENT_TEXT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn statement_text_turn() -> std::sync::MutexGuard<'static, ()> {
    STATEMENT_TEXT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn sql_in_the_session_cannot_switch_a_signed_org() {
    let db = signed_db("signed_hop");
    let pool = pool(&db);
    let a = org_with_customer(&pool, "alice");
    let b = org_with_customer(&pool, "bob");
    let seen = pool
        .with_org(a, |s| {
            let raw = s.raw_connection_unchecked("test: the injected statements of docs/threat-model.md #5");
            let mut seen = vec![count(raw, "SELECT count(*) FROM customers")];
            for hop in [
                format!("SELECT set_config('tenant.org_id', '{b}', true)"),
                format!("SET LOCAL tenant.org_id = '{b}'"),
            ] {
                raw.batch_execute(&hop).unwrap();
                seen.push(count(raw, &format!("SELECT count(*) FROM customers WHERE org_id = '{b}'")));
            }
            seen.push(count(
                raw,
                &format!("SELECT count(*) FROM (SELECT set_config('tenant.org_id', '{b}', true)) h, customers c WHERE c.org_id::text = '{b}'"),
            ));
            Ok::<_, TenantError>(seen)
        })
        .unwrap();
    assert_eq!(seen, [1, 0, 0, 0]);
    // A genuine token of B's, stolen from another backend (say from pg_stat_activity), is
    // worthless here: it names that backend.
    let mut other = db.connect_as(roles::APP);
    let stolen = key("k1", &K1).token(b, pid(&mut other));
    assert_eq!(
        customers_seen_with_token(&mut db.connect_as(roles::APP), &stolen),
        0
    );
}

#[test]
fn only_a_valid_token_gives_an_org_and_keys_rotate() {
    let db = signed_db("signed_tokens");
    let pool = pool(&db);
    let a = org_with_customer(&pool, "alice");
    let b = org_with_customer(&pool, "bob");
    let mut conn = db.connect_as(roles::APP);
    let me = pid(&mut conn);
    let seen = customers_seen_with_token;
    let k1 = key("k1", &K1);
    assert_eq!(seen(&mut conn, &k1.token(a, me)), 1, "a valid token");
    assert_eq!(
        seen(&mut conn, &k1.token(a, 0)),
        1,
        "a valid token for any backend (behind a transaction pooler)"
    );
    let expired = key("k1", &K1)
        .with_ttl(std::time::Duration::ZERO)
        .token(a, me);
    let cases = [
        ("expired", expired),
        ("another backend", k1.token(a, me + 1)),
        ("an unknown key", key("k9", &K1).token(a, me)),
        ("the wrong secret", key("k1", &K2).token(a, me)),
        ("not a token", "v1.garbage".to_owned()),
        // Tampered after signing: B's org under A's MAC (B has a customer to show).
        (
            "another org under the same MAC",
            k1.token(a, me).replace(&a.to_string(), &b.to_string()),
        ),
        ("a seventh part", format!("{}.x", k1.token(a, me))),
        ("a cut MAC", {
            let t = k1.token(a, me);
            t[..t.len() - 1].to_owned()
        }),
        ("too long", format!("v1.{}", "a".repeat(300))),
        // A valid token with a megabyte before it: the MAC covers everything before the last dot.
        (
            "a valid token after a megabyte",
            format!("{}{}", "a".repeat(1 << 20), k1.token(a, me)),
        ),
        ("another separator before the MAC", {
            let t = k1.token(a, me);
            let at = t.rfind('.').unwrap();
            format!("{}x{}", &t[..at], &t[at + 1..])
        }),
        ("the MAC in capitals", {
            let t = k1.token(a, me);
            let at = t.rfind('.').unwrap();
            format!("{}{}", &t[..at], t[at..].to_uppercase())
        }),
        (
            "a prefix of a valid token",
            k1.token(a, me)[..60].to_owned(),
        ),
        ("empty", String::new()),
    ];
    for (what, token) in &cases {
        assert_eq!(seen(&mut conn, token), 0, "{what}");
    }
    // Writes too: no org, no row.
    db.install_sqlstate_probe();
    let out = try_sql(
        &mut conn,
        &format!("INSERT INTO customers (org_id, name, email) VALUES ('{a}', 'x', 'x@x')"),
    );
    assert!(
        out.starts_with("42501 new row violates row-level security policy"),
        "{out}"
    );

    // Rotation: k2 joins, both are valid; k1 retires, its tokens stop working.
    let mut admin = db.admin();
    admin
        .batch_execute(&format!(
            "SELECT tenant_context.add_key('k2', '\\x{}')",
            tenant_core::context::to_hex(&K2)
        ))
        .unwrap();
    let k2 = key("k2", &K2);
    assert_eq!(
        (
            seen(&mut conn, &k1.token(a, me)),
            seen(&mut conn, &k2.token(a, me))
        ),
        (1, 1)
    );
    admin
        .batch_execute("SELECT tenant_context.retire_key('k1', now() - interval '1 second')")
        .unwrap();
    assert_eq!(
        (
            seen(&mut conn, &k1.token(a, me)),
            seen(&mut conn, &k2.token(a, me))
        ),
        (0, 1)
    );
    // The app cannot read or add keys, and the view that reads them for it yields the org alone
    // and takes no writes.
    let out = try_sql(&mut conn, "SELECT * FROM tenant_context.keys");
    assert!(out.starts_with("42501 permission denied"), "{out}");
    let out = try_sql(&mut conn, "DELETE FROM tenant_context.current_org");
    assert!(
        out.starts_with("55000 cannot delete from view \"current_org\""),
        "{out}"
    );
    let out = try_sql(&mut conn, "SELECT ipad FROM tenant_context.current_org");
    assert!(
        out.starts_with("42703 column \"ipad\" does not exist"),
        "{out}"
    );
    let out = try_sql(&mut conn, "SELECT tenant_context.add_key('evil', '\\x00')");
    assert!(out.starts_with("42501 permission denied"), "{out}");
}

#[test]
fn the_audit_passes_the_generated_context_objects_and_reports_changed_ones() {
    let db = signed_db("signed_view_audit");
    let audit = |db: &TestDb| {
        audit_of(&db.app_url())
            .findings
            .into_iter()
            .filter(|f| f.object.starts_with("tenant_context."))
            .map(|f| (f.rule, f.object))
            .collect::<Vec<_>>()
    };
    assert_eq!(audit(&db), Vec::<(&str, String)>::new());
    // A role whose search path finds the context schema first: the audit reads the catalog
    // under one fixed path, so the view, the functions and the policies that read the view
    // print as always, and nothing is reported but the setting itself (role-setting).
    db.admin()
        .batch_execute(
            "DO $$ BEGIN EXECUTE format('ALTER ROLE tenant_app IN DATABASE %I SET search_path = tenant_context, public', current_database()); END $$",
        )
        .unwrap();
    let findings: Vec<(&str, String)> = audit_of(&db.app_url())
        .findings
        .into_iter()
        .map(|f| (f.rule, f.object))
        .collect();
    assert_eq!(
        findings,
        [(
            "role-setting",
            "tenant_app: search_path=tenant_context, public".to_owned()
        )]
    );
    db.admin()
        .batch_execute(
            "DO $$ BEGIN EXECUTE format('ALTER ROLE tenant_app IN DATABASE %I RESET search_path', current_database()); END $$",
        )
        .unwrap();
    // The same names, changed: the view reading a tenant table with its owner's rights (every
    // org's rows), the function returning a fixed org.
    db.admin()
        .batch_execute(
            "CREATE OR REPLACE VIEW tenant_context.current_org WITH (security_barrier) AS \
             SELECT org_id AS org FROM public.customers LIMIT 1; \
             CREATE OR REPLACE FUNCTION tenant_context.verified_org() RETURNS uuid \
             LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp \
             AS $fn$ BEGIN RETURN (SELECT org_id FROM public.customers LIMIT 1); END $fn$",
        )
        .unwrap();
    let view = "tenant_context.current_org".to_owned();
    assert_eq!(
        audit(&db),
        [
            ("generated-object-changed", view.clone()),
            (
                "generated-object-changed",
                "tenant_context.tenant_context.verified_org()".to_owned()
            ),
            ("unregistered-relation", view.clone()),
            ("view-without-security-invoker", view),
            (
                "security-definer-function",
                "tenant_context.verified_org()".to_owned()
            ),
        ]
    );
}

#[test]
fn a_verifier_view_that_no_longer_checks_the_mac_is_found_by_its_text() {
    let db = signed_db("signed_view_text");
    let a = org_with_customer(&pool(&db), "alice");
    // Everything the audit knew the view by stays (its owner, security_barrier, reading the
    // key table and nothing else, SELECT for the application), but the MAC is not checked:
    // any SQL in a session can now name any org.
    db.admin()
        .batch_execute(
            "CREATE OR REPLACE VIEW tenant_context.current_org WITH (security_barrier) AS \
             WITH k AS (SELECT kid, ipad, opad, retire_after FROM tenant_context.keys) \
             SELECT split_part(current_setting('tenant.org_token', true), '.', 2)::uuid AS org \
               FROM k WHERE k.kid = split_part(current_setting('tenant.org_token', true), '.', 5)",
        )
        .unwrap();
    let forged = format!("v1.{a}.0.0.k1.{}", "0".repeat(64));
    assert_eq!(
        customers_seen_with_token(&mut db.connect_as(roles::APP), &forged),
        1,
        "the changed view takes a forged token"
    );
    let findings: Vec<(&str, Severity, bool)> = audit_of(&db.app_url())
        .findings
        .iter()
        .map(|f| (f.rule, f.severity, f.why.contains("its definition differs")))
        .collect();
    assert_eq!(
        findings,
        [("generated-object-changed", Severity::Error, true)],
        "the one finding names the view's text"
    );
}

#[test]
fn a_verifier_view_regrouped_or_calling_a_look_alike_is_found_by_its_text_and_what_it_calls() {
    // Two rewrites that keep every word of the generated view: its WHERE regrouped so that an
    // active key needs no MAC, and `encode` taken from a look-alike in the context's schema
    // that returns the token's own MAC. Both print as the generated text once brackets or the
    // schema are left out; both take a forged token.
    let token = "current_setting('tenant.org_token', true)";
    let part = |n: u8| format!("split_part({token}, '.', {n})");
    let mac = format!(
        "encode(sha256(k.opad || sha256(k.ipad || convert_to(\"left\"({token}, -65), 'UTF8'))), 'hex')"
    );
    let view = |wher: &str, mac_fn: &str| {
        format!(
            "CREATE OR REPLACE VIEW tenant_context.current_org WITH (security_barrier) AS \
             WITH k AS (SELECT keys.kid, keys.ipad, keys.opad, keys.retire_after FROM tenant_context.keys) \
             SELECT CASE WHEN {p3}::double precision > date_part('epoch', clock_timestamp()) \
                          AND {p4} = ANY (ARRAY['0', pg_backend_pid()::text]) THEN {p2}::uuid ELSE NULL::uuid END AS org \
               FROM k WHERE {}",
            wher.replace("MAC", mac_fn),
            p2 = part(2),
            p3 = part(3),
            p4 = part(4),
        )
    };
    let regrouped = view(
        &format!(
            "(k.kid = {p5} AND k.retire_after IS NULL) OR (k.retire_after > clock_timestamp() AND MAC = {p6})",
            p5 = part(5),
            p6 = part(6)
        ),
        &mac,
    );
    let look_alike = format!(
        "CREATE FUNCTION tenant_context.encode(bytea, text) RETURNS text LANGUAGE sql STABLE \
           AS $$ SELECT split_part(current_setting('tenant.org_token', true), '.', 6) $$; \
         ALTER FUNCTION tenant_context.encode(bytea, text) OWNER TO tenant_owner; {}",
        view(
            &format!(
                "k.kid = {p5} AND (k.retire_after IS NULL OR k.retire_after > clock_timestamp()) AND MAC = {p6}",
                p5 = part(5),
                p6 = part(6)
            ),
            &mac.replace("encode(", "tenant_context.encode("),
        )
    );
    for (hint, rewrite) in [
        ("signed_view_regrouped", regrouped),
        ("signed_view_look_alike", look_alike),
    ] {
        let db = signed_db(hint);
        let a = org_with_customer(&pool(&db), "alice");
        db.admin().batch_execute(&rewrite).unwrap();
        let forged = format!("v1.{a}.9999999999.0.k1.{}", "0".repeat(64));
        assert_eq!(
            customers_seen_with_token(&mut db.connect_as(roles::APP), &forged),
            1,
            "{hint}: the changed view takes a forged token"
        );
        let changed: Vec<String> = audit_of(&db.app_url())
            .findings
            .iter()
            .filter(|f| f.rule == "generated-object-changed" && f.severity == Severity::Error)
            .map(|f| f.object.clone())
            .collect();
        assert_eq!(changed, ["tenant_context.current_org"], "{hint}");
    }
}

#[test]
fn a_key_table_another_role_may_read_is_an_error() {
    let db = signed_db("signed_keys_grant");
    let rule = |db: &TestDb| {
        audit_of(&db.app_url())
            .findings
            .into_iter()
            .filter(|f| f.rule == "context-keys-readable")
            .collect::<Vec<_>>()
    };
    assert!(rule(&db).is_empty());
    db.admin()
        .batch_execute("GRANT SELECT ON tenant_context.keys TO tenant_operator")
        .unwrap();
    // What the grant allows: the operator reads the pads it would sign any org's token with.
    let pads = count(
        &mut db.connect_as(roles::OPERATOR),
        "SELECT count(*) FROM tenant_context.keys WHERE ipad IS NOT NULL",
    );
    assert_eq!(pads, 1);
    let f = rule(&db);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        (f[0].object.as_str(), f[0].severity),
        ("tenant_context.keys", Severity::Error)
    );
    assert!(
        f[0].why.contains("(tenant_operator:SELECT)"),
        "{}",
        f[0].why
    );
    assert_eq!(
        f[0].fix,
        "REVOKE ALL ON tenant_context.keys FROM \"tenant_operator\""
    );
}

#[test]
fn the_evidence_calls_a_database_with_policies_of_both_modes_mixed() {
    let db = signed_db("signed_mixed");
    let mode = |db: &TestDb| tenant_schema::evidence::context_mode(&audit_of(&db.app_url()));
    assert_eq!(mode(&db), "signed");
    // A restrictive policy of one's own reading another setting is not the org's.
    db.admin()
        .batch_execute(
            "CREATE POLICY region_open ON public.deals AS RESTRICTIVE \
             USING (current_setting('app.region', true) IS DISTINCT FROM 'closed')",
        )
        .unwrap();
    assert_eq!(mode(&db), "signed");
    // One table's org policy back on the setting any SQL can change.
    customers_back_on_the_plain_setting(&db);
    assert_eq!(mode(&db), "mixed");
}

/// `tenant.org_id` as a scoped transaction of `pool` for `org` sees it (`None`: not set).
fn plain_setting(pool: &TenantPool, org: OrgId) -> Option<String> {
    pool.with_org(org, |s| {
        let raw = s.raw_connection_unchecked("test: the plain setting");
        Ok::<_, TenantError>(
            diesel::select(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Text>,
            >(
                "nullif(current_setting('tenant.org_id', true), '')"
            ))
            .get_result(raw)
            .unwrap(),
        )
    })
    .unwrap()
}

#[test]
fn a_signed_pool_sets_the_plain_setting_only_for_a_default_and_refuses_a_policy_that_reads_it() {
    let db = signed_db("signed_plain_setting");
    // Every table verifies tokens: the opening sets the token alone, and the org's rows show.
    let pool = pool(&db);
    let a = org_with_customer(&pool, "alice");
    let b = org_with_customer(&pool, "bob");
    assert_eq!(plain_setting(&pool, a), None);
    let customers_of = |pool: &TenantPool, org: OrgId| {
        pool.with_org(org, |s| {
            s.load::<String, _>(s.query(customers::table).select(customers::name))
        })
        .unwrap()
    };
    assert_eq!(customers_of(&pool, a), ["alice"]);
    // The same on a connection of one's own.
    let mut conn = db.connect_as(roles::APP);
    let backend = Backend::read(&mut conn).unwrap();
    let mut own = tenant_core::OrgScoped::begin_signed(
        &mut conn,
        a,
        &two_companies::REGISTRY,
        &key("k1", &K1),
        backend,
    )
    .unwrap();
    let raw = own.raw_connection_unchecked("test: the plain setting");
    assert_eq!(
        count(raw, "SELECT count(*) FROM customers"),
        1,
        "the token alone gives the org"
    );
    assert_eq!(
        count(
            raw,
            "SELECT count(*) FROM pg_settings WHERE name = 'tenant.org_id' AND setting <> ''"
        ),
        0
    );
    own.rollback().unwrap();
    // A column default still on the plain setting (from before the signed mode): a pool
    // built now sets both, and an insert relying on the default lands in the org.
    db.admin()
        .batch_execute(
            "ALTER TABLE customers ALTER COLUMN org_id SET DEFAULT (nullif(current_setting('tenant.org_id', true), ''))::uuid",
        )
        .unwrap();
    let rebuilt = pool_of(&db, 2);
    assert_eq!(plain_setting(&rebuilt, a), Some(a.to_string()));
    assert_eq!(customers_of(&rebuilt, a), ["alice"]);
    assert_eq!(customers_of(&rebuilt, b), ["bob"]);
    // One table's policy back on the plain setting (the signed migration rolled back): the
    // pool built before reads no rows there (nothing crosses), and a pool with the key
    // refuses to start, naming the table: the service would believe no statement can switch
    // its org, and one could.
    customers_back_on_the_plain_setting(&db);
    assert_eq!(
        customers_of(&pool, a),
        Vec::<String>::new(),
        "the pool built before the change reads no rows from that table (nothing crosses)"
    );
    let err = TenantPool::builder(db.app_url(), &two_companies::REGISTRY, key("k1", &K1))
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, TenantError::ContextKey(m)
            if m.contains("tenant table `customers` read the plain setting")
                && m.contains("OrgContext::TrustEveryStatement")),
        "{err}"
    );
}

#[test]
fn an_operator_still_goes_through_the_log_in_the_signed_mode() {
    let db = signed_db("signed_operator");
    let pool = pool(&db);
    let a = org_with_customer(&pool, "alice");
    let mut op = db.connect_as(roles::OPERATOR);
    let forged = op
        .transaction(|c| {
            c.batch_execute(&format!(
                "SELECT set_config('tenant.org_id', '{a}', true), set_config('tenant.org_token', 'v1.{a}.9999999999.' || pg_backend_pid() || '.k1.{}', true)",
                "0".repeat(64)
            ))?;
            Ok::<_, diesel::result::Error>(count(c, "SELECT count(*) FROM customers"))
        })
        .unwrap();
    assert_eq!(forged, 0);
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut s = OperatorSession::open(
        &db.url_as(roles::OPERATOR),
        &AccessRequest::read(a, "OPS-42", "signed mode: check the customer's data", 5),
    )
    .unwrap();
    let rows: Vec<N> = s.load("SELECT count(*) AS n FROM customers").unwrap();
    assert_eq!(
        rows[0].n, 1,
        "the entry signs a token for the operator's backend"
    );
    s.close().unwrap();
}

#[test]
fn the_probe_finds_no_hop_and_no_leak_in_the_signed_mode() {
    let _turn = statement_text_turn();
    let db = signed_db("signed_probe");
    let url = db.app_url();
    let app_pool = pool_of(&db, 1);
    let report = common::signed_probe_finds_nothing(&url, Some(&app_pool));
    let token = report
        .results
        .iter()
        .find(|r| r.attack == "token_in_activity")
        .expect("the token attack ran with the application's pool");
    assert_eq!(token.verdict, Verdict::Pass);
    // The evidence says which mode is active.
    let audit = audit_of(&url);
    assert_eq!(tenant_schema::evidence::context_mode(&audit), "signed");
    // And the audit knows the signed policies and objects for what they are: it finds nothing.
    assert!(
        audit.findings.is_empty(),
        "{:?}",
        audit
            .findings
            .iter()
            .map(|f| (f.rule, &f.object))
            .collect::<Vec<_>>()
    );
    let hops: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.family == "org-hopping")
        .collect();
    assert_eq!(hops.len(), 7 * report.tables.len());
    assert!(hops.iter().all(|r| r.verdict == Verdict::Pass));
}

#[test]
fn a_hop_that_works_in_a_signed_database_fails_the_probe_as_a_leak() {
    // Policies changed by hand so that the setting decides where a token is missing: the
    // service holds a key and believes no statement can switch its org. Before, the probe
    // called these hops findings and passed.
    let db = signed_db("signed_probe_fallback");
    let plain = "(SELECT nullif(current_setting('tenant.org_id', true), '')::uuid)";
    let fallback = "COALESCE((SELECT org FROM tenant_context.current_org), nullif(current_setting('tenant.' || 'org_id', true), '')::uuid)";
    db.admin()
        .batch_execute(&format!(
            "DROP POLICY tenant_isolation ON customers;
             CREATE POLICY org_guard ON customers AS RESTRICTIVE FOR ALL
               USING (org_id = {fallback}) WITH CHECK (org_id = {fallback});
             ALTER POLICY tenant_app_access ON customers USING (org_id = {plain}) WITH CHECK (org_id = {plain});"
        ))
        .unwrap();
    let mut options = ProbeOptions::new(&db.app_url(), &two_companies::REGISTRY, key("k1", &K1));
    options.progress = false;
    let report = tenant_probe::run(&options).unwrap();
    let leaks: Vec<(&str, &str)> = report
        .with_verdict(Verdict::Leak)
        .map(|r| (r.attack.as_str(), r.table.as_str()))
        .collect();
    assert_eq!(
        leaks,
        [("emptied_token_hop", "customers")],
        "{}",
        report.markdown()
    );
    assert!(report.failed());
}

#[test]
fn a_pool_trusting_every_statement_refuses_a_database_whose_policies_verify_tokens() {
    let db = signed_db("signed_no_key");
    // Before the refusal existed, this pool started, read nothing and failed writes with
    // "new row violates row-level security policy": what a new user meets first.
    let err = TenantPool::builder(
        db.app_url(),
        &two_companies::REGISTRY,
        OrgContext::TrustEveryStatement,
    )
    .build()
    .unwrap_err();
    assert!(
        matches!(&err, TenantError::ContextKey(m)
            if m.contains("tenant table `orgs`") && m.contains("so it sends no token")
                && m.contains("pass the service's ContextKey to TenantPool::builder")),
        "{err}"
    );
}

#[test]
fn a_signing_pool_refuses_a_database_without_the_verifier() {
    let db = common::plain_story("signed_missing");
    let err = TenantPool::builder(db.app_url(), &two_companies::REGISTRY, key("k1", &K1))
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, TenantError::ContextKey(m)
            if m.contains("tenant table `orgs` read the plain setting")
                && m.contains("OrgContext::TrustEveryStatement")),
        "{err}"
    );
}

#[test]
fn a_token_never_shows_in_the_statement_text_other_sessions_read() {
    let db = signed_db("signed_hidden");
    let pool = pool_of(&db, 1);
    let a = org_with_customer(&pool, "alice");
    let server = pool
        .with_org(a, |s| {
            Ok::<_, TenantError>(pid(s.raw_connection_unchecked("test: the backend's pid")))
        })
        .unwrap();
    // The same (only) connection, idle in the transaction its opening message began.
    let mut held = pool.begin(a).unwrap();
    let mut observer = db.connect_as(roles::APP);
    #[derive(QueryableByName)]
    struct Activity {
        #[diesel(sql_type = diesel::sql_types::Text)]
        state: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        query: String,
    }
    let seen: Activity = diesel::sql_query(format!(
        "SELECT state, query FROM pg_stat_activity WHERE pid = {server}"
    ))
    .get_result(&mut observer)
    .unwrap();
    assert_eq!(seen.state, "idle in transaction");
    assert!(
        seen.query.starts_with(
            "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE, NOT DEFERRABLE; RESET ALL;"
        ),
        "{}",
        seen.query
    );
    assert!(
        !seen.query.contains("v1."),
        "the token is past the recorded text: {}",
        seen.query
    );
    assert!(
        !seen.query.contains(&a.to_string()),
        "and so is the org: {}",
        seen.query
    );
    // And it was set: the transaction sees its org.
    let n: i64 = held
        .get_result(held.query(customers::table).count())
        .unwrap();
    assert_eq!(n, 1);
    held.commit().unwrap();
}

#[test]
fn a_token_left_at_session_level_is_undone_at_the_next_begin() {
    let db = signed_db("signed_leftover");
    let pool = pool_of(&db, 1);
    let a = org_with_customer(&pool, "alice");
    let b = org_with_customer(&pool, "bob");
    // A's transaction leaves a valid token of B's for this backend at session level.
    let first = pool
        .with_org(a, |s| {
            let raw = s.raw_connection_unchecked("test: a token left at session level");
            let token = key("k1", &K1).token(b, pid(raw));
            set_token(raw, &token, false).unwrap();
            Ok::<_, TenantError>(pid(raw))
        })
        .unwrap();
    // The next transaction runs on the same backend, as A alone.
    let (second, names) = pool
        .with_org(a, |s| {
            let names: Vec<String> = s.load(s.query(customers::table).select(customers::name))?;
            Ok::<_, TenantError>((
                pid(s.raw_connection_unchecked("test: which backend")),
                names,
            ))
        })
        .unwrap();
    assert_eq!(first, second, "the same connection");
    assert_eq!(names, vec!["alice".to_owned()]);
    // A token that survives the reset (a database default) is refused.
    let mut admin = db.admin();
    diesel::connection::SimpleConnection::batch_execute(
        &mut admin,
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET tenant.org_token = %L', current_database(), 'v1.planted'); END $$",
    )
    .unwrap();
    let mut conn = db.connect_as(roles::APP);
    let backend = Backend::read(&mut conn).unwrap();
    let err = tenant_core::OrgScoped::begin_signed(
        &mut conn,
        a,
        &two_companies::REGISTRY,
        &key("k1", &K1),
        backend,
    )
    .unwrap_err();
    assert!(matches!(err, TenantError::SessionContextLeft), "{err}");
}

#[test]
fn a_pool_refuses_the_signed_and_the_set_local_context_together() {
    let err = TenantPool::builder(
        "postgres://unused@/db",
        &two_companies::REGISTRY,
        key("k1", &K1),
    )
    .set_local_context()
    .build()
    .unwrap_err();
    assert!(
        matches!(&err, TenantError::ContextKey(m)
            if m.contains("set_local_context() needs OrgContext::TrustEveryStatement")),
        "{err}"
    );
}

#[test]
fn a_signing_pool_refuses_a_key_the_database_does_not_hold() {
    let db = signed_db("signed_wrong_key");
    for (kid, secret) in [("k1", &K2), ("k9", &K1)] {
        let err = TenantPool::builder(db.app_url(), &two_companies::REGISTRY, key(kid, secret))
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, TenantError::ContextKey(m)
                if m.contains(&format!("does not accept this service's tokens (key {kid})"))
                    && m.contains("context-key rotate")),
            "{err}"
        );
    }
    // The right key starts.
    assert!(
        TenantPool::builder(db.app_url(), &two_companies::REGISTRY, key("k1", &K1))
            .build()
            .is_ok()
    );
}

/// A pool that sets the token the way session 2 did: as plain text in the BEGIN message.
struct TokenInText {
    url: String,
}

impl tenant_probe::PoolUnderTest for TokenInText {
    fn query_in_org(&self, _: uuid::Uuid, _: &str) -> Result<String, String> {
        Err("not used".into())
    }

    fn hold_in_org(&self, org: uuid::Uuid, during: &mut dyn FnMut()) -> Result<(), String> {
        let mut conn = PgConnection::establish(&self.url).map_err(|e| e.to_string())?;
        let backend = Backend::read(&mut conn).map_err(|e| e.to_string())?;
        let token = key("k1", &K1).token(org.try_into().unwrap(), backend.pid());
        conn.batch_execute(&format!(
            "BEGIN; SELECT set_config('tenant.org_token', '{token}', true)"
        ))
        .map_err(|e| e.to_string())?;
        during();
        conn.batch_execute("ROLLBACK").map_err(|e| e.to_string())
    }
}

#[test]
fn the_probe_reports_a_token_left_readable_in_pg_stat_activity_as_a_leak() {
    let _turn = statement_text_turn();
    let db = signed_db("signed_token_text");
    let url = db.app_url();
    let naive = TokenInText { url: url.clone() };
    let mut options = ProbeOptions::new(&url, &two_companies::REGISTRY, key("k1", &K1));
    options.progress = false;
    options.pool = Some(&naive);
    let report = tenant_probe::run(&options).unwrap();
    let token = report
        .results
        .iter()
        .find(|r| r.attack == "token_in_activity")
        .unwrap();
    assert_eq!(token.verdict, Verdict::Leak, "{token:?}");
    assert!(token.note.contains("can be replayed"), "{}", token.note);
}
