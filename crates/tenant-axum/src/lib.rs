//! axum integration of tenant-safe: [`TenantLayer`] resolves each request's org (an
//! [`OrgResolver`]: a header, a JWT claim, a subdomain, or your own), and the extractors give
//! handlers the scoped handle of that org on the async pool ([`Scoped`]) or a way to run a
//! transaction in it ([`Tenant`]). Errors become HTTP responses whose bodies carry a class and
//! a fixed sentence, never row data, SQL or the database's message ([`ApiError`]).
//!
//! ```no_run
//! # diesel::table! { invoices (id) { id -> Uuid, org_id -> Uuid, total_cents -> BigInt } }
//! # tenant_lint::registry! { pub static REGISTRY; tenant invoices => org_id; }
//! use axum::{Router, routing::get};
//! use tenant_axum::{ApiError, HeaderOrg, Tenant, TenantLayer};
//! use tenant_core::TenantPool;
//!
//! async fn totals(tenant: Tenant) -> Result<String, ApiError> {
//!     let totals: Vec<i64> = tenant
//!         .run(async |s| s.load(s.query(invoices::table).select(invoices::total_cents)).await)
//!         .await?;
//!     Ok(format!("{totals:?}"))
//! }
//!
//! # async fn app() -> Result<Router, tenant_core::TenantError> {
//! let key = tenant_core::ContextKey::require_env("TENANT_CONTEXT_KEY")?;
//! let pool = TenantPool::builder("postgres://tenant_app@localhost/app", &REGISTRY, key)
//!     .build_async()
//!     .await?;
//! let app = Router::new()
//!     .route("/totals", get(totals))
//!     .layer(TenantLayer::new(pool, HeaderOrg::new("x-org-id")));
//! # Ok(app) }
//! ```
//!
//! Invariant: a handler behind the layer reaches the database only through its request's
//! org: the extractors read the org the layer resolved, never anything of the request, and a
//! request whose org does not resolve never reaches the handler.

mod error;
mod extract;
mod header;
mod jwt;
mod layer;
mod resolve;
mod subdomain;

/// The JWT crate [`JwtClaimOrg`] verifies with, for its key and validation types.
pub use jsonwebtoken;

pub use error::ApiError;
pub use extract::{RequestOrg, Scoped, Tenant};
pub use header::HeaderOrg;
pub use jwt::{JwtClaimOrg, JwtKeyError, MIN_SECRET};
pub use layer::{TenantLayer, TenantService};
pub use resolve::{OrgRejection, OrgResolver};
pub use subdomain::SubdomainOrg;
