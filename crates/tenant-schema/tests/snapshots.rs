//! Snapshots (insta) of what people read: the generated migration and the evidence report.
//! A change to either shows up as a reviewed diff of `tests/snapshots/`.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tenant_core::admin::CatalogReader;
use tenant_schema::audit::{AuditOptions, audit};
use tenant_schema::evidence::{Provenance, render};
use tenant_schema::{RlsOptions, generate};
use tenant_testkit::TestDb;

#[test]
fn the_generated_migration_for_the_story() {
    let m = generate(&two_companies::REGISTRY, &RlsOptions::default());
    insta::assert_snapshot!("story_up_sql", m.up);
    insta::assert_snapshot!("story_down_sql", m.down);
}

/// The signed context's objects (key table, verifying view, functions), as a reviewer reads
/// them.
#[test]
fn the_shared_objects_of_the_signed_context() {
    let options = RlsOptions {
        context: tenant_schema::ContextMode::Signed,
        ..RlsOptions::default()
    };
    insta::assert_snapshot!("signed_shared_sql", tenant_schema::shared_objects(&options));
}

/// The Citus target's DDL, as a reviewer reads it (it runs on a real cluster in
/// `tests/citus.rs`).
#[test]
fn the_citus_migration_for_the_story() {
    let plain = RlsOptions {
        context: tenant_schema::ContextMode::TrustEveryStatement,
        ..RlsOptions::default()
    };
    let m = tenant_schema::citus::generate(&two_companies::REGISTRY, &plain).unwrap();
    // Citus refuses sub-queries in policies on distributed tables.
    for line in m.up.lines().map(str::trim_start) {
        if line.starts_with("USING") || line.starts_with("WITH CHECK") {
            assert!(
                !line.contains("(SELECT"),
                "a sub-select in a policy: {line}"
            );
        }
    }
    insta::assert_snapshot!("story_citus_up_sql", m.up);
}

#[test]
fn the_evidence_report_for_the_story() {
    let db = TestDb::new("snapshot_evidence");
    two_companies::migrate(&db.admin_url()).unwrap();
    let mut reader = CatalogReader::connect(&db.app_url(), "test: evidence snapshot").unwrap();
    let mut report = audit(
        &mut reader,
        &two_companies::REGISTRY,
        &AuditOptions::default(),
    )
    .unwrap();
    // What varies by machine and run is pinned; everything else is the catalog's.
    report.catalog.server.version = "PostgreSQL (version pinned for the snapshot)".into();
    report.catalog.server.version_num = 150_018;
    let provenance = Provenance {
        generated_at: "2026-11-26T00:00:00Z".into(),
        git_commit: "0000000".into(),
    };
    let evidence = render(&report, &two_companies::REGISTRY, &provenance);
    // The configuration digest covers the catalog's texts as the server prints them, which
    // differ between majors (the signed view from 16 on: `kid` for `k.kid`), so it is pinned
    // too, and the snapshot holds on every major; that the digest is stable and changes with
    // the configuration is `evidence_has_a_stable_configuration_digest_that_changes_with_the_configuration`.
    let markdown = evidence.markdown.replace(
        &evidence.configuration_digest,
        "(digest pinned for the snapshot)",
    );
    insta::assert_snapshot!("story_evidence_md", markdown);
}
