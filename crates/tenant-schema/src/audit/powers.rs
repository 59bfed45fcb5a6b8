//! What the application and operator roles can do besides their grants on tables: create
//! objects (temporary ones included), inherit privileges through role membership, receive
//! privileges on objects not created yet (default privileges), and read or write every large
//! object (`lo_compat_privileges`), stop other sessions of its own role. Each is read from the catalog as a [`RolePower`] and judged
//! by one rule here.
//!
//! Invariant: a power is reported with the statement that takes it away; a rule never reports
//! what another rule already reports (a membership in a superuser or BYPASSRLS role is
//! `app-role`'s).

use diesel::QueryableByName;
use diesel::sql_types::Text;
use tenant_core::admin::CatalogReader;
use tenant_lint::Registry;

use super::{AuditError, AuditOptions, Catalog, Finding, Severity};

/// One power of a role, as the catalog shows it.
///
/// `kind` is one of `create`, `signal`, `files`, `catalog`, `attribute`, `default-privilege`,
/// `membership`, `setting`, `lo-compat`.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct RolePower {
    /// The role (the application or the operator role).
    #[diesel(sql_type = Text)]
    pub role: String,
    /// What kind of power (see the type's docs).
    #[diesel(sql_type = Text)]
    pub kind: String,
    /// What it holds, e.g. `TEMPORARY on database app`, or the role it is a member of.
    #[diesel(sql_type = Text)]
    pub what: String,
    /// The statement that takes it away.
    #[diesel(sql_type = Text)]
    pub fix: String,
}

