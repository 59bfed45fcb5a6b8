//! Per-org export, purge and restore against the real server: the round trip gives back every
//! table of the org exactly, the other org is never touched, and each bad file or conflicting
//! restore is refused with nothing written.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use diesel::connection::SimpleConnection;
use diesel::{QueryableByName, RunQueryDsl};
use tenant_core::operator::access_log;
use tenant_core::{OrgContext, OrgId};
use tenant_ops::{OpsError, export, purge, restore};
use tenant_testkit::{TestDb, roles};

const A: &str = "00000000-0000-4000-8000-00000000000a";
const B: &str = "00000000-0000-4000-8000-00000000000b";

/// The example schema with `n` customers, deals, proposals and invoices for each of A and B.
fn example(hint: &str, n: usize) -> TestDb {
    let db = tenant_testkit::story::signed(hint);
    let mut sql = String::new();
    for (org, tag) in [(A, "a"), (B, "b")] {
        sql.push_str(&format!(
            "INSERT INTO orgs (id, name) VALUES ('{org}', 'Org {tag}');
             INSERT INTO customers (org_id, name, email)
               SELECT '{org}', 'customer ' || i, '{tag}' || i || '@example.com' FROM generate_series(1, {n}) i;
             INSERT INTO deals (org_id, customer_id, title, amount_cents, currency, stage, closed_on)
               SELECT org_id, id, 'deal of ' || name, 100, 'EUR', 'won', date '2026-11-01' FROM customers WHERE org_id = '{org}';
             INSERT INTO proposals (org_id, customer_id, title, body, total_cents, currency, drafted_by)
               SELECT org_id, id, 'proposal for ' || name, 'it''s a deal', 250, 'USD', 'twin' FROM customers WHERE org_id = '{org}';
             INSERT INTO invoices (org_id, customer_id, deal_id, number, total_cents, currency, due_on)
               SELECT org_id, customer_id, id, 'INV-' || row_number() OVER (), 100, 'EUR', date '2026-12-01' FROM deals WHERE org_id = '{org}';"
        ));
    }
    db.admin().batch_execute(&sql).unwrap();
    db
}

#[derive(QueryableByName)]
struct Digest {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    rows: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    md5: String,
}

/// Row count and checksum of `org`'s rows in every tenant table, read by the admin.
fn org_state(db: &TestDb, org: &str) -> BTreeMap<&'static str, (i64, String)> {
    let mut admin = db.admin();
    [("orgs", "id"), ("customers", "org_id"), ("deals", "org_id"), ("proposals", "org_id"), ("invoices", "org_id")]
        .into_iter()
        .map(|(t, col)| {
            let d: Digest = diesel::sql_query(format!(
                "SELECT count(*) AS rows, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) AS md5 FROM {t} x WHERE {col} = '{org}'"
            ))
            .get_result(&mut admin)
            .unwrap();
            (t, (d.rows, d.md5))
        })
        .collect()
}

fn org(id: &str) -> OrgId {
    id.parse().unwrap()
}

/// The service's org context: the test key, which [`example`] adds to the database.
fn ctx() -> OrgContext {
    OrgContext::Signed(tenant_testkit::story::test_key())
}

