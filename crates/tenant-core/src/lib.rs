//! The runtime of tenant-safe: [`OrgId`], [`TenantPool`] and [`OrgScoped`].
//!
//! A tenant row is only reachable through an [`OrgScoped`] handle: a transaction in which the
//! session's org is set (transaction-locally, in the same round trip as `BEGIN`, as a token
//! signed with the service's key that the database verifies; see [`OrgContext`]), whose query
//! DSL adds the org filter to every statement. Row-level security in the database, generated
//! by `tenant-schema`, refuses cross-org rows even where the application layer is bypassed.
//!
//! ```no_run
//! # diesel::table! { invoices (id) { id -> Uuid, org_id -> Uuid, status -> Text } }
//! # tenant_lint::registry! { pub static REGISTRY; tenant invoices => org_id; }
//! use diesel::prelude::*;
//! use tenant_core::{OrgId, TenantPool, TenantError, context::ContextKey};
//!
//! // The service's context key (`kid:hex`, as `cargo xtask context-key rotate` prints it):
//! // the database verifies the org of every transaction with it.
//! let key = ContextKey::require_env("TENANT_CONTEXT_KEY")?;
//! let pool = TenantPool::builder("postgres://tenant_app@localhost/app", &REGISTRY, key).build()?;
//! let org: OrgId = "0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e".parse()?;
//! let overdue = pool.with_org(org, |s| {
//!     s.load::<uuid::Uuid, _>(
//!         s.query(invoices::table)
//!             .filter(invoices::status.eq("overdue"))
//!             .select(invoices::id),
//!     )
//! })?;
//! # Ok::<(), TenantError>(())
//! ```
//!
//! Only this crate touches a raw database connection (docs/design.md invariant 1).

pub mod admin;
#[cfg(feature = "async")]
mod async_manager;
#[cfg(feature = "async")]
mod async_pool;
#[cfg(feature = "async")]
mod async_scoped;
#[cfg(feature = "async")]
mod async_single;
pub mod cluster;
mod columns;
pub mod context;
mod dsl;
mod error;
pub mod keys;
mod manager;
mod opening;
pub mod operator;
mod org_context;
mod org_id;
mod plan;
mod pool;
mod raw_sql;
mod scoped;
mod startup;
pub mod subquery;
pub mod telemetry;
mod upsert;
mod verify;

#[cfg(feature = "async")]
pub use async_manager::{AsyncConnection, AsyncConnectionManager};
#[cfg(feature = "async")]
pub use async_pool::AsyncTenantPool;
#[cfg(feature = "async")]
pub use async_scoped::AsyncOrgScoped;
#[cfg(feature = "async")]
pub use async_single::OrgStatements;
pub use columns::{
    ChangesValuesProbe, OrgColumnProbe, ScopedChangeset, SetsOrgColumn, UpdateSetsOrgColumn,
};
/// The service's context key, also at [`context::ContextKey`]: what
/// [`TenantPool::builder`] takes in the default signed mode.
pub use context::ContextKey;
pub use dsl::{
    JoinRhs, OnWithOrg, OrFilterWidensScope, OrgPredicate, ScopedDelete, ScopedDeleteSource,
    ScopedGroupBy, ScopedInsert, ScopedInsertMany, ScopedQuery, ScopedSelect, ScopedSource,
    ScopedUpdate, ScopedUpdateSource, ScopedWrite, SqlTypeOf,
};
pub use error::{DbError, TenantError, Timeout};
pub use manager::{ManagerError, TenantConnectionManager};
pub use org_context::{IntoOrgContext, OrgContext};
pub use org_id::{OrgId, OrgIdError};
pub use pool::{TenantPool, TenantPoolBuilder};
pub use raw_sql::TenantSql;
pub use scoped::{Isolation, OrgScoped, Pooled, ScopedConnection};
pub use startup::UnsafeConfig;
pub use upsert::{
    ConflictAction, ConflictTarget, DoNothing, DoUpdate, Excluded, NoReturning, Returning,
    ReturningPart, ScopedConflict, ScopedConflictUpdate, Upsert, excluded,
};
pub use verify::CheckedStatement;

/// Raw SQL for what the DSL cannot express, checked at compile time: every registered tenant
/// table it reads must be constrained by `<table or alias>.<org column> = $org` (ANDed, in the
/// WHERE or its join's ON), an INSERT must put `$org` in the org column of every row, nothing
/// may assign the org column or write a global table, and `set_config` is refused. `$org` is
/// the session's org, bound by the library; `$1`, `$2`, ... are the values that follow, each as
/// `SqlType: value`. The tables are looked up in `crate::schema` unless
/// `in path::to::schema;` comes first.
///
/// ```no_run
/// # mod schema {
/// #     diesel::table! { invoices (id) { id -> Uuid, org_id -> Uuid, number -> Text, due_on -> Date, paid_on -> Nullable<Date> } }
/// #     tenant_lint::registry! { pub static REGISTRY; tenant invoices => org_id; }
/// # }
/// # fn main() -> Result<(), tenant_core::TenantError> {
/// use tenant_core::{OrgId, TenantPool, tenant_sql};
///
/// #[derive(diesel::QueryableByName)]
/// struct Overdue {
///     #[diesel(sql_type = diesel::sql_types::Text)]
///     number: String,
/// }
///
/// # let key = tenant_core::context::ContextKey::require_env("TENANT_CONTEXT_KEY")?;
/// let pool = TenantPool::builder("postgres://tenant_app@localhost/app", &schema::REGISTRY, key).build()?;
/// let org: OrgId = "0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e".parse()?;
/// let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap_or_default();
/// let rows: Vec<Overdue> = pool.with_org(org, |s| {
///     s.load_sql(tenant_sql!(
///         "SELECT i.number FROM invoices i \
///          WHERE i.org_id = $org AND i.paid_on IS NULL AND i.due_on < $1 \
///          ORDER BY i.due_on",
///         diesel::sql_types::Date: today
///     ))
/// })?;
/// # Ok(())
/// # }
/// ```
///
/// The compile-fail suite (`crates/tenant-lint/tests/compile-fail/tenant_sql_*`) shows each
/// refusal; the statement is also checked again, against the real binds, before it is sent.
pub use tenant_lint_macros::tenant_sql;

