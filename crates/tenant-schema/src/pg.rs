//! PostgreSQL 15+ DDL for tenant isolation: roles, RLS, policies, grants, indexes.
//!
//! Invariant: the generated migration never grants the application role TRUNCATE, REFERENCES
//! or TRIGGER, never makes it an owner, and keys every tenant policy on the org setting read
//! once per statement.

use std::fmt::Write as _;

use tenant_lint::{Registry, TableEntry};

/// Names the generated SQL uses; the defaults are docs/design.md's conventions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsOptions {
    /// The session setting holding the org id (`tenant.org_id`).
    pub setting: String,
    /// Owns the tables and runs migrations; NOLOGIN (`tenant_owner`).
    pub owner_role: String,
    /// The application's role; NOBYPASSRLS (`tenant_app`).
    pub app_role: String,
    /// The name of the restrictive tenant policy (`tenant_isolation`).
    pub policy: String,
    /// The name of the permissive policy for the app role (`tenant_app_access`): it carries the
    /// org predicate too (PostgreSQL needs a permissive policy to let any row through; one of
    /// `USING (true)` beside the restrictive one reads as "every row" to a linter that looks at
    /// it alone, and the planner folds the repeated predicate into one: no cost measured).
    pub base_policy: String,
    /// The role people's logins are granted for break-glass access (`tenant_operator`).
    pub operator_role: String,
    /// The role that may read the access log (`tenant_auditor`).
    pub auditor_role: String,
    /// The schema of the access log and its functions (`tenant_audit`).
    pub audit_schema: String,
    /// The operator's read policy (`tenant_operator_read`).
    pub operator_read_policy: String,
    /// The operator's write policy (`tenant_operator_write`).
    pub operator_write_policy: String,
    /// The owner's lookup policy, for the check that an org exists (`tenant_owner_lookup`).
    pub owner_lookup_policy: String,
    /// What a ticket id must match (a PostgreSQL regular expression; `^[A-Z][A-Z0-9]*-[0-9]+$`).
    pub ticket_pattern: String,
    /// The longest access window, in minutes (240).
    pub max_window_minutes: u32,
    /// How the policies learn the org: a token the service signs (the default), or the opt-in
    /// plain setting that trusts every statement (`ContextMode::TrustEveryStatement`).
    pub context: crate::context::ContextMode,
    /// How the policies read the org: once per statement in a sub-select (PostgreSQL), or
    /// inline (Citus; see `citus::generate`).
    pub policy_form: crate::citus::PolicyForm,
}

impl Default for RlsOptions {
    fn default() -> Self {
        Self {
            setting: "tenant.org_id".into(),
            owner_role: "tenant_owner".into(),
            app_role: "tenant_app".into(),
            policy: "tenant_isolation".into(),
            base_policy: "tenant_app_access".into(),
            operator_role: "tenant_operator".into(),
            auditor_role: "tenant_auditor".into(),
            audit_schema: "tenant_audit".into(),
            operator_read_policy: "tenant_operator_read".into(),
            operator_write_policy: "tenant_operator_write".into(),
            owner_lookup_policy: "tenant_owner_lookup".into(),
            ticket_pattern: "^[A-Z][A-Z0-9]*-[0-9]+$".into(),
            max_window_minutes: 240,
            context: crate::context::ContextMode::Signed,
            policy_form: crate::citus::PolicyForm::SubSelect,
        }
    }
}