#[test]
fn export_purge_restore_gives_every_table_back_and_never_touches_the_other_org() {
    let db = example("ops_roundtrip", 20);
    let (a_before, b_before) = (org_state(&db, A), org_state(&db, B));
    let registry = &two_companies::REGISTRY;

    let exported = export(&db.app_url(), registry, org(A), &ctx()).unwrap();
    let file = exported.to_json();
    assert!(!file.contains(B), "the export of A must hold nothing of B");
    let counts: Vec<(&str, usize)> = exported
        .manifest
        .tables
        .iter()
        .map(|t| (t.name.as_str(), t.rows))
        .collect();
    assert_eq!(
        counts,
        [
            ("orgs", 1),
            ("customers", 20),
            ("deals", 20),
            ("proposals", 20),
            ("invoices", 20)
        ]
    );

    let receipt = purge(
        &db.url_as(roles::OPERATOR),
        registry,
        org(A),
        "OPS-77",
        "customer left, contract ended",
    )
    .unwrap();
    assert_eq!(
        receipt.tables,
        [
            ("invoices".to_owned(), 20),
            ("proposals".to_owned(), 20),
            ("deals".to_owned(), 20),
            ("customers".to_owned(), 20),
            ("orgs".to_owned(), 1)
        ]
    );
    assert!(org_state(&db, A).values().all(|(rows, _)| *rows == 0));
    assert_eq!(org_state(&db, B), b_before);
    let log = access_log(&db.admin_url(), org(A), None).unwrap();
    let events: Vec<&str> = log.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(events, ["granted", "entered", "purged", "closed"]);
    assert_eq!(log[0].ticket.as_deref(), Some("OPS-77"));
    assert_eq!(log[0].mode.as_deref(), Some("write"));
    assert!(
        log[2]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("\"total\":81"),
        "{:?}",
        log[2].detail
    );
    // The postmortem report says who, why, with which ticket, and that it was a write.
    let report = tenant_ops::AccessReport::new(A, None, &log);
    assert_eq!(report.accesses.len(), 1);
    let md = report.markdown();
    assert!(
        md.contains(&format!(
            "| {} | OPS-77 | purge: customer left, contract ended | write |",
            roles::OPERATOR
        )),
        "{md}"
    );
    assert!(report.accesses[0].duration_s.is_some_and(|s| s >= 0.0));

    let restored = restore(&db.app_url(), registry, &file, false, &ctx()).unwrap();
    assert_eq!(restored.total(), 81);
    assert_eq!(org_state(&db, A), a_before);
    assert_eq!(org_state(&db, B), b_before);
    // Exporting again gives the same checksums: nothing changed on the way.
    let again = export(&db.app_url(), registry, org(A), &ctx()).unwrap();
    assert_eq!(again.manifest.tables, exported.manifest.tables);
}

#[test]
fn a_bad_file_a_different_schema_or_existing_rows_are_refused_with_nothing_written() {
    let db = example("ops_refusals", 3);
    let registry = &two_companies::REGISTRY;
    let file = export(&db.app_url(), registry, org(A), &ctx())
        .unwrap()
        .to_json();
    let a_before = org_state(&db, A);

    // The org still has its rows: refused whole, nothing written.
    let err = restore(&db.app_url(), registry, &file, false, &ctx()).unwrap_err();
    assert!(
        matches!(&err, OpsError::Conflict { table, rows: 3, .. } if table == "invoices"),
        "{err}"
    );
    assert!(err.to_string().contains("pass --replace"), "{err}");
    assert_eq!(org_state(&db, A), a_before);

    // A changed value: the checksum catches it.
    let tampered = file.replacen("customer 1", "customer X", 1);
    let err = restore(&db.app_url(), registry, &tampered, true, &ctx()).unwrap_err();
    assert!(
        matches!(&err, OpsError::InvalidFile(why) if why.contains("customers: the rows do not match")),
        "{err}"
    );
    assert_eq!(org_state(&db, A), a_before);

    // A database of another shape.
    let other = example("ops_other_schema", 1);
    other
        .admin()
        .batch_execute("ALTER TABLE deals ADD COLUMN probability integer")
        .unwrap();
    let err = restore(&other.app_url(), registry, &file, true, &ctx()).unwrap_err();
    assert!(matches!(err, OpsError::SchemaMismatch { .. }), "{err}");

    // With --replace, the org's rows become the file's.
    db.admin()
        .batch_execute(&format!(
            "UPDATE customers SET name = 'renamed' WHERE org_id = '{A}'"
        ))
        .unwrap();
    let receipt = restore(&db.app_url(), registry, &file, true, &ctx()).unwrap();
    assert_eq!(receipt.replaced.iter().map(|(_, n)| n).sum::<u64>(), 13);
    assert_eq!(org_state(&db, A), a_before);
}

#[test]
fn an_org_restores_into_another_database_with_the_same_schema() {
    let source = example("ops_source", 5);
    let registry = &two_companies::REGISTRY;
    let file = export(&source.app_url(), registry, org(A), &ctx())
        .unwrap()
        .to_json();
    let target = TestDb::new("ops_target");
    two_companies::migrate(&target.admin_url()).unwrap();
    // One service key serves both databases.
    target.add_test_context_key();
    restore(&target.app_url(), registry, &file, false, &ctx()).unwrap();
    assert_eq!(org_state(&target, A), org_state(&source, A));
    assert!(org_state(&target, B).values().all(|(rows, _)| *rows == 0));
}

