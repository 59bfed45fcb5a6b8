//! The signed org context: the token a scoped transaction sets when the database runs the
//! default mode (`tenant_schema::ContextMode::Signed`), so that SQL in the session cannot
//! switch the org (docs/threat-model.md #5): changing the setting gives no org, and a token needs the
//! key, which the application role cannot read.
//!
//! Token: `v1.<org>.<expiry>.<pid>.<kid>.<mac>`, `<mac>` the hex HMAC-SHA256 under the key of
//! everything before it; bound to one backend (`<pid>`, or `0` behind a transaction pooler,
//! where the client cannot know the server process) and a short expiry. The database verifies
//! it with the same key (the view `tenant_context.current_org`, which the policies read).
//!
//! Where the token travels: in the message that opens the transaction, placed past the part
//! of the statement text PostgreSQL records for `pg_stat_activity`
//! (`track_activity_query_size` bytes), so that no other session, of the same role or not,
//! ever reads a token. (The server log does hold it when that statement fails and
//! `log_min_error_statement` asks for it; the application role cannot read the log.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{OrgId, TenantError};

/// The setting that holds the token.
pub const TOKEN_SETTING: &str = "tenant.org_token";

/// A key the service signs org contexts with (from its configuration; the database holds the
/// same key where only the table owner can read it). `Debug` does not show the key.
#[derive(Clone)]
pub struct ContextKey {
    kid: String,
    /// HMAC-SHA256 keyed once (its inner and outer pads hashed): a token costs two blocks.
    keyed: Hmac<Sha256>,
    ttl: Duration,
}

impl std::fmt::Debug for ContextKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextKey")
            .field("kid", &self.kid)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl ContextKey {
    /// Key `kid` (1 to 40 of `[A-Za-z0-9_-]`) with secret `key` (32 bytes or more). Tokens
    /// live 10 minutes by default ([`with_ttl`](Self::with_ttl)): longer than any transaction
    /// should, short enough that a stolen one is soon worthless.
    ///
    /// # Errors
    /// [`TenantError::ContextKey`] naming what is wrong.
    pub fn new(kid: &str, key: &[u8]) -> Result<Self, TenantError> {
        check_key("key", kid, key).map_err(TenantError::ContextKey)?;
        // new_from_slice accepts any key length for HMAC.
        let keyed = Hmac::<Sha256>::new_from_slice(key)
            .map_err(|e| TenantError::ContextKey(format!("the key cannot key HMAC: {e}")))?;
        Ok(Self {
            kid: kid.to_owned(),
            keyed,
            ttl: Duration::from_secs(600),
        })
    }

    /// Key `kid` from its hex text, as `cargo xtask context-key rotate` prints it.
    ///
    /// # Errors
    /// [`TenantError::ContextKey`] for text that is not hex, or a short key.
    pub fn from_hex(kid: &str, hex: &str) -> Result<Self, TenantError> {
        let bytes = hex_bytes("key", hex).map_err(TenantError::ContextKey)?;
        Self::new(kid, &bytes)
    }

    /// A key written as `kid:hex`, the form `cargo xtask context-key rotate` prints for a
    /// service's configuration (surrounding whitespace ignored).
    ///
    /// ```
    /// let key = tenant_core::context::ContextKey::parse(
    ///     "k1:4242424242424242424242424242424242424242424242424242424242424242",
    /// )?;
    /// assert_eq!(key.kid(), "k1");
    /// # Ok::<(), tenant_core::TenantError>(())
    /// ```
    ///
    /// # Errors
    /// [`TenantError::ContextKey`] naming what is wrong (no `:`, the id, the hex, the length);
    /// never the key itself.
    pub fn parse(text: &str) -> Result<Self, TenantError> {
        let Some((kid, hex)) = text.trim().split_once(':') else {
            return Err(TenantError::ContextKey(
                "a context key is written `kid:hex` (what `cargo xtask context-key rotate` prints); this text has no `:`".into(),
            ));
        };
        Self::from_hex(kid, hex)
    }

    /// [`parse`](Self::parse) of the environment variable `var`; `None` when it is not set.
    ///
    /// # Errors
    /// [`TenantError::ContextKey`] naming the variable and what is wrong with it.
    pub fn from_env(var: &str) -> Result<Option<Self>, TenantError> {
        match std::env::var(var) {
            Ok(text) => Self::parse(&text)
                .map(Some)
                .map_err(|e| TenantError::ContextKey(format!("{var}: {e}"))),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(TenantError::ContextKey(format!(
                "{var} is not UTF-8 text: write the key as `kid:hex`"
            ))),
        }
    }

    /// [`from_env`](Self::from_env), with an unset variable an error: what a service that
    /// runs in the (default) signed mode reads its key with.
    ///
    /// # Errors
    /// [`TenantError::ContextKey`] naming the variable: unset, or not a key.
    pub fn require_env(var: &str) -> Result<Self, TenantError> {
        Self::from_env(var)?.ok_or_else(|| {
            TenantError::ContextKey(format!(
                "{var} is not set: set it to the service's context key, `kid:hex` as `cargo xtask \
                 context-key rotate` prints it (the database must hold the same key)"
            ))
        })
    }

    /// [`parse`](Self::parse) of the file at `path` (readable by the service only).
    ///
    /// # Errors
    /// [`TenantError::ContextKey`] naming the file and what is wrong with it.
    pub fn from_file(path: &std::path::Path) -> Result<Self, TenantError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            TenantError::ContextKey(format!(
                "reading the context key file {}: {e}",
                path.display()
            ))
        })?;
        Self::parse(&text).map_err(|e| TenantError::ContextKey(format!("{}: {e}", path.display())))
    }

    /// How long a token stays valid.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The token for `org` on backend `pid`, valid for the key's lifetime from now.
    pub fn token(&self, org: OrgId, pid: i32) -> String {
        let expiry = SystemTime::now()
            .checked_add(self.ttl)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let message = format!("v1.{}.{expiry}.{pid}.{}", org.sql_literal(), self.kid);
        format!("{message}.{}", self.mac(&message))
    }

    fn mac(&self, message: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(message.as_bytes());
        to_hex(&mac.finalize().into_bytes())
    }
}

