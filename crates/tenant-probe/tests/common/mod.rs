//! Shared setup: the story's database as its migrations make it (the default signed mode,
//! with the test key), or with its protection generated from other options (the opt-in plain
//! mode, the inline policy form, a key of another id).

#![allow(dead_code, unused_imports, clippy::unwrap_used)]

use diesel::connection::SimpleConnection;
use tenant_testkit::TestDb;

pub use tenant_testkit::story::{
    plain as plain_story, signed as story, test_key, with as story_with,
};

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
