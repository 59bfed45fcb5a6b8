//! Setting the org costs no round trip of its own: BEGIN and the transaction-local
//! `set_config` travel in one simple-query message (DESIGN.md invariant 2).

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use common::{org_with_customer, setup};
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
    let (db, pool) = setup("round_trips", 1);
    let (org, _) = org_with_customer(&pool, "A", "alice");
    let mut app = db.connect_as(roles::APP);
    let sent = record(&mut app);

    let mut s = OrgScoped::begin(&mut app, org, &two_companies::REGISTRY).unwrap();
    assert_eq!(
        *sent.lock().unwrap(),
        [format!(
            "BEGIN; SELECT set_config('tenant.org_id', '{org}', true)"
        )],
        "opening the scope is one message"
    );
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
