//! Session state, attacked through a pool of one connection. Org A's transaction sends
//! arbitrary SQL (the escape hatch stands in for an injection or a bug) to leave something in
//! the session; org B's transaction then runs ordinary scoped code on that connection; then A
//! collects, in its next transaction and from another session of the role. For every kind of
//! state the application role can create by SQL the outcome is exact:
//!
//! - **refused**: the plant itself fails, with the privilege's message (objects of any kind,
//!   temporary ones and large objects included);
//! - **undone**: B's transaction runs on the same backend and sees the role's defaults
//!   (settings, an org or token at session level, role, cursors, LISTEN, advisory locks,
//!   sequence values);
//! - **discarded**: the opening refuses the connection and B's transaction runs on a new
//!   backend (a temporary schema, a statement prepared with SQL `PREPARE` under the name of
//!   one of diesel's);
//!
//! and in every case B's scoped code sees exactly B's rows, and nothing of B (its rows, its org
//! id, its token) reaches A: not A's next transaction, not `pg_stat_activity` as another
//! session of the role reads it between the two. Both context modes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Mode, org};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use tenant_core::{OrgId, TenantError, TenantPool};
use tenant_testkit::roles;
use two_companies::schema::customers;

/// What becomes of a kind of session state.
#[derive(Debug, Clone, Copy)]
enum Fate {
    /// Planting it fails; the error contains this.
    Refused(&'static str),
    /// The next opening undoes it: on the same backend, `seen` (run in a transaction of B's)
    /// returns `expected`.
    Undone {
        seen: &'static str,
        expected: &'static str,
    },
    /// The next opening refuses the connection: B's transaction runs on a new backend.
    Discarded,
}

/// How A plants the state.
#[derive(Debug, Clone, Copy)]
enum Plant {
    /// This SQL, in A's transaction, which then commits.
    Sql(&'static str),
    /// A's statement replaces the one diesel prepared for B's query (found in
    /// `pg_prepared_statements`) with one that copies B's token and rows into settings every
    /// session of the role can read (`application_name`) and the next transaction could.
    HijackPrepared,
}

struct Kind {
    name: &'static str,
    /// Run as the admin after the pool started (a misconfiguration, a fixture).
    setup: &'static str,
    plant: Plant,
    fate: Fate,
}

const KINDS: &[Kind] = &[
    Kind {
        name: "a custom setting carrying data to the next transaction",
        setup: "",
        plant: Plant::Sql("SELECT set_config('spy.loot', 'planted', false)"),
        fate: Fate::Undone {
            seen: "SELECT coalesce(current_setting('spy.loot', true), 'unset')",
            expected: "",
        },
    },
    Kind {
        name: "a search path that puts temporary objects first",
        setup: "",
        plant: Plant::Sql("SET search_path = pg_temp, public"),
        fate: Fate::Undone {
            seen: "SELECT current_setting('search_path')",
            expected: "public, pg_temp",
        },
    },
    Kind {
        name: "string literals read with backslash escapes",
        setup: "",
        plant: Plant::Sql("SET standard_conforming_strings = off"),
        fate: Fate::Undone {
            seen: "SELECT current_setting('standard_conforming_strings')",
            expected: "on",
        },
    },
    Kind {
        name: "a read-only default that makes B's writes fail",
        setup: "",
        plant: Plant::Sql("SET default_transaction_read_only = on; SET statement_timeout = 1"),
        fate: Fate::Undone {
            seen: "SELECT current_setting('default_transaction_read_only') || current_setting('statement_timeout')",
            expected: "off0",
        },
    },
    Kind {
        name: "a role switched with SET ROLE",
        setup: "DO $$ BEGIN CREATE ROLE tenant_spy NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
                GRANT tenant_spy TO tenant_app",
        plant: Plant::Sql("SET ROLE tenant_spy"),
        fate: Fate::Undone {
            seen: "SELECT current_user::text",
            expected: "tenant_app",
        },
    },
    Kind {
        name: "a cursor held past its transaction",
        setup: "",
        plant: Plant::Sql("DECLARE spy CURSOR WITH HOLD FOR SELECT name FROM customers"),
        fate: Fate::Undone {
            seen: "SELECT count(*)::text FROM pg_cursors WHERE name <> ''",
            expected: "0",
        },
    },
    Kind {
        name: "a LISTEN registration",
        setup: "",
        plant: Plant::Sql("LISTEN spy"),
        fate: Fate::Undone {
            seen: "SELECT count(*)::text FROM pg_listening_channels()",
            expected: "0",
        },
    },
    Kind {
        name: "a session advisory lock",
        setup: "",
        plant: Plant::Sql("SELECT pg_advisory_lock(4242)"),
        fate: Fate::Undone {
            seen: "SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
            expected: "0",
        },
    },
    Kind {
        name: "a sequence value remembered by the session",
        setup: "CREATE SEQUENCE spy_seq; GRANT USAGE ON SEQUENCE spy_seq TO tenant_app",
        plant: Plant::Sql("SELECT nextval('spy_seq')"),
        fate: Fate::Undone {
            seen: "SELECT lastval()::text",
            expected: "error: lastval is not yet defined in this session",
        },
    },
    Kind {
        name: "a temporary table that shadows a tenant table",
        setup: "",
        plant: Plant::Sql(
            "CREATE TEMP TABLE customers (LIKE public.customers INCLUDING ALL, \
             loot text DEFAULT current_setting('tenant.org_token', true))",
        ),
        fate: Fate::Refused("permission denied to create temporary tables"),
    },
    Kind {
        name: "a temporary table, where TEMP was granted after the pool started",
        setup: "DO $$ BEGIN EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO tenant_app', current_database()); END $$",
        plant: Plant::Sql(
            "CREATE TEMP TABLE customers (LIKE public.customers INCLUDING ALL, \
             loot text DEFAULT current_setting('tenant.org_token', true))",
        ),
        fate: Fate::Discarded,
    },
    Kind {
        name: "a table in the public schema",
        setup: "",
        plant: Plant::Sql("CREATE TABLE public.spy (loot text)"),
        fate: Fate::Refused("permission denied for schema public"),
    },
    Kind {
        name: "a large object",
        setup: "",
        plant: Plant::Sql("SELECT lo_from_bytea(0, 'planted')"),
        fate: Fate::Refused("permission denied for function lo_from_bytea"),
    },
    Kind {
        name: "a signal to every other session of the role",
        setup: "",
        plant: Plant::Sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid()",
        ),
        fate: Fate::Refused("permission denied for function pg_terminate_backend"),
    },
    Kind {
        name: "an org set at session level",
        setup: "",
        plant: Plant::Sql(
            "SELECT set_config('tenant.org_id', '00000000-0000-4000-8000-00000000000b', false)",
        ),
        fate: Fate::Undone {
            seen: "SELECT (coalesce(current_setting('tenant.org_id', true), '') <> '00000000-0000-4000-8000-00000000000b')::text",
            expected: "true",
        },
    },
    Kind {
        name: "a token set at session level",
        setup: "",
        plant: Plant::Sql(
            "SELECT set_config('tenant.org_token', coalesce(current_setting('tenant.org_token', true), 'v0') || 'x', false)",
        ),
        fate: Fate::Undone {
            seen: "SELECT (coalesce(current_setting('tenant.org_token', true), '') NOT LIKE '%x')::text",
            expected: "true",
        },
    },
    Kind {
        name: "a prepared statement under the name of one of diesel's",
        setup: "",
        plant: Plant::HijackPrepared,
        fate: Fate::Discarded,
    },
];

/// Runs `sql` on `conn` inside a savepoint and returns its one text value, or `error: ` and
/// the server's message; the transaction stays usable either way.
fn observe(conn: &mut PgConnection, sql: &str) -> String {
    #[derive(QueryableByName)]
    struct Value {
        #[diesel(sql_type = Text)]
        v: String,
    }
    conn.batch_execute("SAVEPOINT observe").unwrap();
    let out = match diesel::sql_query(format!("SELECT ({sql}) AS v")).get_result::<Value>(conn) {
        Ok(row) => row.v,
        Err(e) => format!("error: {e}"),
    };
    conn.batch_execute("ROLLBACK TO SAVEPOINT observe; RELEASE SAVEPOINT observe")
        .unwrap();
    out
}

fn backend(conn: &mut PgConnection) -> String {
    observe(conn, "SELECT pg_backend_pid()::text")
}

/// A's transaction plants `plant`; returns A's backend, or the refusal.
fn plant(pool: &TenantPool, a: OrgId, plant: Plant) -> (String, Result<(), String>) {
    // First a scoped query, as B will run it, so that diesel has prepared it.
    let mut s = pool.begin(a).unwrap();
    let _: Vec<String> = s
        .load(s.query(customers::table).select(customers::name))
        .unwrap();
    let raw = s.raw_connection_unchecked("test: the attacker's SQL, as an injection would send it");
    let pid = backend(raw);
    let sql = match plant {
        Plant::Sql(sql) => sql.to_owned(),
        Plant::HijackPrepared => {
            let name = observe(
                raw,
                "SELECT name FROM pg_prepared_statements WHERE NOT from_sql \
                 AND statement LIKE 'SELECT \"customers\".\"name\" FROM \"customers\"%'",
            );
            assert!(!name.starts_with("error"), "{name}");
            format!(
                "DEALLOCATE \"{name}\"; PREPARE \"{name}\"(uuid) AS \
                 SELECT set_config('application_name', left(loot, 60), false) || set_config('spy.loot', loot, false) AS name \
                 FROM (SELECT concat_ws(' ', current_setting('tenant.org_token', true), current_setting('tenant.org_id', true), \
                       (SELECT string_agg(c.name, ',') FROM customers c)) AS loot) l \
                 WHERE $1 IS NOT NULL"
            )
        }
    };
    match raw.batch_execute(&sql) {
        Ok(()) => {
            s.commit().unwrap();
            (pid, Ok(()))
        }
        Err(e) => (pid, Err(e.to_string())),
    }
}

/// B's ordinary scoped code: adds a customer, reads every name. Returns B's backend too.
fn b_works(pool: &TenantPool, b: OrgId, kind: &str) -> (String, Vec<String>) {
    pool.with_org(b, |s| {
        s.execute(s.insert(
            customers::table,
            (
                customers::name.eq(format!("bob-{kind}")),
                customers::email.eq(format!("bob-{}@example.com", uuid::Uuid::now_v7())),
            ),
        ))?;
        let mut names: Vec<String> = s.load(s.query(customers::table).select(customers::name))?;
        names.sort();
        let pid = backend(s.raw_connection_unchecked("test: which backend B ran on"));
        Ok::<_, TenantError>((pid, names))
    })
    .unwrap()
}

fn nothing_of_b_in(text: &str, b: OrgId, what: &str) {
    assert!(
        !text.contains("bob") && !text.contains(&b.to_string()) && !text.contains("v1."),
        "{what} shows B's data: {text}"
    );
}

fn every_kind_of_session_state_stays_with_its_transaction(mode: Mode) {
    for (i, kind) in KINDS.iter().enumerate() {
        let (db, builder) = common::database(mode, &format!("session_state_{i}"));
        let pool = builder.build().unwrap();
        let (a, _) = org(&pool, "A", "alice");
        let (b, _) = org(&pool, "B", "bob-secret");
        if !kind.setup.is_empty() {
            db.admin().batch_execute(kind.setup).unwrap();
        }
        let (a_pid, planted) = plant(&pool, a, kind.plant);
        let label = format!("{mode:?}, {}", kind.name);
        match (kind.fate, &planted) {
            (Fate::Refused(message), Err(e)) => assert!(e.contains(message), "{label}: {e}"),
            (Fate::Refused(_), Ok(())) => panic!("{label}: planted"),
            (_, Err(e)) => panic!("{label}: the plant failed: {e}"),
            (_, Ok(())) => {}
        }
        let (b_pid, names) = b_works(&pool, b, &i.to_string());
        assert_eq!(
            names,
            vec![format!("bob-{i}"), "bob-secret".to_owned()],
            "{label}: B's scoped code sees exactly B's rows"
        );
        match kind.fate {
            Fate::Discarded => assert_ne!(a_pid, b_pid, "{label}: the connection was kept"),
            Fate::Undone { seen, expected } => {
                assert_eq!(a_pid, b_pid, "{label}: the connection was discarded");
                let mut s = pool.begin(b).unwrap();
                let got = observe(
                    s.raw_connection_unchecked("test: what B's session holds"),
                    seen,
                );
                let matches = if expected.starts_with("error: ") {
                    got.starts_with(expected)
                } else {
                    got == expected
                };
                assert!(matches, "{label}: B's transaction sees {got}");
            }
            Fate::Refused(_) => {}
        }
        // Another session of the role, between B's transaction and A's next one.
        let mut other = db.connect_as(roles::APP);
        other.batch_execute("BEGIN").unwrap();
        let activity = observe(
            &mut other,
            "SELECT coalesce(string_agg(concat_ws(' ', application_name, query), ';'), '') \
             FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid()",
        );
        nothing_of_b_in(&activity, b, &format!("{label}: pg_stat_activity"));
        // A's next transaction.
        let mut s = pool.begin(a).unwrap();
        let seen: Vec<String> = s
            .load(s.query(customers::table).select(customers::name))
            .unwrap();
        assert_eq!(seen, vec!["alice".to_owned()], "{label}");
        let collected = observe(
            s.raw_connection_unchecked("test: the attacker collects"),
            "SELECT concat_ws('|', current_setting('spy.loot', true), current_setting('application_name'), \
             current_setting('tenant.org_id', true))",
        );
        nothing_of_b_in(&collected, b, &format!("{label}: A's next transaction"));
        drop(s);
        if kind.name.contains("SET ROLE") {
            db.admin()
                .batch_execute("REVOKE tenant_spy FROM tenant_app")
                .unwrap();
        }
    }
}

#[test]
fn every_kind_of_session_state_stays_with_its_transaction_in_the_setting_mode() {
    every_kind_of_session_state_stays_with_its_transaction(Mode::Setting);
}

#[test]
fn every_kind_of_session_state_stays_with_its_transaction_in_the_signed_mode() {
    every_kind_of_session_state_stays_with_its_transaction(Mode::Signed);
}

#[test]
fn the_pool_refuses_to_start_for_a_role_that_can_create_temporary_objects() {
    let (db, builder) = common::database(Mode::Setting, "session_state_temp_grant");
    db.admin()
        .batch_execute(
            "DO $$ BEGIN EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database()); END $$",
        )
        .unwrap();
    let err = builder.build().unwrap_err().to_string();
    assert!(
        err.contains("holds TEMPORARY on database")
            && err.contains("run `REVOKE TEMPORARY ON DATABASE"),
        "{err}"
    );
    // The temporary table it would allow, and the refusal the migration gives without it.
    let mut app = db.connect_as(roles::APP);
    app.batch_execute("CREATE TEMP TABLE t (x int)").unwrap();
}

#[test]
fn the_pool_refuses_to_start_for_a_role_that_can_create_in_a_schema() {
    let (db, builder) = common::database(Mode::Setting, "session_state_schema_grant");
    db.admin()
        .batch_execute("CREATE SCHEMA spy; GRANT USAGE, CREATE ON SCHEMA spy TO tenant_app")
        .unwrap();
    let err = builder.build().unwrap_err().to_string();
    assert!(
        err.contains("holds CREATE on schema spy")
            && err.contains("REVOKE CREATE ON SCHEMA spy FROM PUBLIC, tenant_app"),
        "{err}"
    );
}

/// PostgreSQL lets any role change its own defaults (`ALTER ROLE .. SET`): A's transaction
/// sets the role's search path for this database, and leaves a `PREPARE` so that the opening
/// discards the connection and the next one is new (it would read the new default, and
/// `RESET ALL` resets to it). New connections are refused, naming the change, until an
/// administrator puts it back.
fn a_role_default_the_application_changes_stops_new_connections(mode: Mode) {
    let (db, builder) = common::database(mode, "session_state_role_default");
    let pool = builder
        .connection_timeout(std::time::Duration::from_millis(500))
        .build()
        .unwrap();
    let (a, _) = org(&pool, "A", "alice");
    let (b, _) = org(&pool, "B", "bob-secret");
    let mut s = pool.begin(a).unwrap();
    s.raw_connection_unchecked("test: the attacker's SQL")
        .batch_execute(
            "DO $$ BEGIN EXECUTE format('ALTER ROLE tenant_app IN DATABASE %I \
               SET search_path = information_schema, pg_catalog, public', current_database()); END $$; \
             PREPARE spy AS SELECT 1",
        )
        .unwrap();
    s.commit().unwrap();
    let names = |pool: &TenantPool| {
        pool.with_org(b, |s| {
            s.load::<String, _>(s.query(customers::table).select(customers::name))
        })
    };
    let err = names(&pool).unwrap_err().to_string();
    assert!(
        err.contains("changed since the pool started") && err.contains("information_schema"),
        "{mode:?}: {err}"
    );
    db.admin()
        .batch_execute(
            "DO $$ BEGIN EXECUTE format('ALTER ROLE tenant_app IN DATABASE %I \
               SET search_path = public, pg_temp', current_database()); END $$",
        )
        .unwrap();
    assert_eq!(names(&pool).unwrap(), vec!["bob-secret".to_owned()]);
}

#[test]
fn a_role_default_the_application_changes_stops_new_connections_in_the_setting_mode() {
    a_role_default_the_application_changes_stops_new_connections(Mode::Setting);
}

#[test]
fn a_role_default_the_application_changes_stops_new_connections_in_the_signed_mode() {
    a_role_default_the_application_changes_stops_new_connections(Mode::Signed);
}

/// `DEALLOCATE ALL` in A's transaction removes diesel's prepared statements from the session;
/// diesel would send the same names on every later use, failing every org's transactions on
/// the connection. The first failure discards the connection instead.
fn a_deallocated_statement_costs_one_transaction_not_the_connection(mode: Mode) {
    let (_db, builder) = common::database(mode, "session_state_deallocate");
    let pool = builder.build().unwrap();
    let (a, _) = org(&pool, "A", "alice");
    let (b, _) = org(&pool, "B", "bob-secret");
    let names = |pool: &TenantPool| {
        pool.with_org(b, |s| {
            s.load::<String, _>(s.query(customers::table).select(customers::name))
        })
    };
    assert_eq!(names(&pool).unwrap(), vec!["bob-secret".to_owned()]);
    let mut s = pool.begin(a).unwrap();
    s.raw_connection_unchecked("test: the attacker's SQL")
        .batch_execute("DEALLOCATE ALL")
        .unwrap();
    s.commit().unwrap();
    let err = names(&pool).unwrap_err().to_string();
    assert!(
        err.contains("prepared statement") && err.contains("does not exist"),
        "{mode:?}: {err}"
    );
    for _ in 0..3 {
        assert_eq!(names(&pool).unwrap(), vec!["bob-secret".to_owned()]);
    }
}

#[test]
fn a_deallocated_statement_costs_one_transaction_not_the_connection_in_the_setting_mode() {
    a_deallocated_statement_costs_one_transaction_not_the_connection(Mode::Setting);
}

#[test]
fn a_deallocated_statement_costs_one_transaction_not_the_connection_in_the_signed_mode() {
    a_deallocated_statement_costs_one_transaction_not_the_connection(Mode::Signed);
}
