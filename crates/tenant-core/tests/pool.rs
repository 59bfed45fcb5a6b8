//! The pool: no connection leaves it with an org context, and it refuses to start as a role
//! that could bypass row-level security.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use common::{backend_pid, org_with_customer, raw_setting, setup};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use tenant_core::{OrgId, OrgScoped, TenantError, TenantPool, UnsafeConfig};
use tenant_testkit::roles;
use two_companies::schema::{customers, deals};
use uuid::Uuid;

#[test]
fn commit_rollback_and_panic_leave_no_context_on_the_connection() {
    let (db, pool) = setup("hygiene_raw", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let mut app = db.connect_as(roles::APP);

    OrgScoped::begin(&mut app, a, &two_companies::REGISTRY)
        .unwrap()
        .commit()
        .unwrap();
    assert_eq!(raw_setting(&mut app).as_deref(), Some(""));

    OrgScoped::begin(&mut app, a, &two_companies::REGISTRY)
        .unwrap()
        .rollback()
        .unwrap();
    assert_eq!(raw_setting(&mut app).as_deref(), Some(""));

    drop(OrgScoped::begin(&mut app, a, &two_companies::REGISTRY).unwrap());
    assert_eq!(raw_setting(&mut app).as_deref(), Some(""));

    let panicked = catch_unwind(AssertUnwindSafe(|| {
        let _s = OrgScoped::begin(&mut app, a, &two_companies::REGISTRY).unwrap();
        panic!("boom inside a scoped transaction");
    }));
    assert!(panicked.is_err());
    assert_eq!(raw_setting(&mut app).as_deref(), Some(""));
    // And no transaction is left open: a new one begins cleanly.
    OrgScoped::begin(&mut app, a, &two_companies::REGISTRY)
        .unwrap()
        .commit()
        .unwrap();
}

#[test]
fn the_pool_reuses_a_clean_connection_after_commit_and_rollback_and_discards_it_after_a_panic() {
    let (_db, pool) = setup("hygiene_pool", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let pid = pool
        .with_org(a, |s| Ok::<_, TenantError>(common::backend_pid(s)))
        .unwrap();
    // Rolled back (closure error): same connection comes back, and works.
    let failed: Result<(), TenantError> = pool.with_org(a, |_| Err(TenantError::NoOrgContext));
    assert!(failed.is_err());
    let again = pool
        .with_org(a, |s| Ok::<_, TenantError>(backend_pid(s)))
        .unwrap();
    assert_eq!(
        again, pid,
        "a cleanly ended transaction returns its connection to the pool"
    );
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        pool.with_org(a, |_s| -> Result<(), TenantError> { panic!("boom") })
    }));
    assert!(panicked.is_err());
    let after = pool
        .with_org(a, |s| Ok::<_, TenantError>(backend_pid(s)))
        .unwrap();
    assert_ne!(
        after, pid,
        "a connection used by a panicking thread is discarded"
    );
    let rows: i64 = pool
        .with_org(a, |s| s.get_result(s.query(customers::table).count()))
        .unwrap();
    assert_eq!(rows, 1);
}

#[test]
fn a_handle_swapped_inside_a_savepoint_is_refused_and_neither_transaction_lies() {
    let (db, pool) = setup("savepoint_swap", 2);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let (b, _) = org_with_customer(&pool, "B", "bob");
    let mut first = pool.begin(a).unwrap();
    let mut second = pool.begin(b).unwrap();
    second
        .execute(second.insert(customers::table, common::customer("bob2")))
        .unwrap();
    let swapped: Result<(), TenantError> = first.savepoint(|s| {
        s.execute(s.insert(customers::table, common::customer("carol")))?;
        std::mem::swap(s, &mut second);
        Ok(())
    });
    assert!(
        matches!(swapped, Err(TenantError::HandleSwapped)),
        "{swapped:?}"
    );
    // Before: the savepoint's closing steps committed the other handle's whole transaction.
    assert_eq!(
        common::committed(&db, "bob2"),
        0,
        "B's transaction is still its own"
    );
    // The variables now hold each other's handles: A's, with the savepoint open, refuses to
    // commit; B's commits what it did, and only that.
    let (a_handle, b_handle) = (second, first);
    assert_eq!(a_handle.org(), a);
    assert!(matches!(
        a_handle.commit(),
        Err(TenantError::TransactionAborted)
    ));
    b_handle.commit().unwrap();
    assert_eq!(
        (
            common::committed(&db, "carol"),
            common::committed(&db, "bob2")
        ),
        (0, 1)
    );
}

