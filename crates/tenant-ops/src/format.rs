//! The portable export format, version 1: one JSON document.
//!
//! ```json
//! {
//!   "format": "tenant-safe/org-export",
//!   "version": 1,
//!   "manifest": {
//!     "org": "<uuid>",
//!     "exported_at": "<RFC 3339>",
//!     "schema_digest": "<sha256 hex of the tenant tables' columns>",
//!     "tables": [ { "name": "orgs", "org_column": "id", "rows": 1, "sha256": "<hex>" }, ... ]
//!   },
//!   "data": { "orgs": [ { "id": "...", "name": "..." } ], ... }
//! }
//! ```
//!
//! Tables come parents first (the order a restore inserts them in). Each table's rows are
//! JSON objects as PostgreSQL's `row_to_json` writes them, ordered by primary key; its
//! `sha256` is of the compact JSON of its row array, so any change to a row, a missing row or
//! an added one is detected. The schema digest covers every tenant table's columns and types
//! in registry order: a file only goes back into a database of the same shape.

use serde_json::{Map, Value, json};

/// The `format` field.
pub const FORMAT: &str = "tenant-safe/org-export";
/// The version this crate writes and reads.
pub const VERSION: u64 = 1;

/// What a table holds in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableManifest {
    /// Table name.
    pub name: String,
    /// Its org column.
    pub org_column: String,
    /// Number of rows.
    pub rows: usize,
    /// SHA-256 of the compact JSON of its rows, hex.
    pub sha256: String,
}

/// The manifest of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The org exported.
    pub org: String,
    /// When.
    pub exported_at: String,
    /// Digest of the tenant tables' columns.
    pub schema_digest: String,
    /// The tables, parents first.
    pub tables: Vec<TableManifest>,
}

/// A whole export: manifest and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    /// The manifest.
    pub manifest: Manifest,
    /// Rows per table, in manifest order.
    pub data: Vec<(String, Vec<Value>)>,
}

/// SHA-256 of `data`, hex: the same digest the audit evidence uses.
pub use tenant_schema::evidence::sha256_hex;

/// The checksum of a table's rows.
pub fn rows_digest(rows: &[Value]) -> String {
    sha256_hex(serde_json::to_string(rows).unwrap_or_default().as_bytes())
}

impl Export {
    /// The document, as JSON text.
    pub fn to_json(&self) -> String {
        let m = &self.manifest;
        let mut data = Map::new();
        for (name, rows) in &self.data {
            data.insert(name.clone(), Value::Array(rows.clone()));
        }
        let doc = json!({
            "format": FORMAT,
            "version": VERSION,
            "manifest": {
                "org": m.org,
                "exported_at": m.exported_at,
                "schema_digest": m.schema_digest,
                "tables": m.tables.iter().map(|t| json!({
                    "name": t.name, "org_column": t.org_column, "rows": t.rows, "sha256": t.sha256,
                })).collect::<Vec<_>>(),
            },
            "data": Value::Object(data),
        });
        serde_json::to_string(&doc).unwrap_or_default() + "\n"
    }

    /// Reads a document and checks it against its own manifest: format and version, every
    /// table's row count and checksum, and that every row belongs to the manifest's org.
    ///
    /// # Errors
    /// What does not match, named.
    pub fn parse_and_verify(text: &str) -> Result<Self, String> {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| format!("not an export file: {e}"))?;
        if doc["format"] != FORMAT {
            return Err(format!(
                "not an export file: format is {}, expected {FORMAT}",
                doc["format"]
            ));
        }
        if doc["version"] != VERSION {
            return Err(format!(
                "export format version {} is not supported (this build reads {VERSION})",
                doc["version"]
            ));
        }
        let m = &doc["manifest"];
        let text_of = |v: &Value, what: &str| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("the manifest has no {what}"))
        };
        let mut manifest = Manifest {
            org: text_of(&m["org"], "org")?,
            exported_at: text_of(&m["exported_at"], "exported_at")?,
            schema_digest: text_of(&m["schema_digest"], "schema_digest")?,
            tables: Vec::new(),
        };
        let tables = m["tables"].as_array().ok_or("the manifest has no tables")?;
        let mut data = Vec::new();
        for t in tables {
            let tm = TableManifest {
                name: text_of(&t["name"], "table name")?,
                org_column: text_of(&t["org_column"], "org column")?,
                rows: t["rows"]
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or("a table has no row count")?,
                sha256: text_of(&t["sha256"], "table checksum")?,
            };
            let rows = doc["data"][&tm.name]
                .as_array()
                .ok_or_else(|| {
                    format!(
                        "the manifest lists {} but the file has no rows for it",
                        tm.name
                    )
                })?
                .clone();
            if rows.len() != tm.rows {
                return Err(format!(
                    "{}: the manifest says {} rows, the file has {}",
                    tm.name,
                    tm.rows,
                    rows.len()
                ));
            }
            if rows_digest(&rows) != tm.sha256 {
                return Err(format!(
                    "{}: the rows do not match the manifest's checksum: the file was changed or damaged",
                    tm.name
                ));
            }
            if let Some(bad) = rows
                .iter()
                .position(|r| r[&tm.org_column] != manifest.org.as_str())
            {
                return Err(format!(
                    "{}: row {} belongs to another org than {}",
                    tm.name,
                    bad + 1,
                    manifest.org
                ));
            }
            data.push((tm.name.clone(), rows));
            manifest.tables.push(tm);
        }
        Ok(Self { manifest, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Export {
        let rows = vec![json!({"id": "o1", "name": "A"})];
        Export {
            manifest: Manifest {
                org: "o1".into(),
                exported_at: "2026-11-27T00:00:00Z".into(),
                schema_digest: "d".into(),
                tables: vec![TableManifest {
                    name: "orgs".into(),
                    org_column: "id".into(),
                    rows: 1,
                    sha256: rows_digest(&rows),
                }],
            },
            data: vec![("orgs".into(), rows)],
        }
    }

    #[test]
    fn a_written_file_reads_back_the_same() {
        let e = sample();
        assert_eq!(Export::parse_and_verify(&e.to_json()), Ok(e));
    }

    #[test]
    fn a_changed_row_a_wrong_count_or_another_org_is_refused() {
        let text = sample().to_json();
        let changed = text.replace("\"A\"", "\"B\"");
        assert!(
            Export::parse_and_verify(&changed)
                .unwrap_err()
                .contains("checksum")
        );
        let counted = text.replace("\"rows\":1", "\"rows\":2");
        assert!(
            Export::parse_and_verify(&counted)
                .unwrap_err()
                .contains("the manifest says 2 rows")
        );
        let mut other = sample();
        other.data[0].1[0]["id"] = json!("o2");
        other.manifest.tables[0].sha256 = rows_digest(&other.data[0].1);
        assert!(
            Export::parse_and_verify(&other.to_json())
                .unwrap_err()
                .contains("belongs to another org")
        );
        assert!(
            Export::parse_and_verify("{}")
                .unwrap_err()
                .contains("not an export file")
        );
    }
}
