//! Hostile input to tenant-schema: generator options full of quotes and statement breaks
//! become names and literals, never SQL (applied to a real server, nothing else happens);
//! a migration manifest that is empty, broken, huge or deeply nested is refused by name.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use tenant_schema::{RlsOptions, generate, read_manifest};
use tenant_testkit::TestDb;

const HOSTILE: &str = "x\"'); DROP TABLE customers; --";

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[test]
fn options_with_quotes_and_statement_breaks_become_names_and_literals_only() {
    // Roles are cluster-wide, so they keep their names; everything local to the database
    // gets the hostile text.
    let bad_setting = RlsOptions {
        setting: format!("tenant.{HOSTILE}"),
        ..RlsOptions::default()
    };
    let err = bad_setting.validate().unwrap_err();
    assert!(err.contains("is not a name set_config accepts"), "{err}");
    for (bad, says) in [
        (
            RlsOptions {
                setting: "org_id".into(),
                ..RlsOptions::default()
            },
            "prefix.name",
        ),
        (
            RlsOptions {
                policy: String::new(),
                ..RlsOptions::default()
            },
            "policy \"\"",
        ),
        (
            RlsOptions {
                audit_schema: "a".repeat(64),
                ..RlsOptions::default()
            },
            "1 to 63 bytes",
        ),
        (
            RlsOptions {
                max_window_minutes: 0,
                ..RlsOptions::default()
            },
            "max_window_minutes",
        ),
    ] {
        let err = bad.validate().unwrap_err();
        assert!(err.contains(says), "{err}");
    }
    let options = RlsOptions {
        policy: format!("iso {HOSTILE}"),
        base_policy: format!("base {HOSTILE}"),
        operator_read_policy: format!("op read {HOSTILE}"),
        operator_write_policy: format!("op write {HOSTILE}"),
        owner_lookup_policy: format!("lookup {HOSTILE}"),
        audit_schema: format!("audit {HOSTILE}"),
        ticket_pattern: format!("^{HOSTILE}$"),
        ..RlsOptions::default()
    };
    assert_eq!(options.validate(), Ok(()), "quotes in names are fine");
    let db = TestDb::new("schema_hostile");
    let mut admin = db.admin();
    admin
        .batch_execute(include_str!(
            "../../../migrations/2026-11-26-000001_two_companies_schema/up.sql"
        ))
        .unwrap();
    admin
        .batch_execute(&generate(&two_companies::REGISTRY, &options).up)
        .unwrap();
    // Every table is still there, and the names are the hostile text, verbatim.
    let tables: i64 = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public' \
         AND tablename IN ('orgs', 'customers', 'deals', 'proposals', 'invoices', 'currencies')",
    )
    .get_result::<N>(&mut admin)
    .unwrap()
    .n;
    assert_eq!(tables, 6);
    let policies: Vec<String> =
        diesel::sql_query("SELECT DISTINCT polname::text AS name FROM pg_policy ORDER BY 1")
            .load::<Name>(&mut admin)
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
    for p in [
        &options.policy,
        &options.base_policy,
        &options.operator_read_policy,
    ] {
        assert!(policies.contains(p), "{p:?} in {policies:?}");
    }
    let schema: i64 = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM pg_namespace WHERE nspname = {}",
        tenant_schema::pg::literal(&options.audit_schema)
    ))
    .get_result::<N>(&mut admin)
    .unwrap()
    .n;
    assert_eq!(schema, 1);
    // The access function compares tickets with the hostile pattern, as a literal.
    let source: String = diesel::sql_query(format!(
        "SELECT prosrc AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = {} AND proname = 'request_access'",
        tenant_schema::pg::literal(&options.audit_schema)
    ))
    .get_result::<Name>(&mut admin)
    .unwrap()
    .name;
    assert!(
        source.contains("DROP TABLE customers"),
        "the pattern is in the function's text"
    );
}

#[test]
fn a_broken_manifest_is_refused_by_name() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let huge = "x".repeat(5 << 20);
    for text in [
        "",
        "   ",
        "{",
        "null",
        "{}",
        "[1, 2]",
        deep.as_str(),
        huge.as_str(),
    ] {
        let err = read_manifest(text).unwrap_err();
        assert!(
            !err.is_empty() && err.len() < 1000,
            "{:.40?}: {err:.200}",
            text
        );
    }
}
