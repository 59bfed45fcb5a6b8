//! Break-glass access for people: the SQL of the operator role, the append-only access log,
//! and the functions that are the only way an operator reaches an org's rows.
//!
//! - `tenant_operator` (NOLOGIN; people's login roles are granted it) has DML privileges on
//!   tenant tables, but only two permissive policies let rows through, each keyed on
//!   `tenant_audit.granted_org(write)`: the org of a grant this backend *entered in this
//!   transaction*, still inside its window. A plain login therefore sees zero rows, and setting
//!   the org by hand gains nothing (the restrictive org policy and the grant must agree).
//! - `tenant_audit.request_access(org, ticket, reason, minutes, write)` validates the input
//!   (a reason of 10 to 2000 characters, a ticket of 100 at most matching the pattern, a
//!   window of 1 to the maximum minutes, an org with rows) and appends `granted` or `refused`
//!   to the log; it returns the grant, or the refusal without raising, so the refusal is committed
//!   with its log entry. Every outcome also goes to the server log (`RAISE LOG`), which a
//!   rollback cannot take back.
//! - `tenant_audit.enter_access(grant)` (in the transaction that reads, as its first write)
//!   checks that the grant is this login's and unexpired, appends `entered` with the backend
//!   and transaction id (and writes it to the server log, which a rollback does not take
//!   back), and sets the org for this transaction. Being the first write, it only ever enters
//!   a committed grant: there is no access without a committed `granted` entry.
//! - `tenant_audit.access_log` is owned by the table owner, readable by `tenant_auditor`,
//!   writable by no one but the functions; triggers refuse UPDATE, DELETE and TRUNCATE even
//!   to its owner.
//!
//! The functions are SECURITY DEFINER, owned by the table owner, with a fixed `search_path`,
//! and executable by the operator role only (never by the application role).

use std::fmt::Write as _;

use crate::operator_citus as citus;
use crate::options::{PolicyForm, RlsOptions, Target};
use crate::sql::{create_nologin_role, ident, literal, strip_rls_bypass};

