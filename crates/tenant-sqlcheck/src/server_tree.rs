//! The server's tree: the statement as `sqlparser` read it, written back with every
//! expression in parentheses, must be the same tree to PostgreSQL's parser as the text itself.
//!
//! The stages before judge the statement's shape on `sqlparser`'s tree: which conjunct is a
//! top-level `AND` term, which side of a join an `ON` belongs to, what an operator applies
//! to. `server_reading` makes sure both parsers see the same names; this stage makes sure they
//! see the same structure. Written back with each expression parenthesized, `sqlparser`'s
//! tree leaves PostgreSQL no precedence, associativity or grouping of its own to choose: if
//! PostgreSQL's parser then builds the same raw tree from that text as from the original
//! (compared as PostgreSQL's own deparser writes each tree), every judgement made on
//! `sqlparser`'s tree holds for the tree the server runs. Where the two differ (an operator
//! `sqlparser` binds otherwise, `org_id = $1 IS NOT NULL`, which the server reads as
//! `(org_id = $1) IS NOT NULL`), or PostgreSQL cannot read the writing back, the statement is
//! refused.
//!
//! Invariant: this stage only ever refuses.

use std::ops::ControlFlow;

use sqlparser::ast::{
    AccessExpr, Expr, FunctionArg, FunctionArguments, Statement, Value, VisitMut, VisitorMut,
};

use crate::parse::{ServerParse, server_parse};
use crate::violation::Violation;

/// `statement` written back with every expression in parentheses (but where PostgreSQL's
/// grammar has a name or a literal's text, not an expression, in that place).
fn parenthesized(statement: &Statement) -> String {
    let mut statement = statement.clone();
    let _ = statement.visit(&mut Parenthesize);
    statement.to_string()
}

/// Wraps each expression once its own expressions are wrapped (post-order), and takes the
/// parentheses off again where the grammar wants a bare name or literal: the field after a
/// dot (`(r).f`), a name a subscript follows (`i.tags[1]`), an argument's name (`f(days => 1)`), an interval's text (`INTERVAL '1 day'`).
struct Parenthesize;

impl VisitorMut for Parenthesize {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::CompoundFieldAccess { root, access_chain } => {
                // `i.tags[1]`: one column reference with a subscript to PostgreSQL, where
                // `(i).tags[1]` is a field of the whole row `i`.
                if matches!(root.as_ref(), Expr::Nested(n) if matches!(n.as_ref(), Expr::Identifier(_) | Expr::CompoundIdentifier(_)))
                {
                    unwrap(root);
                }
                for access in access_chain {
                    if let AccessExpr::Dot(field) = access {
                        unwrap(field);
                    }
                }
            }
            Expr::Interval(interval) => unwrap(&mut interval.value),
            Expr::Function(f) => {
                if let FunctionArguments::List(list) = &mut f.args {
                    for arg in &mut list.args {
                        if let FunctionArg::ExprNamed { name, .. } = arg {
                            unwrap(name);
                        }
                    }
                }
            }
            _ => {}
        }
        if !matches!(expr, Expr::Nested(_)) {
            let inner = std::mem::replace(expr, Expr::Value(Value::Null.into()));
            *expr = Expr::Nested(Box::new(inner));
        }
        ControlFlow::Continue(())
    }
}

/// `(e)` back to `e`.
fn unwrap(expr: &mut Expr) {
    if let Expr::Nested(inner) = expr {
        let inner = std::mem::replace(inner.as_mut(), Expr::Value(Value::Null.into()));
        *expr = inner;
    }
}

/// PostgreSQL's raw tree (`server`, its parse of a text), every node and field of it but where in the text each
/// node was (`location` and `*_location`, `stmt_len`, `*list_start`, `*list_end`).
fn server_tree(server: &ServerParse) -> Result<String, String> {
    let parsed = server.as_ref().map_err(String::clone)?;
    Ok(without_locations(&format!("{:?}", parsed.protobuf)))
}

/// `tree` (a protobuf tree's `Debug` writing) with every location and length field's value
/// written as 0.
fn without_locations(tree: &str) -> String {
    let mut out = String::with_capacity(tree.len());
    let mut rest = tree;
    while let Some(at) = ["location: ", "stmt_len: ", "list_start: ", "list_end: "]
        .iter()
        .filter_map(|field| rest.find(field).map(|i| i + field.len()))
        .min()
    {
        out.push_str(&rest[..at]);
        out.push('0');
        rest = rest[at..].trim_start_matches(|c: char| c.is_ascii_digit() || c == '-');
    }
    out.push_str(rest);
    out
}