/// The query behind [`read`]: `$1` is the roles' names.
const POWERS: &str = "\
WITH r AS (SELECT ro.oid, ro.rolname::text AS name FROM pg_roles ro WHERE ro.rolname = ANY (string_to_array($1, ','))) \
SELECT r.name AS role, 'create' AS kind, format('TEMPORARY on database %I', current_database()) AS what, \
       format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC, %I', current_database(), r.name) AS fix \
  FROM r WHERE has_database_privilege(r.oid, current_database(), 'TEMPORARY') \
UNION ALL \
SELECT r.name, 'create', format('CREATE on database %I', current_database()), \
       format('REVOKE CREATE ON DATABASE %I FROM PUBLIC, %I', current_database(), r.name) \
  FROM r WHERE has_database_privilege(r.oid, current_database(), 'CREATE') \
UNION ALL \
SELECT r.name, 'create', format('CREATE on schema %I', n.nspname), \
       format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC, %I', n.nspname, r.name) \
  FROM r, pg_namespace n WHERE has_schema_privilege(r.oid, n.oid, 'CREATE') \
UNION ALL \
SELECT r.name, f.kind, format('EXECUTE on function %s', p.oid::regprocedure), \
       format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC, %I', p.oid::regprocedure, r.name) \
  FROM r, pg_proc p \
  JOIN (VALUES ('lo_creat', 'create'), ('lo_create', 'create'), ('lo_from_bytea', 'create'), \
               ('lo_import', 'create'), \
               ('pg_terminate_backend', 'signal'), ('pg_cancel_backend', 'signal'), \
               ('pg_read_file', 'files'), ('pg_read_binary_file', 'files'), ('pg_ls_dir', 'files'), \
               ('pg_stat_file', 'files'), ('pg_ls_logdir', 'files'), ('pg_ls_waldir', 'files'), \
               ('pg_ls_tmpdir', 'files'), ('pg_ls_archive_statusdir', 'files'), \
               ('lo_export', 'files'), ('lo_import', 'files')) AS f(proname, kind) \
    ON f.proname = p.proname \
 WHERE p.pronamespace = 'pg_catalog'::regnamespace AND has_function_privilege(r.oid, p.oid, 'EXECUTE') \
UNION ALL \
SELECT r.name, 'catalog', format('SELECT on %s', c.oid::regclass), \
       format('REVOKE SELECT ON %s FROM PUBLIC, %I', c.oid::regclass, r.name) \
  FROM r, pg_class c WHERE c.relnamespace = 'pg_catalog'::regnamespace \
   AND c.relname IN ('pg_statistic', 'pg_statistic_ext_data', 'pg_authid', 'pg_user_mapping') \
   AND has_table_privilege(r.oid, c.oid, 'SELECT') \
UNION ALL \
SELECT r.name, 'attribute', a.attribute, format('ALTER ROLE %I NO%s', r.name, a.attribute) \
  FROM r JOIN pg_roles ro ON ro.oid = r.oid, \
       LATERAL (VALUES ('CREATEROLE', ro.rolcreaterole), ('REPLICATION', ro.rolreplication), \
                       ('CREATEDB', ro.rolcreatedb)) AS a(attribute, held) \
 WHERE a.held \
UNION ALL \
SELECT r.name, 'default-privilege', \
       format('%s on %s created by %I%s, to %s', a.privilege_type, o.kind, pg_get_userbyid(d.defaclrole), \
              CASE WHEN d.defaclnamespace <> 0 THEN format(' in schema %I', d.defaclnamespace::regnamespace) ELSE '' END, \
              CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.name) END), \
       format('ALTER DEFAULT PRIVILEGES FOR ROLE %I%s REVOKE %s ON %s FROM %s', pg_get_userbyid(d.defaclrole), \
              CASE WHEN d.defaclnamespace <> 0 THEN format(' IN SCHEMA %I', d.defaclnamespace::regnamespace) ELSE '' END, \
              a.privilege_type, upper(o.kind), CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.name) END) \
  FROM r, pg_default_acl d \
  JOIN LATERAL (SELECT CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences' \
                  WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types' WHEN 'n' THEN 'schemas' \
                  ELSE d.defaclobjtype::text END AS kind) o ON true, \
       aclexplode(d.defaclacl) a \
 WHERE a.grantee IN (0, r.oid) \
UNION ALL \
SELECT r.name, 'membership', m.rolname::text, format('REVOKE %I FROM %I', m.rolname, r.name) \
  FROM r, pg_roles m WHERE m.oid <> r.oid AND pg_has_role(r.oid, m.oid, 'MEMBER') \
UNION ALL \
SELECT r.name, 'setting', \
       c.setting || CASE WHEN s.setdatabase = 0 THEN ' (every database)' ELSE '' END, \
       format('ALTER ROLE %I%s RESET %s', r.name, \
              CASE WHEN s.setdatabase = 0 THEN '' ELSE format(' IN DATABASE %I', current_database()) END, \
              split_part(c.setting, '=', 1)) \
  FROM r JOIN pg_db_role_setting s ON s.setrole = r.oid \
   AND s.setdatabase IN (0, (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())), \
       unnest(s.setconfig) AS c(setting) \
UNION ALL \
SELECT 'every role', 'setting', c.setting || ' (this database, every role)', \
       format('ALTER DATABASE %I RESET %s', current_database(), split_part(c.setting, '=', 1)) \
  FROM pg_db_role_setting s, unnest(s.setconfig) AS c(setting) \
 WHERE s.setrole = 0 AND s.setdatabase = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()) \
UNION ALL \
SELECT r.name, 'lo-compat', 'lo_compat_privileges = on', 'ALTER SYSTEM SET lo_compat_privileges = off' \
  FROM r, pg_settings s WHERE s.name = 'lo_compat_privileges' AND s.setting = 'on' \
ORDER BY 1, 2, 3";

/// Reads the powers of `roles` (those that exist).
///
/// # Errors
/// The reader's error when the query fails.
pub fn read(reader: &mut CatalogReader, roles: &[&str]) -> Result<Vec<RolePower>, AuditError> {
    let names = roles.join(",");
    Ok(reader.load::<RolePower>(POWERS, &[&names])?)
}

fn powers<'c>(c: &'c Catalog, kind: &'c str) -> impl Iterator<Item = &'c RolePower> + 'c {
    c.role_powers.iter().filter(move |p| p.kind == kind)
}

