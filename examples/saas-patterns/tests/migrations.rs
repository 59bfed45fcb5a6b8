//! The patterns' migrations as a service keeps them: the generated protection is up to date
//! with the registry (the CI step `check`), and the database they build passes the catalog
//! audit as the application role sees it, with no warning either: the term tables, their
//! composite foreign keys with `ON DELETE CASCADE` and the generated `tsv` column add nothing
//! for a reviewer to look at, and no index on a tenant table is one row-level security keeps
//! the application from using (`index-unusable-under-rls`).

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use diesel::connection::SimpleConnection;
use tenant_cli::Service;

fn service() -> Service {
    Service::new(
        &saas_patterns::REGISTRY,
        Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations"),
    )
}

#[test]
fn the_generated_migration_is_up_to_date_with_the_registry() {
    tenant_cli::migrations::check(&service()).unwrap();
}

#[test]
fn the_patterns_database_passes_the_audit_without_a_finding() {
    let db = common::database("patterns_audit");
    let report = tenant_cli::catalog::audit(&service(), &db.app_url()).unwrap();
    let findings: Vec<String> = report
        .findings
        .iter()
        .map(|f| format!("{:?} {} {}: {}", f.severity, f.rule, f.object, f.why))
        .collect();
    assert_eq!(findings, Vec::<String>::new());

    // The naive search index, for contrast: the audit names it as one the application role
    // cannot use.
    db.admin()
        .batch_execute("CREATE INDEX documents_tsv_gin ON documents USING gin (tsv)")
        .unwrap();
    let report = tenant_cli::catalog::audit(&service(), &db.app_url()).unwrap();
    let rules: Vec<(&str, &str)> = report
        .findings
        .iter()
        .map(|f| (f.rule, f.object.as_str()))
        .collect();
    assert!(
        rules
            .iter()
            .any(|(rule, object)| *rule == "index-unusable-under-rls"
                && object.contains("documents_tsv_gin")),
        "{rules:?}"
    );
}
