//! The expression policy: which expression kinds, operators, cast types and FROM items a
//! statement may use.
//!
//! Invariant (fail closed): every `Expr` node and every `TableFactor` the walk meets is matched
//! against the kinds known to be plain (columns, values, operators, CASE, subqueries, ...);
//! anything else, including a kind a future sqlparser adds (the matches are exhaustive, so it
//! will not compile until it is classified), is refused. Function calls go to the function
//! policy ([`crate::functions`]).

use sqlparser::ast::{
    ArrayElemTypeDef, BinaryOperator, DataType, Expr, Function, FunctionArguments, InTarget,
    ObjectNamePart, TableFactor, UnaryOperator,
};

use crate::allowlist::Place;
use crate::functions::Policy;
use crate::parse::fold_name;
use crate::registry::Requirement;
use crate::violation::Violation;

/// The `reg*` types: a cast to one looks a catalog object up by name.
const REG_TYPES: &[&str] = &[
    "regclass",
    "regcollation",
    "regconfig",
    "regdictionary",
    "regnamespace",
    "regoper",
    "regoperator",
    "regproc",
    "regprocedure",
    "regrole",
    "regtype",
];

/// Whether `f` is the keyword syntax `keyword(...)` (unquoted, unqualified), not a function.
fn is_keyword(f: &Function, keyword: &str) -> bool {
    matches!(f.name.0.as_slice(), [ObjectNamePart::Identifier(id)]
        if id.quote_style.is_none() && id.value.eq_ignore_ascii_case(keyword))
}

fn unsupported(what: impl Into<String>) -> Result<(), Violation> {
    Err(Violation::UnsupportedExpression(what.into()))
}

