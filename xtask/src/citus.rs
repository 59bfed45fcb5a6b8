//! `cargo xtask citus start|stop|status`: a throwaway Citus cluster (a coordinator and two
//! workers on localhost) for the scale-out tests, building Citus first when it is missing.

use std::path::PathBuf;
use std::process::Command;

use tenant_testkit::citus::CitusCluster;

use crate::workspace;

/// The variable naming the script that builds and installs Citus into the local PostgreSQL.
pub(crate) const BUILD_VAR: &str = "TENANT_CITUS_BUILD";

/// `cargo xtask citus <args>`.
pub(crate) fn command(args: &[&str]) -> Result<(), String> {
    match args {
        ["start"] => start().map(|c| {
            println!("coordinator: {}", c.url());
            for w in c.worker_urls() {
                println!("worker: {w}");
            }
        }),
        ["stop"] => CitusCluster::at(&workspace()).stop(),
        ["status"] => CitusCluster::at(&workspace()).status(),
        _ => Err(crate::USAGE.to_owned()),
    }
}

/// Starts the cluster, building Citus first when it is not installed.
pub(crate) fn start() -> Result<CitusCluster, String> {
    ensure_installed()?;
    CitusCluster::at(&workspace()).start()
}

/// Builds and installs Citus when the local PostgreSQL does not have it. Call it before any
/// server starts: the build may upgrade the PostgreSQL packages under a running server.
pub(crate) fn ensure_installed() -> Result<(), String> {
    if CitusCluster::at(&workspace()).installed() {
        return Ok(());
    }
    let script = build_script().ok_or_else(|| {
        format!(
            "Citus is not installed into the local PostgreSQL and no build script was found: set \
             {BUILD_VAR} to a script that builds and installs Citus {} for it, or install Citus \
             {} yourself (https://github.com/citusdata/citus, tag v13.2.2)",
            tenant_testkit::citus::CITUS_VERSION,
            tenant_testkit::citus::CITUS_VERSION
        )
    })?;
    println!("==> building Citus with {}", script.display());
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !status.success() {
        return Err(format!("{} failed ({status})", script.display()));
    }
    if CitusCluster::at(&workspace()).installed() {
        Ok(())
    } else {
        Err(format!(
            "{} ran but Citus is still not installed into the PostgreSQL the clusters run",
            script.display()
        ))
    }
}

/// `TENANT_CITUS_BUILD`, else `citus/build.sh` in the `shared` directory beside the
/// workspace (where this project's machines keep the Citus source release).
fn build_script() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(BUILD_VAR) {
        return Some(PathBuf::from(path));
    }
    let beside = workspace().parent()?.join("shared/citus/build.sh");
    beside.is_file().then_some(beside)
}

/// Runs `f` on the Citus cluster: the one `cargo xtask citus start` left running, or one
/// started for it and removed afterwards whatever `f` returns.
pub(crate) fn with_cluster<T>(
    f: impl FnOnce(&CitusCluster) -> Result<T, String>,
) -> Result<T, String> {
    let was_running = CitusCluster::at(&workspace()).running();
    let cluster = start()?;
    let result = f(&cluster);
    let stopped = if was_running {
        Ok(())
    } else {
        cluster.stop_and_remove()
    };
    let value = result?;
    stopped?;
    Ok(value)
}

/// The Citus tests (`--test citus` of the crates that have one) against the cluster.
pub(crate) fn run_tests() -> Result<(), String> {
    with_cluster(|cluster| {
        let mut tests = crate::cargo();
        tests
            .args([
                "test",
                "-p",
                "tenant-schema",
                "-p",
                "tenant-probe",
                "-p",
                "tenant-ops",
                "--test",
                "citus",
            ])
            .env("TENANT_CITUS_URL", cluster.url())
            .env("TENANT_CITUS_WORKER_URLS", cluster.worker_urls().join(","));
        crate::run("the Citus tests (a coordinator and two workers)", tests)
    })
}
