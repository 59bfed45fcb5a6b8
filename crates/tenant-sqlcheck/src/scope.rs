//! Scope resolution: which tenant-table references of a SELECT, UPDATE or DELETE are confined to
//! the session's org, and (in symbolic mode) what each reference is constrained by.
//!
//! Invariant: a reference counts as confined only by a top-level ANDed conjunct
//! `<table or alias>.<org column> = <org parameter>` in the WHERE of the query that reads it,
//! in the ON of its own LEFT join, or in the ON of an inner join; a RIGHT or FULL join's ON
//! confines nothing, and anything under OR or NOT confines nothing. Every reference confirmed
//! here is recorded in `verified`, for the final pass ([`crate::verdict`]) to match against
//! every reference the walk saw.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, JoinConstraint, JoinOperator, ObjectName, TableFactor, TableWithJoins,
    Value,
};

use std::collections::HashMap;

use crate::ctes::CteScopes;
use crate::functions::Policy;
use crate::order::{conjuncts, strip};
use crate::parse::{ident, last_ident};
use crate::registry::{Kind, Requirement, Tables};
use crate::violation::Violation;

/// The state of one check: what the walk has seen, and what the scope checks confirmed.
pub(crate) struct Checker<'a> {
    pub(crate) tables: &'a Tables,
    /// The function and expression policy.
    pub(crate) policy: Policy<'a>,
    pub(crate) is_org_param: &'a dyn Fn(&str) -> bool,
    /// The admin path: writes to global tables are allowed.
    pub(crate) global_writes: bool,
    /// The CTE names visible at this point of the walk.
    pub(crate) ctes: CteScopes,
    /// FROM-item functions by qualifier, with their declared columns
    /// ([`crate::notation::table_function_names`]).
    pub(crate) table_functions: HashMap<String, Vec<String>>,
    /// Tenant-table references found by the visitor.
    pub(crate) seen: Vec<String>,
    /// Tenant-table references confirmed confined by a scope check.
    pub(crate) verified: Vec<String>,
    /// Symbolic mode: what each reference needs from the registry.
    pub(crate) requirements: Vec<Requirement>,
    /// The first condition that may run before the org predicate (`order`).
    pub(crate) order: Option<Violation>,
    /// The CTEs visible at this point of the walk, innermost last, and how many each open
    /// query added.
    pub(crate) cte_definitions: Vec<crate::order::CteDefinition>,
    pub(crate) cte_frames: Vec<usize>,
    /// How many queries the walk is inside, and how many the statement's top level is (a
    /// SELECT or INSERT's query is one; an UPDATE or DELETE is none).
    pub(crate) depth: usize,
    pub(crate) top_depth: usize,
    /// The merged sub-queries and CTEs of the queries the walk is inside, and how many each
    /// SELECT, UPDATE or DELETE added (popped after it).
    pub(crate) outer_relations: Vec<crate::order::OuterRelation>,
    pub(crate) outer_frames: Vec<usize>,
}

/// `name` as written, its parts folded and joined with dots (for messages).
fn dotted(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|p| match p {
            sqlparser::ast::ObjectNamePart::Identifier(id) => ident(id),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The conjuncts that may confine `entry`: the WHERE's unless its name is hidden there, and
/// its ON conjuncts.
fn confiners<'e>(where_conjuncts: &[&'e Expr], entry: &ScopeEntry<'e>) -> Vec<&'e Expr> {
    let seen_by_where = if entry.hidden {
        &[][..]
    } else {
        where_conjuncts
    };
    seen_by_where
        .iter()
        .chain(entry.on.iter())
        .copied()
        .collect()
}

/// One table in the FROM of a SELECT, UPDATE or DELETE.
struct ScopeEntry<'e> {
    table: String,
    qualifier: String,
    /// Whether the WHERE and outer ON clauses cannot name its columns: an aliased
    /// parenthesized join hides the names inside, and a column alias list renames them.
    hidden: bool,
    org_column: String,
    /// ON conjuncts that confine this table: those of the joins whose inputs it is in.
    on: Vec<&'e Expr>,
}

