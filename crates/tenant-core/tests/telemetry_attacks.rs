//! Attacks on tenant-core's tracing and metrics (telemetry.rs, scoped.rs, pool.rs), by a
//! reviewer: every span, span record and event is captured through a real server and checked
//! for SQL text, bound values, rows, server messages and tokens; refusals are checked to reach
//! the operator (a WARN `tenant.refused` and the pool's counters); and a pool's `Debug` for
//! the password in its URL. Each test asserts the outcome after the fixes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use diesel::prelude::*;
use tenant_core::{OrgId, TenantError, TenantSql};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use two_companies::schema::customers;

#[derive(Debug, Clone)]
struct Captured {
    kind: &'static str,
    name: String,
    level: String,
    fields: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let mut f = Fields(Vec::new());
        attrs.record(&mut f);
        self.0.lock().unwrap().push(Captured {
            kind: "span",
            name: attrs.metadata().name().to_owned(),
            level: attrs.metadata().level().to_string(),
            fields: f.0,
        });
    }
    fn on_record(&self, _id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields(Vec::new());
        values.record(&mut f);
        self.0.lock().unwrap().push(Captured {
            kind: "record",
            name: String::new(),
            level: String::new(),
            fields: f.0,
        });
    }
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields(Vec::new());
        event.record(&mut f);
        let name =
            f.0.iter()
                .find(|(k, _)| k == "message")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
        self.0.lock().unwrap().push(Captured {
            kind: "event",
            name,
            level: event.metadata().level().to_string(),
            fields: f.0,
        });
    }
}

impl Capture {
    fn all(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }
    fn text(&self) -> String {
        format!("{:?}", self.all())
    }
    fn refusals(&self, class: &str) -> usize {
        self.all()
            .iter()
            .filter(|c| {
                c.kind == "event"
                    && c.name == "tenant.refused"
                    && c.level == "WARN"
                    && c.fields.iter().any(|(k, v)| k == "class" && v == class)
            })
            .count()
    }
}

/// Runs `f` with a subscriber that captures everything tenant-core reports on this thread.
fn captured<T>(f: impl FnOnce() -> T) -> (T, Capture) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    // Interest is cached per callsite; one first hit on a thread with no subscriber, racing
    // another test's, can cache "never": recomputed now that this one is the default.
    let out = tracing::subscriber::with_default(subscriber, || {
        tracing::callsite::rebuild_interest_cache();
        f()
    });
    (out, capture)
}

/// The field names and values tenant-core may report: fixed names, an org id, numbers.
fn allowed(key: &str, value: &str) -> bool {
    let fixed = [
        "committed",
        "rolled_back",
        "signed",
        "setting",
        "hidden_setting",
        "set_local",
        "read_committed",
        "repeatable_read",
        "serializable",
        "tenant.transaction.end",
        "tenant.refused",
        "tenant.error",
        "tenant.retry",
        "tenant.connection_discarded",
    ];
    match key {
        "org" => value.parse::<uuid::Uuid>().is_ok(),
        "statements" | "duration_us" | "attempt" => value.parse::<u64>().is_ok(),
        "class" => tenant_core::telemetry::ERROR_CLASSES.contains(&value),
        "mode" | "isolation" | "outcome" | "message" => fixed.contains(&value),
        _ => false,
    }
}

/// ATTACK 1: every field of every span and event, across successes, a unique violation whose
/// DETAIL holds a secret, an invalid input whose message holds a secret, an unscoped query, a
/// changed org context, a leftover session org: only allowed names and values appear.
#[test]
fn nothing_but_fixed_names_org_ids_and_numbers_is_reported() {
    let (_db, pool) = common::setup("rt_tel_fields", 2);
    let secret = "s3cr3t-4f1d@example.com";
    let (a, _) = common::org_with_customer(&pool, "A", "alice");
    let ((), capture) = captured(|| {
        // A row with the secret, committed.
        pool.with_org(a, |s| {
            s.execute(s.insert(
                customers::table,
                (customers::name.eq("x"), customers::email.eq(secret)),
            ))
        })
        .unwrap();
        // The same email again: unique violation, the secret in the server's DETAIL.
        let e = pool
            .with_org(a, |s| {
                s.execute(s.insert(
                    customers::table,
                    (customers::name.eq("y"), customers::email.eq(secret)),
                ))
            })
            .unwrap_err();
        eprintln!("unique: {e}");
        // Reading the secret back.
        let rows: Vec<String> = pool
            .with_org(a, |s| {
                s.load(
                    s.query(customers::table)
                        .filter(customers::email.eq(secret))
                        .select(customers::email),
                )
            })
            .unwrap();
        assert_eq!(rows, [secret]);
        // A verify_context after raw SQL changed the org.
        let e = pool
            .with_org(a, |s| {
                let raw = s.raw_connection_unchecked("redteam: change the org");
                diesel::sql_query(format!(
                    "SELECT set_config('{}', '', true)",
                    tenant_core::context::TOKEN_SETTING
                ))
                .execute(raw)
                .unwrap();
                s.verify_context()
            })
            .unwrap_err();
        eprintln!("verify: {e}");
    });
    let all = capture.all();
    assert!(!all.is_empty());
    let text = capture.text();
    assert!(
        !text.contains("s3cr3t"),
        "a bound value or row was reported: {text}"
    );
    for c in &all {
        for (k, v) in &c.fields {
            assert!(allowed(k, v), "HELD? unexpected field {k}={v} in {c:?}");
        }
    }
}

