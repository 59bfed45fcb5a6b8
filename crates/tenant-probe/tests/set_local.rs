//! The SET LOCAL context mode with the inline policy form, what the Citus target uses, on plain
//! PostgreSQL (the same on a real cluster: `tests/citus.rs`).

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use diesel::connection::{Connection, InstrumentationEvent};
use diesel::prelude::*;
use tenant_core::{OrgContext, OrgId, OrgScoped, TenantError, TenantPool};
use tenant_testkit::{TestDb, roles};
use two_companies::schema::{customers, orgs};

/// The story's schema with the policies in the inline form (no sub-select), in the plain
/// mode Citus needs (the signed verifier does not run on its workers).
fn inline_db(hint: &str) -> TestDb {
    let options = tenant_schema::RlsOptions {
        policy_form: tenant_schema::PolicyForm::Inline,
        context: tenant_schema::ContextMode::TrustEveryStatement,
        ..tenant_schema::RlsOptions::default()
    };
    common::story_with(hint, &options)
}

#[test]
fn set_local_scoped_transactions_isolate_orgs_under_inline_policies() {
    let db = inline_db("set_local");
    let pool = TenantPool::builder(
        db.app_url(),
        &two_companies::REGISTRY,
        OrgContext::TrustEveryStatement,
    )
    .max_size(2)
    .set_local_context()
    .build()
    .unwrap();
    let orgs_: Vec<OrgId> = (0..3).map(|_| OrgId::new_random()).collect();
    for (i, &org) in orgs_.iter().enumerate() {
        pool.with_org(org, |s| {
            s.execute(s.insert(orgs::table, orgs::name.eq(format!("org {i}"))))?;
            for n in 0..=i {
                s.execute(s.insert(
                    customers::table,
                    (
                        customers::name.eq(format!("c{n}")),
                        customers::email.eq(format!("{i}.{n}@x")),
                    ),
                ))?;
            }
            Ok::<_, TenantError>(())
        })
        .unwrap();
    }
    for (i, &org) in orgs_.iter().enumerate() {
        let seen: Vec<uuid::Uuid> = pool
            .with_org(org, |s| {
                s.load(s.query(customers::table).select(customers::org_id))
            })
            .unwrap();
        assert_eq!(seen.len(), i + 1);
        assert!(seen.iter().all(|o| *o == org.as_uuid()));
    }
    // The opening message uses SET LOCAL with the literal, and still one message.
    let mut app = db.connect_as(roles::APP);
    let sent = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&sent);
    app.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            sink.lock().unwrap().push(query.to_string());
        }
    });
    let s = OrgScoped::begin_set_local(&mut app, orgs_[0], &two_companies::REGISTRY).unwrap();
    s.commit().unwrap();
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent[0].ends_with(&format!(
            "DO $$BEGIN SET LOCAL tenant.org_id = '{}'; END$$",
            orgs_[0]
        )),
        "{}",
        sent[0]
    );
}

#[test]
fn the_probe_finds_no_leak_under_inline_policies() {
    let db = inline_db("set_local_probe");
    let url = db.app_url();
    let mut options = tenant_probe::ProbeOptions::new(
        &url,
        &two_companies::REGISTRY,
        OrgContext::TrustEveryStatement,
    );
    options.progress = false;
    let report = tenant_probe::run(&options).unwrap();
    let s = report.summary();
    assert_eq!((s.leak, s.not_run), (0, 0), "{}", report.markdown());
    // The audit knows the inline form as generated: every policy, every function.
    let mut reader =
        tenant_core::admin::CatalogReader::connect(&url, "test: audit of the inline form").unwrap();
    let audit = tenant_schema::audit::audit(
        &mut reader,
        &two_companies::REGISTRY,
        &tenant_schema::audit::AuditOptions::default(),
    )
    .unwrap();
    let changed: Vec<_> = audit
        .findings
        .iter()
        .filter(|f| f.rule == "generated-object-changed")
        .collect();
    assert!(changed.is_empty(), "{changed:#?}");
    // ... and reports what the plain mode gives up, table by table.
    let trusting: Vec<&str> = audit
        .findings
        .iter()
        .filter(|f| f.rule == "org-context-trusts-every-statement")
        .map(|f| f.object.as_str())
        .collect();
    assert_eq!(
        trusting,
        ["customers", "deals", "invoices", "orgs", "proposals"]
    );
}
