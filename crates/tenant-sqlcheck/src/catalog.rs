//! The audit connection's check: a query may read the system catalogs and nothing else.
//!
//! Invariant: a catalog-only statement is one SELECT whose every relation is in `pg_catalog` or
//! `information_schema` (or an unqualified `pg_*` relation, or one of its CTEs), and whose
//! every function, operator and expression passes the catalog policy: the org-scoped policy
//! plus catalog functions and `reg*` casts, which read catalog data (what the audit is for) but
//! never run SQL, change session state, or read a table's rows.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, ObjectNamePart, TableFactor, Visit, Visitor};

use crate::ctes::CteScopes;
use crate::functions::Policy;
use crate::parse::{ident, parse_one, query_only};
use crate::registry::{Requirement, Tables};
use crate::violation::Violation;

/// Whether `sql` is one SELECT that reads only the system catalogs (`pg_catalog`,
/// `information_schema`, or unqualified `pg_*` relations): the only thing an audit connection
/// may run, so it can never read tenant rows. Its functions must be safe built-ins or catalog
/// functions (`pg_get_expr`, `has_table_privilege`, ...): never one that runs SQL, changes a
/// setting or reads a table by name (`query_to_xml`, `set_config`, `pg_read_file`, ...).
pub fn check_catalog_only(sql: &str) -> Result<(), Violation> {
    let statement = parse_one(sql)?;
    query_only(&statement)?;
    let tables = Tables::default();
    let mut visitor = CatalogOnly {
        ctes: CteScopes::default(),
        policy: Policy::catalog(&tables),
        requirements: Vec::new(),
    };
    match statement.visit(&mut visitor) {
        ControlFlow::Break(v) => Err(v),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct CatalogOnly<'a> {
    ctes: CteScopes,
    policy: Policy<'a>,
    /// Unused: the catalog policy registers no function, and is never symbolic.
    requirements: Vec<Requirement>,
}

impl Visitor for CatalogOnly<'_> {
    type Break = Violation;

    fn pre_visit_query(&mut self, query: &sqlparser::ast::Query) -> ControlFlow<Violation> {
        self.ctes.enter(query);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &sqlparser::ast::Query) -> ControlFlow<Violation> {
        self.ctes.leave(query);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Violation> {
        if let Err(v) = self.policy.table_factor(factor, &mut self.requirements) {
            return ControlFlow::Break(v);
        }
        if let TableFactor::Table {
            name, args: None, ..
        } = factor
        {
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|p| match p {
                    ObjectNamePart::Identifier(id) => Some(ident(id)),
                    _ => None,
                })
                .collect();
            let ok = match parts.as_slice() {
                [schema, _] => schema == "pg_catalog" || schema == "information_schema",
                [table] => table.starts_with("pg_") || self.ctes.contains(table),
                _ => false,
            };
            if !ok {
                return ControlFlow::Break(Violation::UnregisteredTable {
                    table: parts.join("."),
                });
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Violation> {
        match self.policy.expr(expr, &mut self.requirements) {
            Ok(()) => ControlFlow::Continue(()),
            Err(v) => ControlFlow::Break(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_only_queries_read_nothing_but_the_catalogs() {
        assert_eq!(
            check_catalog_only(
                "SELECT c.relname FROM pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            ),
            Ok(())
        );
        assert_eq!(
            check_catalog_only("SELECT * FROM information_schema.table_privileges"),
            Ok(())
        );
        assert_eq!(
            check_catalog_only(
                "SELECT * FROM pg_class WHERE relname IN (SELECT number FROM invoices)"
            ),
            Err(Violation::UnregisteredTable {
                table: "invoices".into()
            })
        );
        assert!(matches!(
            check_catalog_only("DELETE FROM pg_class"),
            Err(Violation::UnsupportedStatement(_))
        ));
    }

    #[test]
    fn the_audit_cannot_run_sql_change_state_or_read_rows_through_functions() {
        let unsafe_fn = |v: Result<(), Violation>, name: &str| {
            assert!(
                matches!(&v, Err(Violation::UnsafeFunction { name: n, .. }) if n == name),
                "{name}: {v:?}"
            );
        };
        unsafe_fn(
            check_catalog_only("SELECT query_to_xml('select * from invoices', true, true, '')"),
            "query_to_xml",
        );
        unsafe_fn(
            check_catalog_only("SELECT * FROM query_to_xml('select 1', true, true, '')"),
            "query_to_xml",
        );
        unsafe_fn(
            check_catalog_only("SELECT table_to_xml('invoices', true, true, '') FROM pg_class"),
            "table_to_xml",
        );
        unsafe_fn(
            check_catalog_only("SELECT pg_read_file('/etc/passwd')"),
            "pg_read_file",
        );
        unsafe_fn(
            check_catalog_only("SELECT pg_advisory_lock(1)"),
            "pg_advisory_lock",
        );
        unsafe_fn(
            check_catalog_only("SELECT current_setting('tenant.token')"),
            "current_setting",
        );
        assert_eq!(
            check_catalog_only("SELECT * FROM set_config('tenant.org_id', 'x', false)"),
            Err(Violation::ChangesSessionSetting("set_config".into()))
        );
        assert_eq!(
            check_catalog_only("SELECT relname FROM pg_class WHERE f(relname)"),
            Err(Violation::UnknownFunction { name: "f".into() })
        );
        assert_eq!(
            check_catalog_only("SELECT 1 OPERATOR(pg_catalog.+) 1"),
            Err(Violation::UnknownOperator("OPERATOR(pg_catalog.+)".into()))
        );
    }

    const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'";

    /// The audit's and the probe's own catalog queries (tenant-schema's `audit/catalog.rs`,
    /// tenant-probe's `schema.rs`), abridged only where they repeat a construct.
    #[test]
    fn the_audit_queries_pass() {
        let privileges = ["SELECT", "INSERT"]
            .iter()
            .map(|p| {
                format!("CASE WHEN has_table_privilege($1::name, c.oid, '{p}') THEN '{p}' END")
            })
            .collect::<Vec<_>>()
            .join(", ");
        for sql in [
            "SELECT current_setting('server_version_num')::int AS version_num, version() AS version, current_user::text AS role".to_owned(),
            "SELECT r.rolname::text AS name, r.rolsuper AS superuser, coalesce((SELECT string_agg(m.rolname::text, ',' ORDER BY m.rolname) FROM pg_roles m \
             WHERE m.oid <> r.oid AND (m.rolsuper OR m.rolbypassrls) AND pg_has_role(r.oid, m.oid, 'MEMBER')), '') AS privileged_memberships \
             FROM pg_roles r WHERE r.rolname = $1".to_owned(),
            format!(
                "SELECT n.nspname::text AS schema, pg_get_userbyid(c.relowner)::text AS owner, concat_ws(',', {privileges}) AS app_privileges, \
                 pg_has_role($1::name, c.relowner, 'MEMBER') AS app_owns, coalesce(array_to_string(c.reloptions, ','), '') AS options, \
                 EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped) AS has_org_column, \
                 coalesce((SELECT r.relname::text FROM pg_class r WHERE c.relispartition AND r.oid = pg_partition_root(c.oid)), '') AS partition_root, \
                 coalesce((SELECT string_agg(DISTINCT rn.nspname || '.' || rc.relname, ',') FROM pg_rewrite rw \
                   JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> c.oid \
                   JOIN pg_class rc ON rc.oid = d.refobjid JOIN pg_namespace rn ON rn.oid = rc.relnamespace WHERE rw.ev_class = c.oid), '') AS reads, \
                 CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) ELSE '' END AS definition, \
                 coalesce((SELECT string_agg(g.grant_text, ',' ORDER BY g.grant_text) FROM ( \
                   SELECT CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_get_userbyid(a.grantee)::text END || ':' || a.privilege_type AS grant_text \
                   FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner) g), '') AS grants \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {USER_SCHEMAS} ORDER BY 1, 2"
            ),
            format!(
                "SELECT c.relname::text AS table_name, CASE WHEN p.polroles = '{{0}}' THEN 'public' ELSE \
                 (SELECT string_agg(r.rolname::text, ',' ORDER BY r.rolname) FROM pg_roles r WHERE r.oid = ANY (p.polroles)) END AS roles, \
                 coalesce(pg_get_expr(p.polqual, p.polrelid), '') AS using_expr, \
                 coalesce((SELECT string_agg(f.proname::text || ':' || f.provolatile::text, ',' ORDER BY f.proname) \
                   FROM pg_depend d JOIN pg_proc f ON f.oid = d.refobjid WHERE d.classid = 'pg_policy'::regclass AND d.objid = p.oid \
                   AND d.refclassid = 'pg_proc'::regclass), '') AS functions \
                 FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMAS} ORDER BY 1, 2"
            ),
            format!(
                "SELECT c.relname::text AS table_name, (SELECT string_agg(a.attname::text, ',' ORDER BY array_position(k.conkey, a.attnum)) \
                 FROM pg_attribute a WHERE a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)) AS columns, \
                 coalesce((SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = k.conrelid AND a.attnum = k.conkey[1]), '') AS first_type \
                 FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_class rc ON rc.oid = k.confrelid \
                 WHERE k.contype IN ('u', 'p', 'f') AND {USER_SCHEMAS} \
                 UNION ALL SELECT c.relname::text, (SELECT string_agg(a.attname::text, ',' ORDER BY array_position(i.indkey::int2[], a.attnum)) \
                 FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
                 WHERE i.indisunique AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid) ORDER BY 1, 2"
            ),
            format!(
                "SELECT n.nspname::text AS schema, p.oid::regprocedure::text AS name, has_function_privilege($1::name, p.oid, 'EXECUTE') AS app_can_execute, \
                 coalesce(array_to_string(p.proconfig, ','), '') AS config, coalesce(p.prosrc, '') AS source \
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE (p.prosecdef OR p.proleakproof) AND {USER_SCHEMAS} ORDER BY 1, 2"
            ),
            "SELECT table_name, name FROM (SELECT c.relname::text AS table_name, pg_get_indexdef(i.indexrelid) AS definition, \
             concat_ws(',', (SELECT string_agg(DISTINCT o.oprname::text || ' (' || p.proname::text || ')', ',') \
               FROM unnest(i.indclass::oid[]) AS cls(oid) JOIN pg_opclass oc ON oc.oid = cls.oid JOIN pg_am am ON am.oid = oc.opcmethod \
               JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amoppurpose = 's' JOIN pg_operator o ON o.oid = ao.amopopr JOIN pg_proc p ON p.oid = o.oprcode \
               WHERE NOT p.proleakproof AND (am.amname NOT IN ('btree', 'hash') OR ao.amoprighttype = oc.opcintype)), \
             (SELECT string_agg(DISTINCT p.proname::text || '()', ',') FROM pg_proc p WHERE i.indexprs IS NOT NULL AND NOT p.proleakproof \
               AND pg_get_expr(i.indexprs, i.indrelid) ~ ('(^|[^a-z0-9_])' || p.proname || '[(]') )) AS not_leakproof \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid) x WHERE not_leakproof <> '' ORDER BY 1, 2".to_owned(),
            "SELECT c.relname::text AS table_name, (SELECT string_agg(coalesce(a.attname::text, '(expression)'), ',' ORDER BY k.ord) \
             FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE k.ord <= i.indnkeyatts) AS columns FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid".to_owned(),
            "SELECT t.tgname::text AS name, concat_ws(' ', CASE WHEN t.tgtype & 2 <> 0 THEN 'BEFORE' WHEN t.tgtype & 64 <> 0 THEN 'INSTEAD' ELSE 'AFTER' END, \
             concat_ws(',', CASE WHEN t.tgtype & 4 <> 0 THEN 'INSERT' END)) AS timing, pn.nspname::text || '.' || p.proname::text AS function \
             FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace WHERE NOT t.tgisinternal".to_owned(),
            "SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS ty, \
             (SELECT e.enumlabel::text FROM pg_catalog.pg_enum e WHERE e.enumtypid = a.atttypid ORDER BY e.enumsortorder LIMIT 1) AS enum_label, \
             CASE WHEN t.typname IN ('varchar', 'bpchar') AND a.atttypmod > 4 THEN a.atttypmod - 4 END AS max_len, \
             COALESCE((SELECT pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%' FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum), a.attidentity <> '') AS sequence_default \
             FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 ORDER BY a.attnum".to_owned(),
            "SELECT k.conname::text AS name, COALESCE((SELECT string_agg(a.attname::text, ',' ORDER BY u.i) FROM unnest(k.conkey) WITH ORDINALITY AS u(n, i) \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n), '') AS columns, \
             COALESCE(k.confrelid::regclass::text, '') AS parent, pg_get_constraintdef(k.oid) AS definition \
             FROM pg_catalog.pg_constraint k WHERE k.conrelid = to_regclass($1) AND k.contype IN ('p', 'u', 'f', 'c') ORDER BY k.contype, k.conname".to_owned(),
            "SELECT format('%I.%I', n.nspname, c.relname) AS name, a.attname::text AS org_column FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 \
             WHERE c.relkind IN ('v', 'm') AND has_table_privilege(c.oid, 'SELECT') AND a.attname::text = ANY (string_to_array($1, ',')) ORDER BY 1".to_owned(),
        ] {
            assert_eq!(check_catalog_only(&sql), Ok(()), "{sql}");
        }
    }
}
