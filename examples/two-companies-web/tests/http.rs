//! The API end to end: the real server on a loopback port, a real HTTP client (reqwest), the
//! real database. Two orgs' clients at once, a thousand requests, no row crossing; bad input
//! gets its documented status and writes nothing (counted as the admin, past RLS).

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{SystemTime, UNIX_EPOCH};

use diesel::prelude::*;
use reqwest::StatusCode;
use tenant_core::{OrgId, TenantPool};
use tenant_testkit::TestDb;
use tenant_testkit::story::{signed as story, test_key as key};
use two_companies::schema::{customers, orgs};
use two_companies_web::{BODY_LIMIT, Customer, NewCustomer};

const SECRET: &[u8] = b"the issuer's secret for the web example tests";

/// The API on a loopback port of its own; its base URL.
async fn serve(db: &TestDb, max: u32) -> String {
    let pool = TenantPool::builder(db.app_url(), &two_companies::REGISTRY, key())
        .max_size(max)
        .build_async()
        .await
        .unwrap();
    for (name, org) in [("acme", acme()), ("bolt", bolt())] {
        pool.with_org(org, async |s| {
            s.execute(s.insert(orgs::table, orgs::name.eq(name))).await
        })
        .await
        .unwrap();
    }
    let app = two_companies_web::app(pool, SECRET).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn acme() -> OrgId {
    "0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e".parse().unwrap()
}

fn bolt() -> OrgId {
    "0191f5a6-8e1c-7c3a-9d4e-6e5d4c3b2a1f".parse().unwrap()
}

fn token_with(claims: serde_json::Value, secret: &[u8]) -> String {
    use tenant_axum::jsonwebtoken::{EncodingKey, Header, encode};
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn exp() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600
}

fn token(org: OrgId) -> String {
    token_with(
        serde_json::json!({"org": org.to_string(), "exp": exp()}),
        SECRET,
    )
}

/// Customers in the database, whatever their org (the admin bypasses RLS).
fn all_rows(db: &TestDb) -> Vec<(uuid::Uuid, String)> {
    customers::table
        .select((customers::org_id, customers::name))
        .load(&mut db.admin())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_orgs_clients_at_once_a_thousand_requests_no_row_crosses() {
    let db = story("web_thousand");
    let base = serve(&db, 8).await;
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    // 20 clients per org, 25 requests each (a POST, then GETs of the list and of the new
    // row): 1,000 requests.
    for c in 0..40 {
        let (org, tag) = if c % 2 == 0 {
            (acme(), "acme")
        } else {
            (bolt(), "bolt")
        };
        let (client, base, bearer) = (client.clone(), base.clone(), token(org));
        tasks.push(tokio::spawn(async move {
            let mut requests = 0;
            let mut mine = Vec::new();
            while requests < 25 {
                let name = format!("{tag}-{c:02}-{requests:02}");
                let created = client
                    .post(format!("{base}/customers"))
                    .bearer_auth(&bearer)
                    .json(&NewCustomer {
                        name: name.clone(),
                        email: format!("{name}@example.com"),
                    })
                    .send()
                    .await
                    .unwrap();
                requests += 1;
                assert_eq!(created.status(), StatusCode::CREATED);
                mine.push(created.json::<uuid::Uuid>().await.unwrap());
                let listed = client
                    .get(format!("{base}/customers"))
                    .bearer_auth(&bearer)
                    .send()
                    .await
                    .unwrap();
                requests += 1;
                assert_eq!(listed.status(), StatusCode::OK);
                for row in listed.json::<Vec<Customer>>().await.unwrap() {
                    assert!(row.name.starts_with(tag), "{} seen by {tag}", row.name);
                }
                if requests < 25 {
                    let id = mine[mine.len() / 2];
                    let one = client
                        .get(format!("{base}/customers/{id}"))
                        .bearer_auth(&bearer)
                        .send()
                        .await
                        .unwrap();
                    requests += 1;
                    assert_eq!(one.status(), StatusCode::OK);
                }
            }
            (tag, mine)
        }));
    }
    let mut ids = Vec::new();
    let mut total = 0;
    for t in tasks {
        let (tag, mine) = t.await.unwrap();
        total += mine.len();
        ids.push((tag, mine));
    }
    // Every row in the org of the client that wrote it.
    let rows = all_rows(&db);
    assert_eq!(rows.len(), total);
    for (org, name) in &rows {
        let expected = if name.starts_with("acme") {
            acme()
        } else {
            bolt()
        };
        assert_eq!(*org, expected.as_uuid(), "{name}");
    }
    // A client asking for the other org's rows by id gets a 404, not the row.
    let (_, bolts) = ids.iter().find(|(tag, _)| *tag == "bolt").unwrap();
    let stolen = client
        .get(format!("{base}/customers/{}", bolts[0]))
        .bearer_auth(token(acme()))
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status(), StatusCode::NOT_FOUND);
    assert!(stolen.text().await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_input_gets_its_documented_status_and_writes_nothing() {
    let db = story("web_bad_input");
    let base = serve(&db, 2).await;
    let client = reqwest::Client::new();
    let body = |name: &str| {
        serde_json::json!({"name": name, "email": format!("{name}@example.com")}).to_string()
    };
    let post = |bearer: Option<String>, body: String| {
        let mut request = client
            .post(format!("{base}/customers"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(b) = bearer {
            request = request.bearer_auth(b);
        }
        request
    };
    let forged = token_with(
        serde_json::json!({"org": bolt().to_string(), "exp": exp()}),
        b"a secret that is not the issuer's, long enough",
    );
    let malformed = token_with(serde_json::json!({"org": "bolt", "exp": exp()}), SECRET);
    let no_org = token_with(serde_json::json!({"sub": "someone", "exp": exp()}), SECRET);
    let oversized = body(&"x".repeat(BODY_LIMIT + 1));
    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode)> = vec![
        (
            "no token",
            post(None, body("intruder")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "forged token",
            post(Some(forged), body("intruder")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "malformed org id",
            post(Some(malformed), body("intruder")),
            StatusCode::BAD_REQUEST,
        ),
        (
            "token without an org",
            post(Some(no_org), body("intruder")),
            StatusCode::FORBIDDEN,
        ),
        (
            "oversized body",
            post(Some(token(acme())), oversized),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "not JSON",
            post(Some(token(acme())), "{\"name\": ".to_owned()),
            StatusCode::BAD_REQUEST,
        ),
        (
            "a field missing",
            post(Some(token(acme())), "{\"name\": \"intruder\"}".to_owned()),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (what, request, status) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{what}");
        let text = response.text().await.unwrap();
        assert!(
            !text.contains("acme") && !text.contains("bolt"),
            "{what}: {text}"
        );
    }
    assert_eq!(all_rows(&db), vec![]);
    // The same email twice in one org: 409, one row.
    for expected in [StatusCode::CREATED, StatusCode::CONFLICT] {
        let response = post(Some(token(acme())), body("dup")).send().await.unwrap();
        assert_eq!(response.status(), expected);
    }
    assert_eq!(all_rows(&db), vec![(acme().as_uuid(), "dup".to_owned())]);
}
