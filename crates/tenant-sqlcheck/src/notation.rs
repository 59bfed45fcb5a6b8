//! PostgreSQL's functional notation: `x.f` and `(x).f`, where `f` is not a column or field of
//! `x`, is the call `f(x)`.
//!
//! Invariant: a name qualified by a FROM-item function (`unnest(..) AS q`) is one of the
//! columns the statement declares for it (`AS q(col, ...)`); anything else could be a call of
//! any one-argument function, `ts_stat` (which runs SQL given as text) among them. The checker
//! does not know a table's columns, but a FROM function's are in the statement.

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{AccessExpr, Expr, Statement, TableFactor, Visit, Visitor};

use crate::parse::{ident, last_ident};
use crate::violation::Violation;

/// The FROM-item functions of `statement` (`unnest(..) AS q`, `generate_series(..)`), by the
/// name that qualifies their columns, with the column names they declare (`AS q(v)`).
///
/// Why: PostgreSQL reads `q.name`, where `name` is not a column of `q`, as the call
/// `name(q)` (its functional notation), and the value of a function returning a scalar is
/// that scalar: `FROM unnest($1::text[]) AS q ... q.ts_stat` runs the SQL in `$1`. The checker
/// does not know a relation's columns, but it knows these: only the declared ones.
pub(crate) fn table_function_names(statement: &Statement) -> HashMap<String, Vec<String>> {
    struct Collector(HashMap<String, Vec<String>>);
    impl Visitor for Collector {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            let (name, alias) = match factor {
                TableFactor::Table {
                    name,
                    alias,
                    args: Some(_),
                    ..
                }
                | TableFactor::Function { name, alias, .. } => (last_ident(name), alias),
                TableFactor::UNNEST { alias, .. } => (Some("unnest".to_owned()), alias),
                _ => return ControlFlow::Continue(()),
            };
            let qualifier = alias.as_ref().map(|a| ident(&a.name)).or(name);
            let columns: Vec<String> = alias
                .as_ref()
                .map(|a| a.columns.iter().map(|c| ident(&c.name)).collect())
                .unwrap_or_default();
            if let Some(q) = qualifier {
                self.0.entry(q).or_default().extend(columns);
            }
            ControlFlow::Continue(())
        }
    }
    let mut collector = Collector(HashMap::new());
    let _ = statement.visit(&mut collector);
    collector.0
}

/// Refuses the forms of a name PostgreSQL may read as a function call whatever the columns:
/// `(expr).name` (a field of a composite value, or the call `name(expr)`: `('SELECT ..').ts_stat`
/// runs SQL), a second dot (`k.col.f`), and names of three parts or more (`a.b.c` is
/// `schema.table.column`, or a field or call of column `a.b`). `k.conkey[1]`, a qualified
/// column then a subscript, passes.
pub(crate) fn field_selection(expr: &Expr) -> Result<(), Violation> {
    match expr {
        Expr::CompoundFieldAccess { root, access_chain }
            if !dots_name_a_column(root, access_chain) =>
        {
            Err(Violation::UnsupportedExpression(
                "a field selection `(...).name`, which PostgreSQL may read as a call of the function `name`"
                    .into(),
            ))
        }
        Expr::CompoundIdentifier(parts) if parts.len() > 2 => {
            Err(Violation::UnsupportedExpression(format!(
                "the name `{expr}` of three parts or more, which PostgreSQL may read as a call of \
                 the function `{}`",
                parts.last().map(|p| p.value.as_str()).unwrap_or_default()
            )))
        }
        _ => Ok(()),
    }
}

/// Whether the dots of a field access only qualify a column (`k.conkey[1]`): at most one dot,
/// right after a plain name, before any subscript.
fn dots_name_a_column(root: &Expr, chain: &[AccessExpr]) -> bool {
    let dots = chain
        .iter()
        .filter(|a| matches!(a, AccessExpr::Dot(_)))
        .count();
    match dots {
        0 => true,
        1 => {
            matches!(root, Expr::Identifier(_))
                && matches!(chain.first(), Some(AccessExpr::Dot(Expr::Identifier(_))))
        }
        _ => false,
    }
}

/// Refuses `q.name` where `q` is a FROM-item function of `table_functions` and `name` not one
/// of its declared columns.
pub(crate) fn qualified_name(
    table_functions: &HashMap<String, Vec<String>>,
    expr: &Expr,
) -> ControlFlow<Violation> {
    let (qualifier, name) = match expr {
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => (
            ident(&parts[parts.len() - 2]),
            ident(&parts[parts.len() - 1]),
        ),
        Expr::CompoundFieldAccess { root, access_chain } => {
            match (root.as_ref(), access_chain.first()) {
                (Expr::Identifier(q), Some(AccessExpr::Dot(Expr::Identifier(n)))) => {
                    (ident(q), ident(n))
                }
                _ => return ControlFlow::Continue(()),
            }
        }
        _ => return ControlFlow::Continue(()),
    };
    match table_functions.get(&qualifier) {
        Some(columns) if !columns.contains(&name) => {
            ControlFlow::Break(Violation::UnsupportedExpression(format!(
                "`{qualifier}.{name}`, where `{qualifier}` is a function in FROM: PostgreSQL \
                     may read it as the call `{name}({qualifier})`; declare the function's columns \
                     (`AS {qualifier}(col, ...)`) and name one of them"
            )))
        }
        _ => ControlFlow::Continue(()),
    }
}

#[cfg(test)]
mod tests {
    use crate::Violation;
    use crate::story::run;

    #[test]
    fn a_name_qualified_by_a_from_function_is_one_of_its_declared_columns() {
        let call = |q: &str, n: &str| {
            Err(Violation::UnsupportedExpression(format!(
                "`{q}.{n}`, where `{q}` is a function in FROM: PostgreSQL may read it as the call \
                 `{n}({q})`; declare the function's columns (`AS {q}(col, ...)`) and name one of them"
            )))
        };
        assert_eq!(
            run("SELECT q.ts_stat::text FROM unnest($2::text[]) AS q WHERE $1::uuid IS NOT NULL"),
            call("q", "ts_stat")
        );
        assert_eq!(
            run(
                "SELECT g.pg_advisory_lock FROM generate_series(1, 2) AS g WHERE $1::uuid IS NOT NULL"
            ),
            call("g", "pg_advisory_lock")
        );
        assert_eq!(
            run("SELECT unnest.current_setting FROM unnest($2::text[]) WHERE $1::uuid IS NOT NULL"),
            call("unnest", "current_setting")
        );
        assert_eq!(
            run(
                "SELECT (SELECT (q.ts_stat)[1] FROM unnest($2::text[]) AS q) FROM invoices WHERE org_id = $1"
            ),
            call("q", "ts_stat")
        );
        // Declared columns are columns.
        assert_eq!(
            run("SELECT q.v FROM unnest($2::text[]) AS q(v) WHERE $1::uuid IS NOT NULL"),
            Ok(())
        );
    }
}
