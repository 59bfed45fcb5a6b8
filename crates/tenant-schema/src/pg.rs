//! The PostgreSQL 15+ target: a migration is the shared objects (roles, the signed context's
//! functions, the access log, the session defaults) followed by every table's fragment
//! (`table.rs`); [`incremental`] writes only what changed since a manifest, and
//! [`shared_refresh`] what changed in the shared objects. [`crate::citus`] builds on this.
//!
//! Layers (no file imports one above it): `options` < `sql` < `operator_citus` < `context`, `operator`,
//! `session` < `table` < `pg` < `citus`.

use std::fmt::Write as _;

use tenant_lint::Registry;

pub use crate::options::RlsOptions;
use crate::options::Target;
use crate::sql::{HEADER, create_nologin_role, strip_rls_bypass};
pub use crate::sql::{Migration, ident, literal};
pub use crate::table::{Fragment, fragments, org_default, org_expression, org_index_name};

/// The roles and schema usage every migration starts with (idempotent).
fn preamble(options: &RlsOptions) -> String {
    preamble_for(options, Target::Postgres)
}

/// [`preamble`] for `target` (the Citus target's break-glass access differs).
pub(crate) fn preamble_for(options: &RlsOptions, target: Target) -> String {
    let mut up = String::from(HEADER);
    roles(&mut up, options);
    if options.context == crate::context::ContextMode::Signed {
        crate::context::shared(&mut up, options);
    }
    crate::operator::shared(&mut up, options, target);
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
    assemble_for(parts, options, Target::Postgres)
}

/// [`assemble`], its shared objects written for `target`.
pub(crate) fn assemble_for(parts: &[Fragment], options: &RlsOptions, target: Target) -> Migration {
    let mut up = preamble_for(options, target);
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
    incremental_for(previous, current, options, Target::Postgres)
}

/// [`incremental`], its shared objects written for `target`.
pub(crate) fn incremental_for(
    previous: &[Fragment],
    current: &[Fragment],
    options: &RlsOptions,
    target: Target,
) -> Option<Migration> {
    let find = |list: &[Fragment], name: &str| list.iter().find(|f| f.table == name).cloned();
    let mut up = preamble_for(options, target);
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
         \x20 -- An administrator who is no superuser (a managed server's) hands tables to the owner\n\
         \x20 -- only as a member of it that may SET ROLE to it, and only where the owner may create\n\
         \x20 -- in the schema. From PostgreSQL 16 the role that created the owner is a member with\n\
         \x20 -- ADMIN OPTION only (no SET), which it may grant itself; one that did not create it\n\
         \x20 -- needs a grant from a superuser or from the role that did.\n\
         \x20 IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN\n\
         \x20   IF NOT pg_has_role(current_user, {owner}, CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'SET' ELSE 'MEMBER' END) THEN\n\
         \x20     BEGIN\n\
         \x20       EXECUTE format('GRANT %I TO %I', {owner}, current_user);\n\
         \x20     EXCEPTION WHEN insufficient_privilege THEN\n\
         \x20       RAISE EXCEPTION 'role % may not make itself a member of %, which it needs to hand tables to it', current_user, {owner}\n\
         \x20         USING ERRCODE = 'insufficient_privilege', HINT = 'a superuser, or the role that created ' || {owner} || ', runs: GRANT ' || {owner} || ' TO ' || current_user;\n\
         \x20     END;\n\
         \x20   END IF;\n\
         \x20   EXECUTE format('GRANT CREATE ON SCHEMA public TO %I', {owner});\n\
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
