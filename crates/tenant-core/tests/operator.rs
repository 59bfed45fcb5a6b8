//! Break-glass access on the real server: no standing access, a logged request with a ticket,
//! a reason and a window, reads confined to the one org, an append-only log, and each kind of
//! bad input refused with a clear error and logged.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{org_with_customer, setup};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use tenant_core::operator::{AccessRequest, OperatorSession, access_log, request};
use tenant_core::{OrgId, TenantError};
use tenant_testkit::{roles, try_sql};

#[derive(QueryableByName, Debug, PartialEq)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count(s: &mut OperatorSession, sql: &str) -> i64 {
    s.load::<N>(sql).unwrap()[0].n
}

const REASON: &str = "customer reports missing invoices since Monday";

fn refusal(result: Result<OperatorSession, TenantError>) -> String {
    match result {
        Err(TenantError::AccessRefused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_plain_operator_login_sees_no_tenant_row_even_with_the_org_set_by_hand() {
    let (db, pool) = setup("op_plain", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let mut conn = db.connect_as(roles::OPERATOR);
    let n: i64 = diesel::select(diesel::dsl::sql::<BigInt>(
        "(SELECT count(*) FROM customers)",
    ))
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(n, 0);
    // Setting the org by hand, as docs/threat-model.md #5 does for the app, gains an operator nothing:
    // the permissive policy wants an entered grant.
    let n: i64 = conn
        .transaction(|c| {
            diesel::sql_query(format!("SELECT set_config('tenant.org_id', '{a}', true)"))
                .execute(c)?;
            diesel::select(diesel::dsl::sql::<BigInt>(
                "(SELECT count(*) FROM customers)",
            ))
            .get_result(c)
        })
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn an_entered_grant_reads_one_org_only_and_every_step_is_logged() {
    let (db, pool) = setup("op_read", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let (b, _) = org_with_customer(&pool, "B", "bob");
    let url = db.url_as(roles::OPERATOR);
    let mut s =
        OperatorSession::open(&url, &AccessRequest::read(a, "OPS-4711", REASON, 30)).unwrap();
    assert_eq!(s.org(), a);
    assert!(!s.can_write());
    assert_eq!(count(&mut s, "SELECT count(*) AS n FROM customers"), 1);
    assert_eq!(
        count(
            &mut s,
            &format!("SELECT count(*) AS n FROM customers WHERE org_id = '{b}'")
        ),
        0
    );
    // Hopping to B inside the session, or reading a table by name through a function: the
    // scoped path's function policy refuses both before they are sent (the grant is for A, and
    // a plain login shows what the policies do with a hop: nothing).
    let hop = format!(
        "SELECT count(*) AS n FROM (SELECT set_config('tenant.org_id', '{b}', true)) h, customers c WHERE c.org_id::text = '{b}'"
    );
    assert!(matches!(
        s.load::<N>(&hop),
        Err(TenantError::Unscoped(
            tenant_core::Violation::ChangesSessionSetting(_)
        ))
    ));
    assert!(matches!(
        s.load::<N>("SELECT length(query_to_xml('SELECT * FROM tenant_audit.access_log', true, true, '')::text)::bigint AS n"),
        Err(TenantError::Unscoped(tenant_core::Violation::UnsafeFunction { .. }))
    ));
    assert_eq!(count(&mut s, "SELECT count(*) AS n FROM customers"), 1);
    // Read-only: refused here, and by the policies for SQL that tries anyway.
    assert!(matches!(
        s.execute("DELETE FROM customers"),
        Err(TenantError::AccessRefused(_))
    ));
    // The server's own relations: `UPDATE pg_settings` is `set_config` (it would lift the
    // window's statement timeout), `pg_stat_activity` shows other sessions' statements.
    for sql in [
        "UPDATE pg_settings SET setting = '0' WHERE name = 'statement_timeout' RETURNING 1 AS n",
        "SELECT count(*) AS n FROM pg_stat_activity",
        "SELECT count(*) AS n FROM pg_settings WHERE name LIKE 'tenant.%'",
    ] {
        assert!(
            matches!(
                s.load::<N>(sql),
                Err(TenantError::Unscoped(
                    tenant_core::Violation::UnregisteredTable { .. }
                ))
            ),
            "{sql}"
        );
    }
    // A write hidden in a query is refused before it is sent (the policies would let it
    // delete nothing: `writes_need_a_write_grant_and_stay_in_the_org`).
    assert!(matches!(
        s.load::<N>("WITH d AS (DELETE FROM customers RETURNING 1) SELECT count(*) AS n FROM d"),
        Err(TenantError::Unscoped(_))
    ));
    assert_eq!(count(&mut s, "SELECT count(*) AS n FROM customers"), 1);
    let grant = s.grant();
    s.close().unwrap();

    let log = access_log(&db.url_as(roles::AUDITOR), a, None).unwrap();
    let events: Vec<(&str, Option<i64>)> =
        log.iter().map(|e| (e.event.as_str(), e.grant_id)).collect();
    assert_eq!(
        events,
        [
            ("granted", Some(grant)),
            ("entered", Some(grant)),
            ("closed", Some(grant))
        ]
    );
    assert_eq!(log[0].operator, roles::OPERATOR);
    assert_eq!(log[0].ticket.as_deref(), Some("OPS-4711"));
    assert_eq!(log[0].reason.as_deref(), Some(REASON));
    assert_eq!(log[0].mode.as_deref(), Some("read"));
    assert!(log[0].expires_at.is_some());
    // Four statements reached the server; the refused execute did not.
    assert_eq!(log[2].detail.as_deref(), Some("4 statements"));
    assert!(
        access_log(&db.url_as(roles::AUDITOR), b, None)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_failed_statement_does_not_take_the_sessions_log_with_it() {
    let (db, pool) = setup("op_failed_statement", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let url = db.url_as(roles::OPERATOR);
    let mut s =
        OperatorSession::open(&url, &AccessRequest::write(a, "OPS-4713", REASON, 5)).unwrap();
    assert_eq!(count(&mut s, "SELECT count(*) AS n FROM customers"), 1);
    // A failing statement (deliberate or not) once aborted the transaction: the entry and
    // the session's end were rolled back with it, and the log showed the grant as never
    // entered.
    let err = s.load::<N>("SELECT (1 / 0)::bigint AS n").unwrap_err();
    assert!(err.to_string().contains("division by zero"), "{err}");
    assert_eq!(
        s.execute("UPDATE customers SET name = 'alice (fixed)'")
            .unwrap(),
        1,
        "the session goes on after the failure"
    );
    assert!(s.execute("UPDATE customers SET org_id = NULL").is_err());
    let grant = s.grant();
    s.close().unwrap();
    let log = access_log(&db.url_as(roles::AUDITOR), a, None).unwrap();
    let events: Vec<(&str, Option<i64>, Option<&str>)> = log
        .iter()
        .map(|e| (e.event.as_str(), e.grant_id, e.detail.as_deref()))
        .collect();
    assert_eq!(
        events,
        [
            ("granted", Some(grant), None),
            ("entered", Some(grant), None),
            ("closed", Some(grant), Some("4 statements"))
        ]
    );
    let names: Vec<String> = pool
        .with_org(a, |s| {
            s.load(
                s.query(two_companies::schema::customers::table)
                    .select(two_companies::schema::customers::name),
            )
        })
        .unwrap();
    assert_eq!(
        names,
        ["alice (fixed)"],
        "the write before the failure is kept"
    );
}

#[test]
fn writes_need_a_write_grant_and_stay_in_the_org() {
    let (db, pool) = setup("op_write", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let (b, _) = org_with_customer(&pool, "B", "bob");
    let url = db.url_as(roles::OPERATOR);
    let mut s =
        OperatorSession::open(&url, &AccessRequest::write(a, "OPS-4712", REASON, 5)).unwrap();
    assert!(s.can_write());
    assert_eq!(
        s.execute("UPDATE customers SET name = 'alice (fixed)'")
            .unwrap(),
        1
    );
    assert_eq!(
        s.execute(&format!(
            "UPDATE customers SET name = 'x' WHERE org_id = '{b}'"
        ))
        .unwrap(),
        0
    );
    s.close().unwrap();
    let names: Vec<String> = pool
        .with_org(a, |s| {
            s.load(
                s.query(two_companies::schema::customers::table)
                    .select(two_companies::schema::customers::name),
            )
        })
        .unwrap();
    assert_eq!(names, ["alice (fixed)"]);
    let log = access_log(&db.admin_url(), a, None).unwrap();
    assert_eq!(log[0].mode.as_deref(), Some("write"));
}

#[test]
fn bad_input_is_refused_with_a_clear_error_and_the_refusal_is_logged() {
    let (db, pool) = setup("op_bad", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let url = db.url_as(roles::OPERATOR);
    let unknown = OrgId::new_random();
    let cases: [(AccessRequest<'_>, &str); 6] = [
        (
            AccessRequest::read(a, "OPS-1", "", 30),
            "the reason is empty",
        ),
        (
            AccessRequest::read(a, "OPS-1", "because", 30),
            "the reason is too short",
        ),
        (
            AccessRequest::read(a, "fix it", REASON, 30),
            "malformed ticket 'fix it'",
        ),
        (
            AccessRequest::read(unknown, "OPS-1", REASON, 30),
            "unknown org",
        ),
        (
            AccessRequest::read(a, "OPS-1", REASON, 0),
            "the access window has expired or is empty",
        ),
        (
            AccessRequest::read(a, "OPS-1", REASON, 100_000),
            "longer than 240 minutes",
        ),
    ];
    for (req, expected) in &cases {
        let why = refusal(OperatorSession::open(&url, req));
        assert!(why.contains(expected), "{why:?} should say {expected:?}");
    }
    let log_a = access_log(&db.admin_url(), a, None).unwrap();
    let refused: Vec<&str> = log_a
        .iter()
        .filter(|e| e.event == "refused")
        .filter_map(|e| e.detail.as_deref())
        .collect();
    assert_eq!(refused.len(), 5, "{log_a:#?}");
    assert!(
        log_a
            .iter()
            .all(|e| e.event == "refused" && e.operator == roles::OPERATOR)
    );
    let log_unknown = access_log(&db.admin_url(), unknown, None).unwrap();
    assert_eq!(log_unknown.len(), 1);
    assert!(
        log_unknown[0]
            .detail
            .as_deref()
            .unwrap_or("")
            .starts_with("unknown org")
    );
}

#[test]
fn an_expired_grant_cannot_be_entered_and_the_attempt_is_logged() {
    let (db, pool) = setup("op_expired", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let url = db.url_as(roles::OPERATOR);
    let grant = request(&url, &AccessRequest::read(a, "OPS-9", REASON, 1)).unwrap();
    // Time passes: the administrator moves the window into the past (bypassing the
    // append-only trigger, which is what superusers can do and operators cannot).
    db.admin()
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             UPDATE tenant_audit.access_log SET expires_at = now() - interval '1 minute' WHERE id = {grant};"
        ))
        .unwrap();
    let why = refusal(OperatorSession::enter(&url, grant, a));
    assert!(why.contains("expired"), "{why}");
    let log = access_log(&db.admin_url(), a, None).unwrap();
    assert_eq!(log.last().map(|e| e.event.as_str()), Some("refused"));
    // A grant for another org than the one asked is refused before anything is read.
    let other = OrgId::new_random();
    let grant = request(&url, &AccessRequest::read(a, "OPS-9", REASON, 5)).unwrap();
    let why = refusal(OperatorSession::enter(&url, grant, other));
    assert!(why.contains("another org"), "{why}");
}

#[test]
fn the_access_log_is_append_only_for_operators_the_app_and_its_owner() {
    let (db, pool) = setup("op_append_only", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let url = db.url_as(roles::OPERATOR);
    OperatorSession::open(&url, &AccessRequest::read(a, "OPS-5", REASON, 5))
        .unwrap()
        .close()
        .unwrap();
    db.install_sqlstate_probe();
    for role in [roles::OPERATOR, roles::APP] {
        let mut conn = db.connect_as(role);
        for sql in [
            "UPDATE tenant_audit.access_log SET reason = 'nothing to see'",
            "DELETE FROM tenant_audit.access_log",
            "TRUNCATE tenant_audit.access_log",
            "INSERT INTO tenant_audit.access_log (event) VALUES ('granted')",
        ] {
            let out = try_sql(&mut conn, sql);
            assert!(
                out.starts_with("42501 permission denied"),
                "{role}: {sql}: {out}"
            );
        }
    }
    // The app cannot call the functions at all.
    let mut app = db.connect_as(roles::APP);
    let out = try_sql(
        &mut app,
        &format!(
            "SELECT tenant_audit.request_access('{a}', 'OPS-1', 'reason enough here', 5, false)"
        ),
    );
    // (It may not even look into the schema.)
    assert!(
        out.starts_with("42501 permission denied for schema tenant_audit"),
        "{out}"
    );
    // Even the owner of the log cannot change it: the triggers refuse.
    let mut admin = db.admin();
    for sql in [
        "UPDATE tenant_audit.access_log SET reason = 'x'",
        "DELETE FROM tenant_audit.access_log",
        "TRUNCATE tenant_audit.access_log",
    ] {
        let out = try_sql(&mut admin, &format!("SET LOCAL ROLE tenant_owner; {sql}"));
        assert!(
            out.starts_with("42501 the access log is append-only"),
            "{sql}: {out}"
        );
    }
    assert_eq!(access_log(&db.admin_url(), a, None).unwrap().len(), 3);
}

/// A grant is entered in a transaction of its own, after its request was committed: a grant
/// requested in the same transaction (a savepoint's, say) could be rolled back with its entry
/// after reading. Refused before anything is read or logged, naming the fix.
#[test]
fn a_grant_requested_or_anything_written_in_the_same_transaction_cannot_be_entered() {
    let (db, pool) = setup("op_same_xact", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let mut conn = db.connect_as(roles::OPERATOR);
    let refused = conn
        .transaction(|c| {
            c.batch_execute("SAVEPOINT s")?;
            #[derive(QueryableByName)]
            struct G {
                #[diesel(sql_type = BigInt)]
                grant_id: i64,
            }
            let g: G = diesel::sql_query(format!(
                "SELECT grant_id FROM tenant_audit.request_access('{a}', 'OPS-5', '{REASON}', 5, false)"
            ))
            .get_result(c)?;
            diesel::sql_query(format!(
                "SELECT org FROM tenant_audit.enter_access({})",
                g.grant_id
            ))
            .execute(c)
        })
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("enter_access must be the first write of its transaction"),
        "{refused}"
    );
    assert!(access_log(&db.admin_url(), a, None).unwrap().is_empty());
    // A committed grant, entered after a write of the same transaction: refused too.
    let grant = request(
        &db.url_as(roles::OPERATOR),
        &AccessRequest::read(a, "OPS-6", REASON, 5),
    )
    .unwrap();
    let refused = conn
        .transaction(|c| {
            // The operator's one write of its own: another request.
            diesel::sql_query(format!(
                "SELECT grant_id FROM tenant_audit.request_access('{a}', 'OPS-7', '{REASON}', 5, false)"
            ))
            .execute(c)?;
            diesel::sql_query(format!(
                "SELECT org FROM tenant_audit.enter_access({grant})"
            ))
            .execute(c)
        })
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("enter_access must be the first write of its transaction"),
        "{refused}"
    );
}
