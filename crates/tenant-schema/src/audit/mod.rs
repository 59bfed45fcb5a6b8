//! The catalog audit: reads a live database's configuration and reports every way rows could
//! cross orgs, on the principle of the threat model (docs/threat-model.md): every relation the application role can reach
//! is either a registered tenant table whose protection is complete, or a registered global
//! table; anything else is a finding.
//!
//! ```no_run
//! # diesel::table! { invoices (id) { id -> Uuid, org_id -> Uuid } }
//! # tenant_lint::registry! { pub static REGISTRY; tenant invoices => org_id; }
//! use tenant_core::admin::CatalogReader;
//! use tenant_schema::audit::{AuditOptions, Severity, audit};
//!
//! let mut reader = CatalogReader::connect("postgres://auditor@localhost/app", "quarterly isolation review")?;
//! let report = audit(&mut reader, &REGISTRY, &AuditOptions::default())?;
//! for f in &report.findings {
//!     println!("{:?} {} {}: {}", f.severity, f.rule, f.object, f.why);
//! }
//! assert!(report.findings.iter().all(|f| f.severity != Severity::Error));
//! # Ok::<(), tenant_schema::audit::AuditError>(())
//! ```

mod catalog;
pub mod cluster;
mod code;
mod context_mode;
mod function_cost;
mod powers;
mod row_functions;
mod rules;
mod server_version;
mod shard_protection;
mod tables;

/// The SQL condition on `n.nspname` (a `pg_namespace n`) that keeps the user schemas (the
/// catalog reads of `catalog.rs`, `row_functions.rs` and `function_cost.rs` share it).
const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'";

pub use catalog::{
    AppRole, Catalog, Constraint, Function, IndexKeys, LeakyIndex, Policy, Relation,
    SequenceColumn, Server, Trigger,
};
pub use code::RewriteRule;
pub use context_mode::org_context;
pub use function_cost::CheapFunction;
pub use powers::RolePower;
pub use row_functions::RowFunction;
pub use rules::{CHECKS, RULES};
pub use server_version::{ADVISORIES, Advisory, VERIFIED_MAJORS, missing_fixes};
use tenant_core::TenantError;
use tenant_core::admin::CatalogReader;
use tenant_lint::Registry;

use crate::RlsOptions;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Rows can cross orgs, or the protection can be switched off: the deployment fails.
    Error,
    /// A side channel, a weakness, or something a person must review.
    Warning,
}

/// One thing the audit found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule's stable id (see [`RULES`]).
    pub rule: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// The object: a table, policy, role, function or the server.
    pub object: String,
    /// Why it matters.
    pub why: String,
    /// How to fix it.
    pub fix: String,
}

/// What the audit compares the database with.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Role, setting and policy names (docs/design.md conventions by default).
    pub rls: RlsOptions,
    /// The column name that marks a table as holding tenant data, for finding unregistered
    /// tenant tables.
    pub org_column: String,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            rls: RlsOptions::default(),
            org_column: "org_id".into(),
        }
    }
}

/// The audit's result: the snapshot it read and what it found.
#[derive(Debug, Clone)]
pub struct Report {
    /// What the catalog said.
    pub catalog: Catalog,
    /// Findings, errors first, then by rule and object.
    pub findings: Vec<Finding>,
    /// The org setting's name the audit was told (`RlsOptions::setting`).
    pub setting: String,
    /// How the tenant policies learn the org, judged by the org policies' forms: `signed`,
    /// `setting` (the opt-in plain mode) or `mixed` ([`org_context`]).
    pub org_context: &'static str,
    /// The Citus workers the cluster audit read (`host:port`; [`cluster::audit_cluster`]),
    /// empty for a single server.
    pub workers: Vec<String>,
}

impl Report {
    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }

    /// How many findings are errors.
    pub fn error_count(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }
}

/// Why the audit could not run.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading the catalog failed.
    #[error("reading the catalog failed: {0}")]
    Catalog(#[from] TenantError),
    /// A catalog query that always returns a row returned none.
    #[error("the catalog returned no {0}; is this a PostgreSQL server?")]
    Empty(&'static str),
    /// The cluster's nodes cannot be reached from what the audit was given.
    #[error("{0}")]
    Cluster(String),
}

/// Reads the catalog through `reader` and checks it against `registry`.
pub fn audit(
    reader: &mut CatalogReader,
    registry: &Registry,
    options: &AuditOptions,
) -> Result<Report, AuditError> {
    let catalog = Catalog::read(
        reader,
        &options.rls.app_role,
        &options.rls.operator_role,
        &options.org_column,
    )?;
    let findings = check(&catalog, registry, options);
    Ok(Report {
        org_context: org_context(&catalog, registry, options),
        catalog,
        findings,
        setting: options.rls.setting.clone(),
        workers: Vec::new(),
    })
}

/// Runs every rule over a snapshot (no database needed).
pub fn check(catalog: &Catalog, registry: &Registry, options: &AuditOptions) -> Vec<Finding> {
    let mut findings: Vec<Finding> = RULES
        .iter()
        .flat_map(|(_, rule)| rule(catalog, registry, options))
        .collect();
    findings.sort_by(|a, b| (a.severity, a.rule, &a.object).cmp(&(b.severity, b.rule, &b.object)));
    findings
}
