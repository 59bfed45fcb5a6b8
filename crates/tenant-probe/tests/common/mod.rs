//! Shared setup: the story's schema with its protection generated from other options than
//! the checked-in migrations use (the signed mode, the inline policy form).

#![allow(dead_code, clippy::unwrap_used)]

use diesel::connection::SimpleConnection;
use tenant_testkit::TestDb;

/// A database with the story's tables and the protection `options` generate.
pub fn story_with(hint: &str, options: &tenant_schema::RlsOptions) -> TestDb {
    let db = TestDb::new(hint);
    let mut admin = db.admin();
    admin
        .batch_execute(include_str!(
            "../../../../migrations/2026-11-26-000001_two_companies_schema/up.sql"
        ))
        .unwrap();
    admin
        .batch_execute(&tenant_schema::generate(&two_companies::REGISTRY, options).up)
        .unwrap();
    db
}
