//! `access open|report` and `org export|restore|purge|isolate`: break-glass access and per-org
//! data operations on the service's database, through tenant-core and tenant-ops.
//!
//! - `access open --org ORG --ticket T --reason R [--minutes N] [--write] --database-url OPERATOR_URL`:
//!   a logged session inside one org; reads SQL statements from standard input (one per line,
//!   or ending with `;`) and prints each result row as JSON; closes at end of input.
//! - `access report --org ORG [--since TIME] --database-url AUDITOR_URL [--out DIR]`: the
//!   postmortem report (Markdown on standard output; `access-report.md` and `.json` in DIR).
//! - `org export --org ORG --out FILE --database-url APP_URL [--seal-key-file F]`
//! - `org restore --in FILE [--replace] --database-url APP_URL (--seal-key-file F | --unsealed)`:
//!   with a seal key, only a file sealed by it is restored; without one, only when the command
//!   says `--unsealed` (a file's checksums are its own: anyone can write a consistent one)
//! - `org purge --org ORG --ticket T --reason R --database-url OPERATOR_URL`
//! - `org isolate --org ORG --database-url CITUS_ADMIN_URL`
//!
//! Export and restore tell the database the org with the service's key
//! (`--context-key-file F` or `TENANT_CONTEXT_KEY`), or the plain setting by
//! `--trust-every-statement` only ([`crate::context`]).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the command line's output: the session's rows and prompts"
)]

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use tenant_core::OrgId;
use tenant_core::operator::{AccessRequest, OperatorSession};

use crate::context::ContextArgs;
use crate::{CliError, Service, io_error};

/// `access ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum Access {
    /// A logged break-glass session in one org: SQL from standard input, rows as JSON.
    Open {
        /// The org.
        #[arg(long)]
        org: OrgId,
        /// The ticket id, e.g. OPS-4711.
        #[arg(long)]
        ticket: String,
        /// Why, in words (at least 10 characters).
        #[arg(long)]
        reason: String,
        /// The window, in minutes.
        #[arg(long, default_value_t = 30)]
        minutes: i32,
        /// Write access too (logged as such).
        #[arg(long)]
        write: bool,
        /// A URL of the operator's own login (a member of tenant_operator).
        #[arg(long)]
        database_url: String,
    },
    /// The postmortem report of every access to one org.
    Report {
        /// The org.
        #[arg(long)]
        org: OrgId,
        /// Only entries since this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// A URL of a role that may read the log (tenant_auditor).
        #[arg(long)]
        database_url: String,
        /// Also write access-report.md and access-report.json here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `org ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum Org {
    /// Every row of one org, with a manifest of counts and checksums.
    Export {
        /// The org.
        #[arg(long)]
        org: OrgId,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// A URL of the application role.
        #[arg(long)]
        database_url: String,
        /// Seal the file with this key (one line `kid:hex`).
        #[arg(long)]
        seal_key_file: Option<PathBuf>,
        #[command(flatten)]
        context: ContextArgs,
    },
    /// Restore an export in one transaction.
    Restore {
        /// The file to restore.
        #[arg(long = "in")]
        input: PathBuf,
        /// Replace the org's rows (without it, an org that has rows is refused).
        #[arg(long)]
        replace: bool,
        /// A URL of the application role.
        #[arg(long)]
        database_url: String,
        /// Restore only a file sealed with this key.
        #[arg(long, conflicts_with = "unsealed")]
        seal_key_file: Option<PathBuf>,
        /// Accept a file that only its own checksums vouch for.
        #[arg(long)]
        unsealed: bool,
        #[command(flatten)]
        context: ContextArgs,
    },
    /// Delete every row of one org through a logged write grant.
    Purge {
        /// The org.
        #[arg(long)]
        org: OrgId,
        /// The ticket id.
        #[arg(long)]
        ticket: String,
        /// Why (at least 10 characters).
        #[arg(long)]
        reason: String,
        /// A URL of the operator's own login.
        #[arg(long)]
        database_url: String,
    },
    /// On Citus: move the org to shards of its own.
    Isolate {
        /// The org.
        #[arg(long)]
        org: OrgId,
        /// A URL of the cluster's admin on the coordinator.
        #[arg(long)]
        database_url: String,
    },
}

/// The database an `org` command works on.
pub(crate) fn database_url(command: &Org) -> &str {
    match command {
        Org::Export { database_url, .. }
        | Org::Restore { database_url, .. }
        | Org::Purge { database_url, .. }
        | Org::Isolate { database_url, .. } => database_url,
    }
}

/// The seal key in `file` (a file, so that the secret is not on the command line, where other
/// users of the machine can read it).
fn seal_key(file: &Path) -> Result<tenant_ops::SealKey, CliError> {
    let line = std::fs::read_to_string(file).map_err(io_error(file))?;
    tenant_ops::SealKey::from_line(&line)
        .map_err(|e| CliError::Ops(format!("{}: {e}", file.display())))
}

