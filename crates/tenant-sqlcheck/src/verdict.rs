//! The verdict: one walk over the statement runs every stage on every node, then every tenant
//! table reference the walk saw must have been confirmed by a scope check.
//!
//! Invariant: a statement is accepted only if no stage refused a node (statement kind, query
//! body, FROM item, expression, function, operator, write) and every tenant-table reference
//! found anywhere in it was confirmed confined; a reference in a place no scope check looks at
//! is [`Violation::Unverifiable`].

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Query, Select, Statement, TableFactor, TableWithJoins, Visit, Visitor};

use crate::notation::table_function_names;
use crate::parse::{ServerParse, dml_only, parse_both, supported_body};
use crate::registry::{Requirement, Tables};
use crate::scope::Checker;
use crate::violation::Violation;

/// Checks one statement. `is_org_param` says which placeholders (`$1`, `$org`, ...) hold the
/// session's org. Functions must be built-ins known to be safe or registered in `tables`
/// ([`Tables::with_functions`]).
pub fn check(
    sql: &str,
    tables: &Tables,
    is_org_param: &dyn Fn(&str) -> bool,
) -> Result<(), Violation> {
    run_checker(sql, tables, is_org_param, false).map(|_| ())
}

/// Checks a statement of the admin path for global tables: it may write global tables, and it
/// may not touch any tenant table at all (that would copy tenant data into shared tables).
pub fn check_global_write(sql: &str, tables: &Tables) -> Result<(), Violation> {
    run_checker(sql, tables, &|_| false, true).map(|_| ())
}

/// The requirements `sql` places on the registry, with every table treated as a possible
/// tenant table and no function registered: structural violations (`set_config`, an unsafe
/// built-in, a custom operator, non-DML, unparsable) are reported here; whether each
/// requirement holds, including that every [`Requirement::Function`] is registered, is decided
/// later against the real registry.
pub fn requirements(
    sql: &str,
    is_org_param: &dyn Fn(&str) -> bool,
) -> Result<Vec<Requirement>, Violation> {
    run_checker(sql, &Tables::symbolic(), is_org_param, false)
}

/// [`requirements`] with no function registered: for SQL a person gives (the break-glass
/// session, the probe's seeders), which may call the built-ins known to be safe and nothing
/// else.
///
/// # Errors
/// The structural violation, or [`Violation::UnknownFunction`] for the first function that
/// is not such a built-in.
pub fn requirements_with_builtins_only(
    sql: &str,
    is_org_param: &dyn Fn(&str) -> bool,
) -> Result<Vec<Requirement>, Violation> {
    let requirements = requirements(sql, is_org_param)?;
    match requirements.iter().find_map(|r| match r {
        Requirement::Function { name } => Some(name.clone()),
        _ => None,
    }) {
        Some(name) => Err(Violation::UnknownFunction { name }),
        None => Ok(requirements),
    }
}

/// The walk alone, without the server's reading: what the evaluation of the two parsers
/// compares with.
#[cfg(test)]
pub(crate) fn walk_only(
    sql: &str,
    tables: &Tables,
    is_org_param: &dyn Fn(&str) -> bool,
) -> Result<(), Violation> {
    walk(sql, tables, is_org_param, false).map(drop)
}

fn run_checker(
    sql: &str,
    tables: &Tables,
    is_org_param: &dyn Fn(&str) -> bool,
    global_writes: bool,
) -> Result<Vec<Requirement>, Violation> {
    let (statement, server, requirements) = walk(sql, tables, is_org_param, global_writes)?;
    crate::server_reading::agrees(&server, &statement, tables)?;
    crate::server_tree::same_tree(&server, &statement)?;
    Ok(requirements)
}

/// Parses `sql`, walks it and confirms every reference: the statement and what it requires.
fn walk(
    sql: &str,
    tables: &Tables,
    is_org_param: &dyn Fn(&str) -> bool,
    global_writes: bool,
) -> Result<(sqlparser::ast::Statement, ServerParse, Vec<Requirement>), Violation> {
    let (statement, server) = parse_both(sql)?;
    dml_only(&statement)?;
    // CTE names are derived tables whose own queries are checked where they are defined; the
    // walk tracks where each is visible.
    let mut checker = Checker::new(
        tables,
        is_org_param,
        global_writes,
        table_function_names(&statement),
    );
    if let ControlFlow::Break(v) = statement.visit(&mut checker) {
        return Err(v);
    }
    confirm(&checker.seen, checker.verified)?;
    if let Some(v) = checker.order {
        return Err(v);
    }
    Ok((statement, server, checker.requirements))
}

