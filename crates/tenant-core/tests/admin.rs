//! The admin path for global tables: writes them with its own role, refuses tenant tables.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use diesel::prelude::*;
use tenant_core::admin::GlobalWriter;
use tenant_core::{TenantError, Violation};
use tenant_testkit::{roles, try_sql};
use two_companies::schema::{currencies, invoices};

#[test]
fn the_admin_path_writes_a_global_table_that_scoped_sessions_then_read() {
    let (db, pool) = common::setup("admin_global", 1);
    let (a, _) = common::org_with_customer(&pool, "A", "alice");
    let mut writer = GlobalWriter::connect(
        &db.admin_url(),
        &two_companies::REGISTRY,
        "test: add a currency",
    )
    .unwrap();
    assert_eq!(writer.reason(), "test: add a currency");
    let n = writer
        .execute(currencies::table, |t| {
            diesel::insert_into(t).values((
                currencies::code.eq("CHF"),
                currencies::name.eq("Swiss franc"),
            ))
        })
        .unwrap();
    assert_eq!(n, 1);
    let name: String = pool
        .with_org(a, |s| {
            s.get_result(
                s.read_global(currencies::table)
                    .filter(currencies::code.eq("CHF"))
                    .select(currencies::name),
            )
        })
        .unwrap();
    assert_eq!(name, "Swiss franc");
}

#[test]
fn the_admin_path_refuses_a_statement_that_touches_a_tenant_table() {
    let (db, _pool) = common::setup("admin_refuse", 1);
    let mut writer =
        GlobalWriter::connect(&db.admin_url(), &two_companies::REGISTRY, "test: refusal").unwrap();
    // Copying tenant data into a global table.
    let err = writer
        .execute(currencies::table, |t| {
            diesel::insert_into(t).values((
                currencies::code.eq("XXX"),
                currencies::name.eq(invoices::table
                    .select(invoices::number)
                    .limit(1)
                    .single_value()
                    .assume_not_null()),
            ))
        })
        .unwrap_err();
    assert!(
        matches!(&err, TenantError::Unscoped(Violation::MissingOrgPredicate { table }) if table == "invoices"),
        "{err:?}"
    );
    // Writing a tenant table through it.
    let err = writer
        .execute(currencies::table, |_| diesel::delete(invoices::table))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            TenantError::Unscoped(Violation::MissingOrgPredicate { .. })
        ),
        "{err:?}"
    );
}

#[test]
fn the_application_role_cannot_write_a_global_table() {
    let (db, _pool) = common::setup("admin_app_ro", 1);
    db.install_sqlstate_probe();
    let mut app = db.connect_as(roles::APP);
    assert_eq!(
        try_sql(
            &mut app,
            "INSERT INTO currencies (code, name) VALUES ('XXX', 'x')"
        ),
        "42501 permission denied for table currencies"
    );
}

#[test]
fn the_probe_sessions_token_never_shows_in_the_text_other_sessions_read() {
    let db = common::story("admin_probe_token");
    let mut probe =
        tenant_core::admin::ProbeSession::connect(&db.app_url(), "test: the probe's token", 5000)
            .unwrap();
    probe.sign_with(common::key());
    let org = tenant_core::OrgId::new_random();
    assert!(matches!(
        probe.set_org(Some(org)).unwrap(),
        tenant_core::admin::ProbeOutcome::Ran { .. }
    ));
    // What another session of the role reads while the probe's transaction is open: the text
    // of its last statements (before, the one that set the token, with the token in it).
    let seen: Vec<String> = diesel::sql_query(
        "SELECT query AS text FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .load::<Text>(&mut db.connect_as(roles::APP))
    .unwrap()
    .into_iter()
    .map(|t| t.text)
    .collect();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|q| !q.contains("v1.")), "{seen:#?}");
    // And the org is set: the token verifies.
    assert!(matches!(
        probe
            .try_sql(
                "SELECT 1 FROM tenant_context.current_org WHERE org IS NOT NULL",
                true
            )
            .unwrap(),
        tenant_core::admin::ProbeOutcome::Ran { rows: 1, .. }
    ));
}

#[derive(QueryableByName)]
struct Text {
    #[diesel(sql_type = diesel::sql_types::Text)]
    text: String,
}
