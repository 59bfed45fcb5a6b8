//! `cargo xtask citus bench`: what isolation costs on a Citus cluster, measured side by side
//! in one run. R11: a scoped point lookup through the coordinator (the plain context set with
//! SET LOCAL, inline policies evaluated on the worker) against the same lookup as the cluster's
//! admin in a transaction, without row-level security, on the same table; and the round trips
//! of each, counted.
//!
//! One table of 200,000 rows over 100 orgs, distributed by org with the generated Citus
//! migration. Both sides alternate in batches of 10 (`bench::pair`); the ratio is the median
//! over rounds, with its spread. Written to `target/bench/citus-bench.json` too.

use std::sync::{Arc, Mutex};

use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::prelude::*;
use tenant_core::{OrgContext, OrgId, OrgScoped, TenantPool};
use tenant_testkit::citus::CitusDb;

diesel::table! {
    /// 200,000 rows over 100 orgs, distributed by org.
    bench_citus (org_id, id) { org_id -> Uuid, id -> BigInt, payload -> Text }
}

tenant_lint::registry! {
    /// The Citus bench's tenant table.
    pub static BENCH_CITUS;
    tenant bench_citus => org_id;
}

const ROWS: i64 = 200_000;
const ORGS: i64 = 100;
/// Lookups per side per round.
const N: usize = 1_000;
const TARGET: f64 = 0.80;

fn org(k: i64) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0000 | k as u128)
}

/// The org and row of lookup `i`: rows spread over every org.
fn key(i: usize) -> (i64, i64) {
    let id = (i as i64 * 7919) % ROWS + 1;
    (id % ORGS, id)
}

/// Counts the statements a connection sends (each a round trip).
#[derive(Clone, Default)]
struct Sent(Arc<Mutex<usize>>);

impl Instrumentation for Sent {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event
            && let Ok(mut n) = self.0.lock()
        {
            *n += 1;
        }
    }
}

impl Sent {
    fn take(&self) -> usize {
        self.0
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or(0)
    }
}

/// `cargo xtask citus bench`: builds and runs the measurement with optimizations (a debug
/// build would measure the client's unoptimized code, the SQL checker's above all).
pub(crate) fn run() -> Result<(), String> {
    crate::bench::in_release(&["citus", "bench-run"])
}

/// The measurement itself (`cargo xtask citus bench-run`, in a release build), on the
/// cluster `cargo xtask citus start` left running or on one of its own.
pub(crate) fn measure_on_cluster() -> Result<(), String> {
    crate::citus::with_cluster(measure)
}

