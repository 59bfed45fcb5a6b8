//! Checks that an SQL statement confines every tenant table it touches to the session's org.
//!
//! Used at run time by `tenant-core` on every statement a scoped handle sends (the statement is
//! rendered by diesel, and the org parameters are the bind positions holding the handle's org),
//! and meant for compile time in `tenant_sql!` (with `$org` as the org parameter). The rule is
//! the principle of THREATS.md, applied to one statement: every reference to a registered
//! tenant table must be constrained to the org, and nothing may move rows between orgs or
//! change the session's org.
//!
//! ```
//! use tenant_sqlcheck::{Tables, Violation, check};
//!
//! let tables = Tables::new([("invoices", Some("org_id")), ("currencies", None)]);
//! let org = |p: &str| p == "$1";
//! assert_eq!(check(r#"SELECT * FROM invoices WHERE invoices.org_id = $1 AND total > $2"#, &tables, &org), Ok(()));
//! assert_eq!(
//!     check("SELECT * FROM invoices WHERE org_id = $1 OR total > 0", &tables, &org),
//!     Err(Violation::MissingOrgPredicate { table: "invoices".into() })
//! );
//! ```
//!
//! The check is structural and fails closed: a tenant table counts as confined only by a
//! top-level `AND` conjunct `<table or alias>.<org column> = <org parameter>` in the WHERE of the
//! SELECT, UPDATE or DELETE that reads it (or in the ON of its own join, or of an inner join);
//! every reference the visitor finds must have been confirmed that way, or the statement is
//! refused.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, BinaryOperator, Delete, Expr, FromTable, Ident, Insert, JoinConstraint,
    JoinOperator, ObjectName, ObjectNamePart, OnConflictAction, OnInsert, Query, Select, SetExpr,
    Statement, TableFactor, TableObject, TableWithJoins, Update, UpdateTableFromKind, Value, Visit,
    Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// The tables the check knows: tenant tables with their org column, and global tables.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    entries: Vec<(String, Option<String>)>,
    symbolic: bool,
}

/// The org column of every table in symbolic mode: matches no real column.
const SYMBOLIC: &str = "\u{0}org column";

/// What a statement needs from the registry to be confined, found without knowing the registry
/// (symbolic mode, for `tenant_sql!`, whose registry is only known to the compiler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `table` is read: if it is a tenant table, its org column must be among `constrained`.
    Read {
        /// The table.
        table: String,
        /// Columns of this reference constrained `= <org param>` (ANDed).
        constrained: Vec<String>,
    },
    /// `table` is updated or deleted from: it must be a tenant table, and its org column must
    /// not be among `assigned`.
    Write {
        /// The table.
        table: String,
        /// Columns assigned (UPDATE SET, ON CONFLICT DO UPDATE SET).
        assigned: Vec<String>,
    },
    /// Rows are inserted into `table`: it must be a tenant table, and its org column must be
    /// among `org_columns` (columns holding the org parameter in every row).
    Insert {
        /// The table.
        table: String,
        /// Columns whose value is the org parameter in every row.
        org_columns: Vec<String>,
    },
}

/// The requirements `sql` places on the registry, with every table treated as a possible
/// tenant table: structural violations (`set_config`, non-DML, unparsable) are reported here;
/// whether each requirement holds is decided later against the real registry.
pub fn requirements(
    sql: &str,
    is_org_param: &dyn Fn(&str) -> bool,
) -> Result<Vec<Requirement>, Violation> {
    let tables = Tables {
        entries: Vec::new(),
        symbolic: true,
    };
    run_checker(sql, &tables, is_org_param, false)
}

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
        "`{0}` statements cannot run in an org-scoped session: only SELECT, INSERT, UPDATE and DELETE can"
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
}

enum Kind<'a> {
    Tenant(&'a str),
    Global,
    Unknown,
}

