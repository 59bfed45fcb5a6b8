//! The pool's start-up check: the login role cannot bypass row-level security, act as a
//! table's owner, or create objects of any kind, and every registered tenant table exists
//! with row-level security enabled and forced ([`UnsafeConfig`] says why not, and the fix).
//!
//! Invariant: a pool that started runs as a role for which the database layer holds alone.

use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Text};
use tenant_lint::Registry;

use crate::{ORG_SETTING, TenantError};

/// Why the pool refuses to start: the login role or the schema would let rows cross orgs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeConfig {
    /// The login role is a superuser, which bypasses row-level security.
    #[error(
        "role `{role}` is a superuser, and superusers bypass row-level security: connect as the \
         application role (tenant_app), which must be NOSUPERUSER"
    )]
    Superuser {
        /// The login role.
        role: String,
    },
    /// The login role has BYPASSRLS.
    #[error(
        "role `{role}` has BYPASSRLS, so row-level security does not apply to it: run \
         `ALTER ROLE {role} NOBYPASSRLS` or connect as tenant_app"
    )]
    BypassRls {
        /// The login role.
        role: String,
    },
    /// The login role has CREATEROLE (it can grant itself the table owner's role) or
    /// REPLICATION (it can copy the whole cluster).
    #[error(
        "role `{role}` has {attribute}, which reaches every org's rows around row-level security \
         (CREATEROLE grants itself the table owner's role; REPLICATION copies the cluster): run \
         `ALTER ROLE {role} NO{attribute}`"
    )]
    PowerfulAttribute {
        /// The login role.
        role: String,
        /// CREATEROLE or REPLICATION.
        attribute: &'static str,
    },
    /// The login role is a member of a superuser or BYPASSRLS role (it can `SET ROLE` to it).
    #[error(
        "role `{role}` is a member of `{member_of}`, which is a superuser or has BYPASSRLS; it can \
         SET ROLE to it and bypass row-level security: run `REVOKE {member_of} FROM {role}`"
    )]
    MemberOfPrivilegedRole {
        /// The login role.
        role: String,
        /// The privileged role it belongs to.
        member_of: String,
    },
    /// The login role owns a tenant table (or is a member of its owner).
    #[error(
        "role `{role}` owns tenant table `{table}` (directly or through role membership); an owner \
         can disable or drop its policies: make tenant_owner the owner and connect as tenant_app"
    )]
    OwnsTenantTable {
        /// The login role.
        role: String,
        /// The tenant table.
        table: String,
    },
    /// The login role holds a privilege that bypasses or undermines row-level security.
    #[error(
        "role `{role}` holds {privilege} on tenant table `{table}`, which row-level security does \
         not govern: run `REVOKE {privilege} ON {table} FROM {role}`"
    )]
    ForbiddenPrivilege {
        /// The login role.
        role: String,
        /// The tenant table.
        table: String,
        /// TRUNCATE, REFERENCES or TRIGGER.
        privilege: &'static str,
    },
    /// The server records so much statement text for `pg_stat_activity` that the signed
    /// context cannot keep its token out of it at a reasonable cost.
    #[error(
        "the server records {bytes} bytes of each statement for pg_stat_activity \
         (track_activity_query_size), where other sessions of the role can read them; the signed \
         context keeps its token past that text, which costs too much above {max} bytes: set \
         track_activity_query_size to {max} or less (it takes a restart)"
    )]
    RecordedTextTooLarge {
        /// `track_activity_query_size` in bytes.
        bytes: usize,
        /// [`MAX_RECORDED_TEXT`](crate::context::MAX_RECORDED_TEXT).
        max: usize,
    },
    /// The login role can create objects (temporary ones included), which outlive the
    /// transaction that made them: a temporary table shadows a tenant table of the same name
    /// for the next user of the pooled connection and captures its rows and token; a large
    /// object is storage that row-level security does not govern.
    #[error(
        "role `{role}` holds {privilege}, so a transaction could leave an object on a pooled \
         connection for the next org's transaction to use: run `{fix}` (the migration \
         tenant-schema generates does this), and grant it back only to roles that need it"
    )]
    CanCreateObjects {
        /// The login role.
        role: String,
        /// What it holds, e.g. `TEMPORARY on database app`.
        privilege: String,
        /// The statement that takes it away.
        fix: String,
    },
    /// A registered tenant table does not exist in the database.
    #[error(
        "tenant table `{table}` is in the registry but not in the database: run the migrations, \
         or remove it from the registry"
    )]
    MissingTenantTable {
        /// The table name.
        table: String,
    },
    /// A tenant table does not have row-level security enabled and forced.
    #[error(
        "tenant table `{table}` does not have row-level security enabled and forced: apply the \
         migration generated by tenant-schema (`cargo xtask gen`)"
    )]
    RlsNotForced {
        /// The table name.
        table: String,
    },
    /// New connections start with an org context already set (e.g. `ALTER ROLE ... SET
    /// tenant.org_id`), so every session would run as that org.
    #[error(
        "new connections of role `{role}` already carry an org context in `{setting}`: remove the \
         default with `ALTER ROLE {role} RESET {setting}` (and check ALTER DATABASE ... SET)"
    )]
    ContextAtConnect {
        /// The login role.
        role: String,
        /// The setting name.
        setting: &'static str,
    },
}

