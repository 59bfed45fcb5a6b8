//! The README's quickstart, compiled: every code line of its block stands here verbatim, inside
//! the scaffolding a real crate would have (the tables, the row type, a function around the
//! service's lines); `xtask/tests/tidy.rs` checks that the two agree.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    missing_docs
)]

use diesel::prelude::*;
use tenant_core::context::ContextKey;
use tenant_core::{OrgId, TenantPool};

/// The service's diesel schema.
mod schema {
    diesel::table! { currencies (code) { code -> Text } }
    diesel::table! { customers (org_id, id) { org_id -> Uuid, id -> Uuid, name -> Text } }
    diesel::table! {
        invoices (org_id, id) { org_id -> Uuid, id -> Uuid, paid_on -> Nullable<Date> }
    }
}
use schema::{currencies, customers, invoices};

/// A row the service reads.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = invoices)]
struct Invoice {
    org_id: uuid::Uuid,
    id: uuid::Uuid,
    paid_on: Option<chrono::NaiveDate>,
}

// 1.
tenant_lint::registry! {
    pub static REGISTRY;
    global currencies;
    tenant customers => org_id;
    tenant invoices => org_id;
}

// 2. (the xtask's main; here beside the test harness's)
#[rustfmt::skip]
fn main() -> std::process::ExitCode {
    tenant_cli::run(&tenant_cli::Service::new(&REGISTRY, "migrations"), std::env::args_os())
}

// 3. (kept as the README writes it)
#[rustfmt::skip]
fn service(app_url: &str, org: OrgId) -> Result<Vec<Invoice>, Box<dyn std::error::Error>> {
    let key = ContextKey::require_env("TENANT_CONTEXT_KEY")?; // kid:hex
    let pool = TenantPool::builder(app_url, &REGISTRY, key).build()?; // refuses an unsafe role
    let overdue: Vec<Invoice> = pool.with_org(org, |s| {
        s.load(s.query(invoices::table).filter(invoices::paid_on.is_null()).select(Invoice::as_select()))
    })?;
    Ok(overdue)
}

#[test]
fn the_readme_quickstart_compiles_and_its_registry_is_what_it_says() {
    let tables: Vec<(&str, bool)> = REGISTRY.tables().map(|t| (t.name, t.is_tenant())).collect();
    assert_eq!(
        tables,
        [
            ("currencies", false),
            ("customers", true),
            ("invoices", true)
        ]
    );
}
