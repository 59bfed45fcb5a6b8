//! Rows for empty global tables (the configuration's `global_rows`): on a fresh database a
//! tenant table may reference a global one (plans, currencies) that has no row yet, and the
//! application role may only read global tables, so the probe could not seed the tenant
//! table. Given the admin role's URL, the probe adds one row to each such table through
//! tenant-core's admin path (`GlobalWriter`, which refuses any statement on a tenant table),
//! committed so that the attacker's sessions see it, and deletes exactly that row when the
//! attacks are done. A table that already has a row is never written: on a production
//! database the probe writes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

use diesel::QueryableByName;
use diesel::sql_types::Text;
use tenant_core::admin::{CatalogReader, GlobalWriter, ProbeOutcome, ProbeSession};

use crate::ProbeError;
use crate::config::GlobalRow;
use crate::schema::global_table;
use crate::seed::fresh_row;
use crate::sql::{ident, literal};

/// A row the probe added, to be deleted after the run.
#[derive(Debug)]
pub(crate) struct Added {
    table: String,
    /// The row as `to_jsonb` printed it.
    row: String,
    /// Where it was written: with the whole row, what the delete matches (one row at most,
    /// and only this one).
    ctid: String,
}

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = Text)]
    whole: String,
    #[diesel(sql_type = Text)]
    ctid: String,
}

/// Which database a URL reaches, as far as any role may read it: its name, its oid and its
/// cluster-wide freeze horizon, so that an admin URL of another database is refused. (Two
/// servers may agree on all three; the insert checks that the table is empty as the admin
/// sees it too, so a table with a row is never written, wherever it is.)
#[derive(QueryableByName, PartialEq, Eq, Debug)]
struct Identity {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    oid: String,
    #[diesel(sql_type = Text)]
    horizon: String,
}

const IDENTITY: &str = "SELECT d.datname::text AS name, d.oid::text AS oid, \
       d.datfrozenxid::text || '/' || d.datminmxid::text AS horizon \
  FROM pg_catalog.pg_database d WHERE d.datname = current_database()";

fn identity(url: &str) -> Result<Identity, ProbeError> {
    let mut reader = CatalogReader::connect(url, "tenant-probe: which database a URL reaches")?;
    reader
        .load::<Identity>(IDENTITY, &[])?
        .into_iter()
        .next()
        .ok_or_else(|| ProbeError::Catalog("the server did not say which database it is".into()))
}

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
        let mut overrides = BTreeMap::new();
        for (name, value) in &g.values {
            let column = table
                .column(name)
                .ok_or_else(|| refused(&g.table, format!("it has no column `{name}`")))?;
            overrides.insert(name.clone(), literal(Some(value), &column.ty));
        }
        // The row as a tenant row is built (a global table has no org column, so the org
        // goes nowhere); what the generator cannot make is for `values`.
        let (names, exprs) = fresh_row(
            &table,
            uuid::Uuid::nil(),
            &HashMap::new(),
            &HashMap::new(),
            &overrides,
            None,
        )
        .map_err(|why| refused(&g.table, format!("{why}: give it in `values`")))?;
        let url = admin_url.ok_or_else(|| {
            refused(
                &g.table,
                "it is empty, and adding a row takes a role that may write global tables: give the \
                 admin role's URL (--admin-url)",
            )
        })?;
        let writer = match &mut writer {
            Some(w) => w,
            None => {
                let (app, admin) = (identity(app_url)?, identity(url)?);
                if app != admin {
                    return Err(refused(
                        &g.table,
                        format!(
                            "the admin URL reaches database `{}` (oid {}, horizon {}), the \
                             application URL `{}` (oid {}, horizon {}): give the admin URL of the \
                             database the probe attacks",
                            admin.name, admin.oid, admin.horizon, app.name, app.oid, app.horizon
                        ),
                    ));
                }
                writer.insert(GlobalWriter::connect(
                    url,
                    registry,
                    "tenant-probe: one row for an empty global table a tenant table references, deleted after the run",
                )?)
            }
        };
        // Empty as the admin sees it too (rows the application role cannot see are rows),
        // checked in the statement that inserts.
        let t = ident(&g.table);
        let sql = format!(
            "INSERT INTO {t} AS probe_row ({}) SELECT {} WHERE NOT EXISTS (SELECT 1 FROM {t}) \
             RETURNING to_jsonb(probe_row)::text AS whole, probe_row.ctid::text AS ctid",
            names.join(", "),
            exprs.join(", ")
        );
        let Some(inserted) = writer
            .load_sql::<Inserted>(&sql)
            .map_err(|e| refused(&g.table, format!("the insert failed: {e}")))?
            .into_iter()
            .next()
        else {
            notes.push(format!(
                "`{}` has rows the application role cannot see: the probe wrote nothing to it",
                g.table
            ));
            continue;
        };
        notes.push(format!(
            "`{}` was empty: the probe added {} with the admin role, and deleted it after the run",
            g.table, inserted.whole
        ));
        added.push(Added {
            table: g.table.clone(),
            row: inserted.whole,
            ctid: inserted.ctid,
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
    let mut writer = GlobalWriter::connect(
        url,
        registry,
        "tenant-probe: one row for an empty global table a tenant table references, deleted after the run",
    )?;
    let mut left = Vec::new();
    for a in added {
        // The row where it was written, and only if it is still the row written: one row at
        // most, never another one that happens to be equal.
        let sql = format!(
            "DELETE FROM {} AS probe_row WHERE probe_row.ctid = {}::tid AND to_jsonb(probe_row) = {}::jsonb",
            ident(&a.table),
            crate::sql::string(&a.ctid),
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
