//! Every query shape a service needs, through `OrgScoped`, on the real server: each test checks
//! the result and that the SQL carries the org predicate for every tenant table it touches.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::NaiveDate;
use diesel::dsl::{count_star, max, min};
use diesel::prelude::*;
use tenant_core::excluded;
use tenant_core::{OrgId, OrgScoped, Pooled, TenantChangeset, TenantError, TenantPool};
use two_companies::schema::{currencies, customers, deals, invoices};
use uuid::Uuid;

/// Asserts that `sql` constrains each of `tables` by `"t"."org_id" = $n`.
fn assert_scoped(sql: &str, tables: &[&str]) {
    for t in tables {
        assert!(
            sql.contains(&format!(r#""{t}"."org_id" = $"#)),
            "{t} has no org predicate in:\n{sql}"
        );
    }
}

struct Fixture {
    _db: tenant_testkit::TestDb,
    pool: TenantPool,
    a: OrgId,
    b: OrgId,
    alice: Uuid,
    bob: Uuid,
}

/// Two orgs, each with one customer and three deals (amounts 100, 200, 300 + org offset).
fn fixture(hint: &str) -> Fixture {
    let (db, pool) = common::setup(hint, 2);
    let (a, alice) = common::org_with_customer(&pool, "A", "alice");
    let (b, bob) = common::org_with_customer(&pool, "B", "bob");
    for (org, customer, offset) in [(a, alice, 0_i64), (b, bob, 1_000)] {
        pool.with_org(org, |s| {
            for (i, stage) in ["won", "won", "lost"].iter().enumerate() {
                s.execute(s.insert(
                    deals::table,
                    (
                        deals::customer_id.eq(customer),
                        deals::title.eq(format!("deal {i}")),
                        deals::amount_cents.eq(100 * (i as i64 + 1) + offset),
                        deals::currency.eq("EUR"),
                        deals::stage.eq(*stage),
                    ),
                ))?;
            }
            Ok::<_, TenantError>(())
        })
        .unwrap();
    }
    Fixture {
        _db: db,
        pool,
        a,
        b,
        alice,
        bob,
    }
}

fn in_org<T>(
    f: &Fixture,
    org: OrgId,
    work: impl FnOnce(&mut OrgScoped<Pooled>) -> Result<T, TenantError>,
) -> T {
    f.pool.with_org(org, work).unwrap()
}

#[test]
fn filter_with_or_inside_one_filter_order_limit_offset_distinct() {
    let f = fixture("shape_select");
    let titles: Vec<String> = in_org(&f, f.a, |s| {
        let q = s
            .query(deals::table)
            .filter(deals::stage.eq("lost").or(deals::amount_cents.gt(150)))
            .order(deals::amount_cents.desc())
            .limit(5)
            .offset(0)
            .select(deals::title);
        assert_scoped(&q.debug_sql(), &["deals"]);
        s.load(q)
    });
    assert_eq!(titles, ["deal 2", "deal 1"]);
    let stages: Vec<String> = in_org(&f, f.a, |s| {
        s.load(
            s.query(deals::table)
                .select(deals::stage)
                .distinct()
                .order(deals::stage),
        )
    });
    assert_eq!(stages, ["lost", "won"]);
}

#[test]
fn count_aggregates_group_by_and_having() {
    let f = fixture("shape_aggregates");
    let (n, low, top): (i64, Option<i64>, Option<i64>) = in_org(&f, f.b, |s| {
        let n = s.get_result(s.query(deals::table).count())?;
        let low = s.get_result(s.query(deals::table).select(min(deals::amount_cents)))?;
        let top = s.get_result(s.query(deals::table).select(max(deals::amount_cents)))?;
        Ok((n, low, top))
    });
    // B's deals are 1,100..1,300; A's (100..300) are not counted.
    assert_eq!((n, low, top), (3, Some(1_100), Some(1_300)));
    let per_stage: Vec<(String, i64)> = in_org(&f, f.a, |s| {
        let q = s
            .query(deals::table)
            .group_by(deals::stage)
            .having(count_star().gt(1))
            .select((deals::stage, count_star()));
        assert_scoped(&q.debug_sql(), &["deals"]);
        s.load(q)
    });
    assert_eq!(per_stage, [("won".to_owned(), 2)]);
}

#[test]
fn exists_pagination_first_get_result_and_optional() {
    let f = fixture("shape_exists");
    in_org(&f, f.a, |s| {
        let any_lost: bool = s.get_result(
            s.query(deals::table)
                .filter(deals::stage.eq("lost"))
                .exists(),
        )?;
        assert!(any_lost);
        let bob_here: bool = s.get_result(
            s.query(customers::table)
                .filter(customers::id.eq(f.bob))
                .exists(),
        )?;
        assert!(!bob_here, "B's customer does not exist for A");
        let page1: Vec<i64> = s.load(
            s.query(deals::table)
                .order(deals::amount_cents)
                .paginate(1, 2)
                .select(deals::amount_cents),
        )?;
        assert_eq!(page1, [300]);
        let first: Option<String> = s.first(
            s.query(deals::table)
                .order(deals::amount_cents)
                .select(deals::title),
        )?;
        assert_eq!(first.as_deref(), Some("deal 0"));
        let none: Option<String> = s.optional(
            s.query(customers::table)
                .filter(customers::id.eq(f.bob))
                .select(customers::name),
        )?;
        assert_eq!(none, None);
        let err = s.get_result::<String, _>(
            s.query(customers::table)
                .filter(customers::id.eq(f.bob))
                .select(customers::name),
        );
        assert!(err.unwrap_err().is_not_found());
        Ok(())
    });
}

#[test]
fn into_boxed_takes_filters_chosen_at_run_time() {
    let f = fixture("shape_boxed");
    let wanted = ["won"];
    let min_amount = Some(150_i64);
    let titles: Vec<String> = in_org(&f, f.a, |s| {
        let mut q = s.query(deals::table).into_boxed();
        for stage in wanted {
            q = q.filter(deals::stage.eq(stage));
        }
        if let Some(min) = min_amount {
            q = q.filter(deals::amount_cents.ge(min));
        }
        let q = q.select(deals::title);
        assert_scoped(&q.debug_sql(), &["deals"]);
        s.load(q)
    });
    assert_eq!(titles, ["deal 1"]);
}

#[test]
fn inner_and_left_joins_put_each_tenant_tables_org_predicate_in_its_on_clause() {
    let f = fixture("shape_joins");
    let rows: Vec<(String, String)> = in_org(&f, f.a, |s| {
        let q = s
            .query(deals::table)
            .inner_join(customers::table)
            .order(deals::title)
            .select((deals::title, customers::name));
        assert_scoped(&q.debug_sql(), &["deals", "customers"]);
        s.load(q)
    });
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|(_, c)| c == "alice"));
    let left: Vec<(String, Option<String>)> = in_org(&f, f.b, |s| {
        let q = s
            .query(deals::table)
            .left_join(customers::table)
            .order(deals::title)
            .select((deals::title, customers::name.nullable()));
        let sql = q.debug_sql();
        assert!(sql.contains("LEFT OUTER JOIN"), "{sql}");
        assert_scoped(&sql, &["deals", "customers"]);
        s.load(q)
    });
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|(_, c)| c.as_deref() == Some("bob")));
}

