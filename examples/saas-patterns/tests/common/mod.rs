//! What the pattern tests share: a database of their own with the patterns' migrations and the
//! test context key, a pool as the application role, and counts taken from outside row-level
//! security.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod corpus;
pub mod plan;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use tenant_core::context::ContextKey;
use tenant_core::{OrgId, TenantPool};
use tenant_testkit::TestDb;

/// A fresh database named after `hint` with the patterns' migrations (the generated protection
/// in its default, signed mode) and the test key.
pub fn database(hint: &str) -> TestDb {
    let db = TestDb::new(hint);
    saas_patterns::migrate(&db.admin_url()).expect("the patterns' migrations");
    db.add_test_context_key();
    db
}

/// The test key as the service holds it.
pub fn key() -> ContextKey {
    ContextKey::parse(tenant_testkit::TEST_CONTEXT_KEY).unwrap()
}

/// A pool of `size` connections as the application role; it refuses to start if the role
/// could reach around row-level security.
pub fn pool(db: &TestDb, size: u32) -> TenantPool {
    TenantPool::builder(db.app_url(), &saas_patterns::REGISTRY, key())
        .max_size(size)
        .build()
        .unwrap()
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// How many rows of `table` belong to `org`, counted by the admin role, which row-level
/// security does not restrict: the proof does not rely on what it checks.
pub fn rows_of(admin: &mut PgConnection, table: &str, org: OrgId) -> i64 {
    let column = if table == "orgs" { "id" } else { "org_id" };
    diesel::sql_query(format!(
        "SELECT count(*) AS n FROM {table} WHERE {column} = $1"
    ))
    .bind::<SqlUuid, _>(org.as_uuid())
    .get_result::<Count>(admin)
    .unwrap()
    .n
}

/// Every tenant table of the patterns, parents first.
pub const TENANT_TABLES: [&str; 7] = [
    "orgs",
    "members",
    "activity",
    "invoices",
    "documents",
    "document_words",
    "document_attributes",
];

/// The number of rows of every tenant table, all orgs, in [`TENANT_TABLES`] order, by the admin.
pub fn all_rows(admin: &mut PgConnection) -> Vec<i64> {
    TENANT_TABLES
        .iter()
        .map(|t| {
            diesel::sql_query(format!("SELECT count(*) AS n FROM {t}"))
                .get_result::<Count>(admin)
                .unwrap()
                .n
        })
        .collect()
}

/// `ANALYZE` as the admin (the application role owns nothing to analyze): what autovacuum does
/// after a bulk load, done now so that the planner's choice does not depend on its timing.
pub fn analyze(admin: &mut PgConnection) {
    use diesel::connection::SimpleConnection;
    admin.batch_execute("ANALYZE").unwrap();
}