/// Derive beside `AsChangeset` on a struct used as the changes of a scoped update
/// (`s.update(table).set(&changes)`): it tells the compiler which columns the struct sets, so
/// that a struct that sets the org column does not compile.
///
/// It reads the same `#[diesel(...)]` attributes as `AsChangeset` (`table_name`,
/// `primary_key`, `column_name`, `skip_update`, `embed`; an embedded struct derives it too).
///
/// ```
/// use diesel::prelude::*;
/// use tenant_core::{OrgScoped, ScopedConnection, TenantChangeset, TenantError};
/// # mod schema {
/// #     diesel::table! { deals (id) { id -> Uuid, org_id -> Uuid, title -> Text, stage -> Text } }
/// #     tenant_lint::registry! { pub static REGISTRY; tenant deals => org_id; }
/// # }
/// use schema::deals;
///
/// #[derive(AsChangeset, TenantChangeset)]
/// #[diesel(table_name = deals)]
/// struct DealChanges<'a> {
///     title: Option<&'a str>,
///     stage: Option<&'a str>,
/// }
///
/// fn close_open_deals<C: ScopedConnection>(s: &mut OrgScoped<C>) -> Result<usize, TenantError> {
///     let changes = DealChanges { title: None, stage: Some("lost") };
///     s.execute(s.update(deals::table).filter(deals::stage.eq("open")).set(&changes))
/// }
/// ```
///
/// With an `org_id` field, the struct does not compile: "a scoped update sets the org column".
pub use tenant_lint_macros::TenantChangeset;

#[doc(hidden)]
pub mod __private {
    //! What `tenant_sql!` expands to refers to, and what the project's benchmark replays;
    //! not part of the API.
    pub use diesel;
    pub use tenant_lint::RegisteredTable;

    /// The message [`OrgScoped::begin`](crate::OrgScoped::begin) opens a transaction for
    /// `org` with (the benchmark sends it with plain diesel, to compare like with like).
    pub fn opening_message(org: crate::OrgId) -> String {
        crate::opening::Opening::Setting.message(crate::Isolation::ReadCommitted.begin(), org)
    }

    /// Whether `list` holds `item` (usable in `const` context).
    pub const fn contains(list: &[&str], item: &str) -> bool {
        let mut i = 0;
        while i < list.len() {
            if crate::columns::str_eq(list[i], item) {
                return true;
            }
            i += 1;
        }
        false
    }
}
pub use tenant_lint::{GlobalTable, RegisteredTable, Registry, TenantTable};
pub use tenant_sqlcheck::Violation;

/// The session setting that carries the org id (docs/design.md conventions).
pub const ORG_SETTING: &str = "tenant.org_id";

/// Opens one plain connection (the break-glass, admin and probe sessions; the pool's check),
/// mapping a failure to [`TenantError::Connect`].
pub(crate) fn establish(url: &str) -> Result<diesel::PgConnection, TenantError> {
    check_url(url)?;
    <diesel::PgConnection as diesel::Connection>::establish(url)
        .map_err(|e| TenantError::Connect(connect_message(&e.to_string(), url)))
}

/// Refuses a URL no connection can be made with, before trying.
pub(crate) fn check_url(url: &str) -> Result<(), TenantError> {
    if url.trim().is_empty() {
        return Err(TenantError::Connect(
            "the database URL is empty: pass a libpq URL such as postgres://tenant_app@host/db"
                .into(),
        ));
    }
    if url.contains('\0') {
        return Err(TenantError::Connect(
            "the database URL contains a NUL byte, which no libpq URL can hold".into(),
        ));
    }
    Ok(())
}

/// libpq's message about `url`, short and without the URL's password: libpq quotes the part
/// of a connection string it cannot parse, which may be long or hold a secret.
pub(crate) fn connect_message(message: &str, url: &str) -> String {
    const MAX: usize = 400;
    let mut message = message.to_owned();
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty());
    if let Some(password) = password {
        message = message.replace(password, "***");
    }
    if message.len() > MAX {
        let cut = (0..=MAX)
            .rev()
            .find(|&i| message.is_char_boundary(i))
            .unwrap_or(0);
        let dropped = message.len() - cut;
        message.truncate(cut);
        message.push_str(&format!(" [{dropped} more bytes]"));
    }
    message
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_connection_error_hides_the_password_and_is_cut_short() {
        let url = "postgres://tenant_app:s3cret-pw@db.internal/app";
        let message = super::connect_message(
            "could not connect to postgres://tenant_app:s3cret-pw@db.internal/app",
            url,
        );
        assert_eq!(
            message,
            "could not connect to postgres://tenant_app:***@db.internal/app"
        );
        let long = super::connect_message(
            &format!("missing \"=\" after \"{}\"", "é".repeat(1000)),
            "x",
        );
        assert!(long.len() < 450 && long.ends_with("more bytes]"), "{long}");
    }
}