#[test]
fn a_join_with_a_global_table_adds_no_predicate_for_it() {
    let f = fixture("shape_join_global");
    let rows: Vec<(String, String)> = in_org(&f, f.a, |s| {
        let q = s
            .query(deals::table)
            .inner_join(currencies::table)
            .filter(deals::stage.eq("lost"))
            .select((deals::title, currencies::name));
        let sql = q.debug_sql();
        assert_scoped(&sql, &["deals"]);
        assert!(!sql.contains(r#""currencies"."org_id""#), "{sql}");
        s.load(q)
    });
    assert_eq!(rows, [("deal 2".to_owned(), "Euro".to_owned())]);
}

#[test]
fn scoped_subqueries_in_eq_any_and_exists_keep_their_org_predicate() {
    let f = fixture("shape_subquery");
    let titles: Vec<String> = in_org(&f, f.a, |s| {
        let alices = s
            .query(customers::table)
            .filter(customers::name.eq("alice"))
            .select(customers::id);
        let q = s
            .query(deals::table)
            .filter(deals::customer_id.eq_any(alices.into_subquery()))
            .filter(deals::stage.eq("lost"))
            .select(deals::title);
        assert_scoped(&q.debug_sql(), &["deals", "customers"]);
        s.load(q)
    });
    assert_eq!(titles, ["deal 2"]);
    let with_deals: Vec<String> = in_org(&f, f.b, |s| {
        let has_deal = s
            .query(deals::table)
            .filter(deals::customer_id.eq(customers::id));
        let q = s
            .query(customers::table)
            .filter(has_deal.select(deals::id).into_subquery().exists())
            .select(customers::name);
        let sql = q.debug_sql();
        assert_scoped(&sql, &["customers", "deals"]);
        assert!(sql.contains("EXISTS (SELECT"), "{sql}");
        s.load(q)
    });
    assert_eq!(with_deals, ["bob"]);
}

#[test]
fn a_scoped_single_value_subquery_and_a_diesel_subquery_over_a_global_table() {
    let f = fixture("shape_single_value");
    let rows: Vec<(String, Option<String>)> = in_org(&f, f.a, |s| {
        // The name of the deal's customer, as a correlated scalar subquery.
        let customer_name = s
            .query(customers::table)
            .filter(customers::id.eq(deals::customer_id))
            .select(customers::name)
            .into_subquery()
            .single_value();
        let q = s
            .query(deals::table)
            .select((deals::title, customer_name))
            .order(deals::title);
        let sql = q.debug_sql();
        assert_scoped(&sql, &["deals", "customers"]);
        assert!(sql.contains("LIMIT $"), "{sql}");
        s.load(q)
    });
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.iter()
            .all(|(_, name)| name.as_deref() == Some("alice")),
        "{rows:?}"
    );

    // A subquery over a global table comes from the handle too, without an org predicate.
    let euro_deals: Vec<String> = in_org(&f, f.a, |s| {
        let euro = s
            .read_global(currencies::table)
            .filter(currencies::name.eq("Euro"))
            .select(currencies::code)
            .into_subquery();
        s.load(
            s.query(deals::table)
                .filter(deals::currency.eq_any(euro))
                .select(deals::title)
                .order(deals::title),
        )
    });
    assert_eq!(euro_deals, ["deal 0", "deal 1", "deal 2"]);
}

#[derive(Insertable)]
#[diesel(table_name = customers)]
struct NewCustomer<'a> {
    name: &'a str,
    email: &'a str,
}

