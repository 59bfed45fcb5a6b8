//! What scoped transactions tell tracing and the pool's counters, on a real server: the
//! `tenant.transaction` span with its org, mode, outcome, statement count and duration; a
//! refusal as a WARN event with its class; a retry and a discarded connection as events; and
//! the same in `TenantPool::metrics`. Then the attack on the logs: a value bound in a query, a
//! row read back, a refused statement's text and the signed token never appear in any span or
//! event.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use common::{backend_pid, setup};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use tenant_core::{OrgId, TenantError};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use two_companies::schema::customers;

/// One span opening, span record or event, with its fields as text.
#[derive(Debug, Clone)]
struct Seen {
    kind: &'static str,
    /// The span's name, or the event's message.
    name: String,
    /// For an event, the span it belongs to.
    parent: Option<String>,
    level: tracing::Level,
    fields: Vec<(String, String)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

/// A layer that keeps everything it is shown.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        self.0.lock().unwrap().push(Seen {
            kind: "span",
            name: attrs.metadata().name().to_owned(),
            parent: None,
            level: *attrs.metadata().level(),
            fields: f.0,
        });
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        values.record(&mut f);
        let name = ctx
            .span(id)
            .map(|s| s.name().to_owned())
            .unwrap_or_default();
        self.0.lock().unwrap().push(Seen {
            kind: "record",
            name,
            parent: None,
            level: tracing::Level::TRACE,
            fields: f.0,
        });
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let name =
            f.0.iter()
                .find(|(k, _)| k == "message")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
        let parent = ctx.event_span(event).map(|s| s.name().to_owned());
        self.0.lock().unwrap().push(Seen {
            kind: "event",
            name,
            parent,
            level: *event.metadata().level(),
            fields: f.0,
        });
    }
}

/// Runs `f` with a capturing subscriber as this thread's default; returns what it saw.
fn captured<T>(f: impl FnOnce() -> T) -> (T, Vec<Seen>) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    // Interest is cached per callsite; one first hit on a thread with no subscriber, racing
    // another test's, can cache "never": recomputed now that this one is the default.
    let value = tracing::subscriber::with_default(subscriber, || {
        tracing::callsite::rebuild_interest_cache();
        f()
    });
    let seen = capture.0.lock().unwrap().clone();
    (value, seen)
}

fn events<'a>(seen: &'a [Seen], name: &str) -> Vec<&'a Seen> {
    seen.iter()
        .filter(|s| s.kind == "event" && s.name == name)
        .collect()
}

#[test]
fn a_scoped_transaction_is_one_span_with_its_org_mode_outcome_and_statement_count() {
    let (_db, pool) = setup("telemetry_span", 1);
    let (org, _) = common::org_with_customer(&pool, "A", "first");
    let ((), seen) = captured(|| {
        pool.with_org(org, |s| {
            s.execute(s.insert(customers::table, common::customer("alice")))?;
            let n: i64 = s.get_result(s.query(customers::table).count())?;
            assert_eq!(n, 2);
            Ok::<_, TenantError>(())
        })
        .unwrap();
    });
    let spans: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.kind == "span" && s.name == "tenant.transaction")
        .collect();
    assert_eq!(spans.len(), 1, "{seen:#?}");
    assert_eq!(spans[0].level, tracing::Level::DEBUG);
    assert_eq!(spans[0].field("org"), Some(org.to_string().as_str()));
    assert_eq!(spans[0].field("mode"), Some("signed"));
    assert_eq!(spans[0].field("isolation"), Some("read_committed"));
    let end = events(&seen, "tenant.transaction.end");
    assert_eq!(end.len(), 1, "{seen:#?}");
    assert_eq!(end[0].parent.as_deref(), Some("tenant.transaction"));
    assert_eq!(end[0].field("outcome"), Some("committed"));
    assert_eq!(end[0].field("statements"), Some("2"));
    assert!(
        end[0]
            .field("duration_us")
            .is_some_and(|d| d.parse::<u64>().is_ok_and(|d| d > 0)),
        "{:?}",
        end[0]
    );
    let m = pool.metrics();
    // Before it: the org's creation. The start-up check's token round trip runs on the
    // start-up connection, outside the pool, and is not one of the service's transactions.
    assert_eq!(
        (m.transactions_committed, m.transactions_rolled_back),
        (2, 0),
        "{m:?}"
    );
    assert_eq!(m.transactions_begun, 2);
    assert_eq!(m.refusals(), 0);
}