/// The shared objects: role, schema, log, functions (idempotent; never dropped by `down`: the
/// log is evidence).
pub(crate) fn shared(out: &mut String, o: &RlsOptions, target: Target) {
    let owner = ident(&o.owner_role);
    let operator = ident(&o.operator_role);
    let auditor = ident(&o.auditor_role);
    let app = ident(&o.app_role);
    let schema = ident(&o.audit_schema);
    let setting = literal(&o.setting);
    let _ = write!(
        out,
        "\n-- Break-glass access for people (tenant-schema operator.rs): no standing access; an\n\
         -- org is entered with a ticket, a reason and a time window, through functions that\n\
         -- log every request in an append-only table.\n\
         DO $$\n\
         BEGIN\n\
         {create_operator}\
         {create_auditor}\
         {operator_no_bypass}\
         END\n\
         $$;\n\
         GRANT USAGE ON SCHEMA public TO {operator};\n\
         CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {owner};\n\
         REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;\n\
         GRANT USAGE ON SCHEMA {schema} TO {operator}, {auditor};\n\
         CREATE TABLE IF NOT EXISTS {schema}.access_log (\n\
         \x20   id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n\
         \x20   at timestamptz NOT NULL DEFAULT clock_timestamp(),\n\
         \x20   event text NOT NULL CHECK (event IN ('granted', 'refused', 'entered', 'closed', 'purged')),\n\
         \x20   operator text NOT NULL DEFAULT session_user,\n\
         \x20   target_org uuid,\n\
         \x20   ticket text,\n\
         \x20   reason text,\n\
         \x20   mode text CHECK (mode IN ('read', 'write')),\n\
         \x20   expires_at timestamptz,\n\
         \x20   grant_id bigint,\n\
         \x20   backend_pid integer NOT NULL DEFAULT pg_backend_pid(),\n\
         \x20   xact xid8,\n\
         \x20   detail text\n\
         );\n\
         ALTER TABLE {schema}.access_log OWNER TO {owner};\n\
         CREATE INDEX IF NOT EXISTS access_log_session_idx ON {schema}.access_log (backend_pid, xact);\n\
         CREATE INDEX IF NOT EXISTS access_log_org_idx ON {schema}.access_log (target_org, at);\n\
         REVOKE ALL ON {schema}.access_log FROM PUBLIC, {app}, {operator};\n\
         GRANT SELECT ON {schema}.access_log TO {auditor};\n\
         \n\
         CREATE OR REPLACE FUNCTION {schema}.refuse_change() RETURNS trigger\n\
         LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$\n\
         BEGIN\n\
         \x20 RAISE EXCEPTION 'the access log is append-only: % is refused', TG_OP USING ERRCODE = '42501';\n\
         END\n\
         $fn$;\n\
         ALTER FUNCTION {schema}.refuse_change() OWNER TO {owner};\n\
         DROP TRIGGER IF EXISTS access_log_append_only ON {schema}.access_log;\n\
         CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON {schema}.access_log\n\
         \x20   FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_change();\n\
         DROP TRIGGER IF EXISTS access_log_no_truncate ON {schema}.access_log;\n\
         CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON {schema}.access_log\n\
         \x20   FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse_change();\n\
         \n\
         CREATE OR REPLACE FUNCTION {schema}.request_access(\n\
         \x20   p_org uuid, p_ticket text, p_reason text, p_minutes integer, p_write boolean,\n\
         \x20   OUT grant_id bigint, OUT refusal text)\n\
         LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$\n\
         DECLARE\n\
         \x20 v_mode text := CASE WHEN p_write THEN 'write' ELSE 'read' END;\n\
         \x20 v_previous text := current_setting({setting}, true);\n\
         \x20 v_rel regclass;\n\
         \x20 v_found boolean := false;\n\
         BEGIN\n\
         \x20 IF p_org IS NULL THEN\n\
         \x20   refusal := 'no org given';\n\
         \x20 ELSIF btrim(coalesce(p_reason, '')) = '' THEN\n\
         \x20   refusal := 'the reason is empty: say why this access is needed';\n\
         \x20 ELSIF length(btrim(p_reason)) < 10 THEN\n\
         \x20   refusal := 'the reason is too short: write at least 10 characters saying why';\n\
         \x20 ELSIF length(p_reason) > 2000 OR length(p_ticket) > 100 THEN\n\
         \x20   refusal := 'the reason (2000 characters at most) or the ticket (100) is too long: put the details in the ticket';\n\
         \x20 ELSIF coalesce(p_ticket, '') !~ {pattern} THEN\n\
         \x20   refusal := format('malformed ticket %L: expected a ticket id like OPS-1234 (pattern %s)', left(coalesce(p_ticket, ''), 40), {pattern});\n\
         \x20 ELSIF coalesce(p_minutes, 0) < 1 THEN\n\
         \x20   refusal := 'the access window has expired or is empty: ask for 1 to {max} minutes from now';\n\
         \x20 ELSIF p_minutes > {max} THEN\n\
         \x20   refusal := 'the access window is longer than {max} minutes: ask for less, and again if needed';\n\
         \x20 END IF;\n\
         {org_check}\
         \x20 IF refusal IS NOT NULL THEN\n\
         \x20   INSERT INTO {schema}.access_log (event, target_org, ticket, reason, mode, detail)\n\
         \x20     VALUES ('refused', p_org, left(p_ticket, 100), left(p_reason, 2000), v_mode, refusal);\n\
         \x20   RAISE LOG 'tenant access refused: operator %, org %, ticket %: %', session_user, p_org, left(p_ticket, 100), refusal;\n\
         \x20   RETURN;\n\
         \x20 END IF;\n\
         \x20 INSERT INTO {schema}.access_log (event, target_org, ticket, reason, mode, expires_at)\n\
         \x20   VALUES ('granted', p_org, p_ticket, btrim(p_reason), v_mode, clock_timestamp() + make_interval(mins => p_minutes))\n\
         \x20   RETURNING id INTO grant_id;\n\
         \x20 RAISE LOG 'tenant access granted: grant %, operator %, org %, ticket %, % for % minutes', grant_id, session_user, p_org, p_ticket, v_mode, p_minutes;\n\
         END\n\
         $fn$;\n\
         \n\
         CREATE OR REPLACE FUNCTION {schema}.enter_access(p_grant bigint, OUT org uuid, OUT mode text, OUT expires_at timestamptz, OUT refusal text)\n\
         LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$\n\
         DECLARE\n\
         \x20 g {schema}.access_log%ROWTYPE;\n\
         {mint_declarations}\
         BEGIN\n\
         \x20 -- The first write of its transaction: a grant written in this transaction (in a\n\
         \x20 -- savepoint, say) would be entered, then rolled back with its entry, while what\n\
         \x20 -- was read stays read. A grant seen with no write before is a committed one.\n\
         \x20 IF pg_current_xact_id_if_assigned() IS NOT NULL THEN\n\
         \x20   RAISE EXCEPTION 'enter_access must be the first write of its transaction: commit the request, then enter the grant in a transaction of its own' USING ERRCODE = '25001';\n\
         \x20 END IF;\n\
         \x20 SELECT * INTO g FROM {schema}.access_log l WHERE l.id = p_grant AND l.event = 'granted' AND l.operator = session_user::text;\n\
         \x20 IF NOT FOUND THEN\n\
         \x20   refusal := format('no grant %s for %s: request access first', p_grant, session_user);\n\
         \x20 ELSIF g.expires_at <= clock_timestamp() THEN\n\
         \x20   refusal := format('grant %s expired at %s: request access again', p_grant, g.expires_at);\n\
         \x20 END IF;\n\
         \x20 IF refusal IS NOT NULL THEN\n\
         \x20   INSERT INTO {schema}.access_log (event, target_org, ticket, grant_id, detail)\n\
         \x20     VALUES ('refused', g.target_org, g.ticket, p_grant, refusal);\n\
         \x20   RAISE LOG 'tenant access refused: operator %: %', session_user, refusal;\n\
         \x20   RETURN;\n\
         \x20 END IF;\n\
         \x20 INSERT INTO {schema}.access_log (event, target_org, ticket, mode, expires_at, grant_id, xact)\n\
         \x20   VALUES ('entered', g.target_org, g.ticket, g.mode, g.expires_at, g.id, pg_current_xact_id());\n\
         \x20 -- The server log keeps the entry when the transaction is rolled back.\n\
         \x20 RAISE LOG 'tenant access entered: grant %, operator %, org %, %, until %, backend %, transaction %', g.id, session_user, g.target_org, g.mode, g.expires_at, pg_backend_pid(), pg_current_xact_id();\n\
         \x20 PERFORM set_config({setting}, g.target_org::text, true);\n\
         \x20 -- With the signed context, the policies want a token: sign one for this backend.\n\
         \x20 IF to_regprocedure('tenant_context.sign_for_this_backend(uuid, timestamptz)') IS NOT NULL THEN\n\
         \x20   EXECUTE 'SELECT set_config(''tenant.org_token'', tenant_context.sign_for_this_backend($1, $2), true)'\n\
         \x20     USING g.target_org, g.expires_at;\n\
         \x20 END IF;\n\
         {mint_token}\
         \x20 org := g.target_org;\n\
         \x20 mode := g.mode;\n\
         \x20 expires_at := g.expires_at;\n\
         END\n\
         $fn$;\n\
         \n\
         CREATE OR REPLACE FUNCTION {schema}.record_event(p_event text, p_detail text) RETURNS void\n\
         LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$\n\
         DECLARE\n\
         \x20 e {schema}.access_log%ROWTYPE;\n\
         BEGIN\n\
         \x20 IF p_event NOT IN ('closed', 'purged') THEN\n\
         \x20   RAISE EXCEPTION 'only closed and purged can be recorded' USING ERRCODE = '22023';\n\
         \x20 END IF;\n\
         \x20 SELECT * INTO e FROM {schema}.access_log l\n\
         \x20  WHERE l.event = 'entered' AND l.backend_pid = pg_backend_pid() AND l.xact = pg_current_xact_id_if_assigned()\n\
         \x20  ORDER BY l.id DESC LIMIT 1;\n\
         \x20 IF NOT FOUND THEN\n\
         \x20   RAISE EXCEPTION 'no access entered in this transaction' USING ERRCODE = '42501';\n\
         \x20 END IF;\n\
         \x20 INSERT INTO {schema}.access_log (event, target_org, ticket, mode, grant_id, xact, detail)\n\
         \x20   VALUES (p_event, e.target_org, e.ticket, e.mode, e.grant_id, e.xact, left(p_detail, 10000));\n\
         END\n\
         $fn$;\n\
         \n",
        create_operator = create_nologin_role(&o.operator_role),
        create_auditor = create_nologin_role(&o.auditor_role),
        operator_no_bypass = strip_rls_bypass(&o.operator_role),
        pattern = literal(&o.ticket_pattern),
        max = o.max_window_minutes,
        org_check = match target {
            Target::Postgres => org_check(o),
            Target::Citus => citus::ORG_CHECK.to_owned(),
        },
        mint_declarations = match target {
            Target::Postgres => "",
            Target::Citus => citus::MINT_DECLARATIONS,
        },
        mint_token = match target {
            Target::Postgres => String::new(),
            Target::Citus => citus::mint_token(o),
        },
    );
    match target {
        Target::Postgres => granted_org(out, o),
        Target::Citus => {
            citus::granted_org(out, o);
            citus::key_table(out, o);
        }
    }
    crate::sql::own_functions(
        out,
        &schema,
        &owner,
        &[
            "refuse_change()",
            "request_access(uuid, text, text, integer, boolean)",
            "enter_access(bigint)",
            "record_event(text, text)",
            "granted_org(boolean)",
        ],
    );
    for f in [
        "request_access(uuid, text, text, integer, boolean)",
        "enter_access(bigint)",
        "record_event(text, text)",
        "granted_org(boolean)",
    ] {
        let _ = writeln!(out, "GRANT EXECUTE ON FUNCTION {schema}.{f} TO {operator};");
    }
}

