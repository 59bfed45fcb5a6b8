//! The demo's story as a test: two orgs on one pool at the same time, each sees only its own
//! rows, proved from outside row-level security.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::NaiveDate;
use diesel::prelude::*;
use tenant_core::TenantPool;
use two_companies::schema::{deals, invoices, proposals};
use two_companies::story;

#[test]
fn the_twin_and_the_chief_of_staff_see_only_their_own_org() {
    let db = tenant_testkit::story::signed("story");
    let pool = TenantPool::builder(
        db.app_url(),
        &two_companies::REGISTRY,
        tenant_testkit::story::test_key(),
    )
    .max_size(4)
    .build()
    .unwrap();
    let today = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
    let northwind = story::seed_org(&pool, "Northwind", 0, today).unwrap();
    let globex = story::seed_org(&pool, "Globex", 1, today).unwrap();

    let (proposal, overdue) = std::thread::scope(|s| {
        let twin = s.spawn(|| story::digital_twin_draft(&pool, northwind, today));
        let chief = s.spawn(|| story::chief_of_staff_overdue(&pool, globex, today));
        (
            twin.join().unwrap().unwrap().unwrap(),
            chief.join().unwrap().unwrap(),
        )
    });

    // Both orgs won four deals last quarter; the twin saw Northwind's four only.
    assert_eq!(proposal.deals.len(), 4);
    assert!(
        proposal
            .deals
            .iter()
            .all(|d| d.org_id == northwind.as_uuid())
    );
    assert!(
        proposal
            .deals
            .iter()
            .all(|d| d.title.starts_with("Northwind"))
    );
    assert_eq!(proposal.currency, "EUR");
    // Globex's overdue invoices: unpaid (odd i) and due before today (i < 5): 1 and 3.
    let numbers: Vec<&str> = overdue.iter().map(|i| i.number.as_str()).collect();
    assert_eq!(numbers, ["INV-1001", "INV-1003"]);
    assert!(overdue.iter().all(|i| i.org_id == globex.as_uuid()));

    // From outside RLS: the proposal landed in Northwind, and Globex has its own won deals
    // last quarter that the twin did not see.
    let mut admin = db.admin();
    let proposal_org: uuid::Uuid = proposals::table
        .find(proposal.proposal_id)
        .select(proposals::org_id)
        .get_result(&mut admin)
        .unwrap();
    assert_eq!(proposal_org, northwind.as_uuid());
    let globex_won: i64 = deals::table
        .filter(deals::org_id.eq(globex.as_uuid()))
        .filter(deals::stage.eq("won"))
        .count()
        .get_result(&mut admin)
        .unwrap();
    assert_eq!(globex_won, 4);
    let northwind_overdue: i64 = invoices::table
        .filter(invoices::org_id.eq(northwind.as_uuid()))
        .filter(invoices::paid_on.is_null())
        .filter(invoices::due_on.lt(today))
        .count()
        .get_result(&mut admin)
        .unwrap();
    assert_eq!(
        northwind_overdue, 2,
        "the chief of staff did not see Northwind's overdue invoices"
    );
}