/// ATTACK 2: a handle swapped inside `with_org` (std::mem::swap) is refused with
/// `HandleSwapped`, a refusal class the docs list under the WARN `tenant.refused`: is it
/// reported and counted?
#[test]
fn a_swapped_handle_in_with_org_is_reported_and_counted() {
    let (_db, pool) = common::setup("rt_tel_swap", 2);
    let (a, _) = common::org_with_customer(&pool, "A", "alice");
    let (b, _) = common::org_with_customer(&pool, "B", "bob");
    let before = pool.metrics();
    let (result, capture) = captured(|| {
        let mut other = pool.begin(b).unwrap();
        let r: Result<(), TenantError> = pool.with_org(a, |s| {
            std::mem::swap(s, &mut other);
            Ok(())
        });
        drop(other);
        r
    });
    assert!(
        matches!(result, Err(TenantError::HandleSwapped)),
        "{result:?}"
    );
    let after = pool.metrics();
    let warned = capture.refusals("handle_swapped");
    let counted = after.errors_of("handle_swapped") - before.errors_of("handle_swapped");
    eprintln!(
        "WARN events: {warned}; counted: {counted}; refusals {} -> {}",
        before.refusals(),
        after.refusals()
    );
    // Fixed: the swap is a WARN refusal and counted, once.
    assert_eq!((warned, counted), (1, 1));
}

/// ATTACK 2b: the same inside a savepoint.
#[test]
fn a_swapped_handle_in_a_savepoint_is_reported_and_counted() {
    let (_db, pool) = common::setup("rt_tel_swap_sp", 2);
    let (a, _) = common::org_with_customer(&pool, "A", "alice");
    let (b, _) = common::org_with_customer(&pool, "B", "bob");
    let (result, capture) = captured(|| {
        let mut first = pool.begin(a).unwrap();
        let mut second = pool.begin(b).unwrap();
        let r: Result<(), TenantError> = first.savepoint(|s| {
            std::mem::swap(s, &mut second);
            Ok(())
        });
        drop((first, second));
        r
    });
    assert!(
        matches!(result, Err(TenantError::HandleSwapped)),
        "{result:?}"
    );
    let warned = capture.refusals("handle_swapped");
    let counted = pool.metrics().errors_of("handle_swapped");
    // Fixed: the swap is a WARN refusal and counted, once.
    assert_eq!((warned, counted), (1, 1));
}

/// ATTACK 3: raw SQL built by hand (`TenantSql::new`) that tries to change the session's org:
/// refused before it is sent (class `unscoped`), but by the text check in the constructor,
/// which the handle returns before its own tracking: no WARN, no count. The same statement
/// refused later (by the registry check) is reported: the control.
#[test]
fn a_set_config_in_hand_built_sql_is_reported_and_counted() {
    #[derive(QueryableByName, Debug)]
    struct Number {
        #[diesel(sql_type = diesel::sql_types::Text)]
        #[allow(dead_code)]
        number: String,
    }
    let (_db, pool) = common::setup("rt_tel_tenantsql", 1);
    let (a, _) = common::org_with_customer(&pool, "A", "alice");
    let hijack = OrgId::new_random();
    let (results, capture) = captured(|| {
        let forged = TenantSql::new("SELECT set_config('tenant.org_id', $1, true) AS number")
            .bind::<diesel::sql_types::Text, _>(hijack.to_string());
        let hijack_attempt = pool.with_org(a, |s| s.load_sql::<Number>(forged));
        // Control: refused by the registry check in run_verified.
        let control = pool.with_org(a, |s| {
            s.load_sql::<Number>(TenantSql::new("SELECT number FROM invoices"))
        });
        (hijack_attempt, control)
    });
    let (hijack_attempt, control) = results;
    assert!(
        matches!(hijack_attempt, Err(TenantError::Unscoped(_))),
        "{hijack_attempt:?}"
    );
    assert!(
        matches!(control, Err(TenantError::Unscoped(_))),
        "{control:?}"
    );
    let warned = capture.refusals("unscoped");
    let counted = pool.metrics().errors_of("unscoped");
    eprintln!("unscoped WARN events: {warned}, counted: {counted} (two refusals happened)");
    assert!(!capture.text().contains(&hijack.to_string()));
    // Fixed: both refusals are reported and counted.
    assert_eq!((warned, counted), (2, 2));
}

