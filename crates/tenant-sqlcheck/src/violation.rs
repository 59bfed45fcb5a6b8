//! What the check refuses, in words a developer can act on.
//!
//! Invariant: every refusal is a [`Violation`] whose message names what was refused (the table,
//! column, function, operator or construct) and says how to fix it. Every stage of the check
//! reports through this type and nothing else, so a caller sees one vocabulary.

/// What a statement did that could let rows cross orgs. Messages say how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The SQL does not parse.
    #[error(
        "the SQL does not parse ({0}); only plain PostgreSQL SELECT/INSERT/UPDATE/DELETE can be checked"
    )]
    Unparsable(String),
    /// Not exactly one statement.
    #[error("expected exactly one statement, found {0}: send statements one at a time")]
    StatementCount(usize),
    /// A statement kind that a scoped session must not run (SET, DDL, COPY, ...).
    #[error(
        "`{0}` cannot run in an org-scoped session: only SELECT, INSERT, UPDATE and DELETE can, each as a statement of its own (a WITH in front of a write is refused whole)"
    )]
    UnsupportedStatement(String),
    /// A tenant table is read or written without an org predicate.
    #[error(
        "tenant table `{table}` is used without an org predicate: add `{table}.<org column> = <the org>` \
         to the WHERE of the query that reads it (ANDed, not inside an OR)"
    )]
    MissingOrgPredicate {
        /// The table (or its alias).
        table: String,
    },
    /// A table that is not registered as tenant or global.
    #[error(
        "table `{table}` is not in the tenant registry: register it as tenant or global before using it"
    )]
    UnregisteredTable {
        /// The table name.
        table: String,
    },
    /// An UPDATE or upsert assigns the org column, which would move rows between orgs.
    #[error(
        "the statement assigns `{column}` of tenant table `{table}`: rows cannot move between orgs"
    )]
    AssignsOrgColumn {
        /// The table.
        table: String,
        /// The org column.
        column: String,
    },
    /// An INSERT into a tenant table whose org column is not the session's org.
    #[error(
        "the INSERT into tenant table `{table}` does not set `{column}` to the session's org in every row"
    )]
    InsertWithoutOrg {
        /// The table.
        table: String,
        /// The org column.
        column: String,
    },
    /// An `ON CONFLICT` on a tenant table whose target does not name the org column (or names
    /// no columns): the conflict could be with another org's row.
    #[error(
        "the ON CONFLICT of the INSERT into tenant table `{table}` does not name `{column}` in its \
         target: a conflict on a key without it could be with another org's row (telling that the \
         key exists, or updating that row); name the columns of a unique constraint that \
         includes it: `ON CONFLICT ({column}, ...)`"
    )]
    ConflictWithoutOrg {
        /// The table.
        table: String,
        /// The org column.
        column: String,
    },
    /// A write to a global table from a scoped session.
    #[error(
        "global table `{table}` is read-only in an org-scoped session: write it through the admin path"
    )]
    WritesGlobalTable {
        /// The table.
        table: String,
    },
    /// `set_config(...)` or another way to change the session's org.
    #[error(
        "the statement calls `{0}`, which can change the session's org: never set tenant.org_id from SQL"
    )]
    ChangesSessionSetting(String),
    /// A tenant table appears in a construct the check cannot see into.
    #[error(
        "tenant table `{table}` appears where its org predicate cannot be verified: rewrite the \
         query as a plain SELECT/JOIN/subquery with the org predicate"
    )]
    Unverifiable {
        /// The table.
        table: String,
    },
    /// A function that is neither a built-in known to be safe nor a registered function.
    #[error(
        "the statement calls `{name}`, which is not known to be safe in an org-scoped statement \
         (it may run SQL of its own, change session state, or read rows outside the statement): \
         use the query DSL, or, if it is your own function that runs no SQL, changes no setting \
         and reads only its arguments, register it next to your tables: \
         `function {name} => \"<why it is safe>\";` in `tenant_lint::registry!`"
    )]
    UnknownFunction {
        /// The function's name as PostgreSQL folds it (`schema.name` when qualified).
        name: String,
    },
    /// A PostgreSQL built-in that must never run in an org-scoped statement. Registering a
    /// function of the same name does not allow it: an unqualified call reaches the built-in.
    #[error(
        "the statement calls `{name}`, a PostgreSQL built-in that {reason}: it cannot run in an \
         org-scoped statement, and registering a function of that name would not allow it (an \
         unqualified call reaches the built-in); use the query DSL, or call your own function by \
         its schema-qualified name and register that name"
    )]
    UnsafeFunction {
        /// The function's name as PostgreSQL folds it.
        name: String,
        /// What the built-in does that an org-scoped statement must not.
        reason: String,
    },
    /// An operator that is not one of PostgreSQL's built-in operators known to be safe
    /// (`OPERATOR(schema.op)`, or one the parser does not know).
    #[error(
        "the statement uses the operator `{0}`, which is not a PostgreSQL built-in operator known \
         to be safe in an org-scoped statement (a custom operator runs a function of its own, and \
         `OPERATOR(schema.op)` picks one by name): write it with a plain built-in operator or \
         function, or use the query DSL"
    )]
    UnknownOperator(String),
    /// An expression, type or FROM item the check cannot verify.
    #[error(
        "the statement uses {0}, which the check cannot verify in an org-scoped statement: \
         rewrite it with plain expressions, or use the query DSL"
    )]
    UnsupportedExpression(String),
    /// PostgreSQL's own parser reads a name in the statement that the check's parser did not:
    /// the check judged another statement than the server would run.
    #[error(
        "the check and PostgreSQL's parser read the statement differently ({0}): the check \
         cannot vouch for what the server would run; write the names plainly (no escapes), or \
         use the query DSL"
    )]
    ParserDisagreement(String),
    /// A condition that can fail on a row and that PostgreSQL may evaluate before the org
    /// predicate, on other orgs' rows.
    #[error(
        "the condition `{condition}` can fail on a row, and PostgreSQL may evaluate it before the \
         org predicate, on other orgs' rows (it runs a scan's conditions cheapest first, and \
         this one costs no more than the org predicate), where its error would show what the row \
         holds: filter a sub-query that confines the table first and that PostgreSQL keeps apart, \
         `FROM (SELECT .. FROM t WHERE t.org_id = $org OFFSET 0) AS t WHERE ..`, or compare the \
         column as it is"
    )]
    MayRunBeforeOrgPredicate {
        /// The condition, as the check read it.
        condition: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_refusals_name_the_function_and_the_fix() {
        let unknown = Violation::UnknownFunction {
            name: "query_to_xml".into(),
        }
        .to_string();
        assert!(unknown.contains("`query_to_xml`"), "{unknown}");
        assert!(
            unknown.contains("`function query_to_xml => \"<why it is safe>\";`"),
            "{unknown}"
        );
        assert!(unknown.contains("tenant_lint::registry!"), "{unknown}");

        let unsafe_builtin = Violation::UnsafeFunction {
            name: "ts_stat".into(),
            reason: "runs SQL given to it as text".into(),
        }
        .to_string();
        assert!(
            unsafe_builtin
                .starts_with("the statement calls `ts_stat`, a PostgreSQL built-in that runs SQL"),
            "{unsafe_builtin}"
        );
        assert!(
            unsafe_builtin.contains("schema-qualified"),
            "{unsafe_builtin}"
        );
    }

    #[test]
    fn operator_and_expression_refusals_name_the_construct() {
        let op = Violation::UnknownOperator("OPERATOR(pg_catalog.=)".into()).to_string();
        assert!(op.contains("`OPERATOR(pg_catalog.=)`"), "{op}");
        let expr = Violation::UnsupportedExpression("a cast to `regclass`".into()).to_string();
        assert!(
            expr.starts_with("the statement uses a cast to `regclass`, which the check cannot"),
            "{expr}"
        );
    }

    #[test]
    fn existing_messages_are_unchanged() {
        assert_eq!(
            Violation::ChangesSessionSetting("set_config".into()).to_string(),
            "the statement calls `set_config`, which can change the session's org: never set \
             tenant.org_id from SQL"
        );
        assert_eq!(
            Violation::StatementCount(2).to_string(),
            "expected exactly one statement, found 2: send statements one at a time"
        );
    }
}
