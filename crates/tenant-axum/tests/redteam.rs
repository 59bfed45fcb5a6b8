//! Red-team attacks on tenant-axum, written from the outside: an HTTP client against an app
//! built with `TenantLayer`. Each test asserts that the attack FAILS; a failing test here is a
//! finding.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::routing::{get, post};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use http_body_util::BodyExt;
use tenant_axum::jsonwebtoken::{self, Algorithm, EncodingKey, Header};
use tenant_axum::{
    ApiError, HeaderOrg, JwtClaimOrg, OrgResolver, RequestOrg, Scoped, SubdomainOrg, Tenant,
    TenantLayer,
};
use tenant_core::{AsyncTenantPool, OrgId, TenantError, TenantPool};
use tenant_testkit::TestDb;
use tenant_testkit::story::{signed, test_key};
use tower::ServiceExt;
use two_companies::schema::customers;
use uuid::Uuid;

const SECRET: &[u8] = b"a secret of at least 32 bytes, for the red team";

struct World {
    _db: TestDb,
    pool: AsyncTenantPool,
    a: OrgId,
    b: OrgId,
}

async fn world(hint: &str) -> World {
    let db = signed(hint);
    let a = OrgId::new_random();
    let b = OrgId::new_random();
    db.admin()
        .batch_execute(&format!(
            "INSERT INTO orgs (id, name) VALUES ('{a}', 'Org A'), ('{b}', 'Org B');
             INSERT INTO customers (id, org_id, name, email) VALUES
               (gen_random_uuid(), '{a}', 'secret-a-1', 'a1@a.example'),
               (gen_random_uuid(), '{b}', 'secret-b-1', 'b1@b.example');"
        ))
        .unwrap();
    let pool = TenantPool::builder(db.app_url(), &two_companies::REGISTRY, test_key())
        .max_size(4)
        .build_async()
        .await
        .unwrap();
    World {
        _db: db,
        pool,
        a,
        b,
    }
}