impl Policy<'_> {
    /// Checks one expression node (not its children: the walk visits those).
    pub(crate) fn expr(
        &self,
        expr: &Expr,
        requirements: &mut Vec<Requirement>,
    ) -> Result<(), Violation> {
        crate::notation::field_selection(expr)?;
        match expr {
            // Plain: names, values, predicates and syntax forms of built-in functions.
            // A parameter is `$n` (`$org` in `tenant_sql!`); sqlparser also takes `@name` and
            // `:name` for parameters, where PostgreSQL reads an operator and a column.
            Expr::Value(v)
                if matches!(&v.value, sqlparser::ast::Value::Placeholder(p)
                    if p != "$org" && !p.strip_prefix('$').is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))) =>
            {
                unsupported(format!(
                    "the parameter `{v}` (parameters are `$1`, `$2`, ...; PostgreSQL would read \
                     something else)"
                ))
            }
            Expr::Identifier(_)
            | Expr::CompoundIdentifier(_)
            | Expr::CompoundFieldAccess { .. }
            | Expr::IsFalse(_)
            | Expr::IsNotFalse(_)
            | Expr::IsTrue(_)
            | Expr::IsNotTrue(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsUnknown(_)
            | Expr::IsNotUnknown(_)
            | Expr::IsDistinctFrom(..)
            | Expr::IsNotDistinctFrom(..)
            | Expr::IsJson { .. }
            | Expr::IsNormalized { .. }
            | Expr::Between { .. }
            | Expr::Like { .. }
            | Expr::ILike { .. }
            | Expr::SimilarTo { .. }
            | Expr::AtTimeZone { .. }
            | Expr::Extract { .. }
            | Expr::Ceil { .. }
            | Expr::Floor { .. }
            | Expr::Position { .. }
            | Expr::Substring { .. }
            | Expr::Trim { .. }
            | Expr::Overlay { .. }
            | Expr::Collate { .. }
            | Expr::Nested(_)
            | Expr::Value(_)
            | Expr::Case { .. }
            | Expr::Exists { .. }
            | Expr::Subquery(_)
            | Expr::GroupingSets(_)
            | Expr::Cube(_)
            | Expr::Rollup(_)
            | Expr::Tuple(_)
            | Expr::Array(_)
            | Expr::Interval(_)
            | Expr::Wildcard(_)
            | Expr::QualifiedWildcard(..) => Ok(()),
            Expr::In { target, .. } => match target {
                InTarget::List(_) | InTarget::Subquery(_) | InTarget::Unnest(_) => Ok(()),
                InTarget::Table { .. } => unsupported("`IN <table>`"),
            },
            Expr::BinaryOp { op, .. } => binary_operator(op),
            Expr::AnyOp { compare_op, .. } | Expr::AllOp { compare_op, .. } => {
                binary_operator(compare_op)
            }
            Expr::UnaryOp { op, .. } => unary_operator(op),
            Expr::Cast { data_type, .. } => self.data_type(data_type),
            Expr::TypedString(typed) => self.data_type(&typed.data_type),
            Expr::Function(f) => self.function(f, requirements),
            Expr::JsonAccess { .. } => unsupported("the `:` JSON path syntax"),
            Expr::RLike { .. } => unsupported("RLIKE/REGEXP"),
            Expr::Convert { .. } => unsupported("CONVERT"),
            Expr::Prefixed { .. } => unsupported("a prefixed literal"),
            Expr::Struct { .. } => unsupported("a STRUCT literal"),
            Expr::Named { .. } => unsupported("a named expression"),
            Expr::Dictionary(_) => unsupported("a dictionary literal"),
            Expr::Map(_) => unsupported("a MAP literal"),
            Expr::MatchAgainst { .. } => unsupported("MATCH ... AGAINST"),
            Expr::OuterJoin(_) => unsupported("the `(+)` outer join syntax"),
            Expr::Prior(_) => unsupported("PRIOR"),
            Expr::Lambda(_) => unsupported("a lambda"),
            Expr::MemberOf(_) => unsupported("MEMBER OF"),
        }
    }

    /// Checks a call in an expression: its syntax, then its name.
    fn function(&self, f: &Function, requirements: &mut Vec<Requirement>) -> Result<(), Violation> {
        if f.uses_odbc_syntax || !matches!(f.parameters, FunctionArguments::None) {
            return unsupported(format!("the call syntax of `{}`", f.name));
        }
        match &f.args {
            // `ARRAY(SELECT ...)`: the array constructor, whose query the walk checks.
            FunctionArguments::Subquery(_) if is_keyword(f, "array") => Ok(()),
            FunctionArguments::Subquery(_) => {
                unsupported(format!("`{}` called with a subquery", f.name))
            }
            // `ROW(a, b)`: the row constructor (a quoted `"row"(...)` is a function call).
            FunctionArguments::List(list) if is_keyword(f, "row") && list.clauses.is_empty() => {
                Ok(())
            }
            FunctionArguments::None => self.call(&f.name, &[], Place::Expression, requirements),
            FunctionArguments::List(list) => {
                self.call(&f.name, &list.args, Place::Expression, requirements)
            }
        }
    }

    /// Checks a cast's target type: a plain built-in or user type, never a `reg*` type (except
    /// on the audit connection, which reads the catalog by design).
    fn data_type(&self, data_type: &DataType) -> Result<(), Violation> {
        let reg = |name: &str| {
            unsupported(format!(
                "a cast to `{name}` (it looks a catalog object up by name)"
            ))
        };
        match data_type {
            DataType::Regclass if !self.is_catalog() => reg("regclass"),
            DataType::Custom(name, _) => {
                let Some(parts) = fold_name(name) else {
                    return unsupported(format!("a cast to `{name}`"));
                };
                // `_regclass` is `regclass[]`: an array of names looked up.
                match parts.last() {
                    Some(last)
                        if !self.is_catalog()
                            && REG_TYPES.contains(&last.strip_prefix('_').unwrap_or(last)) =>
                    {
                        reg(last)
                    }
                    _ => Ok(()),
                }
            }
            DataType::Array(elem) => match elem {
                ArrayElemTypeDef::None => Ok(()),
                ArrayElemTypeDef::AngleBracket(t)
                | ArrayElemTypeDef::SquareBracket(t, _)
                | ArrayElemTypeDef::Parenthesis(t)
                | ArrayElemTypeDef::ParenthesisNotNull(t)
                | ArrayElemTypeDef::Qualified(t, _) => self.data_type(t),
            },
            DataType::Collate(t, _) => self.data_type(t),
            DataType::Regclass
            | DataType::Character(_)
            | DataType::Char(_)
            | DataType::CharacterVarying(_)
            | DataType::CharVarying(_)
            | DataType::Varchar(_)
            | DataType::Uuid
            | DataType::Numeric(_)
            | DataType::Decimal(_)
            | DataType::Dec(_)
            | DataType::Float(_)
            | DataType::Int2(_)
            | DataType::SmallInt(_)
            | DataType::Int(_)
            | DataType::Int4(_)
            | DataType::Int8(_)
            | DataType::Integer(_)
            | DataType::BigInt(_)
            | DataType::Float4
            | DataType::Float8
            | DataType::Real
            | DataType::Double(_)
            | DataType::DoublePrecision
            | DataType::Bool
            | DataType::Boolean
            | DataType::Date
            | DataType::Time(..)
            | DataType::Timestamp(..)
            | DataType::Interval { .. }
            | DataType::JSON
            | DataType::JSONB
            | DataType::Text
            | DataType::Bytea
            | DataType::Bit(_)
            | DataType::BitVarying(_)
            | DataType::VarBit(_)
            | DataType::GeometricType(_)
            | DataType::TsVector
            | DataType::TsQuery => Ok(()),
            other => unsupported(format!("a cast to `{other}`")),
        }
    }

    /// Checks a FROM item: relations, subqueries, joins and UNNEST are plain; a table function
    /// goes to the function policy; anything else is refused.
    pub(crate) fn table_factor(
        &self,
        factor: &TableFactor,
        requirements: &mut Vec<Requirement>,
    ) -> Result<(), Violation> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(args),
                ..
            } => self.call(name, &args.args, Place::From, requirements),
            TableFactor::Function { name, args, .. } => {
                self.call(name, args, Place::From, requirements)
            }
            TableFactor::Table {
                with_hints,
                version,
                partitions,
                json_path,
                index_directives,
                ..
            } if !with_hints.is_empty()
                || version.is_some()
                || !partitions.is_empty()
                || json_path.is_some()
                || !index_directives.is_empty() =>
            {
                unsupported("a table hint, version, partition or path of another dialect")
            }
            // sqlparser takes TABLESAMPLE and Snowflake's SAMPLE after any table, DELETE and
            // UPDATE targets included, where PostgreSQL reads other things.
            TableFactor::Table {
                sample: Some(_), ..
            }
            | TableFactor::Derived {
                sample: Some(_), ..
            } => unsupported("TABLESAMPLE / SAMPLE"),
            TableFactor::Table { args: None, .. }
            | TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. }
            | TableFactor::UNNEST { .. } => Ok(()),
            TableFactor::TableFunction { .. } => unsupported("`TABLE(...)` as a FROM item"),
            TableFactor::JsonTable { .. } => unsupported("JSON_TABLE"),
            TableFactor::OpenJsonTable { .. } => unsupported("OPENJSON"),
            TableFactor::Pivot { .. } => unsupported("PIVOT"),
            TableFactor::Unpivot { .. } | TableFactor::UnpivotExpr { .. } => unsupported("UNPIVOT"),
            TableFactor::MatchRecognize { .. } => unsupported("MATCH_RECOGNIZE"),
            TableFactor::XmlTable { .. } => unsupported("XMLTABLE"),
            TableFactor::SemanticView { .. } => unsupported("SEMANTIC_VIEW"),
        }
    }
}

