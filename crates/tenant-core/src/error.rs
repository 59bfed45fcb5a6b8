//! [`TenantError`], every way a tenant-scoped operation can fail.
//!
//! Invariant: no error carries row data or bound values. Database messages are reduced to
//! their class (see [`DbError`]); org ids appear only where the caller already holds them.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::OrgIdError;
use crate::startup::UnsafeConfig;

/// Everything that can go wrong in `tenant-core`.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// The session has no org context (or lost it), so no tenant row can be read or written.
    #[error(
        "no org context on this database session: tenant rows are only reachable through an \
         OrgScoped handle (`pool.with_org(org, |s| ...)`)"
    )]
    NoOrgContext,
    /// The org context of the session is no longer the one the handle was opened for
    /// (something ran `set_config` or `SET LOCAL` inside the transaction).
    #[error(
        "the session's org context was changed inside a scoped transaction: the transaction was \
         rolled back; never call set_config/SET on tenant.org_id from application SQL"
    )]
    OrgContextChanged,
    /// Row-level security refused a write: the row would belong to another org than the
    /// session's (SQLSTATE 42501, "new row violates row-level security policy").
    #[error(
        "write refused by row-level security on table `{table}`: the row would belong to another \
         org than the session's; writes can only target the org the handle was opened for"
    )]
    CrossOrgWrite {
        /// The table the write targeted, as reported by the server.
        table: String,
    },
    /// A scoped query was run on a handle scoped to another org.
    #[error(
        "a scoped query built for one org was run on a handle scoped to another org: build each \
         query from the handle that runs it"
    )]
    OrgMismatch,
    /// The handle a savepoint's (or `with_org`'s) closure was given was swapped or replaced with
    /// another (`std::mem::swap`, `std::mem::replace`): nothing was committed for either; the
    /// savepoint was left open on the handle it was opened on, which then refuses to commit,
    /// and `with_org` rolled back the handle it found in its place.
    #[error(
        "the handle given to a closure (savepoint, with_org) was swapped or replaced with another \
         handle: nothing was committed for either (a savepoint stays open on the handle it was \
         opened on, which refuses to commit; with_org rolled back the handle it found in its \
         place); use the handle the closure is given, never exchange it"
    )]
    HandleSwapped,
    /// A statement failed earlier in this transaction, so the database aborted it; the handle
    /// refuses to commit (PostgreSQL would silently roll back) and rolls back instead.
    #[error(
        "the transaction was aborted by an earlier failed statement and has been rolled back; \
         nothing in it was committed: retry the whole unit of work"
    )]
    TransactionAborted,
    /// The statement was refused before it was sent: it does not confine every tenant table to
    /// the handle's org (an unscoped subquery, a `set_config` call, an assignment of the org
    /// column, ...).
    #[error("refused before sending: {0}")]
    Unscoped(tenant_sqlcheck::Violation),
    /// The database role or schema is not safe for tenant use; the pool refuses to start.
    #[error("refusing to start: {0}")]
    UnsafeConfig(#[from] UnsafeConfig),
    /// An org id could not be parsed.
    #[error(transparent)]
    OrgId(#[from] OrgIdError),
    /// The pool could not hand out a connection in time.
    #[error("no database connection available: {0}")]
    Pool(String),
    /// The database could not be reached.
    #[error("cannot connect to the database: {0}")]
    Connect(String),

    /// The connection carried state from an earlier transaction that the opening message
    /// does not undo (an org or token set at session level, a temporary object, a statement
    /// prepared with SQL `PREPARE`) when a scoped transaction was to open on it; it was not
    /// used, and the pool discards it.
    #[error(
        "the connection carried state from an earlier transaction (an org or token set at session level, a temporary object, or a statement prepared with SQL PREPARE, by code outside the library): it was not used and is discarded"
    )]
    SessionContextLeft,

    /// A signed-context key is unusable.
    #[error("unusable context key: {0}")]
    ContextKey(String),

    /// A migration of the service's migrations directory could not be read or failed; the
    /// failing one was rolled back, those before it stay applied.
    #[error("migrations: {0}")]
    Migration(String),

    /// Options of the pool's builder that cannot hold together (one would be silently
    /// ignored); the pool refuses to start.
    #[error("conflicting pool options: {0}")]
    ConflictingOptions(String),

    /// Break-glass access was refused (the refusal is in the access log).
    #[error("access refused: {0}")]
    AccessRefused(String),
    /// The connection to the server was lost inside a scoped transaction, before its COMMIT
    /// was sent: the server rolls such a transaction back, so nothing of it stays.
    #[error(
        "the connection to the server was lost inside a scoped transaction (a server restart, \
         pg_terminate_backend, or idle_in_transaction_session_timeout); nothing in the \
         transaction was committed and the pool drops the connection: retry the whole unit of \
         work"
    )]
    ConnectionLost,
    /// The connection was lost while the COMMIT was in flight: the transaction may or may not
    /// have been committed.
    #[error(
        "the connection to the server was lost while the transaction was committing: it may or \
         may not have been committed; check for its effects before doing it again"
    )]
    CommitOutcomeUnknown,
    /// The server cancelled a statement for one of its timeouts; the transaction was rolled
    /// back. (`idle_in_transaction_session_timeout` closes the connection instead: the client
    /// sees [`ConnectionLost`](Self::ConnectionLost).)
    #[error(transparent)]
    Timeout(#[from] Timeout),
    /// Any other database error, reduced to its class.
    #[error(transparent)]
    Database(#[from] DbError),
}

/// Which server timeout ended the work ([`TenantError::Timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Timeout {
    /// `statement_timeout` (SQLSTATE 57014): the statement was cancelled, the transaction
    /// rolled back; the connection is fine.
    #[error(
        "a statement ran longer than statement_timeout and was cancelled; the transaction was \
         rolled back: make the query cheaper (an index, a narrower filter) or raise \
         statement_timeout for this role"
    )]
    Statement,
    /// `lock_timeout` (SQLSTATE 55P03): a lock was not granted in time; the transaction was
    /// rolled back, and retrying later may succeed.
    #[error(
        "a statement waited longer than lock_timeout for a lock and was cancelled; the \
         transaction was rolled back: retry later, or find what holds the lock"
    )]
    Lock,
}

