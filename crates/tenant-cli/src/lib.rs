//! One command set for a service that uses tenant-safe, called from the service's own
//! `xtask` (or a binary of its own) with its registry, in three lines:
//!
//! ```no_run
//! # mod schema { diesel::table! { invoices (id) { id -> Uuid, org_id -> Uuid } } }
//! # use schema::invoices;
//! tenant_lint::registry! { pub static REGISTRY; tenant invoices => org_id; }
//!
//! fn main() -> std::process::ExitCode {
//!     tenant_cli::run(&tenant_cli::Service::new(&REGISTRY, "migrations"), std::env::args_os())
//! }
//! ```
//!
//! Commands (`<xtask> --help` lists them):
//!
//! - `gen`: writes the diesel migration for what changed in the registry since the last one
//!   the command wrote (the first time, the whole protection), or for the shared objects
//!   when this version of tenant-schema writes them differently; nothing when nothing
//!   changed. The folder is named to sort after every migration already there
//!   ([`migrations`]).
//! - `check`: fails (exit code 1), naming what differs, when the migrations are not up to
//!   date with the registry: the CI step that catches a table registered without its
//!   migration.
//! - `migrate --database-url ADMIN_URL`: applies the pending migrations of the service's
//!   directory (diesel's runner and bookkeeping), as a role that may change the schema.
//! - `audit --database-url APP_URL`: the catalog audit against the registry (every worker
//!   too on Citus); exit code 1 on a finding at error severity.
//! - `evidence --database-url APP_URL --out DIR [--commit SHA]`: the audit written as
//!   `evidence.json` and `evidence.md` with their SHA-256 digests, for the security review.
//!
//! - `probe --database-url APP_URL [--out DIR] [--config tenant-probe.toml] [--admin-url URL]
//!   [--context-key-file F | --trust-every-statement]`:
//!   the leak probe from two synthetic orgs; exit code 1 on a leak, an attack that could not
//!   run and that the configuration does not expect with a reason, or an expectation that
//!   no longer holds (`tenant_probe::config`).
//!
//! - `access open|report`, `org export|restore|purge|isolate`: break-glass access and per-org
//!   operations (see `ops.rs` for each command's options).
//! - `context-key rotate|add|list --database-url ADMIN_URL`: the signed context's keys
//!   (`keys.rs`).
//! - `lint [PATH]...`: every escape-hatch use in the Rust files under PATH (default: here) with
//!   its written reason; exit code 1 on a use without one ([`lint`]).
//!
//! The example's `cargo xtask gen`, `check`, `audit`, `evidence`, `probe`, `access`, `org` and
//! `context-key` are this entry point.

pub mod catalog;
pub mod context;
pub mod discover;
mod keys;
pub mod lint;
pub mod migrations;
mod ops;
pub mod probe;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tenant_lint::Registry;

pub use migrations::{GenError, Plan};
/// The options of the generated SQL (role names, the context mode), for
/// [`Service::with_options`]: re-exported so that an xtask needs no other crate for them.
pub use tenant_schema::options::RlsOptions;

/// What the commands need to know about the service.
#[derive(Debug, Clone)]
pub struct Service {
    /// The service's registry of tenant and global tables.
    pub registry: &'static Registry,
    /// The names and modes the generated SQL uses.
    pub options: RlsOptions,
    /// The diesel migrations directory.
    pub migrations: PathBuf,
}

impl Service {
    /// The service with `registry`, default options, and its migrations in `migrations`
    /// (relative to the directory the command runs in: the crate's root, for `cargo xtask`).
    pub fn new(registry: &'static Registry, migrations: impl Into<PathBuf>) -> Self {
        Self {
            registry,
            options: RlsOptions::default(),
            migrations: migrations.into(),
        }
    }

    /// The same service with `options` for the generated SQL (role names, the context mode,
    /// the target): what `gen` and `check` use.
    ///
    /// ```
    /// # tenant_lint::registry! { pub static REGISTRY; }
    /// let options = tenant_cli::RlsOptions {
    ///     app_role: "billing_app".into(),
    ///     ..Default::default()
    /// };
    /// let service = tenant_cli::Service::new(&REGISTRY, "migrations").with_options(options);
    /// assert_eq!(service.options.app_role, "billing_app");
    /// ```
    #[must_use]
    pub fn with_options(mut self, options: RlsOptions) -> Self {
        self.options = options;
        self
    }
}

