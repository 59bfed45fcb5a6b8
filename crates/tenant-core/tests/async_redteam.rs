//! Red-team attacks on the async path (`AsyncTenantPool` / `AsyncOrgScoped`), written from the
//! outside: each test asserts that the attack FAILS (isolation holds). A failing test here is
//! a finding.

#![cfg(feature = "async")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use tenant_core::{AsyncOrgScoped, AsyncTenantPool, OrgId, TenantError, TenantPool};
use tenant_testkit::TestDb;
use tenant_testkit::story::{signed, test_key};
use two_companies::schema::customers;
use uuid::Uuid;

struct World {
    db: TestDb,
    a: OrgId,
    b: OrgId,
    a_customer: Uuid,
}

fn world(hint: &str) -> World {
    let db = signed(hint);
    let a = OrgId::new_random();
    let b = OrgId::new_random();
    let a_customer = Uuid::new_v4();
    let b_customer = Uuid::new_v4();
    db.admin()
        .batch_execute(&format!(
            "INSERT INTO orgs (id, name) VALUES ('{a}', 'Org A'), ('{b}', 'Org B');
             INSERT INTO customers (id, org_id, name, email) VALUES
               ('{a_customer}', '{a}', 'secret-a-1', 'a1@a.example'),
               (gen_random_uuid(), '{a}', 'secret-a-2', 'a2@a.example'),
               ('{b_customer}', '{b}', 'secret-b-1', 'b1@b.example'),
               (gen_random_uuid(), '{b}', 'secret-b-2', 'b2@b.example');"
        ))
        .unwrap();
    World {
        db,
        a,
        b,
        a_customer,
    }
}

async fn pool(w: &World, max_size: u32) -> AsyncTenantPool {
    TenantPool::builder(w.db.app_url(), &two_companies::REGISTRY, test_key())
        .max_size(max_size)
        .build_async()
        .await
        .unwrap()
}

/// Names the admin (bypassing RLS) sees for `org`.
fn admin_names(w: &World, org: OrgId) -> Vec<String> {
    customers::table
        .filter(customers::org_id.eq(org.as_uuid()))
        .select(customers::name)
        .order(customers::name)
        .load(&mut w.db.admin())
        .unwrap()
}

fn admin_count(w: &World, sql: &str) -> i64 {
    diesel::select(diesel::dsl::sql::<BigInt>(&format!("({sql})")))
        .get_result(&mut w.db.admin())
        .unwrap()
}

async fn names_in(s: &mut AsyncOrgScoped) -> Result<Vec<String>, TenantError> {
    s.load(
        s.query(customers::table)
            .select(customers::name)
            .order(customers::name),
    )
    .await
}

/// What a fresh transaction of `org` sees, and that its session context is its own.
async fn check_clean(pool: &AsyncTenantPool, org: OrgId, prefix: &str) {
    let names = pool
        .with_org(org, async |s| {
            s.verify_context().await?;
            names_in(s).await
        })
        .await
        .unwrap();
    assert!(!names.is_empty(), "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with(prefix)),
        "org {org} saw {names:?}"
    );
}

fn poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    f.poll(&mut cx)
}

