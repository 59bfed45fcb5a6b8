//! Rule `function-cost-below-one`: a function of a user schema the application role may run
//! whose planner cost (`COST`, `pg_proc.procost`) is below one operator.
//!
//! PostgreSQL evaluates a scan's conditions cheapest first, and the org predicate costs one
//! operator. The SQL checker refuses a condition that can fail on a row and costs fewer than
//! two operators (it would run before the org predicate, on other orgs' rows, and its error
//! would show them), counting each call as at least one: a function declared cheaper breaks
//! that floor, and a condition calling it may run first. No built-in costs less than one.

use diesel::QueryableByName;
use diesel::sql_types::{Double, Text};
use tenant_core::admin::CatalogReader;
use tenant_lint::Registry;

use super::USER_SCHEMAS;
use super::{AuditError, AuditOptions, Catalog, Finding, Severity};

/// A function of a user schema the application role may run, declared cheaper than one
/// operator.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct CheapFunction {
    /// `schema.name(argument types)`.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// Its `COST`.
    #[diesel(sql_type = Double)]
    pub cost: f64,
}

impl Eq for CheapFunction {}

/// Reads the functions of user schemas that `app_role` may run with `procost < 1`.
pub(super) fn read(
    reader: &mut CatalogReader,
    app_role: &str,
) -> Result<Vec<CheapFunction>, AuditError> {
    if app_role.is_empty() {
        return Ok(Vec::new());
    }
    Ok(reader.load::<CheapFunction>(
        &format!(
            "SELECT n.nspname::text || '.' || p.oid::regprocedure::text AS name, \
                p.procost::float8 AS cost \
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
          WHERE {USER_SCHEMAS} \
            AND p.prokind = 'f' AND p.procost < 1 \
            AND has_function_privilege($1::name, p.oid, 'EXECUTE') \
          ORDER BY 1"
        ),
        &[app_role],
    )?)
}

/// Rule `function-cost-below-one`.
pub(super) fn function_cost_below_one(c: &Catalog, _: &Registry, _: &AuditOptions) -> Vec<Finding> {
    c.cheap_functions
        .iter()
        .map(|f| Finding {
            rule: "function-cost-below-one",
            severity: Severity::Warning,
            object: f.name.clone(),
            why: format!(
                "declared COST {} (below one operator): the SQL checker counts each call as at least one operator when it decides whether a condition may run before the org predicate, so a condition calling this function may run first, on other orgs' rows, and an error it raises would show them (RLS still filters first)",
                f.cost
            ),
            fix: format!("ALTER FUNCTION {} COST 1", f.name),
        })
        .collect()
}