impl Tables {
    /// Tables as `(name, Some(org_column))` for tenant tables and `(name, None)` for global ones.
    pub fn new<'a>(tables: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Self {
        Self {
            entries: tables
                .into_iter()
                .map(|(t, c)| (t.to_owned(), c.map(str::to_owned)))
                .collect(),
            symbolic: false,
        }
    }

    fn kind(&self, name: &ObjectName) -> Kind<'_> {
        let Some(last) = last_ident(name) else {
            return Kind::Unknown;
        };
        if self.symbolic {
            return Kind::Tenant(SYMBOLIC);
        }
        match self.entries.iter().find(|(t, _)| *t == last) {
            Some((_, Some(col))) => Kind::Tenant(col),
            Some((_, None)) => Kind::Global,
            None => Kind::Unknown,
        }
    }
}

/// Checks one statement. `is_org_param` says which placeholders (`$1`, `$org`, ...) hold the
/// session's org.
pub fn check(
    sql: &str,
    tables: &Tables,
    is_org_param: &dyn Fn(&str) -> bool,
) -> Result<(), Violation> {
    check_statement(sql, tables, is_org_param, false)
}

/// Checks a statement of the admin path for global tables: it may write global tables, and it
/// may not touch any tenant table at all (that would copy tenant data into shared tables).
pub fn check_global_write(sql: &str, tables: &Tables) -> Result<(), Violation> {
    check_statement(sql, tables, &|_| false, true)
}

fn check_statement(
    sql: &str,
    tables: &Tables,
    is_org_param: &dyn Fn(&str) -> bool,
    global_writes: bool,
) -> Result<(), Violation> {
    run_checker(sql, tables, is_org_param, global_writes).map(|_| ())
}

fn run_checker(
    sql: &str,
    tables: &Tables,
    is_org_param: &dyn Fn(&str) -> bool,
    global_writes: bool,
) -> Result<Vec<Requirement>, Violation> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| Violation::Unparsable(e.to_string()))?;
    let [statement] = statements.as_slice() else {
        return Err(Violation::StatementCount(statements.len()));
    };
    let mut checker = Checker {
        tables,
        is_org_param,
        global_writes,
        ctes: HashSet::new(),
        seen: Vec::new(),
        verified: Vec::new(),
        requirements: Vec::new(),
    };
    // CTE names are derived tables whose own queries are checked where they are defined.
    let _ = statement.visit(&mut CteCollector(&mut checker.ctes));
    match statement {
        Statement::Query(_)
        | Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_) => {}
        other => {
            let text = other.to_string();
            let keyword = text.split_whitespace().next().unwrap_or("?").to_uppercase();
            return Err(Violation::UnsupportedStatement(keyword));
        }
    }
    if let ControlFlow::Break(v) = statement.visit(&mut checker) {
        return Err(v);
    }
    // Every reference the visitor saw must have been confirmed by a scope check.
    for table in &checker.seen {
        match checker.verified.iter().position(|v| v == table) {
            Some(i) => {
                checker.verified.swap_remove(i);
            }
            None => {
                return Err(Violation::Unverifiable {
                    table: table.clone(),
                });
            }
        }
    }
    Ok(checker.requirements)
}

struct CteCollector<'a>(&'a mut HashSet<String>);

impl Visitor for CteCollector<'_> {
    type Break = ();
    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.0.insert(ident(&cte.alias.name));
            }
        }
        ControlFlow::Continue(())
    }
}

struct Checker<'a> {
    tables: &'a Tables,
    is_org_param: &'a dyn Fn(&str) -> bool,
    /// The admin path: writes to global tables are allowed.
    global_writes: bool,
    ctes: HashSet<String>,
    /// Tenant-table references found by the visitor.
    seen: Vec<String>,
    /// Tenant-table references confirmed confined by a scope check.
    verified: Vec<String>,
    /// Symbolic mode: what each reference needs from the registry.
    requirements: Vec<Requirement>,
}

/// One table in the FROM of a SELECT, UPDATE or DELETE.
struct ScopeEntry<'e> {
    table: String,
    qualifier: String,
    org_column: String,
    /// ON conjuncts that confine this table: its own join's, or any inner join's.
    on: Vec<&'e Expr>,
}