fn finding(rule: &'static str, severity: Severity, p: &RolePower, why: &str) -> Finding {
    Finding {
        rule,
        severity,
        object: format!("{}: {}", p.role, p.what),
        why: why.to_owned(),
        fix: p.fix.clone(),
    }
}

/// `role-can-create`: the application or operator role can create an object.
pub(super) fn role_can_create(c: &Catalog, _: &Registry, _: &AuditOptions) -> Vec<Finding> {
    powers(c, "create")
        .map(|p| {
            finding(
                "role-can-create",
                Severity::Error,
                p,
                "the role can create an object, which outlives the transaction that made it: a temporary table shadows a tenant table of the same name for the next user of a pooled connection and captures its rows and token, an object in a schema on the search path can stand in for one the library uses, and a large object is storage row-level security does not govern",
            )
        })
        .collect()
}

/// Settings a role's session must not start with: they change which names resolve, switch
/// row-level security off (every query then fails), or load code into every session.
const DANGEROUS_SETTINGS: &[&str] = &[
    "search_path",
    "row_security",
    "local_preload_libraries",
    "session_preload_libraries",
];

/// `role-setting`: defaults a new session of the role starts with (`ALTER ROLE .. SET`), which
/// the role may set for itself and which `RESET ALL` restores: any but the generated search
/// path is reported.
pub(super) fn role_setting(c: &Catalog, _: &Registry, _: &AuditOptions) -> Vec<Finding> {
    let generated = format!("search_path={}", crate::session::ROLE_SEARCH_PATH);
    powers(c, "setting")
        .filter(|p| p.what != generated)
        .filter(|p| {
            // A database-wide default is only reported when it could matter for isolation
            // (others, a time zone say, are the database's own business).
            p.role != "every role" || {
                let name = p.what.split('=').next().unwrap_or_default();
                DANGEROUS_SETTINGS.contains(&name) || name.starts_with("tenant.")
            }
        })
        .map(|p| {
            let name = p.what.split('=').next().unwrap_or_default();
            // An org or token every session starts with: code that forgets to set one works
            // inside that org.
            let severe = DANGEROUS_SETTINGS.contains(&name) || name.starts_with("tenant.");
            finding(
                "role-setting",
                if severe { Severity::Error } else { Severity::Warning },
                p,
                if severe {
                    "every new session of the role starts with this setting, and each scoped transaction's reset goes back to it: it changes which names resolve, switches row-level security off, or loads code into the session; PostgreSQL lets the role set it for itself (the pool refuses new connections when it changes while it runs)"
                } else {
                    "every new session of the role starts with this setting, and each scoped transaction's reset goes back to it; PostgreSQL lets the role set it for itself: review it (the pool refuses new connections when it changes while it runs)"
                },
            )
        })
        .collect()
}

/// `role-reads-server`: the role can read the server's files (the key table's pages, the
/// server log with the tokens it holds) or the catalogs that hold every org's values
/// (`pg_statistic`) or secrets.
pub(super) fn role_reads_server(c: &Catalog, _: &Registry, _: &AuditOptions) -> Vec<Finding> {
    c.role_powers
        .iter()
        .filter(|p| p.kind == "files" || p.kind == "catalog")
        .map(|p| {
            finding(
                "role-reads-server",
                Severity::Error,
                p,
                if p.kind == "files" {
                    "the role reads or lists the server's files: the signed context's key table is a file under the data directory (its pads sign a token for any org), and the server log holds statement texts and tokens"
                } else {
                    "the role reads a catalog that row-level security does not govern: pg_statistic holds the most common values of every column of every org, pg_authid the password hashes"
                },
            )
        })
        .collect()
}