impl RlsOptions {
    /// Checks the options before generating: the setting must be a name `set_config` accepts
    /// (`prefix.name`, letters, digits, `_` and `$`; with any other name the policies would
    /// never see an org), every role, policy and schema name must be non-empty and at most 63
    /// bytes (PostgreSQL cuts longer names, and two could become one), and the access window
    /// positive. Quotes and other characters in names are fine: the SQL quotes every name.
    ///
    /// # Errors
    /// The first problem, naming the option and what to do.
    pub fn validate(&self) -> Result<(), String> {
        let word = |w: &str| {
            w.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        };
        let parts: Vec<&str> = self.setting.split('.').collect();
        if parts.len() < 2 || !parts.iter().all(|w| word(w)) || self.setting.len() > 63 {
            return Err(format!(
                "setting {:?} is not a name set_config accepts: use prefix.name of letters, digits and _ (like tenant.org_id)",
                self.setting
            ));
        }
        for (option, name) in [
            ("owner_role", &self.owner_role),
            ("app_role", &self.app_role),
            ("operator_role", &self.operator_role),
            ("auditor_role", &self.auditor_role),
            ("policy", &self.policy),
            ("base_policy", &self.base_policy),
            ("operator_read_policy", &self.operator_read_policy),
            ("operator_write_policy", &self.operator_write_policy),
            ("owner_lookup_policy", &self.owner_lookup_policy),
            ("audit_schema", &self.audit_schema),
        ] {
            if name.is_empty() || name.len() > 63 || name.contains('\0') {
                return Err(format!(
                    "{option} {name:?} is not a usable PostgreSQL name: use 1 to 63 bytes, no NUL"
                ));
            }
        }
        if self.max_window_minutes == 0 {
            return Err("max_window_minutes is 0: no access window could be granted".into());
        }
        Ok(())
    }
}

/// A diesel migration: the SQL of `up.sql` and `down.sql`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Applies the isolation.
    pub up: String,
    /// Removes what `up` added (roles and table ownership stay: roles are cluster-wide and may
    /// serve other databases, and the previous owner is not known).
    pub down: String,
}

/// Quotes an SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// PL/pgSQL lines (for a `DO` block) that create `role` as `NOLOGIN` unless it exists: roles
/// are cluster-wide, so a migration must not fail on a role another database created.
pub(crate) fn create_nologin_role(role: &str) -> String {
    format!(
        "  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {}) THEN\n    CREATE ROLE {} NOLOGIN;\n  END IF;\n",
        literal(role),
        ident(role)
    )
}

/// PL/pgSQL lines (for a `DO` block) that take `SUPERUSER` and `BYPASSRLS` from `role`: either
/// attribute lets the role read past every policy.
pub(crate) fn strip_rls_bypass(role: &str) -> String {
    format!(
        "  IF EXISTS (SELECT FROM pg_roles WHERE rolname = {} AND (rolsuper OR rolbypassrls)) THEN\n    ALTER ROLE {} NOSUPERUSER NOBYPASSRLS;\n  END IF;\n",
        literal(role),
        ident(role)
    )
}

/// The session's org as a uuid, read once per statement: the cast sits inside the sub-select,
/// so the planner evaluates it once (an InitPlan) instead of per row, and an empty setting
/// (left by an ended transaction-local set) is NULL, which matches no row.
pub fn org_expression(options: &RlsOptions) -> String {
    if options.context == crate::context::ContextMode::Signed {
        return crate::context::verified_org_expression();
    }
    if options.policy_form == crate::citus::PolicyForm::Inline {
        return crate::citus::inline_org_expression(options);
    }
    format!(
        "(SELECT nullif(current_setting({}, true), '')::uuid)",
        literal(&options.setting)
    )
}

/// Makes `owner` own each of `functions` (signatures) in `schema` and takes them from PUBLIC:
/// the generated SECURITY DEFINER functions run as the owner and only whom the caller then
/// grants may call them.
pub(crate) fn own_functions(out: &mut String, schema: &str, owner: &str, functions: &[&str]) {
    for f in functions {
        let _ = writeln!(out, "ALTER FUNCTION {schema}.{f} OWNER TO {owner};");
        let _ = writeln!(out, "REVOKE ALL ON FUNCTION {schema}.{f} FROM PUBLIC;");
    }
}

