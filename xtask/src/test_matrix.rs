//! `cargo xtask test-matrix [--pg 16,17,18]`: the real-server suites on other PostgreSQL
//! majors. For each major: a throwaway cluster from that major's binaries (`pg_versions.rs`,
//! fetched once), the suites of tenant-core, tenant-schema, tenant-probe, tenant-ops,
//! tenant-cli and the two-companies example against it (with that major's binaries first on
//! PATH, so the suites' own clusters are of it too), the cluster removed; then a table of
//! each major's outcome and time. Fails when a major fails. `cargo xtask test` covers 15 (the
//! distribution's) with every suite; PgBouncer, Citus (13.2 supports 15 to 17) and the
//! compile-fail suites do not depend on the server and run there only.

use std::time::Instant;

/// The suites that talk to the server.
const PACKAGES: [&str; 6] = [
    "tenant-core",
    "tenant-schema",
    "tenant-probe",
    "tenant-ops",
    "tenant-cli",
    "two-companies",
];

/// The majors besides the distribution's.
const DEFAULT_MAJORS: [u32; 3] = [16, 17, 18];

/// `cargo xtask test-matrix [--pg 16,17,18]`.
pub(crate) fn run(args: &[&str]) -> Result<(), String> {
    let majors: Vec<u32> = match args {
        [] => DEFAULT_MAJORS.to_vec(),
        ["--pg", list] => list
            .split(',')
            .map(|m| {
                m.trim()
                    .parse()
                    .map_err(|_| format!("--pg takes majors such as 16,17,18, not `{m}`"))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("usage: cargo xtask test-matrix [--pg 16,17,18]".into()),
    };
    let mut outcomes = Vec::new();
    for major in majors {
        println!("==> PostgreSQL {major}: the real-server suites");
        let started = Instant::now();
        let cluster = crate::pg_versions::cluster(major)?.start()?;
        let mut tests = crate::cargo();
        tests.args(["test", "--no-fail-fast"]);
        for p in PACKAGES {
            tests.args(["-p", p]);
        }
        tests.env("DATABASE_URL", cluster.url());
        if let Some(bin) = cluster.bindir() {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![bin.to_path_buf()];
            paths.extend(std::env::split_paths(&path));
            tests.env(
                "PATH",
                std::env::join_paths(paths).map_err(|e| format!("PATH: {e}"))?,
            );
        }
        let passed = tests
            .status()
            .map_err(|e| format!("running cargo test: {e}"))?
            .success();
        let removed = cluster.stop_and_remove();
        outcomes.push((major, passed, started.elapsed().as_secs()));
        removed?;
    }
    println!("\n| PostgreSQL | suites | time |\n|---|---|---|");
    for (major, passed, secs) in &outcomes {
        println!(
            "| {major} | {} | {secs} s |",
            if *passed { "pass" } else { "FAIL" }
        );
    }
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.1)
        .map(|o| o.0.to_string())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the suites failed on PostgreSQL {} (above)",
            failed.join(", ")
        ))
    }
}
