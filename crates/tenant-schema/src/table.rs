//! Per-table DDL, the same for every target: a tenant table's protection (owner, ENABLE and
//! FORCE row-level security, the restrictive policy and the app's permissive one, grants, the
//! org default and index, its partitions, operator access), a global table's, and their undo.
//! The targets ([`crate::pg`], [`crate::citus`]) assemble these fragments into migrations.
//!
//! Invariant: the application role is never granted TRUNCATE, REFERENCES or TRIGGER, never
//! made an owner, and every tenant policy compares the org column with the session's org.

use std::fmt::Write as _;

use tenant_lint::{Registry, TableEntry};

use crate::options::{ContextMode, PolicyForm, RlsOptions};
use crate::sql::{ident, literal};

/// The session's org as a uuid, read once per statement: the cast sits inside the sub-select,
/// so the planner evaluates it once (an InitPlan) instead of per row, and an empty setting
/// (left by an ended transaction-local set) is NULL, which matches no row.
pub fn org_expression(options: &RlsOptions) -> String {
    if options.context == ContextMode::Signed {
        return crate::context::verified_org_expression();
    }
    if options.policy_form == PolicyForm::Inline {
        return inline_org_expression(options);
    }
    format!(
        "(SELECT nullif(current_setting({}, true), '')::uuid)",
        literal(&options.setting)
    )
}

/// The org expression of the inline form.
fn inline_org_expression(options: &RlsOptions) -> String {
    format!(
        "nullif(current_setting({}, true), '')::uuid",
        literal(&options.setting)
    )
}

/// The org column's default: the session's org (no sub-select: defaults cannot have one).
pub fn org_default(options: &RlsOptions) -> String {
    if options.context == ContextMode::Signed {
        return format!("{}.verified_org()", crate::context::CONTEXT_SCHEMA);
    }
    format!(
        "(nullif(current_setting({}, true), ''))::uuid",
        literal(&options.setting)
    )
}

/// The name of the index the migration creates when no index leads with the org column.
pub fn org_index_name(table: &str, org_column: &str) -> String {
    format!("{table}_{org_column}_tenant_idx")
}

/// The SQL that protects one table (`up`) and removes that protection (`down`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// The table.
    pub table: String,
    /// Its part of `up.sql`.
    pub up: String,
    /// Its part of `down.sql`.
    pub down: String,
}

/// One [`Fragment`] per table of `registry`, in registry order.
pub fn fragments(registry: &Registry, options: &RlsOptions) -> Vec<Fragment> {
    registry
        .tables()
        .map(|table| fragment(table, options, Shape::POSTGRES))
        .collect()
}

/// Whether a tenant table's fragment sets (and its undo drops) the org column's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrgDefault {
    /// The fragment sets it (unless the schema gave one) and the undo drops it.
    Managed,
    /// Left alone: Citus refuses to alter a distribution column, so its target sets the
    /// default before distributing and leaves it in place, like the distribution.
    Untouched,
}

/// Whom the restrictive org policy binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestrictiveTo {
    /// Every role (`TO PUBLIC`): whatever role reads the table is confined to the org.
    Everyone,
    /// The application role only. Citus 13.2 recreates every policy on its shards as a
    /// permissive one (it drops `AS RESTRICTIVE`); a permissive `TO PUBLIC` org policy would
    /// then let any role with a table grant, the operator's included, read the org it names
    /// in the setting. Bound to the application role, which has a permissive policy with the
    /// same predicate, the degraded copy changes no role's access.
    AppRole,
}

/// How a target wants a table's fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Whether the fragment manages the org column's default.
    pub org_default: OrgDefault,
    /// Whom the restrictive org policy binds.
    pub restrictive_to: RestrictiveTo,
}

impl Shape {
    /// What the PostgreSQL target writes.
    pub(crate) const POSTGRES: Shape = Shape {
        org_default: OrgDefault::Managed,
        restrictive_to: RestrictiveTo::Everyone,
    };
}

/// The fragment of one table.
pub(crate) fn fragment(table: &TableEntry, options: &RlsOptions, shape: Shape) -> Fragment {
    let default = shape.org_default;
    let mut up = String::new();
    let mut down = String::new();
    match table.org_column() {
        Some(org_column) => {
            tenant_table(&mut up, table, org_column, options, shape.restrictive_to);
            if default == OrgDefault::Managed {
                up.push_str(&org_default_up(table.name, org_column, options));
            }
            org_index(&mut up, table, org_column);
            crate::operator::table_up(&mut up, table.name, org_column, options);
            partitions_up(&mut up, table, org_column, options, shape.restrictive_to);
            partitions_down(&mut down, table, options);
            if default == OrgDefault::Managed {
                org_default_down(&mut down, table.name, org_column, options);
            }
        }
        None => {
            global_table(&mut up, table, options);
            crate::operator::global_up(&mut up, table.name, options);
        }
    }
    undo_table(&mut down, table, options);
    Fragment {
        table: table.name.to_owned(),
        up,
        down,
    }
}

