//! Break-glass access on a Citus cluster: what differs from the PostgreSQL target's
//! [`crate::operator`], and why (measured on a coordinator and two workers, Citus 13.2).
//!
//! On PostgreSQL, `granted_org()` finds the `entered` row this backend wrote in this
//! transaction. On Citus the operator's query runs on a worker, on a connection of its own (a
//! backend and a transaction of its own), where the coordinator's log does not exist; the
//! log as a reference table would not help either: the `entered` row, written inside the
//! SECURITY DEFINER `enter_access()`, reaches the workers on the *owner's* connections,
//! whose uncommitted rows the operator's connections do not see (and the owner, `NOLOGIN`,
//! may not connect to the workers at all). What the worker does share with the coordinator is
//! the distributed transaction id (`get_current_transaction_id()`: initiator node, number and
//! stamp, the same on every node) and the `SET LOCAL`s of the transaction.
//!
//! So `enter_access()` logs `entered` on the coordinator as on PostgreSQL, then mints a token
//! for this distributed transaction and this login,
//! `org:mode:expiry:HMAC-SHA256(key, org|mode|expiry|initiator|number|stamp|session_user)`,
//! and sets it with `SET LOCAL tenant.operator_token` (run inside the function, so Citus sends
//! that statement alone to every worker connection of the transaction). `granted_org()` on
//! any node returns the token's org only when its MAC verifies for the node's own view of the
//! transaction and login and its window is open; anything else gives no org, and no row.
//!
//! - The key is 32 random bytes (`gen_random_uuid()`, PostgreSQL's strong random source)
//!   in `tenant_audit.operator_key`, a reference table (a copy on every node) only the owner
//!   may read; `granted_org()` reads the node's own copy by its shard name (a query on the
//!   table itself from a query a worker runs for the coordinator is a nested distributed
//!   query, which Citus refuses).
//! - Reading that copy on the coordinator is also what gives the transaction its distributed
//!   id (Citus assigns it at the first statement it executes; local execution counts).
//! - A token read back (`current_setting`) is useless in another transaction block: another
//!   transaction number, which on the coordinator no role of the service may choose
//!   (`assign_distributed_transaction_id` is revoked, `citus_powers.rs`) and on a worker
//!   connection Citus assigned at its start. In autocommit, though, a worker connection has
//!   no id yet, and a sub-query pushed down to it can assign an old one (Citus calls the
//!   function there as the session's role, so it stays executable): a kept token then reads
//!   its own grant's org, in its mode and window, again without a new `entered` entry
//!   (docs/scale-out.md, "What remains"; tested). A direct connection to a worker can do the
//!   same, which is why the workers accept people's logins from the coordinator only.
//! - `request_access()` cannot check that the org has rows: the owner's read of a distributed
//!   table would connect to the workers as the owner, which may not log in. The client
//!   (`tenant_core::operator`) checks it right after entering, and records an unknown org.

use std::fmt::Write as _;

use crate::options::RlsOptions;
use crate::sql::{ident, literal};

/// The setting that carries the operator's token to the workers.
pub(crate) const TOKEN_SETTING: &str = "tenant.operator_token";

/// The key table: created once, a reference table, read by its owner only, its key drawn once.
pub(crate) fn key_table(out: &mut String, o: &RlsOptions) {
    let schema = ident(&o.audit_schema);
    let table = format!("{schema}.operator_key");
    let _ = write!(
        out,
        "\n-- Citus: the key of the operator's tokens (operator_citus.rs), a copy on every node, read\n\
         -- by the owner's functions only; drawn once, from PostgreSQL's strong random source.\n\
         CREATE TABLE IF NOT EXISTS {table} (\n\
         \x20   id integer PRIMARY KEY CHECK (id = 1),\n\
         \x20   ipad bytea NOT NULL,\n\
         \x20   opad bytea NOT NULL\n\
         );\n\
         ALTER TABLE {table} OWNER TO {owner};\n\
         REVOKE ALL ON {table} FROM PUBLIC, {app}, {operator}, {auditor};\n\
         DO $$\n\
         BEGIN\n\
         \x20 IF NOT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = {lit}::regclass) THEN\n\
         \x20   PERFORM create_reference_table({lit});\n\
         \x20 END IF;\n\
         END\n\
         $$;\n\
         DO $$\n\
         DECLARE\n\
         \x20 k bytea := sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8'));\n\
         \x20 i bytea := '\\x'::bytea;\n\
         \x20 o bytea := '\\x'::bytea;\n\
         BEGIN\n\
         \x20 IF EXISTS (SELECT FROM {table}) THEN\n\
         \x20   RETURN;\n\
         \x20 END IF;\n\
         {pads}\
         \x20 INSERT INTO {table} (id, ipad, opad) VALUES (1, i, o);\n\
         END\n\
         $$;\n",
        pads = crate::sql::HMAC_PADS,
        owner = ident(&o.owner_role),
        app = ident(&o.app_role),
        operator = ident(&o.operator_role),
        auditor = ident(&o.auditor_role),
        lit = literal(&table),
    );
}

/// What `request_access()` does on Citus instead of reading every tenant table for the org.
pub(crate) const ORG_CHECK: &str = "\x20 -- Citus: the owner reads no distributed table here (it would connect to the workers as\n\
     \x20 -- the owner, which may not log in); the client checks the org's rows after entering.\n";