/// `role-attribute`: the role may create roles (and so grant itself any role, the table
/// owner's included, then take the membership back), stream the whole cluster (replication),
/// or create databases.
pub(super) fn role_attribute(c: &Catalog, _: &Registry, _: &AuditOptions) -> Vec<Finding> {
    powers(c, "attribute")
        .map(|p| {
            let severe = p.what != "CREATEDB";
            finding(
                "role-attribute",
                if severe { Severity::Error } else { Severity::Warning },
                p,
                if p.what == "CREATEROLE" {
                    "a role with CREATEROLE can grant itself the table owner's role, read the signed context's keys or switch row-level security off, and revoke the membership afterwards"
                } else if p.what == "REPLICATION" {
                    "a role with REPLICATION can open a replication connection and copy the whole cluster, every org's rows and the keys included"
                } else {
                    "a role with CREATEDB can create databases outside this one's protection: review why it needs it"
                },
            )
        })
        .collect()
}

/// `generated-function-executable`: a role may run one of the generated SECURITY DEFINER
/// functions it was not given: the application only `verified_org()`, the operator only the
/// access functions and `verified_org()`. `mac`, `sign_for_this_backend` and `add_key` sign a
/// token for any org; the access functions open an org.
pub(super) fn generated_function_executable(
    c: &Catalog,
    _: &Registry,
    o: &AuditOptions,
) -> Vec<Finding> {
    let generated = crate::generated::functions(&o.rls);
    let context = crate::context::CONTEXT_SCHEMA;
    let mut out = Vec::new();
    for f in c.functions.iter().filter(|f| f.security_definer) {
        let name = crate::generated::bare_name(&f.name);
        if !generated
            .iter()
            .any(|g| g.schema == f.schema && g.name == name)
        {
            continue;
        }
        let verified_org = f.schema == context && name == "verified_org";
        let access = f.schema == o.rls.audit_schema && name != "refuse_change";
        for (role, may, allowed) in [
            (&o.rls.app_role, f.app_can_execute, verified_org),
            (
                &o.rls.operator_role,
                f.operator_can_execute,
                verified_org || access,
            ),
        ] {
            if may && !allowed {
                out.push(Finding {
                    rule: "generated-function-executable",
                    severity: Severity::Error,
                    // The name as the server prints it under the audit's search path
                    // (schema-qualified outside `public`).
                    object: format!("{role}: EXECUTE on {}", f.name),
                    why: "the role may run a generated SECURITY DEFINER function it was not given: the signed context's functions sign a token for any org (or add a key), the access functions open an org".into(),
                    fix: format!(
                        "REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC, {}",
                        f.name,
                        crate::sql::ident(role)
                    ),
                });
            }
        }
    }
    out
}

/// `role-can-signal`: the role can stop other sessions of its own role.
pub(super) fn role_can_signal(c: &Catalog, _: &Registry, _: &AuditOptions) -> Vec<Finding> {
    powers(c, "signal")
        .map(|p| {
            finding(
                "role-can-signal",
                Severity::Warning,
                p,
                "PostgreSQL lets a role cancel or terminate every session of its own role: one org's transaction (an injection) can end another org's, or every one the pool holds",
            )
        })
        .collect()
}

