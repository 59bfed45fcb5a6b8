//! What the application and operator roles may create, and where their names resolve: the
//! part of every generated migration that keeps a transaction's leftovers from reaching the
//! next user of a pooled connection.
//!
//! Invariant: after the migration, neither role can create an object of any kind in the
//! database (temporary ones included: PostgreSQL grants `TEMP` on every database to
//! `PUBLIC`, and a temporary table shadows a tenant table of the same name for the rest of the
//! session, capturing the next org's rows and token), nor a large object (storage that
//! row-level security does not govern and that every session of the role can read), and both
//! resolve names on a fixed `search_path` that searches `pg_temp` last, and neither can stop
//! another session (`pg_terminate_backend`, `pg_cancel_backend`). What is left of a
//! session is undone or refused by the message that opens every scoped transaction
//! (tenant-core). The pool refuses to start for a role that can still create objects, and the
//! audit reports each privilege that would allow it.
//!
//! Like the roles, this is not undone by a migration's `down`: `TEMP` stays revoked from
//! `PUBLIC`; grant it to the roles that need it.

use std::fmt::Write as _;

use crate::options::RlsOptions;
use crate::sql::literal;

/// The search path both roles get in this database: tables in `public`, temporary relations
/// (which neither role can create) after them.
pub const ROLE_SEARCH_PATH: &str = "public, pg_temp";

/// The functions that create large objects, revoked from `PUBLIC`.
pub const LARGE_OBJECT_CREATORS: &[&str] = &[
    "pg_catalog.lo_creat(integer)",
    "pg_catalog.lo_create(oid)",
    "pg_catalog.lo_from_bytea(oid, bytea)",
    "pg_catalog.lo_import(text)",
    "pg_catalog.lo_import(text, oid)",
];

/// The functions that stop another backend, revoked from `PUBLIC`: PostgreSQL lets any role
/// signal the sessions of its own role, so one org's transaction could end another's.
pub const SESSION_SIGNALS: &[&str] = &[
    "pg_catalog.pg_terminate_backend(integer, bigint)",
    "pg_catalog.pg_cancel_backend(integer)",
];

/// Writes the statements (idempotent).
pub(crate) fn shared(out: &mut String, o: &RlsOptions) {
    let app = literal(&o.app_role);
    let operator = literal(&o.operator_role);
    let _ = write!(
        out,
        "\n-- Neither the application nor the operator role may create objects, temporary ones\n\
         -- included (PostgreSQL grants TEMP to PUBLIC; a temporary table would shadow a tenant\n\
         -- table for the next user of a pooled connection), nor large objects (storage outside\n\
         -- row-level security); both resolve names on a fixed path. Not undone by `down`.\n\
         DO $tenant$\n\
         BEGIN\n\
         \x20 EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());\n\
         \x20 EXECUTE format('REVOKE CREATE, TEMPORARY ON DATABASE %I FROM %I, %I', current_database(), {app}, {operator});\n\
         \x20 EXECUTE format('ALTER ROLE %I IN DATABASE %I SET search_path = {ROLE_SEARCH_PATH}', {app}, current_database());\n\
         \x20 EXECUTE format('ALTER ROLE %I IN DATABASE %I SET search_path = {ROLE_SEARCH_PATH}', {operator}, current_database());\n\
         END\n\
         $tenant$;\n\
         REVOKE CREATE ON SCHEMA public FROM PUBLIC;\n\
         -- PostgreSQL's own functions: only a superuser may change who runs them. A managed\n\
         -- server's administrator is none; then they stay as they are, with a warning, and the\n\
         -- audit reports each one every role may still run (role-can-signal, role-can-create).\n\
         DO $tenant$\n\
         BEGIN\n\
         \x20 REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC;\n\
         \x20 -- Nor may either role stop another session of the same role (another org's transaction).\n\
         \x20 REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC;\n\
         EXCEPTION WHEN insufficient_privilege THEN\n\
         \x20 RAISE WARNING 'tenant-schema: % (a superuser can apply these revokes; until then every role may create large objects and signal other sessions, which the audit reports)', SQLERRM;\n\
         END\n\
         $tenant$;\n",
        LARGE_OBJECT_CREATORS.join(", "),
        SESSION_SIGNALS.join(", ")
    );
}
