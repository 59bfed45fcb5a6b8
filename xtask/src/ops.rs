//! `cargo xtask access ...` and `cargo xtask org ...`: break-glass access and per-org data
//! operations on the story's schema, as commands.
//!
//! - `access open --org ORG --ticket T --reason R [--minutes N] [--write] --database-url OPERATOR_URL`:
//!   a logged session inside one org; reads SQL statements from standard input (one per line,
//!   or ending with `;`) and prints each result row as JSON; closes at end of input.
//! - `access report --org ORG [--since TIME] --database-url AUDITOR_URL [--out DIR]`: the
//!   postmortem report (Markdown on standard output; `access-report.md` and `.json` in DIR).
//! - `org export --org ORG --out FILE --database-url APP_URL [--seal-key-file F]`
//! - `org restore --in FILE [--replace] --database-url APP_URL (--seal-key-file F | --unsealed)`:
//!   with a seal key, only a file sealed by it is restored; without one, only when the command
//!   says `--unsealed`
//! - `org purge --org ORG --ticket T --reason R --database-url OPERATOR_URL`
//! - `org-bench`: export and restore throughput for an org of 100,000 rows.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

use tenant_core::OrgId;
use tenant_core::operator::{AccessRequest, OperatorSession};

use crate::args::{options, org_of, required};
use crate::context_key::service_context;

#[derive(diesel::QueryableByName)]
struct Json {
    #[diesel(sql_type = diesel::sql_types::Text)]
    value: String,
}

/// The seal key file a restore checks files against, or `None` when the command says
/// `--unsealed`: a file's checksums are its own, so anyone can write a consistent file for any
/// org, and taking one without a seal is a choice the operator states, never a default.
fn restore_seal<'a>(
    o: &std::collections::HashMap<&'a str, &'a str>,
) -> Result<Option<&'a str>, String> {
    match (o.get("--seal-key-file"), o.contains_key("--unsealed")) {
        (Some(file), false) => Ok(Some(file)),
        (None, true) => Ok(None),
        (Some(_), true) => Err("--seal-key-file and --unsealed contradict each other: give one".into()),
        (None, false) => Err(
            "a restore takes only sealed files unless told otherwise: pass --seal-key-file F (the key the export was sealed with), \
             or --unsealed to accept a file that only its own checksums vouch for (anyone can write one, for any org)"
                .into(),
        ),
    }
}

/// `cargo xtask access open|report`.
pub fn access(args: &[&str]) -> Result<(), String> {
    match args {
        ["open", rest @ ..] => {
            let o = options(
                rest,
                &[
                    "--org",
                    "--ticket",
                    "--reason",
                    "--minutes",
                    "--database-url",
                ],
                &["--write"],
            )?;
            let org = org_of(&o)?;
            let minutes: i32 = o
                .get("--minutes")
                .map_or(Ok(30), |m| m.parse())
                .map_err(|e| format!("--minutes: {e}"))?;
            let (ticket, reason) = (required(&o, "--ticket")?, required(&o, "--reason")?);
            let request = if o.contains_key("--write") {
                AccessRequest::write(org, ticket, reason, minutes)
            } else {
                AccessRequest::read(org, ticket, reason, minutes)
            };
            let mut s = OperatorSession::open(required(&o, "--database-url")?, &request)
                .map_err(|e| e.to_string())?;
            eprintln!(
                "grant {} entered: org {}, {} until {}; one SQL statement per line, end of input closes",
                s.grant(),
                s.org(),
                if s.can_write() {
                    "read and write"
                } else {
                    "read only"
                },
                s.expires_at()
            );
            let stdin = std::io::stdin();
            let interactive = stdin.is_terminal();
            let mut statement = String::new();
            loop {
                if interactive && statement.is_empty() {
                    eprint!("{}> ", s.org());
                    let _ = std::io::stderr().flush();
                }
                let mut line = String::new();
                if stdin
                    .lock()
                    .read_line(&mut line)
                    .map_err(|e| e.to_string())?
                    == 0
                {
                    break;
                }
                statement.push_str(&line);
                let text = statement.trim().trim_end_matches(';').trim().to_owned();
                if text.is_empty() {
                    statement.clear();
                    continue;
                }
                if !line.trim_end().ends_with(';') && interactive {
                    continue;
                }
                statement.clear();
                let is_query = text.split_whitespace().next().is_some_and(|w| {
                    w.eq_ignore_ascii_case("select") || w.eq_ignore_ascii_case("with")
                });
                if is_query {
                    match s.load::<Json>(&format!(
                        "SELECT row_to_json(q)::text AS value FROM ({text}) q"
                    )) {
                        Ok(rows) => {
                            for r in &rows {
                                println!("{}", r.value);
                            }
                            eprintln!("({} rows)", rows.len());
                        }
                        Err(e) => eprintln!("error: {e}"),
                    }
                } else {
                    match s.execute(&text) {
                        Ok(n) => eprintln!("({n} rows affected)"),
                        Err(e) => eprintln!("error: {e}"),
                    }
                }
            }
            s.close().map_err(|e| e.to_string())?;
            eprintln!("closed; the session is in the access log");
            Ok(())
        }
        ["report", rest @ ..] => {
            let o = options(rest, &["--org", "--since", "--database-url", "--out"], &[])?;
            let org = org_of(&o)?;
            let since = o.get("--since").copied();
            let log =
                tenant_core::operator::access_log(required(&o, "--database-url")?, org, since)
                    .map_err(|e| e.to_string())?;
            let report = tenant_ops::AccessReport::new(&org.to_string(), since, &log);
            print!("{}", report.markdown());
            if let Some(dir) = o.get("--out") {
                let dir = std::path::Path::new(dir);
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                for (name, content) in [
                    ("access-report.md", report.markdown()),
                    ("access-report.json", report.json()),
                ] {
                    std::fs::write(dir.join(name), content)
                        .map_err(|e| format!("writing {name}: {e}"))?;
                }
                eprintln!(
                    "wrote {}/access-report.md and access-report.json",
                    dir.display()
                );
            }
            Ok(())
        }
        _ => Err(format!("access: expected open or report\n{}", crate::USAGE)),
    }
}