impl Visitor for Checker<'_> {
    type Break = Violation;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Violation> {
        reject_unsupported_set_expr(&query.body)
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Violation> {
        let from: Vec<&TableWithJoins> = select.from.iter().collect();
        self.check_scope(&from, select.selection.as_ref())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Violation> {
        if let TableFactor::Table { name, args, .. } = factor {
            if args.is_some() {
                return ControlFlow::Continue(()); // a table function, not a relation
            }
            match self.kind_of(name) {
                Kind::Tenant(_) => self.seen.push(last_ident(name).unwrap_or_default()),
                Kind::Global => {}
                Kind::Unknown => {
                    let table = last_ident(name).unwrap_or_default();
                    if !self.ctes.contains(&table) {
                        return ControlFlow::Break(Violation::UnregisteredTable { table });
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Violation> {
        if let Expr::Function(f) = expr {
            let name = last_ident(&f.name).unwrap_or_default();
            if name == "set_config" {
                return ControlFlow::Break(Violation::ChangesSessionSetting(name));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Violation> {
        match statement {
            Statement::Update(update) => self.check_update(update),
            Statement::Delete(delete) => self.check_delete(delete),
            Statement::Insert(insert) => self.check_insert(insert),
            _ => ControlFlow::Continue(()),
        }
    }
}

fn reject_unsupported_set_expr(body: &SetExpr) -> ControlFlow<Violation> {
    match body {
        SetExpr::Select(_) | SetExpr::Query(_) | SetExpr::Values(_) => ControlFlow::Continue(()),
        SetExpr::SetOperation { left, right, .. } => {
            reject_unsupported_set_expr(left)?;
            reject_unsupported_set_expr(right)
        }
        SetExpr::Table(t) => ControlFlow::Break(Violation::Unverifiable {
            table: t.table_name.as_ref().map(ident).unwrap_or_default(),
        }),
        other => ControlFlow::Break(Violation::UnsupportedStatement(
            other
                .to_string()
                .split_whitespace()
                .next()
                .unwrap_or("?")
                .to_uppercase(),
        )),
    }
}

impl Checker<'_> {
    /// The kind of a referenced relation; a CTE name is a derived table, checked where defined.
    fn kind_of(&self, name: &ObjectName) -> Kind<'_> {
        if self.tables.symbolic && last_ident(name).is_some_and(|n| self.ctes.contains(&n)) {
            return Kind::Global;
        }
        self.tables.kind(name)
    }

    /// Checks every tenant table of `from` against the WHERE conjuncts and the ON conjuncts.
    fn check_scope(
        &mut self,
        from: &[&TableWithJoins],
        selection: Option<&Expr>,
    ) -> ControlFlow<Violation> {
        let mut entries: Vec<ScopeEntry<'_>> = Vec::new();
        let mut inner_on: Vec<&Expr> = Vec::new();
        let mut count = 0usize;
        for twj in from {
            self.collect(twj, Vec::new(), &mut entries, &mut inner_on, &mut count);
        }
        let where_conjuncts: Vec<&Expr> = selection.map(conjuncts).unwrap_or_default();
        let single = count == 1;
        if self.tables.symbolic {
            for entry in &entries {
                let mut constrained: Vec<String> = where_conjuncts
                    .iter()
                    .chain(entry.on.iter())
                    .chain(inner_on.iter())
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
            let confined = where_conjuncts
                .iter()
                .chain(entry.on.iter())
                .chain(inner_on.iter())
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

    /// Adds the tables of `twj` to the scope: its relation (confined also by `on`, the ON of the
    /// join it is the right side of), then each join. A parenthesized join (`FROM (a JOIN b ON
    /// ...)`, as diesel writes it) is flattened into the same scope.
    fn collect<'e>(
        &self,
        twj: &'e TableWithJoins,
        on: Vec<&'e Expr>,
        entries: &mut Vec<ScopeEntry<'e>>,
        inner_on: &mut Vec<&'e Expr>,
        count: &mut usize,
    ) {
        self.collect_factor(&twj.relation, on, entries, inner_on, count);
        for join in &twj.joins {
            // Which ON clauses confine what: an inner join's ON filters the whole result (every
            // table); a LEFT join's ON filters only its right side; a RIGHT or FULL join
            // preserves the right side, so its ON confines nothing (only the WHERE can).
            let (constraint, inner) = match &join.join_operator {
                JoinOperator::Join(c) | JoinOperator::Inner(c) => (Some(c), true),
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (Some(c), false),
                JoinOperator::CrossJoin(c) => (Some(c), true),
                _ => (None, false),
            };
            let join_on: Vec<&Expr> = match constraint {
                Some(JoinConstraint::On(e)) => conjuncts(e),
                _ => Vec::new(),
            };
            if inner {
                inner_on.extend(join_on.iter().copied());
            }
            self.collect_factor(&join.relation, join_on, entries, inner_on, count);
        }
    }

    fn collect_factor<'e>(
        &self,
        factor: &'e TableFactor,
        on: Vec<&'e Expr>,
        entries: &mut Vec<ScopeEntry<'e>>,
        inner_on: &mut Vec<&'e Expr>,
        count: &mut usize,
    ) {
        match factor {
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                self.collect(table_with_joins, on, entries, inner_on, count);
            }
            other => {
                *count += 1;
                self.push_entry(entries, other, on);
            }
        }
    }

    fn push_entry<'e>(
        &self,
        entries: &mut Vec<ScopeEntry<'e>>,
        factor: &TableFactor,
        on: Vec<&'e Expr>,
    ) {
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
            entries.push(ScopeEntry {
                table,
                qualifier,
                org_column: col.to_owned(),
                on,
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

    fn is_param(&self, e: &Expr) -> bool {
        match strip(e) {
            Expr::Value(v) => matches!(&v.value, Value::Placeholder(p) if (self.is_org_param)(p)),
            Expr::Cast { expr, .. } => self.is_param(expr),
            _ => false,
        }
    }

    fn check_update(&mut self, update: &Update) -> ControlFlow<Violation> {
        let mut from: Vec<&TableWithJoins> = vec![&update.table];
        if let Some(UpdateTableFromKind::AfterSet(t) | UpdateTableFromKind::BeforeSet(t)) =
            &update.from
        {
            from.extend(t.iter());
        }
        if let TableFactor::Table { name, .. } = &update.table.relation {
            if self.tables.symbolic {
                let assigned = update
                    .assignments
                    .iter()
                    .flat_map(assignment_targets)
                    .collect();
                self.requirements.push(Requirement::Write {
                    table: last_ident(name).unwrap_or_default(),
                    assigned,
                });
            }
            match self.kind_of(name) {
                Kind::Tenant(col) => {
                    for a in &update.assignments {
                        if assignment_targets(a).iter().any(|c| c == col) {
                            return ControlFlow::Break(Violation::AssignsOrgColumn {
                                table: last_ident(name).unwrap_or_default(),
                                column: col.to_owned(),
                            });
                        }
                    }
                }
                Kind::Global if !self.global_writes => {
                    return ControlFlow::Break(Violation::WritesGlobalTable {
                        table: last_ident(name).unwrap_or_default(),
                    });
                }
                Kind::Global | Kind::Unknown => {}
            }
        }
        self.check_scope(&from, update.selection.as_ref())
    }

    fn check_delete(&mut self, delete: &Delete) -> ControlFlow<Violation> {
        if !delete.tables.is_empty() {
            return ControlFlow::Break(Violation::UnsupportedStatement(
                "multi-table DELETE".into(),
            ));
        }
        let (FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables)) = &delete.from;
        for twj in tables {
            if let TableFactor::Table { name, .. } = &twj.relation
                && let Kind::Global = self.kind_of(name)
                && !self.global_writes
            {
                return ControlFlow::Break(Violation::WritesGlobalTable {
                    table: last_ident(name).unwrap_or_default(),
                });
            }
        }
        if self.tables.symbolic {
            for twj in tables {
                if let TableFactor::Table { name, .. } = &twj.relation {
                    self.requirements.push(Requirement::Write {
                        table: last_ident(name).unwrap_or_default(),
                        assigned: Vec::new(),
                    });
                }
            }
        }
        let mut from: Vec<&TableWithJoins> = tables.iter().collect();
        if let Some(using) = &delete.using {
            from.extend(using.iter());
        }
        self.check_scope(&from, delete.selection.as_ref())
    }

    /// Symbolic mode: which columns hold the org in every row, and what an upsert assigns.
    fn insert_requirements(&mut self, insert: &Insert, table: String) -> ControlFlow<Violation> {
        let rows: Vec<&[Expr]> = match insert.source.as_deref().map(|q| q.body.as_ref()) {
            Some(SetExpr::Values(values)) => {
                values.rows.iter().map(|r| r.content.as_slice()).collect()
            }
            Some(SetExpr::Select(select)) => {
                let row: Vec<Expr> = select
                    .projection
                    .iter()
                    .map(|item| match item {
                        sqlparser::ast::SelectItem::UnnamedExpr(e)
                        | sqlparser::ast::SelectItem::ExprWithAlias { expr: e, .. } => e.clone(),
                        _ => Expr::Value(Value::Null.into()),
                    })
                    .collect();
                let org_columns = insert
                    .columns
                    .iter()
                    .zip(&row)
                    .filter(|(_, e)| self.is_param(e))
                    .filter_map(|(c, _)| last_ident(c))
                    .collect();
                self.requirements.push(Requirement::Insert {
                    table: table.clone(),
                    org_columns,
                });
                Vec::new()
            }
            _ => Vec::new(),
        };
        if !rows.is_empty() {
            let org_columns = insert
                .columns
                .iter()
                .enumerate()
                .filter(|(i, _)| {
                    rows.iter()
                        .all(|row| row.get(*i).is_some_and(|e| self.is_param(e)))
                })
                .filter_map(|(_, c)| last_ident(c))
                .collect();
            self.requirements.push(Requirement::Insert {
                table: table.clone(),
                org_columns,
            });
        } else if !matches!(
            insert.source.as_deref().map(|q| q.body.as_ref()),
            Some(SetExpr::Select(_))
        ) {
            self.requirements.push(Requirement::Insert {
                table: table.clone(),
                org_columns: Vec::new(),
            });
        }
        if let Some(OnInsert::OnConflict(conflict)) = &insert.on
            && let OnConflictAction::DoUpdate(update) = &conflict.action
        {
            let assigned = update
                .assignments
                .iter()
                .flat_map(assignment_targets)
                .collect();
            self.requirements
                .push(Requirement::Write { table, assigned });
        }
        ControlFlow::Continue(())
    }

    fn check_insert(&mut self, insert: &Insert) -> ControlFlow<Violation> {
        let TableObject::TableName(name) = &insert.table else {
            return ControlFlow::Break(Violation::UnsupportedStatement(
                "INSERT INTO FUNCTION".into(),
            ));
        };
        let table = last_ident(name).unwrap_or_default();
        if self.tables.symbolic {
            return self.insert_requirements(insert, table);
        }
        let col = match self.kind_of(name) {
            Kind::Tenant(col) => col.to_owned(),
            Kind::Global if self.global_writes => return ControlFlow::Continue(()),
            Kind::Global => return ControlFlow::Break(Violation::WritesGlobalTable { table }),
            Kind::Unknown => return ControlFlow::Break(Violation::UnregisteredTable { table }),
        };
        let missing = || {
            ControlFlow::Break(Violation::InsertWithoutOrg {
                table: table.clone(),
                column: col.clone(),
            })
        };
        let Some(position) = insert
            .columns
            .iter()
            .position(|c| last_ident(c).as_deref() == Some(col.as_str()))
        else {
            return missing();
        };
        let Some(source) = &insert.source else {
            return missing();
        };
        let rows_ok = match source.body.as_ref() {
            SetExpr::Values(values) => {
                !values.rows.is_empty()
                    && values
                        .rows
                        .iter()
                        .all(|row| row.content.get(position).is_some_and(|e| self.is_param(e)))
            }
            SetExpr::Select(select) => match select.projection.get(position) {
                Some(
                    sqlparser::ast::SelectItem::UnnamedExpr(e)
                    | sqlparser::ast::SelectItem::ExprWithAlias { expr: e, .. },
                ) => self.is_param(e),
                _ => false,
            },
            _ => false,
        };
        if !rows_ok {
            return missing();
        }
        if let Some(OnInsert::OnConflict(conflict)) = &insert.on
            && let OnConflictAction::DoUpdate(update) = &conflict.action
        {
            for a in &update.assignments {
                if assignment_targets(a).contains(&col) {
                    return ControlFlow::Break(Violation::AssignsOrgColumn { table, column: col });
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Whether `sql` is one SELECT that reads only the system catalogs (`pg_catalog`,
/// `information_schema`, or unqualified `pg_*` relations): the only thing an audit connection
/// may run, so it can never read tenant rows.
pub fn check_catalog_only(sql: &str) -> Result<(), Violation> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| Violation::Unparsable(e.to_string()))?;
    let [statement] = statements.as_slice() else {
        return Err(Violation::StatementCount(statements.len()));
    };
    if !matches!(statement, Statement::Query(_)) {
        let text = statement.to_string();
        return Err(Violation::UnsupportedStatement(
            text.split_whitespace().next().unwrap_or("?").to_uppercase(),
        ));
    }
    let mut ctes = HashSet::new();
    let _ = statement.visit(&mut CteCollector(&mut ctes));
    struct CatalogOnly<'a>(&'a HashSet<String>);
    impl Visitor for CatalogOnly<'_> {
        type Break = Violation;
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Violation> {
            if let TableFactor::Table {
                name, args: None, ..
            } = factor
            {
                let parts: Vec<String> = name
                    .0
                    .iter()
                    .filter_map(|p| match p {
                        ObjectNamePart::Identifier(id) => Some(ident(id)),
                        _ => None,
                    })
                    .collect();
                let ok = match parts.as_slice() {
                    [schema, _] => schema == "pg_catalog" || schema == "information_schema",
                    [table] => table.starts_with("pg_") || self.0.contains(table),
                    _ => false,
                };
                if !ok {
                    return ControlFlow::Break(Violation::UnregisteredTable {
                        table: parts.join("."),
                    });
                }
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Violation> {
            if let Expr::Function(f) = expr
                && last_ident(&f.name).as_deref() == Some("set_config")
            {
                return ControlFlow::Break(Violation::ChangesSessionSetting("set_config".into()));
            }
            ControlFlow::Continue(())
        }
    }
    match statement.visit(&mut CatalogOnly(&ctes)) {
        ControlFlow::Break(v) => Err(v),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The column names an assignment sets.
fn assignment_targets(a: &sqlparser::ast::Assignment) -> Vec<String> {
    match &a.target {
        AssignmentTarget::ColumnName(n) => last_ident(n).into_iter().collect(),
        AssignmentTarget::Tuple(ns) => ns.iter().filter_map(last_ident).collect(),
    }
}

/// Splits `a AND b AND (c AND d)` into its conjuncts; anything under OR/NOT stays whole.
fn conjuncts(e: &Expr) -> Vec<&Expr> {
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

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(inner) => strip(inner),
        other => other,
    }
}

/// An identifier as PostgreSQL folds it: quoted ones exactly, others lowercased.
fn ident(id: &Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_lowercase()
    }
}

fn last_ident(name: &ObjectName) -> Option<String> {
    match name.0.last()? {
        ObjectNamePart::Identifier(id) => Some(ident(id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> Tables {
        Tables::new([
            ("orgs", Some("id")),
            ("customers", Some("org_id")),
            ("invoices", Some("org_id")),
            ("deals", Some("org_id")),
            ("currencies", None),
        ])
    }

    fn run(sql: &str) -> Result<(), Violation> {
        check(sql, &tables(), &|p: &str| p == "$1" || p == "$org")
    }

    fn missing(table: &str) -> Result<(), Violation> {
        Err(Violation::MissingOrgPredicate {
            table: table.into(),
        })
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
    fn writes_that_move_rows_or_skip_the_org_are_refused() {
        let moves = Err(Violation::AssignsOrgColumn {
            table: "invoices".into(),
            column: "org_id".into(),
        });
        assert_eq!(
            run("UPDATE invoices SET org_id = $2 WHERE org_id = $1"),
            moves
        );
        assert_eq!(
            run(
                "INSERT INTO invoices (org_id, n) VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET org_id = excluded.org_id"
            ),
            moves
        );
        let no_org = Err(Violation::InsertWithoutOrg {
            table: "invoices".into(),
            column: "org_id".into(),
        });
        assert_eq!(run("INSERT INTO invoices (n) VALUES (1)"), no_org);
        assert_eq!(
            run("INSERT INTO invoices (org_id, n) VALUES ($2, 1)"),
            no_org
        );
        assert_eq!(
            run("INSERT INTO invoices (org_id, n) VALUES ($1, 1), ($2, 2)"),
            no_org
        );
        assert_eq!(
            run("UPDATE currencies SET name = 'x'"),
            Err(Violation::WritesGlobalTable {
                table: "currencies".into()
            })
        );
        assert_eq!(
            run("INSERT INTO currencies (code) VALUES ('XXX')"),
            Err(Violation::WritesGlobalTable {
                table: "currencies".into()
            })
        );
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
    fn the_admin_path_may_write_global_tables_but_not_touch_tenant_ones() {
        let t = tables();
        assert_eq!(
            check_global_write("INSERT INTO currencies (code, name) VALUES ($1, $2)", &t),
            Ok(())
        );
        assert_eq!(
            check_global_write("UPDATE currencies SET name = $1 WHERE code = $2", &t),
            Ok(())
        );
        assert_eq!(
            check_global_write("DELETE FROM currencies WHERE code = $1", &t),
            Ok(())
        );
        assert_eq!(
            check_global_write(
                "INSERT INTO currencies (code, name) SELECT number, 'x' FROM invoices",
                &t
            ),
            Err(Violation::MissingOrgPredicate {
                table: "invoices".into()
            })
        );
        assert_eq!(
            check_global_write(
                "UPDATE currencies SET name = (SELECT max(number) FROM invoices WHERE org_id = $1)",
                &t
            ),
            Err(Violation::MissingOrgPredicate {
                table: "invoices".into()
            })
        );
        assert_eq!(
            check_global_write("DELETE FROM invoices WHERE org_id = $1", &t),
            Err(Violation::MissingOrgPredicate {
                table: "invoices".into()
            })
        );
    }

    fn reqs(sql: &str) -> Vec<Requirement> {
        requirements(sql, &|p: &str| p == "$org").unwrap()
    }

    fn read(table: &str, constrained: &[&str]) -> Requirement {
        Requirement::Read {
            table: table.into(),
            constrained: constrained.iter().map(|c| (*c).into()).collect(),
        }
    }

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
    fn symbolic_mode_records_writes_and_inserts() {
        assert_eq!(
            reqs("UPDATE invoices SET total = $1, org_id = $2 WHERE org_id = $org"),
            [
                Requirement::Write {
                    table: "invoices".into(),
                    assigned: vec!["total".into(), "org_id".into()]
                },
                read("invoices", &["org_id"])
            ]
        );
        assert_eq!(
            reqs("INSERT INTO invoices (org_id, n) VALUES ($org, $1), ($org, $2)"),
            [Requirement::Insert {
                table: "invoices".into(),
                org_columns: vec!["org_id".into()]
            }]
        );
        assert_eq!(
            reqs("DELETE FROM invoices WHERE id = $1"),
            [
                Requirement::Write {
                    table: "invoices".into(),
                    assigned: vec![]
                },
                read("invoices", &[])
            ]
        );
    }

    #[test]
    fn catalog_only_queries_read_nothing_but_the_catalogs() {
        assert_eq!(
            check_catalog_only(
                "SELECT c.relname FROM pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            ),
            Ok(())
        );
        assert_eq!(
            check_catalog_only("SELECT * FROM information_schema.table_privileges"),
            Ok(())
        );
        assert_eq!(
            check_catalog_only(
                "SELECT * FROM pg_class WHERE relname IN (SELECT number FROM invoices)"
            ),
            Err(Violation::UnregisteredTable {
                table: "invoices".into()
            })
        );
        assert!(matches!(
            check_catalog_only("DELETE FROM pg_class"),
            Err(Violation::UnsupportedStatement(_))
        ));
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