/// PostgreSQL's built-in binary operators, as sqlparser names them; anything else (a custom
/// operator, `OPERATOR(schema.op)`, another dialect's) is refused.
fn binary_operator(op: &BinaryOperator) -> Result<(), Violation> {
    use BinaryOperator as B;
    match op {
        // Arithmetic, comparison, logic, concatenation, bit operations.
        B::Plus
        | B::Minus
        | B::Multiply
        | B::Divide
        | B::Modulo
        | B::PGExp
        | B::StringConcat
        | B::Eq
        | B::NotEq
        | B::Lt
        | B::LtEq
        | B::Gt
        | B::GtEq
        | B::And
        | B::Or
        | B::BitwiseAnd
        | B::BitwiseOr
        | B::PGBitwiseXor
        | B::PGBitwiseShiftLeft
        | B::PGBitwiseShiftRight
        // Pattern matching: ~ ~* !~ !~*, ~~ ~~* !~~ !~~*, ^@.
        | B::PGRegexMatch
        | B::PGRegexIMatch
        | B::PGRegexNotMatch
        | B::PGRegexNotIMatch
        | B::PGLikeMatch
        | B::PGILikeMatch
        | B::PGNotLikeMatch
        | B::PGNotILikeMatch
        | B::PGStartsWith
        // JSON(B) and containment: -> ->> #> #>> @> <@ #- @? @@ ? ?& ?|, arrays' &&.
        | B::Arrow
        | B::LongArrow
        | B::HashArrow
        | B::HashLongArrow
        | B::AtArrow
        | B::ArrowAt
        | B::HashMinus
        | B::AtQuestion
        | B::AtAt
        | B::Question
        | B::QuestionAnd
        | B::QuestionPipe
        | B::PGOverlap
        | B::Overlaps
        // Geometric operators: compute on their operands.
        | B::DoubleHash
        | B::LtDashGt
        | B::AndLt
        | B::AndGt
        | B::LtLtPipe
        | B::PipeGtGt
        | B::AndLtPipe
        | B::PipeAndGt
        | B::LtCaret
        | B::GtCaret
        | B::QuestionHash
        | B::QuestionDash
        | B::QuestionDashPipe
        | B::QuestionDoublePipe
        | B::At
        | B::TildeEq => Ok(()),
        B::Spaceship
        | B::Xor
        | B::BitwiseXor
        | B::DuckIntegerDivide
        | B::MyIntegerDivide
        | B::Match
        | B::Regexp
        | B::Glob
        | B::Custom(_)
        | B::PGCustomBinaryOperator(_)
        | B::Assignment
        | B::Is
        | B::IsNot => Err(Violation::UnknownOperator(op.to_string())),
    }
}

