//! Setting the org costs no round trip of its own: BEGIN and the transaction-local
//! `set_config` travel in one simple-query message (docs/design.md invariant 2). The tests of
//! the plain opening (`OrgScoped::begin`) run on a database in the plain mode; the signed
//! opening's message count is checked on the default one.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use common::{org_with_customer, setup, setup_plain};
use diesel::connection::{Connection, InstrumentationEvent};
use tenant_core::OrgScoped;
use tenant_testkit::roles;
use two_companies::schema::customers;

/// Records the SQL of every message the connection sends.
fn record(conn: &mut diesel::PgConnection) -> Arc<Mutex<Vec<String>>> {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&sent);
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            sink.lock().unwrap().push(query.to_string());
        }
    });
    sent
}

#[test]
fn a_single_query_scoped_transaction_sends_three_messages_and_the_first_sets_the_org() {
    let (db, pool) = setup_plain("round_trips", 1);
    let (org, _) = org_with_customer(&pool, "A", "alice");
    let mut app = db.connect_as(roles::APP);
    let sent = record(&mut app);

    let mut s = OrgScoped::begin(&mut app, org, &two_companies::REGISTRY).unwrap();
    {
        let sent = sent.lock().unwrap();
        assert_eq!(sent.len(), 1, "opening the scope is one message: {sent:?}");
        assert!(
            sent[0].starts_with(
                "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE, NOT DEFERRABLE; RESET ALL;"
            ) && sent[0].contains(&format!("ELSE '{org}' END, true), setseed(")),
            "{}",
            sent[0]
        );
    }
    let n: i64 = s.get_result(s.query(customers::table).count()).unwrap();
    s.commit().unwrap();
    assert_eq!(n, 1);

    let sent = sent.lock().unwrap();
    assert_eq!(
        sent.len(),
        3,
        "BEGIN+set_config, the query, COMMIT: {sent:#?}"
    );
    assert!(
        sent[1].contains(r#""customers"."org_id" = $1"#),
        "{}",
        sent[1]
    );
    assert_eq!(sent[2], "COMMIT");
}

#[test]
fn a_signed_single_query_scoped_transaction_sends_three_messages_too() {
    let (db, pool) = setup("round_trips_signed", 1);
    let (org, _) = org_with_customer(&pool, "A", "alice");
    let mut app = db.connect_as(roles::APP);
    let backend = tenant_core::context::Backend::read(&mut app).unwrap();
    let sent = record(&mut app);
    let key = common::key();
    let mut s =
        OrgScoped::begin_signed(&mut app, org, &two_companies::REGISTRY, &key, backend).unwrap();
    let n: i64 = s.get_result(s.query(customers::table).count()).unwrap();
    s.commit().unwrap();
    assert_eq!(n, 1, "the token was verified: the org's row is seen");
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 3, "BEGIN+token, the query, COMMIT: {sent:#?}");
    assert!(
        sent[0].starts_with("BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE, NOT DEFERRABLE;")
            && sent[0].contains("set_config('tenant.org_token'"),
        "{}",
        sent[0]
    );
    assert_eq!(sent[2], "COMMIT");
}

/// The number of statements this session has prepared.
fn prepared(conn: &mut diesel::PgConnection) -> i64 {
    use diesel::RunQueryDsl;
    // A literal SQL query: diesel does not cache it, so it does not count itself.
    diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT count(*) FROM pg_prepared_statements)",
    ))
    .get_result(conn)
    .unwrap()
}

#[test]
fn the_prepared_statement_cache_keeps_working_under_org_scoped() {
    let (db, pool) = setup_plain("stmt_cache", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let (b, _) = org_with_customer(&pool, "B", "bob");
    let mut app = db.connect_as(roles::APP);
    let before = prepared(&mut app);
    // The same query in five transactions, for two orgs: the org is a bind value, so the
    // statement is prepared once and reused.
    for org in [a, b, a, b, a] {
        let mut s = OrgScoped::begin(&mut app, org, &two_companies::REGISTRY).unwrap();
        let names: Vec<String> = s
            .load(s.query(customers::table).select(customers::name))
            .unwrap();
        assert_eq!(names.len(), 1);
        s.commit().unwrap();
    }
    assert_eq!(prepared(&mut app) - before, 1);
}

#[test]
fn the_opening_message_undoes_an_org_left_at_session_level() {
    use diesel::connection::SimpleConnection;
    let (db, pool) = setup_plain("leftover", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let (b, _) = org_with_customer(&pool, "B", "bob");
    let mut app = db.connect_as(roles::APP);
    app.batch_execute(&format!("SELECT set_config('tenant.org_id', '{b}', false)"))
        .unwrap();
    let mut s = OrgScoped::begin(&mut app, a, &two_companies::REGISTRY).unwrap();
    let names: Vec<String> = s
        .load(s.query(customers::table).select(customers::name))
        .unwrap();
    assert_eq!(names, vec!["alice".to_owned()]);
    s.commit().unwrap();
    // Committed, and still nothing of B's org at session level.
    let left: String = diesel::RunQueryDsl::get_result(
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
            "coalesce(current_setting('tenant.org_id', true), '')",
        )),
        &mut app,
    )
    .unwrap();
    assert_eq!(left, "");
}

#[test]
fn the_opening_message_refuses_a_connection_whose_org_survives_the_reset() {
    use diesel::connection::SimpleConnection;
    let (db, pool) = setup("leftover_default", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let (b, _) = org_with_customer(&pool, "B", "bob");
    // A database default is what RESET ALL goes back to (the pool refuses it at start-up;
    // a connection of one's own meets it here).
    db.admin()
        .batch_execute(&format!(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET tenant.org_id = %L', current_database(), '{b}'); END $$"
        ))
        .unwrap();
    let mut app = db.connect_as(roles::APP);
    let sent = record(&mut app);
    let err = OrgScoped::begin(&mut app, a, &two_companies::REGISTRY).unwrap_err();
    assert!(
        matches!(err, tenant_core::TenantError::SessionContextLeft),
        "{err:?}"
    );
    // Refused in the opening message itself: nothing else ran (the ROLLBACK only ends the
    // aborted block), and diesel will not run a transaction on this connection again.
    assert_eq!(sent.lock().unwrap().len(), 2, "{:?}", sent.lock().unwrap());
    assert!(OrgScoped::begin(&mut app, a, &two_companies::REGISTRY).is_err());
}
