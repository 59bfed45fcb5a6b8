//! A snapshot of what the catalog says about tenant isolation, read in a few queries through a
//! [`CatalogReader`]. The rules are pure functions over it.

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Integer, Text};
use tenant_core::admin::CatalogReader;

use super::{AuditError, USER_SCHEMAS};

/// The server.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Server {
    /// `server_version_num`, e.g. 150018.
    #[diesel(sql_type = Integer)]
    pub version_num: i32,
    /// `version()`.
    #[diesel(sql_type = Text)]
    pub version: String,
}

/// The application role's attributes.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct AppRole {
    /// Role name.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// SUPERUSER.
    #[diesel(sql_type = Bool)]
    pub superuser: bool,
    /// BYPASSRLS.
    #[diesel(sql_type = Bool)]
    pub bypassrls: bool,
    /// Superuser or BYPASSRLS roles it is a member of, comma-separated.
    #[diesel(sql_type = Text)]
    pub privileged_memberships: String,
}

/// A relation in a user schema, with what the application role may do with it.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Relation {
    /// Schema.
    #[diesel(sql_type = Text)]
    pub schema: String,
    /// Name.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// `r` table, `p` partitioned, `v` view, `m` materialized view, `f` foreign table.
    #[diesel(sql_type = Text)]
    pub kind: String,
    /// Owner.
    #[diesel(sql_type = Text)]
    pub owner: String,
    /// RLS enabled.
    #[diesel(sql_type = Bool)]
    pub rls: bool,
    /// RLS forced.
    #[diesel(sql_type = Bool)]
    pub forced: bool,
    /// Privileges the app role holds (directly or inherited), comma-separated.
    #[diesel(sql_type = Text)]
    pub app_privileges: String,
    /// Whether the app role owns it or is a member of its owner.
    #[diesel(sql_type = Bool)]
    pub app_owns: bool,
    /// `reloptions`, comma-separated (e.g. `security_invoker=true`).
    #[diesel(sql_type = Text)]
    pub options: String,
    /// Whether it has a column named like the conventional org column.
    #[diesel(sql_type = Bool)]
    pub has_org_column: bool,
    /// For a partition, the table at the root of its partition tree; empty otherwise.
    #[diesel(sql_type = Text)]
    pub partition_root: String,
    /// For a view, the relations its definition reads (`schema.name`), and the functions and
    /// operators it calls that are not built into the server (oid 16384 and up, wherever they
    /// live: a superuser can put a function into `pg_catalog`, and a cast runs one), as
    /// `function schema.name(args)` and `operator ...`, comma-separated, sorted; empty
    /// otherwise.
    #[diesel(sql_type = Text)]
    pub reads: String,
    /// For a view or materialized view, its definition as the server prints it; empty
    /// otherwise.
    #[diesel(sql_type = Text)]
    pub definition: String,
    /// Privileges granted to roles other than its owner, `role:PRIVILEGE` (`public:...` for
    /// PUBLIC), or `role:PRIVILEGE(column)` for a column-level grant, comma-separated and
    /// sorted: who else may do what with it.
    #[diesel(sql_type = Text)]
    pub grants: String,
}

impl Relation {
    /// Whether the app role holds `privilege` on it.
    pub fn app_has(&self, privilege: &str) -> bool {
        self.app_privileges.split(',').any(|p| p == privilege)
    }
}

/// A row-level-security policy.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Policy {
    /// The table.
    #[diesel(sql_type = Text)]
    pub table_name: String,
    /// Policy name.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// PERMISSIVE (else RESTRICTIVE).
    #[diesel(sql_type = Bool)]
    pub permissive: bool,
    /// `*` all, `r` select, `a` insert, `w` update, `d` delete.
    #[diesel(sql_type = Text)]
    pub cmd: String,
    /// Roles it applies to, comma-separated (`public` for all).
    #[diesel(sql_type = Text)]
    pub roles: String,
    /// USING, as the server prints it.
    #[diesel(sql_type = Text)]
    pub using_expr: String,
    /// WITH CHECK, as the server prints it.
    #[diesel(sql_type = Text)]
    pub check_expr: String,
    /// Non-built-in functions it calls, as `name:volatility` (`i`, `s`, `v`), comma-separated.
    #[diesel(sql_type = Text)]
    pub functions: String,
}