/// Every reference the visitor saw must have been confirmed by a scope check (each
/// confirmation counts once).
fn confirm(seen: &[String], mut verified: Vec<String>) -> Result<(), Violation> {
    for table in seen {
        match verified.iter().position(|v| v == table) {
            Some(i) => {
                verified.swap_remove(i);
            }
            None => {
                return Err(Violation::Unverifiable {
                    table: table.clone(),
                });
            }
        }
    }
    Ok(())
}

fn flow(result: Result<(), Violation>) -> ControlFlow<Violation> {
    match result {
        Ok(()) => ControlFlow::Continue(()),
        Err(v) => ControlFlow::Break(v),
    }
}

impl Visitor for Checker<'_> {
    type Break = Violation;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Violation> {
        self.ctes.enter(query);
        let definitions = crate::order::definitions(query);
        self.cte_frames.push(definitions.len());
        self.cte_definitions.extend(definitions);
        self.depth += 1;
        flow(supported_body(&query.body))?;
        // Other dialects' parts of a query, which PostgreSQL does not have.
        use sqlparser::ast::{LimitClause, OrderByKind};
        let foreign = [
            (
                query.for_clause.is_some(),
                "FOR XML / FOR JSON / FOR BROWSE",
            ),
            (query.settings.is_some(), "SETTINGS"),
            (query.format_clause.is_some(), "FORMAT"),
            (!query.pipe_operators.is_empty(), "a pipe operator (|>)"),
            (
                matches!(
                    query.limit_clause,
                    Some(LimitClause::OffsetCommaLimit { .. })
                ),
                "LIMIT <offset>, <count>",
            ),
            (
                matches!(&query.limit_clause, Some(LimitClause::LimitOffset { limit_by, .. }) if !limit_by.is_empty()),
                "LIMIT ... BY",
            ),
            (
                matches!(
                    query.order_by.as_ref().map(|o| &o.kind),
                    Some(OrderByKind::All(_))
                ),
                "ORDER BY ALL",
            ),
        ];
        if let Some((_, what)) = foreign.iter().find(|(present, _)| *present) {
            return ControlFlow::Break(Violation::UnsupportedExpression(format!(
                "{what}, which PostgreSQL does not have"
            )));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<Violation> {
        self.ctes.leave(query);
        let added = self.cte_frames.pop().unwrap_or(0);
        self.cte_definitions
            .truncate(self.cte_definitions.len().saturating_sub(added));
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Violation> {
        // `SELECT ... INTO t` creates a table (a temporary one with TEMP): an object that
        // outlives the statement, holding rows for whoever reads it next.
        if select.into.is_some() {
            return ControlFlow::Break(Violation::UnsupportedStatement("SELECT INTO".into()));
        }
        // Other dialects' clauses, which PostgreSQL does not have: whatever sqlparser made of
        // them is not what the server would run (it refuses them, but only once sent).
        let foreign = [
            (select.top.is_some(), "TOP"),
            (select.qualify.is_some(), "QUALIFY"),
            (!select.connect_by.is_empty(), "CONNECT BY / START WITH"),
            (!select.lateral_views.is_empty(), "LATERAL VIEW"),
            (select.prewhere.is_some(), "PREWHERE"),
            (!select.cluster_by.is_empty(), "CLUSTER BY"),
            (!select.distribute_by.is_empty(), "DISTRIBUTE BY"),
            (!select.sort_by.is_empty(), "SORT BY"),
            (select.value_table_mode.is_some(), "SELECT AS VALUE/STRUCT"),
            (!select.optimizer_hints.is_empty(), "an optimizer hint"),
            (select.exclude.is_some(), "EXCLUDE"),
        ];
        if let Some((_, what)) = foreign.iter().find(|(present, _)| *present) {
            return ControlFlow::Break(Violation::UnsupportedExpression(format!(
                "{what}, which PostgreSQL does not have"
            )));
        }
        let from: Vec<&TableWithJoins> = select.from.iter().collect();
        self.check_scope(&from, select.selection.as_ref(), select.having.as_ref())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Violation> {
        flow(self.policy.table_factor(factor, &mut self.requirements))?;
        match factor {
            TableFactor::Table {
                name, args: None, ..
            } => self.see_relation(name),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Violation> {
        self.qualified_name(expr)?;
        self.org_parameter_type(expr)?;
        flow(self.policy.expr(expr, &mut self.requirements))
    }

    fn post_visit_select(&mut self, _: &Select) -> ControlFlow<Violation> {
        self.leave_scope();
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Violation> {
        if matches!(statement, Statement::Update(_) | Statement::Delete(_)) {
            self.leave_scope();
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Violation> {
        // An UPDATE or DELETE is no query: its own WHERE is the top level.
        if self.depth == 0 && matches!(statement, Statement::Update(_) | Statement::Delete(_)) {
            self.top_depth = 0;
        }
        match statement {
            Statement::Update(update) => self.check_update(update),
            Statement::Delete(delete) => self.check_delete(delete),
            Statement::Insert(insert) => self.check_insert(insert),
            _ => ControlFlow::Continue(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check_catalog_only;

    #[test]
    fn other_dialects_clauses_are_refused() {
        crate::story::assert_unverifiable(&[
            "SELECT name FROM customers WHERE org_id = $1 QUALIFY row_number() OVER () = 1",
            "SELECT name FROM customers WITH (NOLOCK) WHERE org_id = $1",
            "SELECT name FROM customers WHERE org_id = $1 START WITH org_id = $1 CONNECT BY PRIOR id = org_id",
            "SELECT name FROM customers WHERE org_id = $1 LIMIT 1, 2",
            "SELECT name FROM customers WHERE org_id = $1 |> WHERE true",
        ]);
    }

    #[test]
    fn select_into_that_would_create_a_table_is_refused() {
        let tables = crate::Tables::new([("invoices", Some("org_id"))]);
        for sql in [
            "SELECT * INTO copy FROM invoices WHERE org_id = $1",
            "SELECT * INTO TEMP copy FROM invoices WHERE org_id = $1",
        ] {
            assert_eq!(
                crate::check(sql, &tables, &|p| p == "$1"),
                Err(Violation::UnsupportedStatement("SELECT INTO".into())),
                "{sql}"
            );
        }
    }

    use crate::story::{run, tables};

    #[test]
    fn set_config_and_session_statements_are_refused() {
        assert_eq!(
            run(
                "SELECT id FROM invoices WHERE org_id = $1 AND set_config('tenant.org_id', 'x', true) IS NOT NULL"
            ),
            Err(Violation::ChangesSessionSetting("set_config".into()))
        );
        assert_eq!(
            run("SET tenant.org_id = 'x'"),
            Err(Violation::UnsupportedStatement("SET".into()))
        );
        assert_eq!(run("SELECT 1; SELECT 2"), Err(Violation::StatementCount(2)));
        assert!(matches!(
            run("SELEC nonsense"),
            Err(Violation::Unparsable(_))
        ));
    }

    #[test]
    fn unregistered_tables_and_opaque_constructs_are_refused() {
        assert_eq!(
            run("SELECT * FROM pg_stat_activity"),
            Err(Violation::UnregisteredTable {
                table: "pg_stat_activity".into()
            })
        );
        let table = run("TABLE invoices");
        // Refused either way: the parser rejects it, or the check cannot see into it.
        assert!(
            matches!(
                table,
                Err(Violation::Unverifiable { .. } | Violation::Unparsable(_))
            ),
            "{table:?}"
        );
    }

    #[test]
    fn a_reference_no_scope_check_confirmed_is_unverifiable() {
        assert_eq!(confirm(&[], Vec::new()), Ok(()));
        assert_eq!(
            confirm(&["a".into(), "a".into()], vec!["a".into(), "b".into()]),
            Err(Violation::Unverifiable { table: "a".into() })
        );
        assert_eq!(
            confirm(&["a".into(), "b".into()], vec!["b".into(), "a".into()]),
            Ok(())
        );
    }

    /// Every statement of the tests as they were before the function policy, with the verdict
    /// each entry point gave then (`testdata/existing_verdicts.tsv`: SQL, then the `Debug` of
    /// `check`, `check_global_write`, `check_catalog_only` and `requirements`): none changed.
    #[test]
    fn every_existing_statement_keeps_its_verdict() {
        let org = |p: &str| p == "$1" || p == "$org";
        let data = include_str!("testdata/existing_verdicts.tsv");
        let mut n = 0;
        for line in data.lines().filter(|l| !l.is_empty()) {
            let fields: Vec<&str> = line.split('\t').collect();
            let [sql, checked, global, catalog, required] = fields.as_slice() else {
                panic!("malformed line: {line}")
            };
            assert_eq!(
                format!("{:?}", check(sql, &tables(), &org)),
                *checked,
                "check: {sql}"
            );
            assert_eq!(
                format!("{:?}", check_global_write(sql, &tables())),
                *global,
                "check_global_write: {sql}"
            );
            assert_eq!(
                format!("{:?}", check_catalog_only(sql)),
                *catalog,
                "check_catalog_only: {sql}"
            );
            assert_eq!(
                format!("{:?}", requirements(sql, &org)),
                *required,
                "requirements: {sql}"
            );
            n += 1;
        }
        assert!(n >= 80, "{n} statements");
    }
}
