//! The layer and extractors against a real database, as attacks: requests that name another
//! org, name none, name one badly, forge or replay a token, or arrive when the pool is
//! exhausted; each asserts the status, that the body carries no row and no reflected input,
//! and what reached the database (read as the admin).

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use diesel::prelude::*;
use http_body_util::BodyExt;
use tenant_axum::jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use tenant_axum::{
    ApiError, HeaderOrg, JwtClaimOrg, RequestOrg, Scoped, SubdomainOrg, Tenant, TenantLayer,
};
use tenant_core::{AsyncTenantPool, OrgId, TenantError, TenantPool};
use tenant_testkit::TestDb;
use tenant_testkit::story::{signed as story, test_key as key};
use tower::ServiceExt;
use two_companies::schema::{customers, orgs};

const SECRET: &[u8] = b"tenant-axum test secret, 32 bytes or more";

async fn pool(db: &TestDb, max: u32, timeout: Duration) -> AsyncTenantPool {
    TenantPool::builder(db.app_url(), &two_companies::REGISTRY, key())
        .max_size(max)
        .connection_timeout(timeout)
        .build_async()
        .await
        .unwrap()
}

/// An org named `name` with one customer of the same name.
async fn org(pool: &AsyncTenantPool, name: &str) -> OrgId {
    let org = OrgId::new_random();
    pool.with_org(org, async |s| {
        s.execute(s.insert(orgs::table, orgs::name.eq(name)))
            .await?;
        s.execute(s.insert(
            customers::table,
            (
                customers::name.eq(name),
                customers::email.eq(format!("{name}@example.com")),
            ),
        ))
        .await
    })
    .await
    .unwrap();
    org
}

async fn names(tenant: Tenant) -> Result<String, ApiError> {
    let names: Vec<String> = tenant
        .run(async |s| {
            s.load(
                s.query(customers::table)
                    .select(customers::name)
                    .order(customers::name),
            )
            .await
        })
        .await?;
    Ok(names.join(","))
}

async fn add(tenant: Tenant, name: String) -> Result<StatusCode, ApiError> {
    tenant
        .run(async |s| {
            s.execute(s.insert(
                customers::table,
                (
                    customers::name.eq(&name),
                    customers::email.eq(format!("{name}@example.com")),
                ),
            ))
            .await
        })
        .await?;
    Ok(StatusCode::CREATED)
}

async fn names_in_one_flight(tenant: Tenant) -> Result<String, ApiError> {
    let names: Vec<String> = tenant
        .load_one(|q| {
            q.query(customers::table)
                .select(customers::name)
                .order(customers::name)
        })
        .await?;
    Ok(names.join(","))
}

async fn count(Scoped(mut s): Scoped) -> Result<String, ApiError> {
    let n: i64 = s.get_result(s.query(customers::table).count()).await?;
    s.commit().await?;
    Ok(n.to_string())
}

async fn which(RequestOrg(org): RequestOrg) -> String {
    org.to_string()
}

