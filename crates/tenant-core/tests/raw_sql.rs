//! `tenant_sql!` on the real server: checked at compile time, the org bound by the library,
//! and checked again before it is sent.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Text};
use tenant_core::{TenantError, TenantSql, Violation, tenant_sql};
use two_companies::schema::invoices;

#[derive(QueryableByName, Debug, PartialEq)]
struct Overdue {
    #[diesel(sql_type = Text)]
    number: String,
    #[diesel(sql_type = Text)]
    customer: String,
}

#[test]
fn tenant_sql_reads_only_the_session_orgs_rows_with_the_org_bound_by_the_library() {
    let (_db, pool) = common::setup("raw_sql_read", 2);
    let today = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
    let (a, alice) = common::org_with_customer(&pool, "A", "alice");
    let (b, bob) = common::org_with_customer(&pool, "B", "bob");
    for (org, customer, n) in [(a, alice, "A-1"), (b, bob, "B-1")] {
        pool.with_org(org, |s| {
            s.execute(s.insert(
                invoices::table,
                (
                    invoices::customer_id.eq(customer),
                    invoices::number.eq(n),
                    invoices::total_cents.eq(10_i64),
                    invoices::currency.eq("EUR"),
                    invoices::due_on.eq(today.pred_opt().unwrap()),
                ),
            ))
        })
        .unwrap();
    }
    let rows: Vec<Overdue> = pool
        .with_org(a, |s| {
            s.load_sql(tenant_sql!(in two_companies::schema;
                "SELECT i.number, c.name AS customer \
                 FROM invoices i JOIN customers c ON c.id = i.customer_id AND c.org_id = $org \
                 WHERE i.org_id = $org AND i.paid_on IS NULL AND i.due_on < $1 \
                 ORDER BY i.due_on",
                Date: today
            ))
        })
        .unwrap();
    assert_eq!(
        rows,
        [Overdue {
            number: "A-1".into(),
            customer: "alice".into()
        }]
    );

    let paid = pool
        .with_org(b, |s| {
            s.execute_sql(tenant_sql!(in two_companies::schema;
                "UPDATE invoices SET paid_on = $1 WHERE org_id = $org AND number = $2",
                Date: today,
                Text: "B-1"
            ))
        })
        .unwrap();
    assert_eq!(paid, 1);
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let unpaid: Vec<Count> = pool
        .with_org(a, |s| {
            s.load_sql(tenant_sql!(in two_companies::schema;
                "SELECT count(*) AS n FROM invoices WHERE org_id = $org AND paid_on IS NULL"
            ))
        })
        .unwrap();
    assert_eq!(unpaid[0].n, 1, "B's update did not touch A's invoice");
}

#[test]
fn a_hand_built_statement_that_skips_the_macro_is_still_refused_before_it_is_sent() {
    let (_db, pool) = common::setup("raw_sql_bypass", 1);
    let (a, _) = common::org_with_customer(&pool, "A", "alice");
    let forged = TenantSql::new("SELECT number FROM invoices");
    let err = pool
        .with_org(a, |s| s.load_sql::<Overdue>(forged))
        .unwrap_err();
    assert!(
        matches!(&err, TenantError::Unscoped(Violation::MissingOrgPredicate { table }) if table == "invoices"),
        "{err:?}"
    );
}

#[test]
fn a_hand_built_statement_with_a_session_change_is_refused_at_construction() {
    let (_db, pool) = common::setup("raw_sql_bypass_setting", 1);
    let (a, _) = common::org_with_customer(&pool, "A", "alice");
    // The text check runs in the constructor, before the handle sees the statement.
    let forged = TenantSql::new("SELECT set_config('tenant.org_id', $1, true) AS number")
        .bind::<diesel::sql_types::Text, _>("x");
    assert!(
        format!("{forged:?}").contains("ChangesSessionSetting"),
        "{forged:?}"
    );
    let err = pool
        .with_org(a, |s| s.load_sql::<Overdue>(forged))
        .unwrap_err();
    assert!(
        matches!(&err, TenantError::Unscoped(Violation::ChangesSessionSetting(f)) if f == "set_config"),
        "{err:?}"
    );
}
