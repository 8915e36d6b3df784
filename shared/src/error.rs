//! The one error type a route returns, and its one mapping to the
//! contract's `{"success": false, "code", "message"}` body and status.
//!
//! Domain code raises errors of its own concern (store, keys, DICOM) and
//! converts them here. An internal error's detail goes to the log; the
//! client only ever sees a generic message and the request id to quote.

use http::StatusCode;
use serde_json::json;

/// Result of a route step.
pub type ApiResult<T> = Result<T, ApiError>;

/// An error as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status of the response.
    pub status: StatusCode,
    /// Machine-readable PascalCase code, e.g. `QuotaExceeded`.
    pub code: &'static str,
    /// Human text that says what went wrong and, for bad input, what to fix.
    pub message: String,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `ValidationError`: the request is malformed; `message` names the
    /// field and what to fix.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationError", message)
    }

    /// 400 `InvalidJson`: the body is not the JSON the route expects.
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidJson", message)
    }

    /// 401 `Unauthorized`: no key, or one that is unknown, revoked or
    /// malformed. Says nothing about which.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "a valid API key is required in x-api-key or Authorization: Bearer",
        )
    }

    /// 403 with a specific code, e.g. `HospitalInactive`.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 403 `Forbidden`: the key's role may not do this.
    pub fn role_required(what: &str) -> Self {
        Self::forbidden("Forbidden", format!("this key's role may not {what}"))
    }

    /// 404 `NotFound`: absent, or belonging to another tenant; never 403
    /// for another tenant's resource.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{what} not found"),
        )
    }

    /// 409 `Conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    /// 413 `PayloadTooLarge`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", message)
    }

    /// 405 `MethodNotAllowed`.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
        )
    }

    /// 500 `InternalError`. `detail` is logged, never sent.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "the request could not be completed; retry later",
        )
    }

    /// 503 `ServiceUnavailable`: a dependency is throttling or down; the
    /// client may retry.
    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "dependency unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the service is busy; retry with backoff",
        )
    }

    /// The contract's error body.
    pub fn body(&self) -> serde_json::Value {
        json!({ "success": false, "code": self.code, "message": self.message })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}