/// Refuses `statement` (`sqlparser`'s reading of a text whose PostgreSQL parse is `server`)
/// unless PostgreSQL's parser reads the same tree in the text as in `statement` written back
/// with every expression parenthesized.
pub(crate) fn same_tree(server: &ServerParse, statement: &Statement) -> Result<(), Violation> {
    let server = server_tree(server)
        .map_err(|e| Violation::Unparsable(format!("PostgreSQL's parser refuses it: {e}")))?;
    let written = parenthesized(statement);
    let ours = server_tree(&server_parse(&written)).map_err(|e| {
        Violation::ParserDisagreement(format!(
            "the check's reading, written back as `{written}`, is not SQL to PostgreSQL ({e})"
        ))
    })?;
    if server != ours {
        return Err(Violation::ParserDisagreement(format!(
            "PostgreSQL reads the statement as `{server}` and the check read it as `{ours}`"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Violation;

    /// `sql` as `sqlparser` alone reads it: without the lexical stage, which refuses some of
    /// these texts before either parser sees them (this stage must hold without it).
    fn sqlparser_reading(sql: &str) -> Statement {
        let mut statements =
            sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, sql)
                .unwrap();
        assert_eq!(statements.len(), 1, "{sql}");
        statements.remove(0)
    }

    #[test]
    fn an_operator_sqlparser_binds_otherwise_is_a_disagreement() {
        // PostgreSQL binds unary minus tighter than `^`: `(-2) ^ 2`; sqlparser reads `-(2 ^ 2)`.
        let sql = "SELECT c.name FROM customers c WHERE c.org_id = $1 AND - 2 ^ 2 = 4";
        assert_eq!(
            parenthesized(&sqlparser_reading(sql)),
            "SELECT (c.name) FROM customers c WHERE (((c.org_id) = ($1)) AND ((-((2) ^ (2))) = (4)))"
        );
        assert!(matches!(
            same_tree(&server_parse(sql), &sqlparser_reading(sql)),
            Err(Violation::ParserDisagreement(m)) if m.starts_with("PostgreSQL reads the statement as")
        ));
        // Written as the server reads it, it is the same tree.
        let sql = "SELECT c.name FROM customers c WHERE c.org_id = $1 AND (- 2) ^ 2 = 4";
        assert_eq!(
            same_tree(&server_parse(sql), &sqlparser_reading(sql)),
            Ok(())
        );
    }

    #[test]
    fn precedence_both_parsers_share_is_the_same_tree() {
        for sql in [
            "SELECT c.name FROM customers c WHERE c.org_id = $1 IS NOT NULL",
            "SELECT c.name FROM customers c WHERE NOT c.org_id = $1 AND c.org_id = $1",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND c.name || 'a' = 'b' IS NULL",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 OR c.name = 'x' AND c.org_id = $1",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND 1 - 1 - 1 = -1 AND 2 ^ 3 ^ 2 = 64",
            "SELECT c.name FROM customers c WHERE c.org_id = $1::uuid AND c.id::text COLLATE \"C\" = 'x'",
            "UPDATE deals d SET title = d.title || 'x' WHERE d.org_id = $1 RETURNING d.title",
        ] {
            assert_eq!(
                same_tree(&server_parse(sql), &sqlparser_reading(sql)),
                Ok(()),
                "{sql}"
            );
        }
    }

    #[test]
    fn the_original_differentials_are_refused_without_the_lexical_stage() {
        // The three disagreements the stages were built for, each as `sqlparser` alone reads
        // it (the lexical stage refuses the first before either parser runs).
        // 1. A Unicode-escaped name: `u & "\0073et_config"(..)` to sqlparser, the call
        //    `set_config(..)` to the server.
        let sql = r#"SELECT c.name FROM customers c WHERE c.org_id = $1 AND U&"\0073et_config"('tenant.org_id', $2, true) IS NOT NULL"#;
        assert!(matches!(
            same_tree(&server_parse(sql), &sqlparser_reading(sql)),
            Err(Violation::ParserDisagreement(_))
        ));
        assert!(matches!(
            crate::server_reading::agrees(&server_parse(sql), &sqlparser_reading(sql), &crate::story::tables()),
            Err(Violation::ParserDisagreement(m)) if m.contains("`set_config`")
        ));
        // 2. A function in FROM: what one parser takes for a relation, the other for a call.
        //    Built by hand (sqlparser's reading of a table, the server's of the function).
        let sql = "SELECT s.* FROM customers c, set_config('tenant.org_id', $2, true) s WHERE c.org_id = $1";
        let other = sqlparser_reading(
            "SELECT s.* FROM customers c, generate_series(1, 2) s WHERE c.org_id = $1",
        );
        assert!(matches!(
            same_tree(&server_parse(sql), &other),
            Err(Violation::ParserDisagreement(_))
        ));
        // 3. A CTE scope: `customers` declared in an inner scope, read in the outer one where
        //    it is the real table.
        let sql = "SELECT c.name FROM (WITH customers AS (SELECT $1::uuid AS org_id, 'x' AS name) \
                   SELECT 1) s, customers c WHERE c.org_id = $1";
        assert!(matches!(
            crate::check(sql, &crate::story::tables(), &|p: &str| p == "$1"),
            Err(Violation::UnsupportedExpression(m)) if m.contains("a CTE named `customers`")
        ));
    }
}