#[derive(QueryableByName)]
struct RoleRow {
    #[diesel(sql_type = Text)]
    role: String,
    #[diesel(sql_type = Bool)]
    superuser: bool,
    #[diesel(sql_type = Bool)]
    bypassrls: bool,
    #[diesel(sql_type = Bool)]
    createrole: bool,
    #[diesel(sql_type = Bool)]
    replication: bool,
    #[diesel(sql_type = Text)]
    context: String,
    #[diesel(sql_type = Bool)]
    citus: bool,
}

#[derive(QueryableByName)]
struct MembershipRow {
    #[diesel(sql_type = Text)]
    member_of: String,
}

#[derive(QueryableByName)]
struct TableRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Bool)]
    present: bool,
    #[diesel(sql_type = Bool)]
    owner: bool,
    #[diesel(sql_type = Bool)]
    can_truncate: bool,
    #[diesel(sql_type = Bool)]
    can_reference: bool,
    #[diesel(sql_type = Bool)]
    can_trigger: bool,
    #[diesel(sql_type = Bool)]
    forced: bool,
}

#[derive(QueryableByName)]
struct CreateRow {
    #[diesel(sql_type = Text)]
    privilege: String,
    #[diesel(sql_type = Text)]
    fix: String,
}

/// The first privilege by which the current role can create an object in this database, and
/// the statement that takes it away: `TEMPORARY` or `CREATE` on the database (a `PUBLIC`
/// grant counts: PostgreSQL grants `TEMP` to `PUBLIC` by default), `CREATE` on a schema, or
/// `EXECUTE` on a function that creates a large object.
const CAN_CREATE: &str = "\
    SELECT privilege, fix FROM ( \
      SELECT 1 AS n, format('TEMPORARY on database %I', current_database()) AS privilege, \
             format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC, %I', current_database(), current_user) AS fix \
       WHERE has_database_privilege(current_database(), 'TEMPORARY') \
      UNION ALL \
      SELECT 2, format('CREATE on database %I', current_database()), \
             format('REVOKE CREATE ON DATABASE %I FROM PUBLIC, %I', current_database(), current_user) \
       WHERE has_database_privilege(current_database(), 'CREATE') \
      UNION ALL \
      SELECT 3, format('CREATE on schema %I', n.nspname), \
             format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC, %I', n.nspname, current_user) \
        FROM pg_catalog.pg_namespace n WHERE has_schema_privilege(n.oid, 'CREATE') \
      UNION ALL \
      SELECT 4, format('EXECUTE on function %s', p.oid::regprocedure), \
             format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC, %I', p.oid::regprocedure, current_user) \
        FROM pg_catalog.pg_proc p \
       WHERE p.pronamespace = 'pg_catalog'::regnamespace \
         AND p.proname IN ('lo_creat', 'lo_create', 'lo_from_bytea', 'lo_import') \
         AND has_function_privilege(p.oid, 'EXECUTE') \
    ) t ORDER BY n, privilege LIMIT 1";

