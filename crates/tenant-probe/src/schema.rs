//! What the probe needs to know about each tenant table, read from the catalog as the
//! application role (through tenant-core's read-only [`CatalogReader`]): columns with their
//! types, defaults and NOT NULL; primary key, unique, foreign key and check constraints; the
//! policies and the owner; and the views the application role can read.

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Integer, Nullable, Text};
use tenant_core::admin::CatalogReader;
use tenant_lint::Registry;

use crate::ProbeError;

/// A column of a tenant table.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Column {
    /// Name.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// `format_type`, usable in a cast (`character varying(20)`, `uuid`, ...).
    #[diesel(sql_type = Text)]
    pub ty: String,
    /// The base type's name (`varchar`, `int4`, `_text` for an array, ...).
    #[diesel(sql_type = Text)]
    pub base: String,
    /// NOT NULL.
    #[diesel(sql_type = Bool)]
    pub not_null: bool,
    /// Has a default, is an identity column, or is generated.
    #[diesel(sql_type = Bool)]
    pub has_default: bool,
    /// Generated (cannot be written).
    #[diesel(sql_type = Bool)]
    pub generated: bool,
    /// The first label of an enum type.
    #[diesel(sql_type = Nullable<Text>)]
    pub enum_label: Option<String>,
    /// The length limit of a `varchar(n)`/`char(n)`.
    #[diesel(sql_type = Nullable<Integer>)]
    pub max_len: Option<i32>,
    /// A column default that draws from a sequence (a counter shared by all orgs).
    #[diesel(sql_type = Bool)]
    pub sequence_default: bool,
}

/// A constraint of a tenant table.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Constraint {
    /// Name.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// `p`, `u`, `f` or `c`.
    #[diesel(sql_type = Text)]
    pub kind: String,
    /// Its columns, comma-separated, in key order.
    #[diesel(sql_type = Text)]
    pub columns: String,
    /// For a foreign key: the referenced table.
    #[diesel(sql_type = Text)]
    pub parent: String,
    /// For a foreign key: the referenced columns, comma-separated.
    #[diesel(sql_type = Text)]
    pub parent_columns: String,
    /// `pg_get_constraintdef`.
    #[diesel(sql_type = Text)]
    pub definition: String,
}

impl Constraint {
    /// The columns, in key order.
    pub fn column_list(&self) -> Vec<&str> {
        self.columns.split(',').filter(|c| !c.is_empty()).collect()
    }

    /// The referenced columns, in key order.
    pub fn parent_column_list(&self) -> Vec<&str> {
        self.parent_columns
            .split(',')
            .filter(|c| !c.is_empty())
            .collect()
    }
}

#[derive(QueryableByName)]
struct TableRow {
    #[diesel(sql_type = Bool)]
    exists: bool,
    #[diesel(sql_type = Text)]
    owner: String,
    #[diesel(sql_type = Text)]
    policies: String,
    #[diesel(sql_type = Bool)]
    verifies_tokens: bool,
}

/// A registered tenant table as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// Name.
    pub name: String,
    /// The org column (from the registry).
    pub org_column: String,
    /// Owner role.
    pub owner: String,
    /// Names of its policies.
    pub policies: Vec<String>,
    /// Whether a restrictive policy reads the signed context's verified org (the default
    /// mode), rather than the plain setting alone.
    pub verifies_tokens: bool,
    /// Columns in order.
    pub columns: Vec<Column>,
    /// Constraints.
    pub constraints: Vec<Constraint>,
}

impl TableInfo {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The primary key's columns (empty without one).
    pub fn primary_key(&self) -> Vec<&str> {
        self.constraints
            .iter()
            .find(|c| c.kind == "p")
            .map(Constraint::column_list)
            .unwrap_or_default()
    }

    /// Foreign keys.
    pub fn foreign_keys(&self) -> impl Iterator<Item = &Constraint> {
        self.constraints.iter().filter(|c| c.kind == "f")
    }

    /// A column an update can set to itself: the first that is neither key nor org column,
    /// else the org column (`SET org_id = org_id` changes nothing either).
    pub fn mutable_column(&self) -> &str {
        let key = self.primary_key();
        self.columns
            .iter()
            .find(|c| !c.generated && c.name != self.org_column && !key.contains(&c.name.as_str()))
            .map_or(self.org_column.as_str(), |c| c.name.as_str())
    }
}

/// A view or materialized view the application role can read, with an org-like column.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct ViewInfo {
    /// Schema-qualified name.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// `v` or `m`.
    #[diesel(sql_type = Text)]
    pub kind: String,
    /// The column named like a registered org column.
    #[diesel(sql_type = Text)]
    pub org_column: String,
}

/// The server and role the probe runs against.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct ServerInfo {
    /// `server_version_num`.
    #[diesel(sql_type = Integer)]
    pub version_num: i32,
    /// `version()`.
    #[diesel(sql_type = Text)]
    pub version: String,
    /// `current_user`.
    #[diesel(sql_type = Text)]
    pub role: String,
    /// Whether the database has the Citus extension (a coordinator or a worker).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub citus: bool,
}