/// The MAC of a token whose claims (`org:mode:expiry`) the SQL expression `claims` gives: bound
/// to this node's view of the distributed transaction and to the login. One text for the
/// minting in `enter_access()` and the check in `granted_org()`, which must agree byte for
/// byte (both have `v_key` with the pads and `v_xact` from `get_current_transaction_id()`).
fn token_mac(claims: &str) -> String {
    format!(
        "encode(sha256(v_key.opad || sha256(v_key.ipad || convert_to(concat_ws('|', {claims}, \
         v_xact.initiator_node_identifier, v_xact.transaction_number, \
         extract(epoch FROM v_xact.transaction_stamp), session_user), 'UTF8'))), 'hex')"
    )
}

/// The statements of `enter_access()` (after the `entered` row) that mint this transaction's
/// token and send it to the workers.
pub(crate) fn mint_token(o: &RlsOptions) -> String {
    format!(
        "\x20 -- Citus: a token for this distributed transaction and login (operator_citus.rs). Reading\n\
         \x20 -- the key's local copy gives the transaction its distributed id.\n\
         \x20 SELECT k.ipad, k.opad INTO v_key FROM {schema}.operator_key k WHERE k.id = 1;\n\
         \x20 v_xact := get_current_transaction_id();\n\
         \x20 IF v_key.ipad IS NULL OR coalesce(v_xact.transaction_number, 0) = 0 THEN\n\
         \x20   RAISE EXCEPTION 'break-glass access on Citus needs the operator key and a distributed transaction: apply the generated Citus migration, with the coordinator in the metadata (citus_set_coordinator_host)' USING ERRCODE = '55000';\n\
         \x20 END IF;\n\
         \x20 v_token := concat_ws(':', g.target_org, g.mode, floor(extract(epoch FROM g.expires_at))::bigint);\n\
         \x20 v_token := v_token || ':' || {mac};\n\
         \x20 EXECUTE format('SET LOCAL {setting} = %L', v_token);\n\
         \x20 RAISE LOG 'tenant access entered on Citus: grant %, distributed transaction %/%/%', g.id, v_xact.initiator_node_identifier, v_xact.transaction_number, v_xact.transaction_stamp;\n",
        schema = ident(&o.audit_schema),
        setting = TOKEN_SETTING,
        mac = token_mac("v_token"),
    )
}

/// The declarations [`mint_token`] needs in `enter_access()`.
pub(crate) const MINT_DECLARATIONS: &str =
    "\x20 v_key record;\n\x20 v_xact record;\n\x20 v_token text;\n";

/// `granted_org(write)` on Citus: the org of this transaction's token, when its MAC verifies
/// on this node and its window is open; else none.
pub(crate) fn granted_org(out: &mut String, o: &RlsOptions) {
    let schema = ident(&o.audit_schema);
    let _ = write!(
        out,
        "CREATE OR REPLACE FUNCTION {schema}.granted_org(p_write boolean) RETURNS uuid\n\
         LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$\n\
         DECLARE\n\
         \x20 v_token text := current_setting('{setting}', true);\n\
         \x20 v_part text[];\n\
         \x20 v_xact record;\n\
         \x20 v_key record;\n\
         \x20 v_copy text;\n\
         BEGIN\n\
         \x20 -- Any SQL can set the token: nothing of it counts before its MAC verifies.\n\
         \x20 IF coalesce(v_token, '') !~ '^[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}:(read|write):[0-9]{{1,12}}:[0-9a-f]{{64}}$' THEN\n\
         \x20   RETURN NULL;\n\
         \x20 END IF;\n\
         \x20 v_part := string_to_array(v_token, ':');\n\
         \x20 IF (p_write AND v_part[2] <> 'write') OR to_timestamp(v_part[3]::bigint) <= clock_timestamp() THEN\n\
         \x20   RETURN NULL;\n\
         \x20 END IF;\n\
         \x20 v_xact := get_current_transaction_id();\n\
         \x20 IF coalesce(v_xact.transaction_number, 0) = 0 THEN\n\
         \x20   RETURN NULL;\n\
         \x20 END IF;\n\
         \x20 -- This node's copy of the key: a query on the reference table itself, from a query a\n\
         \x20 -- worker runs for the coordinator, would be a nested distributed query.\n\
         \x20 SELECT shard_name(s.logicalrelid, s.shardid) INTO v_copy FROM pg_dist_shard s\n\
         \x20  WHERE s.logicalrelid = to_regclass({key_table});\n\
         \x20 IF v_copy IS NULL OR to_regclass(v_copy) IS NULL THEN\n\
         \x20   RETURN NULL;\n\
         \x20 END IF;\n\
         \x20 EXECUTE format('SELECT ipad, opad FROM %s WHERE id = 1', v_copy) INTO v_key;\n\
         \x20 IF v_key.ipad IS NOT NULL\n\
         \x20    AND {mac} = v_part[4] THEN\n\
         \x20   RETURN v_part[1]::uuid;\n\
         \x20 END IF;\n\
         \x20 RETURN NULL;\n\
         END\n\
         $fn$;\n",
        setting = TOKEN_SETTING,
        key_table = literal(&format!("{schema}.operator_key")),
        mac = token_mac("v_part[1] || ':' || v_part[2] || ':' || v_part[3]"),
    );
}
