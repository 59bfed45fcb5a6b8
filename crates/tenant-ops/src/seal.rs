//! Sealed exports: an export's manifest authenticated with HMAC-SHA256 under a key the
//! operations team holds, so that a restore can prove the file came from an export made with
//! that key. The manifest names the org and the schema and carries every table's SHA-256, and
//! a restore checks the rows against it: sealing the manifest seals the rows.
//!
//! The checksums alone are integrity, not authenticity: anyone can write a file consistent
//! with its own checksums, for any org. A restore given a [`SealKey`] refuses a file that is
//! not sealed by it.
//!
//! The seal is a top-level field of the document:
//! `"seal": { "kid": "<key id>", "hmac_sha256": "<hex of HMAC(key, compact JSON of manifest)>" }`.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// A key that seals exports (from the operations team's secrets; never the signed org
/// context's key, which serves another purpose). `Debug` does not show it.
#[derive(Clone)]
pub struct SealKey {
    kid: String,
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SealKey {
    /// Key `kid` (1 to 40 of `[A-Za-z0-9_-]`) with secret `secret` (32 bytes or more).
    ///
    /// # Errors
    /// What is wrong with the id or the secret.
    pub fn new(kid: &str, secret: &[u8]) -> Result<Self, String> {
        tenant_core::context::check_key("seal key", kid, secret)?;
        let keyed = Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|e| format!("the seal key cannot key HMAC: {e}"))?;
        Ok(Self {
            kid: kid.to_owned(),
            keyed,
        })
    }

    /// The key from a line `KID:HEX` (how `--seal-key-file` holds it).
    ///
    /// # Errors
    /// A line of another shape, hex that is not hex, or a short key.
    pub fn from_line(line: &str) -> Result<Self, String> {
        let (kid, hex) = line
            .trim()
            .split_once(':')
            .ok_or("a seal key file holds one line KID:HEX")?;
        let bytes = tenant_core::context::hex_bytes("seal key", hex)?;
        Self::new(kid, &bytes)
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    fn mac(&self, manifest: &Value) -> String {
        let mut mac = self.keyed.clone();
        mac.update(
            serde_json::to_string(manifest)
                .unwrap_or_default()
                .as_bytes(),
        );
        tenant_core::context::to_hex(&mac.finalize().into_bytes())
    }

    /// `document` (an export's JSON text) with its seal.
    ///
    /// # Errors
    /// When `document` is not JSON with a manifest.
    pub fn seal(&self, document: &str) -> Result<String, String> {
        let mut doc: Value =
            serde_json::from_str(document).map_err(|e| format!("not an export file: {e}"))?;
        if !doc["manifest"].is_object() {
            return Err("not an export file: no manifest".into());
        }
        let mac = self.mac(&doc["manifest"]);
        doc["seal"] = json!({ "kid": self.kid, "hmac_sha256": mac });
        Ok(serde_json::to_string(&doc).unwrap_or_default() + "\n")
    }

    /// Checks that `document` is sealed by this key.
    ///
    /// # Errors
    /// A file without a seal, sealed by another key, or whose manifest changed since.
    pub fn verify(&self, document: &str) -> Result<(), String> {
        let doc: Value =
            serde_json::from_str(document).map_err(|e| format!("not an export file: {e}"))?;
        let seal = &doc["seal"];
        if !seal.is_object() {
            return Err(format!(
                "the file is not sealed, and this restore requires a seal by key {}",
                self.kid
            ));
        }
        if seal["kid"] != self.kid.as_str() {
            return Err(format!(
                "the file is sealed by key {}, not by key {}",
                seal["kid"], self.kid
            ));
        }
        let expected = self.mac(&doc["manifest"]);
        let given = seal["hmac_sha256"].as_str().unwrap_or_default();
        // Compared whole, in constant time over the hex text's length.
        let differs = expected.len() != given.len()
            || expected
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                != 0;
        if differs {
            return Err(
                "the seal does not match the manifest: the file was changed after it was sealed, or sealed with another secret"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"format":"tenant-safe/org-export","version":1,"manifest":{"org":"o1","tables":[]},"data":{}}"#;

    #[test]
    fn a_sealed_document_verifies_and_any_change_or_other_key_does_not() {
        let key = SealKey::new("ops1", &[7; 32]).unwrap();
        let sealed = key.seal(DOC).unwrap();
        assert_eq!(key.verify(&sealed), Ok(()));
        let other_org = sealed.replace("\"o1\"", "\"o2\"");
        assert!(
            key.verify(&other_org)
                .unwrap_err()
                .contains("changed after it was sealed")
        );
        let other_secret = SealKey::new("ops1", &[8; 32]).unwrap();
        assert!(
            other_secret
                .verify(&sealed)
                .unwrap_err()
                .contains("another secret")
        );
        let other_kid = SealKey::new("ops2", &[7; 32]).unwrap();
        assert!(
            other_kid
                .verify(&sealed)
                .unwrap_err()
                .contains("sealed by key \"ops1\"")
        );
        assert!(key.verify(DOC).unwrap_err().contains("not sealed"));
        assert!(!format!("{key:?}").contains("7, 7"));
    }

    #[test]
    fn a_key_line_is_kid_colon_hex() {
        let key = SealKey::from_line(&format!("ops1:{}\n", "ab".repeat(32))).unwrap();
        assert_eq!(key.kid(), "ops1");
        for bad in ["", "ops1", "ops1:zz", "ops1:abab", ":abab", "bad kid!:00"] {
            assert!(SealKey::from_line(bad).is_err(), "{bad:?}");
        }
    }
}