/// ATTACK 4: a cross-org write refused by row-level security (the database's last line,
/// `cross_org_write`, the class the docs give "RLS refused a write"), reached the only way
/// a scoped handle lets it happen: raw SQL through `raw_connection_unchecked`. Reported?
#[test]
fn what_runs_through_the_raw_connection_is_outside_the_handles_view() {
    let (_db, pool) = common::setup("rt_tel_cross_write", 2);
    let (a, _) = common::org_with_customer(&pool, "A", "alice");
    let (b, _) = common::org_with_customer(&pool, "B", "bob");
    let (err, capture) = captured(|| {
        pool.with_org(a, |s| {
            let raw = s.raw_connection_unchecked("redteam: move a row to B");
            diesel::update(customers::table)
                .set(customers::org_id.eq(b.as_uuid()))
                .execute(raw)
                .map_err(TenantError::from)
        })
        .unwrap_err()
    });
    assert!(matches!(err, TenantError::CrossOrgWrite { .. }), "{err:?}");
    let warned = capture.refusals("cross_org_write");
    let counted = pool.metrics().errors_of("cross_org_write");
    let ends: Vec<_> = capture
        .all()
        .into_iter()
        .filter(|c| c.name == "tenant.transaction.end")
        .collect();
    eprintln!("cross_org_write WARN: {warned}, counted: {counted}; ends: {ends:?}");
    // Documented (docs/observability.md): what runs through the raw connection is outside
    // the handle's view, neither counted as a statement nor reported when it fails.
    assert!(warned == 0 && counted == 0, "({warned}, {counted})");
    assert_eq!(
        ends[0]
            .fields
            .iter()
            .find(|(k, _)| k == "statements")
            .map(|(_, v)| v.as_str()),
        Some("0")
    );
}

/// ATTACK 5: the classes the counters list that no path ever counts: a pool exhausted
/// (`pool`) is returned to the caller and never counted.
#[test]
fn a_pool_timeout_is_reported_and_counted() {
    let db = common::story("rt_tel_pool");
    let pool =
        tenant_core::TenantPool::builder(db.app_url(), &two_companies::REGISTRY, common::key())
            .max_size(1)
            .connection_timeout(std::time::Duration::from_millis(300))
            .build()
            .unwrap();
    let org = OrgId::new_random();
    let held = pool.begin(org).unwrap();
    let (err, capture) = captured(|| pool.begin(org).unwrap_err());
    drop(held);
    assert!(matches!(err, TenantError::Pool(_)), "{err:?}");
    let m = pool.metrics();
    eprintln!(
        "pool errors counted: {}; events: {:?}",
        m.errors_of("pool"),
        capture.all()
    );
    // Fixed: counted, and a WARN event says the pool was exhausted.
    assert_eq!(m.errors_of("pool"), 1);
    assert!(
        capture
            .all()
            .iter()
            .any(|c| c.name == "tenant.pool_exhausted"),
        "{:?}",
        capture.all()
    );
}

/// ATTACK 6: Debug of the pool and its builder (what a service logs with `?pool` or a
/// `#[derive(Debug)]` state struct): the database URL, password included.
#[test]
fn debug_of_the_pool_and_its_builder_hides_the_password() {
    let (db, pool) = common::setup("rt_tel_debug", 1);
    let url = db.app_url();
    assert!(url.contains(tenant_testkit::TEST_PASSWORD), "{url}");
    let shown = format!("{pool:?}");
    let builder = format!(
        "{:?}",
        tenant_core::TenantPool::builder(url.clone(), &two_companies::REGISTRY, common::key())
    );
    eprintln!("{shown}\n{builder}");
    // Fixed: the URL is redacted in both.
    assert!(
        !shown.contains(tenant_testkit::TEST_PASSWORD)
            && !builder.contains(tenant_testkit::TEST_PASSWORD),
        "{shown}\n{builder}"
    );
    assert!(shown.contains("[redacted]") && builder.contains("[redacted]"));
    // And a token? the key is redacted.
    assert!(!shown.contains("5a5a5a5a"));
}

/// ATTACK 7: a connection left with state the opening cannot undo (a statement prepared with
/// SQL, holding a value): the next checkout is refused and discarded; reported, and without
/// the leftover's text.
#[test]
fn leftover_session_state_is_reported_without_its_text() {
    let (_db, pool) = common::setup("rt_tel_leftover", 1);
    let (a, _) = common::org_with_customer(&pool, "A", "alice");
    let planted = OrgId::new_random();
    let ((), capture) = captured(|| {
        pool.with_org(a, |s| {
            let raw = s.raw_connection_unchecked("redteam: plant a session org");
            // (A session-level SET is undone by the opening's RESET ALL, not refused; a
            // statement prepared with SQL cannot be undone, and is refused.)
            diesel::sql_query(format!("PREPARE planted AS SELECT '{planted}'::text"))
                .execute(raw)
                .map_err(TenantError::from)
        })
        .unwrap();
        pool.with_org(a, |s| {
            s.load::<String, _>(s.query(customers::table).select(customers::name))
        })
        .unwrap();
    });
    let text = capture.text();
    eprintln!("{text}");
    assert!(
        !text.contains(&planted.to_string()),
        "HELD? the planted value was reported"
    );
    assert!(
        capture.refusals("session_context_left") >= 1,
        "the leftover is reported: {text}"
    );
    assert!(pool.metrics().connections_discarded >= 1);
}
