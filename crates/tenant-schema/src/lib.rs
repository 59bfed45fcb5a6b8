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
//! assert!(migration.up.lines().filter(|l| l.starts_with("GRANT")).all(|l| !l.contains("TRUNCATE")));
//! ```
//!
//! [`audit`] reads a live database's catalog (through a read-only, catalog-only
//! `tenant_core::admin::CatalogReader`) and reports every configuration that would let rows
//! cross orgs.
//!
//! The migration also sets up break-glass access for people (`tenant_operator`, the
//! append-only `tenant_audit.access_log` and the functions that gate it; see the `operator`
//! module's source).
//!
//! The generated SQL targets PostgreSQL 15 and newer; the policy expression and every DDL
//! statement are written in [`pg`], so another target is one module.

pub mod audit;
pub mod citus;
pub mod citus_powers;
pub mod context;
pub mod evidence;
mod generated;
mod operator;
mod operator_citus;
pub mod options;
pub mod pg;
pub mod session;
mod sql;
mod table;

pub use citus::PolicyForm;
pub use context::ContextMode;
pub use pg::{
    Fragment, MANIFEST_FILE, Migration, RlsOptions, assemble, fragments, generate, incremental,
    manifest, read_manifest, shared_objects, shared_refresh,
};
