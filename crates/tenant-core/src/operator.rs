//! Break-glass access for people: an [`OperatorSession`] reads one org's rows after a request
//! with a ticket, a reason and a time window was logged, through the functions the generated
//! migration installs (`tenant_audit.request_access`, `enter_access`); and [`access_log`]
//! reads that log back for the postmortem report.
//!
//! The database holds the line, not this module: the operator role sees no row without an
//! entered grant, whatever SQL it sends. This module makes the sanctioned path one call.
//!
//! ```no_run
//! use tenant_core::operator::{AccessRequest, OperatorSession};
//!
//! let org = "0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e".parse()?;
//! let mut s = OperatorSession::open(
//!     "postgres://alice@db/app",
//!     &AccessRequest::read(org, "OPS-4711", "customer reports missing invoices", 30),
//! )?;
//! #[derive(diesel::QueryableByName)]
//! struct N { #[diesel(sql_type = diesel::sql_types::BigInt)] n: i64 }
//! let rows: Vec<N> = s.load("SELECT count(*) AS n FROM invoices")?;
//! s.close()?;
//! # Ok::<(), tenant_core::TenantError>(())
//! ```

use diesel::connection::SimpleConnection;
use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text, Uuid as SqlUuid};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};

use crate::{OrgId, TenantError};

/// What an operator asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest<'a> {
    /// The org.
    pub org: OrgId,
    /// The ticket id, e.g. `OPS-4711`.
    pub ticket: &'a str,
    /// Why, in words (at least 10 characters).
    pub reason: &'a str,
    /// How long, in minutes (1 to the migration's maximum, 240 by default).
    pub minutes: i32,
    /// Write access too (logged as such).
    pub write: bool,
}

impl<'a> AccessRequest<'a> {
    /// Read access.
    pub fn read(org: OrgId, ticket: &'a str, reason: &'a str, minutes: i32) -> Self {
        Self {
            org,
            ticket,
            reason,
            minutes,
            write: false,
        }
    }

    /// Read and write access.
    pub fn write(org: OrgId, ticket: &'a str, reason: &'a str, minutes: i32) -> Self {
        Self {
            write: true,
            ..Self::read(org, ticket, reason, minutes)
        }
    }
}

#[derive(QueryableByName)]
struct Requested {
    #[diesel(sql_type = Nullable<BigInt>)]
    grant_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    refusal: Option<String>,
}

#[derive(QueryableByName)]
struct Entered {
    #[diesel(sql_type = Nullable<Text>)]
    mode: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    expires_at: Option<String>,
    #[diesel(sql_type = Nullable<Integer>)]
    remaining_ms: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    refusal: Option<String>,
    #[diesel(sql_type = Bool)]
    other_org: bool,
}

/// Asks for access; the request is logged (granted or refused) and committed. Returns the
/// grant id.
///
/// # Errors
/// [`TenantError::AccessRefused`] with the reason (an empty or short reason, a malformed
/// ticket, a window that is empty, expired or too long, an unknown org; all logged; and,
/// refused before sending, so not logged: a NUL byte, a ticket over [`MAX_TICKET`] or a reason
/// over [`MAX_REASON`] characters); a database error when the operator role may not call the
/// function (not a member of `tenant_operator`).
pub fn request(url: &str, request: &AccessRequest<'_>) -> Result<i64, TenantError> {
    let mut conn = crate::establish(url)?;
    request_on(&mut conn, request)
}

/// The longest ticket id and reason a request may carry.
pub const MAX_TICKET: usize = 100;
/// See [`MAX_TICKET`].
pub const MAX_REASON: usize = 2000;

/// What the client refuses before sending: text the database could not store (a NUL byte) or
/// that would flood the log. Not logged, since it never reaches the database.
fn refuse_unsendable(r: &AccessRequest<'_>) -> Result<(), TenantError> {
    let refuse = |why: String| Err(TenantError::AccessRefused(why));
    for (what, text, max) in [
        ("ticket", r.ticket, MAX_TICKET),
        ("reason", r.reason, MAX_REASON),
    ] {
        if text.contains('\0') {
            return refuse(format!(
                "the {what} contains a NUL byte, which the access log cannot store: remove it"
            ));
        }
        let chars = text.chars().count();
        if chars > max {
            return refuse(format!(
                "the {what} has {chars} characters, more than {max}: put the details in the ticket"
            ));
        }
    }
    Ok(())
}