fn measure(cluster: &tenant_testkit::citus::CitusCluster) -> Result<(), String> {
    let db = CitusDb::on(&cluster.url(), cluster.worker_urls(), "citus_bench");
    println!("loading {ROWS} rows over {ORGS} orgs, then distributing them by org");
    let mut admin = PgConnection::establish(&db.admin_url()).map_err(|e| e.to_string())?;
    admin
        .batch_execute(&format!(
            "CREATE TABLE bench_citus (org_id uuid NOT NULL, id bigint NOT NULL, payload text NOT NULL,
                                       PRIMARY KEY (org_id, id));
             INSERT INTO bench_citus
               SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i % {ORGS}), 12, '0'))::uuid, i, md5(i::text)
               FROM generate_series(1, {ROWS}) i;"
        ))
        .map_err(|e| format!("loading the bench table: {e}"))?;
    let options = tenant_schema::RlsOptions {
        context: tenant_schema::ContextMode::TrustEveryStatement,
        ..tenant_schema::RlsOptions::default()
    };
    let migration = tenant_schema::citus::generate(&BENCH_CITUS, &options)?;
    admin
        .transaction(|c| c.batch_execute(&migration.up))
        .map_err(|e| format!("the Citus migration: {e}"))?;
    admin
        .batch_execute("VACUUM ANALYZE bench_citus")
        .map_err(|e| e.to_string())?;

    let pool = TenantPool::builder(db.app_url(), &BENCH_CITUS, OrgContext::TrustEveryStatement)
        .set_local_context()
        .max_size(1)
        .build()
        .map_err(|e| e.to_string())?;
    let oid = |k: i64| OrgId::try_from(org(k)).map_err(|e| e.to_string());
    let scoped = |i: usize| -> Result<(), String> {
        let (k, id) = key(i);
        let row = pool
            .with_org(oid(k)?, |s| {
                s.first::<(uuid::Uuid, i64, String), _>(
                    s.query(bench_citus::table).filter(bench_citus::id.eq(id)),
                )
            })
            .map_err(|e| e.to_string())?;
        row.map(drop)
            .ok_or_else(|| format!("row {id} of org {k} not found (scoped)"))
    };
    let admin = std::cell::RefCell::new(admin);
    let unscoped = |i: usize| -> Result<(), String> {
        let (k, id) = key(i);
        let row = admin
            .borrow_mut()
            .transaction(|c| {
                bench_citus::table
                    .filter(bench_citus::org_id.eq(org(k)))
                    .filter(bench_citus::id.eq(id))
                    .first::<(uuid::Uuid, i64, String)>(c)
                    .optional()
            })
            .map_err(|e| e.to_string())?;
        row.map(drop)
            .ok_or_else(|| format!("row {id} of org {k} not found (admin)"))
    };
    // Warm both: plans, the coordinator's connections to the workers.
    for i in 0..200 {
        scoped(i)?;
        unscoped(i)?;
    }

    // Round trips of one lookup each, counted on connections of their own.
    let sent = Sent::default();
    let mut app = PgConnection::establish(&db.app_url()).map_err(|e| e.to_string())?;
    app.set_instrumentation(sent.clone());
    let (k, id) = key(1);
    let s =
        OrgScoped::begin_set_local(&mut app, oid(k)?, &BENCH_CITUS).map_err(|e| e.to_string())?;
    let mut s = s;
    s.first::<(uuid::Uuid, i64, String), _>(
        s.query(bench_citus::table).filter(bench_citus::id.eq(id)),
    )
    .map_err(|e| e.to_string())?;
    s.commit().map_err(|e| e.to_string())?;
    let scoped_trips = sent.take();
    let mut raw = PgConnection::establish(&db.admin_url()).map_err(|e| e.to_string())?;
    raw.set_instrumentation(sent.clone());
    raw.transaction(|c| {
        bench_citus::table
            .filter(bench_citus::org_id.eq(org(k)))
            .filter(bench_citus::id.eq(id))
            .first::<(uuid::Uuid, i64, String)>(c)
            .optional()
    })
    .map_err(|e| e.to_string())?;
    let admin_trips = sent.take();

    let rounds: usize = std::env::var("TENANT_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    let mut samples = Vec::new();
    for round in 0..rounds {
        let ratio = crate::bench::pair(N, &scoped, &unscoped)?;
        println!("  round {}: {ratio:.2}", round + 1);
        samples.push(ratio);
    }
    let (min, max) = samples
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    let median = crate::median(samples.clone());
    println!(
        "\n| id | ratio | median | spread | target | round trips |\n|---|---|---|---|---|---|\n\
         | R11 | scoped point lookup through the Citus coordinator (SET LOCAL, inline policies on the worker) / the same lookup as the cluster's admin in a transaction, no RLS | {median:.2} | {min:.2}-{max:.2} | >= {TARGET:.2} {} | {scoped_trips} / {admin_trips} |",
        if median >= TARGET {
            "(met)"
        } else {
            "(NOT met)"
        }
    );
    let dir = crate::workspace().join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let json = serde_json::json!({
        "id": "R11",
        "rows": ROWS, "orgs": ORGS, "lookups_per_side_per_round": N,
        "samples": samples, "median": median, "min": min, "max": max, "target": TARGET,
        "round_trips": { "scoped": scoped_trips, "admin": admin_trips },
    });
    std::fs::write(
        dir.join("citus-bench.json"),
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}
