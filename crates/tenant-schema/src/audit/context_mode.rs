//! Rule `org-context-trusts-every-statement`: a tenant table whose policies believe the plain
//! org setting (the opt-in `ContextMode::TrustEveryStatement`) rather than a token the service
//! signed. Row-level security then holds only while every statement the application sends is
//! the one it meant to send: any statement can set the setting to another org, and the
//! policies follow (docs/threat-model.md #5). A warning, not an error: the mode is a choice a
//! deployment makes by name (Citus needs it today), and the evidence must say what it gives up.

use tenant_lint::Registry;

use super::tables::{confines, tenant_tables};
use super::{AuditOptions, Catalog, Finding, Severity};

/// The rule's id.
pub(super) const RULE: &str = "org-context-trusts-every-statement";

/// What the evidence lists for the rule.
pub(super) const CHECK: (&str, &str, &str) = (
    RULE,
    "#5",
    "every tenant table's policies verify the org of a token the service signs, so no statement the application sends can switch its org",
);

/// One warning per tenant table confined by the plain setting and not by a verified token.
pub(super) fn org_context_trusts_every_statement(
    c: &Catalog,
    r: &Registry,
    o: &AuditOptions,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (t, _, col) in tenant_tables(c, r) {
        let restrictive = || {
            c.policies
                .iter()
                .filter(|p| p.table_name == t.name && !p.permissive && p.cmd == "*")
        };
        let verified = restrictive().any(|p| {
            crate::context::reads_verified_org(&p.using_expr)
                && crate::context::reads_verified_org(&p.check_expr)
                && confines(&p.using_expr, col, &o.rls.setting)
                && confines(&p.check_expr, col, &o.rls.setting)
        });
        let plain = restrictive().any(|p| {
            confines(&p.using_expr, col, &o.rls.setting)
                && confines(&p.check_expr, col, &o.rls.setting)
        });
        // Without any confining policy, `tenant-policy-missing` reports the table.
        if verified || !plain {
            continue;
        }
        out.push(Finding {
            rule: RULE,
            severity: Severity::Warning,
            object: t.name.to_owned(),
            why: format!(
                "the policies confine this table to the plain setting {setting}, which they \
                 believe whatever set it: one statement of the application role (an injection, a \
                 bug in raw SQL) can run `set_config('{setting}', <another org>, true)` or `SET \
                 LOCAL`, also inside a sub-select of the statement that reads, and row-level \
                 security then shows, changes and inserts that org's rows; only the application \
                 layer stands between such a statement and every org (docs/threat-model.md #5)",
                setting = o.rls.setting
            ),
            fix:
                "generate the migration in the default signed mode (ContextMode::Signed), add the \
                  service's key to the database (`cargo xtask context-key add` or `rotate`) and \
                  build the pool with that ContextKey; keep this mode only where the signed \
                  context cannot run (Citus workers) and say so in the deployment's risk register"
                    .into(),
        });
    }
    out
}