#[test]
fn a_refusal_is_a_warn_event_with_its_class_and_a_counter_and_carries_no_sql() {
    let (_db, pool) = setup("telemetry_refusal", 1);
    let org = OrgId::new_random();
    let other = OrgId::new_random();
    let secret_value = "needle-bound-value-7f3a";
    let before = pool.metrics();
    let (err, seen) = captured(|| {
        pool.with_org(org, |s| {
            // A hop smuggled into a filter: refused before it is sent.
            let hop = format!("set_config('tenant.org_id', '{other}', true) IS NOT NULL AND '{secret_value}' <> ''");
            s.load::<uuid::Uuid, _>(
                s.query(customers::table)
                    .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(&hop))
                    .select(customers::id),
            )
        })
        .unwrap_err()
    });
    assert!(matches!(err, TenantError::Unscoped(_)), "{err:?}");
    let refused = events(&seen, "tenant.refused");
    assert_eq!(refused.len(), 1, "{seen:#?}");
    assert_eq!(refused[0].level, tracing::Level::WARN);
    assert_eq!(refused[0].field("class"), Some("unscoped"));
    assert_eq!(refused[0].parent.as_deref(), Some("tenant.transaction"));
    let end = events(&seen, "tenant.transaction.end");
    assert_eq!(end[0].field("outcome"), Some("rolled_back"));
    assert_eq!(end[0].field("statements"), Some("0"), "nothing was sent");
    let text = format!("{seen:?}");
    for leaked in [secret_value, "set_config", &other.to_string()] {
        assert!(!text.contains(leaked), "{leaked} in {text}");
    }
    let m = pool.metrics();
    assert_eq!(m.errors_of("unscoped") - before.errors_of("unscoped"), 1);
    assert_eq!(
        m.transactions_rolled_back - before.transactions_rolled_back,
        1
    );
}

#[test]
fn no_bound_value_row_or_token_reaches_a_span_or_event() {
    let (db, pool) = setup("telemetry_values", 1);
    let (org, _) = common::org_with_customer(&pool, "A", "first");
    let name = "needle-customer-name-91c2";
    let ((), seen) = captured(|| {
        pool.with_org(org, |s| {
            s.execute(s.insert(customers::table, common::customer(name)))?;
            let names: Vec<String> = s.load(
                s.query(customers::table)
                    .filter(customers::name.eq(name))
                    .select(customers::name),
            )?;
            assert_eq!(names, [name]);
            Ok::<_, TenantError>(())
        })
        .unwrap();
        // A failing statement (a duplicate address) goes through the error path too.
        let err = pool
            .with_org(org, |s| {
                s.execute(s.insert(customers::table, common::customer(name)))?;
                s.execute(s.insert(customers::table, common::customer(name)))
            })
            .unwrap_err();
        assert_eq!(err.class(), "database", "{err:?}");
    });
    assert!(!seen.is_empty());
    let text = format!("{seen:?}");
    // The org id is there by design; the row's value, its address, and anything of the
    // signed token (its key id prefix) are not.
    assert!(text.contains(&org.to_string()));
    for leaked in [name, "example.com", tenant_testkit::TEST_CONTEXT_KEY_ID] {
        assert!(!text.contains(leaked), "{leaked} in {text}");
    }
    let error = events(&seen, "tenant.error");
    assert_eq!(error.len(), 1, "{seen:#?}");
    assert_eq!(error[0].field("class"), Some("database"));
    assert_eq!(error[0].level, tracing::Level::DEBUG);
    drop(db);
}

#[test]
fn a_discarded_connection_and_a_retry_are_events_and_counted() {
    let (_db, pool) = setup("telemetry_discard", 1);
    let org = OrgId::new_random();
    let ((), seen) = captured(|| {
        // Raw code leaves a prepared statement: the next opening refuses the connection.
        let pid = pool
            .with_org(org, |s| {
                let pid = backend_pid(s);
                s.raw_connection_unchecked("test: leave session state for the next opening")
                    .batch_execute("PREPARE leftover AS SELECT 1")
                    .unwrap();
                Ok::<_, TenantError>(pid)
            })
            .unwrap();
        let next = pool
            .with_org(org, |s| Ok::<_, TenantError>(backend_pid(s)))
            .unwrap();
        assert_ne!(pid, next, "the connection was discarded");
        // A retryable error (a lost connection before COMMIT) is run again.
        let mut attempts = 0;
        pool.with_org_retry(org, 3, |_| {
            attempts += 1;
            if attempts == 1 {
                Err(TenantError::ConnectionLost)
            } else {
                Ok(())
            }
        })
        .unwrap();
        assert_eq!(attempts, 2);
    });
    let discarded = events(&seen, "tenant.connection_discarded");
    assert_eq!(discarded.len(), 1, "{seen:#?}");
    assert_eq!(discarded[0].level, tracing::Level::WARN);
    assert_eq!(discarded[0].field("class"), Some("session_context_left"));
    let retry = events(&seen, "tenant.retry");
    assert_eq!(retry.len(), 1, "{seen:#?}");
    assert_eq!(
        (retry[0].field("class"), retry[0].field("attempt")),
        (Some("connection_lost"), Some("1"))
    );
    let m = pool.metrics();
    assert_eq!((m.connections_discarded, m.retries), (1, 1), "{m:?}");
    assert_eq!(m.errors_of("session_context_left"), 1);
}