#[test]
fn a_handle_swapped_inside_with_org_is_refused_and_neither_transaction_commits() {
    let (db, pool) = setup("with_org_swap", 2);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let (b, _) = org_with_customer(&pool, "B", "bob");
    let mut second = pool.begin(b).unwrap();
    second
        .execute(second.insert(customers::table, common::customer("swap_b1")))
        .unwrap();
    let swapped: Result<(), TenantError> = pool.with_org(a, |s| {
        s.execute(s.insert(customers::table, common::customer("swap_a1")))?;
        std::mem::swap(s, &mut second);
        Ok(())
    });
    assert!(
        matches!(swapped, Err(TenantError::HandleSwapped)),
        "{swapped:?}"
    );
    // Before: with_org committed B's transaction as A's, and said Ok.
    assert_eq!(
        (
            common::committed(&db, "swap_a1"),
            common::committed(&db, "swap_b1")
        ),
        (0, 0)
    );
    // `second` now holds the handle with_org opened, for A, still uncommitted.
    assert_eq!(second.org(), a);
    second.rollback().unwrap();
    assert_eq!(common::committed(&db, "swap_a1"), 0);
}

#[test]
fn a_session_level_org_left_on_a_pooled_connection_is_undone_at_the_next_opening() {
    let (db, pool) = setup("session_level", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let (b, _) = org_with_customer(&pool, "B", "bob");
    // Raw SQL smuggled into a filter sets B's org at session level (is_local = false): it
    // survives COMMIT, which is docs/threat-model.md #6.
    let leak = format!("SELECT set_config('tenant.org_id', '{b}', false)");
    let poisoned_pid = pool
        .with_org(a, |s| {
            let pid = backend_pid(s);
            s.raw_connection_unchecked("test: simulate raw code leaving a session-level org")
                .batch_execute(&leak)
                .unwrap();
            Ok::<_, TenantError>(pid)
        })
        .unwrap();
    let (next_pid, names) = pool
        .with_org(a, |s| {
            let names: Vec<String> = s.load(s.query(customers::table).select(customers::name))?;
            Ok::<_, TenantError>((backend_pid(s), names))
        })
        .unwrap();
    assert_eq!(next_pid, poisoned_pid, "the same connection");
    assert_eq!(names, vec!["alice".to_owned()], "as A alone");
    // The same trick on a raw connection shows what the pool prevented: the org outlives COMMIT.
    let mut app = db.connect_as(roles::APP);
    app.batch_execute(&format!(
        "BEGIN; SELECT set_config('tenant.org_id', '{b}', false); COMMIT"
    ))
    .unwrap();
    assert_eq!(raw_setting(&mut app), Some(b.to_string()));
}

fn refusal(url: String) -> UnsafeConfig {
    match TenantPool::builder(url, &two_companies::REGISTRY, common::key()).build() {
        Err(TenantError::UnsafeConfig(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_pool_refuses_a_superuser() {
    let (db, _pool) = setup("refuse_super", 1);
    let reason = refusal(db.url_as(roles::SUPERUSER));
    assert_eq!(
        reason,
        UnsafeConfig::Superuser {
            role: roles::SUPERUSER.into()
        }
    );
    assert!(
        reason
            .to_string()
            .contains("superusers bypass row-level security")
    );
}

#[test]
fn the_pool_refuses_a_bypassrls_role() {
    let (db, _pool) = setup("refuse_bypass", 1);
    assert_eq!(
        refusal(db.url_as(roles::BYPASSRLS)),
        UnsafeConfig::BypassRls {
            role: roles::BYPASSRLS.into()
        }
    );
}

#[test]
fn the_pool_refuses_a_table_owner_directly_or_through_membership() {
    let (db, _pool) = setup("refuse_owner", 1);
    assert_eq!(
        refusal(db.url_as(roles::OWNER_MEMBER)),
        UnsafeConfig::OwnsTenantTable {
            role: roles::OWNER_MEMBER.into(),
            table: "orgs".into()
        }
    );
    db.admin()
        .batch_execute(&format!("ALTER TABLE invoices OWNER TO {}", roles::PLAIN))
        .unwrap();
    assert_eq!(
        refusal(db.url_as(roles::PLAIN)),
        UnsafeConfig::OwnsTenantTable {
            role: roles::PLAIN.into(),
            table: "invoices".into()
        }
    );
}

#[test]
fn the_pool_refuses_a_member_of_a_bypassrls_role() {
    let (db, _pool) = setup("refuse_member", 1);
    assert_eq!(
        refusal(db.url_as(roles::MEMBER_OF_BYPASSRLS)),
        UnsafeConfig::MemberOfPrivilegedRole {
            role: roles::MEMBER_OF_BYPASSRLS.into(),
            member_of: roles::BYPASSRLS.into()
        }
    );
}

#[test]
fn the_pool_refuses_truncate_references_and_trigger_grants() {
    let (db, _pool) = setup("refuse_grants", 1);
    for privilege in ["TRUNCATE", "REFERENCES", "TRIGGER"] {
        db.admin()
            .batch_execute(&format!("GRANT {privilege} ON deals TO tenant_app"))
            .unwrap();
        assert_eq!(
            refusal(db.app_url()),
            UnsafeConfig::ForbiddenPrivilege {
                role: roles::APP.into(),
                table: "deals".into(),
                privilege
            }
        );
        db.admin()
            .batch_execute(&format!("REVOKE {privilege} ON deals FROM tenant_app"))
            .unwrap();
    }
}

#[test]
fn the_pool_refuses_a_tenant_table_without_forced_rls_and_a_missing_one() {
    let (db, _pool) = setup("refuse_schema", 1);
    db.admin()
        .batch_execute("ALTER TABLE deals NO FORCE ROW LEVEL SECURITY")
        .unwrap();
    assert_eq!(
        refusal(db.app_url()),
        UnsafeConfig::RlsNotForced {
            table: "deals".into()
        }
    );
    db.admin()
        .batch_execute("ALTER TABLE deals FORCE ROW LEVEL SECURITY")
        .unwrap();

    diesel::table! { ghosts (id) { id -> Uuid, org_id -> Uuid } }
    tenant_lint::registry! { static GHOSTS; tenant ghosts => org_id; }
    let err = TenantPool::builder(db.app_url(), &GHOSTS, common::key())
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, TenantError::UnsafeConfig(UnsafeConfig::MissingTenantTable { table }) if table == "ghosts"),
        "{err:?}"
    );
    assert!(err.to_string().contains("run the migrations"), "{err}");
}

#[test]
fn the_pool_refuses_a_database_that_sets_an_org_for_every_session() {
    let (db, _pool) = setup("refuse_default", 1);
    let org = OrgId::new_random();
    db.admin()
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET tenant.org_id = '{org}'",
            db.name()
        ))
        .unwrap();
    assert_eq!(
        refusal(db.app_url()),
        UnsafeConfig::ContextAtConnect {
            role: roles::APP.into(),
            setting: "tenant.org_id"
        }
    );
}

#[test]
fn hiding_the_org_with_set_local_is_refused_instead_of_silently_showing_it() {
    let (db, _pool) = common::setup_plain("hide_set_local", 1);
    let err = TenantPool::builder(
        db.app_url(),
        &two_companies::REGISTRY,
        tenant_core::OrgContext::TrustEveryStatement,
    )
    .set_local_context()
    .hide_org_in_activity()
    .build()
    .unwrap_err();
    assert!(
        matches!(&err, TenantError::ConflictingOptions(m) if m.starts_with("hide_org_in_activity() cannot hide the org of set_local_context()")),
        "{err}"
    );
}

#[test]
fn a_bad_url_is_a_clear_connection_error() {
    let err = TenantPool::builder(
        "postgres://127.0.0.1:1/nowhere?connect_timeout=2",
        &two_companies::REGISTRY,
        common::key(),
    )
    .build()
    .unwrap_err();
    assert!(matches!(err, TenantError::Connect(_)), "{err:?}");
}

#[test]
fn eight_threads_two_orgs_thousand_transactions_each_zero_rows_cross() {
    let (db, pool) = setup("concurrency", 8);
    let (a, ca) = org_with_customer(&pool, "A", "alice");
    let (b, cb) = org_with_customer(&pool, "B", "bob");
    let crossed = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let pool = &pool;
                let (org, customer) = if t % 2 == 0 { (a, ca) } else { (b, cb) };
                scope.spawn(move || {
                    let mut crossed = 0usize;
                    for i in 0..1000 {
                        pool.with_org(org, |s| {
                            if i % 50 == 0 {
                                s.execute(s.insert(
                                    deals::table,
                                    (
                                        deals::customer_id.eq(customer),
                                        deals::title.eq(format!("t{t}-{i}")),
                                        deals::amount_cents.eq(1_i64),
                                        deals::currency.eq("EUR"),
                                        deals::stage.eq("open"),
                                    ),
                                ))?;
                            }
                            let seen: Vec<Uuid> =
                                s.load(s.query(deals::table).select(deals::org_id))?;
                            crossed += seen.iter().filter(|o| **o != org.as_uuid()).count();
                            Ok::<_, TenantError>(())
                        })
                        .unwrap();
                    }
                    crossed
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum::<usize>()
    });
    assert_eq!(
        crossed, 0,
        "rows seen by a session that belong to another org"
    );
    // Proof from outside RLS: every deal a thread wrote landed in that thread's org.
    let misplaced: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
        "(SELECT count(*) FROM deals WHERE \
           (split_part(split_part(title, '-', 1), 't', 2)::int % 2 = 0 AND org_id <> '{a}') OR \
           (split_part(split_part(title, '-', 1), 't', 2)::int % 2 = 1 AND org_id <> '{b}'))"
    )))
    .get_result(&mut db.admin())
    .unwrap();
    assert_eq!(misplaced, 0);
    let total: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT count(*) FROM deals)",
    ))
    .get_result(&mut db.admin())
    .unwrap();
    assert_eq!(total, 8 * 20);
}

