//! Writes: what an UPDATE, DELETE or INSERT may do to the rows it touches.
//!
//! Invariant: a scoped statement never assigns a tenant table's org column (UPDATE SET, ON
//! CONFLICT DO UPDATE SET), never inserts a row whose org column is not the org parameter, and
//! never writes a global table (only the admin path may); the rows an UPDATE or DELETE reaches
//! are confined by the same scope check as a SELECT's ([`crate::scope`]).

use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, ConflictTarget, Delete, Expr, FromTable, Insert, OnConflict,
    OnConflictAction, OnInsert, SelectItem, SetExpr, TableFactor, TableObject, TableWithJoins,
    Update, UpdateTableFromKind, Value,
};

use crate::parse::{ident, last_ident};
use crate::registry::{Kind, Requirement};
use crate::scope::Checker;
use crate::violation::Violation;

impl Checker<'_> {
    /// Checks an UPDATE: no org column assigned, no global table written, rows confined.
    pub(crate) fn check_update(&mut self, update: &Update) -> ControlFlow<Violation> {
        foreign_clauses(&[
            (!update.optimizer_hints.is_empty(), "an optimizer hint"),
            (update.on_cluster.is_some(), "ON CLUSTER"),
            (
                matches!(update.from, Some(UpdateTableFromKind::BeforeSet(_))),
                "FROM before SET",
            ),
            (update.output.is_some(), "an OUTPUT clause"),
            (update.or.is_some(), "UPDATE OR"),
            (!update.order_by.is_empty(), "ORDER BY"),
            (update.limit.is_some(), "LIMIT"),
            (update.settings.is_some(), "SETTINGS"),
        ])?;
        // `SET email.org_id = ..` assigns a field of a column, not the org column.
        for a in &update.assignments {
            let parts = match &a.target {
                AssignmentTarget::ColumnName(n) => vec![n],
                AssignmentTarget::Tuple(ns) => ns.iter().collect(),
            };
            if let Some(n) = parts.into_iter().find(|n| n.0.len() > 1) {
                return ControlFlow::Break(Violation::UnsupportedExpression(format!(
                    "the SET target `{n}`, a field of a column (name the columns plainly)"
                )));
            }
        }
        let mut from: Vec<&TableWithJoins> = vec![&update.table];
        if let Some(UpdateTableFromKind::AfterSet(t) | UpdateTableFromKind::BeforeSet(t)) =
            &update.from
        {
            from.extend(t.iter());
        }
        if let TableFactor::Table { name, .. } = &update.table.relation {
            if self.tables.is_symbolic() {
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
            // A write target is always a real relation, never a CTE of the statement.
            match self.tables.kind(name) {
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
                Kind::Global => {}
                Kind::Unknown => {
                    return ControlFlow::Break(Violation::UnregisteredTable {
                        table: last_ident(name).unwrap_or_default(),
                    });
                }
            }
        } else {
            return ControlFlow::Break(Violation::UnsupportedStatement(
                "UPDATE of something other than a table".into(),
            ));
        }
        self.check_scope(&from, update.selection.as_ref(), None)
    }

    /// Checks a DELETE: no global table written, rows confined.
    pub(crate) fn check_delete(&mut self, delete: &Delete) -> ControlFlow<Violation> {
        foreign_clauses(&[
            (!delete.optimizer_hints.is_empty(), "an optimizer hint"),
            (delete.on_cluster.is_some(), "ON CLUSTER"),
            (delete.output.is_some(), "an OUTPUT clause"),
            (!delete.order_by.is_empty(), "ORDER BY"),
            (delete.limit.is_some(), "LIMIT"),
            (delete.settings.is_some(), "SETTINGS"),
        ])?;
        if !delete.tables.is_empty() {
            return ControlFlow::Break(Violation::UnsupportedStatement(
                "multi-table DELETE".into(),
            ));
        }
        let (FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables)) = &delete.from;
        for twj in tables {
            let TableFactor::Table { name, .. } = &twj.relation else {
                return ControlFlow::Break(Violation::UnsupportedStatement(
                    "DELETE from something other than a table".into(),
                ));
            };
            // A write target is always a real relation, never a CTE of the statement.
            match self.tables.kind(name) {
                Kind::Global if !self.global_writes => {
                    return ControlFlow::Break(Violation::WritesGlobalTable {
                        table: last_ident(name).unwrap_or_default(),
                    });
                }
                Kind::Unknown => {
                    return ControlFlow::Break(Violation::UnregisteredTable {
                        table: last_ident(name).unwrap_or_default(),
                    });
                }
                Kind::Tenant(_) | Kind::Global => {}
            }
        }
        if self.tables.is_symbolic() {
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
        self.check_scope(&from, delete.selection.as_ref(), None)
    }

    /// Symbolic mode: which columns hold the org in every row, and what an upsert assigns.
    fn insert_requirements(&mut self, insert: &Insert, table: String) -> ControlFlow<Violation> {
        let rows: Vec<&[Expr]> = match insert.source.as_deref().map(|q| q.body.as_ref()) {
            Some(SetExpr::Values(values)) => {
                values.rows.iter().map(|r| r.content.as_slice()).collect()
            }
            Some(SetExpr::Select(select)) if has_wildcard(select) => {
                self.requirements.push(Requirement::Insert {
                    table: table.clone(),
                    org_columns: Vec::new(),
                });
                Vec::new()
            }
            Some(SetExpr::Select(select)) => {
                let row: Vec<Expr> = select
                    .projection
                    .iter()
                    .map(|item| match item {
                        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                            e.clone()
                        }
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
        if let Some(OnInsert::OnConflict(conflict)) = &insert.on {
            self.requirements.push(Requirement::ConflictTarget {
                table: table.clone(),
                columns: conflict_columns(conflict).unwrap_or_default(),
            });
            if let OnConflictAction::DoUpdate(update) = &conflict.action {
                let assigned = update
                    .assignments
                    .iter()
                    .flat_map(assignment_targets)
                    .collect();
                self.requirements
                    .push(Requirement::Write { table, assigned });
            }
        }
        ControlFlow::Continue(())
    }

    /// Checks an INSERT: the org parameter in every row's org column, none assigned on conflict.
    pub(crate) fn check_insert(&mut self, insert: &Insert) -> ControlFlow<Violation> {
        foreign_clauses(&[
            (!insert.optimizer_hints.is_empty(), "an optimizer hint"),
            (insert.or.is_some(), "INSERT OR"),
            (insert.ignore, "INSERT IGNORE"),
            (!insert.into, "INSERT without INTO"),
            (insert.by_name, "BY NAME"),
            (insert.overwrite, "INSERT OVERWRITE"),
            (!insert.assignments.is_empty(), "INSERT ... SET"),
            (insert.partitioned.is_some(), "PARTITION"),
            (!insert.after_columns.is_empty(), "columns after PARTITION"),
            (insert.has_table_keyword, "INSERT INTO TABLE"),
            (insert.output.is_some(), "an OUTPUT clause"),
            (insert.replace_into, "REPLACE INTO"),
            (insert.priority.is_some(), "a MySQL priority"),
            (
                insert.insert_alias.is_some(),
                "an insert alias (AS new ...)",
            ),
            (insert.settings.is_some(), "SETTINGS"),
            (insert.format_clause.is_some(), "FORMAT"),
            (
                insert.multi_table_insert_type.is_some(),
                "a multi-table insert",
            ),
        ])?;
        let TableObject::TableName(name) = &insert.table else {
            return ControlFlow::Break(Violation::UnsupportedStatement(
                "INSERT INTO FUNCTION".into(),
            ));
        };
        let table = last_ident(name).unwrap_or_default();
        // `(email.org_id, ..)` assigns field `org_id` of column `email`, not the org column.
        if let Some(c) = insert.columns.iter().find(|c| c.0.len() > 1) {
            return ControlFlow::Break(Violation::UnsupportedExpression(format!(
                "the INSERT target `{c}`, a field of a column (name the columns plainly)"
            )));
        }
        if self.tables.is_symbolic() {
            return self.insert_requirements(insert, table);
        }
        // A write target is always a real relation, never a CTE of the statement.
        let col = match self.tables.kind(name) {
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
            // A wildcard expands to an unknown number of columns, so the item at the org
            // column's position is not the value that lands in it.
            SetExpr::Select(select) if has_wildcard(select) => false,
            SetExpr::Select(select) => match select.projection.get(position) {
                Some(SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) => {
                    self.is_param(e)
                }
                _ => false,
            },
            _ => false,
        };
        if !rows_ok {
            return missing();
        }
        if let Some(OnInsert::OnConflict(conflict)) = &insert.on {
            // A conflict on a key without the org column can be with another org's row: DO
            // NOTHING then tells that the key exists, DO UPDATE may reach the row.
            if !conflict_columns(conflict).is_some_and(|c| c.contains(&col)) {
                return ControlFlow::Break(Violation::ConflictWithoutOrg { table, column: col });
            }
            if let OnConflictAction::DoUpdate(update) = &conflict.action {
                for a in &update.assignments {
                    if assignment_targets(a).contains(&col) {
                        return ControlFlow::Break(Violation::AssignsOrgColumn {
                            table,
                            column: col,
                        });
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Refuses the first clause of `clauses` that is present: other dialects' parts of a write,
/// which PostgreSQL does not have. sqlparser parses them in every dialect, so a text whose
/// words PostgreSQL reads otherwise becomes one of them: `DELETE FROM customers output USING
/// customers WHERE customers.org_id = $1` is SQL Server's OUTPUT clause to sqlparser, and the
/// table aliased `output`, unfiltered, to the server.
fn foreign_clauses(clauses: &[(bool, &str)]) -> ControlFlow<Violation> {
    match clauses.iter().find(|(present, _)| *present) {
        Some((_, what)) => ControlFlow::Break(Violation::UnsupportedExpression(format!(
            "{what} in a write, which PostgreSQL does not have"
        ))),
        None => ControlFlow::Continue(()),
    }
}

/// Whether `select`'s list has `*` or `x.*`.
fn has_wildcard(select: &sqlparser::ast::Select) -> bool {
    select.projection.iter().any(|item| {
        matches!(
            item,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    })
}

/// The columns of an `ON CONFLICT` target: `None` without a target or with a named
/// constraint (which columns it covers is not in the statement).
fn conflict_columns(conflict: &OnConflict) -> Option<Vec<String>> {
    match &conflict.conflict_target {
        Some(ConflictTarget::Columns { columns, .. }) => Some(columns.iter().map(ident).collect()),
        Some(ConflictTarget::OnConstraint(_)) | None => None,
    }
}

/// The column names an assignment sets.
fn assignment_targets(a: &sqlparser::ast::Assignment) -> Vec<String> {
    match &a.target {
        AssignmentTarget::ColumnName(n) => last_ident(n).into_iter().collect(),
        AssignmentTarget::Tuple(ns) => ns.iter().filter_map(last_ident).collect(),
    }
}

#[cfg(test)]
mod tests {
    use crate::{Requirement, Violation, check_global_write};

    use crate::story::{run, tables};

    use crate::story::{read, reqs};

    #[test]
    fn other_dialects_clauses_of_a_write_are_refused() {
        crate::story::assert_unverifiable(&[
            "DELETE FROM customers output USING customers WHERE customers.org_id = $1 AND customers.name = 'x'",
            "DELETE FROM customers WHERE org_id = $1 ORDER BY name LIMIT 1",
            "UPDATE customers SET name = $2 WHERE org_id = $1 LIMIT 1",
            "INSERT IGNORE INTO customers (org_id, name) VALUES ($1, 'x')",
        ]);
    }

    #[test]
    fn a_write_target_that_is_a_field_of_a_column_is_refused() {
        assert!(matches!(
            run("INSERT INTO customers (email.org_id, org_id, name) VALUES ($1, $2, 'planted')"),
            Err(Violation::UnsupportedExpression(w)) if w.contains("email.org_id")
        ));
        assert!(matches!(
            run("UPDATE customers SET email.org_id = $2 WHERE org_id = $1"),
            Err(Violation::UnsupportedExpression(w)) if w.contains("email.org_id")
        ));
    }

    #[test]
    fn an_insert_select_with_a_wildcard_is_refused() {
        // `x.*` is two columns: the org parameter lands in `name`, B's id in `org_id`.
        let sql = "INSERT INTO customers (id, org_id, name, email) \
                   SELECT x.*, $1, 'planted' FROM (SELECT gen_random_uuid() AS id, $2::uuid AS o) AS x";
        assert_eq!(
            run(sql),
            Err(Violation::InsertWithoutOrg {
                table: "customers".into(),
                column: "org_id".into()
            })
        );
        assert_eq!(
            reqs(&sql.replace("$1", "$org")),
            [Requirement::Insert {
                table: "customers".into(),
                org_columns: vec![]
            }]
        );
    }

    #[test]
    fn an_upsert_on_a_key_without_the_org_column_is_refused() {
        let refused = Err(Violation::ConflictWithoutOrg {
            table: "customers".into(),
            column: "org_id".into(),
        });
        for sql in [
            "INSERT INTO customers (org_id, id) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = 'x'",
            "INSERT INTO customers (org_id, id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            "INSERT INTO customers (org_id, id) VALUES ($1, $2) ON CONFLICT ON CONSTRAINT customers_pkey DO NOTHING",
        ] {
            assert_eq!(run(sql), refused, "{sql}");
        }
        assert_eq!(
            run(
                "INSERT INTO customers (org_id, id) VALUES ($1, $2) ON CONFLICT (org_id, id) DO NOTHING"
            ),
            Ok(())
        );
        assert_eq!(
            reqs(
                "INSERT INTO customers (org_id, id) VALUES ($org, $1) ON CONFLICT (id) DO NOTHING"
            ),
            [
                Requirement::Insert {
                    table: "customers".into(),
                    org_columns: vec!["org_id".into()]
                },
                Requirement::ConflictTarget {
                    table: "customers".into(),
                    columns: vec!["id".into()]
                }
            ]
        );
    }

    #[test]
    fn a_write_target_is_never_taken_for_a_cte() {
        assert_eq!(
            run(
                "UPDATE pg_settings SET setting = '1' WHERE name = 'statement_timeout' \
                 AND EXISTS (WITH pg_settings AS (SELECT 1) SELECT 1)"
            ),
            Err(Violation::UnregisteredTable {
                table: "pg_settings".into()
            })
        );
        assert_eq!(
            run("DELETE FROM x WHERE EXISTS (WITH x AS (SELECT 1) SELECT 1)"),
            Err(Violation::UnregisteredTable { table: "x".into() })
        );
        // A WITH in front of a write is a query whose body writes: refused whole.
        assert_eq!(
            run("WITH pg_settings AS (SELECT 1) UPDATE pg_settings SET setting = '1'"),
            Err(Violation::UnsupportedStatement("WITH ... UPDATE".into()))
        );
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
                "INSERT INTO invoices (org_id, n) VALUES ($1, 1) ON CONFLICT (org_id, id) DO UPDATE SET org_id = excluded.org_id"
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
}
