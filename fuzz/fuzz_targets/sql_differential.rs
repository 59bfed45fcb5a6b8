//! Fuzzes the SQL checker against the server: every statement the checker approves runs on a
//! real PostgreSQL (as the application role under row-level security, and as a role that
//! bypasses it, each in a transaction rolled back), and the run fails when an approved
//! statement reads or writes another org's rows or changes the session's org
//! (`tenant_testkit::differential` says how each is seen).
//!
//! An input is SQL text (the corpus holds the regression statements as they are), or, after
//! a 0x01 byte, the generator's choices, one byte each, so that libFuzzer's mutations change
//! the statement's shape as well as its text. Needs `DATABASE_URL` (a role that can create
//! databases and roles; `cargo xtask soak` gives it the throwaway cluster's).

#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use tenant_testkit::differential::{Harness, decode, is_org, tables};

static HARNESS: OnceLock<Mutex<Harness>> = OnceLock::new();
/// Approved statements run against the server so far (printed every 1,000: a campaign that
/// approves nothing tests nothing).
static RUN: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    let Some(sql) = decode(data) else {
        return;
    };
    if tenant_sqlcheck::check(&sql, &tables(), &is_org).is_err() {
        return;
    }
    let harness =
        HARNESS.get_or_init(|| Mutex::new(Harness::for_fuzzing("sql_differential_fuzz")));
    let mut harness = harness.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(difference) = harness.differs(&sql) {
        panic!("the checker approved a statement that reaches another org:\n{sql}\n{difference}");
    }
    let run = RUN.fetch_add(1, Ordering::Relaxed) + 1;
    if run % 1000 == 0 {
        eprintln!("sql_differential: {run} approved statements run against the server, none reached another org");
    }
});