/// PostgreSQL's built-in prefix operators, as sqlparser names them.
fn unary_operator(op: &UnaryOperator) -> Result<(), Violation> {
    use UnaryOperator as U;
    match op {
        U::Plus
        | U::Minus
        | U::Not
        | U::BitwiseNot
        | U::PGAbs
        | U::PGSquareRoot
        | U::PGCubeRoot
        | U::AtDashAt
        | U::DoubleAt
        | U::Hash
        | U::QuestionDash
        | U::QuestionPipe => Ok(()),
        // `!` and `!!` are gone from PostgreSQL (14); `!` as NOT is Hive's.
        U::BangNot | U::PGPostfixFactorial | U::PGPrefixFactorial => {
            Err(Violation::UnknownOperator(op.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Tables, Violation, check, check_catalog_only, requirements};

    fn run(sql: &str) -> Result<(), Violation> {
        let tables = Tables::new([("invoices", Some("org_id")), ("currencies", None)]);
        check(sql, &tables, &|p: &str| p == "$1")
    }

    fn refused(what: &str) -> Result<(), Violation> {
        Err(Violation::UnsupportedExpression(what.into()))
    }

    fn reg(name: &str) -> Result<(), Violation> {
        refused(&format!(
            "a cast to `{name}` (it looks a catalog object up by name)"
        ))
    }

    #[test]
    fn a_table_sample_is_refused() {
        crate::story::assert_unverifiable(&[
            "DELETE FROM customers tablesample bernoulli (10) WHERE customers.org_id = $1",
            "SELECT 1 AS x FROM customers c sample bernoulli (10) WHERE c.org_id = $1",
            "SELECT 1 FROM customers c TABLESAMPLE SYSTEM (10) WHERE c.org_id = $1",
        ]);
    }

    #[test]
    fn a_name_of_three_parts_or_a_second_dot_is_refused() {
        assert!(matches!(
            run("SELECT i.number.ts_stat FROM invoices i WHERE i.org_id = $1"),
            Err(Violation::UnsupportedExpression(what)) if what.contains("three parts")
        ));
        assert!(matches!(
            run("SELECT i.number.ts_stat[1] FROM invoices i WHERE i.org_id = $1"),
            Err(Violation::UnsupportedExpression(what)) if what.contains("field selection")
        ));
        assert_eq!(
            run("SELECT i.tags[1] FROM invoices i WHERE i.org_id = $1"),
            Ok(())
        );
    }

    #[test]
    fn a_cast_to_an_array_of_a_reg_type_is_refused() {
        assert_eq!(
            run(
                "SELECT ('{customers,pg_authid}'::_regclass)::text FROM invoices WHERE org_id = $1"
            ),
            Err(Violation::UnsupportedExpression(
                "a cast to `_regclass` (it looks a catalog object up by name)".into()
            ))
        );
        assert_eq!(
            run("SELECT ('{customers}'::regclass[])::text FROM invoices WHERE org_id = $1"),
            Err(Violation::UnsupportedExpression(
                "a cast to `regclass` (it looks a catalog object up by name)".into()
            ))
        );
    }

    #[test]
    fn a_field_selection_that_postgresql_may_call_as_a_function_is_refused() {
        let refused = Err(Violation::UnsupportedExpression(
            "a field selection `(...).name`, which PostgreSQL may read as a call of the function `name`".into(),
        ));
        for sql in [
            "SELECT ('SELECT to_tsvector(name) FROM customers').ts_stat FROM invoices WHERE org_id = $1",
            "SELECT ('tenant.org_token').current_setting FROM invoices WHERE org_id = $1",
            "SELECT (42).pg_advisory_lock FROM invoices WHERE org_id = $1",
            "SELECT (i).number FROM invoices i WHERE i.org_id = $1",
        ] {
            assert_eq!(run(sql), refused, "{sql}");
        }
        // Subscripts are not calls.
        assert_eq!(
            run("SELECT (ARRAY[1, 2])[1] FROM invoices WHERE org_id = $1"),
            Ok(())
        );
    }

    #[test]
    fn custom_operators_are_refused() {
        assert_eq!(
            run("SELECT id FROM invoices WHERE org_id = $1 AND id OPERATOR(pg_catalog.=) 1"),
            Err(Violation::UnknownOperator("OPERATOR(pg_catalog.=)".into()))
        );
        assert_eq!(
            run("SELECT id FROM invoices WHERE org_id = $1 AND id OPERATOR(public.+) 1"),
            Err(Violation::UnknownOperator("OPERATOR(public.+)".into()))
        );
        assert_eq!(
            run("SELECT id FROM invoices WHERE org_id = $1 AND r -|- s"),
            Err(Violation::UnknownOperator("-|-".into()))
        );
        // The parser does not take `OPERATOR(...)` before ANY: refused all the same.
        assert!(matches!(
            run("SELECT id FROM invoices WHERE org_id = $1 AND id OPERATOR(pg_catalog.=) ANY($2)"),
            Err(Violation::Unparsable(_))
        ));
        // A custom operator cannot stand in for the org predicate either.
        assert_eq!(
            run("SELECT id FROM invoices WHERE org_id OPERATOR(pg_catalog.=) $1"),
            Err(Violation::MissingOrgPredicate {
                table: "invoices".into()
            })
        );
    }

    #[test]
    fn builtin_operators_pass() {
        assert_eq!(
            run(
                "SELECT -total, +total, total * 2 / 3 % 4 + 1 - 2, 2 ^ 3, name || 'x', 5 & 3, 5 | 3, 5 # 3, 1 << 2, ~5, |/ 9.0, @ -1 \
                 FROM invoices WHERE org_id = $1 AND NOT paid AND (total >= 1 OR total <= 2) AND total <> 3 AND total < 4 AND total > 0 \
                 AND name ~ 'a' AND name ~* 'a' AND name !~ 'b' AND name !~* 'b' AND name LIKE 'a%' AND name NOT ILIKE 'b%' \
                 AND name SIMILAR TO 'a' AND name ^@ 'a' AND data -> 'a' IS NOT NULL AND data ->> 'a' = 'x' AND data #> '{a}' IS NULL \
                 AND data #>> '{a}' = 'y' AND data @> '{}' AND '{}' <@ data AND data ? 'a' AND data ?| '{a}' AND data ?& '{a}' \
                 AND tags && '{x}' AND id = ANY($2) AND id <> ALL($3) AND id IS DISTINCT FROM 4 AND total BETWEEN 1 AND 2 \
                 AND paid IS NOT TRUE AND id IN (1, 2)"
            ),
            Ok(())
        );
    }

    #[test]
    fn casts_to_reg_types_are_refused() {
        let scoped = "FROM invoices WHERE org_id = $1";
        assert_eq!(
            run(&format!("SELECT 'invoices'::regclass {scoped}")),
            reg("regclass")
        );
        assert_eq!(
            run(&format!("SELECT CAST('invoices' AS regclass) {scoped}")),
            reg("regclass")
        );
        assert_eq!(
            run(&format!("SELECT regclass 'invoices' {scoped}")),
            reg("regclass")
        );
        assert_eq!(
            run(&format!("SELECT 'f'::REGPROC {scoped}")),
            reg("regproc")
        );
        assert_eq!(
            run(&format!(r#"SELECT 'f'::"regprocedure" {scoped}"#)),
            reg("regprocedure")
        );
        assert_eq!(
            run(&format!("SELECT x::pg_catalog.regtype[] {scoped}")),
            reg("regtype")
        );
        assert_eq!(
            run(&format!("SELECT 'public'::regnamespace::oid {scoped}")),
            reg("regnamespace")
        );
        for t in REG_TYPES {
            assert_eq!(run(&format!("SELECT 'x'::{t} {scoped}")), reg(t), "{t}");
        }
        // On the audit connection they are what catalog queries are made of.
        assert_eq!(
            check_catalog_only(
                "SELECT 'pg_class'::regclass::oid, oid::regprocedure::text FROM pg_proc"
            ),
            Ok(())
        );
    }

    #[test]
    fn plain_casts_pass() {
        assert_eq!(
            run(
                "SELECT id::text, total::numeric(10, 2), $2::uuid, created_at::date, x::timestamptz, y::int2[], z::\"char\", \
                 w::jsonb, v::deal_stage, ROW(id, name), ARRAY(SELECT 1), ARRAY[1, 2], tags[1], CAST(u AS varchar(10)), DATE '2024-01-01', INTERVAL '1 day', name COLLATE \"C\" \
                 FROM invoices WHERE org_id = $1::uuid"
            ),
            Ok(())
        );
        assert_eq!(
            run("SELECT x::tinyint FROM invoices WHERE org_id = $1"),
            refused("a cast to `TINYINT`")
        );
    }

    #[test]
    fn opaque_expressions_and_from_items_are_refused() {
        assert_eq!(
            run("SELECT CONVERT(name, text) FROM invoices WHERE org_id = $1"),
            refused("CONVERT")
        );
        assert_eq!(
            run("SELECT * FROM XMLTABLE('/a' PASSING '<a/>' COLUMNS x int PATH 'x')"),
            refused("XMLTABLE")
        );
        assert_eq!(
            run("SELECT * FROM JSON_TABLE('[]', '$[*]' COLUMNS (a int PATH '$.a')) t"),
            refused("JSON_TABLE")
        );
        assert_eq!(
            run("SELECT x FROM TABLE(f(1))"),
            refused("`TABLE(...)` as a FROM item")
        );
        assert_eq!(
            run(r#"SELECT "row"(1, 2), pg_catalog.row(1)"#),
            Err(Violation::UnknownFunction { name: "row".into() })
        );
        assert_eq!(
            run("SELECT pg_catalog.array(SELECT 1)"),
            refused("`pg_catalog.array` called with a subquery")
        );
    }

    #[test]
    fn symbolic_mode_applies_the_same_expression_policy() {
        let reqs = |sql: &str| requirements(sql, &|p: &str| p == "$org");
        assert_eq!(
            reqs("SELECT 'invoices'::regclass"),
            Err(Violation::UnsupportedExpression(
                "a cast to `regclass` (it looks a catalog object up by name)".into()
            ))
        );
        assert_eq!(
            reqs("SELECT 1 OPERATOR(pg_catalog.+) 1"),
            Err(Violation::UnknownOperator("OPERATOR(pg_catalog.+)".into()))
        );
    }
}
