//! The API Gateway REQUEST authorizer.

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
};
use pacs_shared::Context;

/// Why a request gets no policy at all: API Gateway answers 401.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizerError {
    /// The key is missing, malformed, unknown or revoked.
    #[error("Unauthorized")]
    Unauthorized,
    /// The tenants table or the secrets could not be read.
    #[error("authorizer failed: {0}")]
    Internal(String),
}

/// Decides one request: an Allow policy with the principal as context, a
/// Deny policy with `code` and `message` in its context (API Gateway answers
/// 403 with them), or [`AuthorizerError::Unauthorized`] (401).
pub async fn handle(
    _ctx: &Context,
    _event: ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> Result<ApiGatewayCustomAuthorizerResponse, AuthorizerError> {
    Err(AuthorizerError::Unauthorized)
}

impl From<AuthorizerError> for lambda_runtime::Diagnostic {
    fn from(err: AuthorizerError) -> Self {
        // API Gateway answers 401 only when the error message is exactly
        // "Unauthorized"; anything else becomes a 500.
        let error_type = match err {
            AuthorizerError::Unauthorized => "Unauthorized",
            AuthorizerError::Internal(_) => "AuthorizerFailed",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: err.to_string(),
        }
    }
}
