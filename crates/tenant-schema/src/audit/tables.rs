//! Which relations of the catalog are the registry's tables, and whether a policy confines
//! a table to the session's org: what several rule files share.

use tenant_lint::{Registry, TableEntry};

use super::{AuditOptions, Catalog, Relation};

/// The relation of the registered table `name` (the one in the registered schema).
pub(super) fn relation<'c>(catalog: &'c Catalog, name: &str) -> Option<&'c Relation> {
    catalog
        .relations
        .iter()
        .find(|r| r.name == name && r.schema == REGISTERED_SCHEMA)
}

/// The schema registered tables live in (the SQL checker and the generator read a table's
/// name as `public.<name>`): a relation of a registered name in any other schema is another
/// relation, and is judged as one.
pub(super) const REGISTERED_SCHEMA: &str = "public";

/// Whether `rel` is the relation the registry names (not one of the same name elsewhere).
pub(super) fn is_registered(rel: &Relation, r: &Registry) -> bool {
    rel.schema == REGISTERED_SCHEMA && r.get(&rel.name).is_some()
}

/// Registered tenant tables present in the database, with their org column.
pub(super) fn tenant_tables<'c>(
    catalog: &'c Catalog,
    registry: &Registry,
) -> Vec<(&'static TableEntry, &'c Relation, &'static str)> {
    registry
        .tenant_tables()
        .filter_map(|t| Some((t, relation(catalog, t.name)?, t.org_column()?)))
        .collect()
}

/// Whether `name` is a registered tenant table.
pub(super) fn is_tenant(r: &Registry, name: &str) -> bool {
    r.get(name).is_some_and(|e| e.is_tenant())
}

/// Whether a policy expression confines `org_column` to the org setting, or to the org of the
/// signed context's verified token.
pub(super) fn confines(expr: &str, org_column: &str, setting: &str) -> bool {
    (expr.contains(&format!("current_setting('{setting}'"))
        || crate::context::reads_verified_org(expr))
        && (expr.contains(&format!("({org_column} ="))
            || expr.contains(&format!("{org_column} = ")))
}

/// How the catalog names `rel` in `Policy::table_name` and the rules' objects: bare in
/// `public`, `schema.name` elsewhere (a relation of the same name in another schema is another
/// relation, with policies of its own).
pub(super) fn policy_table(rel: &Relation) -> String {
    if rel.schema == REGISTERED_SCHEMA {
        rel.name.clone()
    } else {
        format!("{}.{}", rel.schema, rel.name)
    }
}

/// Whether `rel` is a partition (at any depth) of a registered tenant table.
pub(super) fn partition_of_tenant(rel: &Relation, r: &Registry) -> bool {
    !rel.partition_root.is_empty() && is_tenant(r, &rel.partition_root)
}

/// Whether policy `p` applies to `role` (to `public`, or to the role by name).
pub(super) fn applies_to(p: &super::Policy, role: &str) -> bool {
    p.roles.split(',').any(|r| r == "public" || r == role)
}

/// How a policy confines a table to the org, when it is the generated org policy in one of
/// the generator's forms: restrictive, for all commands, binding the application role, its
/// USING and WITH CHECK each exactly a form of one mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OrgPolicy {
    /// The plain setting (sub-select or inline): any statement can change the org.
    Setting,
    /// The signed context's verified org.
    Signed,
}

/// [`OrgPolicy`] of `p` on a table whose org column is `column`; `None` for any other policy
/// (a hand-written one the audit cannot vouch for, however close: `IS NOT FALSE`, a fallback,
/// an extra condition).
pub(super) fn org_policy(p: &super::Policy, column: &str, o: &AuditOptions) -> Option<OrgPolicy> {
    if p.permissive || p.cmd != "*" || !applies_to(p, &o.rls.app_role) {
        return None;
    }
    let [plain, signed] = crate::generated::org_forms(&o.rls, column);
    let is = |expr: &str, forms: &[String]| {
        let printed = crate::context::normalized_printed_text(expr);
        forms
            .iter()
            .any(|f| crate::context::normalized_printed_text(f) == printed)
    };
    if is(&p.using_expr, &signed) && is(&p.check_expr, &signed) {
        Some(OrgPolicy::Signed)
    } else if is(&p.using_expr, &plain) && is(&p.check_expr, &plain) {
        Some(OrgPolicy::Setting)
    } else {
        None
    }
}

/// The strongest generated org policy of table `name` (signed over setting), if any.
pub(super) fn org_policy_of(
    c: &Catalog,
    name: &str,
    column: &str,
    o: &AuditOptions,
) -> Option<OrgPolicy> {
    let found: Vec<OrgPolicy> = c
        .policies
        .iter()
        .filter(|p| p.table_name == name)
        .filter_map(|p| org_policy(p, column, o))
        .collect();
    if found.contains(&OrgPolicy::Signed) {
        Some(OrgPolicy::Signed)
    } else {
        found.first().copied()
    }
}