/// Checks a key as every HMAC key of tenant-safe wants it (this module's, and tenant-ops'
/// seal key): id `kid` 1 to 40 of `[A-Za-z0-9_-]`, `secret` 32 bytes or more. `what` names the
/// key in the message (`key`, `seal key`).
///
/// # Errors
/// What is wrong, and what to use instead.
pub fn check_key(what: &str, kid: &str, secret: &[u8]) -> Result<(), String> {
    if kid.is_empty()
        || kid.len() > 40
        || !kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "the {what} id must be 1 to 40 letters, digits, `_` or `-`"
        ));
    }
    if secret.len() < 32 {
        return Err(format!(
            "the {what} has {} bytes: use 32 random bytes or more",
            secret.len()
        ));
    }
    Ok(())
}

/// Lower-case hex of `bytes` (MACs, digests and keys, as the database's `encode(.., 'hex')`
/// writes them).
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    hex
}

/// The bytes of a key written as hex text (surrounding whitespace ignored).
///
/// # Errors
/// When the text is not hex; `what` names the key in the message.
pub fn hex_bytes(what: &str, hex: &str) -> Result<Vec<u8>, String> {
    let hex = hex.trim();
    if !hex.len().is_multiple_of(2) || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("the {what} is not hex text"));
    }
    Ok((0..hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect())
}

/// The most statement text PostgreSQL may record per session (`track_activity_query_size`) for
/// which the signed context pads its opening message past it; a server recording more is
/// refused (lower the setting, or do not use the signed context).
pub const MAX_RECORDED_TEXT: usize = 16 * 1024;

/// What a signed token needs to know of the server connection, read once per connection
/// ([`Backend::read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    pid: i32,
    recorded: usize,
}

impl Backend {
    /// Reads the backend's pid and how much statement text the server records for
    /// `pg_stat_activity`: one round trip.
    ///
    /// # Errors
    /// The database's error when the query fails.
    pub fn read(conn: &mut diesel::PgConnection) -> Result<Self, TenantError> {
        use diesel::RunQueryDsl;
        let (pid, recorded) = Self::query().get_result(conn)?;
        Ok(Self::from_row(pid, recorded))
    }

    /// What [`read`](Self::read) runs (the async pool runs it too).
    pub(crate) fn query() -> diesel::dsl::select<
        diesel::expression::SqlLiteral<(diesel::sql_types::Integer, diesel::sql_types::Integer)>,
    > {
        diesel::select(diesel::dsl::sql::<(
            diesel::sql_types::Integer,
            diesel::sql_types::Integer,
        )>(
            "pg_backend_pid(), (SELECT setting::int FROM pg_catalog.pg_settings WHERE name = 'track_activity_query_size')",
        ))
    }

    /// The backend of [`query`](Self::query)'s row.
    pub(crate) fn from_row(pid: i32, recorded: i32) -> Self {
        Self {
            pid,
            recorded: usize::try_from(recorded).unwrap_or(MAX_RECORDED_TEXT + 1),
        }
    }

    /// A backend that was not read, for unit tests of the messages.
    #[cfg(test)]
    pub(crate) fn for_tests(pid: i32, recorded: usize) -> Self {
        Self { pid, recorded }
    }

    /// The server process (0 when [`unbound`](Self::unbound)).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The same backend, for tokens that name none: behind a transaction pooler the next
    /// transaction may run on another server process.
    pub fn unbound(self) -> Self {
        Self { pid: 0, ..self }
    }

    /// The bytes of statement text `pg_stat_activity` shows of a session.
    pub fn recorded_text(&self) -> usize {
        self.recorded
    }

