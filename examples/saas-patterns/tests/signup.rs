//! Pattern 1, sign-up, on a real server: the org and its first rows are one transaction of the
//! application role; a sign-up that fails half-way leaves nothing; a sign-up cannot be made to
//! write into an existing org. Every assertion on what exists is counted by the admin role,
//! outside row-level security.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::NaiveDate;
use diesel::prelude::*;
use saas_patterns::schema::{members, orgs};
use saas_patterns::search::search_documents;
use saas_patterns::signup::{SignUp, SignUpError, sign_up, sign_up_as};
use tenant_core::{OrgId, TenantError};

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 5).unwrap()
}

fn request<'a>(org_name: &'a str, owner_email: &'a str) -> SignUp<'a> {
    SignUp {
        org_name,
        owner_email,
        plan: "team",
    }
}

#[test]
fn a_sign_up_creates_the_org_and_its_first_rows_in_one_transaction_of_the_new_org() {
    let db = common::database("signup_creates");
    let pool = common::pool(&db, 2);
    let mut admin = db.admin();

    let acme = sign_up(&pool, &request("Acme", "ada@acme.example"), today()).unwrap();

    for (table, rows) in [
        ("orgs", 1),
        ("members", 1),
        ("activity", 1),
        ("documents", 1),
        ("document_attributes", 1),
    ] {
        assert_eq!(
            common::rows_of(&mut admin, table, acme.org),
            rows,
            "{table}"
        );
    }
    assert!(common::rows_of(&mut admin, "document_words", acme.org) > 3);
    // The org row as written: the plan read from the global table, its trial from it.
    let (name, plan, trial): (String, String, Option<NaiveDate>) = orgs::table
        .find(acme.org.as_uuid())
        .select((orgs::name, orgs::plan, orgs::trial_ends_on))
        .get_result(&mut admin)
        .unwrap();
    assert_eq!(
        (name.as_str(), plan.as_str(), trial),
        ("Acme", "team", NaiveDate::from_ymd_opt(2026, 12, 19))
    );
    let (owner_org, role): (uuid::Uuid, String) = members::table
        .filter(members::id.eq(acme.owner))
        .select((members::org_id, members::role))
        .get_result(&mut admin)
        .unwrap();
    assert_eq!((owner_org, role.as_str()), (acme.org.as_uuid(), "owner"));

    // The new org works at once through its own handle, search terms included, and a second
    // org sees none of it.
    let found = pool
        .with_org(acme.org, |s| search_documents(s, "getting started", 10))
        .unwrap();
    assert_eq!(
        found.iter().map(|f| f.id).collect::<Vec<_>>(),
        [acme.welcome]
    );
    let globex = sign_up(&pool, &request("Globex", "gil@globex.example"), today()).unwrap();
    assert_ne!(globex.org, acme.org);
    let seen_by_globex: Vec<uuid::Uuid> = pool
        .with_org(globex.org, |s| {
            s.load(s.query(orgs::table).select(orgs::id))
        })
        .unwrap();
    assert_eq!(seen_by_globex, [globex.org.as_uuid()]);
    let found = pool
        .with_org(globex.org, |s| search_documents(s, "acme", 10))
        .unwrap();
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn a_sign_up_that_fails_half_way_leaves_no_org_and_no_row() {
    let db = common::database("signup_half_way");
    let pool = common::pool(&db, 1);
    let mut admin = db.admin();
    sign_up(&pool, &request("Acme", "ada@acme.example"), today()).unwrap();
    let before = common::all_rows(&mut admin);

    // The org row is written first; the owner's address is then refused by `members`' CHECK,
    // so the failure comes after the org row and before everything else.
    let org = OrgId::new_random();
    let err = sign_up_as(&pool, org, &request("Initech", "not an address"), today()).unwrap_err();
    match &err {
        SignUpError::Tenant(TenantError::Database(e)) => {
            assert_eq!(e.kind, "check violation", "{e}");
            assert_eq!(e.constraint.as_deref(), Some("members_email_check"), "{e}");
        }
        other => panic!("expected the members CHECK to refuse the owner, got {other:?}"),
    }
    assert!(
        !err.to_string().contains("not an address"),
        "errors carry no values: {err}"
    );
    for table in common::TENANT_TABLES {
        assert_eq!(common::rows_of(&mut admin, table, org), 0, "{table}");
    }
    assert_eq!(common::all_rows(&mut admin), before);

    // Refused before the first write: an unknown plan.
    let err = sign_up_as(
        &pool,
        org,
        &SignUp {
            plan: "platinum",
            ..request("Initech", "ivy@initech.example")
        },
        today(),
    )
    .unwrap_err();
    assert!(
        matches!(err, SignUpError::UnknownPlan(ref p) if p == "platinum"),
        "{err:?}"
    );
    assert_eq!(common::all_rows(&mut admin), before);

    // The same id is free for the sign-up that succeeds afterwards: nothing claimed it.
    let initech = sign_up_as(
        &pool,
        org,
        &request("Initech", "ivy@initech.example"),
        today(),
    )
    .unwrap();
    assert_eq!(initech.org, org);
}

/// The attack: ordinary code that knows an existing org's id (it is in every URL of that org)
/// signs up with it, hoping to become a member of that org. And a sign-up that copies the
/// org's name and owner.
#[test]
fn a_sign_up_cannot_write_into_an_existing_org() {
    let db = common::database("signup_attack");
    let pool = common::pool(&db, 1);
    let mut admin = db.admin();
    let victim = sign_up(&pool, &request("Acme", "ada@acme.example"), today()).unwrap();
    let victim_rows: Vec<i64> = common::TENANT_TABLES
        .iter()
        .map(|t| common::rows_of(&mut admin, t, victim.org))
        .collect();

    let err = sign_up_as(
        &pool,
        victim.org,
        &SignUp {
            org_name: "Acme (new owner)",
            owner_email: "mallory@evil.example",
            plan: "business",
        },
        today(),
    )
    .unwrap_err();
    assert!(matches!(err, SignUpError::OrgExists), "{err:?}");

    let copycat = sign_up(&pool, &request("Acme", "ada@acme.example"), today()).unwrap();
    assert_ne!(copycat.org, victim.org);

    // Nothing crossed: the victim's rows are the ones it had, its org row is unchanged, the
    // attacker is a member nowhere, and the copycat's rows are all in the copycat's org.
    let after: Vec<i64> = common::TENANT_TABLES
        .iter()
        .map(|t| common::rows_of(&mut admin, t, victim.org))
        .collect();
    assert_eq!(after, victim_rows);
    let (name, plan): (String, String) = orgs::table
        .find(victim.org.as_uuid())
        .select((orgs::name, orgs::plan))
        .get_result(&mut admin)
        .unwrap();
    assert_eq!((name.as_str(), plan.as_str()), ("Acme", "team"));
    let mallory: i64 = members::table
        .filter(members::email.eq("mallory@evil.example"))
        .count()
        .get_result(&mut admin)
        .unwrap();
    assert_eq!(mallory, 0);
    let copycat_owner_org: uuid::Uuid = members::table
        .filter(members::id.eq(copycat.owner))
        .select(members::org_id)
        .get_result(&mut admin)
        .unwrap();
    assert_eq!(copycat_owner_org, copycat.org.as_uuid());
}

/// Two sign-ups that race for one id (a double submit of a form that minted it): exactly one
/// org, with one owner. Whatever the interleaving, the second claim meets the first's row (at
/// once, or when the first commits) and is refused.
#[test]
fn two_sign_ups_racing_for_one_id_make_one_org() {
    let db = common::database("signup_race");
    let pool = common::pool(&db, 2);
    let mut admin = db.admin();
    let org = OrgId::new_random();
    let outcomes: Vec<Result<_, SignUpError>> = std::thread::scope(|scope| {
        let runs: Vec<_> = ["first@acme.example", "second@acme.example"]
            .into_iter()
            .map(|email| scope.spawn(|| sign_up_as(&pool, org, &request("Acme", email), today())))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let created = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(SignUpError::OrgExists)))
        .count();
    assert_eq!((created, refused), (1, 1), "{outcomes:?}");
    assert_eq!(common::rows_of(&mut admin, "orgs", org), 1);
    assert_eq!(common::rows_of(&mut admin, "members", org), 1);
    assert_eq!(common::rows_of(&mut admin, "documents", org), 1);
}