async fn list(tenant: Tenant) -> Result<String, ApiError> {
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

async fn list_scoped(Scoped(mut s): Scoped) -> Result<String, ApiError> {
    let names: Vec<String> = s
        .load(s.query(customers::table).select(customers::name))
        .await?;
    s.commit().await?;
    Ok(names.join(","))
}

async fn whoami(RequestOrg(org): RequestOrg) -> String {
    org.to_string()
}

/// Inserts a customer whose email is the request body: a duplicate makes the database
/// refuse it with the value in its DETAIL.
async fn create(tenant: Tenant, body: String) -> Result<String, ApiError> {
    tenant
        .run(async |s| {
            s.execute(s.insert(
                customers::table,
                (
                    customers::name.eq(body.clone()),
                    customers::email.eq(body.clone()),
                ),
            ))
            .await
        })
        .await?;
    Ok("created".into())
}

/// A handler that fails on a value from the request parsed as an org id.
async fn parse_path(tenant: Tenant, body: String) -> Result<String, ApiError> {
    let org: OrgId = body.parse().map_err(TenantError::from)?;
    Ok(format!("{}{}", tenant.org(), org))
}

/// Fails with a database error whose text carries a row value: casting a row's name to uuid.
async fn cast_fail(tenant: Tenant) -> Result<String, ApiError> {
    let v: Vec<Uuid> = tenant
        .run(async |s| {
            s.load(
                s.query(customers::table)
                    .select(diesel::dsl::sql::<diesel::sql_types::Uuid>("name::uuid")),
            )
            .await
        })
        .await?;
    Ok(format!("{v:?}"))
}

fn app<R: OrgResolver>(w: &World, resolver: R) -> Router {
    Router::new()
        .route("/customers", get(list))
        .route("/scoped", get(list_scoped))
        .route("/org", get(whoami))
        .route("/create", post(create))
        .route("/parse", post(parse_path))
        .route("/castfail", get(cast_fail))
        .layer(TenantLayer::new(w.pool.clone(), resolver))
        // Added after the layer: not wrapped by it.
        .route("/unwrapped", get(list))
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn get_req(path: &str) -> axum::http::request::Builder {
    Request::builder().method("GET").uri(path)
}

/// The body is exactly `{"error": .., "message": ..}` and reflects none of `inputs`.
fn assert_fixed_body(body: &str, inputs: &[&str]) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 2, "{body}");
    assert!(
        obj["error"].is_string() && obj["message"].is_string(),
        "{body}"
    );
    for input in inputs {
        if input.len() >= 4 {
            assert!(!body.contains(input), "input {input:?} reflected in {body}");
        }
    }
    for secret in ["secret-", "@a.example", "@b.example", "SELECT", "customers"] {
        assert!(!body.contains(secret), "{secret} in {body}");
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

fn b64(v: &[u8]) -> String {
    // base64url without padding, by hand (no base64 crate among the dev-dependencies).
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in v.chunks(3) {
        let n = chunk.len();
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let x = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=n {
            out.push(A[((x >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A token signed by hand with HMAC-SHA-`bits` under `SECRET` (or unsigned), any header.
fn raw_token(header: &serde_json::Value, claims: &serde_json::Value, sig: &str) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        sig
    )
}

fn bearer(t: &str) -> Request<Body> {
    get_req("/org")
        .header(header::AUTHORIZATION, format!("Bearer {t}"))
        .body(Body::empty())
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// HeaderOrg
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_org_reads_only_its_org_and_refuses_ambiguity() {
    let w = world("rt_axum_header").await;
    let app = app(&w, HeaderOrg::new("x-org-id"));
    let (a, b) = (w.a.to_string(), w.b.to_string());

    let (s, body) = send(
        &app,
        get_req("/customers")
            .header("x-org-id", &a)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "secret-a-1"));
    let (s, body) = send(
        &app,
        get_req("/scoped")
            .header("x-org-id", &b)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "secret-b-1"));

    // Duplicates, also under case variants of the name (one header to HTTP).
    let mut req = get_req("/customers").body(Body::empty()).unwrap();
    req.headers_mut()
        .append("x-org-id", HeaderValue::from_str(&a).unwrap());
    req.headers_mut()
        .append("X-Org-Id", HeaderValue::from_str(&b).unwrap());
    let (s, body) = send(&app, req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_fixed_body(&body, &[&a, &b]);

    let mut req = get_req("/customers").body(Body::empty()).unwrap();
    req.headers_mut()
        .append("X-ORG-ID", HeaderValue::from_str(&a).unwrap());
    req.headers_mut()
        .append("x-org-id", HeaderValue::from_str(&a).unwrap());
    let (s, _) = send(&app, req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let long = "a".repeat(200_000);
    let hostile: Vec<(String, StatusCode)> = vec![
        (format!("{a}, {b}"), StatusCode::BAD_REQUEST),
        (format!("{a},{b}"), StatusCode::BAD_REQUEST),
        (format!("{a} {b}"), StatusCode::BAD_REQUEST),
        (
            format!("{a}'; DROP TABLE customers; --"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "00000000-0000-0000-0000-000000000000".into(),
            StatusCode::BAD_REQUEST,
        ),
        ("".into(), StatusCode::BAD_REQUEST),
        ("acme".into(), StatusCode::BAD_REQUEST),
        (long.clone(), StatusCode::BAD_REQUEST),
        (
            format!("{a}{}", "0".repeat(10_000)),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (value, expected) in &hostile {
        let (s, body) = send(
            &app,
            get_req("/customers")
                .header("x-org-id", value)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, *expected, "{value:.60}: {body}");
        assert_fixed_body(&body, &[value, &a, &b]);
    }
    // Not text.
    let mut req = get_req("/customers").body(Body::empty()).unwrap();
    req.headers_mut()
        .insert("x-org-id", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
    let (s, _) = send(&app, req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Absent.
    let (s, body) = send(&app, get_req("/customers").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_fixed_body(&body, &[]);

    // Other spellings of the SAME org resolve to that org, never to another.
    for spelled in [
        a.to_uppercase(),
        a.replace('-', ""),
        format!("{{{a}}}"),
        format!("urn:uuid:{a}"),
        format!("  {a}\t"),
    ] {
        let (s, body) = send(
            &app,
            get_req("/org")
                .header("x-org-id", &spelled)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        if s == StatusCode::OK {
            assert_eq!(body, a, "{spelled}");
        } else {
            assert_eq!(s, StatusCode::BAD_REQUEST, "{spelled}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extractor_without_the_layer_never_gets_a_default_org() {
    let w = world("rt_axum_nolayer").await;
    let app = app(&w, HeaderOrg::new("x-org-id"));
    let (s, body) = send(
        &app,
        get_req("/unwrapped")
            .header("x-org-id", w.a.to_string())
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_fixed_body(&body, &[&w.a.to_string()]);
    // A route unknown to the router: the layer still answers before the 404.
    let (s, _) = send(&app, get_req("/nope").body(Body::empty()).unwrap()).await;
    assert_ne!(s, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------
// Error bodies never carry row data or request input
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_errors_reflect_no_row_data_or_input() {
    let w = world("rt_axum_errors").await;
    let app = app(&w, HeaderOrg::new("x-org-id"));
    let a = w.a.to_string();
    // A duplicate email: PostgreSQL's DETAIL names the value.
    let (s, body) = send(
        &app,
        Request::builder()
            .method("POST")
            .uri("/create")
            .header("x-org-id", &a)
            .body(Body::from("a1@a.example"))
            .unwrap(),
    )
    .await;
    assert!(s.is_server_error() || s.is_client_error(), "{s} {body}");
    assert_fixed_body(&body, &["a1@a.example"]);
    // A cast of row data: "invalid input syntax for type uuid: \"secret-a-1\"".
    let (s, body) = send(
        &app,
        get_req("/castfail")
            .header("x-org-id", &a)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(s.is_server_error(), "{s} {body}");
    assert_fixed_body(&body, &["secret-a-1"]);
    // A request value that does not parse as an org id.
    let hostile = "<script>alert(1)</script>-not-an-org";
    let (s, body) = send(
        &app,
        Request::builder()
            .method("POST")
            .uri("/parse")
            .header("x-org-id", &a)
            .body(Body::from(hostile))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_fixed_body(&body, &[hostile, "script"]);
}

// ---------------------------------------------------------------------------------------
// JwtClaimOrg
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_forgeries_and_confusions_are_refused() {
    let w = world("rt_axum_jwt").await;
    let app = app(&w, JwtClaimOrg::hs256(SECRET, "org").unwrap());
    let a = w.a.to_string();
    let b = w.b.to_string();
    let exp = now() + 3600;

    // The honest token works and reads A only.
    let good = token(serde_json::json!({"org": a, "exp": exp}));
    let (s, body) = send(&app, bearer(&good)).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, a.as_str()));
    let (s, body) = send(
        &app,
        get_req("/customers")
            .header(header::AUTHORIZATION, format!("Bearer {good}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "secret-a-1"));

    let claims_b = serde_json::json!({"org": b, "exp": exp});
    let hs = |alg: Algorithm| {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims_b,
            &EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap()
    };
    let other_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims_b,
        &EncodingKey::from_secret(b"another secret, 32 bytes or more!!").unwrap(),
    )
    .unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let good_sig = parts[2];
    let unauthenticated: Vec<(&str, String)> = vec![
        (
            "alg none, no signature",
            raw_token(
                &serde_json::json!({"alg": "none", "typ": "JWT"}),
                &claims_b,
                "",
            ),
        ),
        (
            "alg None",
            raw_token(&serde_json::json!({"alg": "None"}), &claims_b, ""),
        ),
        (
            "alg none with A's signature",
            raw_token(&serde_json::json!({"alg": "none"}), &claims_b, good_sig),
        ),
        ("HS384 same secret", hs(Algorithm::HS384)),
        ("HS512 same secret", hs(Algorithm::HS512)),
        ("another key", other_key),
        (
            "A's signature on B's claims",
            format!(
                "{}.{}.{}",
                parts[0],
                b64(claims_b.to_string().as_bytes()),
                good_sig
            ),
        ),
        ("RS256 header, HMAC signature", {
            let h = serde_json::json!({"alg": "RS256", "typ": "JWT"});
            let t = raw_token(&h, &claims_b, "");
            format!("{t}{good_sig}")
        }),
        (
            "expired an hour ago",
            token(serde_json::json!({"org": b, "exp": now() - 3600})),
        ),
        ("no exp", token(serde_json::json!({"org": b}))),
        (
            "exp as a string",
            token(serde_json::json!({"org": b, "exp": format!("{exp}")})),
        ),
        // A NumericDate may be fractional (RFC 7519 2): only a past one must be refused.
        (
            "exp as a float in the past",
            token(serde_json::json!({"org": b, "exp": now() as f64 - 3600.5})),
        ),
        (
            "exp as a huge float",
            token(serde_json::json!({"org": b, "exp": 1e300})),
        ),
        (
            "exp negative",
            token(serde_json::json!({"org": b, "exp": -1})),
        ),
        (
            "exp as an array",
            token(serde_json::json!({"org": b, "exp": [exp]})),
        ),
        (
            "with an audience nobody checks",
            token(serde_json::json!({"org": b, "exp": exp, "aud": "other-service"})),
        ),
        ("two tokens", format!("{good} {}", hs(Algorithm::HS256))),
        ("empty", String::new()),
        ("garbage", "x".repeat(300_000)),
        ("dots only", "..".into()),
    ];
    for (what, t) in &unauthenticated {
        let (s, body) = send(&app, bearer(t)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_fixed_body(&body, &[&b, t.as_str()]);
    }

    // Scheme tricks.
    for h in [
        format!("bearer {good}"),
        format!("Basic {good}"),
        format!("Bearer  {good}"),
        format!("Bearer {good}, Bearer {}", hs(Algorithm::HS256)),
        good.clone(),
    ] {
        let (s, body) = send(
            &app,
            get_req("/org")
                .header(header::AUTHORIZATION, &h)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        if s == StatusCode::OK {
            assert_eq!(body, a, "{h:.40}");
        } else {
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{h:.40}");
        }
    }

    // Claim type confusion: never some org, always a refusal.
    for (what, org, expected) in [
        ("array", serde_json::json!([b]), StatusCode::BAD_REQUEST),
        (
            "array of two",
            serde_json::json!([a, b]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "object",
            serde_json::json!({"id": b}),
            StatusCode::BAD_REQUEST,
        ),
        ("number", serde_json::json!(42), StatusCode::BAD_REQUEST),
        ("bool", serde_json::json!(true), StatusCode::BAD_REQUEST),
        (
            "nil uuid",
            serde_json::json!("00000000-0000-0000-0000-000000000000"),
            StatusCode::BAD_REQUEST,
        ),
        ("slug", serde_json::json!("globex"), StatusCode::BAD_REQUEST),
        (
            "two ids",
            serde_json::json!(format!("{a},{b}")),
            StatusCode::BAD_REQUEST,
        ),
        (
            "long",
            serde_json::json!("f".repeat(100_000)),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let t = token(serde_json::json!({"org": org, "exp": exp}));
        let (s, body) = send(&app, bearer(&t)).await;
        assert_eq!(s, expected, "{what}: {body}");
        assert_fixed_body(&body, &[&b]);
    }
    // null and a missing claim: no org named.
    for claims in [
        serde_json::json!({"org": null, "exp": exp}),
        serde_json::json!({"Org": b, "exp": exp}),
        serde_json::json!({"sub": b, "exp": exp}),
    ] {
        let (s, body) = send(&app, bearer(&token(claims.clone()))).await;
        assert!(
            s == StatusCode::FORBIDDEN || s == StatusCode::BAD_REQUEST,
            "{claims}: {s} {body}"
        );
    }
    // Uppercase / other spellings of A resolve to A.
    for spelled in [
        a.to_uppercase(),
        format!("urn:uuid:{a}"),
        a.replace('-', ""),
    ] {
        let t = token(serde_json::json!({"org": spelled, "exp": exp}));
        let (s, body) = send(&app, bearer(&t)).await;
        if s == StatusCode::OK {
            assert_eq!(body, a);
        }
    }
}

/// An empty HMAC secret (an unset environment variable) must not make a resolver that accepts
/// tokens anyone can sign.
#[test]
fn jwt_with_an_empty_secret_is_refused_at_construction() {
    assert!(JwtClaimOrg::hs256(b"", "org").is_err());
}

/// A token whose `nbf` (not before) is a day ahead is not valid yet (RFC 7519 4.1.5): a
/// resolver that "verifies expiry" should not accept it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_not_yet_valid_is_refused() {
    let w = world("rt_axum_jwt_nbf").await;
    let app = app(&w, JwtClaimOrg::hs256(SECRET, "org").unwrap());
    let t = token(serde_json::json!({
        "org": w.b.to_string(),
        "exp": now() + 2 * 86_400,
        "nbf": now() + 86_400,
    }));
    let (s, body) = send(&app, bearer(&t)).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a not-yet-valid token was accepted: {body}"
    );
}

/// Two Authorization headers naming different orgs: the request proves two orgs at once; the
/// resolver picks one silently (the first), where `HeaderOrg` refuses a repeated header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_two_authorization_headers_are_refused_as_ambiguous() {
    let w = world("rt_axum_jwt_dup").await;
    let app = app(&w, JwtClaimOrg::hs256(SECRET, "org").unwrap());
    let exp = now() + 3600;
    let ta = token(serde_json::json!({"org": w.a.to_string(), "exp": exp}));
    let junk = "not-a-token";
    // A valid token first, a junk one second: a front proxy reading the last header sees an
    // invalid credential; the app acts for A.
    let mut req = get_req("/org").body(Body::empty()).unwrap();
    req.headers_mut().append(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {ta}")).unwrap(),
    );
    req.headers_mut().append(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {junk}")).unwrap(),
    );
    let (s, body) = send(&app, req).await;
    assert_ne!(
        s,
        StatusCode::OK,
        "duplicate Authorization headers accepted, acting for {body}"
    );
}

// ---------------------------------------------------------------------------------------
// SubdomainOrg
// ---------------------------------------------------------------------------------------

fn subdomains(w: &World) -> SubdomainOrg {
    let (a, b) = (w.a, w.b);
    SubdomainOrg::new("example.com", move |slug| match slug {
        "acme" => Some(a),
        "globex" => Some(b),
        _ => None,
    })
}

fn host_req(host: &[u8]) -> Request<Body> {
    let mut req = get_req("/org").body(Body::empty()).unwrap();
    req.headers_mut()
        .insert(header::HOST, HeaderValue::from_bytes(host).unwrap());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subdomain_host_tricks_are_refused() {
    let w = world("rt_axum_sub").await;
    let app = app(&w, subdomains(&w));
    let a = w.a.to_string();
    let b = w.b.to_string();
    let (s, body) = send(&app, host_req(b"acme.example.com")).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, a.as_str()));
    let (s, body) = send(&app, host_req(b"acme.example.com:8443")).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, a.as_str()));

    let long = format!("{}.example.com", "g".repeat(100_000));
    let cases: Vec<(Vec<u8>, &[StatusCode])> = vec![
        (b"ACME.example.com".to_vec(), &[StatusCode::BAD_REQUEST]),
        (b"Globex.example.com".to_vec(), &[StatusCode::BAD_REQUEST]),
        (b"acme.example.com.".to_vec(), &[StatusCode::BAD_REQUEST]),
        (
            b"globex.acme.example.com".to_vec(),
            &[StatusCode::BAD_REQUEST],
        ),
        (
            b"globex.example.com.evil.net".to_vec(),
            &[StatusCode::BAD_REQUEST],
        ),
        (
            b"evil.net/globex.example.com".to_vec(),
            &[StatusCode::BAD_REQUEST],
        ),
        (b"globex%2eexample.com".to_vec(), &[StatusCode::BAD_REQUEST]),
        (b"globexexample.com".to_vec(), &[StatusCode::BAD_REQUEST]),
        (b".example.com".to_vec(), &[StatusCode::BAD_REQUEST]),
        (b"[::1]".to_vec(), &[StatusCode::BAD_REQUEST]),
        (b"example.com".to_vec(), &[StatusCode::UNAUTHORIZED]),
        (b"initech.example.com".to_vec(), &[StatusCode::FORBIDDEN]),
        (
            b"glob\xc3\xa9x.example.com".to_vec(),
            &[StatusCode::BAD_REQUEST],
        ),
        (b"globex .example.com".to_vec(), &[StatusCode::BAD_REQUEST]),
        (b" globex.example.com".to_vec(), &[StatusCode::BAD_REQUEST]),
        (long.into_bytes(), &[StatusCode::BAD_REQUEST]),
    ];
    for (host, expected) in &cases {
        let (s, body) = send(&app, host_req(host)).await;
        let shown = String::from_utf8_lossy(host);
        assert!(expected.contains(&s), "{shown:.60}: {s} {body}");
        assert_fixed_body(&body, &[&shown, &a, &b, "initech", "globex"]);
    }
}

/// Two Host headers (RFC 9112 3.2: a server MUST answer 400): a front proxy routing or
/// authorizing by one and the app resolving the other act for different orgs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subdomain_two_host_headers_are_refused() {
    let w = world("rt_axum_sub_dup").await;
    let app = app(&w, subdomains(&w));
    let mut req = get_req("/org").body(Body::empty()).unwrap();
    req.headers_mut()
        .append(header::HOST, HeaderValue::from_static("acme.example.com"));
    req.headers_mut()
        .append(header::HOST, HeaderValue::from_static("globex.example.com"));
    let (s, body) = send(&app, req).await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "two Host headers accepted, the request acted for org {body}"
    );
}

/// The request target's authority and the Host header name different orgs (an absolute-form
/// HTTP/1.1 target, or HTTP/2's :authority next to a Host header). RFC 9112 3.2.2: the
/// target's authority wins; RFC 9113 8.3.1: such a request is malformed. The resolver must not
/// pick the Host header silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subdomain_authority_and_host_disagreeing_are_refused() {
    let w = world("rt_axum_sub_authority").await;
    let app = app(&w, subdomains(&w));
    let mut req = Request::builder()
        .method("GET")
        .uri("http://globex.example.com/org")
        .body(Body::empty())
        .unwrap();
    req.headers_mut()
        .insert(header::HOST, HeaderValue::from_static("acme.example.com"));
    let (s, body) = send(&app, req).await;
    assert_ne!(
        s,
        StatusCode::OK,
        "target globex.example.com with Host acme.example.com acted for org {body} \
         (acme = {}, globex = {})",
        w.a,
        w.b
    );
    // A Host header that is not text, next to an absolute target: the resolver falls back
    // to the target instead of refusing the invalid Host.
    let mut req = Request::builder()
        .method("GET")
        .uri("http://globex.example.com/org")
        .body(Body::empty())
        .unwrap();
    req.headers_mut().insert(
        header::HOST,
        HeaderValue::from_bytes(b"acme\xff.example.com").unwrap(),
    );
    let (s, body) = send(&app, req).await;
    assert_ne!(
        s,
        StatusCode::OK,
        "an invalid Host header was skipped: acted for {body}"
    );
}

// ---------------------------------------------------------------------------------------
// Many requests of two orgs at once
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_of_two_orgs_never_cross() {
    let w = world("rt_axum_race").await;
    let app = app(&w, HeaderOrg::new("x-org-id"));
    let mut tasks = Vec::new();
    for i in 0..80 {
        let (org, want) = if i % 2 == 0 {
            (w.a, "secret-a-1")
        } else {
            (w.b, "secret-b-1")
        };
        let path = if i % 3 == 0 { "/scoped" } else { "/customers" };
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let req = get_req(path)
                .header("x-org-id", org.to_string())
                .body(Body::empty())
                .unwrap();
            let (s, body) = send(&app, req).await;
            if s == StatusCode::OK {
                assert_eq!(body, want);
            } else {
                assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
