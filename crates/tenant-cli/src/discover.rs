//! The registry of a database nobody wrote one for, read from its catalog: for the
//! `tenant-safe` binary, which audits, evidences and probes any database without the service's
//! code. Every table of the schema with the org column is a tenant table; every other one the
//! application role may read is a global table.
//!
//! Weaker than the service's own registry, and said so in the evidence's registry section: a
//! table that should hold tenant data but lacks the org column is taken for a global one, so
//! the audit cannot report it as unregistered tenant data.

use tenant_lint::{Registry, TableEntry, TableKind};

use crate::CliError;

#[derive(diesel::QueryableByName)]
struct Found {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    tenant: bool,
}

/// The registry of schema `schema` at `app_url` (a URL of the application role), with
/// `org_column` marking tenant tables.
///
/// # Errors
/// [`CliError::Audit`] when the catalog cannot be read, or when no table has the org column
/// (the wrong column or schema, or not a tenant-safe database: nothing to check).
pub fn registry_from_catalog(
    app_url: &str,
    schema: &str,
    org_column: &str,
) -> Result<&'static Registry, CliError> {
    let mut reader = tenant_core::admin::CatalogReader::connect(
        app_url,
        "tenant-safe: discovering the tables from the catalog",
    )
    .map_err(|e| CliError::Audit(e.to_string()))?;
    let found: Vec<Found> = reader
        .load(
            "SELECT c.relname::text AS name, \
                    EXISTS (SELECT FROM pg_catalog.pg_attribute a \
                             WHERE a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 \
                               AND NOT a.attisdropped) AS tenant \
               FROM pg_catalog.pg_class c \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
                AND c.relname NOT LIKE '\\_\\_diesel%' \
              ORDER BY 1",
            &[schema, org_column],
        )
        .map_err(|e| CliError::Audit(e.to_string()))?;
    if !found.iter().any(|f| f.tenant) {
        return Err(CliError::Audit(format!(
            "no table of schema {schema} has a column {org_column}: name the org column with \
             --org-column and the schema with --schema"
        )));
    }
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let org: &'static str = leak(org_column.to_owned());
    let entries = found
        .into_iter()
        .map(|f| TableEntry {
            name: leak(f.name),
            kind: if f.tenant {
                TableKind::Tenant { org_column: org }
            } else {
                TableKind::Global
            },
        })
        .collect();
    Ok(Box::leak(Box::new(Registry::from_entries(entries))))
}