/// Whether a policy or a column default of a registered tenant table reads the plain org
/// setting (`tenant.org_id`). A pool with a key refuses a policy that does
/// ([`trusts_org_setting`]), so what is left is a column default from before the signed
/// mode: the signed opening then sets the setting as well as the token, or an insert relying
/// on that default would find no org. Where nothing reads it, the signed opening leaves it
/// unset (cheaper, and nothing that SQL in the session could change is trusted anywhere).
/// Read once, at start-up: a pool built before a table's migration changes mode is rebuilt to
/// follow it (until then, a table switched back to the setting shows no rows; nothing
/// crosses).
pub(crate) fn reads_org_setting(
    conn: &mut PgConnection,
    registry: &Registry,
) -> Result<bool, TenantError> {
    Ok(first_table_reading(conn, registry, ORG_SETTING, true)?.is_some())
}

#[derive(QueryableByName)]
struct TableName {
    #[diesel(sql_type = Text)]
    table: String,
}

/// The first registered tenant table (registry order) whose policy, or with `defaults` whose
/// column default, mentions `needle`, as the server prints them.
fn first_table_reading(
    conn: &mut PgConnection,
    registry: &Registry,
    needle: &str,
    defaults: bool,
) -> Result<Option<String>, TenantError> {
    let names: Vec<&str> = registry.tenant_tables().map(|t| t.name).collect();
    let row: Option<TableName> = diesel::sql_query(
        "SELECT t.name AS table FROM unnest($1::text[]) WITH ORDINALITY AS t(name, n) \
         WHERE EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = to_regclass(t.name) \
                        AND strpos(concat(pg_get_expr(p.polqual, p.polrelid), ' ', \
                                          pg_get_expr(p.polwithcheck, p.polrelid)), $2) > 0) \
            OR ($3 AND EXISTS (SELECT FROM pg_attrdef d WHERE d.adrelid = to_regclass(t.name) \
                                AND strpos(pg_get_expr(d.adbin, d.adrelid), $2) > 0)) \
         ORDER BY t.n LIMIT 1",
    )
    .bind::<Array<Text>, _>(names)
    .bind::<Text, _>(needle)
    .bind::<Bool, _>(defaults)
    .get_result(conn)
    .optional()?;
    Ok(row.map(|r| r.table))
}

#[derive(QueryableByName)]
pub(crate) struct SettingsRow {
    #[diesel(sql_type = Text)]
    pub(crate) settings: String,
}

/// What `pg_db_role_setting` gives a new session of the current login role in this database
/// (the database's, the role's everywhere, the role's here), as one text.
pub(crate) fn role_settings(conn: &mut PgConnection) -> Result<String, TenantError> {
    let row: SettingsRow = role_settings_query().get_result(conn)?;
    Ok(row.settings)
}

/// What [`role_settings`] runs (the async pool runs it too).
pub(crate) fn role_settings_query() -> diesel::query_builder::SqlQuery {
    diesel::sql_query(
        "SELECT coalesce(string_agg(CASE WHEN s.setrole = 0 THEN 'database' \
                                         WHEN s.setdatabase = 0 THEN 'role' ELSE 'role here' END \
                                    || ': ' || array_to_string(s.setconfig, '; '), ' | ' \
                                    ORDER BY s.setdatabase, s.setrole), '') AS settings \
         FROM pg_catalog.pg_db_role_setting s \
         WHERE s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())) \
           AND s.setrole IN (0, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = session_user))",
    )
}

/// The first registered tenant table whose policy (not a column default) reads the plain org
/// setting: what a pool with a key refuses.
pub(crate) fn trusts_org_setting(
    conn: &mut PgConnection,
    registry: &Registry,
) -> Result<Option<String>, TenantError> {
    first_table_reading(conn, registry, ORG_SETTING, false)
}

/// The first registered tenant table whose policy reads the signed context's verifier
/// (`tenant_context.current_org`, or `verified_org()`): a pool without a key would see none of
/// its rows.
pub(crate) fn verifies_tokens(
    conn: &mut PgConnection,
    registry: &Registry,
) -> Result<Option<String>, TenantError> {
    first_table_reading(conn, registry, "tenant_context.", false)
}

