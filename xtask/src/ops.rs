//! Per-org operations' measurements and the soak: `cargo xtask access ...` and `cargo xtask
//! org ...` are tenant-cli's commands (its `ops.rs`), with the story's registry.
//!
//! - `org-bench`: export and restore throughput for an org of 100,000 rows.

use std::time::Instant;

use tenant_core::OrgId;

use crate::args::options;

/// `cargo xtask org-bench`: an org of 100,000 rows over the story's tables, exported, purged
/// and restored; throughput of each, and restore time relative to export time.
pub fn bench() -> Result<(), String> {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    const ROUNDS: usize = 3;
    crate::with_database(|admin_url| {
        let (admin, app) = crate::prepare_story_db(admin_url, "tenant_org_bench")?;
        two_companies::migrate(&admin).map_err(|e| e.to_string())?;
        let org: OrgId = "00000000-0000-4000-8000-0000000000be"
            .parse()
            .map_err(|e| format!("{e}"))?;
        // 25,000 customers with a deal, a proposal and an invoice each, and the org: 100,001 rows.
        let mut conn = diesel::PgConnection::establish(&admin).map_err(|e| e.to_string())?;
        conn.batch_execute(&format!(
            "INSERT INTO orgs (id, name) VALUES ('{org}', 'Bench');
             INSERT INTO customers (org_id, name, email) SELECT '{org}', 'c' || i, i || '@bench' FROM generate_series(1, 25000) i;
             INSERT INTO deals (org_id, customer_id, title, amount_cents, currency, stage) SELECT org_id, id, 'deal', 1, 'EUR', 'open' FROM customers;
             INSERT INTO proposals (org_id, customer_id, title, body, total_cents, currency, drafted_by) SELECT org_id, id, 'p', 'body', 1, 'EUR', 'bench' FROM customers;
             INSERT INTO invoices (org_id, customer_id, deal_id, number, total_cents, currency, due_on) SELECT org_id, customer_id, id, 'N' || id, 1, 'EUR', date '2027-01-01' FROM deals;
             ANALYZE;"
        ))
        .map_err(|e| format!("seeding the bench org: {e}"))?;
        // Restores go into a second database of the same schema, emptied before each round,
        // as after a purge (or in a disaster-recovery copy).
        let (target_admin, target_app) =
            crate::prepare_story_db(admin_url, "tenant_org_bench_target")?;
        two_companies::migrate(&target_admin).map_err(|e| e.to_string())?;
        let context = tenant_core::OrgContext::Signed(crate::context_key::throwaway_key(&[
            &admin,
            &target_admin,
        ])?);
        let mut target =
            diesel::PgConnection::establish(&target_admin).map_err(|e| e.to_string())?;
        let (mut ex, mut re, mut rp) = (Vec::new(), Vec::new(), Vec::new());
        let mut rows = 0;
        for round in 1..=ROUNDS {
            let start = Instant::now();
            let export = tenant_ops::export(&app, &two_companies::REGISTRY, org, &context)
                .map_err(|e| e.to_string())?;
            let file = export.to_json();
            let t_export = start.elapsed().as_secs_f64();
            rows = export.manifest.tables.iter().map(|t| t.rows).sum::<usize>();
            target
                .batch_execute("TRUNCATE orgs, customers, deals, proposals, invoices")
                .map_err(|e| format!("emptying the target: {e}"))?;
            let start = Instant::now();
            let receipt = tenant_ops::restore(
                &target_app,
                &two_companies::REGISTRY,
                &file,
                false,
                &context,
            )
            .map_err(|e| e.to_string())?;
            let t_restore = start.elapsed().as_secs_f64();
            if receipt.total() as usize != rows {
                return Err(format!("restored {} rows of {rows}", receipt.total()));
            }
            // Again, replacing what is there: deletes children first, then inserts.
            let start = Instant::now();
            tenant_ops::restore(&target_app, &two_companies::REGISTRY, &file, true, &context)
                .map_err(|e| e.to_string())?;
            let t_replace = start.elapsed().as_secs_f64();
            rp.push(t_replace);
            println!(
                "round {round}: {rows} rows ({} KB file): export {:.2} s, restore {:.2} s, restore replacing {:.2} s",
                file.len() / 1024,
                t_export,
                t_restore,
                rp.last().copied().unwrap_or_default()
            );
            ex.push(t_export);
            re.push(t_restore);
        }
        let (e, r, p) = (crate::median(ex), crate::median(re), crate::median(rp));
        println!();
        println!("| operation | rows | median | rows/s |");
        println!("|---|---|---|---|");
        println!("| export | {rows} | {e:.2} s | {:.0} |", rows as f64 / e);
        println!(
            "| restore (into an empty org) | {rows} | {r:.2} s | {:.0} |",
            rows as f64 / r
        );
        println!(
            "| restore --replace (delete, then insert) | {rows} | {p:.2} s | {:.0} |",
            rows as f64 / p
        );
        println!("| restore / export time | | {:.2} (target <= 3) | |", r / e);
        Ok(())
    })
}