fn routes() -> Router {
    Router::new()
        .route("/customers", get(names).post(add))
        .route("/count", get(count))
        .route("/one-flight", get(names_in_one_flight))
        .route("/org", get(which))
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn get_with(uri: &str, header: &str, value: &str) -> Request<Body> {
    Request::get(uri)
        .header(header, value)
        .body(Body::empty())
        .unwrap()
}

/// Rows named `name` in the database, whatever their org (the admin bypasses RLS).
fn written(db: &TestDb, name: &str) -> i64 {
    customers::table
        .filter(customers::name.eq(name))
        .count()
        .get_result(&mut db.admin())
        .unwrap()
}

#[tokio::test]
async fn each_org_header_reads_and_writes_only_its_org() {
    let db = story("axum_header");
    let pool = pool(&db, 4, Duration::from_secs(10)).await;
    let (a, b) = (org(&pool, "acme").await, org(&pool, "bolt").await);
    let app = routes().layer(TenantLayer::new(pool.clone(), HeaderOrg::new("x-org-id")));
    assert_eq!(
        send(&app, get_with("/customers", "x-org-id", &a.to_string())).await,
        (StatusCode::OK, "acme".to_owned())
    );
    assert_eq!(
        send(&app, get_with("/customers", "x-org-id", &b.to_string())).await,
        (StatusCode::OK, "bolt".to_owned())
    );
    let post = Request::post("/customers")
        .header("x-org-id", b.to_string())
        .body(Body::from("bolt-2"))
        .unwrap();
    assert_eq!(send(&app, post).await.0, StatusCode::CREATED);
    let org_of_new: uuid::Uuid = customers::table
        .filter(customers::name.eq("bolt-2"))
        .select(customers::org_id)
        .get_result(&mut db.admin())
        .unwrap();
    assert_eq!(org_of_new, b.as_uuid());
    for (org, names) in [(a, "acme"), (b, "bolt,bolt-2"), (a, "acme")] {
        assert_eq!(
            send(&app, get_with("/one-flight", "x-org-id", &org.to_string())).await,
            (StatusCode::OK, names.to_owned())
        );
    }
    assert_eq!(
        send(&app, get_with("/count", "x-org-id", &a.to_string())).await,
        (StatusCode::OK, "1".to_owned())
    );
    assert_eq!(
        send(&app, get_with("/org", "x-org-id", &a.to_string())).await,
        (StatusCode::OK, a.to_string())
    );
}

#[tokio::test]
async fn a_request_without_a_well_formed_org_never_reaches_the_handler() {
    let db = story("axum_bad_header");
    let pool = pool(&db, 2, Duration::from_secs(10)).await;
    let a = org(&pool, "acme").await;
    let app = routes().layer(TenantLayer::new(pool, HeaderOrg::new("x-org-id")));
    let hostile = "'; DELETE FROM customers; --";
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            Request::post("/customers")
                .body(Body::from("intruder"))
                .unwrap(),
            StatusCode::UNAUTHORIZED,
            "org_missing",
        ),
        (
            Request::post("/customers")
                .header("x-org-id", hostile)
                .body(Body::from("intruder"))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "org_malformed",
        ),
        (
            Request::post("/customers")
                .header("x-org-id", format!("{a}x"))
                .body(Body::from("intruder"))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "org_malformed",
        ),
        (
            // Two values: which one a proxy checked is unknown, so neither is used.
            Request::post("/customers")
                .header("x-org-id", a.to_string())
                .header("x-org-id", OrgId::new_random().to_string())
                .body(Body::from("intruder"))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "org_malformed",
        ),
    ];
    for (request, status, class) in cases {
        let (got, body) = send(&app, request).await;
        assert_eq!(got, status, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"], class, "{body}");
        assert!(!body.contains("DELETE") && !body.contains("acme"), "{body}");
    }
    assert_eq!(written(&db, "intruder"), 0);
    assert_eq!(written(&db, "acme"), 1);
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(claims: serde_json::Value, alg: Algorithm, secret: &[u8]) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn bearer(token: &str) -> Request<Body> {
    get_with("/customers", "authorization", &format!("Bearer {token}"))
}

#[tokio::test]
async fn only_a_verified_token_names_the_org() {
    let db = story("axum_jwt");
    let pool = pool(&db, 2, Duration::from_secs(10)).await;
    let (a, b) = (org(&pool, "acme").await, org(&pool, "bolt").await);
    let app = routes().layer(TenantLayer::new(
        pool,
        JwtClaimOrg::hs256(SECRET, "org").unwrap(),
    ));
    let valid = token(
        serde_json::json!({"org": a.to_string(), "exp": now() + 600}),
        Algorithm::HS256,
        SECRET,
    );
    assert_eq!(
        send(&app, bearer(&valid)).await,
        (StatusCode::OK, "acme".to_owned())
    );
    // B's id in a token signed with another secret, one expired, one with the algorithm
    // `none`, one of another algorithm with the right secret: none reaches B.
    let forged = token(
        serde_json::json!({"org": b.to_string(), "exp": now() + 600}),
        Algorithm::HS256,
        b"not the service's secret, but long enough",
    );
    let expired = token(
        serde_json::json!({"org": b.to_string(), "exp": now() - 3600}),
        Algorithm::HS256,
        SECRET,
    );
    let payload = valid.split('.').nth(1).unwrap().to_owned();
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    let other_alg = token(
        serde_json::json!({"org": b.to_string(), "exp": now() + 600}),
        Algorithm::HS384,
        SECRET,
    );
    for t in [&forged, &expired, &unsigned, &other_alg] {
        let (status, body) = send(&app, bearer(t)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(!body.contains("bolt") && !body.contains("acme"), "{body}");
    }
    let (status, _) = send(
        &app,
        get_with("/customers", "authorization", &format!("Basic {valid}")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let no_org = token(
        serde_json::json!({"sub": "u1", "exp": now() + 600}),
        Algorithm::HS256,
        SECRET,
    );
    assert_eq!(send(&app, bearer(&no_org)).await.0, StatusCode::FORBIDDEN);
    let bad_org = token(
        serde_json::json!({"org": "acme", "exp": now() + 600}),
        Algorithm::HS256,
        SECRET,
    );
    assert_eq!(
        send(&app, bearer(&bad_org)).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_subdomain_names_its_org_and_an_unknown_one_is_forbidden() {
    let db = story("axum_subdomain");
    let pool = pool(&db, 2, Duration::from_secs(10)).await;
    let (a, b) = (org(&pool, "acme").await, org(&pool, "bolt").await);
    let resolver = SubdomainOrg::new("example.com", move |slug| match slug {
        "acme" => Some(a),
        "bolt" => Some(b),
        _ => None,
    });
    let app = routes().layer(TenantLayer::new(pool, resolver));
    let host = |h: &str| get_with("/customers", "host", h);
    assert_eq!(
        send(&app, host("acme.example.com")).await,
        (StatusCode::OK, "acme".to_owned())
    );
    assert_eq!(
        send(&app, host("bolt.example.com:443")).await,
        (StatusCode::OK, "bolt".to_owned())
    );
    for (h, status) in [
        ("nobody.example.com", StatusCode::FORBIDDEN),
        ("example.com", StatusCode::UNAUTHORIZED),
        ("bolt.acme.example.com", StatusCode::BAD_REQUEST),
        ("acme.example.com.evil.net", StatusCode::BAD_REQUEST),
    ] {
        let (got, body) = send(&app, host(h)).await;
        assert_eq!(got, status, "{h}: {body}");
        assert!(!body.contains("acme,") && !body.contains("bolt"), "{body}");
    }
}

#[tokio::test]
async fn an_exhausted_pool_is_a_503_that_names_no_row() {
    let db = story("axum_exhausted");
    let pool = pool(&db, 1, Duration::from_millis(300)).await;
    let a = org(&pool, "acme").await;
    let app = routes().layer(TenantLayer::new(pool.clone(), HeaderOrg::new("x-org-id")));
    let held = pool.begin(a).await.unwrap();
    let (status, body) = send(&app, get_with("/customers", "x-org-id", &a.to_string())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "pool");
    assert!(!body.contains("acme"), "{body}");
    held.rollback().await.unwrap();
    assert_eq!(
        send(&app, get_with("/customers", "x-org-id", &a.to_string())).await,
        (StatusCode::OK, "acme".to_owned())
    );
}

#[tokio::test]
async fn an_extractor_on_a_route_without_the_layer_refuses() {
    let app = routes();
    let (status, body) = send(
        &app,
        get_with("/customers", "x-org-id", &OrgId::new_random().to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "layer_missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_orgs_concurrent_requests_cross_no_row() {
    let db = story("axum_concurrent");
    let pool = pool(&db, 4, Duration::from_secs(30)).await;
    let (a, b) = (org(&pool, "acme").await, org(&pool, "bolt").await);
    let app = routes().layer(TenantLayer::new(pool, HeaderOrg::new("x-org-id")));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let app = app.clone();
        let (org, tag) = if i % 2 == 0 { (a, "acme") } else { (b, "bolt") };
        tasks.push(tokio::spawn(async move {
            let post = Request::post("/customers")
                .header("x-org-id", org.to_string())
                .body(Body::from(format!("{tag}-{i:03}")))
                .unwrap();
            assert_eq!(send(&app, post).await.0, StatusCode::CREATED);
            let (status, body) =
                send(&app, get_with("/customers", "x-org-id", &org.to_string())).await;
            assert_eq!(status, StatusCode::OK);
            for name in body.split(',') {
                assert!(name.starts_with(tag), "{name} seen by {tag}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rows: Vec<(uuid::Uuid, String)> = customers::table
        .select((customers::org_id, customers::name))
        .load(&mut db.admin())
        .unwrap();
    assert_eq!(rows.len(), 202);
    for (org, name) in rows {
        let expected = if name.starts_with("acme") { a } else { b };
        assert_eq!(org, expected.as_uuid(), "{name}");
    }
}

#[tokio::test]
async fn a_tenant_error_becomes_a_body_without_its_message() {
    use axum::response::IntoResponse;
    let e = ApiError(TenantError::Pool(
        "no connection within 10s: secret detail".into(),
    ));
    let response = e.into_response();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(!body.contains("secret detail"), "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "pool");
}

/// A span's name and its `org` field.
type Seen = (String, Option<String>);

/// Spans opened while it is the default subscriber.
#[derive(Clone, Default)]
struct Spans(std::sync::Arc<std::sync::Mutex<Vec<Seen>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Org(Option<String>);
        impl tracing::field::Visit for Org {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "org" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        let mut org = Org(None);
        attrs.record(&mut org);
        self.0
            .lock()
            .unwrap()
            .push((attrs.metadata().name().to_owned(), org.0));
    }
}

#[tokio::test]
async fn each_request_runs_in_a_span_of_its_org_and_a_rejected_one_in_none() {
    use tracing_subscriber::layer::SubscriberExt;
    let db = story("axum_span");
    let pool = pool(&db, 2, Duration::from_secs(10)).await;
    let a = org(&pool, "acme").await;
    let app = routes().layer(TenantLayer::new(pool, HeaderOrg::new("x-org-id")));
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    // Interest is cached per callsite (the pool's start-up opened a transaction with no
    // subscriber): recomputed now that this one is the default.
    tracing::callsite::rebuild_interest_cache();
    let (status, _) = send(&app, get_with("/customers", "x-org-id", &a.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(&app, get_with("/customers", "x-org-id", "nope")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let seen = spans.0.lock().unwrap().clone();
    let requests: Vec<&Seen> = seen
        .iter()
        .filter(|(name, _)| name == "tenant.request")
        .collect();
    assert_eq!(requests.len(), 1, "{seen:?}");
    assert_eq!(requests[0].1.as_deref(), Some(a.to_string().as_str()));
    // The transaction's span inside it names the same org.
    assert!(
        seen.iter().any(|(name, org)| name == "tenant.transaction"
            && org.as_deref() == Some(a.to_string().as_str())),
        "{seen:?}"
    );
}