/// The seal key in `file` (one line `KID:HEX`; a file, so that the secret is not on the
/// command line, where other users of the machine can read it).
fn seal_key(file: &str) -> Result<tenant_ops::SealKey, String> {
    let line = std::fs::read_to_string(file).map_err(|e| format!("reading {file}: {e}"))?;
    tenant_ops::SealKey::from_line(&line).map_err(|e| format!("{file}: {e}"))
}

/// `cargo xtask org export|restore|purge|isolate`.
pub fn org(args: &[&str]) -> Result<(), String> {
    let registry = &two_companies::REGISTRY;
    match args {
        ["export", rest @ ..] => {
            let o = options(
                rest,
                &[
                    "--org",
                    "--out",
                    "--database-url",
                    "--seal-key-file",
                    "--context-key-file",
                ],
                &["--trust-every-statement"],
            )?;
            let out = required(&o, "--out")?;
            let export = tenant_ops::export(
                required(&o, "--database-url")?,
                registry,
                org_of(&o)?,
                &service_context(&o)?,
            )
            .map_err(|e| e.to_string())?;
            let text = match o.get("--seal-key-file") {
                Some(file) => seal_key(file)?.seal(&export.to_json())?,
                None => export.to_json(),
            };
            std::fs::write(out, text).map_err(|e| format!("writing {out}: {e}"))?;
            for t in &export.manifest.tables {
                println!("  {}: {} rows (sha256 {})", t.name, t.rows, t.sha256);
            }
            println!("exported org {} to {out}", export.manifest.org);
            Ok(())
        }
        ["restore", rest @ ..] => {
            let o = options(
                rest,
                &[
                    "--in",
                    "--database-url",
                    "--seal-key-file",
                    "--context-key-file",
                ],
                &["--replace", "--unsealed", "--trust-every-statement"],
            )?;
            let context = service_context(&o)?;
            let seal = restore_seal(&o)?;
            let input = required(&o, "--in")?;
            let text =
                std::fs::read_to_string(input).map_err(|e| format!("reading {input}: {e}"))?;
            let (url, replace) = (required(&o, "--database-url")?, o.contains_key("--replace"));
            let receipt = match seal {
                Some(file) => tenant_ops::restore_sealed(
                    url,
                    registry,
                    &text,
                    replace,
                    &seal_key(file)?,
                    &context,
                ),
                None => tenant_ops::restore(url, registry, &text, replace, &context),
            }
            .map_err(|e| e.to_string())?;
            print!("{}", receipt.render());
            Ok(())
        }
        ["purge", rest @ ..] => {
            let o = options(
                rest,
                &["--org", "--ticket", "--reason", "--database-url"],
                &[],
            )?;
            let receipt = tenant_ops::purge(
                required(&o, "--database-url")?,
                registry,
                org_of(&o)?,
                required(&o, "--ticket")?,
                required(&o, "--reason")?,
            )
            .map_err(|e| e.to_string())?;
            print!("{}", receipt.render());
            println!("logged in the access log with the ticket");
            Ok(())
        }
        ["isolate", rest @ ..] => {
            let o = options(rest, &["--org", "--database-url"], &[])?;
            let isolated =
                tenant_ops::isolate(required(&o, "--database-url")?, registry, org_of(&o)?)
                    .map_err(|e| e.to_string())?;
            print!("{}", isolated.render());
            Ok(())
        }
        _ => Err(format!(
            "org: expected export, restore, purge or isolate\n{}",
            crate::USAGE
        )),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_needs_a_seal_key_or_an_explicit_unsealed() {
        let parse = |args: &[&'static str]| {
            let o = options(
                args,
                &["--in", "--database-url", "--seal-key-file"],
                &["--replace", "--unsealed", "--trust-every-statement"],
            )
            .unwrap();
            restore_seal(&o)
        };
        assert_eq!(parse(&["--seal-key-file", "k"]), Ok(Some("k")));
        assert_eq!(parse(&["--unsealed"]), Ok(None));
        assert!(parse(&[]).unwrap_err().contains("--unsealed to accept"));
        assert!(
            parse(&["--seal-key-file", "k", "--unsealed"])
                .unwrap_err()
                .contains("contradict")
        );
    }
}
