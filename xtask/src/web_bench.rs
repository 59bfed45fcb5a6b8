//! `cargo xtask web-bench`: A2, requests per second through axum with 64 concurrent clients,
//! the async path (`AsyncTenantPool` behind tenant-axum's layer) over the same handler on the
//! sync pool inside `spawn_blocking`, side by side in one run (release build). Both servers
//! run on loopback in this process, on the same two-thread tokio runtime as the clients
//! (reqwest, keep-alive); both resolve the org from the `x-org-id` header and run the same
//! scoped point lookup in a transaction of it (`with_org`: three round trips each), on pools of
//! 8 connections; a third server runs the async handler in one flight (`load_one`). Rounds
//! alternate the servers, 2,000 requests each, after a warm-up round; the median and spread of
//! each async side's rate over the sync side's.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use diesel::ExpressionMethods;
use tenant_axum::{ApiError, HeaderOrg, Tenant, TenantLayer};
use tenant_core::{OrgId, TenantPool};
use two_companies::schema::{customers, orgs};

const CLIENTS: usize = 64;
const REQUESTS: usize = 2_000;
const ROUNDS: usize = 5;
const ORGS: usize = 20;
const POOL: u32 = 8;

/// `cargo xtask web-bench`: the measurement as a release build.
pub fn run() -> Result<(), String> {
    crate::bench::in_release(&["web-bench-run"])
}

/// The measurement itself.
pub fn measure() -> Result<(), String> {
    crate::with_database(|admin_url| {
        let (admin, app) = crate::prepare_story_db(admin_url, "tenant_web_bench")?;
        two_companies::migrate(&admin).map_err(|e| e.to_string())?;
        let key = crate::context_key::throwaway_key(&[&admin])?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("starting tokio: {e}"))?;
        rt.block_on(async move {
            let sync_pool = TenantPool::builder(app.clone(), &two_companies::REGISTRY, key.clone())
                .max_size(POOL)
                .build()
                .map_err(|e| e.to_string())?;
            let async_pool = TenantPool::builder(app, &two_companies::REGISTRY, key)
                .max_size(POOL)
                .build_async()
                .await
                .map_err(|e| e.to_string())?;
            let targets = Arc::new(seed(&sync_pool)?);
            let async_app = Router::new()
                .route("/customers/{id}", get(async_lookup))
                .layer(TenantLayer::new(
                    async_pool.clone(),
                    HeaderOrg::new("x-org-id"),
                ));
            let one_flight_app = Router::new()
                .route("/customers/{id}", get(one_flight_lookup))
                .layer(TenantLayer::new(async_pool, HeaderOrg::new("x-org-id")));
            let pool = sync_pool.clone();
            let sync_app = Router::new().route(
                "/customers/{id}",
                get(move |headers: HeaderMap, Path(id): Path<uuid::Uuid>| {
                    sync_lookup(pool.clone(), headers, id)
                }),
            );
            let async_base = serve(async_app).await?;
            let one_flight_base = serve(one_flight_app).await?;
            let sync_base = serve(sync_app).await?;
            let client = reqwest::Client::new();
            let (mut ratios, mut one_ratios) = (Vec::new(), Vec::new());
            let mut rates = Vec::new();
            for round in 0..=ROUNDS {
                let a = load(&client, &async_base, &targets).await?;
                let o = load(&client, &one_flight_base, &targets).await?;
                let s = load(&client, &sync_base, &targets).await?;
                println!(
                    "round {round}: async {a:.0} req/s, async in one flight {o:.0} req/s, sync + \
                     spawn_blocking {s:.0} req/s; ratios {:.3} and {:.3}",
                    a / s,
                    o / s
                );
                if round > 0 {
                    ratios.push(a / s);
                    one_ratios.push(o / s);
                    rates.push((a, o, s));
                }
            }
            let median = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                (v[v.len() / 2], v[0], v[v.len() - 1])
            };
            let (a, _, _) = median(rates.iter().map(|r| r.0).collect());
            let (o, _, _) = median(rates.iter().map(|r| r.1).collect());
            let (s, _, _) = median(rates.iter().map(|r| r.2).collect());
            let (m, lo, hi) = median(ratios);
            let (om, olo, ohi) = median(one_ratios);
            println!(
                "\nA2 requests/s through axum, 64 clients, async path (with_org) / sync pool in \
                 spawn_blocking: median {m:.3}, spread {lo:.3}-{hi:.3}; the async path in one \
                 flight (load_one) / the same: median {om:.3}, spread {olo:.3}-{ohi:.3} (medians \
                 {a:.0}, {o:.0} and {s:.0} req/s)"
            );
            Ok(())
        })
    })
}

