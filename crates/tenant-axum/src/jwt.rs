//! [`JwtClaimOrg`]: the org id in a claim of a bearer JWT the service verifies.

use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tenant_core::OrgId;

use crate::resolve::{OrgRejection, OrgResolver};

/// Reads the org id from claim `claim` of the bearer token in `Authorization`, after
/// verifying the token's signature, algorithm and expiry (jsonwebtoken).
///
/// The algorithms are the ones the [`Validation`] names, never the token's own choice: a
/// token signed with another algorithm, with `none`, or with another key is refused.
///
/// ```
/// use tenant_axum::JwtClaimOrg;
/// // HS256 with the issuer's shared secret; the org in claim "org".
/// let resolver = JwtClaimOrg::hs256(b"a secret of at least 32 bytes, from your vault", "org")?;
/// # Ok::<(), tenant_axum::JwtKeyError>(())
/// ```
#[derive(Clone)]
pub struct JwtClaimOrg {
    key: DecodingKey,
    validation: Validation,
    claim: String,
}

/// Without the key.
impl std::fmt::Debug for JwtClaimOrg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtClaimOrg")
            .field("algorithms", &self.validation.algorithms)
            .field("claim", &self.claim)
            .finish_non_exhaustive()
    }
}

/// The shortest HS256 secret [`JwtClaimOrg::hs256`] takes: 32 bytes, the hash's size
/// (RFC 7518 section 3.2).
pub const MIN_SECRET: usize = 32;

/// Why [`JwtClaimOrg::hs256`] refused its secret.
#[derive(Debug, thiserror::Error)]
pub enum JwtKeyError {
    /// The secret is shorter than [`MIN_SECRET`] bytes.
    #[error(
        "the HS256 secret is {bytes} bytes; it must be at least 32 (a random value from your \
         secret store, not a password)"
    )]
    ShortSecret {
        /// Its length.
        bytes: usize,
    },
    /// jsonwebtoken could not make a key of it.
    #[error("jsonwebtoken could not make a key of the secret: {0}")]
    Key(jsonwebtoken::errors::Error),
}

impl JwtClaimOrg {
    /// Tokens signed with HS256 and `secret`, which must carry `exp` (checked) and the org id
    /// in claim `claim`.
    ///
    /// # Errors
    /// [`JwtKeyError::ShortSecret`] below 32 bytes; [`JwtKeyError::Key`] when jsonwebtoken
    /// cannot make a key of it.
    pub fn hs256(secret: &[u8], claim: impl Into<String>) -> Result<Self, JwtKeyError> {
        if secret.len() < MIN_SECRET {
            return Err(JwtKeyError::ShortSecret {
                bytes: secret.len(),
            });
        }
        Ok(Self::new(
            DecodingKey::from_secret(secret).map_err(JwtKeyError::Key)?,
            Validation::new(Algorithm::HS256),
            claim,
        ))
    }

    /// Tokens that verify with `key` under `validation` (its algorithms, issuer, audience,
    /// expiry), with the org id in claim `claim`. A token's `nbf` (not before) is always
    /// checked when it has one, whatever `validation` says.
    pub fn new(key: DecodingKey, mut validation: Validation, claim: impl Into<String>) -> Self {
        validation.validate_nbf = true;
        Self {
            key,
            validation,
            claim: claim.into(),
        }
    }
}

impl OrgResolver for JwtClaimOrg {
    async fn resolve(&self, parts: &Parts) -> Result<OrgId, OrgRejection> {
        let mut headers = parts.headers.get_all(AUTHORIZATION).iter();
        let header = headers
            .next()
            .ok_or(OrgRejection::Missing("no Authorization header"))?;
        if headers.next().is_some() {
            return Err(OrgRejection::Unauthenticated(
                "the request has more than one Authorization header",
            ));
        }
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or(OrgRejection::Unauthenticated(
                "the Authorization header is not a bearer token",
            ))?;
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &self.key, &self.validation)
            .map_err(|_| OrgRejection::Unauthenticated("the bearer token does not verify"))?
            .claims;
        let org = claims
            .get(&self.claim)
            .ok_or(OrgRejection::Forbidden("the token names no org"))?;
        org.as_str()
            .and_then(|s| s.parse().ok())
            .ok_or(OrgRejection::Malformed(
                "the token's org claim is not an org id",
            ))
    }
}
