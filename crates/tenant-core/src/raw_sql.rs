//! [`TenantSql`]: raw SQL from [`tenant_sql!`](crate::tenant_sql), for what the DSL cannot
//! express, run through a scoped handle with the org bound by the library.

use diesel::PgConnection;
use diesel::deserialize::QueryableByName;
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::query_dsl::RunQueryDsl;

use crate::scoped::ScopedConnection;
use crate::{OrgScoped, TenantError};

/// A statement written with [`tenant_sql!`](crate::tenant_sql): checked at compile time, with
/// the session's org as its last parameter, filled in by [`OrgScoped::load_sql`] or
/// [`OrgScoped::execute_sql`]. The statement is checked again before it is sent, against the
/// real binds, like every scoped statement.
#[must_use = "a statement does nothing until it is run through an OrgScoped handle"]
pub struct TenantSql<'f> {
    query: BoxedSqlQuery<'f, Pg, SqlQuery>,
}

impl std::fmt::Debug for TenantSql<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantSql").finish_non_exhaustive()
    }
}

impl<'f> TenantSql<'f> {
    /// Used by `tenant_sql!`'s expansion. Calling it by hand skips the compile-time check; the
    /// run-time check before sending still refuses a statement that does not confine every
    /// tenant table to the org.
    #[doc(hidden)]
    pub fn __checked(query: BoxedSqlQuery<'f, Pg, SqlQuery>) -> Self {
        Self { query }
    }
}

impl<C: ScopedConnection> OrgScoped<C> {
    /// Runs a [`tenant_sql!`](crate::tenant_sql) query and returns its rows.
    pub fn load_sql<U>(&mut self, sql: TenantSql<'_>) -> Result<Vec<U>, TenantError>
    where
        U: QueryableByName<Pg> + 'static,
    {
        let org = self.org();
        let query = sql.query.bind::<diesel::sql_types::Uuid, _>(org.as_uuid());
        self.run_verified(org, query, |q, conn: &mut PgConnection| {
            RunQueryDsl::load(q, conn)
        })
    }

    /// Runs a [`tenant_sql!`](crate::tenant_sql) statement and returns the rows affected.
    pub fn execute_sql(&mut self, sql: TenantSql<'_>) -> Result<usize, TenantError> {
        let org = self.org();
        let query = sql.query.bind::<diesel::sql_types::Uuid, _>(org.as_uuid());
        self.run_verified(org, query, |q, conn: &mut PgConnection| {
            RunQueryDsl::execute(q, conn)
        })
    }
}
