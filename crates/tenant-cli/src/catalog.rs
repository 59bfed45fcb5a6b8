//! `audit` and `evidence`: the catalog audit of a service's database against its registry
//! (on a Citus coordinator, every worker too), printed, or written as evidence files with
//! their SHA-256 digests.

use std::path::Path;

use tenant_schema::audit::{AuditOptions, Report};

use crate::{CliError, Service, io_error};

/// Audits the database at `app_url` (a URL of the application role) against the service's
/// registry: the coordinator and every worker on Citus, the one server elsewhere.
///
/// # Errors
/// [`CliError::Audit`] when the catalog cannot be read.
pub fn audit(service: &Service, app_url: &str) -> Result<Report, CliError> {
    let mut reader = tenant_core::admin::CatalogReader::connect(
        app_url,
        "tenant-cli: the catalog audit of the service's database",
    )
    .map_err(|e| CliError::Audit(e.to_string()))?;
    let options = AuditOptions {
        rls: service.options.clone(),
        ..AuditOptions::default()
    };
    tenant_schema::audit::cluster::audit_cluster(&mut reader, app_url, service.registry, &options)
        .map_err(|e| CliError::Audit(e.to_string()))
}

/// `audit`: every finding with why and fix, a line each; an error when one is at error
/// severity.
///
/// # Errors
/// As [`audit`]; [`CliError::Findings`] for error findings.
pub fn audit_lines(service: &Service, app_url: &str) -> Result<Vec<String>, CliError> {
    let report = audit(service, app_url)?;
    let mut lines = vec![format!(
        "server {}; {} relations, {} policies",
        report.catalog.server.version_num,
        report.catalog.relations.len(),
        report.catalog.policies.len()
    )];
    for f in &report.findings {
        lines.push(format!(
            "{:?} {} {}\n    why: {}\n    fix: {}",
            f.severity, f.rule, f.object, f.why, f.fix
        ));
    }
    let errors = report.error_count();
    lines.push(format!(
        "{} findings, {errors} errors",
        report.findings.len()
    ));
    if errors > 0 {
        return Err(CliError::Findings {
            errors,
            lines,
            see: None,
        });
    }
    Ok(lines)
}

/// `evidence`: audits, writes `evidence.json` and `evidence.md` to `out` with a `.sha256`
/// beside each, and reports the configuration digest; an error (after writing) when a
/// finding is at error severity.
///
/// # Errors
/// As [`audit`]; [`CliError::Io`] when a file cannot be written; [`CliError::Findings`].
pub fn evidence(
    service: &Service,
    app_url: &str,
    out: &Path,
    commit: &str,
) -> Result<Vec<String>, CliError> {
    let report = audit(service, app_url)?;
    let provenance = tenant_schema::evidence::Provenance {
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        git_commit: commit.to_owned(),
    };
    let ev = tenant_schema::evidence::render(&report, service.registry, &provenance);
    std::fs::create_dir_all(out).map_err(io_error(out))?;
    let mut lines = Vec::new();
    for (name, content) in [("evidence.json", &ev.json), ("evidence.md", &ev.markdown)] {
        let path = out.join(name);
        std::fs::write(&path, content).map_err(io_error(&path))?;
        let digest = tenant_schema::evidence::sha256_hex(content.as_bytes());
        let digest_path = out.join(format!("{name}.sha256"));
        std::fs::write(&digest_path, format!("{digest}  {name}\n"))
            .map_err(io_error(&digest_path))?;
        lines.push(format!("wrote {} (sha256 {digest})", path.display()));
    }
    let errors = report.error_count();
    lines.push(format!(
        "configuration digest {}; {} findings, {errors} errors",
        ev.configuration_digest,
        report.findings.len()
    ));
    if errors > 0 {
        return Err(CliError::Findings {
            errors,
            lines,
            see: Some(out.join("evidence.md")),
        });
    }
    Ok(lines)
}

/// The commit of the repository in the current directory (`git rev-parse HEAD`), or
/// `unknown`.
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}
