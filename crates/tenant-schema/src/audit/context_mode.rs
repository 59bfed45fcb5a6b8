//! Rule `org-context-trusts-every-statement`: a tenant table (or a partition of one) whose
//! org policy reads a setting, which any statement of the session can set. In the opt-in plain
//! mode (`ContextMode::TrustEveryStatement`) that is the design, and a warning says what it
//! gives up: row-level security holds only while every statement the application sends is the
//! one it meant to send (docs/threat-model.md #5). In a database whose policies otherwise
//! verify signed tokens it is an error: the service is given a key and believes no statement
//! can switch its org there. The org policy is judged by its form (`tables::org_policy`): a
//! hand-written one that mixes the modes (a fallback to the setting, a WITH CHECK of the other
//! form) is no generated policy at all, and `tenant-policy-missing` reports the table; other
//! policies can only narrow what the restrictive org policy lets through.
//!
//! The same reading gives the evidence its "Org context" line ([`org_context`]).

use tenant_lint::Registry;

use super::tables::{OrgPolicy, org_policy_of, partition_of_tenant, policy_table, tenant_tables};
use super::{AuditOptions, Catalog, Finding, Severity};

/// The rule's id.
pub(super) const RULE: &str = "org-context-trusts-every-statement";

/// What the evidence lists for the rule.
pub(super) const CHECK: (&str, &str, &str) = (
    RULE,
    "#5",
    "every tenant table and partition is confined by the signed org policy, so no statement the application sends can switch its org (the opt-in plain mode: a warning per table)",
);

/// The tenant tables and their partitions, with their org column: the relations whose
/// policies confine rows to an org.
fn judged(c: &Catalog, r: &Registry) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &str)> = tenant_tables(c, r)
        .into_iter()
        .map(|(_, rel, col)| (rel.name.clone(), col))
        .collect();
    out.extend(
        c.relations
            .iter()
            .filter(|rel| partition_of_tenant(rel, r))
            .filter_map(|rel| {
                let col = r.get(&rel.partition_root)?.org_column()?;
                Some((policy_table(rel), col))
            }),
    );
    out
}

/// How the database's tenant policies learn the org: `signed` when every tenant table and
/// partition has the generated org policy in the signed form, `setting` when none has,
/// `mixed` otherwise (the setting's weakness holds where the signed form is missing).
pub fn org_context(c: &Catalog, r: &Registry, o: &AuditOptions) -> &'static str {
    mode(&forms(c, r, o))
}

/// Each tenant table and partition with the form of its generated org policy, if any.
fn forms(c: &Catalog, r: &Registry, o: &AuditOptions) -> Vec<(String, Option<OrgPolicy>)> {
    judged(c, r)
        .into_iter()
        .map(|(name, col)| {
            let form = org_policy_of(c, &name, col, o);
            (name, form)
        })
        .collect()
}

/// [`org_context`] of `forms`.
fn mode(forms: &[(String, Option<OrgPolicy>)]) -> &'static str {
    let signed = forms
        .iter()
        .filter(|(_, f)| *f == Some(OrgPolicy::Signed))
        .count();
    if signed == 0 {
        "setting"
    } else if signed == forms.len() {
        "signed"
    } else {
        "mixed"
    }
}

/// One finding per tenant table or partition whose org policy is the plain setting's: a
/// warning in the plain mode, an error where the database otherwise verifies tokens. (A table
/// with no generated org policy at all is `tenant-policy-missing`'s.)
pub(super) fn org_context_trusts_every_statement(
    c: &Catalog,
    r: &Registry,
    o: &AuditOptions,
) -> Vec<Finding> {
    let forms = forms(c, r, o);
    let signed_elsewhere = mode(&forms) != "setting";
    let mut out = Vec::new();
    for (table, form) in forms {
        if form != Some(OrgPolicy::Setting) {
            continue;
        }
        let setting = &o.rls.setting;
        out.push(if signed_elsewhere {
            Finding {
                rule: RULE,
                severity: Severity::Error,
                object: table.clone(),
                why: format!(
                    "the database verifies signed org tokens, and yet this table's org policy reads \
                     the setting {setting}: one statement of the application role that sets it \
                     (`set_config`, `SET LOCAL`, inside a sub-select of the statement that reads) \
                     reaches another org's rows here, while the service, holding a key, believes \
                     no statement can (docs/threat-model.md #5)"
                ),
                fix: "apply the generated signed migration again (`cargo xtask gen` writes one when \
                      the policies differ), so that every org policy compares with \
                      (SELECT org FROM tenant_context.current_org)"
                    .into(),
            }
        } else {
            Finding {
                rule: RULE,
                severity: Severity::Warning,
                object: table.clone(),
                why: format!(
                    "the org policy of this table believes the setting {setting} whatever set it: \
                     one statement of the application role (an injection, a bug in raw SQL) can \
                     run `set_config('{setting}', <another org>, true)` or `SET LOCAL`, also \
                     inside a sub-select of the statement that reads, and row-level security then \
                     shows, changes and inserts that org's rows; only the application layer \
                     stands between such a statement and every org (docs/threat-model.md #5)"
                ),
                fix: "generate the migration in the default signed mode (ContextMode::Signed), add \
                      the service's key to the database (`cargo xtask context-key add` or \
                      `rotate`) and build the pool with that ContextKey; keep this mode only \
                      where the signed context cannot run (Citus workers) and say so in the \
                      deployment's risk register"
                    .into(),
            }
        });
    }
    out
}
