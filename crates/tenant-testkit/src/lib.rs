//! Test support: a fresh database per test on a real PostgreSQL server.
//!
//! The server is the one `DATABASE_URL` names (a role that can create roles and databases);
//! `cargo xtask test` starts a throwaway cluster and sets it. Each [`TestDb`] is its own
//! database, so tests run in parallel; it is dropped (`WITH (FORCE)`) when the value is.
//!
//! This crate is tooling, not library: it uses raw connections freely (docs/design.md invariant 1
//! binds the library crates).

#![allow(clippy::expect_used, clippy::panic)]

pub mod citus;
pub mod cluster;
#[cfg(feature = "differential")]
pub mod differential;
pub mod flight_proxy;
#[cfg(feature = "story")]
pub mod story;

use std::sync::atomic::{AtomicU32, Ordering};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;

/// The password the testkit gives every role it makes LOGIN (tests only).
pub const TEST_PASSWORD: &str = "tenant-safe-test";

/// The signed org context's key the tests use (`kid:hex` is [`TEST_CONTEXT_KEY`]): a database
/// whose migrations verify tokens (the default) gets it with [`TestDb::add_test_context_key`],
/// and a test's pool signs with `ContextKey::parse(TEST_CONTEXT_KEY)`.
pub const TEST_CONTEXT_KEY_ID: &str = "test";
/// The secret of [`TEST_CONTEXT_KEY_ID`] (32 bytes, tests only).
pub const TEST_CONTEXT_KEY_SECRET: [u8; 32] = [0x5a; 32];
/// The test key as a service configures it (`kid:hex`).
pub const TEST_CONTEXT_KEY: &str =
    "test:5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// Login roles the testkit creates for negative tests, each unsafe in one way.
pub mod roles {
    /// The application role (NOBYPASSRLS, owns nothing).
    pub const APP: &str = "tenant_app";
    /// A superuser.
    pub const SUPERUSER: &str = "ts_test_superuser";
    /// A role with BYPASSRLS.
    pub const BYPASSRLS: &str = "ts_test_bypassrls";
    /// A member of tenant_owner, so an owner of every tenant table.
    pub const OWNER_MEMBER: &str = "ts_test_owner_member";
    /// A member of the BYPASSRLS role (it can `SET ROLE` to it).
    pub const MEMBER_OF_BYPASSRLS: &str = "ts_test_member_of_bypassrls";
    /// A plain role that will own a table directly in the test that needs it.
    pub const PLAIN: &str = "ts_test_plain";
    /// A person's login, member of `tenant_operator` (break-glass access).
    pub const OPERATOR: &str = "ts_test_operator";
    /// A login that may read the access log, member of `tenant_auditor`.
    pub const AUDITOR: &str = "ts_test_auditor";
}

/// The admin URL: `DATABASE_URL`, or a panic that says how to get one.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: run the tests with `cargo xtask test`, which starts a \
             throwaway PostgreSQL cluster, or point DATABASE_URL at a server where this role can \
             create roles and databases"
        )
    })
}

/// `base` with another user, password and database.
///
/// Works for URLs (`postgres://...`, also `postgres:///db?host=/socket/dir`) and for libpq
/// key=value strings.
pub fn url_for(base: &str, user: &str, password: Option<&str>, dbname: &str) -> String {
    if base.starts_with("postgres://") || base.starts_with("postgresql://") {
        let mut url = url::Url::parse(base).expect("DATABASE_URL is not a valid URL");
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !matches!(k.as_ref(), "user" | "password" | "dbname"))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if url.has_host() && !url.host_str().unwrap_or_default().is_empty() {
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        url.set_path(&format!("/{dbname}"));
        {
            let mut q = url.query_pairs_mut();
            q.clear();
            for (k, v) in &kept {
                q.append_pair(k, v);
            }
            q.append_pair("user", user);
            if let Some(p) = password {
                q.append_pair("password", p);
            }
        }
        url.to_string()
    } else {
        // key=value: later keys override earlier ones.
        let mut s = format!("{base} user={user} dbname={dbname}");
        if let Some(p) = password {
            s.push_str(&format!(" password={p}"));
        }
        s
    }
}