/// Polls `fut` (never letting it finish) until `done` says the server reached the state we
/// want, yielding in between; panics if the future finishes first.
async fn poll_until<F: Future + ?Sized>(mut fut: Pin<&mut F>, mut done: impl FnMut() -> bool)
where
    F::Output: std::fmt::Debug,
{
    for _ in 0..200_000 {
        if let Poll::Ready(out) = poll_once(fut.as_mut()) {
            panic!("the future finished before the server state was reached: {out:?}");
        }
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the server never reached the state");
}

fn lock_waiters(w: &World) -> i64 {
    admin_count(
        w,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock'",
    )
}

// ---------------------------------------------------------------------------------------
// Plain cross-org reads and writes through the DSL
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_confined_even_with_a_filter_naming_the_other_org() {
    let w = world("rt_async_read");
    let pool = pool(&w, 2).await;
    let b = w.b;
    let seen = pool
        .with_org(w.a, async |s| {
            let mut all = names_in(s).await?;
            // A predicate naming the other org is ANDed with the handle's org.
            let other: Vec<String> = s
                .load(
                    s.query(customers::table)
                        .filter(customers::org_id.eq(b.as_uuid()))
                        .select(customers::name),
                )
                .await?;
            all.extend(other);
            Ok::<_, TenantError>(all)
        })
        .await
        .unwrap();
    assert_eq!(seen, vec!["secret-a-1", "secret-a-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_built_on_b_handle_cannot_run_on_a_handle() {
    let w = world("rt_async_mix");
    let pool = pool(&w, 4).await;
    let mut a = pool.begin(w.a).await.unwrap();
    let b = pool.begin(w.b).await.unwrap();
    let e = a
        .load::<String, _>(b.query(customers::table).select(customers::name))
        .await
        .unwrap_err();
    assert!(matches!(e, TenantError::OrgMismatch), "{e:?}");
    // And an insert built for B, run on A.
    let ins = b.insert(
        customers::table,
        (
            customers::name.eq("planted-by-a"),
            customers::email.eq("p@x.example"),
        ),
    );
    let e = a.execute(ins).await.unwrap_err();
    assert!(
        matches!(
            e,
            TenantError::OrgMismatch | TenantError::TransactionAborted
        ),
        "{e:?}"
    );
    // A refused statement must leave A unable to commit anything half-done.
    let _ = a.commit().await;
    drop(b);
    assert!(
        !admin_names(&w, w.b).iter().any(|n| n == "planted-by-a"),
        "a B-statement was run through A"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_cannot_move_rows_to_or_touch_rows_of_another_org() {
    let w = world("rt_async_write");
    let pool = pool(&w, 2).await;
    let b = w.b;
    // Moving A's rows into B (`set(customers::org_id.eq(b))`) does not compile (checked).
    // Copying B's data into A's rows through an unscoped subquery in SET:
    let copied = pool
        .with_org(w.a, async |s| {
            s.execute(
                s.update(customers::table)
                    .set(customers::name.eq(diesel::dsl::sql::<Text>(
                        "(SELECT string_agg(c2.name, ',') FROM customers c2)",
                    ))),
            )
            .await
        })
        .await;
    let a_names = admin_names(&w, w.a);
    assert!(
        !a_names.iter().any(|n| n.contains("secret-b")),
        "B's rows copied into A: {copied:?} {a_names:?}"
    );
    if copied.is_ok() {
        // Put A back for the later checks.
        w.db.admin()
            .batch_execute(&format!(
                "UPDATE customers SET name = 'secret-a-' || substr(email, 2, 1) WHERE org_id = '{}'",
                w.a
            ))
            .unwrap();
    }
    // Updating B's rows from A: matches nothing.
    let touched = pool
        .with_org(w.a, async |s| {
            s.execute(
                s.update(customers::table)
                    .filter(customers::org_id.eq(b.as_uuid()))
                    .set(customers::name.eq("pwned")),
            )
            .await
        })
        .await;
    assert!(matches!(touched, Ok(0) | Err(_)), "{touched:?}");
    // Deleting with a tautology: only A's own rows could go (we roll back).
    let _ = pool
        .with_org(w.a, async |s| {
            s.execute(
                s.delete(customers::table)
                    .filter(customers::org_id.ne(b.as_uuid())),
            )
            .await?;
            Err::<(), _>(TenantError::TransactionAborted)
        })
        .await;
    assert_eq!(admin_names(&w, w.b), vec!["secret-b-1", "secret-b-2"]);
    assert_eq!(admin_names(&w, w.a), vec!["secret-a-1", "secret-a-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_fragments_cannot_switch_the_org_context() {
    let w = world("rt_async_sqlfrag");
    let pool = pool(&w, 1).await;
    let b = w.b;
    let fragments = [
        format!("set_config('tenant.org_id', '{b}', true) IS NOT NULL"),
        format!("set_config('tenant.org_id', '{b}', false) IS NOT NULL"),
        "set_config('tenant.org_token', current_setting('tenant.org_token', true), false) IS NOT NULL".to_owned(),
        "set_config('app.leak', (SELECT string_agg(name, ',') FROM customers), false) IS NOT NULL"
            .to_owned(),
        "pg_advisory_lock(42) IS NOT NULL".to_owned(),
    ];
    for frag in &fragments {
        let out = pool
            .with_org(w.a, async |s| {
                s.load::<String, _>(
                    s.query(customers::table)
                        .filter(diesel::dsl::sql::<Bool>(frag))
                        .select(customers::name),
                )
                .await
            })
            .await;
        if let Ok(names) = &out {
            assert!(
                names.iter().all(|n| n.starts_with("secret-a")),
                "fragment {frag} read {names:?}"
            );
        }
        // Whatever it did, the next transaction on the same (only) connection is B's and clean.
        check_clean(&pool, w.b, "secret-b").await;
        let leak = pool
            .with_org(w.b, async |s| {
                s.load::<Option<String>, _>(
                    s.query(customers::table)
                        .select(diesel::dsl::sql::<Nullable<Text>>(
                            "current_setting('app.leak', true)",
                        ))
                        .limit(1),
                )
                .await
            })
            .await;
        if let Ok(rows) = leak {
            assert!(
                rows.iter().all(|r| r.as_deref().unwrap_or("").is_empty()),
                "a session setting survived into B's transaction: {rows:?}"
            );
        }
    }
    assert_eq!(
        admin_count(
            &w,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        ),
        0,
        "a session advisory lock survived"
    );
}

// ---------------------------------------------------------------------------------------
// Handle swapping
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_the_handle_inside_with_org_commits_neither_transaction() {
    let w = world("rt_async_swap");
    let pool = pool(&w, 4).await;
    let p2 = pool.clone();
    let b = w.b;
    let out = pool
        .with_org(w.a, async |s| {
            s.execute(s.insert(
                customers::table,
                (
                    customers::name.eq("swap-a"),
                    customers::email.eq("swap-a@x"),
                ),
            ))
            .await?;
            let mut other = p2.begin(b).await?;
            other
                .execute(other.insert(
                    customers::table,
                    (
                        customers::name.eq("swap-b"),
                        customers::email.eq("swap-b@x"),
                    ),
                ))
                .await?;
            std::mem::swap(s, &mut other);
            // `other` now holds A's transaction and is dropped here (rolls back).
            Ok::<_, TenantError>(())
        })
        .await;
    assert!(matches!(out, Err(TenantError::HandleSwapped)), "{out:?}");
    assert!(!admin_names(&w, w.a).iter().any(|n| n == "swap-a"));
    assert!(!admin_names(&w, w.b).iter().any(|n| n == "swap-b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_in_a_fresh_handle_of_the_same_org_is_still_refused() {
    let w = world("rt_async_swap_same");
    let pool = pool(&w, 4).await;
    let p2 = pool.clone();
    let a = w.a;
    let out = pool
        .with_org(w.a, async |s| {
            let mut other = p2.begin(a).await?;
            other
                .execute(other.insert(
                    customers::table,
                    (customers::name.eq("swap-same"), customers::email.eq("ss@x")),
                ))
                .await?;
            std::mem::swap(s, &mut other);
            Ok::<_, TenantError>(())
        })
        .await;
    assert!(matches!(out, Err(TenantError::HandleSwapped)), "{out:?}");
    assert!(!admin_names(&w, w.a).iter().any(|n| n == "swap-same"));
}

// ---------------------------------------------------------------------------------------
// Connection reuse after cancellation, panics and drops (pool of ONE connection, so that the
// next org necessarily gets the previous org's connection if it is reused)
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begin_cancelled_at_every_poll_never_hands_a_dirty_connection_to_another_org() {
    let w = world("rt_async_cancel_begin");
    let pool = pool(&w, 1).await;
    for polls in 1..6 {
        {
            let mut fut = Box::pin(pool.begin(w.a));
            for _ in 0..polls {
                if poll_once(fut.as_mut()).is_ready() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        check_clean(&pool, w.b, "secret-b").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cancelled_in_flight_never_lets_b_run_inside_a_transaction() {
    let w = world("rt_async_cancel_commit");
    let pool = pool(&w, 1).await;
    // A's uncommitted insert, then its COMMIT future dropped as early as possible.
    let mut a = pool.begin(w.a).await.unwrap();
    a.execute(a.insert(
        customers::table,
        (
            customers::name.eq("a-uncommitted"),
            customers::email.eq("u@x"),
        ),
    ))
    .await
    .unwrap();
    {
        let mut fut = Box::pin(a.commit());
        let _ = poll_once(fut.as_mut());
    }
    // B now writes on the (only) connection, then rolls back: if B ran inside A's still-open
    // transaction, B's ROLLBACK would also undo... and B's COMMIT would commit A's row.
    pool.with_org(w.b, async |s| {
        s.verify_context().await?;
        s.execute(s.insert(
            customers::table,
            (
                customers::name.eq("secret-b-new"),
                customers::email.eq("bn@x"),
            ),
        ))
        .await
    })
    .await
    .unwrap();
    check_clean(&pool, w.b, "secret-b").await;
    // A's row was either committed by A's own COMMIT or not at all; it is in A either way.
    assert!(
        admin_names(&w, w.b)
            .iter()
            .all(|n| n.starts_with("secret-b"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncommitted_handle_dropped_never_has_its_work_committed_by_the_next_org() {
    let w = world("rt_async_drop");
    let pool = pool(&w, 1).await;
    for _ in 0..3 {
        let mut a = pool.begin(w.a).await.unwrap();
        a.execute(a.insert(
            customers::table,
            (customers::name.eq("a-dropped"), customers::email.eq("d@x")),
        ))
        .await
        .unwrap();
        drop(a);
        pool.with_org(w.b, async |s| {
            s.verify_context().await?;
            s.execute(
                s.update(customers::table)
                    .set(customers::email.eq(customers::email)),
            )
            .await
        })
        .await
        .unwrap();
    }
    assert!(!admin_names(&w, w.a).iter().any(|n| n == "a-dropped"));
    check_clean(&pool, w.b, "secret-b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_dropped_outside_any_runtime_is_closed_not_reused_dirty() {
    let w = world("rt_async_drop_thread");
    let pool = pool(&w, 1).await;
    let mut a = pool.begin(w.a).await.unwrap();
    a.execute(a.insert(
        customers::table,
        (customers::name.eq("a-thread"), customers::email.eq("t@x")),
    ))
    .await
    .unwrap();
    std::thread::spawn(move || drop(a)).join().unwrap();
    check_clean(&pool, w.b, "secret-b").await;
    assert!(!admin_names(&w, w.a).iter().any(|n| n == "a-thread"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_the_closure_rolls_back_and_the_connection_is_clean() {
    let w = world("rt_async_panic");
    let pool = pool(&w, 1).await;
    let p = pool.clone();
    let a = w.a;
    let joined = tokio::spawn(async move {
        p.with_org(a, async |s| {
            s.execute(s.insert(
                customers::table,
                (
                    customers::name.eq("a-panicked"),
                    customers::email.eq("pp@x"),
                ),
            ))
            .await?;
            if s.org() == a {
                panic!("handler bug");
            }
            Ok::<_, TenantError>(())
        })
        .await
    })
    .await;
    assert!(joined.is_err());
    check_clean(&pool, w.b, "secret-b").await;
    assert!(!admin_names(&w, w.a).iter().any(|n| n == "a-panicked"));
}

/// A row type whose deserialization panics: the panic unwinds out of `load` while the
/// statement's reply is being read.
#[derive(Debug)]
struct Boom;

impl Queryable<Text, diesel::pg::Pg> for Boom {
    type Row = String;
    fn build(row: String) -> diesel::deserialize::Result<Self> {
        panic!("row deserialization panicked on {} bytes", row.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_reading_rows_closes_the_connection() {
    let w = world("rt_async_panic_rows");
    let pool = pool(&w, 1).await;
    let p = pool.clone();
    let a = w.a;
    let joined = tokio::spawn(async move {
        p.with_org(a, async |s| {
            s.execute(s.insert(
                customers::table,
                (
                    customers::name.eq("a-rowpanic"),
                    customers::email.eq("rp@x"),
                ),
            ))
            .await?;
            let _: Vec<Boom> = s
                .load(s.query(customers::table).select(customers::name))
                .await?;
            Ok::<_, TenantError>(())
        })
        .await
    })
    .await;
    assert!(joined.is_err());
    check_clean(&pool, w.b, "secret-b").await;
    assert!(!admin_names(&w, w.a).iter().any(|n| n == "a-rowpanic"));
}

/// A panic caught around one `load` leaves the handle alive with a half-read reply; then the
/// handle is used and committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_panic_mid_load_does_not_desynchronise_later_statements() {
    let w = world("rt_async_catch");
    let pool = pool(&w, 1).await;
    let p = pool.clone();
    let a = w.a;
    let names = tokio::spawn(async move {
        let mut s = p.begin(a).await.unwrap();
        let caught = {
            let fut = s.load::<Boom, _>(s.query(customers::table).select(customers::name));
            // catch_unwind of a future without futures-util: poll it by hand.
            let mut fut = Box::pin(fut);
            let mut out = None;
            for _ in 0..200_000 {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    poll_once(fut.as_mut())
                }));
                match r {
                    Err(_) => {
                        out = Some(true);
                        break;
                    }
                    Ok(Poll::Ready(_)) => {
                        out = Some(false);
                        break;
                    }
                    Ok(Poll::Pending) => tokio::task::yield_now().await,
                }
            }
            out
        };
        assert_eq!(caught, Some(true));
        let names = names_in(&mut s).await;
        let _ = s.commit().await;
        names
    })
    .await
    .unwrap();
    if let Ok(names) = names {
        assert!(names.iter().all(|n| n.starts_with("secret-a")), "{names:?}");
    }
    check_clean(&pool, w.b, "secret-b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_cancelled_while_waiting_for_a_lock_then_dropped_leaves_nothing_for_b() {
    let w = world("rt_async_cancel_stmt");
    let pool = pool(&w, 1).await;
    let mut locker = w.db.admin();
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM customers WHERE id = '{}' FOR UPDATE",
            w.a_customer
        ))
        .unwrap();
    let id = w.a_customer;
    let mut a = pool.begin(w.a).await.unwrap();
    {
        let fut = a.execute(
            a.update(customers::table)
                .filter(customers::id.eq(id))
                .set(customers::name.eq("cancelled-update")),
        );
        let mut fut = Box::pin(fut);
        poll_until(fut.as_mut(), || lock_waiters(&w) > 0).await;
    }
    drop(a);
    locker.batch_execute("COMMIT").unwrap();
    check_clean(&pool, w.b, "secret-b").await;
    assert!(
        !admin_names(&w, w.a).iter().any(|n| n == "cancelled-update"),
        "a cancelled, dropped statement was committed"
    );
}

/// Fail-closed: a statement whose future was dropped in flight (a timeout around one query)
/// has an outcome the caller never saw. The handle must not let the caller go on and COMMIT
/// as if it had not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_after_a_cancelled_in_flight_statement_is_refused() {
    let w = world("rt_async_cancel_then_commit");
    let pool = pool(&w, 1).await;
    let mut locker = w.db.admin();
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM customers WHERE id = '{}' FOR UPDATE",
            w.a_customer
        ))
        .unwrap();
    let id = w.a_customer;
    let mut a = pool.begin(w.a).await.unwrap();
    {
        // What `tokio::time::timeout(d, a.execute(..))` does when it fires: the future is
        // dropped with the statement sent and its reply not read.
        let fut = a.execute(
            a.update(customers::table)
                .filter(customers::id.eq(id))
                .set(customers::name.eq("timed-out-update")),
        );
        let mut fut = Box::pin(fut);
        poll_until(fut.as_mut(), || lock_waiters(&w) > 0).await;
    }
    // The caller treats the update as not done and commits the transaction.
    let commit = tokio::spawn(async move { a.commit().await });
    locker.batch_execute("COMMIT").unwrap();
    let committed = commit.await.unwrap();
    let names = admin_names(&w, w.a);
    assert!(
        committed.is_err() && !names.iter().any(|n| n == "timed-out-update"),
        "commit after a cancelled in-flight statement: {committed:?}, rows now {names:?}"
    );
    check_clean(&pool, w.b, "secret-b").await;
}

// ---------------------------------------------------------------------------------------
// Concurrency: many orgs' tasks at once on a small pool
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interleaved_tasks_of_two_orgs_each_see_only_their_own_rows() {
    let w = world("rt_async_race");
    let pool = pool(&w, 3).await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (org, prefix) = if i % 2 == 0 {
            (w.a, "secret-a")
        } else {
            (w.b, "secret-b")
        };
        let p = pool.clone();
        tasks.push(tokio::spawn(async move {
            // Some tasks are cancelled mid-way (dropped after a few polls), the rest finish.
            if i % 5 == 0 {
                let mut fut = Box::pin(p.with_org(org, async |s| {
                    s.verify_context().await?;
                    names_in(s).await
                }));
                for _ in 0..(i % 7) {
                    let _ = poll_once(fut.as_mut());
                    tokio::task::yield_now().await;
                }
                return;
            }
            let names = p
                .with_org(org, async |s| {
                    s.verify_context().await?;
                    let n = names_in(s).await?;
                    tokio::task::yield_now().await;
                    s.verify_context().await?;
                    Ok::<_, TenantError>(n)
                })
                .await
                .unwrap();
            assert!(
                names.iter().all(|n| n.starts_with(prefix)),
                "{org}: {names:?}"
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    check_clean(&pool, w.a, "secret-a").await;
    check_clean(&pool, w.b, "secret-b").await;
}

/// After a statement's future is dropped in flight, the next statement on the same handle
/// must get its own reply, never the cancelled one's (a pipelined-reply desynchronisation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statement_after_a_cancelled_one_gets_its_own_reply() {
    let w = world("rt_async_desync");
    let pool = pool(&w, 1).await;
    let mut locker = w.db.admin();
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM customers WHERE id = '{}' FOR UPDATE",
            w.a_customer
        ))
        .unwrap();
    let id = w.a_customer;
    let mut a = pool.begin(w.a).await.unwrap();
    {
        let fut = a.load::<String, _>(
            a.update(customers::table)
                .filter(customers::id.eq(id))
                .set(customers::name.eq(customers::name))
                .returning(customers::name),
        );
        let mut fut = Box::pin(fut);
        poll_until(fut.as_mut(), || lock_waiters(&w) > 0).await;
    }
    let next = tokio::spawn(async move {
        let emails: Result<Vec<String>, _> = a
            .load(
                a.query(customers::table)
                    .select(customers::email)
                    .order(customers::email),
            )
            .await;
        drop(a);
        emails
    });
    locker.batch_execute("COMMIT").unwrap();
    if let Ok(emails) = next.await.unwrap() {
        assert_eq!(emails, vec!["a1@a.example", "a2@a.example"]);
    }
    check_clean(&pool, w.b, "secret-b").await;
}
