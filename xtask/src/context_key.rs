//! The key a command gives a story database it made itself (the demo, the probe and the
//! benches without `--database-url`). `cargo xtask context-key rotate|add|list` is
//! tenant-cli's command.

use tenant_core::context::ContextKey;

pub use tenant_cli::context::CONTEXT_KEY_VAR;

/// Adds key `kid` to the database at `admin_url` (tenant-core's `keys::install`, which checks
/// the id before it writes anything).
fn install(admin_url: &str, kid: &str, secret: &[u8]) -> Result<(), String> {
    tenant_core::keys::install(admin_url, kid, secret, None).map_err(|e| e.to_string())
}

/// A fresh key, added to each story database a command made itself (the demo, the probe and
/// the benches without `--database-url`), which is thrown away with it.
fn throwaway(admin_urls: &[&str]) -> Result<(String, Vec<u8>), String> {
    let kid = format!("xtask{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    let secret = tenant_core::keys::random_secret();
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
    Ok(tenant_core::keys::key_line(&kid, &secret))
}