/// A database error stripped of anything that may carry row data or bound values.
///
/// PostgreSQL puts offending values in the DETAIL field ("Key (email)=(a@b.c) already exists")
/// and, for input errors, after a colon in the message ("invalid input syntax for type uuid:
/// \"...\""). This type keeps the kind, the constraint and table names, and the message up to
/// its first `": "`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("database error ({kind}): {message}{}", constraint.as_ref().map(|c| format!(" [constraint {c}]")).unwrap_or_default())]
pub struct DbError {
    /// The error class, e.g. `unique violation`.
    pub kind: &'static str,
    /// The server's message with any value-bearing suffix removed.
    pub message: String,
    /// The violated constraint, when the server names one.
    pub constraint: Option<String>,
    /// The table involved, when the server names one.
    pub table: Option<String>,
}

const RLS_WRITE_REFUSED: &str = "new row violates row-level security policy";

impl From<DieselError> for TenantError {
    fn from(err: DieselError) -> Self {
        match err {
            DieselError::DatabaseError(kind, info) => {
                let message = info.message();
                if let Some(rest) = message.strip_prefix(RLS_WRITE_REFUSED) {
                    return TenantError::CrossOrgWrite {
                        table: rls_table(info.as_ref(), rest),
                    };
                }
                if message.starts_with("current transaction is aborted") {
                    return TenantError::TransactionAborted;
                }
                if let Some(timeout) = timeout_of(message) {
                    return TenantError::Timeout(timeout);
                }
                // diesel-async (tokio-postgres) reports a socket the server closed, and any
                // other failure to reach it, as `UnableToSendCommand` ("connection closed").
                if matches!(
                    kind,
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand
                ) || message.starts_with("server closed the connection unexpectedly")
                    || message.starts_with("terminating connection due to administrator command")
                {
                    return TenantError::ConnectionLost;
                }
                TenantError::Database(DbError {
                    kind: kind_name(&kind),
                    message: redact(message),
                    constraint: info.constraint_name().map(str::to_owned),
                    table: info.table_name().map(str::to_owned),
                })
            }
            DieselError::NotFound => TenantError::Database(DbError {
                kind: "not found",
                message: "the query returned no row".to_owned(),
                constraint: None,
                table: None,
            }),
            other => TenantError::Database(DbError {
                kind: "client",
                message: redact(&other.to_string()),
                constraint: None,
                table: None,
            }),
        }
    }
}

