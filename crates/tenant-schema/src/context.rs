//! The signed org context (docs/threat-model.md #5 closed): in this mode the policies do not read the
//! org from a setting any SQL could change, but from a token the service signs with a key the
//! application role cannot read.
//!
//! Token (the setting `tenant.org_token`, transaction-local): `v1.<org>.<expiry>.<pid>.<kid>.<mac>`
//! where `<expiry>` is a Unix time in seconds, `<pid>` the backend the token is for (a token
//! that got out is worthless in another session), or `0` for any backend (behind a transaction
//! pooler the client cannot know the server process; tenant-core keeps every token out of the
//! statement text `pg_stat_activity` shows, bound or not), `<kid>` the key id, and `<mac>` the hex HMAC-SHA256, under that key, of everything before it. HMAC is
//! computed with PostgreSQL's built-in `sha256()` over the key's precomputed inner and outer
//! pads (RFC 2104), so no extension is needed.
//!
//! The view `tenant_context.current_org` (owned by the key table's owner, so it reads the keys
//! with the owner's rights like a SECURITY DEFINER function; `security_barrier`; its names bound
//! when it is created, so no `search_path` applies when it runs), read once per statement by the
//! policies in a sub-select, yields the org of a valid token and NULL for anything else: no
//! token, malformed, expired, for another backend, an unknown or retired key, a wrong MAC.
//! `tenant_context.verified_org()` (SECURITY DEFINER, STABLE, fixed `search_path`) returns the
//! same for what cannot hold a sub-select, like a column default. The check sits in a view
//! rather than in that function because a function call costs a plpgsql frame and an SPI query
//! on every statement: about twice the view's cost (the bench's R8). Keys live in
//! `tenant_context.keys`, which only the owner reads; `add_key` and `retire_key` manage them
//! (two keys valid at once during a rotation).

use std::fmt::Write as _;

pub use crate::options::ContextMode;
use crate::options::RlsOptions;
use crate::sql::{ident, literal};

/// The schema of the signed context's key table and functions.
pub const CONTEXT_SCHEMA: &str = "tenant_context";
/// The setting holding the token (tenant-core sets it; one name for both sides).
pub use tenant_core::context::TOKEN_SETTING;

/// The view that verifies the session's token and yields its org (one row, `org`, NULL for
/// anything but a valid token; no row without a key for the token's key id).
pub const ORG_VIEW: &str = "current_org";

/// The org the policies compare with, read once per statement.
pub(crate) fn verified_org_expression() -> String {
    format!("(SELECT org FROM {CONTEXT_SCHEMA}.{ORG_VIEW})")
}

/// Whether a policy expression, as the server prints it, compares with the verified org (the
/// server writes the sub-select as `( SELECT current_org.org FROM tenant_context.current_org)`).
pub(crate) fn reads_verified_org(expr: &str) -> bool {
    expr.contains(&format!("FROM {CONTEXT_SCHEMA}.{ORG_VIEW})"))
}

/// The body of `verified_org()` as the server stores it (`prosrc`), for the audit to know the
/// generated function from a changed one.
pub(crate) fn verified_org_body() -> String {
    format!(
        "\nDECLARE\n  v_org uuid;\nBEGIN\n  SELECT org INTO v_org FROM {CONTEXT_SCHEMA}.{ORG_VIEW};\n  RETURN v_org;\nEND\n"
    )
}

/// The query of the view `tenant_context.current_org`, written as PostgreSQL 15 prints it
/// back (`pg_get_viewdef`: every cast and parenthesis spelled out; 16 and later:
/// [`printed_view_query`]), so that the audit can tell the generated view from a changed one
/// by its text (a test creates it and compares).
pub(crate) fn view_query() -> String {
    let s = CONTEXT_SCHEMA;
    let t = format!("current_setting({}::text, true)", literal(TOKEN_SETTING));
    let part = |n: u8| format!("split_part({t}, '.'::text, {n})");
    format!(
        " WITH k AS (\n\
         \x20        SELECT keys.kid,\n\
         \x20           keys.ipad,\n\
         \x20           keys.opad,\n\
         \x20           keys.retire_after\n\
         \x20          FROM {s}.keys\n\
         \x20       )\n\
         \x20SELECT\n\
         \x20       CASE\n\
         \x20           WHEN ((({p3})::double precision > date_part('epoch'::text, clock_timestamp())) AND ({p4} = ANY (ARRAY['0'::text, (pg_backend_pid())::text]))) THEN ({p2})::uuid\n\
         \x20           ELSE NULL::uuid\n\
         \x20       END AS org\n\
         \x20  FROM k\n\
         \x20 WHERE ((k.kid = {p5}) AND ((k.retire_after IS NULL) OR (k.retire_after > clock_timestamp())) AND (encode(sha256((k.opad || sha256((k.ipad || convert_to(\"left\"({t}, '-65'::integer), 'UTF8'::name))))), 'hex'::text) = {p6}))",
        p2 = part(2),
        p3 = part(3),
        p4 = part(4),
        p5 = part(5),
        p6 = part(6),
    )
}

