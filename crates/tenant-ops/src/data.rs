//! Export, restore and purge of one org's rows.
//!
//! Export and restore run as the application role with the org's context set, so row-level
//! security is what confines them: an export cannot read another org's rows, and a restore
//! cannot write a row of another org (the policy's WITH CHECK refuses it, failing the whole
//! restore). Purge runs through a logged break-glass write grant
//! (`tenant_core::operator`), because deleting a customer's data is an operator's act with a
//! ticket, not the application's.

use std::collections::BTreeMap;

use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, RunQueryDsl};
use serde_json::Value;
use tenant_core::OrgContext;
use tenant_core::admin::CatalogReader;
use tenant_core::operator::{AccessRequest, OperatorSession};
use tenant_core::{OrgId, TenantError, TenantPool};
use tenant_lint::Registry;
use tenant_probe::schema::TableInfo;
use tenant_schema::pg::ident;

use crate::format::{Export, Manifest, TableManifest, rows_digest, sha256_hex};

/// Why an operation did not happen. Nothing was written when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The file is not a valid export, or does not match its manifest.
    #[error("refusing the export file: {0}")]
    InvalidFile(String),
    /// A restore that requires a seal got a file without one, or with another.
    #[error("refusing the export file: {0}")]
    Seal(String),
    /// The database's tenant tables differ from the file's.
    #[error(
        "the tenant tables of this database differ from the exported ones (schema digest {here} here, {file} in the file): restore into a database migrated to the same schema"
    )]
    SchemaMismatch {
        /// This database's digest.
        here: String,
        /// The file's digest.
        file: String,
    },
    /// The org already has rows and `replace` was not asked for.
    #[error(
        "org {org} already has {rows} rows in {table}: nothing was restored; pass --replace to replace the org's rows with the file's"
    )]
    Conflict {
        /// The org.
        org: String,
        /// The first table with rows.
        table: String,
        /// How many.
        rows: i64,
    },
    /// Reading the schema failed (a registered table missing, ...).
    #[error(transparent)]
    Schema(#[from] tenant_probe::ProbeError),
    /// A database error, or a refused access.
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// The operation does not apply here (an org isolated on a database without Citus, an
    /// org with no rows): nothing was done.
    #[error("{0}")]
    Refused(String),
    /// The export read no row of the org in any tenant table: the org id is wrong, or the
    /// database did not accept the org context. A file of nothing would pass for a backup.
    #[error(
        "org {org} has no row in any tenant table as this export reads them: nothing was written. Check the org id; in the signed mode, check that the key is the one the database holds"
    )]
    NothingExported {
        /// The org.
        org: String,
    },
}

/// What an operation did, per table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The org.
    pub org: String,
    /// What happened (`exported`, `restored`, `purged`).
    pub action: String,
    /// Rows per table, in the order they were handled.
    pub tables: Vec<(String, u64)>,
    /// Rows removed first (a restore with replace), per table.
    pub replaced: Vec<(String, u64)>,
}

impl Receipt {
    /// All rows handled.
    pub fn total(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }

    /// The receipt as text, one table per line.
    pub fn render(&self) -> String {
        let mut out = format!("{} org {}:\n", self.action, self.org);
        for (t, n) in &self.replaced {
            out.push_str(&format!("  {t}: {n} rows replaced\n"));
        }
        for (t, n) in &self.tables {
            out.push_str(&format!("  {t}: {n} rows\n"));
        }
        out.push_str(&format!("  total: {} rows\n", self.total()));
        out
    }

