//! Soak: many threads, a hundred orgs, mixed reads and writes through the pool for a bounded
//! time, in the default mode and in the signed mode. Every committed write is found afterwards
//! (count and sum per org against a ledger the test keeps), and no session ever sees a row of
//! another org. `cargo xtask test` runs each for a few seconds; `cargo xtask soak` runs them
//! longer (TENANT_SOAK_SECONDS, TENANT_SOAK_THREADS). (Here rather than in tenant-core's tests
//! because the signed mode's schema comes from tenant-schema.)

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use tenant_core::{OrgId, TenantPool};
use tenant_testkit::TestDb;
use two_companies::schema::{customers, deals, orgs};
use uuid::Uuid;

/// Creates an org with one customer; returns the org and the customer id.
fn org_with_customer(pool: &TenantPool, i: usize) -> (OrgId, Uuid) {
    let org = OrgId::new_random();
    let customer = pool
        .with_org(org, |s| {
            s.execute(s.insert(orgs::table, orgs::name.eq(format!("org {i}"))))?;
            s.get_result::<Uuid, _>(
                s.insert(
                    customers::table,
                    (
                        customers::name.eq(format!("c{i}")),
                        customers::email.eq(format!("c{i}@example.com")),
                    ),
                )
                .returning(customers::id),
            )
        })
        .unwrap();
    (org, customer)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator per thread (no dependency for it).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

#[derive(Default)]
struct Tally {
    /// Per org index: rows written and the sum of their amounts, counted only after commit.
    ledger: HashMap<usize, (i64, i64)>,
    reads: u64,
    writes: u64,
    errors: u64,
    crossed: usize,
}

fn threads() -> usize {
    env("TENANT_SOAK_THREADS", 8) as usize
}

#[test]
fn a_hundred_orgs_under_mixed_load_lose_nothing_and_cross_nothing() {
    let db = common::story("soak");
    let pool = TenantPool::builder(db.app_url(), &two_companies::REGISTRY, common::test_key())
        .max_size(threads() as u32)
        .build()
        .unwrap();
    soak(&db, &pool, "default (signed) mode");
}

#[test]
fn a_hundred_orgs_under_mixed_load_in_the_plain_mode_lose_nothing_and_cross_nothing() {
    let db = common::plain_story("soak_plain");
    let pool = TenantPool::builder(
        db.app_url(),
        &two_companies::REGISTRY,
        tenant_core::OrgContext::TrustEveryStatement,
    )
    .max_size(threads() as u32)
    .build()
    .unwrap();
    soak(&db, &pool, "plain mode");
}

/// The load, the ledger and the checks, for `pool` over `db`.
fn soak(db: &TestDb, pool: &TenantPool, mode: &str) {
    let seconds = env("TENANT_SOAK_SECONDS", 3);
    let threads = threads();
    let orgs: Vec<(OrgId, Uuid)> = (0..100).map(|i| org_with_customer(pool, i)).collect();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let orgs = &orgs;
                scope.spawn(move || {
                    let mut rng = Lcg(t as u64 + 1);
                    let mut tally = Tally::default();
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        n += 1;
                        let idx = (rng.next() % orgs.len() as u64) as usize;
                        let (org, customer) = orgs[idx];
                        if rng.next() % 10 < 3 {
                            let amount = (rng.next() % 1000) as i64;
                            let outcome = pool.with_org(org, |s| {
                                s.execute(s.insert(
                                    deals::table,
                                    (
                                        deals::customer_id.eq(customer),
                                        deals::title.eq(format!("o{idx}-t{t}-{n}")),
                                        deals::amount_cents.eq(amount),
                                        deals::currency.eq("EUR"),
                                        deals::stage.eq("open"),
                                    ),
                                ))
                            });
                            match outcome {
                                Ok(_) => {
                                    let e = tally.ledger.entry(idx).or_default();
                                    e.0 += 1;
                                    e.1 += amount;
                                    tally.writes += 1;
                                }
                                Err(_) => tally.errors += 1,
                            }
                        } else {
                            let outcome = pool.with_org(org, |s| {
                                s.load::<Uuid, _>(s.query(deals::table).select(deals::org_id))
                            });
                            match outcome {
                                Ok(seen) => {
                                    tally.crossed +=
                                        seen.iter().filter(|o| **o != org.as_uuid()).count();
                                    tally.reads += 1;
                                }
                                Err(_) => tally.errors += 1,
                            }
                        }
                    }
                    tally
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (reads, writes, errors, crossed) = tallies.iter().fold((0, 0, 0, 0), |acc, t| {
        (
            acc.0 + t.reads,
            acc.1 + t.writes,
            acc.2 + t.errors,
            acc.3 + t.crossed,
        )
    });
    let mut ledger: HashMap<usize, (i64, i64)> = HashMap::new();
    for t in &tallies {
        for (idx, (count, sum)) in &t.ledger {
            let e = ledger.entry(*idx).or_default();
            e.0 += count;
            e.1 += sum;
        }
    }
    eprintln!(
        "soak ({mode}): {threads} threads, 100 orgs, {seconds} s: {reads} reads, {writes} writes, {errors} errors, \
         {:.0} transactions/s, {crossed} rows crossed",
        (reads + writes) as f64 / elapsed
    );
    assert_eq!((errors, crossed), (0, 0));
    assert!(writes > 0 && reads > 0);
    // Every committed write is there, in its org: count and sum per org.
    for (idx, (org, _)) in orgs.iter().enumerate() {
        let amounts: Vec<i64> = pool
            .with_org(*org, |s| {
                s.load(s.query(deals::table).select(deals::amount_cents))
            })
            .unwrap();
        let (count, sum) = (amounts.len() as i64, amounts.iter().sum::<i64>());
        let expected = ledger.get(&idx).copied().unwrap_or_default();
        assert_eq!((count, sum), expected, "org {idx}");
    }
    // And from outside RLS: no row sits in another org than its title says.
    let misplaced: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT count(*) FROM deals d JOIN orgs o ON o.id = d.org_id \
           WHERE o.name <> 'org ' || split_part(substr(d.title, 2), '-', 1))",
    ))
    .get_result(&mut db.admin())
    .unwrap();
    assert_eq!(misplaced, 0);
}