/// `request_access()`'s check that the org has rows: each tenant table read as that org.
fn org_check(o: &RlsOptions) -> String {
    format!(
        "\
         \x20 IF refusal IS NULL THEN\n\
         \x20   -- An org is known when it has a row in a tenant table (read as that org).\n\
         \x20   PERFORM set_config({setting}, p_org::text, true);\n\
         \x20   IF to_regprocedure('tenant_context.sign_for_this_backend(uuid, timestamptz)') IS NOT NULL THEN\n\
         \x20     EXECUTE 'SELECT set_config(''tenant.org_token'', tenant_context.sign_for_this_backend($1, clock_timestamp() + interval ''1 minute''), true)'\n\
         \x20       USING p_org;\n\
         \x20   END IF;\n\
         \x20   FOR v_rel IN SELECT DISTINCT polrelid::regclass FROM pg_policy WHERE polname = {tenant_policy} LOOP\n\
         \x20     EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', v_rel) INTO v_found;\n\
         \x20     EXIT WHEN v_found;\n\
         \x20   END LOOP;\n\
         \x20   PERFORM set_config({setting}, coalesce(v_previous, ''), true);\n\
         \x20   PERFORM set_config('tenant.org_token', '', true);\n\
         \x20   IF NOT v_found THEN\n\
         \x20     refusal := format('unknown org %s: it has no rows in any tenant table', p_org);\n\
         \x20   END IF;\n\
         \x20 END IF;\n",
        setting = literal(&o.setting),
        tenant_policy = literal(&o.policy),
    )
}