/// A UNIQUE or PRIMARY KEY constraint, a unique index, or a FOREIGN KEY.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Constraint {
    /// The table.
    #[diesel(sql_type = Text)]
    pub table_name: String,
    /// Constraint or index name.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// `u` unique, `p` primary key, `i` unique index, `f` foreign key.
    #[diesel(sql_type = Text)]
    pub kind: String,
    /// Its columns, comma-separated.
    #[diesel(sql_type = Text)]
    pub columns: String,
    /// The referenced table, for a foreign key.
    #[diesel(sql_type = Text)]
    pub ref_table: String,
    /// The referenced columns, for a foreign key.
    #[diesel(sql_type = Text)]
    pub ref_columns: String,
    /// The type of the first column.
    #[diesel(sql_type = Text)]
    pub first_type: String,
}

/// A column filled by a sequence (serial) or an identity.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct SequenceColumn {
    /// The table.
    #[diesel(sql_type = Text)]
    pub table_name: String,
    /// The column.
    #[diesel(sql_type = Text)]
    pub column_name: String,
    /// `identity` or `serial`.
    #[diesel(sql_type = Text)]
    pub kind: String,
}

/// A SECURITY DEFINER or LEAKPROOF function outside the system schemas.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Function {
    /// Schema.
    #[diesel(sql_type = Text)]
    pub schema: String,
    /// Name with argument types.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// SECURITY DEFINER.
    #[diesel(sql_type = Bool)]
    pub security_definer: bool,
    /// LEAKPROOF.
    #[diesel(sql_type = Bool)]
    pub leakproof: bool,
    /// Whether the app role may execute it.
    #[diesel(sql_type = Bool)]
    pub app_can_execute: bool,
    /// Whether the operator role may execute it.
    #[diesel(sql_type = Bool)]
    pub operator_can_execute: bool,
    /// `proconfig` (e.g. `search_path=pg_catalog`), comma-separated.
    #[diesel(sql_type = Text)]
    pub config: String,
    /// Owner.
    #[diesel(sql_type = Text)]
    pub owner: String,
    /// Its source (`prosrc`: the body of a SQL or plpgsql function, the symbol of a C one).
    #[diesel(sql_type = Text)]
    pub source: String,
}

/// Everything the rules look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// The server.
    pub server: Server,
    /// The application role, if it exists.
    pub app_role: Option<AppRole>,
    /// Relations in user schemas.
    pub relations: Vec<Relation>,
    /// Policies on them.
    pub policies: Vec<Policy>,
    /// Keys, unique indexes and foreign keys.
    pub constraints: Vec<Constraint>,
    /// Serial and identity columns.
    pub sequence_columns: Vec<SequenceColumn>,
    /// SECURITY DEFINER and LEAKPROOF functions.
    pub functions: Vec<Function>,
    /// Indexes whose operators or expression functions are not LEAKPROOF.
    pub leaky_indexes: Vec<LeakyIndex>,
    /// The key columns of every valid, non-partial index.
    pub index_keys: Vec<IndexKeys>,
    /// Triggers on tables of user schemas.
    pub triggers: Vec<Trigger>,
    /// What the application and operator roles can do besides their grants on tables.
    pub role_powers: Vec<super::powers::RolePower>,
    /// Rewrite rules on tables of user schemas.
    pub rewrite_rules: Vec<super::code::RewriteRule>,
    /// Functions the application role may call on a whole row (`t.f`).
    pub row_functions: Vec<super::row_functions::RowFunction>,
    /// Functions the application role may run that are declared cheaper than one operator.
    pub cheap_functions: Vec<super::function_cost::CheapFunction>,
}

