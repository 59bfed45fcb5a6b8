//! How a command tells the database the org: the service's key from `--context-key-file F`
//! (one line `kid:hex`) or [`CONTEXT_KEY_VAR`]; the plain setting only when
//! `--trust-every-statement` ([`TRUST_FLAG`]) says so, never beside a key; an error naming
//! both ways otherwise.

use std::path::{Path, PathBuf};

use clap::Args;

use tenant_core::OrgContext;
use tenant_core::context::ContextKey;

use crate::CliError;

/// The environment variable the commands read the service's context key from (`kid:hex`).
pub const CONTEXT_KEY_VAR: &str = "TENANT_CONTEXT_KEY";

/// The flag that opts a command into the plain org setting, for a database generated with
/// `ContextMode::TrustEveryStatement`.
pub const TRUST_FLAG: &str = "--trust-every-statement";

/// The org context of the key in `key_file`, else in [`CONTEXT_KEY_VAR`], else the plain mode
/// when `trust_every_statement`.
///
/// # Errors
/// A key that cannot be read or parsed; the flag beside a key; neither a key nor the flag.
pub fn service_context(
    key_file: Option<&Path>,
    trust_every_statement: bool,
) -> Result<OrgContext, String> {
    let key = match key_file {
        Some(file) => Some(ContextKey::from_file(file).map_err(|e| e.to_string())?),
        None => ContextKey::from_env(CONTEXT_KEY_VAR).map_err(|e| e.to_string())?,
    };
    choose(key, trust_every_statement)
}

/// The org context of a key the command was given (or none) and the plain-mode flag.
pub fn choose(key: Option<ContextKey>, trust_every_statement: bool) -> Result<OrgContext, String> {
    match (key, trust_every_statement) {
        (Some(_), true) => Err(format!(
            "{TRUST_FLAG} and a context key do not combine: the key is for a database in the \
             signed mode, the flag for one in the plain mode; give one"
        )),
        (Some(key), false) => Ok(OrgContext::Signed(key)),
        (None, true) => Ok(OrgContext::TrustEveryStatement),
        (None, false) => Err(format!(
            "no context key: give the service's key with --context-key-file F (one line kid:hex) \
             or {CONTEXT_KEY_VAR}=kid:hex, the key the database holds (the `context-key rotate` \
             command adds one and prints it); for a database generated in the plain mode, which \
             trusts every statement, pass {TRUST_FLAG}"
        )),
    }
}

/// How a command that opens scoped transactions (probe, export, restore) tells the database
/// the org: the two options every such command takes.
#[derive(Debug, Args)]
pub(crate) struct ContextArgs {
    /// The service's context key (one line `kid:hex`; default: TENANT_CONTEXT_KEY).
    #[arg(long)]
    context_key_file: Option<PathBuf>,
    /// The database was generated in the plain mode, which trusts every statement.
    #[arg(long)]
    trust_every_statement: bool,
}

impl ContextArgs {
    /// The org context these options choose ([`service_context`]).
    ///
    /// # Errors
    /// [`CliError::Context`], as [`service_context`].
    pub(crate) fn context(&self) -> Result<tenant_core::OrgContext, CliError> {
        service_context(self.context_key_file.as_deref(), self.trust_every_statement)
            .map_err(CliError::Context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_mode_is_only_by_name_and_never_beside_a_key() {
        let key = ContextKey::parse(&format!("k1:{}", "ab".repeat(32))).unwrap();
        let err = choose(None, false).unwrap_err();
        assert!(
            err.contains("no context key") && err.contains(TRUST_FLAG),
            "{err}"
        );
        assert!(matches!(
            choose(None, true),
            Ok(OrgContext::TrustEveryStatement)
        ));
        assert!(matches!(
            choose(Some(key.clone()), false),
            Ok(OrgContext::Signed(_))
        ));
        let err = choose(Some(key), true).unwrap_err();
        assert!(err.contains("do not combine"), "{err}");
    }
}
