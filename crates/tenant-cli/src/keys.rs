//! `context-key rotate|add|list`: the signed org context's keys in the service's database
//! (through `tenant_core::keys`, as the key table's owner or an administrator).
//!
//! - `rotate --database-url ADMIN_URL [--kid KID] [--retire-after MINUTES] [--out FILE]`: a
//!   new random key, added, and printed once as its last line `kid:hex` (or, with `--out`,
//!   written to a new file only its owner may read, and not printed); every other key stays
//!   valid MINUTES more (default 60), so services move to the new key without a gap.
//! - `add --database-url ADMIN_URL (--from-file F | --from-env VAR)`: a key the service already
//!   has (one line `kid:hex`), added to another database so that one key serves several;
//!   nothing is retired; the key is checked before anything is written and never printed.
//! - `list --database-url ADMIN_URL`: the keys' ids, when each was added, until when it is
//!   accepted; never a secret.

use std::path::PathBuf;

use clap::Subcommand;
use tenant_core::context::ContextKey;

use crate::context::CONTEXT_KEY_VAR;
use crate::{CliError, io_error};

/// `context-key ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ContextKeyCommand {
    /// A new key, added and printed once; the others stay valid a while.
    Rotate {
        /// A URL of the key table's owner or an administrator.
        #[arg(long)]
        database_url: String,
        /// The new key's id (default: k<date and time>).
        #[arg(long)]
        kid: Option<String>,
        /// Minutes the other keys stay valid.
        #[arg(long, default_value_t = 60)]
        retire_after: u32,
        /// Write the key (one line `kid:hex`) to this new file, readable by its owner only,
        /// instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Add a key the service already has to this database.
    Add {
        /// A URL of the key table's owner or an administrator.
        #[arg(long)]
        database_url: String,
        /// A file holding the key as one line `kid:hex`.
        #[arg(
            long,
            required_unless_present = "from_env",
            conflicts_with = "from_env"
        )]
        from_file: Option<PathBuf>,
        /// An environment variable holding the key as `kid:hex`.
        #[arg(long)]
        from_env: Option<String>,
    },
    /// The keys the database holds (ids and dates, never a secret).
    List {
        /// A URL of the key table's owner or an administrator.
        #[arg(long)]
        database_url: String,
    },
}

/// Writes `line` to `file`, a new file (an existing one is never overwritten) that only its
/// owner may read.
fn write_key_file(file: &std::path::Path, line: &str) -> Result<(), CliError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options.open(file).map_err(io_error(file))?;
    writeln!(f, "{line}").map_err(io_error(file))
}

fn key_error(e: impl std::fmt::Display) -> CliError {
    CliError::Context(e.to_string())
}

/// Runs `context-key ...`.
pub(crate) fn run(command: &ContextKeyCommand) -> Result<Vec<String>, CliError> {
    match command {
        ContextKeyCommand::Rotate {
            database_url,
            kid,
            retire_after,
            out,
        } => {
            let kid = kid
                .clone()
                .unwrap_or_else(|| format!("k{}", chrono::Utc::now().format("%Y%m%d%H%M%S")));
            let secret = tenant_core::keys::random_secret();
            let line = tenant_core::keys::key_line(&kid, &secret);
            // The file first, so that a key the database holds is never lost to a file that
            // cannot be written.
            if let Some(file) = out {
                write_key_file(file, &line)?;
            }
            let installed =
                tenant_core::keys::install(database_url, &kid, &secret, Some(*retire_after));
            if let Err(e) = installed {
                if let Some(file) = out {
                    let _ = std::fs::remove_file(file);
                }
                return Err(key_error(e));
            }
            let head = format!(
                "new context key {kid} added; the others stay valid for {retire_after} minutes"
            );
            Ok(match out {
                Some(file) => vec![
                    head,
                    format!(
                        "written to {} (readable by its owner only); give it to the service as \
                         {CONTEXT_KEY_VAR} or a key file",
                        file.display()
                    ),
                ],
                None => vec![
                    head,
                    format!(
                        "the key, shown once, as one line for {CONTEXT_KEY_VAR} or a key file \
                         (the next line; put it in the service's secret store):"
                    ),
                    line,
                ],
            })
        }
        ContextKeyCommand::Add {
            database_url,
            from_file,
            from_env,
        } => {
            let text = match (from_file, from_env) {
                (Some(file), _) => std::fs::read_to_string(file).map_err(io_error(file))?,
                // The error never shows the variable's value (a key, or most of one).
                (None, Some(var)) => std::env::var(var).map_err(|e| {
                    key_error(match e {
                        std::env::VarError::NotPresent => format!("{var} is not set"),
                        std::env::VarError::NotUnicode(_) => {
                            format!("{var} is not UTF-8 text: write the key as one line kid:hex")
                        }
                    })
                })?,
                (None, None) => {
                    return Err(key_error(
                        "context-key add: give one of --from-file F and --from-env VAR",
                    ));
                }
            };
            // Checks the id, the hex and the length; the error never shows the key.
            let key = ContextKey::parse(&text).map_err(key_error)?;
            let (_, hex) = text.trim().split_once(':').unwrap_or_default();
            let secret =
                tenant_core::context::hex_bytes("the key", hex.trim()).map_err(key_error)?;
            tenant_core::keys::install(database_url, key.kid(), &secret, None)
                .map_err(key_error)?;
            Ok(vec![format!("context key {} added", key.kid())])
        }
        ContextKeyCommand::List { database_url } => {
            let keys = tenant_core::keys::list(database_url).map_err(key_error)?;
            let mut lines = vec![format!("{} keys", keys.len())];
            for k in keys {
                lines.push(format!(
                    "{}  added {}  {}",
                    k.kid,
                    k.created_at,
                    match (&k.retire_after, k.valid) {
                        (None, _) => "valid".to_owned(),
                        (Some(at), true) => format!("valid until {at}"),
                        (Some(at), false) => format!("retired {at}"),
                    }
                ));
            }
            Ok(lines)
        }
    }
}
