//! [`ApiError`]: a [`TenantError`] as an HTTP response, and the one body every response of
//! this crate has.
//!
//! Invariant: a body carries a class and a fixed sentence chosen here, never text from the
//! database, the statement or the request, so no row data or value can reach a client through
//! an error.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tenant_core::TenantError;

/// A handler's error: a [`TenantError`] as an HTTP response.
///
/// | status | when |
/// |---|---|
/// | 400 | an unparsable org id ([`TenantError::OrgId`]) |
/// | 403 | the database refused a write into another org ([`TenantError::CrossOrgWrite`]), or an operator access was refused |
/// | 409 | a serialization failure or deadlock, after any retries ([`TenantError::is_retryable`]) |
/// | 503 | no connection in time, the database unreachable, a statement or lock timeout |
/// | 500 | anything else: a refusal of the library's checks is a bug of the service, not of the request |
///
/// The body is `{"error": "<class>", "message": "<a fixed sentence>"}`, the class being
/// [`TenantError::class`]; the error itself is logged (`tenant.request.error`), not sent.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ApiError(#[from] pub TenantError);

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        let e = &self.0;
        match e {
            TenantError::OrgId(_) => StatusCode::BAD_REQUEST,
            TenantError::CrossOrgWrite { .. } | TenantError::AccessRefused(_) => {
                StatusCode::FORBIDDEN
            }
            TenantError::Pool(_)
            | TenantError::Connect(_)
            | TenantError::ConnectionLost
            | TenantError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ if e.is_retryable() => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let class = self.0.class();
        if status.is_server_error() {
            tracing::warn!(class, status = status.as_u16(), "tenant.request.error");
        } else {
            tracing::info!(class, status = status.as_u16(), "tenant.request.error");
        }
        let message = match status {
            StatusCode::BAD_REQUEST => "the org id is not well-formed",
            StatusCode::FORBIDDEN => "the request touched data it may not",
            StatusCode::CONFLICT => "the request conflicted with another; retry it",
            StatusCode::SERVICE_UNAVAILABLE => "the database is busy or unreachable; retry later",
            _ => "the request failed; the service logged why",
        };
        body(status, class, message)
    }
}

/// The response of `status` with body `{"error": class, "message": message}`.
pub(crate) fn body(status: StatusCode, class: &str, message: &str) -> Response {
    let json = serde_json::json!({ "error": class, "message": message }).to_string();
    let mut response = (status, json).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_class_has_its_status() {
        let cases = [
            (TenantError::Pool("timeout".into()), 503),
            (TenantError::Connect("down".into()), 503),
            (TenantError::ConnectionLost, 503),
            (
                TenantError::CrossOrgWrite {
                    table: "deals".into(),
                },
                403,
            ),
            (TenantError::OrgMismatch, 500),
            (TenantError::TransactionAborted, 500),
            (TenantError::CommitOutcomeUnknown, 500),
        ];
        for (e, status) in cases {
            assert_eq!(ApiError(e).status().as_u16(), status);
        }
        let bad: Result<tenant_core::OrgId, _> = "not-an-org".parse();
        let e = TenantError::from(bad.unwrap_err());
        assert_eq!(ApiError(e).status().as_u16(), 400);
    }
}