/// What `pg_stat_activity` shows another session of the role about the pool's only
/// connection while a transaction for `org` sits open on it, and what that transaction sees.
fn activity_while_open(
    db: &tenant_testkit::TestDb,
    pool: &TenantPool,
    org: OrgId,
) -> (String, i64) {
    let server = pool
        .with_org(org, |s| Ok::<_, TenantError>(backend_pid(s)))
        .unwrap();
    let mut held = pool.begin(org).unwrap();
    let query: String = diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(&format!(
        "(SELECT state || ': ' || query FROM pg_stat_activity WHERE pid = {server})"
    )))
    .get_result(&mut db.connect_as(tenant_testkit::roles::APP))
    .unwrap();
    let seen: i64 = held
        .get_result(held.query(customers::table).count())
        .unwrap();
    held.commit().unwrap();
    (query, seen)
}

#[test]
fn the_org_id_can_be_kept_out_of_the_text_other_sessions_read() {
    let (db, pool) = common::setup_plain("pool_hide_org", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let (shown, seen) = activity_while_open(&db, &pool, a);
    assert!(
        shown.starts_with(
            "idle in transaction: BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE, NOT DEFERRABLE;"
        ),
        "{shown}"
    );
    assert!(
        shown.contains(&a.to_string()),
        "in the plain mode the org id shows unless hidden: {shown}"
    );
    assert_eq!(seen, 1);
    let hiding = TenantPool::builder(
        db.app_url(),
        &two_companies::REGISTRY,
        tenant_core::OrgContext::TrustEveryStatement,
    )
    .max_size(1)
    .hide_org_in_activity()
    .build()
    .unwrap();
    let (shown, seen) = activity_while_open(&db, &hiding, a);
    assert!(
        shown.starts_with("idle in transaction: BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE, NOT DEFERRABLE; RESET ALL;"),
        "{shown}"
    );
    assert!(!shown.contains(&a.to_string()), "hidden: {shown}");
    assert_eq!(seen, 1, "and set all the same");
}
