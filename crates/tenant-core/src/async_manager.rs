//! The deadpool manager of [`AsyncTenantPool`](crate::AsyncTenantPool) (the `async` feature):
//! diesel-async `AsyncPgConnection`s, each with the backend its opening message names.
//!
//! Invariant (as `manager.rs`'s): a new connection whose role's settings changed since the
//! pool started is never made; a connection on which a scoped transaction was opened and not
//! seen to end is never handed out again.

use std::collections::HashSet;

use deadpool::managed::{Metrics as PoolMetrics, RecycleError};
use diesel::result::QueryResult;
use diesel_async::futures_util::TryStreamExt;
use diesel_async::methods::LoadQuery;
use diesel_async::{AsyncConnection as _, AsyncPgConnection};

use crate::TenantError;
use crate::context::Backend;
use crate::startup::SettingsRow;

/// Loads every row of `query` on `conn` (diesel-async's load, without its `RunQueryDsl`,
/// which it offers only for tables).
pub(crate) async fn load_all<T, U>(conn: &mut AsyncPgConnection, query: T) -> QueryResult<Vec<U>>
where
    T: LoadQuery<'static, AsyncPgConnection, U>,
{
    LoadQuery::internal_load(query, conn)
        .await?
        .try_collect()
        .await
}

/// The deadpool manager behind [`AsyncTenantPool`]. It has no public constructor: the only
/// pool of it is the one [`AsyncTenantPool`] owns.
pub struct AsyncConnectionManager {
    pub(crate) url: String,
    pub(crate) statement_cache: bool,
    pub(crate) read_backend: bool,
    /// What the role and database give a new session, read at start-up.
    pub(crate) role_settings: String,
}

/// Without the URL, which may carry the application role's password.
impl std::fmt::Debug for AsyncConnectionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncConnectionManager")
            .field("url", &"[redacted]")
            .field("statement_cache", &self.statement_cache)
            .field("read_backend", &self.read_backend)
            .finish_non_exhaustive()
    }
}

/// A pooled async connection, held only inside an [`AsyncOrgScoped`]. It offers nothing on
/// its own.
pub struct AsyncConnection {
    pub(crate) conn: AsyncPgConnection,
    /// The backend serving it, when the opening message needs it.
    pub(crate) backend: Option<Backend>,
    /// A scoped transaction was opened on it and has not been seen to end: never reused.
    pub(crate) in_transaction: bool,
    /// The statements this connection ran successfully with diesel-async's statement cache
    /// on (text and bind types, the cache's key): prepared on the server, so a one-flight
    /// transaction can send one without waiting for a prepare first. The cache is never
    /// limited, so nothing leaves it.
    pub(crate) prepared: HashSet<(String, Vec<u32>)>,
    /// Whether the connection keeps prepared statements (off behind a transaction pooler).
    pub(crate) statement_cache: bool,
}

impl std::fmt::Debug for AsyncConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncConnection")
            .field("backend", &self.backend)
            .field("in_transaction", &self.in_transaction)
            .finish_non_exhaustive()
    }
}

impl deadpool::managed::Manager for AsyncConnectionManager {
    type Type = AsyncConnection;
    type Error = TenantError;

    async fn create(&self) -> Result<AsyncConnection, TenantError> {
        crate::check_url(&self.url)?;
        let mut conn = AsyncPgConnection::establish(&self.url)
            .await
            .map_err(|e| TenantError::Connect(crate::connect_message(&e.to_string(), &self.url)))?;
        // Never limited (what `prepared` relies on); off behind a transaction pooler, where a
        // named prepared statement lives on one server connection and the next transaction
        // may run on another.
        conn.set_prepared_statement_cache_size(if self.statement_cache {
            diesel::connection::CacheSize::Unbounded
        } else {
            diesel::connection::CacheSize::Disabled
        });
        // The role may change its own defaults (`ALTER ROLE .. SET`): they would reach every
        // org through every new connection. Refused, as by the sync pool's manager.
        let now: Vec<SettingsRow> =
            load_all(&mut conn, crate::startup::role_settings_query()).await?;
        let now = now
            .into_iter()
            .next()
            .map(|r| r.settings)
            .unwrap_or_default();
        if now != self.role_settings {
            return Err(TenantError::Connect(format!(
                "the settings new sessions of this role get changed since the pool started \
                 (from [{}] to [{now}]): something ran ALTER ROLE .. SET or ALTER DATABASE .. \
                 SET; put back what the migration set (ALTER ROLE <role> IN DATABASE <db> \
                 RESET <setting>) and restart the service",
                self.role_settings
            )));
        }
        let backend = if self.read_backend {
            let rows: Vec<(i32, i32)> = load_all(&mut conn, Backend::query()).await?;
            let (pid, recorded) = rows.into_iter().next().ok_or_else(|| {
                TenantError::Connect("reading the connection's backend returned no row".into())
            })?;
            Some(Backend::from_row(pid, recorded))
        } else {
            None
        };
        Ok(AsyncConnection {
            conn,
            backend,
            in_transaction: false,
            prepared: HashSet::new(),
            statement_cache: self.statement_cache,
        })
    }

    async fn recycle(
        &self,
        conn: &mut AsyncConnection,
        _: &PoolMetrics,
    ) -> Result<(), RecycleError<TenantError>> {
        // The handle takes such a connection out of the pool itself; this catches what gets
        // past it (a future cancelled between the opening and the handle).
        if conn.in_transaction {
            return Err(RecycleError::message(
                "a scoped transaction was not seen to end on this connection",
            ));
        }
        Ok(())
    }
}