/// Creates the roles every test database relies on, under an advisory lock (roles are
/// cluster-wide; parallel test processes would race). The lock is transaction-scoped: the
/// script runs as one implicit transaction, and a session lock released inside it would let
/// the next process update the role rows before this one commits ("tuple concurrently
/// updated").
pub fn ensure_roles(admin: &mut PgConnection) {
    let pw = TEST_PASSWORD;
    admin
        .batch_execute(&format!(
            "SELECT pg_advisory_xact_lock(7243001);
             DO $$
             BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tenant_owner') THEN
                 CREATE ROLE tenant_owner NOLOGIN;
               END IF;
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tenant_app') THEN
                 CREATE ROLE tenant_app NOLOGIN;
               END IF;
               ALTER ROLE tenant_app LOGIN PASSWORD '{pw}';
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{su}') THEN
                 CREATE ROLE {su} SUPERUSER LOGIN PASSWORD '{pw}';
               END IF;
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{by}') THEN
                 CREATE ROLE {by} BYPASSRLS LOGIN PASSWORD '{pw}';
               END IF;
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{om}') THEN
                 CREATE ROLE {om} LOGIN PASSWORD '{pw}' IN ROLE tenant_owner;
               END IF;
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{mb}') THEN
                 CREATE ROLE {mb} LOGIN PASSWORD '{pw}' IN ROLE {by};
               END IF;
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{pl}') THEN
                 CREATE ROLE {pl} LOGIN PASSWORD '{pw}';
               END IF;
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tenant_operator') THEN
                 CREATE ROLE tenant_operator NOLOGIN;
               END IF;
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tenant_auditor') THEN
                 CREATE ROLE tenant_auditor NOLOGIN;
               END IF;
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{op}') THEN
                 CREATE ROLE {op} LOGIN PASSWORD '{pw}' IN ROLE tenant_operator;
               END IF;
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{au}') THEN
                 CREATE ROLE {au} LOGIN PASSWORD '{pw}' IN ROLE tenant_auditor;
               END IF;
             END
             $$;",
            su = roles::SUPERUSER,
            by = roles::BYPASSRLS,
            om = roles::OWNER_MEMBER,
            mb = roles::MEMBER_OF_BYPASSRLS,
            pl = roles::PLAIN,
            op = roles::OPERATOR,
            au = roles::AUDITOR,
        ))
        .expect("creating the test roles failed: does the DATABASE_URL role have CREATEROLE?");
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database of its own for one test, dropped when this value is.
#[derive(Debug)]
pub struct TestDb {
    base: String,
    name: String,
}

impl TestDb {
    /// Creates an empty database named after `hint`, and the test roles, on the server of
    /// `DATABASE_URL`.
    pub fn new(hint: &str) -> Self {
        Self::on(&admin_url(), hint)
    }

    /// [`new`](Self::new) on the server of admin URL `base` (a cluster of the test's own).
    pub fn on(base: &str, hint: &str) -> Self {
        let base = base.to_owned();
        let mut admin = PgConnection::establish(&base)
            .unwrap_or_else(|e| panic!("cannot connect with the admin URL: {e}"));
        ensure_roles(&mut admin);
        let name = format!(
            "{}_{}_{}",
            database_prefix(hint),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .expect("CREATE DATABASE failed");
        Self { base, name }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL to this database as the admin role of `DATABASE_URL`.
    pub fn admin_url(&self) -> String {
        let mut admin = PgConnection::establish(&self.base).expect("connect");
        let user: String = diesel::select(diesel::dsl::sql::<Text>("current_user::text"))
            .get_result(&mut admin)
            .expect("current_user");
        let password = url::Url::parse(&self.base).ok().and_then(|u| {
            u.password().map(str::to_owned).or_else(|| {
                u.query_pairs()
                    .find(|(k, _)| k == "password")
                    .map(|(_, v)| v.into_owned())
            })
        });
        url_for(&self.base, &user, password.as_deref(), &self.name)
    }

    /// A URL to this database as `role` (one of [`roles`]).
    pub fn url_as(&self, role: &str) -> String {
        url_for(&self.base, role, Some(TEST_PASSWORD), &self.name)
    }

    /// A URL as the application role.
    pub fn app_url(&self) -> String {
        self.url_as(roles::APP)
    }

    /// A raw connection as the admin role.
    pub fn admin(&self) -> PgConnection {
        PgConnection::establish(&self.admin_url()).expect("admin connection to the test database")
    }

    /// Adds the test context key to the database (which must have the signed context's
    /// objects: the story's migrations, or any generated in the default mode).
    pub fn add_test_context_key(&self) {
        let hex: String = TEST_CONTEXT_KEY_SECRET
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.admin()
            .batch_execute(&format!(
                "SELECT tenant_context.add_key('{TEST_CONTEXT_KEY_ID}', '\\x{hex}')"
            ))
            .expect("adding the test context key (are the migrations in the signed mode?)");
    }

    /// A raw connection as `role`.
    pub fn connect_as(&self, role: &str) -> PgConnection {
        PgConnection::establish(&self.url_as(role))
            .unwrap_or_else(|e| panic!("cannot connect as {role}: {e}"))
    }

    /// Installs `ts_test.try_sql(sql)`, which runs `sql` with the caller's rights and returns
    /// `ok` or `SQLSTATE message`: diesel does not expose SQLSTATEs, and security tests assert
    /// the exact refusal.
    pub fn install_sqlstate_probe(&self) {
        self.admin()
            .batch_execute(
                "CREATE SCHEMA IF NOT EXISTS ts_test;
                 GRANT USAGE ON SCHEMA ts_test TO PUBLIC;
                 CREATE OR REPLACE FUNCTION ts_test.try_sql(sql text) RETURNS text
                 LANGUAGE plpgsql SECURITY INVOKER AS $$
                 BEGIN
                   EXECUTE sql;
                   RETURN 'ok';
                 EXCEPTION WHEN OTHERS THEN
                   RETURN SQLSTATE || ' ' || SQLERRM;
                 END
                 $$;",
            )
            .expect("installing ts_test.try_sql");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.base) {
            let _ = drop_database(&mut admin, &self.name);
        }
    }
}

/// `ts_` and `hint` made a database name: lowercase ASCII letters, digits and `_`, 30 at most.
fn database_prefix(hint: &str) -> String {
    let clean: String = hint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    format!("ts_{clean}")
}

fn drop_database(admin: &mut PgConnection, name: &str) -> QueryResult<()> {
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
}

/// Drops the databases that [`TestDb::new`] made for `hint` in processes that ended without
/// dropping them (a fuzzer ends without dropping its statics), on the server of
/// `DATABASE_URL`.
///
/// # Panics
/// When the server cannot be reached or a database cannot be dropped.
pub fn drop_leftovers(hint: &str) {
    #[derive(QueryableByName)]
    struct Leftover {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let mut admin = PgConnection::establish(&admin_url())
        .unwrap_or_else(|e| panic!("cannot connect with the admin URL: {e}"));
    // `_` is a wildcard to LIKE: escaped, the prefix matches itself.
    let pattern = format!("{}_", database_prefix(hint)).replace('_', "\\_") + "%";
    let leftovers =
        diesel::sql_query("SELECT datname::text AS name FROM pg_database WHERE datname LIKE $1")
            .bind::<Text, _>(pattern)
            .load::<Leftover>(&mut admin)
            .expect("listing leftover databases");
    for leftover in leftovers {
        drop_database(&mut admin, &leftover.name).expect("dropping a leftover database");
    }
}

/// Runs `sql` on `conn` through `ts_test.try_sql` and returns `ok` or `SQLSTATE message`.
pub fn try_sql(conn: &mut PgConnection, sql: &str) -> String {
    diesel::select(
        diesel::dsl::sql::<Text>("ts_test.try_sql(")
            .bind::<Text, _>(sql)
            .sql(")"),
    )
    .get_result(conn)
    .expect("calling ts_test.try_sql (did the test call install_sqlstate_probe?)")
}

#[cfg(test)]
mod tests {
    #[test]
    fn leftovers_of_a_hint_are_dropped_and_no_other_database() {
        use diesel::prelude::*;
        let exists = |name: &str| -> bool {
            let mut admin = diesel::PgConnection::establish(&super::admin_url()).unwrap();
            diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
                "EXISTS (SELECT FROM pg_database WHERE datname = '{name}')"
            )))
            .get_result(&mut admin)
            .unwrap()
        };
        // A process that ends without dropping its database (a fuzzer's static).
        let left = super::TestDb::new("leftover_probe");
        let left_name = left.name().to_owned();
        std::mem::forget(left);
        // A hint that differs where the other has `_`, which LIKE takes for any character.
        let near = super::TestDb::new("leftoverXprobe");
        super::drop_leftovers("leftover_probe");
        assert!(!exists(&left_name));
        assert!(exists(near.name()), "{}", near.name());
    }

    #[test]
    fn the_test_key_text_is_its_id_and_secret() {
        let hex: String = super::TEST_CONTEXT_KEY_SECRET
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            super::TEST_CONTEXT_KEY,
            format!("{}:{hex}", super::TEST_CONTEXT_KEY_ID)
        );
    }

    use super::*;

    #[test]
    fn url_for_rewrites_user_and_database_of_a_socket_url() {
        let u = url_for(
            "postgres:///postgres?host=%2Ftmp%2Fs&port=5999&user=postgres",
            "tenant_app",
            Some("pw"),
            "db1",
        );
        assert_eq!(
            u,
            "postgres:///db1?host=%2Ftmp%2Fs&port=5999&user=tenant_app&password=pw"
        );
    }

    #[test]
    fn url_for_moves_credentials_out_of_the_authority() {
        let u = url_for(
            "postgresql://admin:secret@localhost:5432/postgres",
            "tenant_app",
            None,
            "db2",
        );
        assert_eq!(u, "postgresql://localhost:5432/db2?user=tenant_app");
    }

    #[test]
    fn url_for_appends_to_key_value_strings() {
        let u = url_for("host=/tmp port=5 user=postgres", "x", Some("p"), "d");
        assert_eq!(
            u,
            "host=/tmp port=5 user=postgres user=x dbname=d password=p"
        );
    }
}