#[test]
fn a_purge_without_a_valid_ticket_deletes_nothing() {
    let db = example("ops_purge_refused", 2);
    let before = org_state(&db, A);
    let err = purge(
        &db.url_as(roles::OPERATOR),
        &two_companies::REGISTRY,
        org(A),
        "no ticket",
        "customer left",
    )
    .unwrap_err();
    assert!(err.to_string().contains("malformed ticket"), "{err}");
    assert_eq!(org_state(&db, A), before);
    // A reason too short to say anything, even with the prefix the log adds to it.
    let err = purge(
        &db.url_as(roles::OPERATOR),
        &two_companies::REGISTRY,
        org(A),
        "OPS-1",
        "abc",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the purge's reason has 3 characters: say why in at least 10 (it is logged with the grant and the receipt)"
    );
    assert_eq!(org_state(&db, A), before);
}

#[test]
fn garbage_huge_or_hostile_files_are_refused_by_name_with_nothing_written() {
    let db = example("ops_garbage", 2);
    let registry = &two_companies::REGISTRY;
    let (a_before, b_before) = (org_state(&db, A), org_state(&db, B));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let huge = "x".repeat(5 << 20);
    let wrong_version = r#"{"format": "tenant-safe/org-export", "version": 999}"#;
    for (file, says) in [
        ("", "not an export file"),
        ("   ", "not an export file"),
        ("null", "not an export file"),
        ("{}", "not an export file"),
        ("[]", "not an export file"),
        (deep.as_str(), "not an export file"),
        (huge.as_str(), "not an export file"),
        (wrong_version, "version 999 is not supported"),
    ] {
        let err = restore(&db.app_url(), registry, file, true, &ctx()).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, OpsError::InvalidFile(_)) && message.contains(says),
            "{:.40?}: {message}",
            file
        );
        assert!(message.len() < 1000, "the error does not echo the file");
    }
    assert_eq!(
        (org_state(&db, A), org_state(&db, B)),
        (a_before.clone(), b_before.clone())
    );

    // A crafted file, consistent with its own checksums, naming a table that is not a tenant
    // table: refused before any statement names it (with --replace it would have been emptied).
    db.admin()
        .batch_execute(&format!(
            "CREATE TABLE app_notes (org_id uuid, note text);
             INSERT INTO app_notes VALUES ('{A}', 'keep'), ('{B}', 'keep');
             GRANT SELECT, INSERT, UPDATE, DELETE ON app_notes TO {app};
             -- A sequence is not transactional: it shows a DELETE that was rolled back.
             CREATE SEQUENCE app_notes_deletes;
             CREATE FUNCTION app_notes_deleted() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
               AS $$ BEGIN PERFORM nextval('app_notes_deletes'); RETURN NULL; END $$;
             CREATE TRIGGER app_notes_deleted AFTER DELETE ON app_notes
               FOR EACH STATEMENT EXECUTE FUNCTION app_notes_deleted();",
            app = roles::APP
        ))
        .unwrap();
    let file = export(&db.app_url(), registry, org(A), &ctx())
        .unwrap()
        .to_json();
    let mut doc: serde_json::Value = serde_json::from_str(&file).unwrap();
    let rows = vec![serde_json::json!({"org_id": A, "note": "x\"); DELETE FROM app_notes; --"})];
    doc["manifest"]["tables"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "app_notes", "org_column": "org_id", "rows": 1,
            "sha256": tenant_ops::format::rows_digest(&rows),
        }));
    doc["data"]["app_notes"] = serde_json::Value::Array(rows);
    let err = restore(&db.app_url(), registry, &doc.to_string(), true, &ctx()).unwrap_err();
    assert!(
        matches!(&err, OpsError::InvalidFile(m) if m.contains("app_notes is not a tenant table")),
        "{err}"
    );
    let notes: i64 = diesel::sql_query("SELECT count(*) AS rows, '' AS md5 FROM app_notes")
        .get_result::<Digest>(&mut db.admin())
        .unwrap()
        .rows;
    assert_eq!(notes, 2);
    let deletes: i64 = diesel::sql_query(
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS rows, '' AS md5 FROM app_notes_deletes",
    )
    .get_result::<Digest>(&mut db.admin())
    .unwrap()
    .rows;
    assert_eq!(
        deletes, 0,
        "no DELETE was ever sent to app_notes, not even rolled back"
    );
    assert_eq!((org_state(&db, A), org_state(&db, B)), (a_before, b_before));
}

