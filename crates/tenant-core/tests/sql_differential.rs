//! Differential testing of the SQL scope checker (`tenant-sqlcheck`): any statement it
//! accepts, run for org A, must read and write only A's rows and leave the session's org
//! alone (the harness, `tenant_testkit::differential`, says how each statement is judged:
//! under RLS and bypassing it, rolled back).
//!
//! Statements come from the regression corpus (`fuzz/corpus/sql_differential/`), the fuzz
//! target's minimized corpus (`fuzz/corpus/sql_differential_min/`: plain SQL, or a
//! generator's choices after a 0x01 byte), the libFuzzer corpus of the checker
//! (`fuzz/corpus/sql_check/`, those it accepts), and the generator over the
//! story's tables, seeded: `TENANT_SQLDIFF_CASES` (default 1500) and `TENANT_SQLDIFF_SEED`
//! (default fixed) set the campaign; `cargo xtask soak` runs a longer one with a fresh seed
//! and the fuzz target. A failing statement is written to the regression corpus.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use tenant_sqlcheck::check;
use tenant_testkit::differential::{
    ALLOWED_CALLS, Gen, Harness, REFUSED_CALLS, decode, is_org, tables,
};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn files_in(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let bytes = std::fs::read(e.path()).ok()?;
                    Some((
                        e.file_name().to_string_lossy().into_owned(),
                        decode(&bytes)?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn the_harness_sees_a_statement_that_reads_or_writes_another_org() {
    let mut h = Harness::new("sql_differential");
    for leaking in [
        "SELECT name FROM customers",
        "SELECT c.name FROM customers c WHERE c.org_id = $2",
        "SELECT count(*) FROM deals d WHERE d.org_id = $1 OR true",
        "UPDATE deals d SET title = 'x' WHERE d.org_id = $2 RETURNING d.title",
    ] {
        assert!(h.differs(leaking).is_some(), "not seen: {leaking}");
    }
    // Each way of seeing it, by name.
    let seen = |h: &mut Harness, sql: &str| h.differs(sql).unwrap_or_default();
    assert!(
        seen(&mut h, "SELECT o.name FROM orgs o WHERE o.id = $2")
            .starts_with("another org's rows were read bypassing RLS")
    );
    assert!(
        seen(
            &mut h,
            "SELECT set_config('tenant.org_id', $2::text, true) AS hop"
        )
        .starts_with("the session's org changed under RLS")
    );
    assert_eq!(
        seen(
            &mut h,
            "UPDATE deals d SET title = 'x' WHERE d.org_id <> $1 RETURNING d.id"
        ),
        "rows of another org changed"
    );
    assert!(seen(&mut h, "SELECT count(*) FROM deals").starts_with("under RLS:"));
    // An error only another org's row raises: org A's names are years.
    assert!(
        seen(
            &mut h,
            "SELECT c.name FROM customers c WHERE to_date(c.name, 'YYYY') IS NOT NULL"
        )
        .ends_with("bypassing RLS:\nERROR 22007")
    );
    for confined in [
        "SELECT c.name FROM customers c WHERE c.org_id = $1",
        "UPDATE deals d SET title = 'x' WHERE d.org_id = $1 RETURNING d.title",
        "SELECT code FROM currencies",
        // A conjunct that fails on another org's row, beside the org predicate: PostgreSQL
        // evaluates the cheaper first, and the org predicate (the parameter bare or cast
        // once) is one operator, so the cast never meets another org's name.
        "SELECT c.name FROM customers c WHERE (CASE WHEN c.org_id <> $1 THEN c.name::int4 ELSE 0 END) = 0 AND c.org_id = $1",
        "SELECT c.name FROM customers c WHERE (CASE WHEN c.org_id <> $1 THEN c.name::int4 ELSE 0 END) = 0 AND c.org_id = $1::uuid",
    ] {
        assert_eq!(h.differs(confined), None, "{confined}");
    }
}

#[test]
fn every_statement_the_checker_accepts_reads_and_writes_only_the_session_org() {
    let mut h = Harness::new("sql_differential");
    let tables = tables();
    let corpus = workspace().join("fuzz/corpus/sql_differential");
    let mut statements: Vec<(String, String)> = files_in(&corpus);
    let regression = statements.len();
    // The fuzz target's minimized corpus, then the checker's own.
    let fuzzed = files_in(&workspace().join("fuzz/corpus/sql_differential_min"));
    assert!(
        !fuzzed.is_empty(),
        "fuzz/corpus/sql_differential_min is empty: the fuzz target's corpus is part of the repository"
    );
    statements.extend(fuzzed);
    statements.extend(files_in(&workspace().join("fuzz/corpus/sql_check")));
    let cases: usize = std::env::var("TENANT_SQLDIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let seed: u64 = std::env::var("TENANT_SQLDIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_0f7e_4a41_7500);
    let mut generator = Gen::seeded(seed);
    statements.extend((0..cases).map(|i| (format!("generated #{i}"), generator.statement())));
    let (mut accepted, mut with_rows, mut failures) = (0, 0, Vec::new());
    // How strict the checker is: of the generated statements it refuses (up to 300), how many
    // did leak, and how many were confined after all (refused to fail closed).
    let (mut refused_leaking, mut refused_confined) = (0, 0);
    let (mut order_leaking, mut order_confined) = (0, 0);
    // Generated statements calling a function the checker must refuse, and accepted ones
    // calling a function it allows.
    let (mut refused_calls, mut allowed_calls) = (0, 0);
    for (name, sql) in &statements {
        // A NUL byte cannot reach the server (PostgreSQL text has none; libpq refuses it).
        if sql.contains('\0') {
            continue;
        }
        let verdict = check(sql, &tables, &is_org);
        if name.starts_with("generated") {
            if REFUSED_CALLS.iter().any(|c| sql.contains(*c)) {
                refused_calls += 1;
            } else if verdict.is_ok() && ALLOWED_CALLS.iter().any(|c| sql.contains(*c)) {
                allowed_calls += 1;
            }
        }
        if verdict.is_ok()
            && let Some(call) = REFUSED_CALLS.iter().find(|c| sql.contains(*c))
        {
            failures.push(format!("{name}: accepted a call of {call}: {sql}"));
            continue;
        }
        if verdict.is_err() {
            // The evaluation-order rule alone: how often what it refuses would have failed
            // on another org's row (the rest it refuses to be safe, counting costs from below).
            if name.starts_with("generated")
                && matches!(
                    verdict,
                    Err(tenant_sqlcheck::Violation::MayRunBeforeOrgPredicate { .. })
                )
            {
                if h.differs(sql).is_some() {
                    order_leaking += 1;
                } else {
                    order_confined += 1;
                }
            }
            if name.starts_with("generated") && refused_leaking + refused_confined < 300 {
                if h.differs(sql).is_some() {
                    refused_leaking += 1;
                } else {
                    refused_confined += 1;
                }
            }
            continue;
        }
        accepted += 1;
        if let Some(difference) = h.differs(sql) {
            failures.push(format!("{name}: {sql}\n{difference}"));
            let file = corpus.join(format!("found-{:016x}.sql", {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                sql.hash(&mut hasher);
                hasher.finish()
            }));
            let _ = std::fs::create_dir_all(&corpus);
            let _ = std::fs::write(file, sql);
        } else {
            let rows = h.run_as_app(sql).rows;
            if !rows.is_empty() && !rows.starts_with("ERROR") {
                with_rows += 1;
            }
        }
    }
    println!(
        "{} statements ({regression} regression, {cases} generated, seed {seed}): {accepted} accepted, \
         {with_rows} of them returned rows, {} differed; of {} refused ones run anyway, {refused_leaking} \
         leaked and {refused_confined} were confined",
        statements.len(),
        failures.len(),
        refused_leaking + refused_confined
    );
    println!(
        "{refused_calls} called a refused function, {allowed_calls} accepted ones an allowed one"
    );
    println!(
        "the evaluation-order rule refused {} generated statements: {order_leaking} failed on another \
         org's row when run anyway, {order_confined} did not",
        order_leaking + order_confined
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    if cases > 0 {
        assert!(
            refused_calls > 0 && allowed_calls > 0,
            "the generator made no calls"
        );
    }
    // The campaign means something only if the checker accepted a fair share of the generated
    // statements and they did real work (without generated ones, `--sql-cases 0`, the corpora
    // alone promise no share).
    if cases > 0 {
        assert!(accepted * 5 >= cases, "only {accepted} accepted of {cases}");
        assert!(
            with_rows * 3 >= accepted,
            "only {with_rows} of {accepted} returned rows"
        );
    }
}

#[test]
fn a_condition_that_can_fail_before_the_org_predicate_is_refused_and_would_have_leaked() {
    use diesel::connection::SimpleConnection;
    let h = Harness::new("sql_differential_order");
    // Org A's names parse as years, the other orgs' do not; every scan is sequential (as
    // for a large share of a table), where PostgreSQL orders the filter's conditions by cost.
    let mut admin = h.db().admin();
    admin
        .batch_execute(&format!(
            "UPDATE customers SET name = '2024' WHERE org_id = '{}';
             ALTER DATABASE \"{}\" SET enable_indexscan = off;
             ALTER DATABASE \"{}\" SET enable_bitmapscan = off;",
            h.a,
            h.db().name(),
            h.db().name()
        ))
        .unwrap();
    let mut h = h.reconnect();
    let leaking = "SELECT c.name FROM customers c WHERE c.org_id = $1 AND to_date(c.name, 'YYYY') IS NOT NULL";
    // The application layer alone (RLS bypassed): the condition meets another org's row
    // first, and fails on it (`22007`, whose message quotes the name).
    assert!(
        h.differs(leaking)
            .is_some_and(|d| d.contains("bypassing RLS:\nERROR 22007")),
        "{:?}",
        h.differs(leaking)
    );
    // The checker refuses it before it is sent; the fenced form passes and stays confined.
    assert!(matches!(
        check(leaking, &tables(), &is_org),
        Err(tenant_sqlcheck::Violation::MayRunBeforeOrgPredicate { .. })
    ));
    let fenced = "SELECT s.name FROM (SELECT c.name FROM customers c WHERE c.org_id = $1 OFFSET 0) s \
                  WHERE to_date(s.name, 'YYYY') IS NOT NULL";
    assert_eq!(check(fenced, &tables(), &is_org), Ok(()));
    assert_eq!(h.differs(fenced), None);
    assert!(h.run_as_app(fenced).rows.contains("2024"));
}
