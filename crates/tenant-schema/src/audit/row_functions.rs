//! Rule `function-on-tenant-row`: a function the application role may run that takes a tenant
//! table's whole row (its row type, `record`, or a polymorphic type) as its one required
//! argument.
//!
//! PostgreSQL reads `t.f`, where `f` is no column of `t`, as the call `f(t)` (functional
//! notation). The SQL checker cannot tell such a call from a column reference, since it does
//! not know the columns, so the function runs past its function policy (built-ins on the
//! allowlist, the service's functions only when registered). Such a function that reads other
//! tables, or is SECURITY DEFINER, reads them for whichever org's row it is given. The
//! built-ins (`to_json`, `row_to_json`, ...) live in `pg_catalog` and read only their argument;
//! this rule looks at the functions of user schemas.

use diesel::QueryableByName;
use diesel::sql_types::Text;
use tenant_core::admin::CatalogReader;
use tenant_lint::Registry;

use super::USER_SCHEMAS;
use super::code::on_tenant;
use super::{AuditError, AuditOptions, Catalog, Finding, Severity};

/// A function of a user schema the application role may run with a whole row as its one
/// required argument.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct RowFunction {
    /// Schema.
    #[diesel(sql_type = Text)]
    pub schema: String,
    /// Name with argument types (`regprocedure`).
    #[diesel(sql_type = Text)]
    pub name: String,
    /// Name alone.
    #[diesel(sql_type = Text)]
    pub bare_name: String,
    /// The first argument's type, as the server prints it.
    #[diesel(sql_type = Text)]
    pub argument: String,
    /// The table whose row type the argument is, `schema.name` (empty for `record` and the
    /// polymorphic types).
    #[diesel(sql_type = Text)]
    pub row_of: String,
}

/// Reads the functions of user schemas that `app_role` may run and that take a whole row: a
/// table's row type, `record`, or a polymorphic type, as the first argument, the others (if
/// any) having defaults.
pub(super) fn read(
    reader: &mut CatalogReader,
    app_role: &str,
) -> Result<Vec<RowFunction>, AuditError> {
    if app_role.is_empty() {
        return Ok(Vec::new());
    }
    Ok(reader.load::<RowFunction>(
        &format!(
            "SELECT n.nspname::text AS schema, p.oid::regprocedure::text AS name, \
                p.proname::text AS bare_name, format_type(t.oid, NULL) AS argument, \
                coalesce(tn.nspname::text || '.' || tc.relname::text, '') AS row_of \
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
           JOIN pg_type t ON t.oid = p.proargtypes[0] \
           LEFT JOIN pg_class tc ON tc.oid = t.typrelid \
           LEFT JOIN pg_namespace tn ON tn.oid = tc.relnamespace \
          WHERE {USER_SCHEMAS} \
            AND p.prokind = 'f' AND p.pronargs >= 1 AND p.pronargs - p.pronargdefaults <= 1 \
            AND (t.typrelid <> 0 OR (t.typtype = 'p' AND t.typname IN \
                 ('record', 'any', 'anyelement', 'anycompatible', 'anynonarray', 'anycompatiblenonarray'))) \
            AND has_function_privilege($1::name, p.oid, 'EXECUTE') \
          ORDER BY 1, 2"
        ),
        &[app_role],
    )?)
}

/// Rule `function-on-tenant-row`.
pub(super) fn function_on_tenant_row(c: &Catalog, r: &Registry, o: &AuditOptions) -> Vec<Finding> {
    c.row_functions
        .iter()
        .filter(|f| f.row_of.is_empty() || on_tenant(c, r, &f.row_of))
        .filter(|f| {
            // A registered function is one the checker approves as `f(t)` anyway.
            !r.functions().any(|e| {
                e.name == f.bare_name || e.name == format!("{}.{}", f.schema, f.bare_name)
            })
        })
        .map(|f| Finding {
            rule: "function-on-tenant-row",
            severity: Severity::Error,
            object: format!("{}.{}", f.schema, f.name),
            why: format!(
                "the application role may call this function on a tenant table's row as `t.{}` (PostgreSQL's functional notation for `{}(t)`; it takes {}), which the SQL checker reads as a column and lets through past its function policy: whatever the function reads or does runs for whichever org's row it is given",
                f.bare_name,
                f.bare_name,
                if f.row_of.is_empty() {
                    format!("`{}`, so any row", f.argument)
                } else {
                    format!("the row of {}", f.row_of)
                }
            ),
            fix: format!(
                "REVOKE EXECUTE ON FUNCTION {}.{} FROM PUBLIC, {}; or register it (registry! functions) with the reason it is safe on any org's row",
                f.schema, f.name, o.rls.app_role
            ),
        })
        .collect()
}
