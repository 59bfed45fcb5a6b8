//! The relations of a scope as the evaluation-order rule sees them, and what a column of a
//! sub-query or CTE stands for once PostgreSQL merges it into the outer query.
//!
//! PostgreSQL pulls a sub-query or CTE up into the query that reads it, or pushes the outer
//! query's conditions down into it, unless it has `LIMIT`/`OFFSET` (or the CTE is
//! `MATERIALIZED`): the outer `s.x IS NOT NULL` then runs as `<what x is> IS NOT NULL`, in the
//! scan of the table below. So before a condition is judged, each column of such a relation
//! is replaced by its defining expression ([`Scope::expand`]), through any depth of nesting,
//! `*`, and column alias lists; a column the rule cannot trace (a set operation's, one past
//! the depth limit) becomes [`UNTRACED`], which counts as able to fail and costing nothing.

use std::ops::ControlFlow;

use sqlparser::ast::{
    CteAsMaterialized, Expr, Ident, JoinOperator, ObjectName, Query, SelectItem, SetExpr,
    TableAlias, TableFactor, TableWithJoins, visit_expressions_mut,
};

use crate::parse::{fold_name, ident};

/// The name of the stand-in for a column whose expression the rule cannot trace (no real
/// column can have it: it starts with a control character).
pub(super) const UNTRACED: &str = "\u{1}untraced";

/// How deep sub-queries are followed before a column counts as untraced.
const MAX_DEPTH: usize = 16;

/// A CTE visible to the statement: its name, its query, and whether it is `MATERIALIZED`
/// (never merged into the query that reads it).
#[derive(Clone)]
pub(crate) struct CteDefinition {
    name: String,
    query: Query,
    /// The column names of `WITH w(a, b) AS ..`.
    columns: Vec<String>,
    materialized: bool,
}

/// What a relation of a scope is to the rule.
enum Relation<'q> {
    /// Its rows never meet a tenant table's scan before its own filters ran: a global table,
    /// a sub-query with `LIMIT`/`OFFSET`, a table function, a materialized CTE.
    Fenced,
    /// A table (a tenant table, or one the registry does not know).
    Base,
    /// A sub-query or CTE the planner may merge: its query, and its alias's column names.
    Merged(&'q Query, Vec<String>),
    /// A parenthesized join with an alias: its columns are the joined relations', which the
    /// rule does not trace.
    Untraced,
}

/// A merged sub-query or CTE of an enclosing query, which a sub-query's conditions may read
/// (and which PostgreSQL may pull up together with them).
pub(crate) struct OuterRelation {
    qualifier: String,
    query: Query,
    names: Vec<String>,
}

/// The relations of one FROM, by qualifier.
pub(super) struct Scope<'q> {
    relations: Vec<(String, Relation<'q>)>,
    ctes: &'q [CteDefinition],
    /// The merged relations of the enclosing queries, innermost last.
    outer: &'q [OuterRelation],
    global: &'q dyn Fn(&ObjectName) -> bool,
}

impl<'q> Scope<'q> {
    /// The scope of `from`, where `global` says which names are global tables and `ctes` are
    /// the CTEs visible (innermost last). The ON conditions of its joins go to `conditions`.
    pub(super) fn new(
        from: &[&'q TableWithJoins],
        ctes: &'q [CteDefinition],
        outer: &'q [OuterRelation],
        global: &'q dyn Fn(&ObjectName) -> bool,
        conditions: &mut Vec<&'q Expr>,
    ) -> Self {
        let mut scope = Self {
            relations: Vec::new(),
            ctes,
            outer,
            global,
        };
        for twj in from {
            scope.add(twj, conditions);
        }
        scope
    }

    fn add(&mut self, twj: &'q TableWithJoins, conditions: &mut Vec<&'q Expr>) {
        self.factor(&twj.relation, conditions);
        for join in &twj.joins {
            self.factor(&join.relation, conditions);
            let constraint = match &join.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::CrossJoin(c) => Some(c),
                _ => None,
            };
            if let Some(sqlparser::ast::JoinConstraint::On(on)) = constraint {
                conditions.extend(super::conjuncts(on));
            }
        }
    }

