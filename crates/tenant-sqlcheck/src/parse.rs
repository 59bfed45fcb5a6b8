//! Parsing: the text becomes exactly one statement of a kind the check understands, and names
//! are compared the way PostgreSQL folds them.
//!
//! Invariant: nothing after this stage sees more or less than one statement, and a statement
//! or query body of a kind the later stages do not model (DDL, SET, COPY, `TABLE t`, ...) is
//! refused here, before anything is assumed about it.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart, SetExpr, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use crate::violation::Violation;

/// `sql` with the compile-time org placeholder `$org` (which PostgreSQL's grammar does not
/// have) written as a numbered parameter, `$65535`: only where `$org` is a whole word (a
/// dollar-quote tag `$org$` becomes unparsable, and is refused).
pub(crate) fn numbered(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains("$org") {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find("$org") {
        let after = &rest[at + 4..];
        let whole = !after
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        out.push_str(&rest[..at]);
        out.push_str(if whole { "$65535" } else { "$org" });
        rest = after;
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// How deep expressions and queries may nest for sqlparser (its default is 50): a debug
/// build's parse of fifty unary `+` overflowed a 2 MB thread stack (a test thread's, a tokio
/// worker's) and aborted the process. A deeper statement is refused.
const RECURSION_LIMIT: usize = 30;

/// How deep PostgreSQL's tree of a statement may be (nodes below the statement). Some forms
/// nest in sqlparser without counting towards its limit (thirty `NOT`s overflowed a 2 MB
/// stack in a debug build's parse, twenty-two did not, and PostgreSQL's tree of those is 26
/// deep), so the depth is measured on PostgreSQL's tree, before sqlparser runs. The
/// repository's corpora of ordinary statements reach 13; sub-queries take three levels each.
const MAX_TREE_DEPTH: i32 = 26;

/// PostgreSQL's parse of `sql` (its `$org` written as a numbered parameter), or the parser's
/// refusal: read once per check, by the depth limit here and by the server's reading and tree.
pub(crate) type ServerParse = Result<pg_query::ParseResult, String>;

/// PostgreSQL's parse of `sql`.
pub(crate) fn server_parse(sql: &str) -> ServerParse {
    pg_query::parse(&numbered(sql), pg_query::ParserOptions::DEFAULT).map_err(|e| e.to_string())
}

/// Refuses `sql` (whose PostgreSQL parse is `server`) when its PostgreSQL tree is deeper than
/// [`MAX_TREE_DEPTH`]; when PostgreSQL's parser refuses the text (which a later stage refuses
/// too, after sqlparser's own message), when its nesting as the tokens show it (open
/// parentheses, plus a run of `NOT`s and prefix operators) is.
fn shallow_enough(sql: &str, server: &ServerParse) -> Result<(), Violation> {
    let depth = match server {
        Ok(parsed) => parsed
            .protobuf
            .nodes()
            .iter()
            .map(|n| n.1)
            .max()
            .unwrap_or(0),
        Err(_) => token_nesting(sql),
    };
    if depth > MAX_TREE_DEPTH {
        return Err(Violation::Unparsable(format!(
            "the statement nests {depth} levels deep, more than the {MAX_TREE_DEPTH} the check \
             reads (recursion limit): name the inner parts with WITH, or split the statement"
        )));
    }
    Ok(())
}

/// The nesting the tokens of `sql` show: at each token, the parentheses open plus the length
/// of the run of `NOT`s and operators it ends.
fn token_nesting(sql: &str) -> i32 {
    use sqlparser::keywords::Keyword;
    let Ok(tokens) = sqlparser::tokenizer::Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize()
    else {
        return 0;
    };
    let (mut open, mut run, mut max) = (0i32, 0i32, 0i32);
    for token in tokens {
        match token {
            Token::Whitespace(_) => continue,
            Token::LParen => open += 1,
            Token::RParen => open = open.saturating_sub(1),
            Token::Word(w) if w.keyword == Keyword::NOT => run += 1,
            Token::Plus
            | Token::Minus
            | Token::Tilde
            | Token::ExclamationMark
            | Token::AtSign
            | Token::Sharp
            | Token::Caret
            | Token::Ampersand
            | Token::Pipe => run += 1,
            _ => run = 0,
        }
        max = max.max(open.saturating_add(run));
    }
    max
}

/// Parses `sql` as PostgreSQL and returns its only statement.
///
/// The parser must use up every token: `Parser::parse_sql` stops without an error at an
/// `END` after a statement (`SELECT c.name end FROM customers c` was the whole statement
/// `SELECT c.name` to it, and `c.name AS "end"` from every row of `customers` to the server),
/// so one statement is parsed and then nothing but `;` may follow.
pub(crate) fn parse_one(sql: &str) -> Result<Statement, Violation> {
    parse_both(sql).map(|(statement, _)| statement)
}

/// [`parse_one`], and PostgreSQL's parse of the same text, which the later stages read.
pub(crate) fn parse_both(sql: &str) -> Result<(Statement, ServerParse), Violation> {
    crate::lexical::same_tokens_as_postgresql(sql)?;
    let server = server_parse(sql);
    shallow_enough(sql, &server)?;
    // sqlparser's recursion takes far more stack per level than its limit accounts for in a
    // debug build (twenty nested parentheses in a FROM overflowed a 2 MB thread stack and
    // aborted the process): with less than the red zone left, the parse runs on a stack of
    // its own (`stacker` maps one for the call).
    let statement = stacker::maybe_grow(RED_ZONE, PARSE_STACK, || parse_with_sqlparser(sql))?;
    Ok((statement, server))
}

/// The stack a parse may need at the limits above, with room to spare: measured by
/// `deeply_nested_statements_fit_in_a_two_megabyte_stack` in both profiles.
const RED_ZONE: usize = if cfg!(debug_assertions) {
    8 << 20
} else {
    512 << 10
};

/// The stack a parse runs on when the caller's has less than [`RED_ZONE`] left.
const PARSE_STACK: usize = 32 << 20;

fn parse_with_sqlparser(sql: &str) -> Result<Statement, Violation> {
    let unparsable = |e: sqlparser::parser::ParserError| Violation::Unparsable(e.to_string());
    let mut parser = Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(sql)
        .map_err(unparsable)?;
    if parser.peek_token().token == Token::EOF {
        return Err(Violation::StatementCount(0));
    }
    let statement = parser.parse_statement().map_err(unparsable)?;
    let mut semicolon = false;
    while parser.consume_token(&Token::SemiColon) {
        semicolon = true;
    }
    match parser.peek_token().token {
        Token::EOF => Ok(statement),
        _ if semicolon => Err(Violation::StatementCount(2)),
        rest => Err(Violation::Unparsable(format!(
            "the statement ends before the text does, at `{rest}`: PostgreSQL would read on"
        ))),
    }
}

/// Refuses every statement kind but SELECT (a query), INSERT, UPDATE and DELETE.
pub(crate) fn dml_only(statement: &Statement) -> Result<(), Violation> {
    match statement {
        Statement::Query(_)
        | Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_) => Ok(()),
        other => Err(Violation::UnsupportedStatement(first_keyword(
            &other.to_string(),
        ))),
    }
}

/// Refuses every statement kind but a query (SELECT, VALUES, set operations, WITH).
pub(crate) fn query_only(statement: &Statement) -> Result<(), Violation> {
    match statement {
        Statement::Query(_) => Ok(()),
        other => Err(Violation::UnsupportedStatement(first_keyword(
            &other.to_string(),
        ))),
    }
}

/// Refuses a query body the scope check cannot see into: `TABLE t` (a tenant table read with
/// no place for a predicate), and DML nested as a query body.
pub(crate) fn supported_body(body: &SetExpr) -> Result<(), Violation> {
    match body {
        SetExpr::Select(_) | SetExpr::Query(_) | SetExpr::Values(_) => Ok(()),
        SetExpr::SetOperation { left, right, .. } => {
            supported_body(left)?;
            supported_body(right)
        }
        SetExpr::Table(t) => Err(Violation::Unverifiable {
            table: t.table_name.as_ref().map(ident).unwrap_or_default(),
        }),
        // A write as the body of a query: `WITH ... UPDATE`, named so.
        other => Err(Violation::UnsupportedStatement(format!(
            "WITH ... {}",
            first_keyword(&other.to_string())
        ))),
    }
}

/// The first word of `text`, uppercased: how a refused statement is named.
fn first_keyword(text: &str) -> String {
    text.split_whitespace().next().unwrap_or("?").to_uppercase()
}

/// An identifier as PostgreSQL folds it (see [`fold`]): what table names, aliases and CTE
/// names are compared by. Folding more than PostgreSQL does (Unicode case) would make two
/// names the server keeps apart (`ç` and `Ç`, `k` and the Kelvin sign) one name here.
pub(crate) fn ident(id: &Ident) -> String {
    fold(id)
}

/// The last part of `name` (the relation, without its schema), as [`ident`] folds it.
pub(crate) fn last_ident(name: &ObjectName) -> Option<String> {
    match name.0.last()? {
        ObjectNamePart::Identifier(id) => Some(ident(id)),
        _ => None,
    }
}

/// An identifier exactly as PostgreSQL folds it: quoted ones as written, unquoted ones with
/// ASCII letters lowercased (and nothing else: PostgreSQL does not fold other letters in
/// UTF-8 databases).
pub(crate) fn fold(id: &Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_ascii_lowercase()
    }
}

/// Every part of a (possibly qualified) name as PostgreSQL folds it; `None` when a part is not
/// a plain identifier, or is empty or contains a dot (which would make `"a.b"` look like the
/// qualified `a.b`).
pub(crate) fn fold_name(name: &ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(id) => {
                let folded = fold(id);
                (!folded.is_empty() && !folded.contains('.')).then_some(folded)
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(sql_expr: &str) -> ObjectName {
        let sql = format!("SELECT {sql_expr}(1)");
        let Statement::Query(q) = parse_one(&sql).unwrap() else {
            panic!("not a query")
        };
        let SetExpr::Select(s) = *q.body else {
            panic!("not a select")
        };
        let sqlparser::ast::SelectItem::UnnamedExpr(sqlparser::ast::Expr::Function(f)) =
            &s.projection[0]
        else {
            panic!("not a function")
        };
        f.name.clone()
    }

    #[test]
    fn the_parser_must_read_the_whole_text() {
        use crate::story::run;
        for sql in [
            "SELECT c.name end FROM customers c",
            "SELECT 1 end, set_config('tenant.org_id', $1, true) WHERE $2::uuid IS NOT NULL",
            "SELECT c.name AS name, 1 end FROM customers c WHERE $1::uuid IS NOT NULL",
        ] {
            assert!(
                matches!(run(sql), Err(crate::Violation::Unparsable(m)) if m.contains("ends before the text does")),
                "{sql}: {:?}",
                run(sql)
            );
        }
        assert_eq!(
            run("SELECT 1; SELECT 2"),
            Err(crate::Violation::StatementCount(2))
        );
        assert_eq!(run(""), Err(crate::Violation::StatementCount(0)));
        assert_eq!(run("SELECT name FROM customers WHERE org_id = $1;"), Ok(()));
        // END closing a CASE is part of the statement.
        assert_eq!(
            run("SELECT CASE WHEN org_id = $1 THEN 1 END FROM customers WHERE org_id = $1"),
            Ok(())
        );
    }

    #[test]
    fn a_word_the_parser_drops_is_refused() {
        use crate::story::run;
        for sql in [
            "SELECT global.email FROM customers global, (SELECT $1::uuid AS org_id) AS customers \
             WHERE customers.org_id = $1",
            "UPDATE customers GLOBAL SET name = 'x' FROM (SELECT $1::uuid AS org_id) AS customers \
             WHERE customers.org_id = $1",
            "SELECT (global.ts_stat)::text FROM unnest(ARRAY[$2::text]) global WHERE $1::uuid IS NOT NULL",
        ] {
            assert!(
                matches!(run(sql), Err(crate::Violation::UnsupportedExpression(w)) if w.contains("`global`") || w.contains("`GLOBAL`")),
                "{sql}"
            );
        }
        // Quoted, it is an ordinary name.
        assert_eq!(
            run("SELECT \"global\".email FROM customers \"global\" WHERE \"global\".org_id = $1"),
            Ok(())
        );
    }

    #[test]
    fn names_fold_as_postgresql_folds_them_ascii_only() {
        use crate::story::run;
        // To the server, `Ç` and `ç` are two names: `ç.org_id` is the decoy's column.
        assert_eq!(
            run(
                "SELECT (SELECT string_agg(Ç.name, ',') FROM customers Ç WHERE ç.org_id = $1) \
                 FROM (SELECT $1::uuid AS org_id) AS ç"
            ),
            Err(crate::Violation::MissingOrgPredicate { table: "Ç".into() })
        );
        // The Kelvin sign is not a `k`: this CTE does not hide the real pg_locks.
        assert_eq!(
            run(
                "WITH pg_loc\u{212A}s AS (SELECT 1 AS x) SELECT locktype FROM pg_locks WHERE $1::uuid IS NOT NULL"
            ),
            Err(crate::Violation::UnregisteredTable {
                table: "pg_locks".into()
            })
        );
    }

    #[test]
    fn exactly_one_statement_parses() {
        assert!(parse_one("SELECT 1").is_ok());
        assert_eq!(
            parse_one("SELECT 1; SELECT 2"),
            Err(Violation::StatementCount(2))
        );
        assert_eq!(parse_one(""), Err(Violation::StatementCount(0)));
        assert!(matches!(
            parse_one("SELEC nonsense"),
            Err(Violation::Unparsable(_))
        ));
    }

    #[test]
    fn only_dml_statements_are_accepted() {
        let kind = |sql: &str| dml_only(&parse_one(sql).unwrap());
        assert_eq!(kind("SELECT 1"), Ok(()));
        assert_eq!(kind("DELETE FROM t"), Ok(()));
        assert_eq!(
            kind("SET tenant.org_id = 'x'"),
            Err(Violation::UnsupportedStatement("SET".into()))
        );
        assert_eq!(
            kind("DROP TABLE invoices"),
            Err(Violation::UnsupportedStatement("DROP".into()))
        );
        assert_eq!(
            query_only(&parse_one("DELETE FROM pg_class").unwrap()),
            Err(Violation::UnsupportedStatement("DELETE".into()))
        );
    }

    #[test]
    fn names_fold_like_postgresql() {
        assert_eq!(
            fold_name(&name_of("PG_CATALOG.QUERY_TO_XML")),
            Some(vec!["pg_catalog".into(), "query_to_xml".into()])
        );
        assert_eq!(
            fold_name(&name_of(r#""Query_To_Xml""#)),
            Some(vec!["Query_To_Xml".into()])
        );
        // A quoted dot is part of one name, not a schema separator: refused.
        assert_eq!(fold_name(&name_of(r#""pg_catalog.lower""#)), None);
        // Only ASCII letters fold (the Kelvin sign stays what it is).
        assert_eq!(
            fold_name(&name_of("LOWER\u{212A}")),
            Some(vec!["lower\u{212A}".into()])
        );
    }
}

#[cfg(test)]
mod depth_tests {
    use crate::Violation;

    /// `check` of `sql` on a thread with a 2 MB stack (a test thread's, a tokio worker's):
    /// an overflow aborts the whole process, so this returns only if it fits.
    fn check_on_small_stack(sql: String) -> Result<(), Violation> {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || crate::check(&sql, &crate::story::tables(), &|p: &str| p == "$1"))
            .unwrap()
            .join()
            .unwrap()
    }

    /// `parse_one` of `sql` on a thread with just over the red zone of stack, where the
    /// parse runs in place: the red zone must hold the deepest parse the limits allow.
    fn parse_in_the_red_zone(sql: String) {
        std::thread::Builder::new()
            .stack_size(super::RED_ZONE + (64 << 10))
            .spawn(move || {
                let _ = super::parse_one(&sql);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn deeply_nested_statements_fit_in_a_two_megabyte_stack() {
        let scoped = |expr: &str| {
            format!("SELECT c.name FROM customers c WHERE c.org_id = $1 AND {expr} IS NOT NULL")
        };
        type Shape = (&'static str, fn(usize) -> String);
        let shapes: [Shape; 4] = [
            ("unary plus", |n| format!("{}1", "+".repeat(n))),
            ("parentheses", |n| {
                format!("{}1{}", "(".repeat(n), ")".repeat(n))
            }),
            ("negations", |n| format!("{}true", "NOT ".repeat(n))),
            ("sub-queries", |n| {
                format!("{}1{}", "(SELECT ".repeat(n), ")".repeat(n))
            }),
        ];
        for (what, shape) in shapes {
            // Deep, and a text PostgreSQL's parser refuses: measured on the tokens.
            assert!(
                matches!(
                    check_on_small_stack(format!("SELECT {} FROM WHERE", shape(500))),
                    Err(Violation::Unparsable(m)) if m.contains("levels deep") || m.contains("recursion limit")
                ),
                "{what}"
            );
            // Just under the limit: checked to the end, every stage (both parsers, the walk,
            // the tree written back and compared) on the small stack.
            let under =
                check_on_small_stack(scoped(&shape(if what == "sub-queries" { 6 } else { 22 })));
            assert!(
                !matches!(&under, Err(Violation::Unparsable(m)) if m.contains("recursion limit")),
                "{what}: {under:?}"
            );
            for depth in [22, 30, 60] {
                parse_in_the_red_zone(scoped(&shape(depth)));
                parse_in_the_red_zone(format!(
                    "SELECT x FROM {}t{}",
                    "(".repeat(depth),
                    ")".repeat(depth)
                ));
            }
            // Far over it: refused, not a crash.
            assert!(
                matches!(
                    check_on_small_stack(scoped(&shape(500))),
                    Err(Violation::Unparsable(m)) if m.contains("levels deep") || m.contains("recursion limit")
                ),
                "{what}"
            );
        }
    }
}
