//! How the database learns a scoped transaction's org: the choice every pool makes when it is
//! built ([`TenantPool::builder`](crate::TenantPool::builder)'s third argument).
//!
//! The default is the signed context: the pool signs each transaction's org with the
//! service's [`ContextKey`] and the database's policies verify the token, so no statement the
//! application sends (an injection, a bug in raw SQL) can switch the org row-level security
//! enforces. The other choice, [`OrgContext::TrustEveryStatement`], is named for what it
//! gives up.

use crate::context::ContextKey;

/// How the pool tells the database the org of each scoped transaction.
#[derive(Debug, Clone)]
pub enum OrgContext {
    /// A token signed with the service's key (the default; the database's migrations are
    /// generated with `tenant_schema::ContextMode::Signed`, the default, and hold the key).
    Signed(ContextKey),
    /// The opt-in plain mode: the org goes into the setting `tenant.org_id`, and the database
    /// believes whatever that setting holds. It trusts every statement the application sends:
    /// one statement that sets the setting (`set_config`, `SET LOCAL`, also inside a
    /// sub-select) reads and writes another org's rows with row-level security's blessing, so
    /// only the application layer stands between an injection and every org
    /// (docs/threat-model.md #5). For databases generated with
    /// `ContextMode::TrustEveryStatement` (Citus needs it today); the audit and the evidence
    /// report it (`org-context-trusts-every-statement`).
    TrustEveryStatement,
}

/// What [`TenantPool::builder`](crate::TenantPool::builder) accepts as the org context: the
/// service's [`ContextKey`] (the signed context) or an [`OrgContext`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not say how the database learns the org",
    label = "expected the service's `ContextKey`, or an `OrgContext`",
    note = "pass the service's key, `ContextKey::require_env(\"TENANT_CONTEXT_KEY\")?` or `ContextKey::parse(\"kid:hex\")?` (the signed context, which the generated migrations verify by default)",
    note = "or, for a database generated with `ContextMode::TrustEveryStatement`, pass `OrgContext::TrustEveryStatement` (the database then trusts every statement the application sends)"
)]
pub trait IntoOrgContext {
    /// The org context.
    fn into_org_context(self) -> OrgContext;
}

impl IntoOrgContext for OrgContext {
    fn into_org_context(self) -> OrgContext {
        self
    }
}

impl IntoOrgContext for ContextKey {
    fn into_org_context(self) -> OrgContext {
        OrgContext::Signed(self)
    }
}

impl IntoOrgContext for &ContextKey {
    fn into_org_context(self) -> OrgContext {
        OrgContext::Signed(self.clone())
    }
}
