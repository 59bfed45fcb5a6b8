//! Evaluation order: no condition that can fail on a row may run before the org predicate.
//!
//! The org predicate confines a table's rows only once it has run. PostgreSQL evaluates the
//! conditions a scan filters on cheapest first (`order_qual_clauses`: by cost, the order of
//! equals kept), and its planner moves conditions around before that: an equality with a
//! parameter goes into an equivalence class and comes back at the end of the list, a `NOT`
//! over an `OR` becomes separate conditions, a condition common to every arm of an `OR` is
//! pulled out of it, a sub-query or CTE without `LIMIT`/`OFFSET` is merged into the outer
//! query, and its outer conditions with it. A condition that costs no more than the org
//! predicate (one operator) can therefore meet other orgs' rows first; if it can fail
//! (`to_date(c.name, 'YYYY')`, `c.name::int4`, a division), its error, message and all, tells
//! what another org's row holds. Row-level security is safe from this (its policies are
//! security barriers); the check must be safe without it.
//!
//! The rule, on every boolean leaf (a condition once `AND`, `OR` and `NOT` are taken apart,
//! which is as far as the planner's rewriting reaches) of the WHERE and ON conditions of a
//! scope whose rows may come from a tenant table: the leaf cannot fail (comparisons of
//! columns, parameters and literals, `IS NULL`, `LIKE` with a pattern that is not a column,
//! the functions known not to fail), or it costs PostgreSQL at least two operators per row,
//! counted from below (a cast may cost nothing, a constant expression is folded), so the org
//! predicate, one operator, always runs first. A relation the planner cannot merge into the
//! scope is out of it: a sub-query with `LIMIT` or `OFFSET` (`OFFSET 0` is the fence the
//! refusal suggests), a global table, a table function.
//!
//! Invariant: this stage only ever refuses; what it cannot classify counts as able to fail.

use sqlparser::ast::{
    BinaryOperator, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, InTarget,
    ObjectName, TableWithJoins, UnaryOperator,
};

use crate::parse::fold_name;
use crate::violation::Violation;

mod relations;

pub(crate) use relations::{CteDefinition, OuterRelation, definitions};

use relations::{Scope, UNTRACED};

/// The WHERE, ON and HAVING conditions of one query level, and where it is.
pub(crate) struct Conditions<'q> {
    /// The FROM.
    pub(crate) from: &'q [&'q TableWithJoins],
    /// The WHERE.
    pub(crate) selection: Option<&'q Expr>,
    /// The HAVING (PostgreSQL moves a condition without an aggregate into the WHERE).
    pub(crate) having: Option<&'q Expr>,
    /// The CTEs visible here, innermost last.
    pub(crate) ctes: &'q [CteDefinition],
    /// Whether this is a sub-query, whose conditions may read an outer query's columns (and
    /// be pulled up into the outer scan with it).
    pub(crate) nested: bool,
    /// The merged sub-queries and CTEs of the enclosing queries, innermost last.
    pub(crate) outer: &'q [OuterRelation],
}

/// Refuses a condition of `level` that can fail on a row and may run before the org
/// predicate. `global` says whether a relation name is a global table. Also returns the
/// level's merged relations, which its sub-queries' conditions may read.
pub(crate) fn check(
    level: &Conditions<'_>,
    global: &dyn Fn(&ObjectName) -> bool,
) -> (Result<(), Violation>, Vec<OuterRelation>) {
    let mut conditions: Vec<&Expr> = level.selection.map(conjuncts).unwrap_or_default();
    let scope = Scope::new(level.from, level.ctes, level.outer, global, &mut conditions);
    (judge(&scope, conditions, level), scope.merged())
}

