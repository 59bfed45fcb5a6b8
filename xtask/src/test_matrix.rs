//! `cargo xtask test-matrix [--pg 16,17,18]`: the real-server suites on other PostgreSQL
//! majors. For each major: a throwaway cluster from that major's binaries (`pg_versions.rs`,
//! fetched once), the suites of tenant-core, tenant-schema, tenant-probe, tenant-ops,
//! tenant-cli and the two-companies example against it (with that major's binaries first on
//! PATH, so the suites' own clusters are of it too), the cluster removed; then a table of
//! each major's outcome and time. Fails when a major fails. `cargo xtask test` runs it after
//! every suite on 15 (the distribution's). The PgBouncer suite runs on each major too (the
//! signed context reads `pg_stat_activity`, whose columns vary); Citus (13.2 supports 15 to
//! 17), the compile-fail suites and the release-profile runs (the handle's bookkeeping, the
//! checker's stack) do not depend on the server's major and run on 15 only.

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

/// `cargo xtask test-matrix [--pg 16,17,18]`.
pub(crate) fn run(args: &[&str]) -> Result<(), String> {
    let majors: Vec<u32> = match args {
        [] => crate::pg_versions::TESTED.iter().map(|(m, _)| *m).collect(),
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
        // The isolation suite and the probe through PgBouncer in transaction mode: the signed
        // context's reads of `pg_stat_activity` and the prepared-statement handling meet this
        // major's server there.
        let bounced = through_pgbouncer(&cluster.url());
        let removed = cluster.stop_and_remove();
        let passed = passed && bounced?;
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

/// Runs tenant-probe's PgBouncer suite through a PgBouncer in front of `url`; whether it passed.
fn through_pgbouncer(url: &str) -> Result<bool, String> {
    let bouncer = crate::bouncer::Bouncer::start(url)?;
    let mut through = crate::cargo();
    through
        .args(["test", "-p", "tenant-probe", "--test", "pgbouncer"])
        .env("DATABASE_URL", url)
        .env("TENANT_PGBOUNCER_URL", bouncer.url());
    Ok(through
        .status()
        .map_err(|e| format!("running cargo test through PgBouncer: {e}"))?
        .success())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_matrix_and_the_distribution_are_the_majors_the_audit_calls_verified() {
        let mut majors: Vec<i32> = crate::pg_versions::TESTED
            .iter()
            .map(|(m, _)| i32::try_from(*m).unwrap())
            .collect();
        majors.push(15);
        majors.sort_unstable();
        assert_eq!(majors, tenant_schema::audit::VERIFIED_MAJORS);
    }

    #[test]
    fn each_tested_build_is_of_its_major_and_has_every_security_fix() {
        for (major, version) in crate::pg_versions::TESTED {
            let (release, _) = version.split_once('-').unwrap();
            let mut parts = release.split('.').map(|p| p.parse::<i32>().unwrap());
            let (m, minor) = (parts.next().unwrap(), parts.next().unwrap());
            assert_eq!(u32::try_from(m).unwrap(), *major, "{version}");
            assert_eq!(
                tenant_schema::audit::missing_fixes(m * 10_000 + minor),
                Vec::<&tenant_schema::audit::Advisory>::new(),
                "{version}"
            );
        }
    }
}
