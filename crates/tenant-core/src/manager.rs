//! The r2d2 connection manager of [`crate::TenantPool`] and the session checks it and the
//! scoped handle share: what the org setting and the signed context hold for a session.
//!
//! Invariant: a connection that carries an org context at session level is refused by the
//! message that opens the next scoped transaction on it, marked broken and dropped on return
//! (r2d2's checkout test is off: `is_valid` runs only if a pool turns it on, which
//! `TenantPool` does not); one whose role's settings changed since the pool started is never
//! made.

use diesel::prelude::*;
use diesel::r2d2::R2D2Connection;
use diesel::sql_types::Text;

use crate::TenantError;

/// The r2d2 connection manager behind [`TenantPool`](crate::TenantPool): diesel `PgConnection`s. A connection
/// that carries an org context is refused by the message that opens each scoped transaction,
/// marked broken, and dropped here on return (`has_broken`).
///
/// It has no public constructor: the only pool of it is the one [`TenantPool`](crate::TenantPool) owns.
pub struct TenantConnectionManager {
    pub(crate) url: String,
    pub(crate) statement_cache: bool,
    /// Whether the opening message needs the backend (a signed token, a hidden org id).
    pub(crate) read_backend: bool,
    /// The settings the role and the database give a new session, read when the pool started
    /// (`None` while it starts): a new connection that finds others is refused.
    pub(crate) role_settings: Option<String>,
}

/// Without the URL, which may carry the application role's password (a pool's `Debug`
/// prints its manager).
impl std::fmt::Debug for TenantConnectionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantConnectionManager")
            .field("url", &"[redacted]")
            .field("statement_cache", &self.statement_cache)
            .field("read_backend", &self.read_backend)
            .finish_non_exhaustive()
    }
}

/// Why the manager refused a connection.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// Could not connect.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The validation query failed.
    #[error("checkout validation failed: {0}")]
    Query(TenantError),
    /// The connection carries an org context from earlier use; it is discarded.
    #[error("connection discarded at checkout: it still carried an org context at session level")]
    ContextPresent,
}

/// A pooled connection and, when the opening message needs it, the backend serving it (which
/// the signed context's tokens name).
pub struct TenantConn {
    pub(crate) conn: PgConnection,
    pub(crate) backend: Option<crate::context::Backend>,
}

impl std::fmt::Debug for TenantConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantConn")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl r2d2::ManageConnection for TenantConnectionManager {
    type Connection = TenantConn;
    type Error = ManagerError;

    fn connect(&self) -> Result<TenantConn, ManagerError> {
        let mut conn = crate::establish(&self.url).map_err(|e| match e {
            TenantError::Connect(message) => ManagerError::Connect(message),
            other => ManagerError::Connect(other.to_string()),
        })?;
        if !self.statement_cache {
            // Behind a transaction pooler, a named prepared statement lives on one server
            // connection and the next transaction may run on another: prepare none.
            conn.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
        }
        // The application role may change its own defaults (`ALTER ROLE .. SET`, which
        // PostgreSQL allows any role for itself): they would reach every org through every new
        // connection, and `RESET ALL` at each opening resets *to* them. Refused instead.
        if let Some(expected) = &self.role_settings {
            let now = crate::startup::role_settings(&mut conn)
                .map_err(|e| ManagerError::Connect(e.to_string()))?;
            if now != *expected {
                return Err(ManagerError::Connect(format!(
                    "the settings new sessions of this role get changed since the pool started \
                     (from [{expected}] to [{now}]): something ran ALTER ROLE .. SET or ALTER \
                     DATABASE .. SET; put back what the migration set (ALTER ROLE <role> IN \
                     DATABASE <db> RESET <setting>) and restart the service"
                )));
            }
        }
        // Once per connection, so that a signed token can name its backend without a round
        // trip; not read at all where nothing needs it.
        let backend = if self.read_backend {
            Some(
                crate::context::Backend::read(&mut conn)
                    .map_err(|e| ManagerError::Connect(e.to_string()))?,
            )
        } else {
            None
        };
        Ok(TenantConn { conn, backend })
    }

    fn is_valid(&self, conn: &mut TenantConn) -> Result<(), ManagerError> {
        match session_org_setting(&mut conn.conn).map_err(ManagerError::Query)? {
            None => Ok(()),
            Some(_) => Err(ManagerError::ContextPresent),
        }
    }

    fn has_broken(&self, conn: &mut TenantConn) -> bool {
        // An open or failed transaction (diesel's check) or a panic mid-use: discard.
        std::thread::panicking() || R2D2Connection::is_broken(&mut conn.conn)
    }
}

/// The session's org setting, `None` when unset or empty.
pub(crate) fn session_org_setting(conn: &mut PgConnection) -> Result<Option<String>, TenantError> {
    let value: String = session_org_setting_query().get_result(conn)?;
    Ok((!value.is_empty()).then_some(value))
}

/// What [`session_org_setting`] runs (the async handle runs it too).
pub(crate) fn session_org_setting_query()
-> diesel::dsl::select<diesel::expression::SqlLiteral<Text>> {
    diesel::select(diesel::dsl::sql::<Text>(
        "coalesce(current_setting('tenant.org_id', true), '')",
    ))
}

/// What [`session_verified_org`] runs (the async handle runs it too).
pub(crate) fn session_verified_org_query() -> diesel::dsl::select<
    diesel::expression::SqlLiteral<diesel::sql_types::Nullable<diesel::sql_types::Uuid>>,
> {
    diesel::select(diesel::dsl::sql::<
        diesel::sql_types::Nullable<diesel::sql_types::Uuid>,
    >("tenant_context.verified_org()"))
}

/// The org the signed context verifies for this session (`tenant_context.verified_org()`),
/// `None` without a valid token.
pub(crate) fn session_verified_org(
    conn: &mut PgConnection,
) -> Result<Option<uuid::Uuid>, TenantError> {
    Ok(session_verified_org_query().get_result(conn)?)
}