    fn factor(&mut self, factor: &'q TableFactor, conditions: &mut Vec<&'q Expr>) {
        let named = |alias: &Option<TableAlias>, default: String| {
            alias.as_ref().map_or(default, |a| ident(&a.name))
        };
        let columns = |alias: &Option<TableAlias>| {
            alias
                .as_ref()
                .map(|a| a.columns.iter().map(|c| ident(&c.name)).collect())
                .unwrap_or_default()
        };
        match factor {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let bare = fold_name(name)
                    .and_then(|p| p.last().cloned())
                    .unwrap_or_default();
                let qualifier = named(alias, bare.clone());
                let cte = (name.0.len() == 1)
                    .then(|| self.ctes.iter().rev().find(|c| c.name == bare))
                    .flatten();
                let relation = match cte {
                    Some(c) if c.materialized || fenced(&c.query) => Relation::Fenced,
                    Some(c) => {
                        let names: Vec<String> = columns(alias);
                        Relation::Merged(
                            &c.query,
                            if names.is_empty() {
                                c.columns.clone()
                            } else {
                                names
                            },
                        )
                    }
                    None if (self.global)(name) => Relation::Fenced,
                    None => Relation::Base,
                };
                self.relations.push((qualifier, relation));
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let relation = if fenced(subquery) {
                    Relation::Fenced
                } else {
                    Relation::Merged(subquery, columns(alias))
                };
                self.relations.push((named(alias, String::new()), relation));
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if let Some(alias) = alias {
                    self.relations
                        .push((ident(&alias.name), Relation::Untraced));
                }
                self.add(table_with_joins, conditions);
            }
            TableFactor::Table { alias, .. }
            | TableFactor::Function { alias, .. }
            | TableFactor::UNNEST { alias, .. } => {
                self.relations
                    .push((named(alias, String::new()), Relation::Fenced));
            }
            _ => self.relations.push((String::new(), Relation::Base)),
        }
    }

    /// This scope's merged relations, for the sub-queries inside it.
    pub(super) fn merged(&self) -> Vec<OuterRelation> {
        self.relations
            .iter()
            .filter_map(|(qualifier, r)| match r {
                Relation::Merged(query, names) => Some(OuterRelation {
                    qualifier: qualifier.clone(),
                    query: (*query).clone(),
                    names: names.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// Whether a relation of the scope may carry a tenant table's rows into it.
    pub(super) fn any_unfenced(&self) -> bool {
        self.relations
            .iter()
            .any(|(_, r)| !matches!(r, Relation::Fenced))
    }

    /// Whether `condition` may read a column of a relation that is not fenced: one of this
    /// scope's, or, with `nested`, one of an outer query's (a qualifier not of this scope, or
    /// a column without one).
    pub(super) fn may_read_unfenced(&self, condition: &Expr, nested: bool) -> bool {
        let mut reads = false;
        let _ = sqlparser::ast::visit_expressions(condition, |e| {
            match e {
                Expr::Identifier(_) => reads |= nested || self.any_unfenced(),
                Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                    let qualifier = ident(&parts[parts.len() - 2]);
                    reads |= match self.relations.iter().find(|(q, _)| *q == qualifier) {
                        Some((_, r)) => !matches!(r, Relation::Fenced),
                        None => true,
                    };
                }
                Expr::CompoundIdentifier(_)
                | Expr::CompoundFieldAccess { .. }
                | Expr::QualifiedWildcard(..) => reads = true,
                Expr::Function(f) if has_row_argument(f) => reads = true,
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
        reads
    }

    /// `expr` with every column of a merged sub-query or CTE replaced by what it stands for.
    pub(super) fn expand(&self, expr: &Expr) -> Expr {
        self.expand_at(expr, 0)
    }

    fn expand_at(&self, expr: &Expr, depth: usize) -> Expr {
        let mut out = expr.clone();
        let _ = visit_expressions_mut(&mut out, |e| {
            if let Some(definition) = self.definition(e, depth) {
                *e = definition;
            }
            ControlFlow::<()>::Continue(())
        });
        out
    }

    /// What the column reference `e` stands for, if it is a column of a merged relation of
    /// this scope or, past this scope's own relations, of an enclosing one.
    fn definition(&self, e: &Expr, depth: usize) -> Option<Expr> {
        match e {
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let qualifier = ident(&parts[parts.len() - 2]);
                let column = ident(&parts[parts.len() - 1]);
                match self.relations.iter().find(|(q, _)| *q == qualifier) {
                    Some((_, Relation::Merged(query, names))) => {
                        Some(self.column_of(query, names, &column, depth))
                    }
                    Some((_, Relation::Untraced)) => Some(Expr::Identifier(Ident::new(UNTRACED))),
                    Some(_) => None,
                    None => self
                        .outer
                        .iter()
                        .rev()
                        .find(|o| o.qualifier == qualifier)
                        .map(|o| self.column_of(&o.query, &o.names, &column, depth)),
                }
            }
            // `f(s.*)` is the field `s.f` when `s` has one: untraced.
            Expr::Function(f) if has_row_argument(f) => {
                Some(Expr::Identifier(Ident::new(UNTRACED)))
            }
            // A whole row (`s`, `s.*`): merged, it is the row of what each column computes,
            // and PostgreSQL splits a test of it into one per column; compared, rows of
            // dissimilar column types fail on the values. Untraced.
            Expr::QualifiedWildcard(..) => Some(Expr::Identifier(Ident::new(UNTRACED))),
            Expr::Identifier(id)
                if {
                    let name = ident(id);
                    self.relations.iter().any(|(q, _)| *q == name)
                        || self.outer.iter().any(|o| o.qualifier == name)
                } =>
            {
                Some(Expr::Identifier(Ident::new(UNTRACED)))
            }
            Expr::Identifier(id) => {
                let column = ident(id);
                let plain = Expr::Identifier(id.clone());
                // The first merged relation that has the column explicitly (a base table
                // beside it may have it too: then PostgreSQL refuses the ambiguity), this
                // scope's first, then the enclosing ones'.
                let own = self.relations.iter().filter_map(|(_, r)| match r {
                    Relation::Merged(query, names) => Some((*query, names.as_slice())),
                    _ => None,
                });
                let outer = self
                    .outer
                    .iter()
                    .rev()
                    .map(|o| (&o.query, o.names.as_slice()));
                own.chain(outer).find_map(|(query, names)| {
                    let found = self.column_of(query, names, &column, depth);
                    (found != plain && !is_untraced(&found)).then_some(found)
                })
            }
            _ => None,
        }
    }

    /// What column `column` of the merged relation `query` (its alias naming the columns
    /// `names` by position) stands for: its expression, expanded in the sub-query's own scope;
    /// the bare column when it is one of a table's; [`UNTRACED`] when the rule cannot tell.
    fn column_of(&self, query: &Query, names: &[String], column: &str, depth: usize) -> Expr {
        let untraced = || Expr::Identifier(Ident::new(UNTRACED));
        if depth >= MAX_DEPTH {
            return untraced();
        }
        let position = names.iter().position(|n| n == column);
        let select = match body(query) {
            Some(SetExpr::Select(select)) => select,
            // Rows written out: constants are the same whatever the scan, but a row may read
            // a LATERAL column (`LATERAL (VALUES (f(c.x))) v(x)`), and one row is pulled up.
            Some(SetExpr::Values(values)) => {
                return match (values.rows.as_slice(), position) {
                    (_, _)
                        if values
                            .rows
                            .iter()
                            .flat_map(|r| &r.content)
                            .all(|e| !super::has_column(e)) =>
                    {
                        Expr::Identifier(Ident::new(column))
                    }
                    ([row], Some(p)) => row
                        .content
                        .get(p)
                        .map_or_else(untraced, |e| self.expand_at(e, depth + 1)),
                    _ => untraced(),
                };
            }
            _ => return untraced(),
        };
        // The sub-query's own CTEs, inside it, after the enclosing ones.
        let mut ctes: Vec<CteDefinition> = Vec::new();
        let own = definitions(query);
        let visible: &[CteDefinition] = if own.is_empty() {
            self.ctes
        } else {
            ctes.extend(self.ctes.iter().cloned());
            ctes.extend(own);
            &ctes
        };
        let mut conditions = Vec::new();
        let from: Vec<&TableWithJoins> = select.from.iter().collect();
        let inner = Scope::new(&from, visible, self.outer, self.global, &mut conditions);
        // By position through the alias's column list; past it, by name among the columns
        // the list does not rename. A name that matches twice, or that the rule cannot be sure
        // of, is untraced.
        let renamed = names.len();
        let mut at = 0usize;
        let mut matched: Vec<Expr> = Vec::new();
        let mut unsure = false;
        let mut wildcard = false;
        for item in &select.projection {
            match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    if position == Some(at) {
                        return inner.expand_at(e, depth + 1);
                    }
                    if position.is_none() && at >= renamed {
                        let name = match item {
                            SelectItem::ExprWithAlias { alias, .. } => Some(ident(alias)),
                            _ => output_name(e),
                        };
                        match name {
                            Some(n) if n == column => matched.push(inner.expand_at(e, depth + 1)),
                            Some(_) => {}
                            None => unsure = true,
                        }
                    }
                    at += 1;
                }
                // Past a `*`, positions are unknown.
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    if position.is_some() || renamed > 0 {
                        return untraced();
                    }
                    wildcard = true;
                    if let Some(found) =
                        inner.definition(&Expr::Identifier(Ident::new(column)), depth + 1)
                    {
                        matched.push(found);
                    }
                }
                _ => return untraced(),
            }
        }
        match (matched.len(), position) {
            (_, Some(_)) => untraced(),
            (1, None) => matched.remove(0),
            // Through `*`, a table's column, when every named column's name is sure.
            (0, None) if wildcard && !unsure => Expr::Identifier(Ident::new(column)),
            _ => untraced(),
        }
    }
}

/// Whether a call has a whole row (`s.*`) among its arguments (`count(*)` has none).
fn has_row_argument(f: &sqlparser::ast::Function) -> bool {
    use sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    matches!(&f.args, FunctionArguments::List(list) if list.args.iter().any(|a| matches!(
        a,
        FunctionArg::Unnamed(FunctionArgExpr::QualifiedWildcard(_))
    )))
}

/// Whether `e` is the stand-in for an untraced column.
fn is_untraced(e: &Expr) -> bool {
    matches!(e, Expr::Identifier(id) if id.value == UNTRACED)
}

/// The body of `query`, through parentheses.
fn body(query: &Query) -> Option<&SetExpr> {
    let mut body = query.body.as_ref();
    while let SetExpr::Query(q) = body {
        if fenced(q) {
            return None;
        }
        body = q.body.as_ref();
    }
    Some(body)
}

/// Whether PostgreSQL keeps `query` apart from the query that reads it: `LIMIT`, `OFFSET` or
/// `FETCH` stop it from being merged, and conditions from being pushed into it.
fn fenced(query: &Query) -> bool {
    query.limit_clause.is_some() || query.fetch.is_some()
}

/// The name PostgreSQL gives an output column written without an alias, where the rule is sure
/// of it: the column's for a column, the function's for a call, the operand's through a cast,
/// `case`, `array`. `None` for the rest.
fn output_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(id) => Some(ident(id)),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident),
        Expr::Function(f) => fold_name(&f.name).and_then(|p| p.last().cloned()),
        // A cast takes its operand's name, or else the type's, which the rule does not spell
        // as PostgreSQL does.
        Expr::Cast { expr, .. } | Expr::Nested(expr) => output_name(expr),
        Expr::Case { .. } => Some("case".into()),
        Expr::Array(_) => Some("array".into()),
        _ => None,
    }
}