/// [`view_query`] as a server of `version_num` (`server_version_num`) prints it back: PostgreSQL
/// 16 and later print the columns of the only relation the outer query reads (`k`) without its
/// name (`kid`, not `k.kid`; compared on 16.14, 17.10 and 18.4), 15 with it. Both name the same
/// columns: nothing else is in that FROM.
pub(crate) fn printed_view_query(version_num: i32) -> String {
    if version_num >= 160_000 {
        view_query().replace("(k.", "(")
    } else {
        view_query()
    }
}

/// `text` without whitespace, parentheses and the qualifier `pg_catalog.`: how the audit
/// compares a policy's USING and WITH CHECK, as the server prints them back, with the forms of
/// `generated::policies`. A server lays out and brackets what it prints in its own way, and
/// qualifies a built-in exactly when the reader's search path would find another object first.
/// Every other qualifier stays: `tenant_context.current_org` is printed qualified for the
/// audit's role (whose path is `public, pg_temp`), and a look-alike `public.current_org`,
/// printed `current_org`, is another relation. (A reader with `tenant_context` on its path
/// sees the generated policies as changed: a false alarm, never a false pass.)
pub(crate) fn normalized_printed_text(text: &str) -> String {
    text.replace("pg_catalog.", "")
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '(' && *c != ')')
        .collect::<String>()
        .trim_end_matches(';')
        .to_owned()
}

/// How the audit compares the signed view's printed definition with [`view_query`]: without
/// whitespace, the final semicolon and the qualifier `pg_catalog.` (printed when the reader's
/// path finds a look-alike first; the audit checks separately that the view calls nothing
/// outside `pg_catalog`, `Relation::reads`), but with its parentheses (`(a AND b) OR c` is
/// another condition than `a AND (b OR c)`, the same words) and every other qualifier (a
/// `tenant_context.encode` is not `encode`).
pub(crate) fn normalized_view_text(text: &str) -> String {
    text.replace("pg_catalog.", "")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .trim_end_matches(';')
        .to_owned()
}

