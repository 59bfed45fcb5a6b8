//! The signed org context's keys in a database, as its owner or an administrator manages
//! them: [`install`] adds a key (retiring the others after a grace period when rotating), and
//! [`list`] says which keys the database holds and until when, never their secrets.
//!
//! The secret travels as a bound parameter, never in a statement's text (which the server
//! logs with any failing statement, and with every statement under `log_statement = all`);
//! where the session may (a superuser), it turns statement and parameter logging off for
//! itself. What would fail is checked first: the signed context's objects exist, the id is not
//! taken (keys are never replaced).

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

use crate::TenantError;

/// A new key's secret: 32 bytes from the OS random source (two v4 UUIDs: 244 random bits).
pub fn random_secret() -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key
}

/// A key as a service configures it: one line `kid:hex` (what `ContextKey::parse` reads).
///
/// ```
/// let line = tenant_core::keys::key_line("k1", &[0xab; 32]);
/// assert!(tenant_core::context::ContextKey::parse(&line).is_ok());
/// ```
pub fn key_line(kid: &str, secret: &[u8]) -> String {
    format!("{kid}:{}", crate::context::to_hex(secret))
}

/// Adds key `kid` with `secret` to the database at `admin_url`, first retiring every other
/// key `retire_minutes` from now when given, in one transaction.
///
/// # Errors
/// [`TenantError::ContextKey`] naming what to do: no signed-context objects (apply the
/// migrations generated in the signed mode), a taken id, a role that may not add keys.
pub fn install(
    admin_url: &str,
    kid: &str,
    secret: &[u8],
    retire_minutes: Option<u32>,
) -> Result<(), TenantError> {
    let mut conn = crate::establish(admin_url)?;
    install_on(&mut conn, kid, secret, retire_minutes)
}

#[derive(QueryableByName)]
struct Yes {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    yes: bool,
}

/// [`install`] on an open connection.
///
/// # Errors
/// As [`install`].
pub fn install_on(
    conn: &mut PgConnection,
    kid: &str,
    secret: &[u8],
    retire_minutes: Option<u32>,
) -> Result<(), TenantError> {
    crate::context::ContextKey::new(kid, secret)?;
    for quiet in [
        "SET log_statement = 'none'",
        "SET log_min_duration_statement = -1",
        "SET log_parameter_max_length = 0",
        "SET log_parameter_max_length_on_error = 0",
    ] {
        // Refused to a role that is not a superuser: then the defaults hold, under which a
        // statement that succeeds is not logged, and a failing one without its parameters.
        let _ = conn.batch_execute(quiet);
    }
    let verifier: Yes = diesel::sql_query(
        "SELECT to_regprocedure('tenant_context.add_key(text, bytea)') IS NOT NULL AS yes",
    )
    .get_result(conn)?;
    if !verifier.yes {
        return Err(TenantError::ContextKey(
            "the database has no signed-context objects (tenant_context.add_key): apply the \
             migrations generated in the signed mode first"
                .into(),
        ));
    }
    // A role that may not read the key table cannot tell; add_key refuses a taken id anyway.
    let taken = diesel::sql_query(
        "SELECT EXISTS (SELECT FROM tenant_context.keys k WHERE k.kid = $1) AS yes",
    )
    .bind::<diesel::sql_types::Text, _>(kid)
    .get_result::<Yes>(conn)
    .is_ok_and(|t| t.yes);
    if taken {
        return Err(TenantError::ContextKey(format!(
            "the database already holds a key {kid}: keys are never replaced; `context-key rotate --kid NEW` adds a new one, and a key file for `context-key add` must carry an id the database does not hold"
        )));
    }
    conn.transaction(|c| {
        if let Some(minutes) = retire_minutes {
            diesel::sql_query(
                "SELECT tenant_context.retire_key(kid, now() + make_interval(mins => $1)) \
                   FROM tenant_context.keys \
                  WHERE retire_after IS NULL OR retire_after > now() + make_interval(mins => $1)",
            )
            .bind::<diesel::sql_types::Integer, _>(i32::try_from(minutes).unwrap_or(i32::MAX))
            .execute(c)?;
        }
        diesel::sql_query("SELECT tenant_context.add_key($1, $2)")
            .bind::<diesel::sql_types::Text, _>(kid)
            .bind::<diesel::sql_types::Binary, _>(secret)
            .execute(c)
    })
    .map(drop)
    .map_err(|e: diesel::result::Error| {
        TenantError::ContextKey(format!(
            "adding the key (this URL needs the key table's owner or an administrator): {e}"
        ))
    })
}

/// One key the database holds, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct KeyInfo {
    /// Its id.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub kid: String,
    /// When it was added (RFC 3339, UTC).
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub created_at: String,
    /// When it stops being accepted (RFC 3339, UTC), if it was retired.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub retire_after: Option<String>,
    /// Whether tokens signed with it verify now.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub valid: bool,
}

/// The keys the database at `admin_url` holds, oldest first (ids and dates only).
///
/// # Errors
/// [`TenantError::ContextKey`] when the key table cannot be read (a role other than its
/// owner or an administrator, or no signed-context objects).
pub fn list(admin_url: &str) -> Result<Vec<KeyInfo>, TenantError> {
    let mut conn = crate::establish(admin_url)?;
    diesel::sql_query(
        // Ordered by the column, not by its text (which ties within a second).
        "SELECT k.kid, \
                to_char(k.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created_at, \
                to_char(k.retire_after AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS retire_after, \
                (k.retire_after IS NULL OR k.retire_after > clock_timestamp()) AS valid \
           FROM tenant_context.keys k ORDER BY k.created_at, k.kid",
    )
    .load(&mut conn)
    .map_err(|e| {
        TenantError::ContextKey(format!(
            "reading tenant_context.keys (this URL needs the key table's owner or an \
             administrator, and the migrations generated in the signed mode): {e}"
        ))
    })
}
