//! Rows for empty global tables (the configuration's `global_rows`): on a fresh database a
//! tenant table may reference a global one (plans, currencies) that has no row yet, and the
//! application role may only read global tables, so the probe could not seed the tenant
//! table. Given the admin role's URL, the probe adds one row to each such table through
//! tenant-core's admin path (`GlobalWriter`, which refuses any statement on a tenant table),
//! committed so that the attacker's sessions see it, and deletes exactly that row when the
//! attacks are done. A table that already has a row is never written: on a production
//! database the probe writes nothing.

use std::collections::HashSet;

use diesel::QueryableByName;
use diesel::sql_types::Text;
use tenant_core::admin::{CatalogReader, GlobalWriter, ProbeOutcome, ProbeSession};

use crate::ProbeError;
use crate::config::GlobalRow;
use crate::schema::global_table;
use crate::sql::{ident, literal};

/// A row the probe added, to be deleted after the run.
#[derive(Debug)]
pub(crate) struct Added {
    table: String,
    /// The row as `to_jsonb` printed it.
    row: String,
}

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = Text)]
    row: String,
}

/// The reason the admin path logs and `cargo xtask lint` lists.
const REASON: &str = "tenant-probe: one row for an empty global table a tenant table references, deleted after the run";

fn refused(table: &str, why: impl Into<String>) -> ProbeError {
    ProbeError::GlobalRow {
        table: table.to_owned(),
        why: why.into(),
    }
}

/// Adds the configured rows to the global tables that are empty as `session` (the
/// application role) sees them, pushing each onto `added` as soon as it is committed (so that
/// a later failure still deletes it); returns a note per table for the report.
pub(crate) fn add(
    rows: &[GlobalRow],
    registry: &tenant_lint::Registry,
    app_url: &str,
    admin_url: Option<&str>,
    session: &mut ProbeSession,
    added: &mut Vec<Added>,
) -> Result<Vec<String>, ProbeError> {
    let mut notes = Vec::new();
    if rows.is_empty() {
        return Ok(notes);
    }
    let globals: HashSet<&str> = registry.global_tables().map(|t| t.name).collect();
    let mut reader = CatalogReader::connect(app_url, "tenant-probe: the columns of global tables")?;
    let mut writer = None;
    for g in rows {
        if !globals.contains(g.table.as_str()) {
            return Err(refused(
                &g.table,
                "it is not a global table of the registry (the probe writes no other table with the admin role)",
            ));
        }
        let table = global_table(&mut reader, &g.table)?;
        let has_row =
            match session.try_sql(&format!("SELECT 1 FROM {} LIMIT 1", ident(&g.table)), true)? {
                ProbeOutcome::Ran { rows, .. } => rows > 0,
                ProbeOutcome::Refused { sqlstate, message } => {
                    return Err(refused(
                        &g.table,
                        format!("the application role cannot read it ({sqlstate} {message})"),
                    ));
                }
            };
        if has_row {
            notes.push(format!(
                "`{}` already had rows: the probe wrote nothing to it",
                g.table
            ));
            continue;
        }
        if let Some(unknown) = g.values.keys().find(|c| table.column(c).is_none()) {
            return Err(refused(&g.table, format!("it has no column `{unknown}`")));
        }
        let mut names = Vec::new();
        let mut exprs = Vec::new();
        for column in table.columns.iter().filter(|c| !c.generated) {
            let expr = match g.values.get(&column.name) {
                Some(v) => literal(Some(v), &column.ty),
                None if column.has_default => continue,
                None => match crate::seed::generate(&table, column, "global") {
                    Some(v) => v,
                    None if !column.not_null => literal(None, &column.ty),
                    None => {
                        return Err(refused(
                            &g.table,
                            format!(
                                "no value generator for column `{}` of type {}: give it in `values`",
                                column.name, column.ty
                            ),
                        ));
                    }
                },
            };
            names.push(ident(&column.name));
            exprs.push(expr);
        }
        let url = admin_url.ok_or_else(|| {
            refused(
                &g.table,
                "it is empty, and adding a row takes a role that may write global tables: give the \
                 admin role's URL (--admin-url)",
            )
        })?;
        let writer = match &mut writer {
            Some(w) => w,
            None => writer.insert(GlobalWriter::connect(url, registry, REASON)?),
        };
        let sql = format!(
            "INSERT INTO {} AS probe_row ({}) VALUES ({}) RETURNING to_jsonb(probe_row)::text AS row",
            ident(&g.table),
            names.join(", "),
            exprs.join(", ")
        );
        let row = writer
            .load_sql::<Inserted>(&sql)
            .map_err(|e| refused(&g.table, format!("the insert failed: {e}")))?
            .into_iter()
            .next()
            .ok_or_else(|| refused(&g.table, "the insert returned no row"))?
            .row;
        notes.push(format!(
            "`{}` was empty: the probe added {row} with the admin role, and deleted it after the run",
            g.table
        ));
        added.push(Added {
            table: g.table.clone(),
            row,
        });
    }
    Ok(notes)
}

/// Deletes the rows `add` added. An error names each row left behind and the statement that
/// deletes it.
pub(crate) fn remove(
    added: &[Added],
    registry: &tenant_lint::Registry,
    admin_url: Option<&str>,
) -> Result<(), ProbeError> {
    let Some(url) = admin_url else {
        return Ok(());
    };
    if added.is_empty() {
        return Ok(());
    }
    let mut writer = GlobalWriter::connect(url, registry, REASON)?;
    let mut left = Vec::new();
    for a in added {
        let sql = format!(
            "DELETE FROM {} AS probe_row WHERE to_jsonb(probe_row) = {}::jsonb",
            ident(&a.table),
            crate::sql::string(&a.row)
        );
        match writer.execute_sql(&sql) {
            Ok(1) => {}
            Ok(n) => left.push(format!("{sql} (deleted {n} rows, not 1)")),
            Err(e) => left.push(format!("{sql} ({e})")),
        }
    }
    if left.is_empty() {
        Ok(())
    } else {
        Err(ProbeError::GlobalRow {
            table: added
                .iter()
                .map(|a| a.table.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            why: format!(
                "the rows the probe added could not all be deleted; delete them as the admin role: {}",
                left.join("; ")
            ),
        })
    }
}
