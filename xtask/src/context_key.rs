//! The signed org context's keys: `cargo xtask context-key rotate|add`, how the other commands
//! learn the service's key (`--context-key-file F`, or `TENANT_CONTEXT_KEY`; the plain mode
//! only by `--trust-every-statement`), and the key a command gives a database it made itself.

use diesel::Connection;
use diesel::connection::SimpleConnection;
use tenant_core::OrgContext;
use tenant_core::context::ContextKey;

use crate::args::{options, required};

/// The environment variable the commands read the service's context key from (`kid:hex`).
pub const CONTEXT_KEY_VAR: &str = "TENANT_CONTEXT_KEY";

/// The flag that opts a command into the plain org setting, for a database generated with
/// `ContextMode::TrustEveryStatement`.
pub const TRUST_FLAG: &str = "--trust-every-statement";

/// How a command tells the database the org: the service's key from `--context-key-file`
/// (one line `kid:hex`) or [`CONTEXT_KEY_VAR`]; the plain setting only when
/// `--trust-every-statement` says so; an error naming both otherwise.
pub fn service_context(o: &std::collections::HashMap<&str, &str>) -> Result<OrgContext, String> {
    let key = match o.get("--context-key-file") {
        Some(file) => {
            Some(ContextKey::from_file(std::path::Path::new(file)).map_err(|e| e.to_string())?)
        }
        None => ContextKey::from_env(CONTEXT_KEY_VAR).map_err(|e| e.to_string())?,
    };
    choose(key, o.contains_key(TRUST_FLAG))
}

/// The org context of a key the command was given (or none) and the plain-mode flag.
fn choose(key: Option<ContextKey>, trust_every_statement: bool) -> Result<OrgContext, String> {
    match (key, trust_every_statement) {
        (Some(_), true) => Err(format!(
            "{TRUST_FLAG} and a context key do not combine: the key is for a database in the \
             signed mode, the flag for one in the plain mode; give one"
        )),
        (Some(key), false) => Ok(OrgContext::Signed(key)),
        (None, true) => Ok(OrgContext::TrustEveryStatement),
        (None, false) => Err(format!(
            "no context key: give the service's key with --context-key-file F (one line kid:hex) \
             or {CONTEXT_KEY_VAR}=kid:hex, the key the database holds (`cargo xtask context-key \
             rotate` adds one and prints it); for a database generated in the plain mode, which \
             trusts every statement, pass {TRUST_FLAG}"
        )),
    }
}

/// 32 bytes from the OS random source (two v4 UUIDs: 244 random bits).
fn random_secret() -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key
}

/// Adds key `kid` with secret `hex` to the database at `admin_url` (its owner or an
/// administrator), first retiring every other key `retire_minutes` from now when given, in one
/// transaction.
fn install(
    admin_url: &str,
    kid: &str,
    hex: &str,
    retire_minutes: Option<u32>,
) -> Result<(), String> {
    let retire = retire_minutes.map_or_else(String::new, |minutes| {
        format!(
            "SELECT tenant_context.retire_key(kid, now() + interval '{minutes} minutes')
               FROM tenant_context.keys WHERE retire_after IS NULL OR retire_after > now() + interval '{minutes} minutes';"
        )
    });
    let mut conn =
        diesel::PgConnection::establish(admin_url).map_err(|e| format!("connecting: {e}"))?;
    conn.batch_execute(&format!(
        "BEGIN; {retire} SELECT tenant_context.add_key('{kid}', '\\x{hex}'); COMMIT;"
    ))
    .map_err(|e| format!("adding the key (the database needs the signed-context migration, and this URL its owner or an administrator): {e}"))
}

/// A new random key `kid`: the key and its `kid:hex` line. Checks the id before anything is
/// written anywhere.
fn new_key(kid: &str) -> Result<(ContextKey, String), String> {
    let secret = random_secret();
    let key = ContextKey::new(kid, &secret).map_err(|e| e.to_string())?;
    Ok((
        key,
        format!("{kid}:{}", tenant_core::context::to_hex(&secret)),
    ))
}

