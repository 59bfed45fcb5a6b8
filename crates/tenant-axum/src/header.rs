//! [`HeaderOrg`]: the org id in a request header (behind a gateway that sets it after
//! authenticating the caller; never trust one a client sets directly).

use axum::http::HeaderName;
use axum::http::request::Parts;
use tenant_core::OrgId;

use crate::resolve::{OrgRejection, OrgResolver};

/// Reads the org id from one header, as [`OrgId`] parses it (a UUID, hyphenated).
///
/// Only for a header your own infrastructure sets after authenticating the caller (an API
/// gateway, a sidecar): a client that can set it can name any org.
#[derive(Debug, Clone)]
pub struct HeaderOrg {
    name: HeaderName,
}

impl HeaderOrg {
    /// Reads header `name`, lowercase (`"x-org-id"`).
    ///
    /// # Panics
    /// When `name` is not a valid lowercase header name (a constant of your code: a bug that
    /// shows at start-up).
    pub fn new(name: &'static str) -> Self {
        Self {
            name: HeaderName::from_static(name),
        }
    }
}

impl OrgResolver for HeaderOrg {
    async fn resolve(&self, parts: &Parts) -> Result<OrgId, OrgRejection> {
        let mut values = parts.headers.get_all(&self.name).iter();
        let value = values
            .next()
            .ok_or(OrgRejection::Missing("the org header is absent"))?;
        if values.next().is_some() {
            return Err(OrgRejection::Malformed(
                "the org header appears more than once",
            ));
        }
        let text = value
            .to_str()
            .map_err(|_| OrgRejection::Malformed("the org header is not text"))?;
        text.parse()
            .map_err(|_| OrgRejection::Malformed("the org header is not an org id"))
    }
}