#[test]
fn every_operation_and_the_probe_refuse_an_empty_or_hostile_url_by_name() {
    let registry = &two_companies::REGISTRY;
    for url in [
        "",
        "postgres://x'; DROP TABLE orgs; --@/db?host=/nonexistent",
    ] {
        let says = |message: String| {
            assert!(
                message.contains("the database URL is empty") || message.contains("/nonexistent"),
                "{url:?}: {message}"
            );
        };
        says(
            export(url, registry, org(A), &ctx())
                .unwrap_err()
                .to_string(),
        );
        says(
            purge(url, registry, org(A), "OPS-1", "a reason long enough")
                .unwrap_err()
                .to_string(),
        );
        let mut options = tenant_probe::ProbeOptions::new(url, registry, ctx());
        options.progress = false;
        says(tenant_probe::run(&options).unwrap_err().to_string());
    }
}

#[test]
fn a_restore_with_a_seal_key_takes_only_a_file_sealed_by_it() {
    use tenant_ops::{SealKey, restore_sealed};
    let db = example("ops_sealed", 2);
    let registry = &two_companies::REGISTRY;
    let key = SealKey::new("ops1", &[0x33; 32]).unwrap();
    let plain = export(&db.app_url(), registry, org(A), &ctx())
        .unwrap()
        .to_json();
    let sealed = key.seal(&plain).unwrap();
    let before = (org_state(&db, A), org_state(&db, B));
    // A file made for B out of A's export: consistent with its own checksums, so a plain
    // restore would take it; the seal does not.
    let mut crafted: serde_json::Value = serde_json::from_str(&sealed).unwrap();
    crafted["manifest"]["org"] = serde_json::json!(B);
    for (what, file, says) in [
        ("unsealed", plain.clone(), "not sealed"),
        (
            "another org",
            crafted.to_string(),
            "changed after it was sealed",
        ),
        (
            "another key",
            SealKey::new("ops2", &[0x33; 32])
                .unwrap()
                .seal(&plain)
                .unwrap(),
            "sealed by key \"ops2\", not by key ops1",
        ),
    ] {
        let err = restore_sealed(&db.app_url(), registry, &file, true, &key, &ctx()).unwrap_err();
        assert!(
            matches!(&err, OpsError::Seal(m) if m.contains(says)),
            "{what}: {err}"
        );
    }
    assert_eq!((org_state(&db, A), org_state(&db, B)), before);
    // The sealed file goes back in.
    let receipt = restore_sealed(&db.app_url(), registry, &sealed, true, &key, &ctx()).unwrap();
    assert_eq!(receipt.action, "restored");
    assert_eq!((org_state(&db, A), org_state(&db, B)), before);
}

#[test]
fn an_export_that_reads_no_row_is_an_error_and_writes_nothing() {
    let db = example("ops_nothing", 2);
    let registry = &two_companies::REGISTRY;
    // A mistyped org id: a file of zero rows would pass for a backup of it.
    let missing = "00000000-0000-4000-8000-0000000000ff";
    let err = export(&db.app_url(), registry, org(missing), &ctx()).unwrap_err();
    assert!(
        matches!(&err, OpsError::NothingExported { org } if org == missing),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was written"), "{err}");
}

#[test]
fn an_export_of_a_signed_database_without_its_key_is_refused_naming_the_fix() {
    let db = tenant_testkit::story::signed("ops_signed_no_key");
    db.admin()
        .batch_execute(&format!(
            "INSERT INTO orgs (id, name) VALUES ('{A}', 'Org a'); \
             INSERT INTO customers (org_id, name, email) VALUES ('{A}', 'alice', 'a@example.com');"
        ))
        .unwrap();
    // Before, this export read nothing (no token, no rows) and wrote a checksummed file of
    // zero rows.
    let err = export(
        &db.app_url(),
        &two_companies::REGISTRY,
        org(A),
        &OrgContext::TrustEveryStatement,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("OrgContext::TrustEveryStatement, so it sends no token")
            && err.to_string().contains("pass the service's ContextKey"),
        "{err}"
    );
    // With the service's key, the round trip works in the signed mode.
    let exported = export(&db.app_url(), &two_companies::REGISTRY, org(A), &ctx()).unwrap();
    let rows: Vec<(&str, usize)> = exported
        .manifest
        .tables
        .iter()
        .map(|t| (t.name.as_str(), t.rows))
        .collect();
    assert_eq!(
        rows,
        [
            ("orgs", 1),
            ("customers", 1),
            ("deals", 0),
            ("proposals", 0),
            ("invoices", 0)
        ]
    );
    let receipt = restore(
        &db.app_url(),
        &two_companies::REGISTRY,
        &exported.to_json(),
        true,
        &ctx(),
    )
    .unwrap();
    assert_eq!(receipt.total(), 2);
}