    /// The receipt as JSON.
    pub fn json(&self) -> String {
        serde_json::json!({
            "org": self.org,
            "action": self.action,
            "tables": self.tables.iter().map(|(t, n)| serde_json::json!({"table": t, "rows": n})).collect::<Vec<_>>(),
            "replaced": self.replaced.iter().map(|(t, n)| serde_json::json!({"table": t, "rows": n})).collect::<Vec<_>>(),
            "total": self.total(),
        })
        .to_string()
    }
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = Text)]
    value: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The tenant tables, as the catalog describes them, with the schema digest (of their
/// columns and types, in registry order).
fn tables(url: &str, registry: &Registry) -> Result<(Vec<TableInfo>, String), OpsError> {
    let mut reader =
        CatalogReader::connect(url, "tenant-ops: the tenant tables' columns and keys")?;
    let tables = tenant_probe::schema::tables(&mut reader, registry)?;
    let mut text = String::new();
    for t in &tables {
        for c in &t.columns {
            text.push_str(&format!("{}\t{}\t{}\n", t.name, c.name, c.ty));
        }
    }
    Ok((tables, sha256_hex(text.as_bytes())))
}

fn order_by(t: &TableInfo) -> String {
    let pk = t.primary_key();
    if pk.is_empty() {
        "t::text".into()
    } else {
        pk.iter()
            .map(|c| format!("t.{}", ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A pool of one connection as the application role, telling the database the org as
/// `context` says (the service's key for a database that verifies tokens, the default; a
/// mismatch refuses the pool, naming the fix), with SET LOCAL on a Citus coordinator (whose
/// workers learn the org only from it).
fn pool(
    app_url: &str,
    registry: &'static Registry,
    context: &OrgContext,
) -> Result<TenantPool, OpsError> {
    Ok(TenantPool::builder(app_url, registry, context.clone())
        .max_size(1)
        .set_local_context_on_citus()
        .build()?)
}

/// The rows of a restore per statement on Citus.
const CITUS_BATCH: usize = 500;

/// Every row of `org` in every tenant table of `registry`, parents first, read as the
/// application role at `app_url` with the org's context (row-level security confines it).
///
/// # Errors
/// A registered table missing, a database error, or a pool that refuses to start.
pub fn export(
    app_url: &str,
    registry: &'static Registry,
    org: OrgId,
    context: &OrgContext,
) -> Result<Export, OpsError> {
    let (tables, schema_digest) = tables(app_url, registry)?;
    let order = tenant_probe::seed::parents_first(&tables);
    let pool = pool(app_url, registry, context)?;
    let data = pool.with_org(org, |s| {
        let raw = s.raw_connection_unchecked(
            "tenant-ops export: every row of the org, as JSON, under its row-level security context",
        );
        let mut data = Vec::new();
        for t in &order {
            let row: TextRow = diesel::sql_query(format!(
                "SELECT coalesce(json_agg(t ORDER BY {}), '[]')::text AS value FROM {} t",
                order_by(t),
                ident(&t.name)
            ))
            .get_result(raw)
            .map_err(TenantError::from)?;
            let rows: Vec<Value> = serde_json::from_str(&row.value)
                .map_err(|e| OpsError::InvalidFile(format!("{}: unreadable rows: {e}", t.name)))?;
            data.push((t.name.clone(), rows));
        }
        Ok::<_, OpsError>(data)
    })?;
    if data.iter().all(|(_, rows)| rows.is_empty()) {
        return Err(OpsError::NothingExported {
            org: org.to_string(),
        });
    }
    let manifest = Manifest {
        org: org.to_string(),
        exported_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        schema_digest,
        tables: order
            .iter()
            .zip(&data)
            .map(|(t, (_, rows))| TableManifest {
                name: t.name.clone(),
                org_column: t.org_column.clone(),
                rows: rows.len(),
                sha256: rows_digest(rows),
            })
            .collect(),
    };
    Ok(Export { manifest, data })
}

/// Restores `file` (an export's text) into the database at `app_url`, as the application
/// role with the file's org set, in one transaction. Refused, with nothing written, when the
/// file does not match its manifest, the schema differs, or (without `replace`) the org
/// already has rows.
///
/// # Errors
/// [`OpsError`] saying what did not match.
pub fn restore(
    app_url: &str,
    registry: &'static Registry,
    file: &str,
    replace: bool,
    context: &OrgContext,
) -> Result<Receipt, OpsError> {
    let export = Export::parse_and_verify(file).map_err(OpsError::InvalidFile)?;
    let (tables, here) = tables(app_url, registry)?;
    if here != export.manifest.schema_digest {
        return Err(OpsError::SchemaMismatch {
            here,
            file: export.manifest.schema_digest,
        });
    }
    let org: OrgId = export
        .manifest
        .org
        .parse()
        .map_err(|e: tenant_core::OrgIdError| OpsError::InvalidFile(e.to_string()))?;
    // Each tenant table's columns a restore writes (not generated ones), in table order.
    let columns: BTreeMap<&str, Vec<&str>> = tables
        .iter()
        .map(|t| {
            let cols = t
                .columns
                .iter()
                .filter(|c| !c.generated)
                .map(|c| c.name.as_str())
                .collect();
            (t.name.as_str(), cols)
        })
        .collect();
    // Every table the file names must be a tenant table here, before any statement names it:
    // a crafted file (its checksums are its own) could otherwise have a global or unregistered
    // table counted and, with `replace`, a DELETE sent to it. The transaction would roll that
    // back, but its triggers' effects outside the transaction (a sequence, a notice to
    // another system) would stay.
    if let Some((name, _)) = export
        .data
        .iter()
        .find(|(name, _)| !columns.contains_key(name.as_str()))
    {
        return Err(OpsError::InvalidFile(format!(
            "{name} is not a tenant table of this database: the file can only restore tenant tables"
        )));
    }
    let pool = pool(app_url, registry, context)?;
    let citus = pool.citus();
    pool.with_org(org, |s| {
        let raw = s.raw_connection_unchecked(
            "tenant-ops restore: one org's rows back from an export, under its row-level security context",
        );
        let mut replaced = Vec::new();
        for (name, _) in export.data.iter().rev() {
            let c: Count = diesel::sql_query(format!("SELECT count(*) AS n FROM {}", ident(name)))
                .get_result(raw)
                .map_err(TenantError::from)?;
            if c.n > 0 && !replace {
                return Err(OpsError::Conflict { org: org.to_string(), table: name.clone(), rows: c.n });
            }
            if c.n > 0 {
                let n = diesel::sql_query(format!("DELETE FROM {}", ident(name)))
                    .execute(raw)
                    .map_err(TenantError::from)?;
                replaced.push((name.clone(), n as u64));
            }
        }
        replaced.reverse();
        let mut restored = Vec::new();
        for (name, rows) in &export.data {
            let names = columns
                .get(name.as_str())
                .ok_or_else(|| OpsError::InvalidFile(format!("{name} is not a tenant table of this database")))?;
            let cols = names.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
            let n = if citus {
                // Citus runs INSERT ... SELECT into a distributed table as a COPY, which it
                // refuses under row-level security: plain INSERT ... VALUES instead, the
                // values written as literals by the server from the same JSON.
                let mut n = 0;
                for chunk in rows.chunks(CITUS_BATCH) {
                    let insert: TextRow = diesel::sql_query(format!(
                        "SELECT format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE VALUES %s', $2::text, $4::text, \
                         string_agg('(' || (SELECT string_agg(quote_nullable(v), ', ' ORDER BY k) \
                                            FROM json_each_text(to_json(r)) WITH ORDINALITY AS e(c, v, k) \
                                            WHERE c = ANY ($3::text[])) || ')', ', ')) AS value \
                         FROM json_populate_recordset(NULL::{t}, $1::json) r",
                        t = ident(name)
                    ))
                    .bind::<Text, _>(serde_json::to_string(chunk).unwrap_or_default())
                    .bind::<Text, _>(ident(name))
                    .bind::<diesel::sql_types::Array<Text>, _>(names)
                    .bind::<Text, _>(&cols)
                    .get_result(raw)
                    .map_err(TenantError::from)?;
                    n += diesel::sql_query(insert.value)
                        .execute(raw)
                        .map_err(TenantError::from)?;
                }
                n
            } else {
                diesel::sql_query(format!(
                    "INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM json_populate_recordset(NULL::{t}, $1::json)",
                    t = ident(name)
                ))
                .bind::<Text, _>(serde_json::to_string(rows).unwrap_or_default())
                .execute(raw)
                .map_err(TenantError::from)?
            };
            restored.push((name.clone(), n as u64));
        }
        Ok(Receipt { org: org.to_string(), action: "restored".into(), tables: restored, replaced })
    })
}

/// [`restore`], after checking that `file` is sealed by `key` ([`crate::seal`]): only an
/// export made with the key goes back in.
///
/// # Errors
/// [`OpsError::Seal`] when it is not, with nothing written; then as [`restore`].
pub fn restore_sealed(
    app_url: &str,
    registry: &'static Registry,
    file: &str,
    replace: bool,
    seal: &crate::SealKey,
    context: &OrgContext,
) -> Result<Receipt, OpsError> {
    seal.verify(file).map_err(OpsError::Seal)?;
    restore(app_url, registry, file, replace, context)
}

/// Deletes every row of `org` from every tenant table, children first, through a break-glass
/// write grant for `ticket` at `operator_url` (logged as requested, entered, purged with the
/// receipt, and closed), and returns the receipt.
///
/// # Errors
/// A refused access (bad ticket or reason, unknown org), or a database error; nothing is
/// deleted then.
pub fn purge(
    operator_url: &str,
    registry: &'static Registry,
    org: OrgId,
    ticket: &str,
    reason: &str,
) -> Result<Receipt, OpsError> {
    // The grant's reason is checked by the database, but after the prefix below, which would
    // count toward its 10 characters.
    let said = reason.trim().chars().count();
    if said < 10 {
        return Err(OpsError::Refused(format!(
            "the purge's reason has {said} characters: say why in at least 10 (it is logged with \
             the grant and the receipt)"
        )));
    }
    let (tables, _) = tables(operator_url, registry)?;
    let order = tenant_probe::seed::parents_first(&tables);
    let reason = format!("purge: {reason}");
    let mut s = OperatorSession::open(
        operator_url,
        &AccessRequest::write(org, ticket, &reason, 15),
    )?;
    let mut purged = Vec::new();
    for t in order.iter().rev() {
        // The org's filter as well as the grant's: on Citus it routes each DELETE to the
        // org's shard instead of every shard.
        let n = s.execute(&format!(
            "DELETE FROM {} WHERE {} = '{org}'",
            ident(&t.name),
            ident(&t.org_column)
        ))?;
        purged.push((t.name.clone(), n as u64));
    }
    let receipt = Receipt {
        org: org.to_string(),
        action: "purged".into(),
        tables: purged,
        replaced: Vec::new(),
    };
    s.record("purged", &receipt.json())?;
    s.close()?;
    Ok(receipt)
}