impl<'a> Checker<'a> {
    /// A check of one statement.
    pub(crate) fn new(
        tables: &'a Tables,
        is_org_param: &'a dyn Fn(&str) -> bool,
        global_writes: bool,
        table_functions: HashMap<String, Vec<String>>,
    ) -> Self {
        Self {
            tables,
            policy: Policy::scoped(tables),
            is_org_param,
            global_writes,
            ctes: CteScopes::default(),
            table_functions,
            seen: Vec::new(),
            verified: Vec::new(),
            requirements: Vec::new(),
            order: None,
            cte_definitions: Vec::new(),
            cte_frames: Vec::new(),
            depth: 0,
            top_depth: 1,
            outer_relations: Vec::new(),
            outer_frames: Vec::new(),
        }
    }

    /// Records a relation the walk found in a FROM: a tenant table must be confirmed later; an
    /// unregistered one (not a CTE) is refused.
    pub(crate) fn see_relation(&mut self, name: &ObjectName) -> ControlFlow<Violation> {
        match self.kind_of(name) {
            Kind::Tenant(_) => self.seen.push(last_ident(name).unwrap_or_default()),
            Kind::Global => {}
            Kind::Unknown => {
                // Only a bare name can be a CTE: PostgreSQL never resolves `schema.x` to one.
                let table = last_ident(name).unwrap_or_default();
                if name.0.len() != 1 || !self.ctes.contains(&table) {
                    return ControlFlow::Break(Violation::UnregisteredTable {
                        table: dotted(name),
                    });
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Refuses `q.name` where `q` is a FROM-item function and `name` not one of its declared
    /// columns: PostgreSQL would call the function `name` (see [`table_function_names`]).
    pub(crate) fn qualified_name(&self, expr: &Expr) -> ControlFlow<Violation> {
        crate::notation::qualified_name(&self.table_functions, expr)
    }

    /// The kind of a referenced relation; a CTE name is a derived table, checked where defined.
    pub(crate) fn kind_of(&self, name: &ObjectName) -> Kind<'_> {
        if self.tables.is_symbolic()
            && name.0.len() == 1
            && last_ident(name).is_some_and(|n| self.ctes.contains(&n))
        {
            return Kind::Global;
        }
        self.tables.kind(name)
    }

    /// Checks every tenant table of `from` against the WHERE conjuncts and the ON conjuncts.
    pub(crate) fn check_scope(
        &mut self,
        from: &[&TableWithJoins],
        selection: Option<&Expr>,
        having: Option<&Expr>,
    ) -> ControlFlow<Violation> {
        let mut entries: Vec<ScopeEntry<'_>> = Vec::new();
        let mut count = 0usize;
        for twj in from {
            self.collect(twj, &mut entries, &mut count);
        }
        let where_conjuncts: Vec<&Expr> = selection.map(conjuncts).unwrap_or_default();
        let single = count == 1;
        // A CTE is never fenced by its name: the registry's kind, not `kind_of`.
        let global = |name: &ObjectName| matches!(self.tables.kind(name), Kind::Global);
        let level = crate::order::Conditions {
            from,
            selection,
            having,
            ctes: &self.cte_definitions,
            nested: self.depth > self.top_depth,
            outer: &self.outer_relations,
        };
        let (verdict, merged) = crate::order::check(&level, &global);
        if self.order.is_none()
            && let Err(v) = verdict
        {
            // Reported once the walk is done: a refusal of the statement's forms comes first.
            self.order = Some(v);
        }
        self.outer_frames.push(merged.len());
        self.outer_relations.extend(merged);
        // What can confine an entry: the WHERE, which sees every name of the FROM but hidden
        // ones, and the ON conjuncts of the joins whose inputs it is in (`collect`).
        if self.tables.is_symbolic() {
            for entry in &entries {
                let mut constrained: Vec<String> = confiners(&where_conjuncts, entry)
                    .into_iter()
                    .filter_map(|c| self.constrained_column(c, entry, single))
                    .collect();
                constrained.sort();
                constrained.dedup();
                self.requirements.push(Requirement::Read {
                    table: entry.table.clone(),
                    constrained,
                });
                self.verified.push(entry.table.clone());
            }
            return ControlFlow::Continue(());
        }
        for entry in &entries {
            let confined = confiners(&where_conjuncts, entry)
                .into_iter()
                .any(|c| self.confines(c, entry, single));
            if !confined {
                return ControlFlow::Break(Violation::MissingOrgPredicate {
                    table: entry.qualifier.clone(),
                });
            }
            self.verified.push(entry.table.clone());
        }
        ControlFlow::Continue(())
    }

    /// After the SELECT, UPDATE or DELETE whose scope [`check_scope`](Self::check_scope)
    /// checked: its merged relations go out of reach.
    pub(crate) fn leave_scope(&mut self) {
        let added = self.outer_frames.pop().unwrap_or(0);
        self.outer_relations
            .truncate(self.outer_relations.len().saturating_sub(added));
    }

    /// Adds the tables of `twj` to the scope, and to each the ON conjuncts that confine it.
    ///
    /// An ON clause sees only its own join's inputs (a name it uses that is not among them
    /// resolves further out, perhaps to an outer query's relation): an inner join's ON
    /// confines every table of its two inputs, a LEFT join's only its right input (the left
    /// side's rows are kept whatever the ON says), a RIGHT or FULL join's none. A
    /// parenthesized join is collected into the same scope; with an alias (`(a JOIN b ON ..)
    /// AS j`) it hides the names inside, so nothing outside it can confine them by name.
    fn collect<'e>(
        &self,
        twj: &'e TableWithJoins,
        entries: &mut Vec<ScopeEntry<'e>>,
        count: &mut usize,
    ) {
        let start = entries.len();
        self.collect_factor(&twj.relation, entries, count);
        for join in &twj.joins {
            let right = entries.len();
            self.collect_factor(&join.relation, entries, count);
            let (constraint, first) = match &join.join_operator {
                JoinOperator::Join(c) | JoinOperator::Inner(c) | JoinOperator::CrossJoin(c) => {
                    (Some(c), start)
                }
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (Some(c), right),
                _ => (None, entries.len()),
            };
            let join_on: Vec<&Expr> = match constraint {
                Some(JoinConstraint::On(e)) => conjuncts(e),
                _ => Vec::new(),
            };
            for entry in entries[first..].iter_mut().filter(|e| !e.hidden) {
                entry.on.extend(join_on.iter().copied());
            }
        }
    }

    fn collect_factor<'e>(
        &self,
        factor: &'e TableFactor,
        entries: &mut Vec<ScopeEntry<'e>>,
        count: &mut usize,
    ) {
        match factor {
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let first = entries.len();
                self.collect(table_with_joins, entries, count);
                if alias.is_some() {
                    for entry in &mut entries[first..] {
                        entry.hidden = true;
                    }
                }
            }
            other => {
                *count += 1;
                self.push_entry(entries, other);
            }
        }
    }

