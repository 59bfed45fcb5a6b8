//! The key a command gives a story database it made itself (the demo, the probe and the
//! benches without `--database-url`). `cargo xtask context-key rotate|add|list` is
//! tenant-cli's command.

use tenant_core::context::ContextKey;

pub use tenant_cli::context::CONTEXT_KEY_VAR;

/// 32 bytes from the OS random source (two v4 UUIDs: 244 random bits).
fn random_secret() -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key
}

/// Adds key `kid` to the database at `admin_url` (tenant-core's `keys::install`).
fn install(admin_url: &str, kid: &str, secret: &[u8]) -> Result<(), String> {
    tenant_core::keys::install(admin_url, kid, secret, None).map_err(|e| e.to_string())
}

/// A new random secret for key `kid`, the id checked before anything is written anywhere.
fn new_key(kid: &str) -> Result<Vec<u8>, String> {
    let secret = random_secret();
    ContextKey::new(kid, &secret).map_err(|e| e.to_string())?;
    Ok(secret)
}

/// A key as a service configures it: one line `kid:hex`.
fn key_line(kid: &str, secret: &[u8]) -> String {
    format!("{kid}:{}", tenant_core::context::to_hex(secret))
}

/// A fresh key, added to each story database a command made itself (the demo, the probe and
/// the benches without `--database-url`), which is thrown away with it.
fn throwaway(admin_urls: &[&str]) -> Result<(String, Vec<u8>), String> {
    let kid = format!("xtask{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    let secret = new_key(&kid)?;
    for url in admin_urls {
        install(url, &kid, &secret)?;
    }
    Ok((kid, secret))
}

/// [`throwaway`]'s key.
pub fn throwaway_key(admin_urls: &[&str]) -> Result<ContextKey, String> {
    let (kid, secret) = throwaway(admin_urls)?;
    ContextKey::new(&kid, &secret).map_err(|e| e.to_string())
}

/// [`throwaway`]'s key as its `kid:hex` line, for a process started with it in
/// [`CONTEXT_KEY_VAR`].
pub fn throwaway_key_line(admin_urls: &[&str]) -> Result<String, String> {
    let (kid, secret) = throwaway(admin_urls)?;
    Ok(key_line(&kid, &secret))
}