/// What the start-up check learned about the database.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Database {
    /// It has the Citus extension (a coordinator): its workers learn the org only from
    /// `SET LOCAL`.
    pub citus: bool,
}

/// The start-up check: the role cannot bypass row-level security or create objects, and
/// every registered tenant table exists with RLS enabled and forced.
pub(crate) fn check_role_and_schema(
    conn: &mut PgConnection,
    registry: &Registry,
) -> Result<Database, TenantError> {
    let me: RoleRow = diesel::sql_query(
        "SELECT current_user::text AS role, r.rolsuper AS superuser, r.rolbypassrls AS bypassrls, \
                r.rolcreaterole AS createrole, r.rolreplication AS replication, \
                coalesce(current_setting('tenant.org_id', true), '') AS context, \
                EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') AS citus \
         FROM pg_roles r WHERE r.rolname = current_user",
    )
    .get_result(conn)?;
    let role = me.role;
    if me.superuser {
        return Err(UnsafeConfig::Superuser { role }.into());
    }
    if me.bypassrls {
        return Err(UnsafeConfig::BypassRls { role }.into());
    }
    for (held, attribute) in [
        (me.createrole, "CREATEROLE"),
        (me.replication, "REPLICATION"),
    ] {
        if held {
            return Err(UnsafeConfig::PowerfulAttribute { role, attribute }.into());
        }
    }
    if !me.context.is_empty() {
        return Err(UnsafeConfig::ContextAtConnect {
            role,
            setting: ORG_SETTING,
        }
        .into());
    }
    let privileged: Option<MembershipRow> = diesel::sql_query(
        "SELECT r.rolname::text AS member_of FROM pg_roles r \
         WHERE r.rolname <> current_user AND (r.rolsuper OR r.rolbypassrls) \
           AND pg_has_role(current_user, r.oid, 'MEMBER') \
         ORDER BY 1 LIMIT 1",
    )
    .get_result(conn)
    .optional()?;
    if let Some(row) = privileged {
        return Err(UnsafeConfig::MemberOfPrivilegedRole {
            role,
            member_of: row.member_of,
        }
        .into());
    }
    let names: Vec<&str> = registry.tenant_tables().map(|t| t.name).collect();
    let tables: Vec<TableRow> = diesel::sql_query(
        "SELECT t.name AS name, c.oid IS NOT NULL AS present, \
                coalesce(pg_has_role(current_user, c.relowner, 'MEMBER'), false) AS owner, \
                coalesce(has_table_privilege(c.oid, 'TRUNCATE'), false) AS can_truncate, \
                coalesce(has_table_privilege(c.oid, 'REFERENCES'), false) AS can_reference, \
                coalesce(has_table_privilege(c.oid, 'TRIGGER'), false) AS can_trigger, \
                coalesce(c.relrowsecurity AND c.relforcerowsecurity, false) AS forced \
         FROM unnest($1::text[]) WITH ORDINALITY AS t(name, n) \
         LEFT JOIN pg_class c ON c.oid = to_regclass(t.name) \
         ORDER BY t.n",
    )
    .bind::<Array<Text>, _>(names)
    .load(conn)?;
    for t in tables {
        let table = t.name;
        if !t.present {
            return Err(UnsafeConfig::MissingTenantTable { table }.into());
        }
        if t.owner {
            return Err(UnsafeConfig::OwnsTenantTable { role, table }.into());
        }
        for (held, privilege) in [
            (t.can_truncate, "TRUNCATE"),
            (t.can_reference, "REFERENCES"),
            (t.can_trigger, "TRIGGER"),
        ] {
            if held {
                return Err(UnsafeConfig::ForbiddenPrivilege {
                    role,
                    table,
                    privilege,
                }
                .into());
            }
        }
        if !t.forced {
            return Err(UnsafeConfig::RlsNotForced { table }.into());
        }
    }
    let creates: Option<CreateRow> = diesel::sql_query(CAN_CREATE).get_result(conn).optional()?;
    if let Some(row) = creates {
        return Err(UnsafeConfig::CanCreateObjects {
            role,
            privilege: row.privilege,
            fix: row.fix,
        }
        .into());
    }
    Ok(Database { citus: me.citus })
}
