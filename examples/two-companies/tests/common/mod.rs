//! The story's database in either context mode, a pool of one connection as the application
//! role, and an org with rows: what the attack suites share.

#![allow(dead_code, clippy::unwrap_used)]

use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool, TenantPoolBuilder};
use tenant_testkit::TestDb;
use two_companies::schema::{customers, deals, orgs};

/// One context mode of the database and the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The opt-in plain mode: `tenant.org_id` set by the opening, and any SQL could change it.
    Setting,
    /// The default: a token signed by the service and verified by the database.
    Signed,
}

/// A database named after `hint` with the story's schema protected in `mode`, and a builder
/// for a pool of one connection as the application role (signing with the test key in the
/// signed mode, the story's migrations as they are).
pub fn database(mode: Mode, hint: &str) -> (TestDb, TenantPoolBuilder) {
    let name = format!("{hint}_{}", mode.suffix());
    let (db, builder) = match mode {
        Mode::Setting => {
            let db = tenant_testkit::story::plain(&name);
            let builder = TenantPool::builder(
                db.app_url(),
                &two_companies::REGISTRY,
                tenant_core::OrgContext::TrustEveryStatement,
            );
            (db, builder)
        }
        Mode::Signed => {
            let db = tenant_testkit::story::signed(&name);
            let builder = TenantPool::builder(db.app_url(), &two_companies::REGISTRY, key());
            (db, builder)
        }
    };
    (db, builder.max_size(1))
}

/// The test key, which the signed databases hold.
pub fn key() -> tenant_core::context::ContextKey {
    tenant_testkit::story::test_key()
}

impl Mode {
    fn suffix(self) -> &'static str {
        match self {
            Mode::Setting => "setting",
            Mode::Signed => "signed",
        }
    }
}

/// A new org named `name` with one customer `customer` and one open deal; returns the org and
/// the customer's id.
pub fn org(pool: &TenantPool, name: &str, customer: &str) -> (OrgId, uuid::Uuid) {
    let org = OrgId::new_random();
    let id = uuid::Uuid::now_v7();
    pool.with_org(org, |s| {
        s.execute(s.insert(orgs::table, orgs::name.eq(name)))?;
        s.execute(s.insert(
            customers::table,
            (
                customers::id.eq(id),
                customers::name.eq(customer),
                customers::email.eq(format!("{customer}@example.com")),
            ),
        ))?;
        s.execute(s.insert(
            deals::table,
            (
                deals::customer_id.eq(id),
                deals::title.eq(format!("{name} secret deal")),
                deals::amount_cents.eq(100_000),
                deals::currency.eq("EUR"),
                deals::stage.eq("open"),
            ),
        ))
    })
    .unwrap();
    (org, id)
}