    fn push_entry<'e>(&self, entries: &mut Vec<ScopeEntry<'e>>, factor: &TableFactor) {
        if let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
            && let Kind::Tenant(col) = self.kind_of(name)
        {
            let table = last_ident(name).unwrap_or_default();
            let qualifier = alias
                .as_ref()
                .map(|a| ident(&a.name))
                .unwrap_or_else(|| table.clone());
            // `t AS c(a, b)` renames the columns by position: `c.org_id` may be another
            // column, so no predicate can confine it by name.
            let hidden = alias.as_ref().is_some_and(|a| !a.columns.is_empty());
            entries.push(ScopeEntry {
                table,
                qualifier,
                hidden,
                org_column: col.to_owned(),
                on: Vec::new(),
            });
        }
    }

    /// Whether conjunct `c` is `<entry>.<org column> = <org param>` (either side).
    fn confines(&self, c: &Expr, entry: &ScopeEntry<'_>, single: bool) -> bool {
        self.constrained_column(c, entry, single)
            .is_some_and(|col| col == entry.org_column)
    }

    /// The column of `entry` that conjunct `c` constrains to the org parameter, if it is
    /// `<entry>.<column> = <org param>` (either side; unqualified only with one table in scope).
    fn constrained_column(&self, c: &Expr, entry: &ScopeEntry<'_>, single: bool) -> Option<String> {
        let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = strip(c)
        else {
            return None;
        };
        let column_side = if self.is_param(right) {
            left
        } else if self.is_param(left) {
            right
        } else {
            return None;
        };
        match strip(column_side) {
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let column = ident(&parts[parts.len() - 1]);
                let qualifier = ident(&parts[parts.len() - 2]);
                (qualifier == entry.qualifier
                    || (qualifier == entry.table && entry.qualifier == entry.table))
                    .then_some(column)
            }
            Expr::Identifier(id) if single => Some(ident(id)),
            _ => None,
        }
    }

    /// Refuses the org parameter cast to a type other than `uuid`: a parameter sent without a
    /// type takes the type its uses give it, and as `text` the org predicate `org_id = $1::uuid`
    /// becomes a conversion PostgreSQL evaluates after cheaper conditions, on every org's rows
    /// (with a generic plan; the library sends the org typed, as `uuid`).
    pub(crate) fn org_parameter_type(&self, e: &Expr) -> ControlFlow<Violation> {
        if let Expr::Cast {
            expr, data_type, ..
        } = e
            && matches!(strip(expr), Expr::Value(v) if matches!(&v.value, Value::Placeholder(p) if (self.is_org_param)(p)))
            && !matches!(data_type, sqlparser::ast::DataType::Uuid)
        {
            return ControlFlow::Break(Violation::UnsupportedExpression(format!(
                "the org parameter cast to `{data_type}`: it is a uuid, and a use as another type \
                 can make PostgreSQL take it for that type, and the org predicate for a conversion \
                 it evaluates last; write `$org` bare or `$org::uuid`"
            )));
        }
        ControlFlow::Continue(())
    }

    /// Whether `e` is an org parameter, bare or under one cast (`$1::uuid`).
    ///
    /// No more: a chain of casts makes the org predicate cost more to the planner than a
    /// conjunct beside it, which PostgreSQL then evaluates first, on every org's rows, where
    /// its errors show their values (`$1::text::xml::text::xml::text::uuid`, `text` to `xml`
    /// being a stable cast the planner does not fold, and `c.name::int4` beside it failing
    /// on another org's name with the name in the message). Bare or cast once, the org
    /// predicate is one operator, as cheap as a conjunct can be.
    pub(crate) fn is_param(&self, e: &Expr) -> bool {
        let placeholder = |e: &Expr| matches!(strip(e), Expr::Value(v) if matches!(&v.value, Value::Placeholder(p) if (self.is_org_param)(p)));
        match strip(e) {
            Expr::Cast { expr, .. } => placeholder(expr),
            other => placeholder(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Violation, requirements};

    use crate::story::run;

    fn missing(table: &str) -> Result<(), Violation> {
        Err(Violation::MissingOrgPredicate {
            table: table.into(),
        })
    }

    #[test]
    fn an_on_clause_confines_only_its_own_joins_inputs() {
        // The ON inside `(...) AS j` sees the decoy named customers, not the real table.
        assert_eq!(
            run("SELECT customers.name FROM customers, \
                 ((SELECT 1 AS one) AS x JOIN (SELECT $1::uuid AS org_id) AS customers ON customers.org_id = $1) AS j"),
            missing("customers")
        );
        assert_eq!(
            run("UPDATE customers SET name = 'x' \
                 FROM ((SELECT 1 AS one) AS x JOIN (SELECT $1::uuid AS org_id) AS customers ON customers.org_id = $1) AS j"),
            missing("customers")
        );
        // The first ON cannot see `a`, joined after it: `a` there is the outer decoy.
        assert_eq!(
            run(
                "SELECT (SELECT string_agg(a.name, ',') FROM (SELECT 1 AS one) AS x \
                 JOIN (SELECT 2 AS two) AS y ON a.org_id = $1 JOIN customers a ON true) \
                 FROM (SELECT $1::uuid AS org_id) AS a"
            ),
            missing("a")
        );
        // An ON of a join on the other side of a comma does not see the table either.
        assert_eq!(
            run(
                "SELECT 1 FROM customers c, invoices i JOIN deals d ON c.org_id = $1 AND d.org_id = $1 \
                 WHERE i.org_id = $1"
            ),
            missing("c")
        );
        // Inside its own join, an ON confines both inputs (diesel's inner joins).
        assert_eq!(
            run(
                "SELECT 1 FROM invoices i JOIN customers c ON c.id = i.customer_id AND c.org_id = $1 \
                 AND i.org_id = $1"
            ),
            Ok(())
        );
    }

    #[test]
    fn a_name_hidden_by_a_join_alias_or_renamed_columns_confines_nothing() {
        // `customers.org_id` outside `(...) AS j` is the outer derived table's column.
        assert_eq!(
            run(
                "SELECT leak.name FROM (SELECT $1::uuid AS org_id) AS customers \
                 CROSS JOIN LATERAL (SELECT j.name FROM (customers JOIN (SELECT 1 AS one) AS o ON true) AS j \
                 WHERE customers.org_id = $1) AS leak"
            ),
            missing("customers")
        );
        assert_eq!(
            run(
                "SELECT 1 FROM (customers c JOIN invoices i ON c.id = i.customer_id) AS j \
                 WHERE c.org_id = $1 AND i.org_id = $1"
            ),
            missing("c")
        );
        // `c.org_id` here is the table's first column, `id`.
        assert_eq!(
            run("SELECT 1 FROM customers AS c(org_id, real_org) WHERE c.org_id = $1"),
            missing("c")
        );
        // Without the alias, diesel's parenthesized joins stay confinable.
        assert_eq!(
            run(
                "SELECT 1 FROM (customers c JOIN invoices i ON c.id = i.customer_id) \
                 WHERE c.org_id = $1 AND i.org_id = $1"
            ),
            Ok(())
        );
    }

    #[test]
    fn diesel_shaped_statements_with_the_org_predicate_pass() {
        for sql in [
            r#"SELECT "customers"."id" FROM "customers" WHERE (("customers"."org_id" = $1) AND ("customers"."name" = $2))"#,
            r#"SELECT COUNT(*) FROM "invoices" WHERE ("invoices"."org_id" = $1)"#,
            r#"UPDATE "customers" SET "name" = $2 WHERE ("customers"."org_id" = $1)"#,
            r#"DELETE FROM "customers" WHERE (("customers"."org_id" = $1) AND ("customers"."id" = $2))"#,
            r#"INSERT INTO "customers" ("org_id", "name", "email") VALUES ($1, $2, $3)"#,
            r#"INSERT INTO "customers" ("org_id", "name") VALUES ($1, $2), ($1, $3) RETURNING "customers"."id""#,
            r#"SELECT "currencies"."name" FROM "currencies" WHERE ("currencies"."code" = $2)"#,
            r#"SELECT i.id FROM invoices i INNER JOIN customers c ON c.id = i.customer_id AND c.org_id = $1 WHERE i.org_id = $1"#,
            r#"SELECT i.id FROM invoices i LEFT JOIN customers c ON (c.id = i.customer_id AND c.org_id = $1) WHERE i.org_id = $1"#,
            r#"SELECT i.id FROM invoices i JOIN currencies x ON x.code = i.currency WHERE i.org_id = $1"#,
            r#"SELECT id FROM invoices WHERE org_id = $1 AND customer_id IN (SELECT id FROM customers WHERE org_id = $1)"#,
            r#"SELECT id FROM invoices WHERE org_id = $1 AND EXISTS (SELECT 1 FROM customers c WHERE c.org_id = $1 AND c.id = invoices.customer_id)"#,
            r#"WITH mine AS (SELECT id FROM customers WHERE org_id = $org) SELECT * FROM mine"#,
            r#"INSERT INTO customers (org_id, name) VALUES ($1, $2) ON CONFLICT (org_id, email) DO UPDATE SET name = excluded.name"#,
            r#"SELECT id FROM invoices WHERE org_id = $1 UNION ALL SELECT id FROM customers WHERE org_id = $1"#,
            r#"SELECT id FROM invoices WHERE org_id = $1::uuid"#,
            r#"SELECT "deals"."title" FROM ("deals" INNER JOIN "customers" ON (("deals"."customer_id" = "customers"."id") AND ("customers"."org_id" = $1))) WHERE ("deals"."org_id" = $1)"#,
        ] {
            assert_eq!(run(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn a_missing_predicate_is_refused() {
        assert_eq!(run("SELECT * FROM invoices"), missing("invoices"));
        assert_eq!(
            run("SELECT * FROM invoices WHERE total > $2"),
            missing("invoices")
        );
        assert_eq!(run("UPDATE invoices SET total = 0"), missing("invoices"));
        assert_eq!(
            run("DELETE FROM invoices WHERE id = $2"),
            missing("invoices")
        );
    }

    #[test]
    fn a_predicate_bound_to_something_other_than_the_org_is_refused() {
        assert_eq!(
            run("SELECT * FROM invoices WHERE org_id = $2"),
            missing("invoices")
        );
        assert_eq!(
            run("SELECT * FROM invoices WHERE org_id = org_id"),
            missing("invoices")
        );
        assert_eq!(
            run("SELECT * FROM invoices WHERE org_id <> $1"),
            missing("invoices")
        );
    }

    #[test]
    fn a_predicate_on_the_wrong_alias_is_refused() {
        assert_eq!(
            run(
                "SELECT * FROM invoices i JOIN customers c ON c.id = i.customer_id WHERE c.org_id = $1"
            ),
            missing("i")
        );
        assert_eq!(
            run("SELECT * FROM invoices i WHERE invoices.org_id = $1"),
            missing("i")
        );
    }

    #[test]
    fn or_that_escapes_the_predicate_is_refused() {
        assert_eq!(
            run("SELECT * FROM invoices WHERE org_id = $1 OR total > 0"),
            missing("invoices")
        );
        assert_eq!(
            run("SELECT * FROM invoices WHERE (org_id = $1 OR true) AND id = $2"),
            missing("invoices")
        );
        assert_eq!(
            run("SELECT * FROM invoices WHERE NOT (org_id <> $1)"),
            missing("invoices")
        );
    }

    #[test]
    fn an_unfiltered_subquery_or_cte_is_refused() {
        assert_eq!(
            run(
                "SELECT id FROM invoices WHERE org_id = $1 AND customer_id IN (SELECT id FROM customers)"
            ),
            missing("customers")
        );
        assert_eq!(
            run("SELECT id, (SELECT count(*) FROM customers) FROM invoices WHERE org_id = $1"),
            missing("customers")
        );
        assert_eq!(
            run("WITH all_rows AS (SELECT * FROM invoices) SELECT * FROM all_rows"),
            missing("invoices")
        );
        assert_eq!(
            run("SELECT * FROM (SELECT * FROM invoices) AS x"),
            missing("invoices")
        );
        assert_eq!(
            run("SELECT id FROM invoices WHERE org_id = $1 UNION ALL SELECT id FROM customers"),
            missing("customers")
        );
    }

    #[test]
    fn a_parenthesized_join_without_the_joined_tables_predicate_is_refused() {
        assert_eq!(
            run(
                r#"SELECT 1 FROM ("deals" INNER JOIN "customers" ON ("deals"."customer_id" = "customers"."id")) WHERE ("deals"."org_id" = $1)"#
            ),
            missing("customers")
        );
    }

    #[test]
    fn a_right_or_full_join_predicate_does_not_confine_the_preserved_side() {
        assert_eq!(
            run(
                "SELECT * FROM invoices i RIGHT JOIN customers c ON c.id = i.customer_id AND c.org_id = $1 AND i.org_id = $1"
            ),
            missing("i")
        );
        assert_eq!(
            run(
                "SELECT * FROM invoices i RIGHT JOIN customers c ON c.id = i.customer_id AND c.org_id = $1 WHERE i.org_id = $1"
            ),
            missing("c")
        );
        assert_eq!(
            run(
                "SELECT * FROM invoices i FULL JOIN customers c ON c.id = i.customer_id AND c.org_id = $1 WHERE i.org_id = $1"
            ),
            missing("c")
        );
        assert_eq!(
            run(
                "SELECT * FROM invoices i RIGHT JOIN customers c ON c.id = i.customer_id WHERE i.org_id = $1 AND c.org_id = $1"
            ),
            Ok(())
        );
    }

    #[test]
    fn a_left_join_predicate_on_the_left_table_does_not_confine_it() {
        // In a LEFT JOIN the ON clause does not filter the left side's rows.
        assert_eq!(
            run(
                "SELECT * FROM invoices i LEFT JOIN customers c ON c.id = i.customer_id AND i.org_id = $1 AND c.org_id = $1"
            ),
            missing("i")
        );
    }

    use crate::story::{read, reqs};

    #[test]
    fn symbolic_mode_records_what_each_reference_is_constrained_by() {
        assert_eq!(
            reqs(
                "SELECT * FROM invoices i JOIN customers c ON c.id = i.customer_id AND c.org_id = $org WHERE i.org_id = $org AND i.total > $1"
            ),
            [
                read("invoices", &["org_id"]),
                read("customers", &["org_id"])
            ]
        );
        // Missing, wrong alias, OR, unfiltered subquery and CTE: the reference is unconstrained.
        assert_eq!(reqs("SELECT * FROM invoices"), [read("invoices", &[])]);
        assert_eq!(
            reqs("SELECT * FROM invoices i WHERE c.org_id = $org"),
            [read("invoices", &[])]
        );
        assert_eq!(
            reqs("SELECT * FROM invoices WHERE org_id = $org OR true"),
            [read("invoices", &[])]
        );
        assert_eq!(
            reqs(
                "SELECT * FROM invoices WHERE org_id = $org AND customer_id IN (SELECT id FROM customers)"
            ),
            [read("invoices", &["org_id"]), read("customers", &[])]
        );
        assert_eq!(
            reqs("WITH x AS (SELECT * FROM invoices) SELECT * FROM x"),
            [read("invoices", &[])]
        );
        assert_eq!(
            requirements("SELECT set_config('tenant.org_id', 'x', true)", &|_| false),
            Err(Violation::ChangesSessionSetting("set_config".into()))
        );
    }

    #[test]
    fn unqualified_org_column_counts_only_with_one_table_in_scope() {
        assert_eq!(run("SELECT * FROM invoices WHERE org_id = $org"), Ok(()));
        assert_eq!(
            run(
                "SELECT * FROM invoices i JOIN customers c ON c.id = i.customer_id WHERE org_id = $1 AND c.org_id = $1"
            ),
            missing("i")
        );
    }
}

#[cfg(test)]
mod org_parameter_tests {
    use crate::Violation;
    use crate::story::tables;

    fn run(sql: &str) -> Result<(), Violation> {
        crate::check(sql, &tables(), &|p: &str| p == "$1")
    }

    #[test]
    fn the_org_parameter_is_bare_or_cast_once() {
        for sql in [
            "SELECT c.name FROM customers c WHERE c.org_id = $1",
            "SELECT c.name FROM customers c WHERE c.org_id = $1::uuid",
            "SELECT c.name FROM customers c WHERE ($1)::uuid = c.org_id",
        ] {
            assert_eq!(run(sql), Ok(()), "{sql}");
        }
        // A chain of casts made the org predicate the costliest conjunct, evaluated last on
        // every org's rows: the red team's statement, whose error message carried org B's
        // customer's name.
        for sql in [
            "SELECT c.name FROM customers c WHERE (CASE WHEN c.org_id = $2 THEN c.name::int4 ELSE 0 END) = 0 \
             AND c.org_id = $1::text::xml::text::xml::text::xml::text::xml::text::xml::text::uuid",
            "SELECT c.name FROM customers c WHERE c.org_id = $1::text::uuid",
            "SELECT c.name FROM customers c WHERE c.org_id = CAST(CAST($1 AS text) AS uuid)",
        ] {
            assert_eq!(
                run(sql),
                Err(Violation::MissingOrgPredicate { table: "c".into() }),
                "{sql}"
            );
        }
    }
}
