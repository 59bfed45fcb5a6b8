//! `cargo xtask probe [--database-url APP_URL] [--out DIR] [--config F] [--admin-url URL]`: tenant-cli's leak probe against
//! the story's database (a fresh one with the migrations on the throwaway cluster, or the one at
//! `APP_URL`, connecting as the application role). Writes `probe.md`, `probe.json` and
//! `probe.junit.xml` to DIR (default `target/probe`) and fails on any leak or attack that
//! could not run. With `--database-url`, the probe needs the service's key, the one the
//! database holds (`--context-key-file F` or `TENANT_CONTEXT_KEY`, `kid:hex`), or
//! `--trust-every-statement` for a database generated in the plain mode; on the database it
//! makes itself it adds a fresh key.

use std::path::PathBuf;

use tenant_core::IntoOrgContext;

/// `cargo xtask probe`: tenant-cli's `probe`, with the story's registry; without a URL, on a
/// fresh story database with a fresh key (the same library calls).
pub fn run(args: &[&str]) -> Result<(), String> {
    let o = crate::args::options(
        args,
        &[
            "--database-url",
            "--out",
            "--context-key-file",
            "--config",
            "--admin-url",
        ],
        &[tenant_cli::context::TRUST_FLAG],
    )?;
    let out = o.get("--out").map_or_else(
        || crate::workspace().join("target").join("probe"),
        PathBuf::from,
    );
    let out_text = out.display().to_string();
    match o.get("--database-url").copied() {
        Some(url) => {
            let mut cli = vec!["probe", "--database-url", url, "--out", &out_text];
            for option in ["--context-key-file", "--config", "--admin-url"] {
                if let Some(value) = o.get(option) {
                    cli.extend([option, value]);
                }
            }
            if o.contains_key(tenant_cli::context::TRUST_FLAG) {
                cli.push(tenant_cli::context::TRUST_FLAG);
            }
            crate::cli(&cli)
        }
        None => crate::with_database(|admin_url| {
            let (admin, app) = crate::prepare_story_db(admin_url, "tenant_probe")?;
            two_companies::migrate(&admin).map_err(|e| e.to_string())?;
            let key = crate::context_key::throwaway_key(&[&admin])?;
            let report = tenant_cli::probe::probe_at(
                &crate::story_service(),
                &app,
                &key.into_org_context(),
                tenant_cli::catalog::git_commit(),
                tenant_cli::probe::ProbeSetup::default(),
            )
            .and_then(|report| tenant_cli::probe::report_lines(&report, &out));
            crate::outcome("probe", tenant_cli::report(report))
        }),
    }
}

/// `cargo xtask probe-bench`: the probe's time on the story schema, and on generated schemas
/// of 25 and 50 tenant tables measured side by side; the cost must grow linearly.
pub fn bench() -> Result<(), String> {
    const ROUNDS: usize = 3;
    crate::with_database(|admin_url| {
        let (admin, story) = crate::prepare_story_db(admin_url, "tenant_probe_bench")?;
        two_companies::migrate(&admin).map_err(|e| e.to_string())?;
        let (small_admin, small_url, small) = crate::audit_bench::build(admin_url, 25)?;
        let (large_admin, large_url, large) = crate::audit_bench::build(admin_url, 50)?;
        let key = crate::context_key::throwaway_key(&[&admin, &small_admin, &large_admin])?;
        let time = |url: &str, registry: &tenant_lint::Registry| -> Result<(f64, usize), String> {
            let mut options = tenant_probe::ProbeOptions::new(url, registry, &key);
            options.progress = false;
            let start = std::time::Instant::now();
            let report = tenant_probe::run(&options).map_err(|e| e.to_string())?;
            if report.failed() {
                return Err(format!(
                    "the bench schema should probe clean: {}",
                    report.summary_line()
                ));
            }
            Ok((start.elapsed().as_secs_f64(), report.results.len()))
        };
        let (mut st, mut sm, mut lg) = (Vec::new(), Vec::new(), Vec::new());
        let mut attacks = (0, 0, 0);
        for round in 1..=ROUNDS {
            let (t0, a0) = time(&story, &two_companies::REGISTRY)?;
            let (t1, a1) = time(&small_url, small)?;
            let (t2, a2) = time(&large_url, large)?;
            println!(
                "round {round}: story (5 tables) {:.0} ms, 25 tables {:.0} ms, 50 tables {:.0} ms",
                t0 * 1e3,
                t1 * 1e3,
                t2 * 1e3
            );
            attacks = (a0, a1, a2);
            st.push(t0);
            sm.push(t1);
            lg.push(t2);
        }
        let (t0, t1, t2) = (crate::median(st), crate::median(sm), crate::median(lg));
        println!();
        println!("| schema | tenant tables | attacks | median run | per table |");
        println!("|---|---|---|---|---|");
        println!(
            "| story | 5 | {} | {:.0} ms | {:.1} ms |",
            attacks.0,
            t0 * 1e3,
            t0 * 1e3 / 5.0
        );
        println!(
            "| generated | 25 | {} | {:.0} ms | {:.1} ms |",
            attacks.1,
            t1 * 1e3,
            t1 * 1e3 / 25.0
        );
        println!(
            "| generated | 50 | {} | {:.0} ms | {:.1} ms |",
            attacks.2,
            t2 * 1e3,
            t2 * 1e3 / 50.0
        );
        println!(
            "| ratio 50 / (2 x 25) | | | {:.2} (linear: about 1) | |",
            t2 / (2.0 * t1)
        );
        Ok(())
    })
}