/// A `DO` block that sets the org column's default to the session's org, unless the schema
/// gave it a default.
pub(crate) fn org_default_up(table: &str, org_column: &str, o: &RlsOptions) -> String {
    format!(
        "DO $$\n\
         BEGIN\n\
         \x20 -- The org column defaults to the session's org, unless the schema gave it a default.\n\
         \x20 IF NOT EXISTS (SELECT FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum\n\
         \x20               WHERE d.adrelid = {table_lit}::regclass AND a.attname = {col_lit}) THEN\n\
         \x20   ALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT {default};\n\
         \x20 END IF;\n\
         END\n\
         $$;\n",
        table = ident(table),
        col = ident(org_column),
        table_lit = literal(&ident(table)),
        col_lit = literal(org_column),
        default = org_default(o),
    )
}

fn org_default_down(out: &mut String, table: &str, org_column: &str, o: &RlsOptions) {
    let _ = write!(
        out,
        "\nDO $$\n\
         BEGIN\n\
         \x20 -- Only the default this migration set: a default the schema gave stays.\n\
         \x20 IF EXISTS (SELECT FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum\n\
         \x20           WHERE d.adrelid = {table_lit}::regclass AND a.attname = {col_lit}\n\
         \x20             AND (pg_get_expr(d.adbin, d.adrelid) LIKE '%current_setting(''{setting}''%'\n\
         \x20                  OR pg_get_expr(d.adbin, d.adrelid) LIKE '%{context}.verified_org()%')) THEN\n\
         \x20   ALTER TABLE {table} ALTER COLUMN {col} DROP DEFAULT;\n\
         \x20 END IF;\n\
         END\n\
         $$;",
        table = ident(table),
        col = ident(org_column),
        table_lit = literal(&ident(table)),
        col_lit = literal(org_column),
        setting = o.setting.replace('\'', "''"),
        context = crate::context::CONTEXT_SCHEMA,
    );
}

/// The role list of the restrictive org policy.
fn restrictive_roles(to: RestrictiveTo, o: &RlsOptions) -> String {
    match to {
        RestrictiveTo::Everyone => "PUBLIC".into(),
        RestrictiveTo::AppRole => ident(&o.app_role),
    }
}

fn tenant_table(
    out: &mut String,
    t: &TableEntry,
    org_column: &str,
    o: &RlsOptions,
    to: RestrictiveTo,
) {
    let restrictive_to = restrictive_roles(to, o);
    let table = ident(t.name);
    let col = ident(org_column);
    let owner = ident(&o.owner_role);
    let app = ident(&o.app_role);
    let policy = ident(&o.policy);
    let base = ident(&o.base_policy);
    let expr = org_expression(o);
    let _ = write!(
        out,
        "\n-- Tenant table {name}: rows belong to the org in {col}.\n\
         ALTER TABLE {table} OWNER TO {owner};\n\
         ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n\
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n\
         DROP POLICY IF EXISTS {policy} ON {table};\n\
         CREATE POLICY {policy} ON {table} AS RESTRICTIVE FOR ALL TO {restrictive_to}\n\
         \x20   USING ({col} = {expr})\n\
         \x20   WITH CHECK ({col} = {expr});\n\
         DROP POLICY IF EXISTS {base} ON {table};\n\
         CREATE POLICY {base} ON {table} AS PERMISSIVE FOR ALL TO {app}\n\
         \x20   USING ({col} = {expr})\n\
         \x20   WITH CHECK ({col} = {expr});\n\
         REVOKE ALL ON {table} FROM PUBLIC;\n\
         REVOKE ALL ON {table} FROM {app};\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {app};\n",
        name = t.name,
    );
}

/// A `DO` block that creates an index on the org column unless one leads with it.
fn org_index(out: &mut String, t: &TableEntry, org_column: &str) {
    let _ = write!(
        out,
        "DO $$\n\
         BEGIN\n\
         \x20 IF NOT EXISTS (\n\
         \x20   SELECT FROM pg_index i\n\
         \x20   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]\n\
         \x20   WHERE i.indrelid = {table_lit}::regclass AND a.attname = {col_lit}\n\
         \x20 ) THEN\n\
         \x20   CREATE INDEX {index} ON {table} ({col});\n\
         \x20 END IF;\n\
         END\n\
         $$;\n",
        table = ident(t.name),
        col = ident(org_column),
        index = ident(&org_index_name(t.name, org_column)),
        table_lit = literal(&ident(t.name)),
        col_lit = literal(org_column),
    );
}