fn ops_error(e: impl std::fmt::Display) -> CliError {
    CliError::Ops(e.to_string())
}

#[derive(diesel::QueryableByName)]
struct Json {
    #[diesel(sql_type = diesel::sql_types::Text)]
    value: String,
}

/// Runs `access ...`.
pub(crate) fn access(command: &Access) -> Result<Vec<String>, CliError> {
    match command {
        Access::Open {
            org,
            ticket,
            reason,
            minutes,
            write,
            database_url,
        } => {
            let request = if *write {
                AccessRequest::write(*org, ticket, reason, *minutes)
            } else {
                AccessRequest::read(*org, ticket, reason, *minutes)
            };
            let s = OperatorSession::open(database_url, &request).map_err(ops_error)?;
            session(s)?;
            Ok(vec!["closed; the session is in the access log".into()])
        }
        Access::Report {
            org,
            since,
            database_url,
            out,
        } => {
            let log = tenant_core::operator::access_log(database_url, *org, since.as_deref())
                .map_err(ops_error)?;
            let report = tenant_ops::AccessReport::new(&org.to_string(), since.as_deref(), &log);
            print!("{}", report.markdown());
            let mut lines = Vec::new();
            if let Some(dir) = out {
                std::fs::create_dir_all(dir).map_err(io_error(dir))?;
                for (name, content) in [
                    ("access-report.md", report.markdown()),
                    ("access-report.json", report.json()),
                ] {
                    let path = dir.join(name);
                    std::fs::write(&path, content).map_err(io_error(&path))?;
                }
                lines.push(format!(
                    "wrote {}/access-report.md and access-report.json",
                    dir.display()
                ));
            }
            Ok(lines)
        }
    }
}

/// The break-glass session's loop: statements from standard input, rows as JSON.
fn session(mut s: OperatorSession) -> Result<(), CliError> {
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
        if stdin.lock().read_line(&mut line).map_err(ops_error)? == 0 {
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
        let is_query = text
            .split_whitespace()
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("select") || w.eq_ignore_ascii_case("with"));
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
    s.close().map_err(ops_error)
}

/// Runs `org ...` with the service's registry.
pub(crate) fn org(service: &Service, command: &Org) -> Result<Vec<String>, CliError> {
    let registry = service.registry;
    match command {
        Org::Export {
            org,
            out,
            database_url,
            seal_key_file,
            context,
        } => {
            let export = tenant_ops::export(database_url, registry, *org, &context.context()?)
                .map_err(ops_error)?;
            let text = match seal_key_file {
                Some(file) => seal_key(file)?.seal(&export.to_json()).map_err(ops_error)?,
                None => export.to_json(),
            };
            std::fs::write(out, text).map_err(io_error(out))?;
            let mut lines: Vec<String> = export
                .manifest
                .tables
                .iter()
                .map(|t| format!("  {}: {} rows (sha256 {})", t.name, t.rows, t.sha256))
                .collect();
            lines.push(format!(
                "exported org {} to {}",
                export.manifest.org,
                out.display()
            ));
            Ok(lines)
        }
        Org::Restore {
            input,
            replace,
            database_url,
            seal_key_file,
            unsealed,
            context,
        } => {
            let context = context.context()?;
            if seal_key_file.is_none() && !unsealed {
                return Err(CliError::Ops(
                    "a restore takes only sealed files unless told otherwise: pass \
                     --seal-key-file F (the key the export was sealed with), or --unsealed to \
                     accept a file that only its own checksums vouch for (anyone can write one, \
                     for any org)"
                        .into(),
                ));
            }
            let text = std::fs::read_to_string(input).map_err(io_error(input))?;
            let receipt = match seal_key_file {
                Some(file) => tenant_ops::restore_sealed(
                    database_url,
                    registry,
                    &text,
                    *replace,
                    &seal_key(file)?,
                    &context,
                ),
                None => tenant_ops::restore(database_url, registry, &text, *replace, &context),
            }
            .map_err(ops_error)?;
            Ok(vec![receipt.render().trim_end().to_owned()])
        }
        Org::Purge {
            org,
            ticket,
            reason,
            database_url,
        } => {
            let receipt = tenant_ops::purge(database_url, registry, *org, ticket, reason)
                .map_err(ops_error)?;
            Ok(vec![
                receipt.render().trim_end().to_owned(),
                "logged in the access log with the ticket".into(),
            ])
        }
        Org::Isolate { org, database_url } => {
            let isolated = tenant_ops::isolate(database_url, registry, *org).map_err(ops_error)?;
            Ok(vec![isolated.render().trim_end().to_owned()])
        }
    }
}