/// The command line.
#[derive(Debug, Parser)]
#[command(about = "tenant-safe's commands for this service's registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the migration for what changed in the registry since the last generated one.
    Gen,
    /// Fail when the migrations are not up to date with the registry (for CI).
    Check,
    /// Apply the pending migrations of the service's migrations directory, as an admin role.
    Migrate {
        /// A URL of a role that may change the schema (the database's owner or an
        /// administrator; never the application role).
        #[arg(long)]
        database_url: String,
    },
    /// Audit a database's catalog against the registry; fail on an error finding.
    Audit {
        /// A URL of the application role (the audit reads the catalog only).
        #[arg(long)]
        database_url: String,
    },
    /// Audit and write evidence.json and evidence.md with their SHA-256 digests.
    Evidence {
        /// A URL of the application role.
        #[arg(long)]
        database_url: String,
        /// The directory to write to.
        #[arg(long)]
        out: PathBuf,
        /// The commit the evidence names (default: `git rev-parse HEAD` here).
        #[arg(long)]
        commit: Option<String>,
    },
    /// Run the leak probe as the application role; fail on a leak.
    Probe {
        /// A URL of the application role.
        #[arg(long)]
        database_url: String,
        /// The directory for probe.md, probe.json and probe.junit.xml.
        #[arg(long, default_value = "target/probe")]
        out: PathBuf,
        /// The probe's configuration (tenant-probe.toml): seeders, rows for empty global
        /// tables, expected outcomes with their reasons.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A URL of a role that may write the global tables, for the configuration's
        /// `global_rows` (added to empty tables only, deleted after the run).
        #[arg(long)]
        admin_url: Option<String>,
        #[command(flatten)]
        context: context::ContextArgs,
    },
    /// Break-glass access: a logged session in one org, or the postmortem report.
    Access {
        #[command(subcommand)]
        command: ops::Access,
    },
    /// Per-org data: export, restore, purge; isolate on Citus.
    Org {
        #[command(subcommand)]
        command: ops::Org,
    },
    /// The signed org context's keys: rotate, add, list.
    ContextKey {
        #[command(subcommand)]
        command: keys::ContextKeyCommand,
    },
    /// List every escape-hatch use with its reason; fail on one without.
    Lint {
        /// Directories or files to scan (default: the current directory).
        paths: Vec<PathBuf>,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `gen` or `check`.
    #[error(transparent)]
    Gen(#[from] GenError),
    /// `migrate` could not apply the migrations.
    #[error("{0}")]
    Migrate(String),
    /// The audit could not read the catalog.
    #[error("the audit could not read the catalog: {0}")]
    Audit(String),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The probe could not run.
    #[error("the probe could not run: {0}")]
    Probe(String),
    /// The probe failed the run (a leak, an attack that could not run, an expectation that
    /// did not hold, no tenant table attacked); the lines say which.
    #[error(
        "the probe failed the run: a leak, an attack that could not run, an expectation that did not hold, or no tenant table attacked (the lines above say which)"
    )]
    ProbeFailed(Vec<String>),
    /// An operation (access, export, restore, purge, isolate) failed.
    #[error("{0}")]
    Ops(String),
    /// The org context could not be chosen (no key, a bad key, a key and the plain flag).
    #[error("{0}")]
    Context(String),
    /// Escape-hatch uses without a written reason; `lines` is the list.
    #[error(
        "{missing} escape-hatch uses without a written reason: pass a non-empty string literal that says why"
    )]
    Lint {
        /// How many.
        missing: usize,
        /// The list.
        lines: Vec<String>,
    },
    /// The audit found errors; `lines` is what it printed.
    #[error("{errors} findings at error severity{}", see.as_ref().map(|p| format!(": see {}", p.display())).unwrap_or_default())]
    Findings {
        /// How many.
        errors: usize,
        /// The audit's output.
        lines: Vec<String>,
        /// The evidence to read.
        see: Option<PathBuf>,
    },
}

/// Parses `args` (the first is the program's name), runs the command, prints what it did or
/// why it failed, and returns the exit code: 0 on success, 1 when the command failed (a
/// `check` that found the migrations out of date included), 2 on a usage error.
pub fn run<I, T>(service: &Service, args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match parse::<Cli, _, _>(args) {
        Ok(cli) => report(execute(service, &cli.command)),
        Err(code) => code,
    }
}

/// The command line `args` as `P`, or, when it does not parse (or asks for help), clap's
/// message printed and the exit code: help and version to stdout with success, usage errors to
/// stderr with 2.
fn parse<P, I, T>(args: I) -> Result<P, ExitCode>
where
    P: Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    P::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
    })
}

/// The `io::Error` of a file operation on `path`, as a [`CliError`] naming the path.
pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Prints what a command did, or why it failed (with the list a failed audit, probe or lint
/// produced), and gives its exit code: for a caller that runs a command's function itself.
#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the command line's output: printing is what `run` is for"
)]
pub fn report(result: Result<Vec<String>, CliError>) -> ExitCode {
    match result {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let CliError::Findings { lines, .. }
            | CliError::ProbeFailed(lines)
            | CliError::Lint { lines, .. } = &e
            {
                for line in lines {
                    println!("{line}");
                }
            }
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The `tenant-safe` binary's command line: tenant-cli's commands without the service's code,
/// the registry read from the catalog ([`discover`]).
#[derive(Debug, Parser)]
#[command(
    name = "tenant-safe",
    about = "tenant-safe's commands for any database: the tables are read from its catalog"
)]
struct Standalone {
    /// The column that marks a tenant table.
    #[arg(long, global = true, default_value = "org_id")]
    org_column: String,
    /// The schema of the tables.
    #[arg(long, global = true, default_value = "public")]
    schema: String,
    #[command(subcommand)]
    command: Command,
}

