//! The example's database (the two-companies story) in either org context mode, with the
//! test key where it signs: what the test suites of several crates start from (feature
//! `story`).

use diesel::connection::SimpleConnection;
use tenant_core::context::ContextKey;

use crate::{TEST_CONTEXT_KEY, TestDb};

/// The test key as a service holds it (the one [`signed`] adds to the database).
///
/// # Panics
/// Never: the test key is a valid key (a unit test of the testkit parses it).
pub fn test_key() -> ContextKey {
    ContextKey::parse(TEST_CONTEXT_KEY).expect("the test key parses")
}

/// The story's migrations as they are (the default signed mode) and the test key.
///
/// # Panics
/// When a migration fails.
pub fn signed(hint: &str) -> TestDb {
    let db = TestDb::new(hint);
    two_companies::migrate(&db.admin_url()).expect("the story's migrations");
    db.add_test_context_key();
    db
}

/// The story's schema with the protection `options` generate (another context mode, the
/// inline policy form, other names), and no key.
///
/// # Panics
/// When the schema or the generated migration does not apply.
pub fn with(hint: &str, options: &tenant_schema::RlsOptions) -> TestDb {
    let db = TestDb::new(hint);
    let mut admin = db.admin();
    for sql in two_companies::SCHEMA_SQL {
        admin.batch_execute(sql).expect("the story's schema");
    }
    admin
        .batch_execute(&tenant_schema::generate(&two_companies::REGISTRY, options).up)
        .expect("the generated protection");
    db
}

/// The story's schema protected in the opt-in plain mode, which trusts every statement
/// (`ContextMode::TrustEveryStatement`).
///
/// # Panics
/// As [`with`].
pub fn plain(hint: &str) -> TestDb {
    with(
        hint,
        &tenant_schema::RlsOptions {
            context: tenant_schema::ContextMode::TrustEveryStatement,
            ..tenant_schema::RlsOptions::default()
        },
    )
}

/// The options of the story on Citus: the plain context (the only one Citus takes).
pub fn citus_options() -> tenant_schema::RlsOptions {
    tenant_schema::RlsOptions {
        context: tenant_schema::ContextMode::TrustEveryStatement,
        ..tenant_schema::RlsOptions::default()
    }
}

/// The story's schema on a fresh database of the Citus cluster (`TENANT_CITUS_URL`), with the
/// generated Citus migration applied in one transaction, as diesel applies a migration.
///
/// # Panics
/// When the schema or the generated migration does not apply.
pub fn citus(hint: &str) -> crate::citus::CitusDb {
    use diesel::Connection as _;
    let db = crate::citus::CitusDb::new(hint);
    let mut admin = db.admin();
    for sql in two_companies::SCHEMA_SQL {
        admin.batch_execute(sql).expect("the story's schema");
    }
    let migration = tenant_schema::citus::generate(&two_companies::REGISTRY, &citus_options())
        .expect("the Citus migration");
    // The migrations of two databases change the same roles on every node.
    let _one = crate::citus::one_setup_at_a_time();
    admin
        .transaction(|c| c.batch_execute(&migration.up))
        .expect("the generated Citus migration");
    db
}

/// The cluster audit (`tenant_schema::audit::cluster`) of `db`, as the application role, with
/// the story's Citus options.
///
/// # Panics
/// When the coordinator's catalog cannot be read.
pub fn audit_cluster(db: &crate::citus::CitusDb) -> tenant_schema::audit::Report {
    let mut reader =
        tenant_core::admin::CatalogReader::connect(&db.app_url(), "test: cluster audit")
            .expect("a catalog reader on the coordinator");
    tenant_schema::audit::cluster::audit_cluster(
        &mut reader,
        &db.app_url(),
        &two_companies::REGISTRY,
        &tenant_schema::audit::AuditOptions {
            rls: citus_options(),
            ..tenant_schema::audit::AuditOptions::default()
        },
    )
    .expect("the cluster audit")
}