const COLUMNS: &str = "SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS ty, \
       t.typname::text AS base, a.attnotnull AS not_null, \
       (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') AS has_default, \
       (a.attgenerated <> '') AS generated, \
       (SELECT e.enumlabel::text FROM pg_catalog.pg_enum e WHERE e.enumtypid = a.atttypid ORDER BY e.enumsortorder LIMIT 1) AS enum_label, \
       CASE WHEN t.typname IN ('varchar', 'bpchar') AND a.atttypmod > 4 THEN a.atttypmod - 4 END AS max_len, \
       COALESCE((SELECT pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%' FROM pg_catalog.pg_attrdef d \
                 WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum), a.attidentity <> '') AS sequence_default \
  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
 ORDER BY a.attnum";

const CONSTRAINTS: &str = "SELECT k.conname::text AS name, k.contype::text AS kind, \
       COALESCE((SELECT string_agg(a.attname::text, ',' ORDER BY u.i) \
                   FROM unnest(k.conkey) WITH ORDINALITY AS u(n, i) \
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n), '') AS columns, \
       COALESCE(k.confrelid::regclass::text, '') AS parent, \
       COALESCE((SELECT string_agg(a.attname::text, ',' ORDER BY u.i) \
                   FROM unnest(k.confkey) WITH ORDINALITY AS u(n, i) \
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n), '') AS parent_columns, \
       pg_get_constraintdef(k.oid) AS definition \
  FROM pg_catalog.pg_constraint k \
 WHERE k.conrelid = to_regclass($1) AND k.contype IN ('p', 'u', 'f', 'c') \
 ORDER BY k.contype, k.conname";

const TABLE: &str = "SELECT to_regclass($1) IS NOT NULL AS exists, \
       COALESCE((SELECT pg_get_userbyid(c.relowner)::text FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)), '') AS owner, \
       COALESCE((SELECT string_agg(p.polname::text, ',' ORDER BY p.polname) FROM pg_catalog.pg_policy p \
                  WHERE p.polrelid = to_regclass($1)), '') AS policies, \
       EXISTS (SELECT FROM pg_catalog.pg_policy p WHERE p.polrelid = to_regclass($1) AND NOT p.polpermissive \
                 AND strpos(pg_get_expr(p.polqual, p.polrelid), 'tenant_context.') > 0) AS verifies_tokens";

const VIEWS: &str = "SELECT format('%I.%I', n.nspname, c.relname) AS name, c.relkind::text AS kind, a.attname::text AS org_column \
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
 WHERE c.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
   AND has_table_privilege(c.oid, 'SELECT') AND a.attname::text = ANY (string_to_array($1, ',')) \
 ORDER BY 1";

const SERVER: &str = "SELECT current_setting('server_version_num')::int AS version_num, version() AS version, \
       current_user::text AS role, \
       EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') AS citus";

/// Reads what the probe needs about every tenant table of `registry`. A registered table
/// missing from the database is an error naming it.
pub fn tables(
    reader: &mut CatalogReader,
    registry: &Registry,
) -> Result<Vec<TableInfo>, ProbeError> {
    let mut out = Vec::new();
    for entry in registry.tenant_tables() {
        let Some(org_column) = entry.org_column() else {
            continue;
        };
        let name = entry.name;
        let head: TableRow = reader
            .load::<TableRow>(TABLE, &[name])?
            .into_iter()
            .next()
            .ok_or_else(|| ProbeError::MissingTable(name.to_owned()))?;
        if !head.exists {
            return Err(ProbeError::MissingTable(name.to_owned()));
        }
        let columns: Vec<Column> = reader.load(COLUMNS, &[name])?;
        if !columns.iter().any(|c| c.name == org_column) {
            return Err(ProbeError::MissingOrgColumn {
                table: name.to_owned(),
                column: org_column.to_owned(),
            });
        }
        out.push(TableInfo {
            name: name.to_owned(),
            org_column: org_column.to_owned(),
            owner: head.owner,
            policies: head
                .policies
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            verifies_tokens: head.verifies_tokens,
            columns,
            constraints: reader.load(CONSTRAINTS, &[name])?,
        });
    }
    Ok(out)
}

/// Reads the columns and constraints of global table `name` (no org column, no policies):
/// what the probe needs to build a row for it.
pub fn global_table(reader: &mut CatalogReader, name: &str) -> Result<TableInfo, ProbeError> {
    let head: Option<TableRow> = reader.load::<TableRow>(TABLE, &[name])?.into_iter().next();
    if !head.as_ref().is_some_and(|h| h.exists) {
        return Err(ProbeError::MissingTable(name.to_owned()));
    }
    Ok(TableInfo {
        name: name.to_owned(),
        org_column: String::new(),
        owner: head.map(|h| h.owner).unwrap_or_default(),
        policies: vec![],
        verifies_tokens: false,
        columns: reader.load(COLUMNS, &[name])?,
        constraints: reader.load(CONSTRAINTS, &[name])?,
    })
}

/// The views and materialized views the application role can read that have a column named
/// like one of the registry's org columns.
pub fn views(reader: &mut CatalogReader, registry: &Registry) -> Result<Vec<ViewInfo>, ProbeError> {
    let mut org_columns: Vec<&str> = registry
        .tenant_tables()
        .filter_map(|t| t.org_column())
        .collect();
    org_columns.sort_unstable();
    org_columns.dedup();
    Ok(reader.load(VIEWS, &[&org_columns.join(",")])?)
}

/// The server's version and the role connected.
pub fn server(reader: &mut CatalogReader) -> Result<ServerInfo, ProbeError> {
    reader
        .load::<ServerInfo>(SERVER, &[])?
        .into_iter()
        .next()
        .ok_or(ProbeError::Catalog(
            "the server did not report its version".into(),
        ))
}