/// The CTEs `query` declares, for the relations of its body. One that reads itself (in a
/// `WITH RECURSIVE`) is never merged; the others of such a list are.
pub(crate) fn definitions(query: &Query) -> Vec<CteDefinition> {
    query
        .with
        .iter()
        .flat_map(|w| w.cte_tables.iter().map(move |c| (w.recursive, c)))
        .map(|(recursive, c)| {
            let name = ident(&c.alias.name);
            let reads_itself = recursive && reads_relation(&c.query, &name);
            CteDefinition {
                query: c.query.as_ref().clone(),
                columns: c.alias.columns.iter().map(|c| ident(&c.name)).collect(),
                materialized: reads_itself
                    || matches!(c.materialized, Some(CteAsMaterialized::Materialized)),
                name,
            }
        })
        .collect()
}

/// Whether `query` names the relation `name` (unqualified) where it means the CTE being
/// defined: not inside a query whose own WITH declares `name` again (that one hides it). In
/// doubt it says no, which keeps the CTE counted as merged: the rule then refuses more.
fn reads_relation(query: &Query, name: &str) -> bool {
    use sqlparser::ast::{Visit, Visitor};
    struct ReadsItself<'n> {
        name: &'n str,
        /// For each query the walk is inside: whether its WITH declares the name again.
        hidden: Vec<bool>,
        found: bool,
    }
    impl Visitor for ReadsItself<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            let declares = query.with.as_ref().is_some_and(|w| {
                w.cte_tables
                    .iter()
                    .any(|c| ident(&c.alias.name) == self.name)
            });
            self.hidden.push(declares);
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.hidden.pop();
            ControlFlow::Continue(())
        }
        fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
            if relation.0.len() == 1
                && fold_name(relation).is_some_and(|p| p.last().is_some_and(|n| n == self.name))
                && !self.hidden.iter().any(|h| *h)
            {
                self.found = true;
            }
            ControlFlow::Continue(())
        }
    }
    let mut visitor = ReadsItself {
        name,
        hidden: Vec::new(),
        found: false,
    };
    let _ = query.visit(&mut visitor);
    visitor.found
}