/// The shared objects of the signed mode (idempotent).
pub(crate) fn shared(out: &mut String, o: &RlsOptions) {
    let owner = ident(&o.owner_role);
    let app = ident(&o.app_role);
    let operator = ident(&o.operator_role);
    let s = CONTEXT_SCHEMA;
    let view = ORG_VIEW;
    let verified_org_body = verified_org_body();
    let view_query = view_query();
    let pads = crate::sql::HMAC_PADS;
    let _ = write!(
        out,
        "\n-- The signed org context (tenant-schema context.rs): the policies read the org from a\n\
         -- token the service signs with a key the application role cannot read.\n\
         CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION {owner};\n\
         REVOKE ALL ON SCHEMA {s} FROM PUBLIC;\n\
         GRANT USAGE ON SCHEMA {s} TO {app}, {operator};\n\
         CREATE TABLE IF NOT EXISTS {s}.keys (\n\
         \x20   kid text PRIMARY KEY CHECK (kid ~ '^[A-Za-z0-9_-]{{1,40}}$'),\n\
         \x20   ipad bytea NOT NULL,\n\
         \x20   opad bytea NOT NULL,\n\
         \x20   created_at timestamptz NOT NULL DEFAULT now(),\n\
         \x20   retire_after timestamptz\n\
         );\n\
         ALTER TABLE {s}.keys OWNER TO {owner};\n\
         REVOKE ALL ON {s}.keys FROM PUBLIC, {app}, {operator};\n\
         \n\
         CREATE OR REPLACE FUNCTION {s}.add_key(p_kid text, p_key bytea) RETURNS void\n\
         LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$\n\
         DECLARE\n\
         \x20 k bytea := p_key;\n\
         \x20 i bytea := '\\x'::bytea;\n\
         \x20 o bytea := '\\x'::bytea;\n\
         BEGIN\n\
         \x20 IF length(p_key) < 32 THEN\n\
         \x20   RAISE EXCEPTION 'a context key needs at least 32 bytes, got %', length(p_key) USING ERRCODE = '22023';\n\
         \x20 END IF;\n\
         \x20 IF length(k) > 64 THEN k := sha256(k); END IF;\n\
         {pads}\
         \x20 INSERT INTO {s}.keys (kid, ipad, opad) VALUES (p_kid, i, o);\n\
         END\n\
         $fn$;\n\
         \n\
         CREATE OR REPLACE FUNCTION {s}.retire_key(p_kid text, p_after timestamptz) RETURNS void\n\
         LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$\n\
         \x20 UPDATE {s}.keys SET retire_after = p_after WHERE kid = p_kid\n\
         $fn$;\n\
         \n\
         CREATE OR REPLACE FUNCTION {s}.mac(p_kid text, p_message text) RETURNS text\n\
         LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$\n\
         \x20 SELECT encode(sha256(k.opad || sha256(k.ipad || convert_to(p_message, 'UTF8'))), 'hex')\n\
         \x20   FROM {s}.keys k WHERE k.kid = p_kid AND (k.retire_after IS NULL OR k.retire_after > clock_timestamp())\n\
         $fn$;\n\
         \n\
         -- The verification, in a view owned by the key table's owner: like a SECURITY DEFINER\n\
         -- function it reads the keys with its owner's rights, and the application role may only\n\
         -- select the one column it yields; unlike a function, its names are bound when it is\n\
         -- created (no search_path at run time) and it costs no call, no plpgsql frame and no SPI\n\
         -- query per statement: about half the cost of the same check in a function. One scan of\n\
         -- the keys, the setting read where it is used (a sub-select or a join adds plan nodes).\n\
         -- The policies read it in a sub-select, once per statement. Any SQL can set the token,\n\
         -- so nothing of it is trusted before its MAC verifies: the filter only compares text\n\
         -- (the key id, to find the key, and the MAC); a token whose MAC verifies was made by a\n\
         -- holder of the key, so its org, expiry and backend are well formed and the casts of the\n\
         -- select list, which runs only on a row that passed, cannot fail. The MAC covers all but\n\
         -- the last 65 characters and is compared with the sixth part: a signer's message has\n\
         -- exactly four dots, so only the token it signed passes (the sixth part is then the last\n\
         -- 64 characters). No key, a retired key, a wrong MAC, an expired token or another\n\
         -- backend's token yields no row, so NULL: no rows, no writes. WITH makes the view not\n\
         -- updatable and costs nothing (the planner inlines it). Per statement (50,000 selects\n\
         -- of the view in a loop) 6.9 us, against 7.4 for the form before (LIMIT 1, right()).\n\
         -- Written as the server prints it back (every cast spelled out), so that the audit\n\
         -- can tell this view from a changed one by its text.\n\
         -- Created under a search path nothing else can put objects into, restored after.\n\
         SELECT set_config('tenant.search_path_before_view', current_setting('search_path'), false),\n\
         \x20      set_config('search_path', 'pg_catalog, pg_temp', false);\n\
         CREATE OR REPLACE VIEW {s}.{view} WITH (security_barrier) AS\n\
         {view_query};\n\
         SELECT set_config('search_path', current_setting('tenant.search_path_before_view'), false),\n\
         \x20      set_config('tenant.search_path_before_view', '', false);\n\
         ALTER VIEW {s}.{view} OWNER TO {owner};\n\
         REVOKE ALL ON {s}.{view} FROM PUBLIC;\n\
         GRANT SELECT ON {s}.{view} TO {app}, {operator};\n\
         \n\
         -- The same org for what cannot hold a sub-select (a column default).\n\
         CREATE OR REPLACE FUNCTION {s}.verified_org() RETURNS uuid\n\
         LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn${verified_org_body}$fn$;\n\
         \n\
         -- For the break-glass entry: a token for this backend, signed with the newest key.\n\
         CREATE OR REPLACE FUNCTION {s}.sign_for_this_backend(p_org uuid, p_until timestamptz) RETURNS text\n\
         LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$\n\
         DECLARE\n\
         \x20 v_kid text;\n\
         \x20 v_msg text;\n\
         BEGIN\n\
         \x20 SELECT kid INTO v_kid FROM {s}.keys WHERE retire_after IS NULL OR retire_after > clock_timestamp()\n\
         \x20  ORDER BY created_at DESC LIMIT 1;\n\
         \x20 IF v_kid IS NULL THEN RETURN NULL; END IF;\n\
         \x20 v_msg := format('v1.%s.%s.%s.%s', p_org, floor(extract(epoch FROM p_until))::bigint, pg_backend_pid(), v_kid);\n\
         \x20 RETURN v_msg || '.' || {s}.mac(v_kid, v_msg);\n\
         END\n\
         $fn$;\n"
    );
    crate::sql::own_functions(
        out,
        s,
        &owner,
        &[
            "add_key(text, bytea)",
            "retire_key(text, timestamptz)",
            "mac(text, text)",
            "verified_org()",
            "sign_for_this_backend(uuid, timestamptz)",
        ],
    );
    let _ = writeln!(
        out,
        "GRANT EXECUTE ON FUNCTION {s}.verified_org() TO {app}, {operator};"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_text_compares_without_layout_brackets_or_the_final_semicolon() {
        let printed = format!("{};", view_query().replace('\n', "\n    "));
        assert_eq!(
            normalized_printed_text(&printed),
            normalized_printed_text(&view_query())
        );
        assert_ne!(
            normalized_printed_text(&view_query().replace("'.'::text, 6", "'.'::text, 5")),
            normalized_printed_text(&view_query()),
            "another part compared with the MAC is another text"
        );
        // As printed for a reader whose path finds a look-alike built-in first.
        let qualified = view_query().replace("split_part(", "pg_catalog.split_part(");
        assert_eq!(
            normalized_printed_text(&qualified),
            normalized_printed_text(&view_query())
        );
        // Another schema's relation of the same name is another text.
        assert_ne!(
            normalized_printed_text("(org_id = ( SELECT current_org.org FROM current_org))"),
            normalized_printed_text(
                "(org_id = ( SELECT current_org.org FROM tenant_context.current_org))"
            )
        );
        // The view's own comparison keeps the brackets and the other qualifiers.
        assert_eq!(
            normalized_view_text(&format!(
                "{};",
                view_query().replace("split_part(", "pg_catalog.split_part(")
            )),
            normalized_view_text(&view_query())
        );
        let regrouped = view_query().replace("WHERE ((k.kid = ", "WHERE (k.kid = ");
        assert_ne!(
            normalized_view_text(&regrouped),
            normalized_view_text(&view_query())
        );
        let look_alike = view_query().replace("encode(", "tenant_context.encode(");
        assert_ne!(
            normalized_view_text(&look_alike),
            normalized_view_text(&view_query())
        );
        let mut sql = String::new();
        shared(&mut sql, &RlsOptions::default());
        assert!(sql.contains(&view_query()));
    }

    #[test]
    fn from_postgresql_16_the_view_is_compared_as_printed_without_the_cte_name() {
        assert_eq!(printed_view_query(150_018), view_query());
        let printed = printed_view_query(170_010);
        // Only the outer query's five column references lose their qualifier; the CTE's
        // `keys.kid` and every function's schema stay.
        assert!(
            !printed.contains("k.kid") && !printed.contains("(k."),
            "{printed}"
        );
        assert!(printed.contains("WHERE ((kid = split_part("), "{printed}");
        assert!(printed.contains("((retire_after IS NULL) OR (retire_after > clock_timestamp()))"));
        assert!(printed.contains("sha256((opad || sha256((ipad || convert_to("));
        assert!(printed.contains("SELECT keys.kid,"));
        assert_eq!(
            view_query().len() - printed.len(),
            5 * "k.".len(),
            "only the five qualifiers differ"
        );
        // A regrouped condition is another text on 16 and later too.
        let regrouped = printed.replace("WHERE ((kid = ", "WHERE (kid = ");
        assert_ne!(
            normalized_view_text(&regrouped),
            normalized_view_text(&printed)
        );
    }

    #[test]
    fn only_the_verifier_is_readable_by_the_app_and_the_keys_by_no_one() {
        let mut sql = String::new();
        shared(&mut sql, &RlsOptions::default());
        let grants: Vec<&str> = sql.lines().filter(|l| l.starts_with("GRANT")).collect();
        assert_eq!(
            grants,
            [
                "GRANT USAGE ON SCHEMA tenant_context TO \"tenant_app\", \"tenant_operator\";",
                "GRANT SELECT ON tenant_context.current_org TO \"tenant_app\", \"tenant_operator\";",
                "GRANT EXECUTE ON FUNCTION tenant_context.verified_org() TO \"tenant_app\", \"tenant_operator\";"
            ]
        );
        assert!(sql.contains(
            "REVOKE ALL ON tenant_context.keys FROM PUBLIC, \"tenant_app\", \"tenant_operator\";"
        ));
        assert_eq!(
            verified_org_expression(),
            "(SELECT org FROM tenant_context.current_org)"
        );
        assert!(sql.contains("ALTER VIEW tenant_context.current_org OWNER TO \"tenant_owner\";"));
        assert!(sql.contains("REVOKE ALL ON tenant_context.current_org FROM PUBLIC;"));
    }
}