fn judge<'q>(
    scope: &Scope<'q>,
    mut conditions: Vec<&'q Expr>,
    level: &Conditions<'q>,
) -> Result<(), Violation> {
    // Every HAVING conjunct: one without an aggregate of this level (an outer query's is a
    // constant here) moves into the WHERE; one with its own stays after the aggregation,
    // where judging it only refuses more.
    conditions.extend(level.having.map(conjuncts).unwrap_or_default());
    for condition in conditions {
        if !scope.may_read_unfenced(condition, level.nested) {
            continue;
        }
        for leaf in leaves(condition) {
            let expanded = scope.expand(leaf);
            // A cast that can fail converts (a binary-compatible one cannot fail, and costs
            // nothing): when only casts can fail, one of them costs an operator.
            let cost = if can_fail(&expanded, false) {
                min_cost(&expanded)
            } else {
                min_cost(&expanded) + 1
            };
            if has_column(&expanded) && can_fail(&expanded, true) && cost < 2 {
                return Err(Violation::MayRunBeforeOrgPredicate {
                    condition: leaf.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// The placeholders (`$2`, ...) that appear in a pattern of `LIKE`, `ILIKE`, `SIMILAR TO` or
/// their operators (`~~`, ...) in `sql`: a caller that knows their values refuses one that
/// ends with the escape character `\\`, which fails on the rows that match the pattern's
/// prefix, and which PostgreSQL may test before the org predicate. Empty when `sql` does not
/// parse (the check refuses it anyway).
///
/// ```
/// assert_eq!(
///     tenant_sqlcheck::pattern_parameters("SELECT 1 FROM t WHERE t.a LIKE $2 AND t.b ~~* lower($3) AND t.c = $4"),
///     vec!["$2".to_owned(), "$3".to_owned()]
/// );
/// ```
pub fn pattern_parameters(sql: &str) -> Vec<String> {
    let Ok(statement) = crate::parse::parse_one(sql) else {
        return Vec::new();
    };
    let mut found: Vec<String> = Vec::new();
    let mut collect = |pattern: &Expr| {
        let _ = sqlparser::ast::visit_expressions(pattern, |e| {
            if let Expr::Value(v) = e
                && let sqlparser::ast::Value::Placeholder(p) = &v.value
            {
                found.push(p.clone());
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
    };
    let _ = sqlparser::ast::visit_expressions(&statement, |e| {
        match e {
            Expr::Like { pattern, .. }
            | Expr::ILike { pattern, .. }
            | Expr::SimilarTo { pattern, .. } => collect(pattern),
            Expr::BinaryOp { op, right, .. }
                if matches!(operator(op), Operator::FailsOnItsPattern) =>
            {
                collect(right);
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    found.sort();
    found.dedup();
    found
}

/// Splits `a AND b AND (c AND d)` into its conjuncts; anything under OR/NOT stays whole.
pub(crate) fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match strip(e) {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut v = conjuncts(left);
            v.extend(conjuncts(right));
            v
        }
        other => vec![other],
    }
}

/// `e` without its parentheses.
pub(crate) fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(inner) => strip(inner),
        other => other,
    }
}

/// `condition` taken apart at `AND`, `OR` and `NOT`.
fn leaves(condition: &Expr) -> Vec<&Expr> {
    match strip(condition) {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And | BinaryOperator::Or,
            right,
        } => {
            let mut out = leaves(left);
            out.extend(leaves(right));
            out
        }
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => leaves(expr),
        other => vec![other],
    }
}

/// Whether `e` names a column (anywhere in it, sub-queries included).
pub(super) fn has_column(e: &Expr) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(e, |e| {
        if matches!(
            e,
            Expr::Identifier(_)
                | Expr::CompoundIdentifier(_)
                | Expr::CompoundFieldAccess { .. }
                | Expr::QualifiedWildcard(..)
        ) || matches!(e, Expr::Function(f) if matches!(&f.args, FunctionArguments::List(l)
                if l.args.iter().any(|a| matches!(a, FunctionArg::Unnamed(FunctionArgExpr::QualifiedWildcard(_))))))
        {
            found = true;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    found
}

/// Functions that fail on no argument (beyond running out of memory): their failing depends
/// on their arguments' expressions only.
const CANNOT_FAIL: &[&str] = &[
    "btrim",
    "char_length",
    "character_length",
    "coalesce",
    "concat",
    "concat_ws",
    "initcap",
    "length",
    "lower",
    "ltrim",
    "md5",
    "octet_length",
    "rtrim",
    "upper",
];

/// The operand of a form that adds no operator of its own and cannot fail by itself
/// (parentheses, the `IS [NOT] NULL/TRUE/FALSE/UNKNOWN` tests, `COLLATE`): what [`can_fail`] and
/// [`min_cost`] look through.
fn operand(e: &Expr) -> Option<&Expr> {
    match e {
        Expr::Nested(inner)
        | Expr::IsNull(inner)
        | Expr::IsNotNull(inner)
        | Expr::IsTrue(inner)
        | Expr::IsNotTrue(inner)
        | Expr::IsFalse(inner)
        | Expr::IsNotFalse(inner)
        | Expr::IsUnknown(inner)
        | Expr::IsNotUnknown(inner)
        | Expr::Collate { expr: inner, .. } => Some(inner),
        _ => None,
    }
}

/// Whether evaluating `e` on a row can raise an error that depends on the row (a cast to
/// anything but text counted as able to, with `casts_fail`). Unknown forms can.
fn can_fail(e: &Expr, casts_fail: bool) -> bool {
    let can_fail = |e: &Expr| can_fail(e, casts_fail);
    if !has_column(e) {
        // A constant expression: the same for every row, folded or evaluated once.
        return false;
    }
    if let Some(inner) = operand(e) {
        return can_fail(inner);
    }
    let all = |xs: &[&Expr]| xs.iter().any(|x| can_fail(x));
    match e {
        Expr::Identifier(id) => id.value == UNTRACED,
        Expr::CompoundIdentifier(_) | Expr::Value(_) => false,
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => can_fail(expr),
        Expr::BinaryOp { left, op, right } => match operator(op) {
            Operator::CannotFail => {
                compares_as_container(left) || compares_as_container(right) || all(&[left, right])
            }
            Operator::FailsOnItsPattern => {
                has_column(right) || ends_with_escape(right) || can_fail(left)
            }
            Operator::MayFail => true,
        },
        Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
            compares_as_container(a) || compares_as_container(b) || all(&[a, b])
        }
        Expr::In {
            expr,
            target: InTarget::List(list),
            ..
        } => {
            compares_as_container(expr)
                || list.iter().any(compares_as_container)
                || can_fail(expr)
                || list.iter().any(&can_fail)
        }
        Expr::Between {
            expr, low, high, ..
        } => all(&[expr, low, high]),
        // A sub-query's own conditions are judged in its own scope; comparing with its
        // result fails only as the comparison does.
        Expr::In {
            expr,
            target: InTarget::Subquery(_),
            ..
        } => can_fail(expr),
        Expr::Exists { .. } | Expr::Subquery(_) => false,
        Expr::AnyOp {
            left,
            compare_op,
            right,
            ..
        }
        | Expr::AllOp {
            left,
            compare_op,
            right,
        } => {
            !matches!(
                compare_op,
                BinaryOperator::Eq
                    | BinaryOperator::NotEq
                    | BinaryOperator::Lt
                    | BinaryOperator::LtEq
                    | BinaryOperator::Gt
                    | BinaryOperator::GtEq
            ) || compares_as_container(left)
                || compares_as_container(right)
                || all(&[left, right])
        }
        // `LIKE` fails on a pattern ending with its escape character, and only on the rows
        // that match what comes before it: a literal pattern that does not end so cannot
        // fail. (A pattern sent as a parameter is the service's value; see docs/application-layer.md.)
        Expr::Like {
            expr,
            pattern,
            escape_char,
            ..
        }
        | Expr::ILike {
            expr,
            pattern,
            escape_char,
            ..
        } => {
            escape_char.is_some()
                || ends_with_escape(pattern)
                || has_column(pattern)
                || can_fail(expr)
        }
        Expr::SimilarTo { expr, pattern, .. } => has_column(pattern) || can_fail(expr),
        // To text, a value never fails to convert; to anything else it may.
        Expr::Cast {
            expr, data_type, ..
        } => {
            (casts_fail
                && !matches!(
                    data_type,
                    DataType::Text | DataType::Varchar(None) | DataType::CharacterVarying(None)
                ))
                || can_fail(expr)
        }
        Expr::Function(f) => {
            let name = fold_name(&f.name).map(|p| p.join("."));
            let args = arguments(&f.args);
            // `length(bytes, encoding)` fails on an unknown encoding name.
            let safe = name.as_deref().is_some_and(|n| {
                let n = n.trim_start_matches("pg_catalog.");
                CANNOT_FAIL.contains(&n) && !(n == "length" && args.len() > 1)
            });
            !safe || args.iter().any(|a| can_fail(a))
        }
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            operand.as_deref().is_some_and(&can_fail)
                || conditions
                    .iter()
                    .any(|w| can_fail(&w.condition) || can_fail(&w.result))
                || else_result.as_deref().is_some_and(&can_fail)
        }
        _ => true,
    }
}

/// The columns `e` reads, by name alone (lowercased, without qualifiers), sorted.
fn columns_read(e: &Expr) -> Vec<String> {
    let mut out = Vec::new();
    let _ = sqlparser::ast::visit_expressions(e, |x| {
        match x {
            Expr::Identifier(id) => out.push(id.value.to_lowercase()),
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last() {
                    out.push(last.value.to_lowercase());
                }
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    out.sort();
    out.dedup();
    out
}

/// Whether `e` may be a boolean, which an equality with a constant folds away: anything but
/// what is known to be something else (arithmetic, text, a cast to another type, a call of a
/// built-in that returns no boolean).
fn may_be_boolean(e: &Expr) -> bool {
    match strip(e) {
        Expr::BinaryOp { op, .. } => !matches!(
            op,
            BinaryOperator::Plus
                | BinaryOperator::Minus
                | BinaryOperator::Multiply
                | BinaryOperator::Divide
                | BinaryOperator::Modulo
                | BinaryOperator::StringConcat
        ),
        Expr::Cast { data_type, .. } => matches!(data_type, DataType::Bool | DataType::Boolean),
        Expr::Function(f) => !fold_name(&f.name)
            .is_some_and(|p| p.last().is_some_and(|n| NOT_BOOLEAN.contains(&n.as_str()))),
        Expr::Value(_) | Expr::TypedString(_) => false,
        _ => true,
    }
}

/// Built-ins that return no boolean (an equality of one with a constant stays an operator).
const NOT_BOOLEAN: &[&str] = &[
    "abs",
    "btrim",
    "ceil",
    "ceiling",
    "char_length",
    "date_part",
    "date_trunc",
    "floor",
    "length",
    "lower",
    "ltrim",
    "md5",
    "round",
    "rtrim",
    "to_char",
    "to_date",
    "to_number",
    "to_timestamp",
    "trunc",
    "upper",
];

/// `e` with every cast and parenthesis taken off (a cast may be no conversion at all), for
/// telling two sides the planner may take for the same expression.
fn without_casts(e: &Expr) -> Expr {
    let mut out = e.clone();
    let _ = sqlparser::ast::visit_expressions_mut(&mut out, |x| {
        while let Expr::Cast { expr, .. } | Expr::Nested(expr) = x {
            let inner = std::mem::replace(
                expr.as_mut(),
                Expr::Value(sqlparser::ast::Value::Null.into()),
            );
            *x = inner;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    out
}

/// Whether the literal `pattern` ends with the default escape character `\`, unescaped
/// (an odd run of them).
fn ends_with_escape(pattern: &Expr) -> bool {
    let text = match strip(pattern) {
        Expr::Value(v) => match &v.value {
            sqlparser::ast::Value::SingleQuotedString(s)
            | sqlparser::ast::Value::EscapedStringLiteral(s)
            | sqlparser::ast::Value::NationalStringLiteral(s)
            | sqlparser::ast::Value::DollarQuotedString(sqlparser::ast::DollarQuotedString {
                value: s,
                ..
            }) => s.as_str(),
            // A parameter's value is judged where it is known (the scoped handle).
            sqlparser::ast::Value::Placeholder(_) => return false,
            _ => return true,
        },
        // A pattern built by an expression (a cast, a concatenation) is folded to a literal
        // the rule does not see: it may end with the escape character.
        _ => return true,
    };
    text.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

/// Whether `e` builds or converts to a value whose comparison may fail whatever its operands
/// hold: an array or a row (PostgreSQL looks the element type's equality or ordering up
/// when it compares, and `json`, `point`, `xml` have none), or a column the rule cannot
/// trace.
fn compares_as_container(e: &Expr) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(e, |x| {
        match x {
            Expr::Array(_) | Expr::Tuple(_) => found = true,
            // An array type may also be written by its own name (`_json`).
            Expr::Cast { data_type, .. }
                if matches!(data_type, DataType::Array(_))
                    || data_type.to_string().ends_with("]")
                    || matches!(data_type, DataType::Custom(name, _)
                        if name.0.last().is_some_and(|p| p.to_string().trim_matches('"').starts_with('_'))) =>
            {
                found = true;
            }
            Expr::Function(f)
                if fold_name(&f.name).is_some_and(|p| p.len() == 1 && p[0] == "row") =>
            {
                found = true;
            }
            Expr::Identifier(id) if id.value == UNTRACED => found = true,
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    found
}

/// How a binary operator may fail, beyond what its operands do.
enum Operator {
    /// Comparisons, containment, JSON access: on any values.
    CannotFail,
    /// Pattern matching: on an invalid pattern, which is the same for every row unless a
    /// column makes it.
    FailsOnItsPattern,
    /// Arithmetic (overflow, division by zero), bit strings of other sizes, arrays of other
    /// dimensions, JSON paths in strict mode, and whatever is not named here.
    MayFail,
}

fn operator(op: &BinaryOperator) -> Operator {
    use BinaryOperator as B;
    match op {
        B::Eq
        | B::NotEq
        | B::Lt
        | B::LtEq
        | B::Gt
        | B::GtEq
        | B::And
        | B::Or
        | B::PGStartsWith
        | B::Arrow
        | B::LongArrow
        | B::HashArrow
        | B::HashLongArrow
        | B::AtArrow
        | B::ArrowAt
        | B::Question
        | B::QuestionAnd
        | B::QuestionPipe
        | B::PGOverlap
        | B::Overlaps => Operator::CannotFail,
        B::PGRegexMatch
        | B::PGRegexIMatch
        | B::PGRegexNotMatch
        | B::PGRegexNotIMatch
        | B::PGLikeMatch
        | B::PGILikeMatch
        | B::PGNotLikeMatch
        | B::PGNotILikeMatch => Operator::FailsOnItsPattern,
        _ => Operator::MayFail,
    }
}

/// Type names PostgreSQL reads as a cast when called with one argument (`date(x)`).
const TYPE_NAMED_CALLS: &[&str] = &[
    "bool",
    "date",
    "float4",
    "float8",
    "int2",
    "int4",
    "int8",
    "interval",
    "numeric",
    "text",
    "time",
    "timestamp",
    "timestamptz",
    "timetz",
    "varchar",
];

/// Names written like calls that PostgreSQL's grammar turns into nodes of their own, which its
/// cost model may charge nothing for.
const SYNTAX_NOT_CALLS: &[&str] = &["coalesce", "greatest", "least", "nullif", "row"];

/// The argument expressions of a call.
fn arguments(args: &FunctionArguments) -> Vec<&Expr> {
    match args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
                | FunctionArg::Named {
                    arg: FunctionArgExpr::Expr(e),
                    ..
                }
                | FunctionArg::ExprNamed {
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => Some(e),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// How many operators and functions PostgreSQL evaluates for `e` on each row, counted from
/// below (up to 2, all this stage needs): casts count nothing (one between binary-compatible
/// types is free), an expression without columns nothing (folded, or evaluated once), a
/// sub-query nothing (one without outer columns runs once, before the scan).
fn min_cost(e: &Expr) -> u32 {
    if !has_column(e) {
        return 0;
    }
    let sum = |xs: &[&Expr]| xs.iter().map(|x| min_cost(x)).sum::<u32>();
    if let Some(inner) = operand(e) {
        return min_cost(inner);
    }
    let cost = match e {
        Expr::Cast { expr: inner, .. } => min_cost(inner),
        Expr::UnaryOp { op, expr } => {
            u32::from(matches!(op, UnaryOperator::Minus)) + min_cost(expr)
        }
        Expr::BinaryOp {
            left, op, right, ..
        } => {
            let equality = matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq);
            // `x = x` is `x IS NOT NULL` to the planner (and `NOT (x <> x)` becomes it), however
            // differently the two sides are spelled: two sides that read the same columns count
            // as one.
            if equality {
                let (l, r) = (columns_read(left), columns_read(right));
                if !l.is_empty() && l == r {
                    return min_cost(left).min(min_cost(right)).min(2);
                }
            }
            // `b = true` folds to `b`, and so does `b = 't'`, `b = $2` in a custom plan, ...:
            // an equality of something that may be boolean with a constant counts nothing.
            let folds = equality
                && ((!has_column(left) && may_be_boolean(right))
                    || (!has_column(right) && may_be_boolean(left)));
            u32::from(!matches!(op, BinaryOperator::And | BinaryOperator::Or) && !folds)
                + sum(&[left, right])
        }
        // `x IS DISTINCT FROM NULL` is `x IS NOT NULL` to the parser: no operator.
        Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => sum(&[a, b]),
        // An IN list or ANY/ALL is an array operation PostgreSQL charges by the array's
        // estimated length (half an operator per element: nothing for an empty array).
        Expr::In {
            expr,
            target: InTarget::List(list),
            ..
        } => {
            // `x IN (x)` is `x = x`, then `x IS NOT NULL`.
            if let [only] = list.as_slice()
                && without_casts(only) == without_casts(expr)
            {
                min_cost(expr)
            } else {
                min_cost(expr) + list.iter().map(min_cost).sum::<u32>()
            }
        }
        Expr::Between {
            expr, low, high, ..
        } => 1 + sum(&[expr, low, high]),
        Expr::Like { expr, pattern, .. }
        | Expr::ILike { expr, pattern, .. }
        | Expr::SimilarTo { expr, pattern, .. } => 1 + sum(&[expr, pattern]),
        Expr::AnyOp { left, right, .. } | Expr::AllOp { left, right, .. } => sum(&[left, right]),
        // Function syntax that is no call to PostgreSQL (COALESCE, ROW, GREATEST, LEAST,
        // NULLIF are nodes of their own): only the arguments count.
        Expr::Function(f) => {
            // Constant folding drops COALESCE's arguments after a constant: of such syntax,
            // only the cheapest argument counts.
            let free = fold_name(&f.name)
                .is_some_and(|p| p.len() == 1 && SYNTAX_NOT_CALLS.contains(&p[0].as_str()));
            let args = arguments(&f.args);
            // `date(x)` and the like are casts to PostgreSQL (no function of that name), and
            // one of a value already of the type is nothing at all.
            let cast = fold_name(&f.name)
                .is_some_and(|p| p.len() == 1 && TYPE_NAMED_CALLS.contains(&p[0].as_str()))
                && args.len() == 1;
            if cast {
                args.iter().map(|a| min_cost(a)).sum::<u32>()
            } else if free {
                args.iter().map(|a| min_cost(a)).min().unwrap_or(0)
            } else {
                1 + args.iter().map(|a| min_cost(a)).sum::<u32>()
            }
        }
        Expr::Case {
            operand: _,
            conditions,
            else_result,
            ..
        } => {
            // Constant conditions fold the CASE to one of its results: count the cheapest.
            conditions
                .iter()
                .map(|w| min_cost(&w.result))
                .chain(else_result.as_deref().map(min_cost))
                .min()
                .unwrap_or(0)
        }
        _ => 0,
    };
    cost.min(2)
}

#[cfg(test)]
mod tests {
    use crate::Violation;
    use crate::story::tables;

    fn run(sql: &str) -> Result<(), Violation> {
        crate::check(sql, &tables(), &|p: &str| p == "$1")
    }

    fn refused(sql: &str) -> bool {
        matches!(run(sql), Err(Violation::MayRunBeforeOrgPredicate { .. }))
    }

    fn assert_refused(sql: &str) {
        assert!(refused(sql), "{sql}: {:?}", run(sql));
    }

    #[test]
    fn a_condition_that_can_fail_and_costs_one_operator_is_refused() {
        // Each measured on PostgreSQL 15 (EXPLAIN of the prepared statement): the condition
        // ran before `c.org_id = $1` in the seq scan's filter, on other orgs' rows.
        for sql in [
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND to_date(c.name, 'YYYY') IS NOT NULL",
            "SELECT c.name FROM customers c WHERE to_date(c.name, 'YYYY') IS NOT NULL AND c.org_id = $1",
            // The planner pulls a condition common to both arms out of an OR, and turns a NOT
            // over an OR into separate conditions.
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND ((to_date(c.name, 'YYYY') IS NOT NULL AND c.id IS NOT NULL) OR (to_date(c.name, 'YYYY') IS NOT NULL AND c.email IS NOT NULL))",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND NOT (c.email IS NULL OR to_date(c.name, 'YYYY') IS NULL)",
            // A sub-query or CTE without LIMIT/OFFSET is merged, its outer conditions too.
            "SELECT s.name FROM (SELECT c.name FROM customers c WHERE c.org_id = $1) s WHERE to_date(s.name, 'YYYY') IS NOT NULL",
            "WITH w AS (SELECT c.name FROM customers c WHERE c.org_id = $1) SELECT w.name FROM w WHERE to_date(w.name, 'YYYY') IS NOT NULL",
            // ON conditions are the scan's too, and so are an UPDATE's and a DELETE's.
            "SELECT c.name FROM customers c JOIN deals d ON d.org_id = $1 AND d.customer_id = c.id AND to_date(d.title, 'YYYY') IS NOT NULL WHERE c.org_id = $1",
            "UPDATE deals d SET stage = 'won' WHERE d.org_id = $1 AND d.amount_cents / d.id IS NOT NULL",
            "DELETE FROM deals d WHERE d.org_id = $1 AND to_date(d.title, 'YYYY') IS NOT NULL",
            // Counted from below: a cast alone might be one operator (it is two, here, but
            // the check does not know the types).
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND c.name::int4 IS NOT NULL",
        ] {
            assert_refused(sql);
        }
        assert!(matches!(
            run("SELECT c.name FROM customers c WHERE c.org_id = $1 AND to_date(c.name, 'YYYY') IS NOT NULL"),
            Err(Violation::MayRunBeforeOrgPredicate { condition }) if condition == "to_date(c.name, 'YYYY') IS NOT NULL"
        ));
    }

    #[test]
    fn the_second_red_team_passs_conditions_are_refused() {
        // Each made PostgreSQL 15 fail on another org's row with the row's value in the
        // message (RLS bypassed, sequential scans).
        for sql in [
            // HAVING without an aggregate: moved into the WHERE.
            "SELECT c.id FROM customers c WHERE c.org_id = $1 GROUP BY c.id HAVING encode('\\x00'::bytea, c.name) IS NOT NULL",
            // COALESCE costs nothing to the planner.
            "SELECT c.id FROM customers c WHERE c.org_id = $1 AND coalesce(encode('\\x00'::bytea, c.name)) IS NOT NULL",
            "SELECT d.title FROM deals d WHERE d.org_id = $1 AND coalesce(d.amount_cents::int4) IS NOT NULL",
            // A merged sub-query's or CTE's column is what it computes.
            "SELECT s.id FROM (SELECT c.id, encode('\\x00'::bytea, c.name) AS x FROM customers c WHERE c.org_id = $1) s WHERE s.x IS NOT NULL",
            "WITH w AS (SELECT c.id, encode('\\x00'::bytea, c.name) AS x FROM customers c WHERE c.org_id = $1) SELECT w.id FROM w WHERE w.x IS NOT NULL",
            "SELECT s.x FROM (SELECT DISTINCT to_date(c.name, 'YYYY') AS x FROM customers c WHERE c.org_id = $1) s WHERE s.x IS NOT NULL",
            // ... through an alias's column list, `*`, an unqualified name, nesting.
            "SELECT s.y FROM (SELECT c.id, to_date(c.name, 'YYYY') FROM customers c WHERE c.org_id = $1) AS s(x, y) WHERE s.y IS NOT NULL",
            "SELECT * FROM (SELECT * FROM (SELECT to_date(c.name, 'YYYY') AS x FROM customers c WHERE c.org_id = $1) s2) s WHERE x IS NOT NULL",
            "WITH w(v) AS (SELECT to_date(c.name, 'YYYY') FROM customers c WHERE c.org_id = $1) SELECT w.v FROM w WHERE w.v IS NOT NULL",
            // A set operation's columns cannot be traced: PostgreSQL pushes the condition into
            // each arm.
            "SELECT u.x FROM (SELECT c.name AS x FROM customers c WHERE c.org_id = $1 UNION ALL SELECT d.title FROM deals d WHERE d.org_id = $1) u WHERE to_date(u.x, 'YYYY') IS NOT NULL",
            // A sub-query's condition on an outer column, pulled up with it.
            "SELECT c.id FROM customers c WHERE c.org_id = $1 AND EXISTS (SELECT 1 WHERE encode('\\x00'::bytea, c.name) IS NOT NULL)",
            "SELECT c.id FROM customers c WHERE c.org_id = $1 AND EXISTS (SELECT 1 FROM currencies cur WHERE encode('\\x00'::bytea, c.name) IS NOT NULL)",
        ] {
            assert_refused(sql);
        }
        // The org parameter taken for another type elsewhere: with a generic plan and an
        // untyped parameter, the org predicate became a conversion and ran last.
        assert!(matches!(
            run("SELECT c.name, $1::text FROM customers c WHERE c.org_id = $1::uuid AND c.name::int4 > 0"),
            Err(Violation::UnsupportedExpression(m)) if m.contains("the org parameter cast to `TEXT`")
        ));
    }

    #[test]
    fn the_third_red_team_passs_conditions_are_refused() {
        // Each made PostgreSQL 15 fail on another org's row (`invalid value "Secret" for
        // "US"`, `integer out of range`), RLS bypassed, sequential scans.
        for sql in [
            // A sub-query's condition on an enclosing merged sub-query's or CTE's column.
            "SELECT s.id FROM (SELECT c.id, to_date(c.name, 'US') AS x FROM customers c WHERE c.org_id = $1) s WHERE EXISTS (SELECT 1 FROM currencies cur WHERE s.x IS NOT NULL)",
            "SELECT s.id FROM (SELECT c.id, to_date(c.name, 'US') AS x FROM customers c WHERE c.org_id = $1) s WHERE EXISTS (SELECT 1 WHERE s.x IS NOT NULL)",
            "WITH w AS (SELECT c.id, to_date(c.name, 'US') AS x FROM customers c WHERE c.org_id = $1) SELECT w.id FROM w WHERE EXISTS (SELECT 1 FROM currencies cur WHERE w.x IS NOT NULL)",
            "SELECT s.id FROM (SELECT c.id, to_date(c.name, 'US') AS x FROM customers c WHERE c.org_id = $1) s JOIN LATERAL (SELECT cur.code FROM currencies cur WHERE s.x IS NOT NULL) l ON true",
            // ANY/ALL over an empty array costs nothing; ROW(..) is no call.
            "SELECT c.id FROM customers c WHERE c.org_id = $1 AND to_date(c.name, 'US') <> ALL ('{}'::date[])",
            "SELECT c.id FROM customers c WHERE c.org_id = $1 AND to_date(c.name, 'US') = ANY (ARRAY[]::date[])",
            "SELECT c.id FROM customers c WHERE c.org_id = $1 AND row(to_date(c.name, 'US')) IS NOT NULL",
            // An output column PostgreSQL names otherwise than the rule would (`array`, the
            // cast's type): untraced, not a plain column.
            "SELECT s.id FROM (SELECT c.id, ARRAY[to_date(c.name, 'US')] FROM customers c WHERE c.org_id = $1) s WHERE s.\"array\" IS NOT NULL",
            "SELECT s.id FROM (SELECT c.id, (CASE WHEN c.id IS NOT NULL THEN to_date(c.name, 'US') END)::date FROM customers c WHERE c.org_id = $1) s WHERE s.\"date\" IS NOT NULL",
            "SELECT s.id FROM (SELECT d.id, (CASE WHEN d.id IS NOT NULL THEN d.amount_cents END)::int4 FROM deals d WHERE d.org_id = $1) s WHERE s.int4 IS NOT NULL",
        ] {
            assert_refused(sql);
        }
    }

    #[test]
    fn the_fourth_red_team_passs_conditions_are_refused() {
        for sql in [
            // A literal LIKE pattern ending with the escape character fails on the rows that
            // match its prefix: an oracle on another org's names.
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND c.name LIKE 'Secret\\'",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND c.name ILIKE 'secret\\'",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND c.name ~~ 'Secret\\'",
            // Constant folding leaves less than the rule counted.
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND CASE WHEN true THEN to_date(c.name, 'US') ELSE to_date(lower(c.name), 'US') END IS NOT NULL",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND CASE 1 WHEN 1 THEN to_date(c.name, 'US') ELSE to_date(lower(c.name), 'US') END IS NOT NULL",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND coalesce(to_date(c.name, 'US'), DATE '2020-01-01', to_date(lower(c.name), 'US')) IS NOT NULL",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND to_date(c.name, 'US') IS DISTINCT FROM NULL",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND to_date(c.name, 'US') IS NOT DISTINCT FROM NULL",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND (to_date(c.name, 'US') IS NOT NULL) = true",
            // A CTE declared inside a sub-query or CTE.
            "SELECT s.x FROM (WITH w AS (SELECT to_date(c.name, 'US') AS x FROM customers c WHERE c.org_id = $1) SELECT w.x FROM w) s WHERE s.x IS NOT NULL",
            "WITH v AS (WITH w AS (SELECT to_date(c.name, 'US') AS x FROM customers c WHERE c.org_id = $1) SELECT w.x FROM w) SELECT v.x FROM v WHERE v.x IS NOT NULL",
            // A CTE of a WITH RECURSIVE list that does not read itself is merged.
            "WITH RECURSIVE w AS (SELECT c.name FROM customers c WHERE c.org_id = $1) SELECT w.name FROM w WHERE to_date(w.name, 'US') IS NOT NULL",
            // LATERAL VALUES read the row they are pulled up into.
            "SELECT v.x FROM customers c CROSS JOIN LATERAL (VALUES (to_date(c.name, 'US'))) v(x) WHERE c.org_id = $1 AND v.x IS NOT NULL",
        ] {
            assert_refused(sql);
        }
    }

    #[test]
    fn the_fifth_red_team_passs_conditions_are_refused() {
        for sql in [
            // `x = x` is `x IS NOT NULL` to the planner.
            "SELECT c.id FROM customers c WHERE c.org_id = $1 AND to_date(c.name, 'US') = to_date(c.name, 'US')",
            "SELECT c.id FROM customers c WHERE c.org_id = $1 AND to_date(c.name, 'US') IN (to_date(c.name, 'US'))",
            "SELECT c.id FROM customers c WHERE c.org_id = $1 AND NOT (to_date(c.name, 'US') <> to_date(c.name, 'US'))",
            "SELECT d.id FROM deals d WHERE d.org_id = $1 AND d.amount_cents::int4 = d.amount_cents::int4",
            // A whole row of a merged sub-query or CTE: split into one test per column.
            "SELECT s.id FROM (SELECT c.id, to_date(c.name, 'US') AS x FROM customers c WHERE c.org_id = $1) s WHERE s IS NOT NULL",
            "SELECT s.id FROM (SELECT c.id, to_date(c.name, 'US') AS x FROM customers c WHERE c.org_id = $1) s WHERE s.* IS NOT NULL",
            "WITH w AS (SELECT c.id, to_date(c.name, 'US') AS x FROM customers c WHERE c.org_id = $1) SELECT w.id FROM w WHERE w IS NOT NULL",
            // Whole rows compared: dissimilar column types fail on the values.
            "SELECT s.id FROM (SELECT c.name, c.id FROM customers c WHERE c.org_id = $1) s WHERE s < ROW('SecretBobCorp'::text, 1)",
            "SELECT d.title FROM deals d WHERE d.org_id = $1 AND d <= ROW(1::bigint, 1)",
        ] {
            assert_refused(sql);
        }
    }

    #[test]
    fn the_sixth_red_team_passs_conditions_are_refused() {
        for sql in [
            // `x = x` spelled two ways.
            "SELECT c.id FROM customers c WHERE c.org_id = $1 AND TO_DATE(c.name, 'YYYY') = to_date(c.name, 'YYYY')",
            "SELECT c.id FROM customers c WHERE c.org_id = $1 AND pg_catalog.to_date(c.name, 'YYYY') = to_date(c.name, 'YYYY')",
            "SELECT c.id FROM customers c WHERE c.org_id = $1 AND to_date(name, 'YYYY') = to_date(c.name, 'YYYY')",
            "SELECT c.id FROM customers c WHERE c.org_id = $1 AND to_date(c.name, 'YYYY') = to_date(c.name, 'YY' || 'YY')",
            "SELECT d.id FROM deals d WHERE d.org_id = $1 AND d.amount_cents::int4 = CAST(amount_cents AS int4)",
            "UPDATE deals d SET stage = 'won' FROM customers c WHERE d.org_id = $1 AND c.org_id = $1 AND d.customer_id = c.id AND TO_DATE(c.name, 'YYYY') = to_date(c.name, 'YYYY')",
            "INSERT INTO deals (org_id, title) SELECT $1, c.name FROM customers c WHERE c.org_id = $1 AND TO_DATE(c.name, 'YYYY') = to_date(c.name, 'YYYY')",
            // A boolean compared with a constant spelled otherwise than `true`.
            "SELECT c.id FROM customers c WHERE c.org_id = $1 AND (to_date(c.name, 'YYYY') IS NOT NULL) = 't'",
            "SELECT c.id FROM customers c WHERE c.org_id = $1 AND (to_date(c.name, 'YYYY') IS NOT NULL) = 't'::bool",
            "SELECT d.id FROM deals d WHERE d.org_id = $1 AND (d.amount_cents::int4 IS NULL) <> 'on'",
            "SELECT c.id FROM customers c WHERE c.org_id = $1 AND (to_date(c.name, 'YYYY') IS NOT NULL) = $2",
            // An alias column list shorter than the columns, with a name used twice.
            "SELECT s.q FROM (SELECT c.name AS y, to_date(c.name, 'YYYY') AS y FROM customers c WHERE c.org_id = $1) s(q) WHERE s.y IS NOT NULL",
            "WITH w(q) AS (SELECT c.name AS y, to_date(c.name, 'YYYY') AS y FROM customers c WHERE c.org_id = $1) SELECT w.q FROM w WHERE w.y IS NOT NULL",
            // An output name the rule cannot be sure of (COLLATE, a cast of a CASE).
            "SELECT s.id FROM (SELECT c.id, c.name COLLATE \"C\", to_date(c.name, 'YYYY') AS \"?column?\" FROM customers c WHERE c.org_id = $1) s WHERE s.\"?column?\" IS NOT NULL",
            "SELECT s.id FROM (SELECT c.id, (CASE WHEN c.id IS NOT NULL THEN c.name END)::text, to_date(c.name, 'YYYY') AS \"case\" FROM customers c WHERE c.org_id = $1) s WHERE s.\"case\" IS NOT NULL",
            // `f(s.*)` is the field `s.f`.
            "SELECT s.id FROM (SELECT c.id, to_date(c.name, 'YYYY') AS lower FROM customers c WHERE c.org_id = $1) s WHERE lower(s.*) IS NOT NULL",
            "WITH w AS (SELECT c.id, to_date(c.name, 'YYYY') AS upper FROM customers c WHERE c.org_id = $1) SELECT w.id FROM w WHERE upper(w.*) IS NOT NULL",
            // A parenthesized join's alias.
            "SELECT j.x FROM ((SELECT c.id, to_date(c.name, 'YYYY') AS x FROM customers c WHERE c.org_id = $1) s CROSS JOIN currencies cur) AS j WHERE j.x IS NOT NULL",
        ] {
            assert_refused(sql);
        }
    }

    #[test]
    fn the_seventh_red_team_passs_conditions_are_refused() {
        for sql in [
            // A sub-query's HAVING on an outer query's aggregate (a constant to it) moves
            // into the sub-query's WHERE.
            "SELECT count(d.id), (SELECT c.name FROM customers c WHERE c.org_id = $1 GROUP BY c.name HAVING count(d.id) IS NULL OR to_date(c.name, 'YYYY') IS NOT NULL) FROM deals d WHERE d.org_id = $1",
            // Arrays of a type with no equality or ordering fail when compared.
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND CASE WHEN c.email IS NULL THEN NULL ELSE '{1}'::json[] END @> '{1}'::json[]",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND CASE WHEN c.email IS NULL THEN NULL ELSE '{1}'::json[] END = '{1}'::json[]",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND greatest(CASE WHEN c.email IS NULL THEN NULL ELSE '{1}'::json[] END, '{1}'::json[]) IS NOT NULL",
            // A LIKE pattern folded from an expression.
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND c.name LIKE 'Secret\\'::text",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND c.name LIKE 'Secret' || '\\'",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND c.name LIKE N'Secret\\'",
        ] {
            assert_refused(sql);
        }
    }

    #[test]
    fn the_eighth_and_ninth_red_team_passs_conditions_are_refused() {
        for sql in [
            // `date(x)` is a cast, and of a date nothing.
            "SELECT c.id FROM customers c WHERE c.org_id = $1 AND date(to_date(c.name, 'YYYY')) IS NOT NULL",
            // An array type written by its own name.
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND CASE WHEN c.email IS NULL THEN NULL ELSE '{1}'::_json END = '{1}'::_json",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND CASE WHEN c.email IS NULL THEN NULL ELSE '{1}'::pg_catalog._json END IN ('{1}'::_json)",
            // A nested WITH of the same name hides the outer CTE: it does not read itself.
            "WITH RECURSIVE w AS (SELECT c.name FROM customers c WHERE c.org_id = $1 AND EXISTS (WITH w AS (SELECT 1) SELECT 1 FROM w)) SELECT w.name FROM w WHERE to_date(w.name, 'YYYY') IS NOT NULL",
            "WITH RECURSIVE w AS (WITH w AS (SELECT 1 AS one) SELECT c.name FROM customers c, w WHERE c.org_id = $1) SELECT w.name FROM w WHERE to_date(w.name, 'YYYY') IS NOT NULL",
        ] {
            assert_refused(sql);
        }
    }

    #[test]
    fn conditions_that_cannot_fail_or_cost_more_pass() {
        for sql in [
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND c.name = $2",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND c.name LIKE $2 AND c.email ILIKE '%@x'",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND c.id IN ($2, $3) AND c.email IS NOT NULL",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND (c.name < 'm' OR c.name::text > 'x')",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND lower(c.name) = $2 AND length(c.email) > 3",
            "SELECT d.title FROM deals d WHERE d.org_id = $1 AND d.amount_cents * 2 > $2 AND d.amount_cents BETWEEN 1 AND 5",
            // A cast that can fail converts, which costs an operator: with the comparison, two.
            "SELECT d.title FROM deals d WHERE d.org_id = $1 AND d.created_at::date = $2::date AND d.title::int4 > 0",
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND EXISTS (SELECT 1 FROM deals d WHERE d.org_id = $1 AND d.customer_id = c.id)",
            // The fence: OFFSET keeps PostgreSQL from merging the sub-query or pushing the
            // outer condition into it.
            "SELECT s.name FROM (SELECT c.name FROM customers c WHERE c.org_id = $1 OFFSET 0) s WHERE to_date(s.name, 'YYYY') IS NOT NULL",
            // A global table's rows are every org's anyway.
            "SELECT c.name FROM customers c, currencies cur WHERE c.org_id = $1 AND to_date(cur.name, 'YYYY') IS NOT NULL",
            // A merged relation's plain columns are plain; a computed one that cannot fail or
            // costs two operators passes; a MATERIALIZED CTE is fenced.
            "WITH w AS (SELECT c.id, lower(c.name) AS n FROM customers c WHERE c.org_id = $1) SELECT w.id FROM w WHERE w.id = $2 AND w.n = $3 AND w.n IS NOT NULL",
            "SELECT s.t FROM (SELECT d.title AS t, d.amount_cents * 2 AS a FROM deals d WHERE d.org_id = $1) s WHERE s.a > 4",
            "WITH w AS MATERIALIZED (SELECT to_date(c.name, 'YYYY') AS x FROM customers c WHERE c.org_id = $1) SELECT w.x FROM w WHERE w.x IS NOT NULL",
            "SELECT count(*) FROM deals d WHERE d.org_id = $1 GROUP BY d.stage HAVING sum(d.amount_cents) > 100 AND d.stage <> 'lost'",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT c.name FROM customers c, r WHERE c.org_id = $1 AND r.n = 2",
            // A correlated sub-query on an outer table's, or an outer merged relation's plain,
            // column.
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND EXISTS (SELECT 1 FROM deals d WHERE d.org_id = $1 AND d.customer_id = c.id AND d.amount_cents > 10)",
            "SELECT s.id FROM (SELECT c.id, c.name FROM customers c WHERE c.org_id = $1) s WHERE EXISTS (SELECT 1 FROM deals d WHERE d.org_id = $1 AND d.customer_id = s.id)",
            // LIKE with a literal pattern that does not end with the escape character, or with
            // an escaped one; constant VALUES rows.
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND c.name LIKE 'a\\%' AND c.name LIKE 'x\\\\'",
            "SELECT c.name FROM customers c, (VALUES (1), (2)) v(n) WHERE c.org_id = $1 AND v.n > 1",
            // A condition with no column is the same for every row.
            "SELECT c.name FROM customers c WHERE c.org_id = $1 AND to_date($2, 'YYYY') IS NOT NULL",
        ] {
            assert_eq!(run(sql), Ok(()), "{sql}");
        }
    }
}