/// A trigger on a table of a user schema (not an internal one, like a foreign key's).
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Trigger {
    /// The table, `schema.name`.
    #[diesel(sql_type = Text)]
    pub table_name: String,
    /// Trigger name.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// `tgenabled`: `O` fires (the default), `A` always, `R` only on a replica, `D` disabled.
    #[diesel(sql_type = Text)]
    pub enabled: String,
    /// When it fires: timing, level and events, e.g. `BEFORE ROW UPDATE,DELETE`.
    #[diesel(sql_type = Text)]
    pub timing: String,
    /// The function it runs, `schema.name`.
    #[diesel(sql_type = Text)]
    pub function: String,
    /// That function's source (`prosrc`).
    #[diesel(sql_type = Text)]
    pub function_source: String,
}

impl Trigger {
    /// Whether it fires BEFORE the `event` (`UPDATE`, `DELETE`, `TRUNCATE`) at `level` (`ROW`
    /// or `STATEMENT`) in a normal session.
    pub fn fires_before(&self, level: &str, event: &str) -> bool {
        let mut words = self.timing.split(' ');
        matches!(self.enabled.as_str(), "O" | "A")
            && words.next() == Some("BEFORE")
            && words.next() == Some(level)
            && words
                .next()
                .is_some_and(|events| events.split(',').any(|e| e == event))
    }
}

/// The key columns of an index, in order (`(expression)` for an expression column).
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct IndexKeys {
    /// The table.
    #[diesel(sql_type = Text)]
    pub table_name: String,
    /// The index.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// Its key columns, comma-separated.
    #[diesel(sql_type = Text)]
    pub columns: String,
}

/// An index that a condition under row-level security may not be able to use: an operator
/// of its operator class, or a function of its expression, is not LEAKPROOF.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct LeakyIndex {
    /// The table.
    #[diesel(sql_type = Text)]
    pub table_name: String,
    /// The index.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// `pg_get_indexdef`.
    #[diesel(sql_type = Text)]
    pub definition: String,
    /// The operators and functions that are not LEAKPROOF, comma-separated.
    #[diesel(sql_type = Text)]
    pub not_leakproof: String,
}

impl Catalog {
    /// A snapshot of nothing, for unit tests of the rules.
    #[cfg(test)]
    pub(crate) fn empty() -> Self {
        Self {
            server: Server {
                version_num: 150_000,
                version: "PostgreSQL 15".into(),
            },
            app_role: None,
            relations: Vec::new(),
            policies: Vec::new(),
            constraints: Vec::new(),
            sequence_columns: Vec::new(),
            functions: Vec::new(),
            leaky_indexes: Vec::new(),
            index_keys: Vec::new(),
            triggers: Vec::new(),
            role_powers: Vec::new(),
            rewrite_rules: Vec::new(),
            row_functions: Vec::new(),
            cheap_functions: Vec::new(),
        }
    }

