//! Shared setup: a migrated database of its own and a pool as the application role.

#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};
use tenant_core::{OrgContext, OrgId, OrgScoped, ScopedConnection, TenantPool};
use tenant_testkit::TestDb;
use two_companies::schema::{customers, orgs};
use uuid::Uuid;

pub use tenant_testkit::story::{plain as plain_story, signed as story, test_key as key};

/// A migrated database and a pool of at most `max` connections as tenant_app, signing with
/// the test key.
pub fn setup(hint: &str, max: u32) -> (TestDb, TenantPool) {
    let db = story(hint);
    let pool = TenantPool::builder(db.app_url(), &two_companies::REGISTRY, key())
        .max_size(max)
        .build()
        .expect("pool as tenant_app");
    (db, pool)
}

/// [`setup`] in the plain mode ([`plain_story`], `OrgContext::TrustEveryStatement`).
pub fn setup_plain(hint: &str, max: u32) -> (TestDb, TenantPool) {
    let db = plain_story(hint);
    let pool = TenantPool::builder(
        db.app_url(),
        &two_companies::REGISTRY,
        OrgContext::TrustEveryStatement,
    )
    .max_size(max)
    .build()
    .expect("pool as tenant_app");
    (db, pool)
}

/// Creates an org with one customer named `customer`; returns the org and the customer id.
pub fn org_with_customer(pool: &TenantPool, name: &str, customer: &str) -> (OrgId, Uuid) {
    let org = OrgId::new_random();
    let customer_id = Uuid::now_v7();
    pool.with_org(org, |s| {
        s.execute(s.insert(orgs::table, orgs::name.eq(name)))?;
        s.execute(s.insert(
            customers::table,
            (
                customers::id.eq(customer_id),
                customers::name.eq(customer),
                customers::email.eq(format!("{customer}@example.com")),
            ),
        ))
    })
    .unwrap();
    (org, customer_id)
}

/// The backend pid of the connection under a scoped handle.
/// (`pg_backend_pid()` reads session state, which the checker refuses in scoped statements.)
pub fn backend_pid<C: ScopedConnection>(s: &mut OrgScoped<C>) -> i32 {
    diesel::select(diesel::dsl::sql::<Integer>("pg_backend_pid()"))
        .get_result(s.raw_connection_unchecked("test: which backend serves this handle"))
        .unwrap()
}

/// The org setting of a raw session: `None` when unset (NULL), else its text ('' after a
/// transaction-local set ended).
pub fn raw_setting(conn: &mut PgConnection) -> Option<String> {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Nullable<Text>>(
        "current_setting('tenant.org_id', true)",
    ))
    .get_result(conn)
    .unwrap()
}

/// Opens a transaction on a raw application-role connection with `org` set as the service
/// sets it in the default mode: a token signed with the test key for this backend.
pub fn begin_raw(conn: &mut PgConnection, org: OrgId) {
    let pid: i32 = diesel::select(diesel::dsl::sql::<Integer>("pg_backend_pid()"))
        .get_result(conn)
        .unwrap();
    conn.batch_execute(&format!(
        "BEGIN; SELECT set_config('{}', '{}', true)",
        tenant_core::context::TOKEN_SETTING,
        key().token(org, pid)
    ))
    .unwrap();
}

/// The org the database verifies for this session (the signed context's), `None` without a
/// valid token.
pub fn verified_org(conn: &mut PgConnection) -> Option<String> {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Nullable<Text>>(
        "tenant_context.verified_org()::text",
    ))
    .get_result(conn)
    .unwrap()
}

/// The values of a new customer `name` (`name@example.com`), for a scoped insert.
pub fn customer(
    name: &str,
) -> (
    diesel::dsl::Eq<customers::name, String>,
    diesel::dsl::Eq<customers::email, String>,
) {
    (
        customers::name.eq(name.to_owned()),
        customers::email.eq(format!("{name}@example.com")),
    )
}

/// How many customers named `name` are committed, counted by the admin (no RLS).
pub fn committed(db: &TestDb, name: &str) -> i64 {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
        "(SELECT count(*) FROM customers WHERE name = '{name}')"
    )))
    .get_result(&mut db.admin())
    .unwrap()
}
