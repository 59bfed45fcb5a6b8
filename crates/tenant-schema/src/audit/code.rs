//! What runs on a tenant table besides the application's statements, and what the application
//! may write that every org reads.
//!
//! - `code-on-tenant-table`: a rewrite rule on a tenant table or one of its partitions is an
//!   error (its actions run with the table owner's rights on every write of every org: a
//!   `DO ALSO INSERT INTO <shared table>` copies each org's rows where every org reads them, and
//!   needs no grant to the application); a trigger that is not SECURITY DEFINER (those are
//!   `security-definer-function`'s) is a warning naming its function: it runs on every write of
//!   every org, and what it writes elsewhere (a shared table, `pg_notify`, a log) another org
//!   may read.
//! - `global-table-writable`: the application role may write a registered global table. Every
//!   org reads it, so one org's statement (an injection) changes what all of them see, and a
//!   trigger or rule can fill it with another org's rows; the generated migration grants SELECT
//!   only (writes go through the admin path, `GlobalWriter`).

use diesel::QueryableByName;
use diesel::sql_types::Text;
use tenant_core::admin::CatalogReader;
use tenant_lint::Registry;

use super::tables::{REGISTERED_SCHEMA, is_tenant, partition_of_tenant};
use super::{AuditError, AuditOptions, Catalog, Finding, Severity};

/// A rewrite rule on a table of a user schema (not a view's `_RETURN`).
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct RewriteRule {
    /// The table, `schema.name`.
    #[diesel(sql_type = Text)]
    pub table_name: String,
    /// The rule's name.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// Its definition, as the server prints it.
    #[diesel(sql_type = Text)]
    pub definition: String,
}

/// Reads every rewrite rule on a table of a user schema.
pub(super) fn read(reader: &mut CatalogReader) -> Result<Vec<RewriteRule>, AuditError> {
    Ok(reader.load::<RewriteRule>(
        "SELECT n.nspname::text || '.' || c.relname::text AS table_name, r.rulename::text AS name, \
                pg_get_ruledef(r.oid) AS definition \
           FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class \
           JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE r.rulename <> '_RETURN' AND c.relkind IN ('r', 'p') \
            AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
          ORDER BY 1, 2",
        &[],
    )?)
}

/// Whether `schema.name` is a registered tenant table or a partition of one.
pub(super) fn on_tenant(c: &Catalog, r: &Registry, qualified: &str) -> bool {
    if qualified
        .strip_prefix(REGISTERED_SCHEMA)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|name| is_tenant(r, name))
    {
        return true;
    }
    c.relations.iter().any(|rel| {
        partition_of_tenant(rel, r) && format!("{}.{}", rel.schema, rel.name) == qualified
    })
}

/// Whether trigger `t` runs a SECURITY DEFINER function (those are
/// `security-definer-function`'s: an error).
pub(super) fn runs_definer(c: &Catalog, t: &super::Trigger) -> bool {
    c.functions.iter().any(|f| {
        f.security_definer
            && format!("{}.{}", f.schema, crate::generated::bare_name(&f.name)) == t.function
    })
}

/// Rule `code-on-tenant-table`.
pub(super) fn code_on_tenant_table(c: &Catalog, r: &Registry, _: &AuditOptions) -> Vec<Finding> {
    let rules = c
        .rewrite_rules
        .iter()
        .filter(|rule| on_tenant(c, r, &rule.table_name))
        .map(|rule| Finding {
            rule: "code-on-tenant-table",
            severity: Severity::Error,
            object: format!("{} (rule {})", rule.table_name, rule.name),
            why: "a rewrite rule on a tenant table runs its actions with the table owner's rights on every write of every org, and the application needs no grant for them: an action that writes elsewhere (a shared table) copies each org's rows where other orgs read them".into(),
            fix: format!(
                "DROP RULE {} ON {}; do in the application, through the scoped DSL, what it did",
                rule.name, rule.table_name
            ),
        });
    let triggers = c
        .triggers
        .iter()
        .filter(|t| on_tenant(c, r, &t.table_name) && !runs_definer(c, t))
        .map(|t| Finding {
            rule: "code-on-tenant-table",
            severity: Severity::Warning,
            object: format!("{}.{} ({})", t.table_name, t.name, t.function),
            why: format!(
                "this trigger runs {} on every write of every org ({}): review that it writes nothing another org can read (a shared table, a log, `pg_notify`, which any session of the role may LISTEN to)",
                t.function, t.timing
            ),
            fix: "keep what it does inside the row's own org, or drop it and do it in the application".into(),
        });
    rules.chain(triggers).collect()
}

/// Rule `global-table-writable`.
pub(super) fn global_table_writable(c: &Catalog, r: &Registry, o: &AuditOptions) -> Vec<Finding> {
    c.relations
        .iter()
        .filter(|rel| {
            rel.schema == REGISTERED_SCHEMA
                && r.get(&rel.name).is_some_and(|e| !e.is_tenant())
        })
        .filter_map(|rel| {
            let writes: Vec<&str> = ["INSERT", "UPDATE", "DELETE", "TRUNCATE"]
                .into_iter()
                .filter(|p| rel.app_has(p))
                .collect();
            (!writes.is_empty()).then(|| Finding {
                rule: "global-table-writable",
                severity: Severity::Error,
                object: rel.name.clone(),
                why: format!(
                    "the application role may {} this global table, which every org reads: one org's statement changes what all of them see, and a trigger or rule can fill it with another org's rows",
                    writes.join(", ")
                ),
                fix: format!(
                    "REVOKE {} ON {} FROM {}; write global tables through the admin path (tenant_core::admin::GlobalWriter)",
                    writes.join(", "),
                    rel.name,
                    o.rls.app_role
                ),
            })
        })
        .collect()
}
