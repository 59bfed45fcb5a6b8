//! The runtime of tenant-safe: [`OrgId`], [`TenantPool`] and [`OrgScoped`].
//!
//! A tenant row is only reachable through an [`OrgScoped`] handle: a transaction in which the
//! session's org is set (transaction-locally, in the same round trip as `BEGIN`), whose query
//! DSL adds the org filter to every statement. Row-level security in the database, generated
//! by `tenant-schema`, refuses cross-org rows even where the application layer is bypassed.
//!
//! ```no_run
//! # diesel::table! { invoices (id) { id -> Uuid, org_id -> Uuid, status -> Text } }
//! # tenant_lint::registry! { pub static REGISTRY; tenant invoices => org_id; }
//! use diesel::prelude::*;
//! use tenant_core::{OrgId, TenantPool, TenantError};
//!
//! let pool = TenantPool::builder("postgres://tenant_app@localhost/app", &REGISTRY).build()?;
//! let org: OrgId = "0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e".parse()?;
//! let overdue = pool.with_org(org, |s| {
//!     s.load::<uuid::Uuid, _>(
//!         s.query(invoices::table)
//!             .filter(invoices::status.eq("overdue"))
//!             .select(invoices::id),
//!     )
//! })?;
//! # Ok::<(), TenantError>(())
//! ```
//!
//! Only this crate touches a raw database connection (DESIGN.md invariant 1).

pub mod admin;
mod dsl;
mod error;
mod org_id;
mod pool;
mod scoped;
mod verify;

pub use dsl::{
    JoinRhs, OnWithOrg, OrFilterWidensScope, OrgPredicate, ScopedDelete, ScopedDeleteSource,
    ScopedInsert, ScopedQuery, ScopedSelect, ScopedSource, ScopedUpdate, ScopedUpdateSource,
    ScopedWrite,
};
pub use error::{DbError, TenantError};
pub use org_id::{OrgId, OrgIdError};
pub use pool::{
    ManagerError, TenantConnectionManager, TenantPool, TenantPoolBuilder, UnsafeConfig,
};
pub use scoped::{OrgScoped, Pooled, ScopedConnection};
pub use tenant_lint::{GlobalTable, Registry, TenantTable};
pub use tenant_sqlcheck::Violation;

/// The session setting that carries the org id (DESIGN.md conventions).
pub const ORG_SETTING: &str = "tenant.org_id";
