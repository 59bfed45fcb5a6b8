//! The admin path for global tables: the only way this library writes a table that holds no
//! tenant data (plans, currencies). It is named, takes a written reason (listed by
//! `cargo xtask lint`), connects with a role of its own (the application role may only read
//! global tables), and refuses any statement that touches a tenant table.

use diesel::PgConnection;
use diesel::connection::Connection;
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
use diesel::query_dsl::methods::ExecuteDsl;
use tenant_lint::{GlobalTable, Registry};
use tenant_sqlcheck::{Tables, check_global_write};

use crate::TenantError;
use crate::verify::{render, tables_of};

/// A connection for writing global tables, for one stated reason.
///
/// ```no_run
/// # diesel::table! { currencies (code) { code -> Text, name -> Text } }
/// # tenant_lint::registry! { pub static REGISTRY; global currencies; }
/// use diesel::prelude::*;
/// use tenant_core::admin::GlobalWriter;
///
/// let mut writer = GlobalWriter::connect(
///     "postgres://tenant_admin@localhost/app",
///     &REGISTRY,
///     "reference data: add the currencies of the 2027 launch markets",
/// )?;
/// writer.execute(currencies::table, |t| {
///     diesel::insert_into(t).values((currencies::code.eq("CHF"), currencies::name.eq("Swiss franc")))
/// })?;
/// # Ok::<(), tenant_core::TenantError>(())
/// ```
pub struct GlobalWriter {
    conn: PgConnection,
    tables: Tables,
    reason: &'static str,
}

impl std::fmt::Debug for GlobalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalWriter")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl GlobalWriter {
    /// Connects with `admin_url`, a role allowed to write the global tables (the application
    /// role is not), for `reason`.
    ///
    /// # Errors
    /// [`TenantError::Connect`] when the database cannot be reached.
    pub fn connect(
        admin_url: &str,
        registry: &Registry,
        reason: &'static str,
    ) -> Result<Self, TenantError> {
        let conn =
            PgConnection::establish(admin_url).map_err(|e| TenantError::Connect(e.to_string()))?;
        Ok(Self {
            conn,
            tables: tables_of(registry),
            reason,
        })
    }

    /// The reason given at `connect`.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// Builds a statement on global table `table` with `build` and runs it, returning the rows
    /// affected. The statement is refused before it is sent if it touches any tenant table
    /// (which would copy tenant data into a shared table) or an unregistered one.
    pub fn execute<T, Q>(
        &mut self,
        table: T,
        build: impl FnOnce(T) -> Q,
    ) -> Result<usize, TenantError>
    where
        T: GlobalTable,
        Q: ExecuteDsl<PgConnection> + QueryFragment<Pg>,
    {
        let statement = build(table);
        check_global_write(&render(&statement)?, &self.tables).map_err(TenantError::Unscoped)?;
        Ok(ExecuteDsl::execute(statement, &mut self.conn)?)
    }
}

/// A read-only connection to the system catalogs, for audits (`tenant-schema`'s catalog audit
/// reads through it). It refuses any query that reads beyond `pg_catalog` and
/// `information_schema`, and its session is read-only, so it cannot see or change tenant rows.
pub struct CatalogReader {
    conn: PgConnection,
    reason: &'static str,
}

impl std::fmt::Debug for CatalogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogReader")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl CatalogReader {
    /// Connects with `url` (the application role, or an auditor role) for `reason`.
    ///
    /// # Errors
    /// [`TenantError::Connect`] when the database cannot be reached.
    pub fn connect(url: &str, reason: &'static str) -> Result<Self, TenantError> {
        use diesel::connection::SimpleConnection;
        let mut conn =
            PgConnection::establish(url).map_err(|e| TenantError::Connect(e.to_string()))?;
        conn.batch_execute("SET default_transaction_read_only = on")?;
        Ok(Self { conn, reason })
    }

    /// The reason given at `connect`.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// Runs a catalog query with text parameters `$1`, `$2`, ... and returns its rows.
    ///
    /// # Errors
    /// [`TenantError::Unscoped`] if the query reads anything but the catalogs; a database
    /// error otherwise.
    pub fn load<U>(&mut self, sql: &str, params: &[&str]) -> Result<Vec<U>, TenantError>
    where
        U: diesel::deserialize::QueryableByName<Pg> + 'static,
    {
        tenant_sqlcheck::check_catalog_only(sql).map_err(TenantError::Unscoped)?;
        let mut query = diesel::sql_query(sql).into_boxed::<Pg>();
        for p in params {
            query = query.bind::<diesel::sql_types::Text, _>(*p);
        }
        Ok(diesel::RunQueryDsl::load(query, &mut self.conn)?)
    }
}
