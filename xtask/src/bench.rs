//! `cargo xtask bench`: what isolation costs, as ratios measured side by side in one run.
//!
//! One database, four tables of 1,000,000 rows: `bench_items_signed` (100 orgs, RLS from the
//! generator in the default signed mode: what R1, R2, R6 and R7 measure), `bench_items` (100
//! orgs, RLS in the opt-in plain-setting mode: R8 and R9 compare with it; R3, R4 and R10 use
//! it, measuring what the mode does not change), `bench_items_1000` (1,000 orgs, plain
//! setting) and `bench_plain` (100 orgs, no RLS: the baseline a service would have without
//! tenant-safe). Every variant runs in every round,
//! interleaved, so drift on this shared machine hits both sides of a ratio alike; each ratio
//! is reported as the median over rounds with its spread (min to max). Written to
//! `target/bench/bench.json` too.

use std::time::Instant;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use tenant_core::{OrgContext, OrgId, TenantPool};

diesel::table! {
    /// 1M rows over 100 orgs, RLS.
    bench_items (org_id, id) { org_id -> Uuid, id -> BigInt, payload -> Text }
}
diesel::table! {
    /// 1M rows over 1,000 orgs, RLS.
    bench_items_1000 (org_id, id) { org_id -> Uuid, id -> BigInt, payload -> Text }
}
diesel::table! {
    /// 1M rows over 100 orgs, no RLS.
    bench_plain (org_id, id) { org_id -> Uuid, id -> BigInt, payload -> Text }
}

diesel::table! {
    /// 1M rows over 100 orgs, RLS in the signed mode.
    bench_items_signed (org_id, id) { org_id -> Uuid, id -> BigInt, payload -> Text }
}

tenant_lint::registry! {
    /// The bench's tenant tables.
    pub static BENCH;
    tenant bench_items => org_id;
    tenant bench_items_1000 => org_id;
}

tenant_lint::registry! {
    /// The table whose policies verify a signed token.
    pub static BENCH_SIGNED;
    tenant bench_items_signed => org_id;
}

/// The bench's context key (32 bytes; the database holds the same).
const KEY: [u8; 32] = [0x5a; 32];

const ROWS: i64 = 1_000_000;
const ROUNDS: usize = 7;

/// Rounds when `TENANT_BENCH_ROUNDS` is set (for a quick look).
fn rounds() -> usize {
    std::env::var("TENANT_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS)
}

fn org(k: i64) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0000 | k as u128)
}

fn setup(admin: &str) -> Result<(), String> {
    let mut conn = PgConnection::establish(admin).map_err(|e| e.to_string())?;
    let table = |name: &str, orgs: i64| {
        format!(
            "CREATE TABLE {name} (org_id uuid NOT NULL, id bigint NOT NULL, payload text NOT NULL, PRIMARY KEY (org_id, id));
             INSERT INTO {name} SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i % {orgs}), 12, '0'))::uuid, i, md5(i::text)
               FROM generate_series(1, {ROWS}) i;"
        )
    };
    let ddl = [
        table("bench_items", 100),
        table("bench_items_1000", 1000),
        table("bench_plain", 100),
        table("bench_items_signed", 100),
    ]
    .join("\n");
    conn.batch_execute(&ddl)
        .map_err(|e| format!("creating the bench tables: {e}"))?;
    // The plain setting's tables, for the ratios that compare with it (R8, R9) or measure what
    // does not depend on the context (R3, R4, R5, R10).
    let plain = tenant_schema::RlsOptions {
        context: tenant_schema::ContextMode::TrustEveryStatement,
        ..tenant_schema::RlsOptions::default()
    };
    let migration = tenant_schema::generate(&BENCH, &plain);
    conn.batch_execute(&migration.up)
        .map_err(|e| format!("applying RLS: {e}"))?;
    conn.batch_execute(
        &tenant_schema::generate(&BENCH_SIGNED, &tenant_schema::RlsOptions::default()).up,
    )
    .map_err(|e| format!("applying the signed RLS: {e}"))?;
    let hex = tenant_core::context::to_hex(&KEY);
    conn.batch_execute(&format!(
        "SELECT tenant_context.add_key('bench', '\\x{hex}')"
    ))
    .map_err(|e| format!("adding the context key: {e}"))?;
    conn.batch_execute("GRANT SELECT ON bench_plain TO tenant_app")
        .map_err(|e| e.to_string())?;
    // VACUUM refuses a transaction block, which a multi-statement message is.
    conn.batch_execute("VACUUM ANALYZE")
        .map_err(|e| e.to_string())?;
    prewarm(&mut conn)
}