impl TenantError {
    /// Whether retrying the whole transaction may succeed: a serialization failure (40001), a
    /// deadlock (40P01), or a connection lost before COMMIT was sent
    /// ([`ConnectionLost`](Self::ConnectionLost)), where the transaction was rolled back and
    /// nothing of it stayed. Nothing else is retryable: a refusal, a constraint violation, a
    /// timeout or a connection lost mid-commit ([`CommitOutcomeUnknown`](Self::CommitOutcomeUnknown))
    /// may not be repeated blindly.
    pub fn is_retryable(&self) -> bool {
        match self {
            // Lost before COMMIT was sent: the server rolled the transaction back.
            TenantError::ConnectionLost => true,
            TenantError::Database(DbError { kind, message, .. }) => {
                *kind == "serialization failure" || message.starts_with("deadlock detected")
            }
            _ => false,
        }
    }

    /// Whether the server no longer has a statement diesel prepared on this connection (SQL
    /// such as `DEALLOCATE ALL` removed it): every later use of it on the connection fails.
    pub(crate) fn is_missing_prepared_statement(&self) -> bool {
        matches!(
            self,
            TenantError::Database(DbError { message, .. })
                if message.starts_with("prepared statement \"") && message.ends_with("\" does not exist")
        )
    }

    /// Whether this is the "no row" outcome of `get_result`.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            TenantError::Database(DbError {
                kind: "not found",
                ..
            })
        )
    }
}

/// The timeout a server message reports (the messages are PostgreSQL's, `lc_messages` C).
fn timeout_of(message: &str) -> Option<Timeout> {
    if message.starts_with("canceling statement due to statement timeout") {
        Some(Timeout::Statement)
    } else if message.starts_with("canceling statement due to lock timeout") {
        Some(Timeout::Lock)
    } else {
        None
    }
}

/// The table of an RLS refusal: `... policy "p" for table "t"` (restrictive policy named) or
/// `... policy for table "t"`. The table name is schema, not data.
fn rls_table(
    info: &(dyn diesel::result::DatabaseErrorInformation + Send + Sync),
    rest: &str,
) -> String {
    info.table_name()
        .map(str::to_owned)
        .or_else(|| {
            let after = rest.split_once("for table \"")?.1;
            after.split_once('"').map(|(t, _)| t.to_owned())
        })
        .unwrap_or_else(|| "?".to_owned())
}

fn kind_name(kind: &DatabaseErrorKind) -> &'static str {
    match kind {
        DatabaseErrorKind::UniqueViolation => "unique violation",
        DatabaseErrorKind::ForeignKeyViolation => "foreign key violation",
        DatabaseErrorKind::NotNullViolation => "not-null violation",
        DatabaseErrorKind::CheckViolation => "check violation",
        DatabaseErrorKind::SerializationFailure => "serialization failure",
        DatabaseErrorKind::ReadOnlyTransaction => "read-only transaction",
        DatabaseErrorKind::ClosedConnection => "closed connection",
        DatabaseErrorKind::UnableToSendCommand => "unable to send command",
        _ => "database",
    }
}

/// Keeps a server message up to the first `": "`, where PostgreSQL appends offending input.
pub(crate) fn redact(message: &str) -> String {
    match message.find(": ") {
        Some(i) => format!("{}: <redacted>", &message[..i]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rls_refusals_name_the_table_not_the_policy() {
        struct Info(&'static str);
        impl diesel::result::DatabaseErrorInformation for Info {
            fn message(&self) -> &str {
                self.0
            }
            fn details(&self) -> Option<&str> {
                None
            }
            fn hint(&self) -> Option<&str> {
                None
            }
            fn table_name(&self) -> Option<&str> {
                None
            }
            fn column_name(&self) -> Option<&str> {
                None
            }
            fn constraint_name(&self) -> Option<&str> {
                None
            }
            fn statement_position(&self) -> Option<i32> {
                None
            }
        }
        for message in [
            r#"new row violates row-level security policy "tenant_isolation" for table "orgs""#,
            r#"new row violates row-level security policy for table "orgs""#,
        ] {
            let err = TenantError::from(DieselError::DatabaseError(
                DatabaseErrorKind::Unknown,
                Box::new(Info(message)),
            ));
            assert!(
                matches!(&err, TenantError::CrossOrgWrite { table } if table == "orgs"),
                "{err:?}"
            );
        }
    }

    #[test]
    fn redaction_drops_the_value_after_the_colon() {
        assert_eq!(
            redact(r#"invalid input syntax for type uuid: "secret-value""#),
            "invalid input syntax for type uuid: <redacted>"
        );
        assert_eq!(
            redact(r#"relation "invoices" does not exist"#),
            r#"relation "invoices" does not exist"#
        );
    }
}