/// `cargo xtask soak [--seconds N] [--threads N] [--fuzz-seconds N] [--sql-cases N]`: first a
/// bounded fuzzing campaign on each target in `fuzz/` (default 30 s each; 0 skips it; the
/// nightly toolchain and cargo-fuzz are installed when missing), growing the corpus there (`sql_differential`, the
/// checker against the server, runs against the throwaway cluster or DATABASE_URL, and its
/// corpus is minimized afterwards); then, against the same server, in a release build: the
/// soak test for longer (default 60 s, 16 threads), and the differential test of the SQL
/// checker with `--sql-cases` generated statements (default 20,000) from a fresh seed, plus
/// the corpora.
pub fn soak(args: &[&str]) -> Result<(), String> {
    let o = options(
        args,
        &["--seconds", "--threads", "--fuzz-seconds", "--sql-cases"],
        &[],
    )?;
    let seconds = o.get("--seconds").copied().unwrap_or("60");
    let threads = o.get("--threads").copied().unwrap_or("16");
    let fuzz_seconds: u32 = o
        .get("--fuzz-seconds")
        .map_or(Ok(30), |s| s.parse())
        .map_err(|e| format!("--fuzz-seconds: {e}"))?;
    let sql_cases: u32 = o
        .get("--sql-cases")
        .map_or(Ok(20_000), |s| s.parse())
        .map_err(|e| format!("--sql-cases: {e}"))?;
    if fuzz_seconds > 0 {
        ensure_cargo_fuzz()?;
        for target in ["org_id", "sql_check"] {
            fuzz(target, &[], fuzz_seconds, None)?;
        }
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    crate::with_database(|url| {
        if fuzz_seconds > 0 {
            // The checker against the server: new inputs go to the minimized corpus (made
            // minimal again afterwards), the regression statements are read as seeds.
            fuzz(
                "sql_differential",
                &["corpus/sql_differential_min", "corpus/sql_differential"],
                fuzz_seconds,
                Some(url),
            )?;
            let status = std::process::Command::new("cargo")
                .args(["+nightly", "fuzz", "cmin", "-s", "none", "sql_differential"])
                .arg("corpus/sql_differential_min")
                .env("DATABASE_URL", url)
                .current_dir(crate::workspace().join("fuzz"))
                .status()
                .map_err(|e| format!("running cargo fuzz cmin: {e}"))?;
            if !status.success() {
                return Err("minimizing fuzz/corpus/sql_differential_min failed".into());
            }
        }
        for (package, test, what, hint) in [
            (
                "tenant-probe",
                "soak",
                "the soak (default and signed mode)",
                "its output above names the mode, the org and the ledger or row that failed",
            ),
            (
                "tenant-core",
                "sql_differential",
                "the SQL differential",
                "its output above names the failure; a statement the checker let through that leaked was written to fuzz/corpus/sql_differential/",
            ),
        ] {
            let status = crate::cargo()
                .args([
                    "test",
                    "--release",
                    "-p",
                    package,
                    "--test",
                    test,
                    "--",
                    "--nocapture",
                    // One after the other: each soak's throughput is its own.
                    "--test-threads=1",
                ])
                .env("DATABASE_URL", url)
                .env("TENANT_SOAK_SECONDS", seconds)
                .env("TENANT_SOAK_THREADS", threads)
                .env("TENANT_SQLDIFF_CASES", sql_cases.to_string())
                .env("TENANT_SQLDIFF_SEED", seed.to_string())
                .status()
                .map_err(|e| format!("running {what}: {e}"))?;
            if !status.success() {
                return Err(format!("{what} failed: {hint}"));
            }
        }
        Ok(())
    })
}

/// Installs what fuzzing needs when it is missing: the nightly toolchain (rustup) and
/// cargo-fuzz.
fn ensure_cargo_fuzz() -> Result<(), String> {
    let works = |args: &[&str]| {
        std::process::Command::new("cargo")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let install = |program: &str, args: &[&str], what: &str| -> Result<(), String> {
        println!("installing {what} (fuzzing needs it)");
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .map_err(|e| format!("installing {what}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "installing {what} failed; install it by hand, or skip fuzzing with --fuzz-seconds 0"
            ))
        }
    };
    if !works(&["+nightly", "--version"]) {
        install(
            "rustup",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
            "the nightly toolchain",
        )?;
    }
    if !works(&["+nightly", "fuzz", "--version"]) {
        install(
            "cargo",
            &["+nightly", "install", "cargo-fuzz", "--locked"],
            "cargo-fuzz",
        )?;
    }
    Ok(())
}

/// One bounded campaign of the fuzz target `target` (`corpora`: its corpus directories under
/// `fuzz/`, new inputs to the first; none: the default), with `DATABASE_URL` = `url` when
/// given (a target that needs the server: built without a sanitizer, as the C library it
/// links and the server are not what it fuzzes).
fn fuzz(target: &str, corpora: &[&str], seconds: u32, url: Option<&str>) -> Result<(), String> {
    let mut command = std::process::Command::new("cargo");
    command.args(["+nightly", "fuzz", "run"]);
    if let Some(url) = url {
        command.args(["-s", "none"]).env("DATABASE_URL", url);
    }
    let status = command
        .arg(target)
        .args(corpora)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .current_dir(crate::workspace().join("fuzz"))
        .status()
        .map_err(|e| {
            format!("running cargo fuzz (install it: cargo +nightly install cargo-fuzz): {e}")
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "fuzz target {target} failed: its output above names the statement; the input is in fuzz/artifacts/{target}/"
        ))
    }
}
