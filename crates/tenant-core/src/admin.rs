//! The admin path for global tables: the only way this library writes a table that holds no
//! tenant data (plans, currencies). It is named, takes a written reason (listed by
//! `cargo xtask lint`), connects with a role of its own (the application role may only read
//! global tables), and refuses any statement that touches a tenant table. Also the read-only
//! catalog reader of the audit ([`CatalogReader`]) and the leak probe's attacker session
//! ([`ProbeSession`]): each an escape hatch with a name that says so and a written reason.

use diesel::PgConnection;
use diesel::QueryableByName;
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
use diesel::query_dsl::methods::ExecuteDsl;
use tenant_lint::{GlobalTable, Registry};
use tenant_sqlcheck::check_global_write;

use crate::TenantError;
use crate::verify::{CheckedStatement, Checks, tables_of};

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
    tables: Checks,
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
        let conn = crate::establish(admin_url)?;
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
        Q: QueryFragment<Pg>,
    {
        // Rendered once, and the rendering that was checked is what is sent (`CheckedStatement`).
        let statement = CheckedStatement::<()>::render(&build(table), &mut self.conn)?;
        check_global_write(statement.sql(), self.tables.tables()).map_err(TenantError::Unscoped)?;
        Ok(ExecuteDsl::execute(statement, &mut self.conn)?)
    }

    /// Runs `sql`, one statement on global tables written as text (the leak probe's rows for
    /// empty global tables), committed on its own, and returns the rows it returns. Refused
    /// before it is sent, as [`execute`](Self::execute) is, when it touches a tenant table or
    /// an unregistered one.
    ///
    /// # Errors
    /// [`TenantError::Unscoped`] for a refused statement; a database error otherwise.
    pub fn load_sql<U>(&mut self, sql: &str) -> Result<Vec<U>, TenantError>
    where
        U: QueryableByName<Pg> + 'static,
    {
        use diesel::RunQueryDsl;
        check_global_write(sql, self.tables.tables()).map_err(TenantError::Unscoped)?;
        Ok(diesel::sql_query(sql).load(&mut self.conn)?)
    }

    /// [`load_sql`](Self::load_sql) for a statement that returns no rows: the rows affected.
    ///
    /// # Errors
    /// As [`load_sql`](Self::load_sql).
    pub fn execute_sql(&mut self, sql: &str) -> Result<usize, TenantError> {
        use diesel::RunQueryDsl;
        check_global_write(sql, self.tables.tables()).map_err(TenantError::Unscoped)?;
        Ok(diesel::sql_query(sql).execute(&mut self.conn)?)
    }
}

/// Runs the pending migrations of the diesel migrations directory `dir` (each in its own
/// transaction, in diesel's order) with `admin_url`, a role that may change the schema (never
/// the application role), and returns the versions it applied, in order; an empty list when
/// nothing was pending. The bookkeeping is diesel's own (`__diesel_schema_migrations`), so the
/// diesel CLI and `embed_migrations!` see the same history.
///
/// # Errors
/// [`TenantError::Connect`] when the database cannot be reached; [`TenantError::Migration`]
/// naming the directory or the failing migration (rolled back; those before it stay).
pub fn run_migrations(admin_url: &str, dir: &std::path::Path) -> Result<Vec<String>, TenantError> {
    use diesel_migrations::MigrationHarness;
    let migrations = diesel_migrations::FileBasedMigrations::from_path(dir).map_err(|e| {
        TenantError::Migration(format!(
            "{} (the migrations directory, relative to {}): {e}",
            dir.display(),
            std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "the current directory".into())
        ))
    })?;
    let mut conn = crate::establish(admin_url)?;
    let applied = conn.run_pending_migrations(migrations).map_err(|e| {
        // "Failed to run <version> with: <the server's message>": the message reduced as
        // every error of this crate is (a value a migration's UPDATE met in a row is not
        // repeated).
        let text = e.to_string();
        TenantError::Migration(match text.split_once(" with: ") {
            Some((head, server)) => format!(
                "{head} (rolled back; the migrations before it stay applied) with: {}",
                crate::error::redact(server)
            ),
            None => text,
        })
    })?;
    Ok(applied.iter().map(ToString::to_string).collect())
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