/// `default-privilege`: privileges the role will receive on objects created later.
pub(super) fn default_privilege(c: &Catalog, _: &Registry, _: &AuditOptions) -> Vec<Finding> {
    powers(c, "default-privilege")
        .map(|p| {
            let bypasses = ["TRUNCATE on tables", "REFERENCES on tables", "TRIGGER on tables"]
                .iter()
                .any(|k| p.what.starts_with(k));
            finding(
                "default-privilege",
                if bypasses {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                p,
                "a default privilege grants the role rights on every such object created later, before anyone reviews it: a table gets them before its row-level security is enabled, and TRUNCATE, REFERENCES and TRIGGER are never governed by it",
            )
        })
        .collect()
}

/// Roles whose membership gives a role more than row-level security allows it: the library's
/// own roles, and PostgreSQL's roles that read or write every table or file.
const POWERFUL: &[&str] = &[
    "pg_read_all_data",
    "pg_write_all_data",
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
    "pg_signal_backend",
];

/// `role-membership`: the role is a member of another role, directly or through a chain.
pub(super) fn role_membership(c: &Catalog, _: &Registry, o: &AuditOptions) -> Vec<Finding> {
    let privileged: Vec<&str> = c
        .app_role
        .as_ref()
        .map(|r| r.privileged_memberships.split(',').collect())
        .unwrap_or_default();
    let library = [
        o.rls.owner_role.as_str(),
        o.rls.app_role.as_str(),
        o.rls.operator_role.as_str(),
        o.rls.auditor_role.as_str(),
    ];
    powers(c, "membership")
        .filter(|p| !(p.role == o.rls.app_role && privileged.contains(&p.what.as_str())))
        .map(|p| {
            let severe = POWERFUL.contains(&p.what.as_str()) || library.contains(&p.what.as_str());
            finding(
                "role-membership",
                if severe { Severity::Error } else { Severity::Warning },
                p,
                if severe {
                    "the role inherits another role's rights and can SET ROLE to it: the library's own roles reach the signed context's keys, the access log or every org's rows, and PostgreSQL's predefined roles read or write every table (the keys and the log included) or the server's files"
                } else {
                    "the role inherits another role's rights and can SET ROLE to it: review what that role may do, since all of it is the application's too"
                },
            )
        })
        .collect()
}

/// `large-object-compat`: every role reads and writes every large object.
pub(super) fn large_object_compat(c: &Catalog, _: &Registry, _: &AuditOptions) -> Vec<Finding> {
    powers(c, "lo-compat")
        .map(|p| {
            finding(
                "large-object-compat",
                Severity::Error,
                p,
                "lo_compat_privileges turns off the checks on large objects: every role reads and writes every large object, which row-level security does not govern",
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    static EMPTY: Registry = Registry::__new(&[], &[]);

    fn power(role: &str, kind: &str, what: &str) -> RolePower {
        RolePower {
            role: role.into(),
            kind: kind.into(),
            what: what.into(),
            fix: "fix".into(),
        }
    }

    fn catalog(powers: Vec<RolePower>) -> Catalog {
        Catalog {
            role_powers: powers,
            ..Catalog::empty()
        }
    }

    #[test]
    fn a_temporary_privilege_is_an_error_naming_the_role_and_the_fix() {
        let c = catalog(vec![power(
            "tenant_app",
            "create",
            "TEMPORARY on database app",
        )]);
        let f = role_can_create(&c, &EMPTY, &AuditOptions::default());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Error);
        assert_eq!(f[0].object, "tenant_app: TEMPORARY on database app");
        assert_eq!(f[0].fix, "fix");
    }

    #[test]
    fn a_default_truncate_is_an_error_and_a_default_select_a_warning() {
        let c = catalog(vec![
            power(
                "tenant_app",
                "default-privilege",
                "TRUNCATE on tables created by owner, to tenant_app",
            ),
            power(
                "tenant_app",
                "default-privilege",
                "SELECT on tables created by owner, to tenant_app",
            ),
        ]);
        let f = default_privilege(&c, &EMPTY, &AuditOptions::default());
        let severities: Vec<Severity> = f.iter().map(|f| f.severity).collect();
        assert_eq!(severities, [Severity::Error, Severity::Warning]);
    }

    #[test]
    fn membership_in_a_library_role_or_a_data_role_is_an_error_and_others_are_warnings() {
        let c = catalog(vec![
            power("tenant_app", "membership", "tenant_operator"),
            power("tenant_app", "membership", "pg_read_all_data"),
            power("tenant_app", "membership", "reporting"),
        ]);
        let f = role_membership(&c, &EMPTY, &AuditOptions::default());
        let severities: Vec<Severity> = f.iter().map(|f| f.severity).collect();
        assert_eq!(
            severities,
            [Severity::Error, Severity::Error, Severity::Warning]
        );
    }

    #[test]
    fn a_membership_app_role_already_reports_is_not_reported_twice() {
        let mut c = catalog(vec![power("tenant_app", "membership", "admin")]);
        c.app_role = Some(super::super::AppRole {
            name: "tenant_app".into(),
            superuser: false,
            bypassrls: false,
            privileged_memberships: "admin".into(),
        });
        let f = role_membership(&c, &EMPTY, &AuditOptions::default());
        assert!(f.is_empty(), "{f:?}");
    }
}