    /// Checks that a token can be kept out of the recorded text.
    ///
    /// # Errors
    /// [`UnsafeConfig::RecordedTextTooLarge`](crate::UnsafeConfig::RecordedTextTooLarge) when
    /// the server records more than [`MAX_RECORDED_TEXT`].
    pub fn check_recorded_text(&self) -> Result<(), TenantError> {
        if self.recorded > MAX_RECORDED_TEXT {
            return Err(crate::UnsafeConfig::RecordedTextTooLarge {
                bytes: self.recorded,
                max: MAX_RECORDED_TEXT,
            }
            .into());
        }
        Ok(())
    }
}

/// `head`, then a comment long enough that `tail` starts past the first `recorded` bytes of
/// the message (the part `pg_stat_activity` shows), then `tail`.
pub(crate) fn past_recorded_text(head: &str, tail: &str, recorded: usize) -> String {
    let pad = recorded.saturating_sub(head.len() + 4);
    let mut out = String::with_capacity(head.len() + pad + 4 + tail.len());
    out.push_str(head);
    out.push_str("/*");
    out.extend(std::iter::repeat_n(' ', pad));
    out.push_str("*/");
    out.push_str(tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_read_as_kid_colon_hex_and_a_bad_one_is_named_without_the_secret() {
        let hex = "42".repeat(32);
        assert_eq!(
            ContextKey::parse(&format!(" k1:{hex}\n")).unwrap().kid(),
            "k1"
        );
        let no_colon = ContextKey::parse(&hex).unwrap_err().to_string();
        assert!(
            no_colon.contains("kid:hex") && !no_colon.contains(&hex),
            "{no_colon}"
        );
        let short = ContextKey::parse("k1:4242").unwrap_err().to_string();
        assert!(short.contains("key"), "{short}");
        let missing = std::path::Path::new("/nonexistent/tenant-key");
        let err = ContextKey::from_file(missing).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/tenant-key"), "{err}");
        assert!(
            ContextKey::from_env("TENANT_TEST_KEY_THAT_IS_NOT_SET")
                .unwrap()
                .is_none()
        );
        let err = ContextKey::require_env("TENANT_TEST_KEY_THAT_IS_NOT_SET")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("TENANT_TEST_KEY_THAT_IS_NOT_SET is not set") && err.contains("kid:hex"),
            "{err}"
        );
    }

    #[test]
    fn the_tail_starts_past_the_recorded_text() {
        for recorded in [0, 10, 100, 1024, 1025, 16 * 1024] {
            let head = "BEGIN; SELECT 1, ";
            let message = past_recorded_text(head, "'secret'", recorded);
            let at = message.find("'secret'").unwrap();
            assert!(at >= recorded, "{recorded}: at {at}");
            assert!(
                at <= recorded.max(head.len() + 4),
                "{recorded}: no more padding than needed"
            );
            assert!(message.starts_with(head) && message.ends_with("'secret'"));
        }
    }

    #[test]
    fn a_server_recording_more_than_the_maximum_is_refused_by_name() {
        let ok = Backend {
            pid: 7,
            recorded: 1024,
        };
        assert!(ok.check_recorded_text().is_ok());
        assert_eq!(
            (ok.unbound().pid(), ok.unbound().recorded_text()),
            (0, 1024)
        );
        let big = Backend {
            pid: 7,
            recorded: MAX_RECORDED_TEXT + 1,
        };
        let message = big.check_recorded_text().unwrap_err().to_string();
        assert!(
            message.contains("track_activity_query_size") && message.contains("16385 bytes"),
            "{message}"
        );
    }

    #[test]
    fn the_mac_is_hmac_sha256() {
        // The expected value computed independently: Python's
        // hmac.new(b"\x0b" * 32, b"Hi There", hashlib.sha256).hexdigest().
        let key = ContextKey::new("k1", &[0x0b; 32]).unwrap();
        assert_eq!(
            key.mac("Hi There"),
            "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"
        );
        assert_ne!(key.mac("Hi There"), key.mac("Hi there"));
    }

    #[test]
    fn a_token_names_org_backend_and_key_and_a_bad_key_is_refused() {
        let key = ContextKey::new("k1", &[7; 32]).unwrap();
        let org: OrgId = "0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e".parse().unwrap();
        let token = key.token(org, 4242);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 6);
        assert_eq!(
            (parts[0], parts[1], parts[3], parts[4]),
            ("v1", "0191f5a6-8e1c-7c3a-9d4e-1f2a3b4c5d6e", "4242", "k1")
        );
        assert_eq!(parts[5], key.mac(&parts[..5].join(".")));
        assert!(
            matches!(ContextKey::new("k1", &[1; 16]), Err(TenantError::ContextKey(m)) if m.contains("16 bytes"))
        );
        assert!(ContextKey::new("bad kid!", &[1; 32]).is_err());
        assert!(ContextKey::from_hex("k1", "zz").is_err());
        assert_eq!(
            ContextKey::from_hex("k1", &"ab".repeat(32))
                .map(|k| k.mac("m"))
                .unwrap_or_default(),
            ContextKey::new("k1", &[0xab; 32]).unwrap().mac("m")
        );
        assert!(!format!("{key:?}").contains("7, 7"));
    }
}
