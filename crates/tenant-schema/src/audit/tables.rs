//! Which relations of the catalog are the registry's tables, and whether a policy confines
//! a table to the session's org: what several rule files share.

use tenant_lint::{Registry, TableEntry};

use super::{Catalog, Relation};

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