fn request_on(conn: &mut PgConnection, r: &AccessRequest<'_>) -> Result<i64, TenantError> {
    refuse_unsendable(r)?;
    let row: Requested = diesel::sql_query(
        "SELECT grant_id, refusal FROM tenant_audit.request_access($1, $2, $3, $4, $5)",
    )
    .bind::<SqlUuid, _>(r.org.as_uuid())
    .bind::<Text, _>(r.ticket)
    .bind::<Text, _>(r.reason)
    .bind::<Integer, _>(r.minutes)
    .bind::<Bool, _>(r.write)
    .get_result(conn)?;
    match (row.grant_id, row.refusal) {
        (Some(id), None) => Ok(id),
        (_, refusal) => Err(TenantError::AccessRefused(
            refusal.unwrap_or_else(|| "no grant was issued".into()),
        )),
    }
}

/// A transaction of an operator inside one org, entered from a logged grant. Reads (and, with
/// a write grant, writes) reach that org's rows only; the window bounds every statement.
pub struct OperatorSession {
    conn: PgConnection,
    grant: i64,
    org: OrgId,
    write: bool,
    expires_at: String,
    statements: u64,
    open: bool,
}

impl std::fmt::Debug for OperatorSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorSession")
            .field("grant", &self.grant)
            .field("org", &self.org)
            .field("write", &self.write)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl OperatorSession {
    /// Requests access and enters it: the one call for break-glass access.
    ///
    /// # Errors
    /// As [`request`] and [`enter`](Self::enter).
    pub fn open(url: &str, r: &AccessRequest<'_>) -> Result<Self, TenantError> {
        let mut conn = crate::establish(url)?;
        let grant = request_on(&mut conn, r)?;
        Self::enter_on(conn, grant, r.org)
    }

    /// Enters grant `grant` (requested earlier by the same login) for org `org`.
    ///
    /// # Errors
    /// [`TenantError::AccessRefused`] when the grant is not this login's, is for another org,
    /// or has expired (each refusal logged).
    pub fn enter(url: &str, grant: i64, org: OrgId) -> Result<Self, TenantError> {
        let conn = crate::establish(url)?;
        Self::enter_on(conn, grant, org)
    }

    fn enter_on(mut conn: PgConnection, grant: i64, org: OrgId) -> Result<Self, TenantError> {
        conn.batch_execute("BEGIN")?;
        let row: Entered = diesel::sql_query(
            "SELECT e.mode, e.expires_at::text AS expires_at, \
                    greatest(1, (extract(epoch FROM e.expires_at - clock_timestamp()) * 1000)::int) AS remaining_ms, \
                    e.refusal, (e.org IS DISTINCT FROM $2) AS other_org \
               FROM tenant_audit.enter_access($1) e",
        )
        .bind::<BigInt, _>(grant)
        .bind::<SqlUuid, _>(org.as_uuid())
        .get_result(&mut conn)?;
        if let Some(refusal) = row.refusal {
            // enter_access logged the refusal: keep that entry.
            conn.batch_execute("COMMIT")?;
            return Err(TenantError::AccessRefused(refusal));
        }
        if row.other_org {
            // Nothing read yet: undo the entry, and say so.
            conn.batch_execute("ROLLBACK")?;
            return Err(TenantError::AccessRefused(format!(
                "grant {grant} is for another org than {org}"
            )));
        }
        // No statement may outlive the window.
        conn.batch_execute(&format!(
            "SET LOCAL statement_timeout = {}",
            row.remaining_ms.unwrap_or(1)
        ))?;
        let mut session = Self {
            conn,
            grant,
            org,
            write: row.mode.as_deref() == Some("write"),
            expires_at: row.expires_at.unwrap_or_default(),
            statements: 0,
            open: true,
        };
        if is_citus(&mut session.conn)? && !session.org_has_rows()? {
            // On Citus the request could not check the org (docs/scale-out.md): the entry
            // and its end stay in the log, with why.
            let why = format!("unknown org {org}: it has no rows in any tenant table");
            session.record(
                "closed",
                &format!("{why}; checked after entering, nothing read"),
            )?;
            session.conn.batch_execute("COMMIT")?;
            session.open = false;
            return Err(TenantError::AccessRefused(why));
        }
        Ok(session)
    }

    /// Whether the entered org has a row in a table the operator's policies guard (read
    /// through them: the grant's org only).
    fn org_has_rows(&mut self) -> Result<bool, TenantError> {
        #[derive(QueryableByName)]
        struct Table {
            #[diesel(sql_type = Text)]
            name: String,
        }
        let tables: Vec<Table> = diesel::sql_query(
            "SELECT DISTINCT p.polrelid::regclass::text AS name FROM pg_catalog.pg_policy p \
              WHERE p.polpermissive AND p.polcmd IN ('r', '*') \
                AND EXISTS (SELECT FROM unnest(p.polroles) r(oid) \
                             WHERE r.oid <> 0 AND pg_catalog.pg_has_role(current_user, r.oid, 'USAGE')) \
              ORDER BY 1",
        )
        .load(&mut self.conn)?;
        #[derive(QueryableByName)]
        struct Found {
            #[diesel(sql_type = Bool)]
            found: bool,
        }
        for t in tables {
            let f: Found = diesel::sql_query(format!(
                // `SELECT 1`: Citus 13.2 plans an empty target list here as an intermediate
                // result it cannot read ("a column definition list is required").
                "SELECT EXISTS (SELECT 1 FROM {} LIMIT 1) AS found",
                t.name
            ))
            .get_result(&mut self.conn)?;
            if f.found {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The grant entered.
    pub fn grant(&self) -> i64 {
        self.grant
    }

    /// The org.
    pub fn org(&self) -> OrgId {
        self.org
    }

    /// Whether the grant allows writes.
    pub fn can_write(&self) -> bool {
        self.write
    }

    /// When the window ends (PostgreSQL's text of a `timestamptz`).
    pub fn expires_at(&self) -> &str {
        &self.expires_at
    }

    /// Runs a query; rows of other orgs are invisible to it.
    ///
    /// # Errors
    /// A database error (a statement that outlives the window is cancelled).
    pub fn load<U>(&mut self, sql: &str) -> Result<Vec<U>, TenantError>
    where
        U: QueryableByName<Pg> + 'static,
    {
        operator_sql(sql)?;
        self.guarded(|conn| diesel::sql_query(sql).load(conn))
    }

    /// Runs a write; refused without a write grant (here, and by the policies).
    ///
    /// # Errors
    /// [`TenantError::AccessRefused`] on a read grant; a database error otherwise.
    pub fn execute(&mut self, sql: &str) -> Result<usize, TenantError> {
        if !self.write {
            return Err(TenantError::AccessRefused(format!(
                "grant {} is read-only: request write access (logged as such)",
                self.grant
            )));
        }
        operator_sql(sql)?;
        self.guarded(|conn| diesel::sql_query(sql).execute(conn))
    }

    /// Runs one of the operator's statements in a savepoint: a statement that fails (a typo,
    /// a constraint, the window's timeout) is undone alone, and the session goes on, its
    /// `entered` entry and what it did before still in the transaction that `close` commits.
    /// Without it one failed statement would abort the transaction and take the log of the
    /// session with it.
    fn guarded<R>(
        &mut self,
        run: impl FnOnce(&mut PgConnection) -> diesel::QueryResult<R>,
    ) -> Result<R, TenantError> {
        self.statements += 1;
        self.conn.batch_execute("SAVEPOINT operator_statement")?;
        match run(&mut self.conn) {
            Ok(value) => {
                self.conn
                    .batch_execute("RELEASE SAVEPOINT operator_statement")?;
                Ok(value)
            }
            Err(e) => {
                self.conn
                    .batch_execute("ROLLBACK TO SAVEPOINT operator_statement")?;
                Err(e.into())
            }
        }
    }

    /// Records `event` (`purged`) with `detail` in the log, in this transaction.
    ///
    /// # Errors
    /// A database error.
    pub fn record(&mut self, event: &str, detail: &str) -> Result<(), TenantError> {
        diesel::sql_query("SELECT tenant_audit.record_event($1, $2)::text")
            .bind::<Text, _>(event)
            .bind::<Text, _>(detail)
            .execute(&mut self.conn)?;
        Ok(())
    }

    /// Logs the end of the session and commits (writes, with a write grant, included).
    ///
    /// # Errors
    /// A database error; the transaction is then rolled back.
    pub fn close(mut self) -> Result<(), TenantError> {
        let detail = format!("{} statements", self.statements);
        self.record("closed", &detail)?;
        self.conn.batch_execute("COMMIT")?;
        self.open = false;
        Ok(())
    }
}

impl Drop for OperatorSession {
    fn drop(&mut self) {
        if self.open {
            // Not closed: nothing of this transaction stays (the grant was logged before).
            let _ = self.conn.batch_execute("ROLLBACK");
        }
    }
}

/// One entry of the access log.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct AccessEntry {
    /// Its id.
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    /// When (RFC 3339).
    #[diesel(sql_type = Text)]
    pub at: String,
    /// `granted`, `refused`, `entered`, `closed` or `purged`.
    #[diesel(sql_type = Text)]
    pub event: String,
    /// The login.
    #[diesel(sql_type = Text)]
    pub operator: String,
    /// The ticket.
    #[diesel(sql_type = Nullable<Text>)]
    pub ticket: Option<String>,
    /// The reason given.
    #[diesel(sql_type = Nullable<Text>)]
    pub reason: Option<String>,
    /// `read` or `write`.
    #[diesel(sql_type = Nullable<Text>)]
    pub mode: Option<String>,
    /// End of the window (RFC 3339).
    #[diesel(sql_type = Nullable<Text>)]
    pub expires_at: Option<String>,
    /// The grant an event belongs to.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub grant_id: Option<i64>,
    /// A refusal's reason, a session's statement count, a purge's receipt.
    #[diesel(sql_type = Nullable<Text>)]
    pub detail: Option<String>,
}

/// The access log for `org` since `since` (RFC 3339, or everything), oldest first. `url` is a
/// role that may read the log (`tenant_auditor`, or an administrator).
///
/// # Errors
/// A database error (permission denied for a role that may not read the log).
pub fn access_log(
    url: &str,
    org: OrgId,
    since: Option<&str>,
) -> Result<Vec<AccessEntry>, TenantError> {
    let mut conn = crate::establish(url)?;
    Ok(diesel::sql_query(
        "SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS at, event, operator, ticket, reason, mode, \
                to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS expires_at, \
                coalesce(grant_id, CASE WHEN event = 'granted' THEN id END) AS grant_id, detail \
           FROM tenant_audit.access_log \
          WHERE target_org = $1 AND at >= coalesce($2::timestamptz, '-infinity') \
          ORDER BY id",
    )
    .bind::<SqlUuid, _>(org.as_uuid())
    .bind::<Nullable<Text>, _>(since)
    .load(&mut conn)?)
}

/// The function policy of the scoped path, for what a person sends through a break-glass
/// session: one DML statement, PostgreSQL's own parser agreeing on its names, and only
/// functions known to run no SQL of their own, change no setting and read nothing by name
/// (`query_to_xml`, `set_config`, `dblink`, `lo_*`, `pg_read_file` ... are refused). No org
/// predicate is asked for: row-level security confines the operator to the granted org.
fn operator_sql(sql: &str) -> Result<(), TenantError> {
    let requirements = tenant_sqlcheck::requirements_with_builtins_only(sql, &|_| false)
        .map_err(TenantError::Unscoped)?;
    // The server's own relations (`pg_settings`, whose UPDATE is `set_config`;
    // `pg_stat_activity`, which shows other sessions' statements), readable by every role
    // without a grant: the break-glass session reads and writes the service's tables only.
    use tenant_sqlcheck::Requirement as R;
    if let Some(table) = requirements.iter().find_map(|r| match r {
        R::Read { table, .. }
        | R::Write { table, .. }
        | R::Insert { table, .. }
        | R::ConflictTarget { table, .. }
            if table.starts_with("pg_") || table.contains('.') =>
        {
            Some(table)
        }
        _ => None,
    }) {
        return Err(TenantError::Unscoped(
            tenant_sqlcheck::Violation::UnregisteredTable {
                table: table.clone(),
            },
        ));
    }
    Ok(())
}
/// Whether the database is a Citus coordinator (break-glass access checks the org after
/// entering there: docs/scale-out.md).
fn is_citus(conn: &mut PgConnection) -> Result<bool, TenantError> {
    #[derive(diesel::QueryableByName)]
    struct Flag {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        citus: bool,
    }
    let f: Flag = diesel::sql_query(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') AS citus",
    )
    .get_result(conn)?;
    Ok(f.citus)
}