async fn async_lookup(tenant: Tenant, Path(id): Path<uuid::Uuid>) -> Result<String, ApiError> {
    let name: Option<String> = tenant
        .run(async |s| {
            s.first(
                s.query(customers::table)
                    .filter(customers::id.eq(id))
                    .select(customers::name),
            )
            .await
        })
        .await?;
    Ok(name.unwrap_or_default())
}

async fn one_flight_lookup(tenant: Tenant, Path(id): Path<uuid::Uuid>) -> Result<String, ApiError> {
    let names: Vec<String> = tenant
        .load_one(|q| {
            q.query(customers::table)
                .filter(customers::id.eq(id))
                .select(customers::name)
        })
        .await?;
    Ok(names.into_iter().next().unwrap_or_default())
}

async fn sync_lookup(
    pool: TenantPool,
    headers: HeaderMap,
    id: uuid::Uuid,
) -> Result<String, StatusCode> {
    let org: OrgId = headers
        .get("x-org-id")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse().ok())
        .ok_or(StatusCode::BAD_REQUEST)?;
    let name = tokio::task::spawn_blocking(move || {
        pool.with_org(org, |s| {
            s.first::<String, _>(
                s.query(customers::table)
                    .filter(customers::id.eq(id))
                    .select(customers::name),
            )
        })
    })
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
    .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(name.unwrap_or_default())
}

/// Serves `app` on a loopback port; its base URL.
async fn serve(app: Router) -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("binding: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

/// `REQUESTS` lookups from `CLIENTS` concurrent clients; requests per second. Every answer
/// must be the right customer's name (a wrong org would get none).
async fn load(
    client: &reqwest::Client,
    base: &str,
    targets: &Arc<Vec<(OrgId, uuid::Uuid, String)>>,
) -> Result<f64, String> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, base, targets) = (client.clone(), base.to_owned(), Arc::clone(targets));
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while i < REQUESTS {
                let (org, id, name) = &targets[i % ORGS];
                let response = client
                    .get(format!("{base}/customers/{id}"))
                    .header("x-org-id", org.to_string())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let text = response.text().await.map_err(|e| e.to_string())?;
                if text != *name {
                    return Err(format!("customer {id} of org {org}: got `{text}`"));
                }
                i += CLIENTS;
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(REQUESTS as f64 / start.elapsed().as_secs_f64())
}

/// `ORGS` orgs with a customer each: the lookups' targets and the names they must return.
fn seed(pool: &TenantPool) -> Result<Vec<(OrgId, uuid::Uuid, String)>, String> {
    let mut targets = Vec::new();
    for k in 0..ORGS {
        let org = OrgId::new_random();
        let id = uuid::Uuid::now_v7();
        let name = format!("customer {k}");
        pool.with_org(org, |s| {
            s.execute(s.insert(orgs::table, orgs::name.eq(format!("org {k}"))))?;
            s.execute(s.insert(
                customers::table,
                (
                    customers::id.eq(id),
                    customers::name.eq(&name),
                    customers::email.eq(format!("c{k}@example.com")),
                ),
            ))
        })
        .map_err(|e| e.to_string())?;
        targets.push((org, id, name));
    }
    Ok(targets)
}