#[derive(AsChangeset, TenantChangeset)]
#[diesel(table_name = deals)]
struct DealChanges<'a> {
    title: Option<&'a str>,
    stage: Option<&'a str>,
}

#[test]
fn insert_returning_upsert_update_with_a_changeset_and_returning_delete_returning() {
    let f = fixture("shape_writes");
    in_org(&f, f.a, |s| {
        let ins = s.insert(
            customers::table,
            &NewCustomer {
                name: "carol",
                email: "carol@example.com",
            },
        );
        let (id, org): (Uuid, Uuid) =
            s.get_result(ins.returning((customers::id, customers::org_id)))?;
        assert_eq!(org, f.a.as_uuid());

        // Upsert: the same email again updates the name, within the org.
        let upsert = s
            .insert(
                customers::table,
                &NewCustomer {
                    name: "Carol",
                    email: "carol@example.com",
                },
            )
            .on_conflict((customers::org_id, customers::email))
            .do_update()
            .set(customers::name.eq(excluded(customers::name)));
        assert!(
            upsert.debug_sql().contains("ON CONFLICT"),
            "{}",
            upsert.debug_sql()
        );
        assert_eq!(s.execute(upsert)?, 1);
        let name: String = s.get_result(
            s.query(customers::table)
                .filter(customers::id.eq(id))
                .select(customers::name),
        )?;
        assert_eq!(name, "Carol");
        let nothing = s
            .insert(
                customers::table,
                &NewCustomer {
                    name: "x",
                    email: "carol@example.com",
                },
            )
            .on_conflict((customers::org_id, customers::email))
            .do_nothing();
        assert_eq!(s.execute(nothing)?, 0);

        let changes = DealChanges {
            title: Some("renamed"),
            stage: None,
        };
        let upd = s
            .update(deals::table)
            .filter(deals::stage.eq("lost"))
            .set(&changes);
        assert_scoped(&upd.debug_sql(), &["deals"]);
        let renamed: Vec<String> = s.load(upd.returning(deals::title))?;
        assert_eq!(renamed, ["renamed"]);

        let del = s.delete(deals::table).filter(deals::title.eq("renamed"));
        assert_scoped(&del.debug_sql(), &["deals"]);
        let gone: Vec<i64> = s.load(del.returning(deals::amount_cents))?;
        assert_eq!(gone, [300]);
        Ok(())
    });
    // B saw none of it: still one customer and three deals.
    let (customers_b, deals_b): (i64, i64) = in_org(&f, f.b, |s| {
        Ok((
            s.get_result(s.query(customers::table).count())?,
            s.get_result(s.query(deals::table).count())?,
        ))
    });
    assert_eq!((customers_b, deals_b), (1, 3));
}

