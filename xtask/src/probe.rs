//! `cargo xtask probe [--database-url APP_URL] [--out DIR]`: the leak probe against the
//! story's database (a fresh one with the migrations on the throwaway cluster, or the one at
//! `APP_URL`, connecting as the application role). Writes `probe.md`, `probe.json` and
//! `probe.junit.xml` to DIR (default `target/probe`) and fails on any leak or attack that
//! could not run. With `--database-url`, the probe needs the service's key, the one the
//! database holds (`--context-key-file F` or `TENANT_CONTEXT_KEY`, `kid:hex`), or
//! `--trust-every-statement` for a database generated in the plain mode; on the database it
//! makes itself it adds a fresh key.

use std::path::PathBuf;

use tenant_core::{IntoOrgContext, TenantPool};

/// Runs the probe at `app_url` with the story's registry and a one-connection pool, telling
/// the database the org as `context` says.
pub fn probe_at(
    app_url: &str,
    context: &tenant_core::OrgContext,
    git_commit: String,
) -> Result<tenant_probe::Report, String> {
    // On a Citus coordinator the service's pool sets the org with SET LOCAL.
    let pool = TenantPool::builder(app_url, &two_companies::REGISTRY, context.clone())
        .max_size(1)
        .set_local_context_on_citus()
        .build()
        .map_err(|e| format!("building the application's pool: {e}"))?;
    let mut options =
        tenant_probe::ProbeOptions::new(app_url, &two_companies::REGISTRY, context.clone());
    options.pool = Some(&pool);
    options.git_commit = git_commit;
    tenant_probe::run(&options).map_err(|e| e.to_string())
}

/// Writes the three reports into `out`.
pub fn write(report: &tenant_probe::Report, out: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    for (name, content) in [
        ("probe.md", report.markdown()),
        ("probe.json", report.json()),
        ("probe.junit.xml", report.junit()),
    ] {
        let path = out.join(name);
        std::fs::write(&path, content).map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `cargo xtask probe`.
pub fn run(args: &[&str]) -> Result<(), String> {
    let o = crate::args::options(
        args,
        &["--database-url", "--out", "--context-key-file"],
        &[crate::context_key::TRUST_FLAG],
    )?;
    let out = o.get("--out").map_or_else(
        || crate::workspace().join("target").join("probe"),
        PathBuf::from,
    );
    let url = o.get("--database-url").copied();
    let report = match url {
        Some(url) => probe_at(
            url,
            &crate::context_key::service_context(&o)?,
            crate::git_commit(),
        )?,
        None => crate::with_database(|admin_url| {
            let (admin, app) = crate::prepare_story_db(admin_url, "tenant_probe")?;
            two_companies::migrate(&admin).map_err(|e| e.to_string())?;
            let key = crate::context_key::throwaway_key(&[&admin])?;
            probe_at(&app, &key.into_org_context(), crate::git_commit())
        })?,
    };
    write(&report, &out)?;
    for r in report.results.iter().filter(|r| {
        matches!(
            r.verdict,
            tenant_probe::Verdict::Leak | tenant_probe::Verdict::NotRun
        )
    }) {
        println!(
            "{} {} on {}: expected {}; observed {}",
            r.verdict.as_str(),
            r.attack,
            r.table,
            r.expected,
            r.observed
        );
    }
    println!("{} ({} ms)", report.summary_line(), report.duration_ms);
    if report.failed() {
        return Err("the probe found a leak or could not run an attack".into());
    }
    Ok(())
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