/// `granted_org(write)`: the org of the grant this backend entered in this transaction.
fn granted_org(out: &mut String, o: &RlsOptions) {
    let _ = write!(
        out,
        "CREATE OR REPLACE FUNCTION {schema}.granted_org(p_write boolean) RETURNS uuid\n\
         LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$\n\
         \x20 SELECT e.target_org FROM {schema}.access_log e\n\
         \x20  WHERE e.event = 'entered' AND e.backend_pid = pg_backend_pid()\n\
         \x20    AND e.xact = pg_current_xact_id_if_assigned() AND e.operator = session_user::text\n\
         \x20    AND e.expires_at > clock_timestamp() AND (NOT p_write OR e.mode = 'write')\n\
         \x20  ORDER BY e.id DESC LIMIT 1\n\
         $fn$;\n",
        schema = ident(&o.audit_schema),
    );
}

/// The operator's way into one tenant table: DML privileges, and policies that let through
/// only the rows of an entered grant's org (reads; writes with a write grant). The owner's
/// lookup policy lets `request_access` see whether an org has rows.
pub(crate) fn table_up(out: &mut String, table: &str, org_column: &str, o: &RlsOptions) {
    let table = ident(table);
    let col = ident(org_column);
    let schema = ident(&o.audit_schema);
    let operator = ident(&o.operator_role);
    let (read, write, lookup) = (
        ident(&o.operator_read_policy),
        ident(&o.operator_write_policy),
        ident(&o.owner_lookup_policy),
    );
    // Once per statement in a sub-select; inline where the policy form says so (Citus).
    let granted = |write: bool| match o.policy_form {
        PolicyForm::SubSelect => format!("(SELECT {schema}.granted_org({write}))"),
        PolicyForm::Inline => format!("{schema}.granted_org({write})"),
    };
    let (granted_read, granted_write) = (granted(false), granted(true));
    let _ = write!(
        out,
        "DROP POLICY IF EXISTS {read} ON {table};\n\
         CREATE POLICY {read} ON {table} AS PERMISSIVE FOR SELECT TO {operator}\n\
         \x20   USING ({col} = {granted_read});\n\
         DROP POLICY IF EXISTS {write} ON {table};\n\
         CREATE POLICY {write} ON {table} AS PERMISSIVE FOR ALL TO {operator}\n\
         \x20   USING ({col} = {granted_write})\n\
         \x20   WITH CHECK ({col} = {granted_write});\n\
         DROP POLICY IF EXISTS {lookup} ON {table};\n\
         CREATE POLICY {lookup} ON {table} AS PERMISSIVE FOR SELECT TO {owner} USING (true);\n\
         REVOKE ALL ON {table} FROM {operator};\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {operator};\n",
        owner = ident(&o.owner_role),
    );
}

/// Undoes [`table_up`].
pub(crate) fn table_down(out: &mut String, table: &str, o: &RlsOptions) {
    let table = ident(table);
    let _ = write!(
        out,
        "REVOKE SELECT, INSERT, UPDATE, DELETE ON {table} FROM {operator};\n\
         DROP POLICY IF EXISTS {lookup} ON {table};\n\
         DROP POLICY IF EXISTS {write} ON {table};\n\
         DROP POLICY IF EXISTS {read} ON {table};\n",
        operator = ident(&o.operator_role),
        read = ident(&o.operator_read_policy),
        write = ident(&o.operator_write_policy),
        lookup = ident(&o.owner_lookup_policy),
    );
}

/// The operator may read global tables.
pub(crate) fn global_up(out: &mut String, table: &str, o: &RlsOptions) {
    let _ = writeln!(
        out,
        "GRANT SELECT ON {} TO {};",
        ident(table),
        ident(&o.operator_role)
    );
}
