//! `cargo xtask trace-bench`: what tenant-core's tracing costs a scoped transaction, side by
//! side in one run (release build): the same point lookup through the pool with a subscriber
//! that receives every span and event of tenant-core and formats each field into text, as a
//! logger at DEBUG would, against no subscriber at all (where each span and event is a
//! disabled callsite). Interleaved batches of 10, 7 rounds after a warm-up round of 400
//! lookups a side; the median and spread of the ratio, and the time per lookup of each side.

use std::fmt::Write as _;

use diesel::prelude::*;
use tenant_core::{OrgId, TenantError, TenantPool};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use two_companies::schema::{customers, orgs};

/// Formats every field into a string and drops it: a logger's work without its I/O.
struct Formatting;

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Formatting {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: Context<'_, S>,
    ) {
        let mut t = Text(String::new());
        attrs.record(&mut t);
        std::hint::black_box(t.0);
    }
    fn on_record(
        &self,
        _: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: Context<'_, S>,
    ) {
        let mut t = Text(String::new());
        values.record(&mut t);
        std::hint::black_box(t.0);
    }
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut t = Text(String::new());
        event.record(&mut t);
        std::hint::black_box(t.0);
    }
}

const N: usize = 400;
const ROUNDS: usize = 7;
const ORGS: usize = 20;

/// `cargo xtask trace-bench`: the measurement as a release build.
pub fn run() -> Result<(), String> {
    crate::bench::in_release(&["trace-bench-run"])
}

/// The measurement itself.
pub fn measure() -> Result<(), String> {
    crate::with_database(|admin_url| {
        let (admin, app) = crate::prepare_story_db(admin_url, "tenant_trace_bench")?;
        two_companies::migrate(&admin).map_err(|e| e.to_string())?;
        let key = crate::context_key::throwaway_key(&[&admin])?;
        let pool = TenantPool::builder(app, &two_companies::REGISTRY, key)
            .max_size(1)
            .build()
            .map_err(|e| e.to_string())?;
        let mut targets = Vec::new();
        for k in 0..ORGS {
            let org = OrgId::new_random();
            let id = uuid::Uuid::now_v7();
            pool.with_org(org, |s| {
                s.execute(s.insert(orgs::table, orgs::name.eq(format!("org {k}"))))?;
                s.execute(s.insert(
                    customers::table,
                    (
                        customers::id.eq(id),
                        customers::name.eq(format!("customer {k}")),
                        customers::email.eq(format!("c{k}@example.com")),
                    ),
                ))
            })
            .map_err(|e| e.to_string())?;
            targets.push((org, id));
        }
        let lookup = |i: usize| -> Result<(), String> {
            let (org, id) = targets[i % ORGS];
            pool.with_org(org, |s| {
                s.first::<String, _>(
                    s.query(customers::table)
                        .filter(customers::id.eq(id))
                        .select(customers::name),
                )
            })
            .map(drop)
            .map_err(|e: TenantError| e.to_string())
        };
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(Formatting));
        let traced = |i: usize| tracing::dispatcher::with_default(&dispatch, || lookup(i));
        let mut samples = Vec::new();
        let mut per_op = Vec::new();
        for round in 0..=ROUNDS {
            let start = std::time::Instant::now();
            let ratio = crate::bench::pair(N, traced, lookup)?;
            let elapsed = start.elapsed().as_secs_f64();
            // Both sides ran N lookups: the mean of the two, and their difference from the ratio.
            let mean_us = elapsed * 1e6 / (2 * N) as f64;
            println!("round {round}: traced / untraced {ratio:.3} ({mean_us:.1} us a lookup)");
            if round > 0 {
                samples.push(ratio);
                per_op.push(mean_us);
            }
        }
        samples.sort_by(f64::total_cmp);
        per_op.sort_by(f64::total_cmp);
        let median = samples[samples.len() / 2];
        let us = per_op[per_op.len() / 2];
        println!(
            "\nT1 scoped point lookup with a subscriber formatting every span and event / with no subscriber: \
             median {median:.3}, spread {:.3}-{:.3}; about {:.1} us of {us:.1} us a lookup",
            samples[0],
            samples[samples.len() - 1],
            (1.0 - median) * us
        );
        Ok(())
    })
}