#[derive(QueryableByName)]
struct Buffers {
    #[diesel(sql_type = BigInt)]
    tables: i64,
    #[diesel(sql_type = BigInt)]
    buffers: i64,
}

/// Loads every bench table and index into shared buffers when they fit, and says so; warns
/// when they do not. The ratios compare lookups on different tables (R1, R5, R8), and the
/// other ratios keep `bench_items` warm: with the tables partly in shared buffers, a lookup
/// on the colder table pays reads from the OS cache that have nothing to do with isolation
/// (measured: R8 0.88 with 128 MB of shared buffers, 0.90 with 2 GB).
fn prewarm(conn: &mut PgConnection) -> Result<(), String> {
    let sizes = diesel::sql_query(
        "SELECT (SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c
                  WHERE c.relkind = 'r' AND c.relname LIKE 'bench\\_%') AS tables,
                (SELECT setting::bigint * current_setting('block_size')::bigint
                   FROM pg_settings WHERE name = 'shared_buffers') AS buffers",
    )
    .get_result::<Buffers>(conn)
    .map_err(|e| format!("reading the bench tables' size: {e}"))?;
    let mb = |b: i64| b / (1024 * 1024);
    if sizes.tables > sizes.buffers * 9 / 10 {
        println!(
            "warning: the bench tables ({} MB) do not fit in shared_buffers ({} MB): ratios \
             between tables (R1, R5, R8) also measure reads from the OS cache; give the server \
             shared_buffers = 1GB (the throwaway cluster has it)",
            mb(sizes.tables),
            mb(sizes.buffers)
        );
        return Ok(());
    }
    let loaded = conn.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS pg_prewarm;
         SELECT pg_prewarm(c.oid) FROM pg_class c
          WHERE c.relkind IN ('r', 'i') AND c.relname LIKE 'bench\\_%';",
    );
    match loaded {
        Ok(()) => println!(
            "the bench tables ({} MB) are in shared buffers ({} MB)",
            mb(sizes.tables),
            mb(sizes.buffers)
        ),
        // pg_prewarm is a contrib module: without it the warm-up round does what it can.
        Err(e) => println!("pg_prewarm is not available ({e}): the warm-up round warms the tables"),
    }
    Ok(())
}

/// `f` in a scoped transaction for `org` on `conn` (the library's scoped path, as the pool
/// runs it, without the pool's checkout).
fn in_scope<T>(
    conn: &std::cell::RefCell<&mut PgConnection>,
    org: OrgId,
    f: impl FnOnce(
        &mut tenant_core::OrgScoped<&mut PgConnection>,
    ) -> Result<T, tenant_core::TenantError>,
) -> Result<T, tenant_core::TenantError> {
    let mut c = conn.borrow_mut();
    let mut s = tenant_core::OrgScoped::begin(&mut c, org, &BENCH)?;
    let value = f(&mut s)?;
    s.commit()?;
    Ok(value)
}

/// [`in_scope`] in the signed context: `f` in a transaction whose org is a token signed with
/// `key` for `backend`.
fn in_signed_scope<T>(
    conn: &std::cell::RefCell<&mut PgConnection>,
    org: OrgId,
    key: &tenant_core::context::ContextKey,
    backend: tenant_core::context::Backend,
    f: impl FnOnce(
        &mut tenant_core::OrgScoped<&mut PgConnection>,
    ) -> Result<T, tenant_core::TenantError>,
) -> Result<T, tenant_core::TenantError> {
    let mut c = conn.borrow_mut();
    let mut s = tenant_core::OrgScoped::begin_signed(&mut c, org, &BENCH_SIGNED, key, backend)?;
    let value = f(&mut s)?;
    s.commit()?;
    Ok(value)
}