/// The search path of every catalog read (transaction-local).
const CANONICAL_SEARCH_PATH: &str = "SET LOCAL search_path = public";

impl CatalogReader {
    /// Connects with `url` (the application role, or an auditor role) for `reason`.
    ///
    /// # Errors
    /// [`TenantError::Connect`] when the database cannot be reached.
    pub fn connect(url: &str, reason: &'static str) -> Result<Self, TenantError> {
        let conn = crate::establish(url)?;
        // Read-only per transaction (each load), never as a session setting: behind a
        // transaction pooler a session setting would stay on the server connection and reach
        // whoever uses it next.
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
        // The server prints names (of policies' functions, of views' relations, of functions'
        // signatures) qualified exactly when the session's search path would not find them:
        // one fixed path, whatever the role's or the database's setting, so that the same
        // configuration always reads the same (the audit compares these texts).
        Ok(self.conn.build_transaction().read_only().run(|c| {
            use diesel::connection::SimpleConnection;
            c.batch_execute(CANONICAL_SEARCH_PATH)?;
            diesel::RunQueryDsl::load(query, c)
        })?)
    }
}

/// The anonymous block a [`ProbeSession`] runs every statement in: it catches the error, so
/// the exact SQLSTATE comes back (diesel does not expose it), and it runs the statement in a
/// subtransaction, so an error leaves the session usable. A `DO` block creates nothing (the
/// application role may not create objects, temporary ones included); it leaves its outcome
/// in a transaction-local setting, which [`OUTCOME_READ`] reads. `{stmt}` is the statement
/// as a string literal, `{rows}` whether to count its rows.
const PROBE_BLOCK: &str = r#"DO $tenant_probe$
DECLARE
    n bigint;
    first_row text;
    err_state text;
    err_message text;
BEGIN
    BEGIN
        IF {rows} THEN
            EXECUTE 'WITH q AS (' || {stmt} || ') SELECT count(*), (SELECT row_to_json(q)::text FROM q LIMIT 1) FROM q'
                INTO n, first_row;
        ELSE
            EXECUTE {stmt};
            GET DIAGNOSTICS n = ROW_COUNT;
        END IF;
        PERFORM pg_catalog.set_config('tenant_probe.outcome',
            pg_catalog.json_build_object('ok', true, 'n', n, 'first_row', first_row)::text, true);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT;
        PERFORM pg_catalog.set_config('tenant_probe.outcome',
            pg_catalog.json_build_object('ok', false, 'err_state', err_state, 'err_message', err_message)::text, true);
    END;
END
$tenant_probe$"#;

/// Reads what [`PROBE_BLOCK`] left (every run of the block sets it, in both branches).
const OUTCOME_READ: &str = "SELECT (o->>'ok')::boolean AS ok, o->>'err_state' AS err_state, \
     o->>'err_message' AS err_message, (o->>'n')::bigint AS n, o->>'first_row' AS first_row \
     FROM (SELECT pg_catalog.current_setting('tenant_probe.outcome')::json AS o) t";

/// `sql` as a standard-conforming string literal (the probe's sessions keep
/// `standard_conforming_strings` on, PostgreSQL's default).
fn string_literal(sql: &str) -> String {
    format!("'{}'", sql.replace('\'', "''"))
}

/// What a statement run through a [`ProbeSession`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// It ran: `rows` rows returned (or affected, for a statement without rows), and the first
    /// row as JSON when rows were asked for.
    Ran {
        /// Rows returned or affected.
        rows: u64,
        /// The first row, as `row_to_json` text.
        first_row: Option<String>,
    },
    /// It was refused with an error.
    Refused {
        /// The five-character SQLSTATE, e.g. `42501`.
        sqlstate: String,
        /// The server's message (no DETAIL, which can carry values).
        message: String,
    },
}

#[derive(QueryableByName)]
struct ProbeRow {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ok: bool,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    err_state: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    err_message: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    n: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    first_row: Option<String>,
}

