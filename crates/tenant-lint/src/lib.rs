//! The compile-time layer of tenant-safe.
//!
//! This crate holds the **one registry** of tenant tables (and of explicitly global tables)
//! that drives everything else: the scoped query DSL of `tenant-core` only accepts tables
//! registered here, the role checks of `TenantPool` walk it, and `tenant-schema` generates
//! the row-level-security migration from it.
//!
//! Register every table of your `schema.rs` once, next to the diesel `table!` definitions:
//!
//! ```
//! diesel::table! { invoices (id) { id -> Uuid, org_id -> Uuid, total_cents -> BigInt } }
//! diesel::table! { currencies (code) { code -> Text } }
//!
//! tenant_lint::registry! {
//!     /// Every table of this service, tenant or global.
//!     pub static REGISTRY;
//!     tenant invoices => org_id;
//!     global currencies;
//! }
//!
//! assert_eq!(REGISTRY.tenant_tables().count(), 1);
//! assert_eq!(REGISTRY.get("invoices").and_then(|t| t.org_column()), Some("org_id"));
//! ```
//!
//! A table that is not registered cannot be scoped, and the compiler says how to fix it
//! (see `tests/compile-fail/`).

mod registry;

pub use registry::{
    FunctionEntry, Global, GlobalTable, NoSuchOrgColumn, OrgColumnOf, RegisteredTable, Registry,
    TableEntry, TableKind, Tenant, TenantTable, str_eq,
};
