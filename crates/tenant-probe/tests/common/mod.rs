//! Shared setup: the story's database as its migrations make it (the default signed mode,
//! with the test key), or with its protection generated from other options (the opt-in plain
//! mode, the inline policy form, a key of another id).

#![allow(dead_code, clippy::unwrap_used)]

use diesel::connection::SimpleConnection;
use tenant_testkit::TestDb;

/// The story's migrations (the default signed mode) and the test key.
pub fn story(hint: &str) -> TestDb {
    let db = TestDb::new(hint);
    two_companies::migrate(&db.admin_url()).unwrap();
    db.add_test_context_key();
    db
}

/// The test key (the one [`story`] adds).
pub fn test_key() -> tenant_core::context::ContextKey {
    tenant_core::context::ContextKey::parse(tenant_testkit::TEST_CONTEXT_KEY).unwrap()
}

/// The story's schema protected in the opt-in plain mode, which trusts every statement.
pub fn plain_story(hint: &str) -> TestDb {
    story_with(
        hint,
        &tenant_schema::RlsOptions {
            context: tenant_schema::ContextMode::TrustEveryStatement,
            ..tenant_schema::RlsOptions::default()
        },
    )
}

/// A database with the story's tables and the protection `options` generate.
pub fn story_with(hint: &str, options: &tenant_schema::RlsOptions) -> TestDb {
    let db = TestDb::new(hint);
    let mut admin = db.admin();
    for sql in two_companies::SCHEMA_SQL {
        admin.batch_execute(sql).unwrap();
    }
    admin
        .batch_execute(&tenant_schema::generate(&two_companies::REGISTRY, options).up)
        .unwrap();
    db
}

/// The key the signed-mode databases hold as `k1`.
pub const K1: [u8; 32] = [0x42; 32];
/// A second key (rotation, wrong secrets).
pub const K2: [u8; 32] = [0x17; 32];

/// The story's schema with the policies generated in the signed mode, and key k1.
pub fn signed_db(hint: &str) -> TestDb {
    let db = story_with(hint, &tenant_schema::RlsOptions::default());
    db.admin()
        .batch_execute(&format!(
            "SELECT tenant_context.add_key('k1', '\\x{}')",
            tenant_core::context::to_hex(&K1)
        ))
        .unwrap();
    db
}

/// Context key `kid` with secret `bytes`.
pub fn key(kid: &str, bytes: &[u8]) -> tenant_core::context::ContextKey {
    tenant_core::context::ContextKey::new(kid, bytes).unwrap()
}

/// The probe at `url` (the application role) with key k1, and the application's `pool` if
/// given, which must find no leak, no finding, and run every attack.
pub fn signed_probe_finds_nothing(
    url: &str,
    pool: Option<&dyn tenant_probe::PoolUnderTest>,
) -> tenant_probe::Report {
    let mut options =
        tenant_probe::ProbeOptions::new(url, &two_companies::REGISTRY, key("k1", &K1));
    options.progress = false;
    options.pool = pool;
    let report = tenant_probe::run(&options).unwrap();
    let s = report.summary();
    assert_eq!(
        (s.leak, s.finding, s.not_run),
        (0, 0, 0),
        "{}",
        report.markdown()
    );
    report
}
