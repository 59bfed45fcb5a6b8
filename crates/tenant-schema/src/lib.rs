//! The database layer of tenant-safe: generates the row-level-security migration for every
//! table of a [`Registry`](tenant_lint::Registry).
//!
//! ```
//! diesel::table! { invoices (id) { id -> Uuid, org_id -> Uuid } }
//! tenant_lint::registry! { pub static REGISTRY; tenant invoices => org_id; }
//!
//! let migration = tenant_schema::generate(&REGISTRY, &tenant_schema::RlsOptions::default());
//! assert!(migration.up.contains("ALTER TABLE \"invoices\" FORCE ROW LEVEL SECURITY;"));
//! assert!(migration.up.contains("AS RESTRICTIVE"));
//! assert!(!migration.up.contains("TRUNCATE"));
//! ```
//!
//! [`audit`] reads a live database's catalog (through a read-only, catalog-only
//! `tenant_core::admin::CatalogReader`) and reports every configuration that would let rows
//! cross orgs.
//!
//! The generated SQL targets PostgreSQL 15 and newer; the policy expression and every DDL
//! statement are written in [`pg`], so another target is one module.

pub mod audit;
pub mod evidence;
pub mod pg;

pub use pg::{
    Fragment, MANIFEST_FILE, Migration, RlsOptions, assemble, fragments, generate, incremental,
    manifest, read_manifest,
};
