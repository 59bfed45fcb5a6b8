//! Both layers against a real server: a scoped session sees and writes only its org, the
//! database refuses the rest, and a session without an org sees nothing.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{org_with_customer, raw_setting, setup};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};
use tenant_core::{OrgId, OrgScoped, TenantError};
use tenant_testkit::{roles, try_sql};
use two_companies::schema::{customers, deals};
use uuid::Uuid;

#[test]
fn a_scoped_session_sees_only_its_own_orgs_rows() {
    let (_db, pool) = setup("sees_own", 2);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let (b, _) = org_with_customer(&pool, "B", "bob");
    for (org, name) in [(a, "alice"), (b, "bob")] {
        let rows: Vec<(Uuid, String)> = pool
            .with_org(org, |s| {
                s.load(
                    s.query(customers::table)
                        .select((customers::org_id, customers::name)),
                )
            })
            .unwrap();
        assert_eq!(rows, vec![(org.as_uuid(), name.to_owned())]);
    }
}

#[test]
fn every_scoped_statement_carries_the_org_predicate_as_a_bound_value() {
    let (_db, pool) = setup("predicate_sql", 1);
    let org = OrgId::new_random();
    let s = pool.begin(org).unwrap();
    let select = s
        .query(customers::table)
        .filter(customers::name.eq("x"))
        .select(customers::id);
    let update = s.update(customers::table).set(customers::name.eq("y"));
    let delete = s.delete(customers::table).filter(customers::name.eq("x"));
    let insert = s.insert(
        customers::table,
        (customers::name.eq("n"), customers::email.eq("e")),
    );
    for sql in [select.debug_sql(), update.debug_sql(), delete.debug_sql()] {
        let predicate = sql.find(r#""customers"."org_id" = $"#).expect(&sql);
        assert!(
            sql[..predicate].contains("WHERE ("),
            "the org predicate is in WHERE: {sql}"
        );
        assert!(sql.contains(&org.to_string()), "{sql}");
        assert!(
            !sql.contains(&format!("'{org}'")),
            "org must be bound, not inlined: {sql}"
        );
    }
    let insert_sql = insert.debug_sql();
    assert!(
        insert_sql.contains(r#"INSERT INTO "customers" ("org_id", "name", "email")"#),
        "{insert_sql}"
    );
    assert!(insert_sql.contains(&org.to_string()), "{insert_sql}");
}

#[test]
fn moving_a_row_to_another_org_is_refused_by_row_level_security() {
    let (_db, pool) = setup("cross_write", 2);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let (b, _) = org_with_customer(&pool, "B", "bob");
    // Application layer: a scoped update that sets the org column does not compile
    // (compile-fail: a_scoped_update_that_sets_the_org_column_does_not_compile), and an upsert
    // that does is refused before it is sent (shapes.rs).
    // Database layer: the write, sent raw inside A's transaction, is refused by RLS
    // (42501) and mapped to CrossOrgWrite, without the bound value in the message.
    let err = pool
        .with_org(a, |s| {
            let raw = s.raw_connection_unchecked("test: bypass the application layer");
            diesel::update(customers::table)
                .set(customers::org_id.eq(b.as_uuid()))
                .execute(raw)
                .map_err(TenantError::from)
        })
        .unwrap_err();
    assert!(
        matches!(&err, TenantError::CrossOrgWrite { table } if table == "customers"),
        "{err:?}"
    );
    assert!(
        !err.to_string().contains(&b.to_string()),
        "no bound values in errors: {err}"
    );
    // B's data is untouched and A's row did not move.
    let count_b: i64 = pool
        .with_org(b, |s| s.get_result(s.query(customers::table).count()))
        .unwrap();
    let count_a: i64 = pool
        .with_org(a, |s| s.get_result(s.query(customers::table).count()))
        .unwrap();
    assert_eq!((count_a, count_b), (1, 1));
}

#[test]
fn inserting_a_row_into_another_org_through_rls_alone_is_refused_with_42501() {
    let (db, pool) = setup("cross_insert", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let (b, _) = org_with_customer(&pool, "B", "bob");
    db.install_sqlstate_probe();
    let mut app = db.connect_as(roles::APP);
    common::begin_raw(&mut app, a);
    let outcome = try_sql(
        &mut app,
        &format!("INSERT INTO customers (org_id, name, email) VALUES ('{b}', 'mallory', 'm@x')"),
    );
    assert_eq!(
        outcome,
        "42501 new row violates row-level security policy for table \"customers\""
    );
}

#[test]
fn update_and_delete_of_another_orgs_rows_affect_zero_rows() {
    let (_db, pool) = setup("zero_rows", 2);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let (_b, bob) = org_with_customer(&pool, "B", "bob");
    let (updated, deleted) = pool
        .with_org(a, |s| {
            let u = s.execute(
                s.update(customers::table)
                    .filter(customers::id.eq(bob))
                    .set(customers::name.eq("pwned")),
            )?;
            let d = s.execute(s.delete(customers::table).filter(customers::id.eq(bob)))?;
            Ok::<_, TenantError>((u, d))
        })
        .unwrap();
    assert_eq!((updated, deleted), (0, 0));
}

#[test]
fn rls_alone_confines_reads_when_the_application_filter_is_missing() {
    let (db, pool) = setup("rls_alone", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let (_b, _) = org_with_customer(&pool, "B", "bob");
    let mut app = db.connect_as(roles::APP);
    common::begin_raw(&mut app, a);
    let names: Vec<String> = customers::table
        .select(customers::name)
        .load(&mut app)
        .unwrap();
    assert_eq!(names, ["alice"]);
}

fn count_customers_raw(conn: &mut PgConnection) -> i64 {
    diesel::select(diesel::dsl::sql::<BigInt>(
        "(SELECT count(*) FROM customers)",
    ))
    .get_result(conn)
    .unwrap()
}

#[test]
fn without_an_org_a_fresh_session_sees_zero_rows_and_writes_none() {
    let (db, pool) = setup("no_org_fresh", 1);
    org_with_customer(&pool, "A", "alice");
    db.install_sqlstate_probe();
    let mut app = db.connect_as(roles::APP);
    assert_eq!(raw_setting(&mut app), None);
    assert_eq!(count_customers_raw(&mut app), 0);
    let some_org = OrgId::new_random();
    let insert = format!("INSERT INTO orgs (id, name) VALUES ('{some_org}', 'x')");
    assert_eq!(
        try_sql(&mut app, &insert),
        "42501 new row violates row-level security policy for table \"orgs\""
    );
    assert_eq!(try_sql(&mut app, "UPDATE customers SET name = 'x'"), "ok");
    assert_eq!(try_sql(&mut app, "DELETE FROM customers"), "ok");
    // ... and those affected nothing:
    let mut admin = db.admin();
    assert_eq!(count_customers_raw(&mut admin), 1);
}

#[test]
fn without_an_org_after_a_committed_scoped_transaction_the_empty_setting_fails_closed() {
    let (db, pool) = setup("no_org_after", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    db.install_sqlstate_probe();
    let mut app = db.connect_as(roles::APP);
    let scoped = OrgScoped::begin(&mut app, a, &two_companies::REGISTRY).unwrap();
    scoped.commit().unwrap();
    assert_eq!(
        raw_setting(&mut app).as_deref(),
        Some(""),
        "the ended local set leaves ''"
    );
    assert_eq!(count_customers_raw(&mut app), 0);
    let insert = format!("INSERT INTO customers (org_id, name, email) VALUES ('{a}', 'x', 'y')");
    assert_eq!(
        try_sql(&mut app, &insert),
        "42501 new row violates row-level security policy for table \"customers\""
    );
}

#[test]
fn the_app_role_cannot_switch_the_policy_off() {
    let (db, _pool) = setup("no_switch_off", 1);
    db.install_sqlstate_probe();
    let mut app = db.connect_as(roles::APP);
    let cases = [
        (
            "ALTER TABLE invoices DISABLE ROW LEVEL SECURITY",
            "42501 must be owner of table invoices",
        ),
        (
            "ALTER TABLE invoices NO FORCE ROW LEVEL SECURITY",
            "42501 must be owner of table invoices",
        ),
        (
            "DROP POLICY tenant_isolation ON invoices",
            "42501 must be owner of relation invoices",
        ),
        (
            "TRUNCATE invoices",
            "42501 permission denied for table invoices",
        ),
        (
            "SET ROLE tenant_owner",
            "42501 permission denied to set role \"tenant_owner\"",
        ),
        (
            "CREATE POLICY widen ON invoices AS PERMISSIVE USING (true)",
            "42501 must be owner of table invoices",
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(try_sql(&mut app, sql), expected, "{sql}");
    }
    // row_security = off is not a bypass: queries under RLS then fail.
    app.batch_execute("BEGIN").unwrap();
    assert_eq!(try_sql(&mut app, "SET LOCAL row_security = off"), "ok");
    assert_eq!(
        try_sql(&mut app, "SELECT count(*) FROM invoices"),
        "42501 query would be affected by row-level security policy for table \"invoices\""
    );
}

#[test]
fn a_scoped_handle_that_had_a_failed_statement_refuses_to_commit() {
    let (_db, pool) = setup("aborted", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let result = pool.with_org(a, |s| {
        // Violates UNIQUE (org_id, email); the error is swallowed, as careless code would.
        let dup = s.insert(
            customers::table,
            (
                customers::name.eq("again"),
                customers::email.eq("alice@example.com"),
            ),
        );
        let failed = s.execute(dup);
        assert!(failed.is_err());
        Ok::<_, TenantError>(())
    });
    assert!(
        matches!(result, Err(TenantError::TransactionAborted)),
        "{result:?}"
    );
    let count: i64 = pool
        .with_org(a, |s| s.get_result(s.query(customers::table).count()))
        .unwrap();
    assert_eq!(count, 1);
}

#[test]
fn an_org_hop_smuggled_into_a_filter_is_refused_before_it_is_sent() {
    let (_db, pool) = setup("hop_refused", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let (b, _) = org_with_customer(&pool, "B", "bob");
    let err = pool
        .with_org(a, |s| {
            let hop = format!("set_config('tenant.org_id', '{b}', true) IS NOT NULL");
            s.load::<Uuid, _>(
                s.query(customers::table)
                    .filter(diesel::dsl::sql::<Bool>(&hop))
                    .select(customers::id),
            )
        })
        .unwrap_err();
    assert!(
        matches!(&err, TenantError::Unscoped(tenant_core::Violation::ChangesSessionSetting(f)) if f == "set_config"),
        "{err:?}"
    );
}

#[test]
fn an_unscoped_boxed_subquery_inside_a_scoped_filter_is_refused_before_it_is_sent() {
    let (_db, pool) = setup("subquery_refused", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let err = pool
        .with_org(a, |s| {
            // customers read without its org predicate, inside A's scoped query. Unboxed, this
            // does not compile (see the compile-fail suite); boxing erases the type, so the
            // check of the rendered statement is what refuses it.
            let everyone = customers::table.select(customers::id).into_boxed();
            s.load::<Uuid, _>(
                s.query(deals::table)
                    .filter(deals::customer_id.eq_any(everyone))
                    .select(deals::id),
            )
        })
        .unwrap_err();
    assert!(
        matches!(&err, TenantError::Unscoped(tenant_core::Violation::MissingOrgPredicate { table }) if table == "customers"),
        "{err:?}"
    );
    // Nothing was sent, so the transaction is still usable and commits.
    let n: i64 = pool
        .with_org(a, |s| s.get_result(s.query(customers::table).count()))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn a_context_changed_inside_a_transaction_is_detected_and_not_committed() {
    // The plain mode, where the setting is the org: a hop changes what RLS enforces.
    let (_db, pool) = common::setup_plain("hop_detect", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let (b, _) = org_with_customer(&pool, "B", "bob");
    let err = pool
        .with_org(a, |s| {
            // What injected SQL on the raw connection could do (docs/threat-model.md #5).
            s.raw_connection_unchecked("test: simulate an injected org hop")
                .batch_execute(&format!("SELECT set_config('tenant.org_id', '{b}', true)"))
                .unwrap();
            s.verify_context()
        })
        .unwrap_err();
    assert!(matches!(err, TenantError::OrgContextChanged), "{err:?}");
}

#[test]
fn in_the_signed_mode_verify_context_reads_the_org_the_database_verifies() {
    let (_db, pool) = setup("verify_signed", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let (b, _) = org_with_customer(&pool, "B", "bob");
    // The token alone carries the org (the setting is not set): the check reads the verified
    // org, and a hop of the setting changes nothing it or RLS reads.
    let names = pool
        .with_org(a, |s| {
            s.verify_context()?;
            s.raw_connection_unchecked("test: simulate an injected org hop")
                .batch_execute(&format!("SELECT set_config('tenant.org_id', '{b}', true)"))
                .unwrap();
            s.verify_context()?;
            s.load::<String, _>(s.query(customers::table).select(customers::name))
        })
        .unwrap();
    assert_eq!(names, ["alice"]);
    // The token emptied: no org, and the transaction is not committed.
    let err = pool
        .with_org(a, |s| {
            s.raw_connection_unchecked("test: simulate an injected token change")
                .batch_execute("SELECT set_config('tenant.org_token', '', true)")
                .unwrap();
            s.verify_context()
        })
        .unwrap_err();
    assert!(matches!(err, TenantError::NoOrgContext), "{err:?}");
}

#[test]
fn errors_carry_no_bound_values() {
    let (_db, pool) = setup("no_values", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    let err = pool
        .with_org(a, |s| {
            s.execute(s.insert(
                customers::table,
                (
                    customers::name.eq("dup"),
                    customers::email.eq("alice@example.com"),
                ),
            ))
        })
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("unique violation"), "{text}");
    assert!(text.contains("customers_org_id_email_key"), "{text}");
    assert!(!text.contains("alice@example.com"), "{text}");
    let err = pool
        .with_org(a, |s| {
            let bad = diesel::dsl::sql::<Bool>("org_id = ")
                .bind::<Text, _>("secret-token")
                .sql("::uuid");
            s.load::<Uuid, _>(s.query(customers::table).filter(bad).select(customers::id))
        })
        .unwrap_err();
    assert!(!err.to_string().contains("secret-token"), "{err}");
}

#[test]
fn a_like_pattern_ending_with_the_escape_character_is_refused_before_it_is_sent() {
    let (_db, pool) = setup("like_escape_refused", 1);
    let (a, _) = org_with_customer(&pool, "A", "alice");
    // Such a pattern fails on exactly the rows that match what comes before it, and PostgreSQL
    // may test other orgs' rows with it before the org predicate when RLS is bypassed: an
    // oracle on their names, one prefix at a time. The check sees the bind's value.
    let search = |pattern: &'static str| {
        pool.with_org(a, |s| {
            s.load::<Uuid, _>(
                s.query(customers::table)
                    .filter(customers::name.like(pattern))
                    .select(customers::id),
            )
        })
    };
    let err = search("ali\\").unwrap_err();
    assert!(
        matches!(&err, TenantError::Unscoped(tenant_core::Violation::MayRunBeforeOrgPredicate { condition }) if condition.starts_with("a LIKE pattern ($2) ending with the escape character")),
        "{err:?}"
    );
    // An escaped backslash, and ordinary patterns, pass.
    assert_eq!(search("ali\\\\").unwrap().len(), 0);
    assert_eq!(search("ali%").unwrap().len(), 1);
}
