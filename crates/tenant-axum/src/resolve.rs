//! [`OrgResolver`], how a request names its org, and [`OrgRejection`], why it does not.

use std::future::Future;

use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use tenant_core::OrgId;

/// Resolves the org a request acts for. The layer calls it before the handler; a rejection
/// is the response, and the handler never runs.
///
/// Ready implementations: [`HeaderOrg`](crate::HeaderOrg), [`JwtClaimOrg`](crate::JwtClaimOrg),
/// [`SubdomainOrg`](crate::SubdomainOrg). Your own (a session cookie, a membership check)
/// implements this; it may query the database.
pub trait OrgResolver: Send + Sync + 'static {
    /// The org of the request whose head is `parts`, or why there is none.
    fn resolve(&self, parts: &Parts) -> impl Future<Output = Result<OrgId, OrgRejection>> + Send;
}

/// Why a request has no org. Each maps to one status; the body names the class and a fixed
/// sentence, never the request's own values (nothing is reflected back).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgRejection {
    /// Nothing in the request names an org (no header, no token, the bare domain): 401.
    #[error("the request names no org: {0}")]
    Missing(&'static str),
    /// What names the org is not an org id or is not well-formed: 400.
    #[error("the request's org is malformed: {0}")]
    Malformed(&'static str),
    /// The credential that should name the org does not verify (forged, expired, wrong
    /// algorithm): 401.
    #[error("the request's credential does not verify: {0}")]
    Unauthenticated(&'static str),
    /// The caller may not act for the org it names, or no such org is open to it (one status
    /// for both, so that a caller cannot tell an org exists): 403.
    #[error("the request may not act for that org: {0}")]
    Forbidden(&'static str),
}

impl OrgRejection {
    /// The HTTP status of this rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            OrgRejection::Missing(_) | OrgRejection::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            OrgRejection::Malformed(_) => StatusCode::BAD_REQUEST,
            OrgRejection::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }

    /// The class the body names.
    pub fn class(&self) -> &'static str {
        match self {
            OrgRejection::Missing(_) => "org_missing",
            OrgRejection::Malformed(_) => "org_malformed",
            OrgRejection::Unauthenticated(_) => "unauthenticated",
            OrgRejection::Forbidden(_) => "forbidden",
        }
    }
}

impl IntoResponse for OrgRejection {
    fn into_response(self) -> Response {
        tracing::info!(class = self.class(), "tenant.request.rejected");
        crate::error::body(self.status(), self.class(), &self.to_string())
    }
}
