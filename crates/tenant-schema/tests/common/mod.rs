//! The audit tests' set-up: the story's database, an audit of it, the findings of one rule.

#![allow(dead_code, clippy::unwrap_used)]

use diesel::connection::SimpleConnection;
use tenant_core::admin::CatalogReader;
use tenant_schema::audit::{AuditOptions, Finding, Report, Severity, audit};
use tenant_testkit::{TestDb, roles};

pub fn migrated(hint: &str) -> TestDb {
    let db = TestDb::new(hint);
    two_companies::migrate(&db.admin_url()).unwrap();
    db
}

pub fn run_as(db: &TestDb, role: &str, options: &AuditOptions) -> Report {
    let mut reader = CatalogReader::connect(&db.url_as(role), "test: audit").unwrap();
    audit(&mut reader, &two_companies::REGISTRY, options).unwrap()
}

pub fn run(db: &TestDb) -> Report {
    run_as(db, roles::APP, &AuditOptions::default())
}

/// Builds the bad configuration with the admin role, audits, returns the findings of `rule`.
pub fn findings_after(hint: &str, setup: &str, rule: &str) -> Vec<Finding> {
    let db = migrated(hint);
    db.admin().batch_execute(setup).unwrap();
    run(&db)
        .findings
        .into_iter()
        .filter(|f| f.rule == rule)
        .collect()
}

pub fn objects(findings: &[Finding]) -> Vec<(&str, Severity)> {
    findings
        .iter()
        .map(|f| (f.object.as_str(), f.severity))
        .collect()
}