/// The `tenant-safe` binary: as [`run`], with the registry discovered from the database the
/// command names (`gen` and `check` need the service's own registry and are refused).
pub fn run_standalone<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match parse::<Standalone, _, _>(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let registry = match &cli.command {
        Command::Gen | Command::Check | Command::Migrate { .. } => Err(CliError::Ops(
            "gen, check and migrate work on the service's migrations and registry: run them \
             from the service's xtask (tenant_cli::run with its REGISTRY)"
                .into(),
        )),
        command => match database_url(command) {
            Some(url) => discover::registry_from_catalog(url, &cli.schema, &cli.org_column),
            None => Ok(&EMPTY),
        },
    };
    let service = registry.map(|registry| Service::new(registry, "migrations"));
    report(service.and_then(|service| execute(&service, &cli.command)))
}

/// The registry of a command that reads no table (`lint`, `context-key`, `access`).
static EMPTY: Registry = Registry::__new(&[], &[]);

/// The database a command works on, when it names one.
fn database_url(command: &Command) -> Option<&str> {
    match command {
        Command::Audit { database_url }
        | Command::Evidence { database_url, .. }
        | Command::Probe { database_url, .. } => Some(database_url),
        Command::Org { command } => Some(ops::database_url(command)),
        Command::Gen
        | Command::Check
        | Command::Migrate { .. }
        | Command::Access { .. }
        | Command::ContextKey { .. }
        | Command::Lint { .. } => None,
    }
}

fn execute(service: &Service, command: &Command) -> Result<Vec<String>, CliError> {
    match command {
        Command::Gen => Ok(migrations::generate(
            service,
            chrono::Utc::now().naive_utc(),
        )?),
        Command::Check => Ok(migrations::check(service).map(|()| {
            vec![format!(
                "the migrations in {} are up to date with the registry",
                service.migrations.display()
            )]
        })?),
        Command::Migrate { database_url } => {
            let applied = tenant_core::admin::run_migrations(database_url, &service.migrations)
                .map_err(|e| CliError::Migrate(e.to_string()))?;
            Ok(if applied.is_empty() {
                vec![format!(
                    "nothing to apply: every migration in {} is applied",
                    service.migrations.display()
                )]
            } else {
                let mut lines: Vec<String> =
                    applied.iter().map(|v| format!("applied {v}")).collect();
                lines.push(format!("{} migrations applied", applied.len()));
                lines
            })
        }
        Command::Audit { database_url } => catalog::audit_lines(service, database_url),
        Command::Evidence {
            database_url,
            out,
            commit,
        } => catalog::evidence(
            service,
            database_url,
            out,
            &commit.clone().unwrap_or_else(catalog::git_commit),
        ),
        Command::Probe {
            database_url,
            out,
            config,
            admin_url,
            context,
        } => {
            let setup = probe::ProbeSetup::load(config.as_deref(), admin_url.as_deref())?;
            let report = probe::probe_at(
                service,
                database_url,
                &context.context()?,
                catalog::git_commit(),
                setup,
            )?;
            probe::report_lines(&report, out)
        }
        Command::Access { command } => ops::access(command),
        Command::Org { command } => ops::org(service, command),
        Command::ContextKey { command } => keys::run(command),
        Command::Lint { paths } => {
            let here = PathBuf::from(".");
            let paths = if paths.is_empty() {
                vec![here.clone()]
            } else {
                paths.clone()
            };
            lint::run(&paths, &here)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
    }

    #[test]
    fn a_restore_needs_a_seal_key_or_an_explicit_unsealed_and_never_both() {
        let restore = ["org", "restore", "--in", "f", "--database-url", "u"];
        let both = parse(&[&restore[..], &["--seal-key-file", "k", "--unsealed"]].concat())
            .unwrap_err()
            .to_string();
        assert!(both.contains("cannot be used with"), "{both}");
        let Command::Org { command } =
            parse(&[&restore[..], &["--trust-every-statement"]].concat())
                .unwrap()
                .command
        else {
            panic!("org restore parses as org");
        };
        let service = Service::new(&tests_registry::REGISTRY, "migrations");
        let err = ops::org(&service, &command).unwrap_err().to_string();
        assert!(err.contains("--unsealed to accept"), "{err}");
    }

    #[test]
    fn an_org_id_that_does_not_parse_is_refused_naming_the_option() {
        let err = parse(&[
            "org",
            "purge",
            "--org",
            "nope",
            "--ticket",
            "T-1",
            "--reason",
            "r",
            "--database-url",
            "u",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("--org <ORG>"), "{err}");
    }

    mod tests_registry {
        diesel::table! { notes (org_id, id) { org_id -> Uuid, id -> Uuid } }
        tenant_lint::registry! { pub static REGISTRY; tenant notes => org_id; }
    }
}
