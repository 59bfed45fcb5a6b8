//! `cargo xtask async-bench`: A1, what a scoped transaction of one statement costs on the async
//! path against one autocommit query on the same kind of connection, side by side in one run
//! (release build), over loopback and over a link with 0.5 ms of added round-trip time
//! (`delay_proxy.rs`). The scoped sides: `load_one` (one flight once the statement is
//! prepared) and `with_org` (the opening, the statement and COMMIT one after another); the
//! baseline: the same point lookup with diesel-async on a connection of the admin, which row-
//! level security does not filter. Interleaved batches of 10, 7 rounds after a warm-up round;
//! the median and spread of each ratio (the scoped side's rate over the baseline's).

use std::time::Duration;

use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl as _};
use tenant_core::{AsyncTenantPool, OrgId, TenantPool};
use two_companies::schema::{customers, orgs};

use crate::delay_proxy::DelayProxy;

const N: usize = 200;
const ROUNDS: usize = 7;
const ORGS: usize = 20;

/// `cargo xtask async-bench`: the measurement as a release build.
pub fn run() -> Result<(), String> {
    crate::bench::in_release(&["async-bench-run"])
}

/// The measurement itself.
pub fn measure() -> Result<(), String> {
    crate::with_database(|admin_url| {
        let (admin, app) = crate::prepare_story_db(admin_url, "tenant_async_bench")?;
        two_companies::migrate(&admin).map_err(|e| e.to_string())?;
        let key = crate::context_key::throwaway_key(&[&admin])?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting tokio: {e}"))?;
        let delayed = DelayProxy::start(&app, Duration::from_micros(250))?;
        let mut lines = Vec::new();
        for (link, app_url, admin_url) in [
            ("loopback", app.clone(), admin.clone()),
            ("0.5 ms RTT", delayed.url(&app), delayed.url(&admin)),
        ] {
            let pool = rt
                .block_on(
                    TenantPool::builder(app_url, &two_companies::REGISTRY, key.clone())
                        .max_size(1)
                        .build_async(),
                )
                .map_err(|e| e.to_string())?;
            let targets = rt.block_on(seed(&pool))?;
            let mut plain = rt
                .block_on(AsyncPgConnection::establish(&admin_url))
                .map_err(|e| format!("connecting the baseline: {e}"))?;
            let one_flight = |i: usize| -> Result<(), String> {
                let (org, id) = targets[i % ORGS];
                rt.block_on(pool.load_one(org, |q| {
                    q.query(customers::table)
                        .filter(customers::id.eq(id))
                        .select(customers::name)
                }))
                .map(|rows: Vec<String>| drop(std::hint::black_box(rows)))
                .map_err(|e| e.to_string())
            };
            let stepwise = |i: usize| -> Result<(), String> {
                let (org, id) = targets[i % ORGS];
                rt.block_on(pool.with_org(org, async |s| {
                    s.first::<String, _>(
                        s.query(customers::table)
                            .filter(customers::id.eq(id))
                            .select(customers::name),
                    )
                    .await
                }))
                .map(|row| drop(std::hint::black_box(row)))
                .map_err(|e| e.to_string())
            };
            let mut autocommit = |i: usize| -> Result<(), String> {
                let (_, id) = targets[i % ORGS];
                rt.block_on(
                    customers::table
                        .filter(customers::id.eq(id))
                        .select(customers::name)
                        .first::<String>(&mut plain),
                )
                .map(|row| drop(std::hint::black_box(row)))
                .map_err(|e| e.to_string())
            };
            let (mut flight, mut steps, mut us) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..=ROUNDS {
                let start = std::time::Instant::now();
                let f = crate::bench::pair(N, one_flight, &mut autocommit)?;
                let base_us = start.elapsed().as_secs_f64() * 1e6 / (N as f64 * (1.0 + 1.0 / f));
                let s = crate::bench::pair(N, stepwise, &mut autocommit)?;
                println!(
                    "{link} round {round}: load_one / autocommit {f:.3}, with_org / autocommit \
                     {s:.3} (autocommit about {base_us:.0} us)"
                );
                if round > 0 {
                    flight.push(f);
                    steps.push(s);
                    us.push(base_us);
                }
            }
            let spread = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                (v[v.len() / 2], v[0], v[v.len() - 1])
            };
            let (fm, flo, fhi) = spread(flight);
            let (sm, slo, shi) = spread(steps);
            let (um, _, _) = spread(us);
            lines.push(format!(
                "A1 {link}: one-statement scoped transaction / one autocommit query (async, \
                 autocommit about {um:.0} us): load_one {fm:.3} ({flo:.3}-{fhi:.3}), with_org \
                 {sm:.3} ({slo:.3}-{shi:.3})"
            ));
        }
        println!();
        for line in lines {
            println!("{line}");
        }
        Ok(())
    })
}

/// `ORGS` orgs with a customer each: the lookups' targets.
async fn seed(pool: &AsyncTenantPool) -> Result<Vec<(OrgId, uuid::Uuid)>, String> {
    let mut targets = Vec::new();
    for k in 0..ORGS {
        let org = OrgId::new_random();
        let id = uuid::Uuid::now_v7();
        pool.with_org(org, async |s| {
            s.execute(s.insert(orgs::table, orgs::name.eq(format!("org {k}"))))
                .await?;
            s.execute(s.insert(
                customers::table,
                (
                    customers::id.eq(id),
                    customers::name.eq(format!("customer {k}")),
                    customers::email.eq(format!("c{k}@example.com")),
                ),
            ))
            .await
        })
        .await
        .map_err(|e| e.to_string())?;
        targets.push((org, id));
    }
    Ok(targets)
}
