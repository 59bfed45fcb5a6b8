//! `probe`: the leak probe against a service's database, as its application role, from two
//! synthetic orgs, over the service's registry; writes `probe.md`, `probe.json` and
//! `probe.junit.xml`, and fails on any leak or attack that could not run.

use std::path::Path;

use tenant_core::{OrgContext, TenantPool};

use crate::{CliError, Service, io_error};

/// What the service's configuration adds to a probe run: the file (seeders, rows for empty
/// global tables, expected outcomes with reasons) and the admin role's URL for those rows.
#[derive(Debug, Default)]
pub struct ProbeSetup {
    /// The parsed `tenant-probe.toml`, if one was given.
    pub config: Option<tenant_probe::config::ProbeConfig>,
    /// A URL of a role that may write the global tables.
    pub admin_url: Option<String>,
}

impl ProbeSetup {
    /// Reads the configuration at `config` (if given) and takes `admin_url`.
    ///
    /// # Errors
    /// [`CliError::Probe`] naming the file and what is wrong with it.
    pub fn load(config: Option<&Path>, admin_url: Option<&str>) -> Result<Self, CliError> {
        Ok(Self {
            config: config
                .map(tenant_probe::config::ProbeConfig::load)
                .transpose()
                .map_err(|e| CliError::Probe(e.to_string()))?,
            admin_url: admin_url.map(str::to_owned),
        })
    }
}

/// Runs the probe at `app_url` with the service's registry and a one-connection pool,
/// telling the database the org as `context` says (with `SET LOCAL` on a Citus
/// coordinator, as the service's pool does there), with what `setup` adds.
///
/// # Errors
/// [`CliError::Probe`] when the pool cannot start or the probe cannot run.
pub fn probe_at(
    service: &Service,
    app_url: &str,
    context: &OrgContext,
    git_commit: String,
    setup: ProbeSetup,
) -> Result<tenant_probe::Report, CliError> {
    let pool = TenantPool::builder(app_url, service.registry, context.clone())
        .max_size(1)
        .set_local_context_on_citus()
        .build()
        .map_err(|e| CliError::Probe(format!("building the application's pool: {e}")))?;
    let mut options = tenant_probe::ProbeOptions::new(app_url, service.registry, context.clone());
    if let Some(config) = setup.config {
        options = options.with_config(config);
    }
    options.admin_url = setup.admin_url;
    options.pool = Some(&pool);
    options.git_commit = git_commit;
    tenant_probe::run(&options).map_err(|e| CliError::Probe(e.to_string()))
}

/// Writes the three reports of `report` into `out`, and returns what to print: the files,
/// every leak and attack that did not run, and the summary; an error when the probe failed.
///
/// # Errors
/// [`CliError::Io`] when a file cannot be written; [`CliError::ProbeFailed`] with the lines.
pub fn report_lines(report: &tenant_probe::Report, out: &Path) -> Result<Vec<String>, CliError> {
    std::fs::create_dir_all(out).map_err(io_error(out))?;
    let mut lines = Vec::new();
    for (name, content) in [
        ("probe.md", report.markdown()),
        ("probe.json", report.json()),
        ("probe.junit.xml", report.junit()),
    ] {
        let path = out.join(name);
        std::fs::write(&path, content).map_err(io_error(&path))?;
        lines.push(format!("wrote {}", path.display()));
    }
    for r in report.results.iter().filter(|r| {
        r.verdict == tenant_probe::Verdict::Leak
            || (r.verdict == tenant_probe::Verdict::NotRun && r.expected_by.is_none())
    }) {
        lines.push(format!(
            "{} {} on {}: expected {}; observed {}",
            r.verdict.as_str(),
            r.attack,
            r.table,
            r.expected,
            r.observed
        ));
    }
    for stale in &report.stale_expectations {
        lines.push(format!("EXPECTATION {stale}"));
    }
    lines.push(format!(
        "{} ({} ms)",
        report.summary_line(),
        report.duration_ms
    ));
    if report.failed() {
        return Err(CliError::ProbeFailed(lines));
    }
    Ok(lines)
}