    /// Reads the snapshot for application role `app_role` (and the powers of `operator_role`);
    /// `org_column` is the conventional org column name used to find unregistered tables that
    /// hold tenant data.
    pub fn read(
        reader: &mut CatalogReader,
        app_role: &str,
        operator_role: &str,
        org_column: &str,
    ) -> Result<Self, AuditError> {
        let server = reader
            .load::<Server>(
                "SELECT current_setting('server_version_num')::int AS version_num, version() AS version",
                &[],
            )?
            .into_iter()
            .next()
            .ok_or(AuditError::Empty("server version"))?;
        let app_role = reader
            .load::<AppRole>(
                "SELECT r.rolname::text AS name, r.rolsuper AS superuser, r.rolbypassrls AS bypassrls, \
                        coalesce((SELECT string_agg(m.rolname::text, ',' ORDER BY m.rolname) FROM pg_roles m \
                                  WHERE m.oid <> r.oid AND (m.rolsuper OR m.rolbypassrls) \
                                    AND pg_has_role(r.oid, m.oid, 'MEMBER')), '') AS privileged_memberships \
                 FROM pg_roles r WHERE r.rolname = $1",
                &[app_role],
            )?
            .into_iter()
            .next();
        let privileges = [
            "SELECT",
            "INSERT",
            "UPDATE",
            "DELETE",
            "TRUNCATE",
            "REFERENCES",
            "TRIGGER",
        ]
        .iter()
        .map(|p| {
            // A column-level grant gives the privilege on those columns, which is what the
            // rules ask about (has_table_privilege alone does not see it).
            let column = if ["SELECT", "INSERT", "UPDATE", "REFERENCES"].contains(p) {
                format!(" OR has_any_column_privilege($1::name, c.oid, '{p}')")
            } else {
                String::new()
            };
            format!("CASE WHEN has_table_privilege($1::name, c.oid, '{p}'){column} THEN '{p}' END")
        })
        .collect::<Vec<_>>()
        .join(", ");
        let relations = if app_role.is_some() {
            reader.load::<Relation>(
                &format!(
                    "SELECT n.nspname::text AS schema, c.relname::text AS name, c.relkind::text AS kind, \
                            pg_get_userbyid(c.relowner)::text AS owner, c.relrowsecurity AS rls, \
                            c.relforcerowsecurity AS forced, concat_ws(',', {privileges}) AS app_privileges, \
                            pg_has_role($1::name, c.relowner, 'MEMBER') AS app_owns, \
                            coalesce(array_to_string(c.reloptions, ','), '') AS options, \
                            EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = $2 \
                                    AND NOT a.attisdropped) AS has_org_column, \
                            coalesce((SELECT r.relname::text FROM pg_class r \
                                      WHERE c.relispartition AND r.oid = pg_partition_root(c.oid)), '') AS partition_root, \
                            coalesce((SELECT string_agg(DISTINCT dep.name, ',' ORDER BY dep.name) FROM ( \
                                        SELECT rn.nspname || '.' || rc.relname AS name \
                                        FROM pg_rewrite rw \
                                        JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid \
                                         AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> c.oid \
                                        JOIN pg_class rc ON rc.oid = d.refobjid \
                                        JOIN pg_namespace rn ON rn.oid = rc.relnamespace \
                                        WHERE rw.ev_class = c.oid \
                                        UNION ALL \
                                        SELECT 'function ' || d.refobjid::regprocedure::text \
                                        FROM pg_rewrite rw \
                                        JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid \
                                         AND d.refclassid = 'pg_proc'::regclass \
                                        JOIN pg_proc fp ON fp.oid = d.refobjid \
                                        WHERE rw.ev_class = c.oid AND fp.oid >= 16384 \
                                        UNION ALL \
                                        SELECT 'operator ' || d.refobjid::regoperator::text \
                                        FROM pg_rewrite rw \
                                        JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid \
                                         AND d.refclassid = 'pg_operator'::regclass \
                                        JOIN pg_operator op ON op.oid = d.refobjid \
                                        WHERE rw.ev_class = c.oid AND op.oid >= 16384 \
                                      ) dep), '') AS reads, \
                            CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) ELSE '' END AS definition, \
                            coalesce((SELECT string_agg(g.grant_text, ',' ORDER BY g.grant_text) FROM ( \
                                        SELECT CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_get_userbyid(a.grantee)::text END \
                                               || ':' || a.privilege_type AS grant_text \
                                        FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner \
                                        UNION ALL \
                                        SELECT CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_get_userbyid(a.grantee)::text END \
                                               || ':' || a.privilege_type || '(' || att.attname::text || ')' \
                                        FROM pg_attribute att, aclexplode(att.attacl) a \
                                        WHERE att.attrelid = c.oid AND att.attacl IS NOT NULL AND a.grantee <> c.relowner) g), '') AS grants \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {USER_SCHEMAS} \
                     ORDER BY 1, 2"
                ),
                &[app_role_name(app_role.as_ref()), org_column],
            )?
        } else {
            Vec::new()
        };
        let policies = reader.load::<Policy>(
            &format!(
                "SELECT CASE WHEN n.nspname = 'public' THEN c.relname::text ELSE n.nspname::text || '.' || c.relname::text END AS table_name, \
                        p.polname::text AS name, p.polpermissive AS permissive, \
                        p.polcmd::text AS cmd, \
                        CASE WHEN 0::oid = ANY (p.polroles) THEN 'public' ELSE \
                          (SELECT string_agg(r.rolname::text, ',' ORDER BY r.rolname) FROM pg_roles r \
                           WHERE r.oid = ANY (p.polroles)) END AS roles, \
                        coalesce(pg_get_expr(p.polqual, p.polrelid), '') AS using_expr, \
                        coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '') AS check_expr, \
                        coalesce((SELECT string_agg(f.proname::text || ':' || f.provolatile::text, ',' ORDER BY f.proname) \
                                  FROM pg_depend d JOIN pg_proc f ON f.oid = d.refobjid \
                                  WHERE d.classid = 'pg_policy'::regclass AND d.objid = p.oid \
                                    AND d.refclassid = 'pg_proc'::regclass), '') AS functions \
                 FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMAS} ORDER BY 1, 2"
            ),
            &[],
        )?;
        let constraints = reader.load::<Constraint>(
            &format!(
                "SELECT c.relname::text AS table_name, k.conname::text AS name, k.contype::text AS kind, \
                        (SELECT string_agg(a.attname::text, ',' ORDER BY array_position(k.conkey, a.attnum)) \
                         FROM pg_attribute a WHERE a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)) AS columns, \
                        coalesce(rc.relname::text, '') AS ref_table, \
                        coalesce((SELECT string_agg(a.attname::text, ',' ORDER BY array_position(k.confkey, a.attnum)) \
                                  FROM pg_attribute a WHERE a.attrelid = k.confrelid AND a.attnum = ANY (k.confkey)), '') AS ref_columns, \
                        coalesce((SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                                  WHERE a.attrelid = k.conrelid AND a.attnum = k.conkey[1]), '') AS first_type \
                 FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_class rc ON rc.oid = k.confrelid \
                 WHERE k.contype IN ('u', 'p', 'f') AND {USER_SCHEMAS} \
                 UNION ALL \
                 SELECT c.relname::text, ic.relname::text, 'i', \
                        (SELECT string_agg(a.attname::text, ',' ORDER BY array_position(i.indkey::int2[], a.attnum)) \
                         FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])), \
                        '', '', '' \
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE i.indisunique AND {USER_SCHEMAS} \
                   AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid) \
                 ORDER BY 1, 2"
            ),
            &[],
        )?;
        let sequence_columns = reader.load::<SequenceColumn>(
            &format!(
                "SELECT c.relname::text AS table_name, a.attname::text AS column_name, \
                        CASE WHEN a.attidentity <> '' THEN 'identity' ELSE 'serial' END AS kind \
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                 WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p') AND {USER_SCHEMAS} \
                   AND (a.attidentity <> '' OR pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%') \
                 ORDER BY 1, 2"
            ),
            &[],
        )?;
        let functions = if app_role.is_none() {
            Vec::new()
        } else {
            reader.load::<Function>(
                &format!(
                    "SELECT n.nspname::text AS schema, p.oid::regprocedure::text AS name, \
                        p.prosecdef AS security_definer, p.proleakproof AS leakproof, \
                        has_function_privilege($1::name, p.oid, 'EXECUTE') AS app_can_execute, \
                        coalesce((SELECT has_function_privilege(r.oid, p.oid, 'EXECUTE') \
                                  FROM pg_roles r WHERE r.rolname = $2), false) AS operator_can_execute, \
                        coalesce(array_to_string(p.proconfig, ','), '') AS config, \
                        pg_get_userbyid(p.proowner)::text AS owner, coalesce(p.prosrc, '') AS source \
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                 WHERE (p.prosecdef OR p.proleakproof) AND {USER_SCHEMAS} ORDER BY 1, 2"
                ),
                &[app_role_name(app_role.as_ref()), operator_role],
            )?
        };
        // Same-type operators for B-tree and hash (cross-type ones, date < timestamp, are not
        // what an index on the column is used for); every operator of the column's type for
        // GIN, GiST and the others; every function an expression index calls.
        let leaky_indexes = reader.load::<LeakyIndex>(
            &format!(
                "SELECT table_name, name, definition, not_leakproof FROM ( \
                   SELECT c.relname::text AS table_name, ic.relname::text AS name, pg_get_indexdef(i.indexrelid) AS definition, \
                          concat_ws(',', \
                            (SELECT string_agg(DISTINCT o.oprname::text || ' (' || p.proname::text || ')', ',') \
                               FROM unnest(i.indclass::oid[]) AS cls(oid) \
                               JOIN pg_opclass oc ON oc.oid = cls.oid JOIN pg_am am ON am.oid = oc.opcmethod \
                               JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amoppurpose = 's' \
                               JOIN pg_operator o ON o.oid = ao.amopopr JOIN pg_proc p ON p.oid = o.oprcode \
                              WHERE NOT p.proleakproof AND ao.amoplefttype = oc.opcintype \
                                AND (am.amname NOT IN ('btree', 'hash') OR ao.amoprighttype = oc.opcintype)), \
                            (SELECT string_agg(DISTINCT p.proname::text || '()', ',') \
                               FROM pg_proc p \
                              WHERE i.indexprs IS NOT NULL AND NOT p.proleakproof \
                                AND pg_get_expr(i.indexprs, i.indrelid) ~ ('(^|[^a-z0-9_])' || p.proname || '[(]') )) AS not_leakproof \
                   FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid \
                   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMAS}) x \
                 WHERE not_leakproof <> '' ORDER BY 1, 2"
            ),
            &[],
        )?;
        // A partial index does not serve a foreign key's check (its predicate may exclude the
        // rows), nor does one that is not valid (a CREATE INDEX CONCURRENTLY that failed).
        let index_keys = reader.load::<IndexKeys>(
            &format!(
                "SELECT c.relname::text AS table_name, ic.relname::text AS name, \
                        (SELECT string_agg(coalesce(a.attname::text, '(expression)'), ',' ORDER BY k.ord) \
                           FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                           LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                          WHERE k.ord <= i.indnkeyatts) AS columns \
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE i.indisvalid AND i.indpred IS NULL AND {USER_SCHEMAS} ORDER BY 1, 2"
            ),
            &[],
        )?;
        let triggers = reader.load::<Trigger>(
            &format!(
                "SELECT n.nspname::text || '.' || c.relname::text AS table_name, t.tgname::text AS name, \
                        t.tgenabled::text AS enabled, \
                        concat_ws(' ', \
                          CASE WHEN t.tgtype & 2 <> 0 THEN 'BEFORE' WHEN t.tgtype & 64 <> 0 THEN 'INSTEAD' ELSE 'AFTER' END, \
                          CASE WHEN t.tgtype & 1 <> 0 THEN 'ROW' ELSE 'STATEMENT' END, \
                          concat_ws(',', CASE WHEN t.tgtype & 4 <> 0 THEN 'INSERT' END, \
                                         CASE WHEN t.tgtype & 16 <> 0 THEN 'UPDATE' END, \
                                         CASE WHEN t.tgtype & 8 <> 0 THEN 'DELETE' END, \
                                         CASE WHEN t.tgtype & 32 <> 0 THEN 'TRUNCATE' END)) AS timing, \
                        pn.nspname::text || '.' || p.proname::text AS function, \
                        coalesce(p.prosrc, '') AS function_source \
                 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace \
                 WHERE NOT t.tgisinternal AND {USER_SCHEMAS} ORDER BY 1, 2"
            ),
            &[],
        )?;
        let role_powers =
            super::powers::read(reader, &[app_role_name(app_role.as_ref()), operator_role])?;
        let rewrite_rules = super::code::read(reader)?;
        let row_functions = super::row_functions::read(reader, app_role_name(app_role.as_ref()))?;
        let cheap_functions = super::function_cost::read(reader, app_role_name(app_role.as_ref()))?;
        Ok(Self {
            server,
            app_role,
            relations,
            policies,
            constraints,
            sequence_columns,
            functions,
            leaky_indexes,
            index_keys,
            triggers,
            role_powers,
            rewrite_rules,
            row_functions,
            cheap_functions,
        })
    }
}

fn app_role_name(role: Option<&AppRole>) -> &str {
    role.map_or("", |r| r.name.as_str())
}