/// The org column's default: the session's org (no sub-select: defaults cannot have one).
pub fn org_default(options: &RlsOptions) -> String {
    if options.context == crate::context::ContextMode::Signed {
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

/// The first lines of every generated file.
const HEADER: &str = "-- Generated by tenant-schema from the tenant registry. Do not edit by hand:\n\
                      -- change the registry and run `cargo xtask gen`.\n";

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
        .map(|table| {
            let mut up = String::new();
            let mut down = String::new();
            match table.org_column() {
                Some(org_column) => {
                    tenant_table(&mut up, table, org_column, options);
                    crate::operator::table_up(&mut up, table.name, org_column, options);
                    partitions_up(&mut up, table, org_column, options);
                    partitions_down(&mut down, table, options);
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
        })
        .collect()
}

/// The roles and schema usage every migration starts with (idempotent).
fn preamble(options: &RlsOptions) -> String {
    let mut up = String::from(HEADER);
    roles(&mut up, options);
    if options.context == crate::context::ContextMode::Signed {
        crate::context::shared(&mut up, options);
    }
    crate::operator::shared(&mut up, options);
    crate::session::shared(&mut up, options);
    let _ = writeln!(
        up,
        "GRANT USAGE ON SCHEMA public TO {};",
        ident(&options.app_role)
    );
    up
}

/// The shared objects every generated migration begins with (the roles, the signed
/// context's functions in that mode, the access log and its functions, the schema grant):
/// idempotent, so applying them again brings a database's copies up to date.
pub fn shared_objects(options: &RlsOptions) -> String {
    preamble(options)
}

/// The migration that brings the shared objects up to date when only they changed (a new
/// version of tenant-schema changed a function body, say) and no table did, so
/// [`incremental`] has nothing to write: `previous_up` is the `up.sql` of the last generated
/// migration, which begins with the shared objects of its time. `up` applies the current
/// ones; `down` applies `previous_up` again (every part of it is idempotent), which restores
/// the previous function bodies. `None` when `previous_up` already begins with the current
/// shared objects.
pub fn shared_refresh(previous_up: &str, options: &RlsOptions) -> Option<Migration> {
    let current = preamble(options);
    (!previous_up.starts_with(&current)).then(|| Migration {
        up: current,
        down: previous_up.to_owned(),
    })
}

/// Generates the migration for every table of `registry`.
pub fn generate(registry: &Registry, options: &RlsOptions) -> Migration {
    assemble(&fragments(registry, options), options)
}

/// The full migration made of `parts` (what [`generate`] writes for a registry).
pub fn assemble(parts: &[Fragment], options: &RlsOptions) -> Migration {
    let mut up = preamble(options);
    let mut down = String::from(HEADER);
    for f in parts {
        up.push_str(&f.up);
    }
    for f in parts.iter().rev() {
        down.push_str(&f.down);
    }
    let _ = writeln!(
        down,
        "REVOKE USAGE ON SCHEMA public FROM {};",
        ident(&options.app_role)
    );
    Migration { up, down }
}

/// The migration that takes a database from the state `previous` generated to the state of
/// `current`: added or changed tables get their new fragment (each is idempotent), removed
/// tables lose their protection; `down` restores the previous fragments. `None` when nothing
/// changed.
pub fn incremental(
    previous: &[Fragment],
    current: &[Fragment],
    options: &RlsOptions,
) -> Option<Migration> {
    let find = |list: &[Fragment], name: &str| list.iter().find(|f| f.table == name).cloned();
    let mut up = preamble(options);
    let mut down = String::from(HEADER);
    let mut changed = false;
    for old in previous
        .iter()
        .filter(|f| find(current, &f.table).is_none())
    {
        let _ = write!(up, "\n-- {} left the registry.\n{}", old.table, old.down);
        down.push_str(&old.up);
        changed = true;
    }
    for new in current {
        match find(previous, &new.table) {
            Some(old) if old == *new => {}
            Some(old) => {
                // Undo the old protection, then apply the new: in one migration transaction,
                // so there is no moment without it, and nothing of the old one stays behind.
                let _ = write!(up, "\n-- {} changed.\n{}{}", new.table, old.down, new.up);
                let _ = write!(
                    down,
                    "\n-- {} as it was.\n{}{}",
                    old.table, new.down, old.up
                );
                changed = true;
            }
            None => {
                let _ = write!(up, "\n-- {} joined the registry.\n{}", new.table, new.up);
                down.push_str(&new.down);
                changed = true;
            }
        }
    }
    changed.then_some(Migration { up, down })
}

fn roles(out: &mut String, o: &RlsOptions) {
    let owner = literal(&o.owner_role);
    let app = literal(&o.app_role);
    let _ = write!(
        out,
        "\n-- Roles are cluster-wide: create them once, and take away any attribute that would\n\
         -- bypass row-level security.\n\
         DO $$\n\
         BEGIN\n\
         {create_owner}\
         {create_app}\
         {create_operator}\
         {create_auditor}\
         {app_no_bypass}\
         \x20 IF pg_has_role({app}, {owner}, 'MEMBER') THEN\n\
         \x20   RAISE EXCEPTION 'role % is a member of %: the application role must not be able to act as the table owner', {app}, {owner}\n\
         \x20     USING HINT = 'REVOKE ' || {owner} || ' FROM ' || {app};\n\
         \x20 END IF;\n\
         END\n\
         $$;\n",
        create_owner = create_nologin_role(&o.owner_role),
        create_app = create_nologin_role(&o.app_role),
        // Created here too (the operator's part creates them again, idempotently): the signed
        // context's grants, which come first, name the operator role.
        create_operator = create_nologin_role(&o.operator_role),
        create_auditor = create_nologin_role(&o.auditor_role),
        app_no_bypass = strip_rls_bypass(&o.app_role),
    );
}

fn tenant_table(out: &mut String, t: &TableEntry, org_column: &str, o: &RlsOptions) {
    let table = ident(t.name);
    let col = ident(org_column);
    let owner = ident(&o.owner_role);
    let app = ident(&o.app_role);
    let policy = ident(&o.policy);
    let base = ident(&o.base_policy);
    let expr = org_expression(o);
    let index = ident(&org_index_name(t.name, org_column));
    let _ = write!(
        out,
        "\n-- Tenant table {name}: rows belong to the org in {col}.\n\
         ALTER TABLE {table} OWNER TO {owner};\n\
         ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n\
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n\
         DROP POLICY IF EXISTS {policy} ON {table};\n\
         CREATE POLICY {policy} ON {table} AS RESTRICTIVE FOR ALL TO PUBLIC\n\
         \x20   USING ({col} = {expr})\n\
         \x20   WITH CHECK ({col} = {expr});\n\
         DROP POLICY IF EXISTS {base} ON {table};\n\
         CREATE POLICY {base} ON {table} AS PERMISSIVE FOR ALL TO {app}\n\
         \x20   USING ({col} = {expr})\n\
         \x20   WITH CHECK ({col} = {expr});\n\
         REVOKE ALL ON {table} FROM PUBLIC;\n\
         REVOKE ALL ON {table} FROM {app};\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {app};\n\
         DO $$\n\
         BEGIN\n\
         \x20 -- The org column defaults to the session's org, unless the schema gave it a default.\n\
         \x20 IF NOT EXISTS (SELECT FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum\n\
         \x20               WHERE d.adrelid = {table_lit}::regclass AND a.attname = {col_lit}) THEN\n\
         \x20   ALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT {default};\n\
         \x20 END IF;\n\
         END\n\
         $$;\n\
         DO $$\n\
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
        name = t.name,
        table_lit = literal(&table),
        col_lit = literal(org_column),
        default = org_default(o),
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
fn partitions_up(out: &mut String, t: &TableEntry, org_column: &str, o: &RlsOptions) {
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
         \x20   EXECUTE format('CREATE POLICY %I ON %s AS RESTRICTIVE FOR ALL TO PUBLIC USING (%s) WITH CHECK (%s)', {policy}, part, {predicate}, {predicate});\n\
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
                 $$;\n\
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
                table_lit = literal(&table),
                col_lit = literal(org_column),
                col = ident(org_column),
                setting = o.setting.replace('\'', "''"),
                context = crate::context::CONTEXT_SCHEMA,
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

/// The file, in each generated migration's directory, that records the fragments it leaves
/// applied: `cargo xtask gen` compares the registry with the latest one.
pub const MANIFEST_FILE: &str = "tenant-rls.manifest.json";

/// The manifest of `parts`, as JSON (`{"version": 1, "tables": [{"table", "up", "down"}]}`).
pub fn manifest(parts: &[Fragment]) -> String {
    let tables: Vec<serde_json::Value> = parts
        .iter()
        .map(|f| serde_json::json!({ "table": f.table, "up": f.up, "down": f.down }))
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({ "version": 1, "tables": tables }))
        .unwrap_or_default()
        + "\n"
}

/// Reads a manifest written by [`manifest`].
pub fn read_manifest(json: &str) -> Result<Vec<Fragment>, String> {
    let doc: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    if doc["version"] != 1 {
        return Err(
            "unknown manifest version: regenerate with this version of tenant-schema".into(),
        );
    }
    doc["tables"]
        .as_array()
        .ok_or("the manifest has no tables list")?
        .iter()
        .map(|t| {
            let field = |k: &str| {
                t[k].as_str()
                    .map(str::to_owned)
                    .ok_or(format!("a manifest entry lacks `{k}`"))
            };
            Ok(Fragment {
                table: field("table")?,
                up: field("up")?,
                down: field("down")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    diesel::table! { invoices (id) { id -> Uuid, org_id -> Uuid } }
    diesel::table! { orgs (id) { id -> Uuid } }
    diesel::table! { plans (id) { id -> Uuid } }
    tenant_lint::registry! {
        static REGISTRY;
        tenant orgs => id;
        tenant invoices => org_id;
        global plans;
    }

    fn migration() -> Migration {
        generate(&REGISTRY, &RlsOptions::default())
    }

    /// The opt-in plain mode's options.
    fn plain() -> RlsOptions {
        RlsOptions {
            context: crate::context::ContextMode::TrustEveryStatement,
            ..RlsOptions::default()
        }
    }

    #[test]
    fn every_tenant_table_gets_rls_enabled_and_forced_and_a_restrictive_policy() {
        let up = migration().up;
        let plain_up = generate(&REGISTRY, &plain()).up;
        for (table, col) in [("orgs", "id"), ("invoices", "org_id")] {
            assert!(up.contains(&format!(
                "ALTER TABLE \"{table}\" ENABLE ROW LEVEL SECURITY;"
            )));
            assert!(up.contains(&format!(
                "ALTER TABLE \"{table}\" FORCE ROW LEVEL SECURITY;"
            )));
            // The default: the org of the token the service signed, verified once per statement.
            assert!(up.contains(&format!(
                "CREATE POLICY \"tenant_isolation\" ON \"{table}\" AS RESTRICTIVE FOR ALL TO PUBLIC\n    \
                 USING (\"{col}\" = (SELECT org FROM tenant_context.current_org))\n    \
                 WITH CHECK (\"{col}\" = (SELECT org FROM tenant_context.current_org));"
            )));
            // The opt-in plain mode: the setting.
            assert!(plain_up.contains(&format!(
                "CREATE POLICY \"tenant_isolation\" ON \"{table}\" AS RESTRICTIVE FOR ALL TO PUBLIC\n    \
                 USING (\"{col}\" = (SELECT nullif(current_setting('tenant.org_id', true), '')::uuid))\n    \
                 WITH CHECK (\"{col}\" = (SELECT nullif(current_setting('tenant.org_id', true), '')::uuid));"
            )));
            assert!(up.contains(&format!(
                "ALTER TABLE \"{table}\" OWNER TO \"tenant_owner\";"
            )));
        }
    }

    #[test]
    fn the_app_role_gets_only_dml_on_tenant_tables_and_select_on_global_ones() {
        let up = migration().up;
        assert!(
            up.contains("GRANT SELECT, INSERT, UPDATE, DELETE ON \"invoices\" TO \"tenant_app\";")
        );
        assert!(up.contains("GRANT SELECT ON \"plans\" TO \"tenant_app\";"));
        assert!(!up.contains("GRANT ALL"));
        for forbidden in [
            "TRUNCATE",
            "REFERENCES",
            "TRIGGER",
            "BYPASSRLS;",
            "SUPERUSER;",
        ] {
            let granted = up
                .lines()
                .filter(|l| l.starts_with("GRANT"))
                .any(|l| l.contains(forbidden));
            assert!(!granted, "{forbidden} granted:\n{up}");
        }
        assert!(
            !up.contains("ON \"plans\" AS RESTRICTIVE"),
            "global tables get no tenant policy"
        );
    }

    #[test]
    fn the_policy_reads_the_setting_once_per_statement_and_fails_closed_on_empty() {
        assert_eq!(
            org_expression(&RlsOptions::default()),
            "(SELECT org FROM tenant_context.current_org)"
        );
        assert_eq!(
            org_expression(&plain()),
            "(SELECT nullif(current_setting('tenant.org_id', true), '')::uuid)"
        );
        // No policy lets rows through when the org is missing.
        for up in [migration().up, generate(&REGISTRY, &plain()).up] {
            assert!(
                up.lines()
                    .filter(|l| l.contains("USING (") || l.contains("WITH CHECK ("))
                    .all(|l| !l.contains("IS NULL OR")),
                "{up}"
            );
        }
    }

    #[test]
    fn down_undoes_each_table_in_reverse_order() {
        let down = migration().down;
        let pos = |s: &str| {
            down.find(s)
                .unwrap_or_else(|| panic!("missing {s}:\n{down}"))
        };
        assert!(
            pos("REVOKE SELECT ON \"plans\"")
                < pos("DROP POLICY IF EXISTS \"tenant_isolation\" ON \"invoices\"")
        );
        assert!(
            pos("ALTER TABLE \"invoices\" DISABLE ROW LEVEL SECURITY;")
                < pos("DROP INDEX IF EXISTS \"orgs_id_tenant_idx\"")
        );
        assert!(down.contains("ALTER TABLE \"orgs\" DISABLE ROW LEVEL SECURITY;"));
    }

    #[test]
    fn the_org_column_defaults_to_the_session_org_unless_the_schema_set_a_default() {
        let m = migration();
        assert!(m.up.contains(
            "ALTER TABLE \"invoices\" ALTER COLUMN \"org_id\" SET DEFAULT tenant_context.verified_org();"
        ));
        assert!(generate(&REGISTRY, &plain()).up.contains(
            "ALTER TABLE \"invoices\" ALTER COLUMN \"org_id\" SET DEFAULT (nullif(current_setting('tenant.org_id', true), ''))::uuid;"
        ));
        assert!(m.up.contains("IF NOT EXISTS (SELECT FROM pg_attrdef"));
        assert!(
            m.down
                .contains("ALTER TABLE \"invoices\" ALTER COLUMN \"org_id\" DROP DEFAULT;")
        );
        // Either mode's default, so that a migration between the modes undoes the other's.
        assert!(
            m.down
                .contains("LIKE '%current_setting(''tenant.org_id''%'")
                && m.down.contains("LIKE '%tenant_context.verified_org()%'")
        );
    }

    #[test]
    fn a_changed_table_is_unprotected_then_protected_again_and_down_restores_the_old_fragment() {
        let old = fragments(&REGISTRY, &RlsOptions::default());
        let renamed = RlsOptions {
            base_policy: "app_rows".into(),
            ..RlsOptions::default()
        };
        let new = fragments(&REGISTRY, &renamed);
        let step = incremental(&old, &new, &renamed).unwrap();
        let invoices_old = old.iter().find(|f| f.table == "invoices").unwrap();
        let invoices_new = new.iter().find(|f| f.table == "invoices").unwrap();
        assert!(step.up.contains(&format!(
            "-- invoices changed.\n{}{}",
            invoices_old.down, invoices_new.up
        )));
        assert!(step.down.contains(&format!(
            "-- invoices as it was.\n{}{}",
            invoices_new.down, invoices_old.up
        )));
        assert!(
            !step.up.contains("-- plans changed."),
            "a global table's fragment does not name policies"
        );
        let back = read_manifest(&manifest(&new)).unwrap();
        assert_eq!(back, new);
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(literal("it's"), "'it''s'");
        let options = RlsOptions {
            setting: "app.o'rg".into(),
            ..plain()
        };
        assert!(org_expression(&options).contains("'app.o''rg'"));
    }
}