/// The opening message of a scoped transaction in the plain-setting mode, as
/// `tenant_core::OrgScoped::begin` writes it (`opening.rs`, `Opening::Setting`); R10 sends it
/// with plain diesel, and [`check_opening`] makes sure the handle sends the same.
fn opening(org: OrgId) -> String {
    tenant_core::__private::opening_message(org)
}

/// Fails unless the handle's opening is exactly [`opening`] (watched with diesel's
/// instrumentation): otherwise R10 would compare different messages.
fn check_opening(conn: &mut PgConnection, org: OrgId) -> Result<(), String> {
    use diesel::connection::{Instrumentation, InstrumentationEvent};
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = std::sync::Arc::clone(&sent);
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { query, .. } = event
            && let Ok(mut v) = record.lock()
        {
            v.push(query.to_string());
        }
    });
    let outcome = tenant_core::OrgScoped::begin(&mut *conn, org, &BENCH)
        .and_then(tenant_core::OrgScoped::rollback);
    conn.set_instrumentation(None::<Box<dyn Instrumentation>>);
    outcome.map_err(|e| e.to_string())?;
    let first = sent.lock().map_err(|e| e.to_string())?.first().cloned();
    // Each opening reseeds random() with a fresh value: compared without it.
    if first.as_deref().map(without_seed) == Some(without_seed(&opening(org))) {
        Ok(())
    } else {
        Err(format!(
            "R10 would compare different messages: the handle opened with {first:?}, the bench sends {:?}; update `opening` in xtask/src/bench.rs",
            opening(org)
        ))
    }
}

/// `message` with the value of its `setseed(..)` left out.
fn without_seed(message: &str) -> String {
    match message.rfind("setseed(") {
        Some(at) => {
            let rest = &message[at..];
            let end = rest.find(')').map_or(message.len(), |e| at + e);
            format!("{}setseed(){}", &message[..at], &message[end + 1..])
        }
        None => message.to_owned(),
    }
}

/// Runs `a` and `b` `n` times each, alternating in batches of 10 so that whatever else the
/// machine does hits both alike; returns rate(a) / rate(b).
pub(crate) fn pair(
    n: usize,
    mut a: impl FnMut(usize) -> Result<(), String>,
    mut b: impl FnMut(usize) -> Result<(), String>,
) -> Result<f64, String> {
    let (mut ta, mut tb) = (0.0, 0.0);
    for batch in 0..n.div_ceil(10) {
        let range = batch * 10..((batch + 1) * 10).min(n);
        let start = Instant::now();
        for i in range.clone() {
            a(i)?;
        }
        ta += start.elapsed().as_secs_f64();
        let start = Instant::now();
        for i in range {
            b(i)?;
        }
        tb += start.elapsed().as_secs_f64();
    }
    if std::env::var_os("TENANT_BENCH_VERBOSE").is_some() {
        println!(
            "    a {:.1} us/op, b {:.1} us/op",
            ta * 1e6 / n as f64,
            tb * 1e6 / n as f64
        );
    }
    Ok(tb / ta)
}

/// The ratios named by `TENANT_BENCH_ONLY` (say `R1,R8`, for a quick look at some), or all.
fn only() -> Option<Vec<String>> {
    std::env::var("TENANT_BENCH_ONLY")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
}