/// The partitions (at any depth) of a tenant table, as SQL over the catalogs.
fn partitions_of(table: &str) -> String {
    format!(
        "WITH RECURSIVE p(oid) AS (SELECT inhrelid FROM pg_inherits WHERE inhparent = {}::regclass \
         UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN p ON i.inhparent = p.oid) SELECT oid::regclass FROM p",
        literal(&ident(table))
    )
}

/// Partitions get the parent's protection: a partition queried directly uses its own RLS
/// settings, not the parent's. They are reached only through the parent: no direct grants.
/// Partitions created after this migration are not covered; the audit reports them.
fn partitions_up(
    out: &mut String,
    t: &TableEntry,
    org_column: &str,
    o: &RlsOptions,
    to: RestrictiveTo,
) {
    // Inside format()'s template, which is itself a string literal: quotes doubled, and `%`
    // doubled for format().
    let restrictive_to = restrictive_roles(to, o)
        .replace('\'', "''")
        .replace('%', "%%");
    let predicate = format!("{} = {}", ident(org_column), org_expression(o));
    let _ = write!(
        out,
        "DO $$\n\
         DECLARE part regclass;\n\
         BEGIN\n\
         \x20 FOR part IN {partitions} LOOP\n\
         \x20   EXECUTE format('ALTER TABLE %s OWNER TO %I', part, {owner});\n\
         \x20   EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', part);\n\
         \x20   EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', part);\n\
         \x20   EXECUTE format('DROP POLICY IF EXISTS %I ON %s', {policy}, part);\n\
         \x20   EXECUTE format('CREATE POLICY %I ON %s AS RESTRICTIVE FOR ALL TO {restrictive_to} USING (%s) WITH CHECK (%s)', {policy}, part, {predicate}, {predicate});\n\
         \x20   EXECUTE format('DROP POLICY IF EXISTS %I ON %s', {base}, part);\n\
         \x20   EXECUTE format('CREATE POLICY %I ON %s AS PERMISSIVE FOR ALL TO %I USING (%s) WITH CHECK (%s)', {base}, part, {app}, {predicate}, {predicate});\n\
         \x20   EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', part);\n\
         \x20   EXECUTE format('REVOKE ALL ON %s FROM %I', part, {app});\n\
         \x20 END LOOP;\n\
         END\n\
         $$;\n",
        partitions = partitions_of(t.name),
        owner = literal(&o.owner_role),
        policy = literal(&o.policy),
        base = literal(&o.base_policy),
        app = literal(&o.app_role),
        predicate = literal(&predicate),
    );
}

fn partitions_down(out: &mut String, t: &TableEntry, o: &RlsOptions) {
    let _ = write!(
        out,
        "\nDO $$\n\
         DECLARE part regclass;\n\
         BEGIN\n\
         \x20 FOR part IN {partitions} LOOP\n\
         \x20   EXECUTE format('DROP POLICY IF EXISTS %I ON %s', {base}, part);\n\
         \x20   EXECUTE format('DROP POLICY IF EXISTS %I ON %s', {policy}, part);\n\
         \x20   EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', part);\n\
         \x20   EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', part);\n\
         \x20 END LOOP;\n\
         END\n\
         $$;",
        partitions = partitions_of(t.name),
        policy = literal(&o.policy),
        base = literal(&o.base_policy),
    );
}

fn global_table(out: &mut String, t: &TableEntry, o: &RlsOptions) {
    let table = ident(t.name);
    let app = ident(&o.app_role);
    let _ = write!(
        out,
        "\n-- Global table {name}: holds no tenant data; the application may only read it.\n\
         ALTER TABLE {table} OWNER TO {owner};\n\
         REVOKE ALL ON {table} FROM PUBLIC;\n\
         REVOKE ALL ON {table} FROM {app};\n\
         GRANT SELECT ON {table} TO {app};\n",
        name = t.name,
        owner = ident(&o.owner_role),
    );
}

fn undo_table(out: &mut String, t: &TableEntry, o: &RlsOptions) {
    let table = ident(t.name);
    let app = ident(&o.app_role);
    match t.org_column() {
        Some(org_column) => {
            let _ = write!(
                out,
                "\n\
                 DROP INDEX IF EXISTS {index};\n\
                 REVOKE SELECT, INSERT, UPDATE, DELETE ON {table} FROM {app};\n\
                 {operator}\
                 DROP POLICY IF EXISTS {base} ON {table};\n\
                 DROP POLICY IF EXISTS {policy} ON {table};\n\
                 ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;\n\
                 ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;\n",
                index = ident(&org_index_name(t.name, org_column)),
                base = ident(&o.base_policy),
                policy = ident(&o.policy),
                operator = {
                    let mut s = String::new();
                    crate::operator::table_down(&mut s, t.name, o);
                    s
                },
            );
        }
        None => {
            let _ = write!(
                out,
                "\nREVOKE SELECT ON {table} FROM {app};\nREVOKE SELECT ON {table} FROM {};\n",
                ident(&o.operator_role)
            );
        }
    }
}