/// A fresh key, added to each story database a command made itself (the demo, the probe and
/// the benches without `--database-url`), which is thrown away with it.
pub fn throwaway_key(admin_urls: &[&str]) -> Result<ContextKey, String> {
    throwaway_key_line(admin_urls)
        .and_then(|line| ContextKey::parse(&line).map_err(|e| e.to_string()))
}

/// [`throwaway_key`] as its `kid:hex` line, for a process started with it in
/// [`CONTEXT_KEY_VAR`].
pub fn throwaway_key_line(admin_urls: &[&str]) -> Result<String, String> {
    let kid = format!("xtask{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    let (key, line) = new_key(&kid)?;
    let hex = line.split_once(':').map(|(_, h)| h).unwrap_or_default();
    for url in admin_urls {
        install(url, &kid, hex, None)?;
    }
    drop(key);
    Ok(line)
}

/// `cargo xtask context-key rotate --database-url ADMIN_URL [--kid KID] [--retire-after MINUTES]`:
/// a new key for the signed org context. It is added to the database (where only the table
/// owner reads it) and printed once for the service's configuration; every other key stays
/// valid for MINUTES more (default 60), so services can move to the new key without a gap.
/// `add`: see [`add_context_key`].
pub fn context_key(args: &[&str]) -> Result<(), String> {
    if let ["add", rest @ ..] = args {
        return add_context_key(rest);
    }
    let ["rotate", rest @ ..] = args else {
        return Err(format!(
            "context-key: expected rotate or add\n{}",
            crate::USAGE
        ));
    };
    let o = options(rest, &["--database-url", "--kid", "--retire-after"], &[])?;
    let url = required(&o, "--database-url")?;
    let minutes: u32 = o
        .get("--retire-after")
        .map_or(Ok(60), |m| m.parse())
        .map_err(|e| format!("--retire-after: {e}"))?;
    let kid = o.get("--kid").map_or_else(
        || format!("k{}", chrono::Utc::now().format("%Y%m%d%H%M%S")),
        |k| (*k).to_owned(),
    );
    let (_, line) = new_key(&kid)?;
    let hex = line.split_once(':').map(|(_, h)| h).unwrap_or_default();
    install(url, &kid, hex, Some(minutes))?;
    println!("new context key {kid} added; the others stay valid for {minutes} minutes");
    println!("configure the service with: kid = {kid}, key = {hex}");
    println!("(as one line, for {CONTEXT_KEY_VAR} or a key file: {line})");
    Ok(())
}

/// `cargo xtask context-key add --database-url ADMIN_URL (--from-file F | --from-env VAR)`:
/// adds a key the service already has (one line `kid:hex`) to another database, so that one
/// key serves several. Nothing is retired; the key is checked before anything is written.
fn add_context_key(args: &[&str]) -> Result<(), String> {
    let o = options(args, &["--database-url", "--from-file", "--from-env"], &[])?;
    let url = required(&o, "--database-url")?;
    let text = match (o.get("--from-file"), o.get("--from-env")) {
        (Some(file), None) => {
            std::fs::read_to_string(file).map_err(|e| format!("reading {file}: {e}"))?
        }
        (None, Some(var)) => std::env::var(var).map_err(|e| format!("{var}: {e}"))?,
        _ => {
            return Err(
                "context-key add: give exactly one of --from-file F and --from-env VAR".into(),
            );
        }
    };
    // Checks the id, the hex and the length; the error never shows the key.
    let key = ContextKey::parse(&text).map_err(|e| e.to_string())?;
    let (_, hex) = text.trim().split_once(':').unwrap_or_default();
    install(url, key.kid(), hex.trim(), None)?;
    println!("context key {} added", key.kid());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_mode_is_only_by_name_and_never_beside_a_key() {
        let key = ContextKey::parse(tenant_testkit::TEST_CONTEXT_KEY).unwrap();
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
