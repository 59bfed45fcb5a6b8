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
/// # Ok::<(), tenant_axum::jsonwebtoken::errors::Error>(())
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

impl JwtClaimOrg {
    /// Tokens signed with HS256 and `secret`, which must carry `exp` (checked) and the org id
    /// in claim `claim`.
    ///
    /// # Errors
    /// jsonwebtoken's, when it cannot make a key of `secret`.
    pub fn hs256(
        secret: &[u8],
        claim: impl Into<String>,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(Self::new(
            DecodingKey::from_secret(secret)?,
            Validation::new(Algorithm::HS256),
            claim,
        ))
    }

    /// Tokens that verify with `key` under `validation` (its algorithms, issuer, audience,
    /// expiry), with the org id in claim `claim`.
    pub fn new(key: DecodingKey, validation: Validation, claim: impl Into<String>) -> Self {
        Self {
            key,
            validation,
            claim: claim.into(),
        }
    }
}

impl OrgResolver for JwtClaimOrg {
    async fn resolve(&self, parts: &Parts) -> Result<OrgId, OrgRejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(OrgRejection::Missing("no Authorization header"))?;
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