#[test]
fn insert_many_sets_the_org_on_every_row_in_one_statement() {
    let f = fixture("shape_insert_many");
    let rows = [
        NewCustomer {
            name: "c1",
            email: "c1@example.com",
        },
        NewCustomer {
            name: "c2",
            email: "c2@example.com",
        },
        NewCustomer {
            name: "c3",
            email: "c3@example.com",
        },
    ];
    let orgs: Vec<Uuid> = in_org(&f, f.b, |s| {
        let q = s.insert_many(customers::table, &rows);
        let sql = q.debug_sql();
        assert!(
            sql.contains("VALUES ($1, $2, $3), ($4, $5, $6), ($7, $8, $9)"),
            "{sql}"
        );
        s.load(q.returning(customers::org_id))
    });
    assert_eq!(orgs, vec![f.b.as_uuid(); 3]);
    let in_a: i64 = in_org(&f, f.a, |s| s.get_result(s.query(customers::table).count()));
    assert_eq!(in_a, 1);
}

#[test]
fn savepoints_roll_back_only_their_own_part() {
    let f = fixture("shape_savepoints");
    in_org(&f, f.a, |s| {
        s.execute(s.insert(
            customers::table,
            &NewCustomer {
                name: "kept",
                email: "kept@example.com",
            },
        ))?;
        // A failing statement inside the savepoint: only its part is undone.
        let inner: Result<(), TenantError> = s.savepoint(|s| {
            s.execute(s.insert(
                customers::table,
                &NewCustomer {
                    name: "lost",
                    email: "lost@example.com",
                },
            ))?;
            s.execute(s.insert(
                customers::table,
                &NewCustomer {
                    name: "dup",
                    email: "alice@example.com",
                },
            ))?;
            Ok(())
        });
        assert!(inner.is_err());
        // Nested savepoints commit with the transaction.
        s.savepoint(|s| {
            s.savepoint(|s| {
                s.execute(s.insert(
                    customers::table,
                    &NewCustomer {
                        name: "nested",
                        email: "n@example.com",
                    },
                ))
            })
        })?;
        Ok(())
    });
    let names: Vec<String> = in_org(&f, f.a, |s| {
        s.load(
            s.query(customers::table)
                .order(customers::name)
                .select(customers::name),
        )
    });
    assert_eq!(names, ["alice", "kept", "nested"]);
}

#[test]
fn a_swallowed_error_inside_a_savepoint_is_reported_not_committed() {
    let f = fixture("shape_savepoint_swallow");
    in_org(&f, f.a, |s| {
        let result: Result<(), TenantError> = s.savepoint(|s| {
            let _ = s.execute(s.insert(
                customers::table,
                &NewCustomer {
                    name: "dup",
                    email: "alice@example.com",
                },
            ));
            Ok(())
        });
        assert!(
            matches!(result, Err(TenantError::TransactionAborted)),
            "{result:?}"
        );
        // The outer transaction goes on.
        s.execute(s.insert(
            customers::table,
            &NewCustomer {
                name: "after",
                email: "after@example.com",
            },
        ))
    });
    let n: i64 = in_org(&f, f.a, |s| s.get_result(s.query(customers::table).count()));
    assert_eq!(n, 2);
}

#[test]
fn dates_and_nullable_columns_work_through_the_dsl() {
    let f = fixture("shape_dates");
    let due = NaiveDate::from_ymd_opt(2026, 1, 31).unwrap();
    in_org(&f, f.a, |s| {
        s.execute(s.insert(
            invoices::table,
            (
                invoices::customer_id.eq(f.alice),
                invoices::number.eq("INV-1"),
                invoices::total_cents.eq(5_i64),
                invoices::currency.eq("EUR"),
                invoices::due_on.eq(due),
            ),
        ))?;
        let unpaid: Vec<NaiveDate> = s.load(
            s.query(invoices::table)
                .filter(invoices::paid_on.is_null())
                .select(invoices::due_on),
        )?;
        assert_eq!(unpaid, [due]);
        Ok(())
    });
}

#[test]
fn a_panic_caught_inside_a_savepoint_leaves_a_handle_that_refuses_to_commit() {
    let f = fixture("shape_savepoint_panic");
    let before: i64 = in_org(&f, f.a, |s| s.get_result(s.query(customers::table).count()));
    let mut h = f.pool.begin(f.a).unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: Result<(), TenantError> = h.savepoint(|s| {
            s.execute(s.insert(
                customers::table,
                (
                    customers::name.eq("in the savepoint"),
                    customers::email.eq("sp@example.com"),
                ),
            ))?;
            panic!("a bug in the service");
        });
    }));
    assert!(caught.is_err());
    // The handle says so, and commits nothing (it said Ok before, having only released the
    // savepoint).
    assert!(matches!(h.commit(), Err(TenantError::TransactionAborted)));
    let after: i64 = in_org(&f, f.a, |s| s.get_result(s.query(customers::table).count()));
    assert_eq!(after, before);
}