/// A session as the application role that runs arbitrary SQL inside one transaction that is
/// never committed: the leak probe's attacker (`tenant-probe`). It is an escape hatch by
/// design, named, with a written reason that `cargo xtask lint` lists.
///
/// Nothing sent through it can persist: the session opens a transaction at once, every
/// statement runs inside a `DO` block (where `COMMIT` is refused), [`restart`](Self::restart)
/// and drop roll back. Statements that change session state (`SET ROLE`, `set_config`) are
/// undone by [`rollback_to_savepoint`](Self::rollback_to_savepoint).
pub struct ProbeSession {
    conn: PgConnection,
    reason: &'static str,
    /// The server process of the current transaction.
    pid: i32,
    signing: Option<crate::context::ContextKey>,
    /// Set the org with `SET LOCAL` (Citus), not `set_config`.
    set_local: bool,
    statement_timeout_ms: u32,
}

impl std::fmt::Debug for ProbeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeSession")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl ProbeSession {
    /// Connects with `url` (the application role's credentials) for `reason`, and opens the
    /// transaction everything runs in. Statements time out after `statement_timeout_ms`, and
    /// wait at most a fifth of that for a lock, so a probe cannot stall a live database.
    ///
    /// # Errors
    /// [`TenantError::Connect`] when the database cannot be reached.
    pub fn connect(
        url: &str,
        reason: &'static str,
        statement_timeout_ms: u32,
    ) -> Result<Self, TenantError> {
        let conn = crate::establish(url)?;
        let mut session = Self {
            conn,
            reason,
            pid: 0,
            signing: None,
            set_local: false,
            statement_timeout_ms,
        };
        session.begin()?;
        Ok(session)
    }

    /// The reason given at `connect`.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// Signs the org context with `key` from now on (a database in the signed mode).
    pub fn sign_with(&mut self, key: crate::context::ContextKey) {
        self.signing = Some(key);
    }

    /// Sets the org with `SET LOCAL tenant.org_id = '<org>'` from now on, as a pool built with
    /// `set_local_context()` does (Citus sends `SET LOCAL` on to its workers, not
    /// `set_config`).
    pub fn set_local_context(&mut self) {
        self.set_local = true;
    }

    /// Sets the org for the rest of the transaction (or savepoint), as the library does:
    /// the setting, and with a key the signed token for this backend; `None` empties both.
    /// With [`set_local_context`](Self::set_local_context), `SET LOCAL` in a DO block of its
    /// own and no savepoint (Citus forgets a SET LOCAL made in a released savepoint, so the
    /// workers it connects to later would not get the org).
    ///
    /// # Errors
    /// A database error when the session failed; the outcome says whether it was refused.
    pub fn set_org(&mut self, org: Option<crate::OrgId>) -> Result<ProbeOutcome, TenantError> {
        let value = org.map(|o| o.to_string()).unwrap_or_default();
        let token = match (&self.signing, org) {
            (Some(key), Some(org)) => key.token(org, self.pid),
            _ => String::new(),
        };
        // Bound, not in the text: other sessions of the role read the text of this one's
        // statement in `pg_stat_activity`, and a token there is good on this backend until it
        // expires. In a savepoint of its own, so that a refusal leaves the transaction usable.
        use diesel::connection::SimpleConnection;
        use diesel::sql_types::Text;
        if self.set_local {
            // The value is an org id we formatted (hex digits and dashes) or empty.
            self.conn.batch_execute(&format!(
                "DO $$BEGIN SET LOCAL {} = '{value}'; END$$",
                crate::ORG_SETTING
            ))?;
            return Ok(ProbeOutcome::Ran {
                rows: 1,
                first_row: None,
            });
        }
        self.conn.batch_execute("SAVEPOINT tenant_probe_org")?;
        let set = diesel::RunQueryDsl::execute(
            diesel::sql_query("SELECT set_config($1, $2, true), set_config($3, $4, true)")
                .bind::<Text, _>(crate::ORG_SETTING)
                .bind::<Text, _>(&value)
                .bind::<Text, _>(crate::context::TOKEN_SETTING)
                .bind::<Text, _>(&token),
            &mut self.conn,
        );
        match set {
            Ok(_) => {
                self.conn
                    .batch_execute("RELEASE SAVEPOINT tenant_probe_org")?;
                Ok(ProbeOutcome::Ran {
                    rows: 1,
                    first_row: None,
                })
            }
            Err(diesel::result::Error::DatabaseError(_, info)) => {
                self.conn.batch_execute(
                    "ROLLBACK TO SAVEPOINT tenant_probe_org; RELEASE SAVEPOINT tenant_probe_org",
                )?;
                Ok(ProbeOutcome::Refused {
                    sqlstate: "-".into(),
                    message: info.message().to_owned(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    fn begin(&mut self) -> Result<(), TenantError> {
        use diesel::connection::SimpleConnection;
        // Timeouts per transaction (SET LOCAL), not per session: behind a transaction pooler
        // a session setting would reach other clients of the server connection.
        self.conn.batch_execute(&format!(
            "BEGIN; SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}",
            self.statement_timeout_ms,
            (self.statement_timeout_ms / 5).max(1)
        ))?;
        self.conn
            .batch_execute("SET LOCAL standard_conforming_strings = on")?;
        // Read inside the transaction: behind a transaction pooler, each transaction may run
        // on another server process, and a signed token names the one it runs on.
        self.pid = crate::context::Backend::read(&mut self.conn)?.pid();
        Ok(())
    }

    /// Runs `sql` and reports what happened. With `want_rows`, `sql` must be a query or a
    /// write with `RETURNING` (it is wrapped in a `WITH`), and the rows are counted; without,
    /// any statement runs and the rows it affected are counted.
    ///
    /// # Errors
    /// A database error only when the session itself failed (the statement's own error is
    /// a [`ProbeOutcome::Refused`]).
    pub fn try_sql(&mut self, sql: &str, want_rows: bool) -> Result<ProbeOutcome, TenantError> {
        use diesel::connection::SimpleConnection;
        if sql.contains("$tenant_probe$") {
            return Err(TenantError::Unscoped(crate::Violation::Unparsable(
                "the probe's statement may not contain $tenant_probe$, the tag of the block it runs in".into(),
            )));
        }
        self.conn.batch_execute(
            &PROBE_BLOCK
                .replace("{rows}", if want_rows { "true" } else { "false" })
                .replace("{stmt}", &string_literal(sql)),
        )?;
        let row: ProbeRow =
            diesel::RunQueryDsl::get_result(diesel::sql_query(OUTCOME_READ), &mut self.conn)?;
        Ok(if row.ok {
            ProbeOutcome::Ran {
                rows: u64::try_from(row.n.unwrap_or(0)).unwrap_or(0),
                first_row: row.first_row,
            }
        } else {
            ProbeOutcome::Refused {
                sqlstate: row.err_state.unwrap_or_default(),
                message: row.err_message.unwrap_or_default(),
            }
        })
    }

    /// Marks a point to come back to with [`rollback_to_savepoint`](Self::rollback_to_savepoint).
    ///
    /// # Errors
    /// A database error when the session failed.
    pub fn savepoint(&mut self) -> Result<(), TenantError> {
        use diesel::connection::SimpleConnection;
        Ok(self.conn.batch_execute("SAVEPOINT tenant_probe")?)
    }

    /// Undoes everything since the last [`savepoint`](Self::savepoint), session settings and
    /// role included.
    ///
    /// # Errors
    /// A database error when the session failed.
    pub fn rollback_to_savepoint(&mut self) -> Result<(), TenantError> {
        use diesel::connection::SimpleConnection;
        Ok(self
            .conn
            .batch_execute("ROLLBACK TO SAVEPOINT tenant_probe; RELEASE SAVEPOINT tenant_probe")?)
    }

    /// Rolls the transaction back and opens a new one: what the session sees afterwards is
    /// what a connection sees after an earlier transaction on it ended.
    ///
    /// # Errors
    /// A database error when the session failed.
    pub fn restart(&mut self) -> Result<(), TenantError> {
        use diesel::connection::SimpleConnection;
        self.conn.batch_execute("ROLLBACK")?;
        self.begin()
    }
}

impl Drop for ProbeSession {
    fn drop(&mut self) {
        use diesel::connection::SimpleConnection;
        // Closing the connection would roll back too; this makes it explicit and immediate.
        let _ = self.conn.batch_execute("ROLLBACK");
    }
}
