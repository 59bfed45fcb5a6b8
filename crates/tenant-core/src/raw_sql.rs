//! [`TenantSql`]: raw SQL from [`tenant_sql!`](crate::tenant_sql), for what the DSL cannot
//! express, run through a scoped handle with the org bound by the library.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use diesel::PgConnection;
use diesel::deserialize::QueryableByName;
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::query_dsl::RunQueryDsl;
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;
use tenant_sqlcheck::Violation;

use crate::scoped::ScopedConnection;
use crate::verify::CheckedStatement;
use crate::{OrgScoped, TenantError};
use diesel::sql_types::Untyped;

/// A statement written with [`tenant_sql!`](crate::tenant_sql): checked at compile time, with
/// the session's org as its last parameter, filled in by [`OrgScoped::load_sql`] or
/// [`OrgScoped::execute_sql`]. The statement is checked again before it is sent, against the
/// real binds and the registry, like every scoped statement.
///
/// Its one constructor, [`TenantSql::new`], checks the text too (what can be checked without
/// the registry: one statement of a kind a scoped session may run, no function or operator
/// outside the allowed ones...), so no public path wraps unchecked SQL into this type; a
/// refusal found there is returned by `load_sql`/`execute_sql` before anything is sent.
#[must_use = "a statement does nothing until it is run through an OrgScoped handle"]
pub struct TenantSql<'f> {
    query: BoxedSqlQuery<'f, Pg, SqlQuery>,
    refused: Option<Violation>,
}

impl std::fmt::Debug for TenantSql<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantSql")
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

impl<'f> TenantSql<'f> {
    /// The statement `sql`, a literal (what `tenant_sql!` expands to). Its `$1`, `$2`, ... are
    /// bound with [`bind`](Self::bind), in order; the handle binds the org after them.
    ///
    /// Prefer `tenant_sql!`, which also checks the statement against the registry at compile
    /// time. Called by hand, the statement is checked here (without the registry) and again
    /// before it is sent (with it).
    pub fn new(sql: &'static str) -> Self {
        Self {
            query: diesel::sql_query(sql).into_boxed(),
            refused: text_check(sql).err(),
        }
    }

    /// Binds the next `$n`.
    pub fn bind<ST, V>(self, value: V) -> Self
    where
        Pg: HasSqlType<ST>,
        V: ToSql<ST, Pg> + Send + 'f,
        ST: Send + 'f,
    {
        Self {
            query: self.query.bind::<ST, V>(value),
            refused: self.refused,
        }
    }

    fn into_checked(self) -> Result<BoxedSqlQuery<'f, Pg, SqlQuery>, TenantError> {
        match self.refused {
            Some(v) => Err(TenantError::Unscoped(v)),
            None => Ok(self.query),
        }
    }
}

/// What can be checked of `sql` without the registry, once per literal: the verdict is kept
/// per address of the `'static` text.
fn text_check(sql: &'static str) -> Result<(), Violation> {
    type Verdicts = Mutex<HashMap<(usize, usize), Result<(), Violation>>>;
    static VERDICTS: OnceLock<Verdicts> = OnceLock::new();
    let key = (sql.as_ptr() as usize, sql.len());
    let verdicts = VERDICTS.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(v) = verdicts.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return v;
    }
    let verdict = tenant_sqlcheck::requirements(sql, &|_| false).map(|_| ());
    if let Ok(mut m) = verdicts.lock() {
        // Literals are few; text leaked to 'static at run time could be many.
        if m.len() >= 4096 {
            m.clear();
        }
        m.insert(key, verdict.clone());
    }
    verdict
}

impl<C: ScopedConnection> OrgScoped<C> {
    /// The statement of `sql` with this handle's org bound as its last parameter.
    fn org_bound<'f>(
        &self,
        sql: TenantSql<'f>,
    ) -> Result<(crate::OrgId, BoxedSqlQuery<'f, Pg, SqlQuery>), TenantError> {
        let org = self.org();
        // Refused when it was built (`set_config` in hand-written text): counted and logged
        // like any refusal of this transaction.
        let query = sql.into_checked().inspect_err(|e| self.failed(e))?;
        Ok((org, query.bind::<diesel::sql_types::Uuid, _>(org.as_uuid())))
    }

    /// Runs a [`tenant_sql!`](crate::tenant_sql) query and returns its rows.
    pub fn load_sql<U>(&mut self, sql: TenantSql<'_>) -> Result<Vec<U>, TenantError>
    where
        U: QueryableByName<Pg> + 'static,
    {
        let (org, query) = self.org_bound(sql)?;
        self.run_verified(
            org,
            query,
            |q: CheckedStatement<Untyped>, conn: &mut PgConnection| RunQueryDsl::load(q, conn),
        )
    }

    /// Runs a [`tenant_sql!`](crate::tenant_sql) statement and returns the rows affected.
    pub fn execute_sql(&mut self, sql: TenantSql<'_>) -> Result<usize, TenantError> {
        let (org, query) = self.org_bound(sql)?;
        self.run_verified(
            org,
            query,
            |q: CheckedStatement<()>, conn: &mut PgConnection| RunQueryDsl::execute(q, conn),
        )
    }
}