/// A pseudo-random (org, id) of a table with `orgs` orgs (ids `1..=ROWS`, org = id % orgs),
/// the same sequence for every variant.
fn key(i: usize, orgs: i64) -> (i64, i64) {
    let i = i as i64;
    let k = (i * 7919) % orgs;
    let j = (i.wrapping_mul(2_654_435_761) & 0x7fff_ffff) % (ROWS / orgs - 1) + 1;
    (k, orgs * j + k)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

struct Ratio {
    id: &'static str,
    what: &'static str,
    target: &'static str,
    samples: Vec<f64>,
}

/// `cargo xtask bench`: builds and runs the measurement with optimizations (a debug build
/// would measure the client's unoptimized code, not isolation).
pub fn run() -> Result<(), String> {
    in_release(&["bench-run"])
}

/// Runs `cargo xtask <args>` as a release build: a benchmark measures isolation, not the
/// client's unoptimized code.
pub(crate) fn in_release(args: &[&str]) -> Result<(), String> {
    let status = crate::cargo()
        .args(["run", "--release", "--quiet", "--package", "xtask", "--"])
        .args(args)
        .status()
        .map_err(|e| format!("running the release build: {e}"))?;
    status.success().then_some(()).ok_or_else(|| {
        format!(
            "the release build of `cargo xtask {}` failed",
            args.join(" ")
        )
    })
}

/// The measurement itself (`cargo xtask bench-run`, in a release build).
pub fn measure() -> Result<(), String> {
    crate::with_database(|admin_url| {
        let (admin, app) = crate::prepare_story_db(admin_url, "tenant_bench")?;
        println!("setting up 3 x {ROWS} rows ...");
        setup(&admin)?;
        let context_key =
            tenant_core::context::ContextKey::new("bench", &KEY).map_err(|e| e.to_string())?;
        // The pools' start-up checks vouch for the bench database (role, RLS forced, the
        // tokens verified, ...).
        TenantPool::builder(app.clone(), &BENCH, OrgContext::TrustEveryStatement)
            .max_size(1)
            .build()
            .map_err(|e| e.to_string())?;
        TenantPool::builder(app.clone(), &BENCH_SIGNED, &context_key)
            .max_size(1)
            .build()
            .map_err(|e| e.to_string())?;
        let mut raw = PgConnection::establish(&app).map_err(|e| e.to_string())?;
        check_opening(
            &mut raw,
            OrgId::try_from(org(0)).map_err(|e| e.to_string())?,
        )?;
        let backend = tenant_core::context::Backend::read(&mut raw).map_err(|e| e.to_string())?;
        let mut superuser = PgConnection::establish(&admin).map_err(|e| e.to_string())?;
        let oid = |k: i64| OrgId::try_from(org(k)).map_err(|e| e.to_string());
        let err = |e: diesel::result::Error| e.to_string();

        let mut ratios = vec![
            Ratio {
                id: "R1",
                what: "scoped point lookup (signed context, the default) / raw transaction, hand-written org filter, no RLS",
                target: ">= 0.90",
                samples: vec![],
            },
            Ratio {
                id: "R2",
                what: "scoped single-query transaction (signed) / four round trips (BEGIN, set_config of the token, query, COMMIT)",
                target: ">= 1.20",
                samples: vec![],
            },
            Ratio {
                id: "R3",
                what: "RLS-only count of 1M rows, seq scan / RLS bypassed + literal filter (time)",
                target: "<= 1.15",
                samples: vec![],
            },
            Ratio {
                id: "R4",
                what: "per-org scan of 10,000 rows, RLS on / RLS off",
                target: ">= 0.85",
                samples: vec![],
            },
            Ratio {
                id: "R5",
                what: "point lookup, 1,000 orgs / 100 orgs (same rows; plain setting)",
                target: ">= 0.90",
                samples: vec![],
            },
            Ratio {
                id: "R6",
                what: "five queries in one scoped transaction (signed) / five in a raw transaction",
                target: ">= 0.90",
                samples: vec![],
            },
            Ratio {
                id: "R7",
                what: "scoped single-query transaction (signed) / one prepared autocommit query",
                target: ">= 0.40 (report)",
                samples: vec![],
            },
            Ratio {
                id: "R8",
                what: "scoped point lookup, signed context / plain setting (OrgContext::TrustEveryStatement)",
                target: ">= 0.90",
                samples: vec![],
            },
            Ratio {
                id: "R9",
                what: "five queries in one scoped transaction, signed context / plain setting",
                target: "report",
                samples: vec![],
            },
            Ratio {
                id: "R10",
                what: "scoped point lookup / plain diesel sending the same three messages (the client's cost; plain setting)",
                target: ">= 0.95",
                samples: vec![],
            },
        ];
        const N: usize = 400;
        let only = only();
        let ids: Vec<&str> = ratios.iter().map(|r| r.id).collect();
        let want = |i: usize| only.as_ref().is_none_or(|o| o.iter().any(|x| x == ids[i]));
        // Round 0 warms up (plans, caches, the connection) and is not counted.
        for round in 0..=rounds() {
            // Every variant runs on the same connection: which backend (and core) serves a
            // connection changed single-query latency by 4x here, more than anything measured.
            let raw_conn = std::cell::RefCell::new(&mut raw);
            // The default mode: the signed context (a token in the BEGIN message, verified once
            // per statement).
            let signed_lookup = |i: usize| -> Result<(), String> {
                let (k, id) = key(i, 100);
                in_signed_scope(&raw_conn, oid(k)?, &context_key, backend, |s| {
                    s.first::<(uuid::Uuid, i64, String), _>(
                        s.query(bench_items_signed::table)
                            .filter(bench_items_signed::id.eq(id)),
                    )
                })
                .map(drop)
                .map_err(|e| e.to_string())
            };
            // R1: point lookups, scoped (signed, RLS) against a raw transaction (no RLS); the
            // same lookup in the plain setting's mode is R8's other side.
            let scoped_lookup = |i: usize| -> Result<(), String> {
                let (k, id) = key(i, 100);
                in_scope(&raw_conn, oid(k)?, |s| {
                    s.first::<(uuid::Uuid, i64, String), _>(
                        s.query(bench_items::table).filter(bench_items::id.eq(id)),
                    )
                })
                .map(drop)
                .map_err(|e| e.to_string())
            };
            let plain_lookup = |i: usize| -> Result<(), String> {
                let (k, id) = key(i, 100);
                raw_conn
                    .borrow_mut()
                    .transaction(|c| {
                        bench_plain::table
                            .filter(bench_plain::org_id.eq(org(k)))
                            .filter(bench_plain::id.eq(id))
                            .first::<(uuid::Uuid, i64, String)>(c)
                            .optional()
                    })
                    .map(drop)
                    .map_err(err)
            };
            if want(0) {
                ratios[0]
                    .samples
                    .push(pair(N, signed_lookup, plain_lookup)?);
            }
            // R2: the naive form, same RLS table and query, four round trips, signing the org
            // as the scoped handle does.
            let naive = |i: usize| -> Result<(), String> {
                let (k, id) = key(i, 100);
                let mut c = raw_conn.borrow_mut();
                c.batch_execute("BEGIN").map_err(err)?;
                c.batch_execute(&format!(
                    "SELECT set_config('{}', '{}', true)",
                    tenant_core::context::TOKEN_SETTING,
                    context_key.token(oid(k)?, backend.pid())
                ))
                .map_err(err)?;
                let _ = bench_items_signed::table
                    .filter(bench_items_signed::org_id.eq(org(k)))
                    .filter(bench_items_signed::id.eq(id))
                    .first::<(uuid::Uuid, i64, String)>(&mut **c)
                    .optional()
                    .map_err(err)?
                    .ok_or_else(|| format!("naive: no row {id} in org {k}"))?;
                c.batch_execute("COMMIT").map_err(err)
            };
            if want(1) {
                ratios[1].samples.push(pair(N, signed_lookup, naive)?);
            }
            // R7: one prepared autocommit query: the floor round trips set.
            let floor = |i: usize| -> Result<(), String> {
                let (k, id) = key(i, 100);
                bench_plain::table
                    .filter(bench_plain::org_id.eq(org(k)))
                    .filter(bench_plain::id.eq(id))
                    .first::<(uuid::Uuid, i64, String)>(&mut **raw_conn.borrow_mut())
                    .optional()
                    .map(drop)
                    .map_err(err)
            };
            if want(6) {
                ratios[6].samples.push(pair(N, signed_lookup, floor)?);
            }
            if want(7) {
                ratios[7]
                    .samples
                    .push(pair(N, signed_lookup, scoped_lookup)?);
            }
            // R10: plain diesel sending exactly what the scoped lookup sends (the opening, the
            // same SELECT on the same RLS table, COMMIT) on the same connection: what is left
            // is the client's cost of the handle (rendering once, the check and its cache).
            let same_messages = |i: usize| -> Result<(), String> {
                let (k, id) = key(i, 100);
                let mut c = raw_conn.borrow_mut();
                let c: &mut PgConnection = &mut c;
                AnsiTransactionManager::begin_transaction_sql(c, &opening(oid(k)?)).map_err(err)?;
                let row = bench_items::table
                    .filter(bench_items::org_id.eq(org(k)))
                    .filter(bench_items::id.eq(id))
                    .first::<(uuid::Uuid, i64, String)>(c)
                    .optional()
                    .map_err(err)?;
                AnsiTransactionManager::commit_transaction(c).map_err(err)?;
                row.map(drop)
                    .ok_or_else(|| format!("no row {id} in org {k}"))
            };
            if want(9) {
                ratios[9]
                    .samples
                    .push(pair(N, scoped_lookup, same_messages)?);
            }
            // R5: the same lookups with 1,000 orgs.
            let many = |i: usize| -> Result<(), String> {
                let (k, id) = key(i, 1000);
                in_scope(&raw_conn, oid(k)?, |s| {
                    s.first::<(uuid::Uuid, i64, String), _>(
                        s.query(bench_items_1000::table)
                            .filter(bench_items_1000::id.eq(id)),
                    )
                })
                .map(drop)
                .map_err(|e| e.to_string())
            };
            if want(4) {
                ratios[4].samples.push(pair(N, many, scoped_lookup)?);
            }
            // R6: five queries per transaction.
            let five_scoped = |i: usize| -> Result<(), String> {
                let (k, _) = key(i, 100);
                in_scope(&raw_conn, oid(k)?, |s| {
                    for j in 0..5 {
                        let (_, id) = key(i * 5 + j, 100);
                        let _ = s.first::<(uuid::Uuid, i64, String), _>(
                            s.query(bench_items::table).filter(bench_items::id.eq(id)),
                        )?;
                    }
                    Ok::<_, tenant_core::TenantError>(())
                })
                .map_err(|e| e.to_string())
            };
            let five_raw = |i: usize| -> Result<(), String> {
                let (k, _) = key(i, 100);
                raw_conn
                    .borrow_mut()
                    .transaction(|c| {
                        for j in 0..5 {
                            let (_, id) = key(i * 5 + j, 100);
                            let _ = bench_plain::table
                                .filter(bench_plain::org_id.eq(org(k)))
                                .filter(bench_plain::id.eq(id))
                                .first::<(uuid::Uuid, i64, String)>(c)
                                .optional()?;
                        }
                        Ok::<_, diesel::result::Error>(())
                    })
                    .map_err(err)
            };
            // The same five in the signed context (the default), which verifies the token once
            // per statement (the view sits in each statement's policy sub-select).
            let five_signed = |i: usize| -> Result<(), String> {
                let (k, _) = key(i, 100);
                in_signed_scope(&raw_conn, oid(k)?, &context_key, backend, |s| {
                    for j in 0..5 {
                        let (_, id) = key(i * 5 + j, 100);
                        let _ = s.first::<(uuid::Uuid, i64, String), _>(
                            s.query(bench_items_signed::table)
                                .filter(bench_items_signed::id.eq(id)),
                        )?;
                    }
                    Ok::<_, tenant_core::TenantError>(())
                })
                .map_err(|e| e.to_string())
            };
            if want(5) {
                ratios[5].samples.push(pair(N / 4, five_signed, five_raw)?);
            }
            if want(8) {
                ratios[8]
                    .samples
                    .push(pair(N / 4, five_signed, five_scoped)?);
            }
            // R4: one org's 10,000 rows.
            let scan_rls = |i: usize| -> Result<(), String> {
                let k = (i as i64 * 13) % 100;
                in_scope(&raw_conn, oid(k)?, |s| {
                    s.load::<(uuid::Uuid, i64, String), _>(s.query(bench_items::table))
                })
                .map(drop)
                .map_err(|e| e.to_string())
            };
            let scan_plain = |i: usize| -> Result<(), String> {
                let k = (i as i64 * 13) % 100;
                raw_conn
                    .borrow_mut()
                    .transaction(|c| {
                        bench_plain::table
                            .filter(bench_plain::org_id.eq(org(k)))
                            .load::<(uuid::Uuid, i64, String)>(c)
                    })
                    .map(drop)
                    .map_err(err)
            };
            if want(3) {
                ratios[3].samples.push(pair(20, scan_rls, scan_plain)?);
            }
            // R3: a count that only RLS filters, sequential scan forced on both sides; times,
            // so bypass rate / RLS rate.
            let count_rls = |i: usize| -> Result<(), String> {
                let k = (i as i64 * 17) % 100;
                raw_conn
                    .borrow_mut()
                    .transaction(|c| {
                        c.batch_execute(&format!(
                            "SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_indexonlyscan = off; \
                             SELECT set_config('tenant.org_id', '{}', true)",
                            org(k)
                        ))?;
                        diesel::sql_query("SELECT count(*) AS n FROM bench_items").get_result::<Count>(c)
                    })
                    .map_err(err)
                    .and_then(|c| (c.n == ROWS / 100).then_some(()).ok_or(format!("RLS count {} rows", c.n)))
            };
            let su = std::cell::RefCell::new(&mut superuser);
            let count_bypass = |i: usize| -> Result<(), String> {
                let k = (i as i64 * 17) % 100;
                su.borrow_mut()
                    .transaction(|c| {
                        c.batch_execute("SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_indexonlyscan = off")?;
                        diesel::sql_query(format!("SELECT count(*) AS n FROM bench_items WHERE org_id = '{}'", org(k)))
                            .get_result::<Count>(c)
                    })
                    .map_err(err)
                    .and_then(|c| (c.n == ROWS / 100).then_some(()).ok_or(format!("bypass count {} rows", c.n)))
            };
            if want(2) {
                ratios[2].samples.push(pair(4, count_bypass, count_rls)?);
            }
            println!(
                "round {round}: {}",
                ratios
                    .iter()
                    .filter_map(|r| r.samples.last().map(|s| format!("{} {s:.2}", r.id)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if round == 0 {
                println!("(round 0 warms up and is not counted)");
                ratios.iter_mut().for_each(|r| r.samples.clear());
            }
        }
        report(&ratios)
    })
}

fn report(ratios: &[Ratio]) -> Result<(), String> {
    let stats = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        (s[s.len() / 2], s[0], s[s.len() - 1])
    };
    println!();
    println!("| id | ratio | median | spread (min-max) | target |");
    println!("|---|---|---|---|---|");
    let mut json = Vec::new();
    for r in ratios.iter().filter(|r| !r.samples.is_empty()) {
        let (m, lo, hi) = stats(&r.samples);
        println!(
            "| {} | {} | {m:.2} | {lo:.2}-{hi:.2} | {} |",
            r.id, r.what, r.target
        );
        json.push(serde_json::json!({
            "id": r.id, "what": r.what, "target": r.target, "median": m, "min": lo, "max": hi, "samples": r.samples,
        }));
    }
    let dir = crate::workspace().join("target").join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("bench.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )
    .map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("\nwrote {}", path.display());
    Ok(())
}
