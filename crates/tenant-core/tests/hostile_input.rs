//! Every public constructor of tenant-core given empty, huge, malformed or hostile input: a
//! clear error naming what is wrong, no panic, and nothing changed in the database.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{org_with_customer, setup};
use tenant_core::admin::{CatalogReader, ProbeSession};
use tenant_core::context::ContextKey;
use tenant_core::operator::{AccessRequest, OperatorSession, access_log, request};
use tenant_core::{OrgId, TenantError, TenantPool};
use tenant_testkit::{TestDb, roles};

/// Database URLs no connection can come from, and what the error must say.
fn bad_urls() -> Vec<(String, &'static str)> {
    vec![
        (String::new(), "the database URL is empty"),
        ("   ".into(), "the database URL is empty"),
        ("postgres://a\0b@/db".into(), "NUL byte"),
        ("x".repeat(1 << 20), ""),
        ("not a url at all".into(), ""),
        (
            "postgres://tenant_app@/db?host=/nonexistent/socket/dir".into(),
            "/nonexistent/socket/dir",
        ),
        (
            "postgres://x'; DROP TABLE customers; --@/db?host=/nonexistent".into(),
            "",
        ),
        ("postgres://u@/db?sslmode=bogus".into(), "sslmode"),
    ]
}

/// The connection error of `result`, which must be one.
fn connect_error<T: std::fmt::Debug>(
    what: &str,
    url: &str,
    result: Result<T, TenantError>,
) -> String {
    match result {
        Err(TenantError::Connect(message)) => {
            assert!(
                !message.trim().is_empty(),
                "{what}: an empty message for {url:.60?}"
            );
            message
        }
        other => panic!("{what}: {url:.60?} gave {other:?}"),
    }
}

#[test]
fn every_constructor_that_takes_a_url_refuses_a_bad_one_by_name() {
    let org = OrgId::new_random();
    let request_ = AccessRequest::read(org, "OPS-1", "a reason long enough", 5);
    for (url, says) in bad_urls() {
        let messages = [
            connect_error(
                "TenantPool",
                &url,
                TenantPool::builder(
                    url.clone(),
                    &two_companies::REGISTRY,
                    tenant_core::OrgContext::TrustEveryStatement,
                )
                .build(),
            ),
            connect_error("CatalogReader", &url, CatalogReader::connect(&url, "test")),
            connect_error(
                "ProbeSession",
                &url,
                ProbeSession::connect(&url, "test", 1000),
            ),
            connect_error(
                "OperatorSession",
                &url,
                OperatorSession::open(&url, &request_),
            ),
            connect_error("operator::request", &url, request(&url, &request_)),
            connect_error("access_log", &url, access_log(&url, org, None)),
        ];
        for m in messages {
            assert!(m.contains(says), "{url:.60?}: {m:?} should say {says:?}");
            assert!(
                m.len() < 2000,
                "the error does not echo a huge input: {} bytes",
                m.len()
            );
        }
    }
}

#[test]
fn org_ids_and_context_keys_refuse_empty_huge_and_hostile_text() {
    for bad in [
        "",
        " ",
        "not-a-uuid",
        "00000000-0000-0000-0000-000000000000",
        "'; DROP TABLE customers; --",
        "0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e'; --",
        "0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6\0",
        "\u{202e}0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e",
    ] {
        let err = bad.parse::<OrgId>().unwrap_err().to_string();
        assert!(err.contains("org id"), "{bad:?}: {err}");
    }
    let huge = "a".repeat(1 << 20);
    let err = huge.parse::<OrgId>().unwrap_err().to_string();
    assert!(
        err.len() < 500,
        "the error does not echo the input: {} bytes",
        err.len()
    );

    for (kid, key, says) in [
        ("", &[1u8; 32][..], "key id"),
        ("k'; DROP", &[1; 32], "key id"),
        (&*"k".repeat(41), &[1; 32], "key id"),
        ("k1", &[], "0 bytes"),
        ("k1", &[1; 31], "31 bytes"),
    ] {
        let err = ContextKey::new(kid, key).unwrap_err().to_string();
        assert!(err.contains(says), "{kid:.20?}: {err}");
    }
    for hex in ["", "zz", "abc", &"ab".repeat(8), "ab\0cd"] {
        assert!(ContextKey::from_hex("k1", hex).is_err(), "{hex:?}");
    }
}

#[test]
fn an_access_request_with_unstorable_or_flooding_text_is_refused_before_it_is_sent() {
    let (db, pool) = setup("hostile_access", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let url = db.url_as(roles::OPERATOR);
    let huge = "r".repeat(100_000);
    let long_ticket = format!("OPS-{}", "1".repeat(200));
    for (req, says) in [
        (
            AccessRequest::read(a, "OPS-1", "a reason with a \0 in it", 5),
            "the reason contains a NUL byte",
        ),
        (
            AccessRequest::read(a, "OPS-\x001", "a reason long enough", 5),
            "the ticket contains a NUL byte",
        ),
        (
            AccessRequest::read(a, "OPS-1", &huge, 5),
            "the reason has 100000 characters, more than 2000",
        ),
        (
            AccessRequest::read(a, &long_ticket, "a reason long enough", 5),
            "more than 100",
        ),
    ] {
        match OperatorSession::open(&url, &req) {
            Err(TenantError::AccessRefused(why)) => assert!(why.contains(says), "{why}"),
            other => panic!("{says}: {other:?}"),
        }
    }
    // Hostile but storable text is refused by the database's own checks, and logged as given.
    let hostile = "x'); DELETE FROM tenant_audit.access_log; --";
    match OperatorSession::open(
        &url,
        &AccessRequest::read(a, hostile, "a reason long enough", 5),
    ) {
        Err(TenantError::AccessRefused(why)) => assert!(why.contains("malformed ticket"), "{why}"),
        other => panic!("{other:?}"),
    }
    // A client other than ours (psql) reaches the function with a flooding reason: refused
    // there too, and logged with the reason cut to 2000 characters.
    #[derive(diesel::QueryableByName)]
    struct Refusal {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        refusal: Option<String>,
    }
    let direct: Refusal = diesel::RunQueryDsl::get_result(
        diesel::sql_query(format!(
            "SELECT refusal FROM tenant_audit.request_access('{a}', 'OPS-1', repeat('r', 5000), 5, false)"
        )),
        &mut db.connect_as(roles::OPERATOR),
    )
    .unwrap();
    assert!(
        direct
            .refusal
            .as_deref()
            .unwrap_or("")
            .contains("(2000 characters at most)"),
        "{:?}",
        direct.refusal
    );
    let log = access_log(&db.admin_url(), a, None).unwrap();
    assert_eq!(
        log.len(),
        2,
        "only the storable refusals are logged: {log:#?}"
    );
    assert_eq!(log[0].event, "refused");
    assert_eq!(log[0].ticket.as_deref(), Some(hostile));
    assert_eq!(log[1].reason.as_deref().map(str::len), Some(2000));
    // Nothing else changed: the org's data is as it was.
    let n: i64 = pool
        .with_org(a, |s| {
            s.get_result(s.query(two_companies::schema::customers::table).count())
        })
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn a_registry_table_missing_from_the_database_is_named_with_the_fix() {
    // An empty database: every registered table is missing; the pool names the first.
    let db = TestDb::new("hostile_empty_db");
    let err = TenantPool::builder(
        db.app_url(),
        &two_companies::REGISTRY,
        tenant_core::OrgContext::TrustEveryStatement,
    )
    .build()
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("is in the registry but not in the database")
            && err.contains("run the migrations"),
        "{err}"
    );
}
