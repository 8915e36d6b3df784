//! Handler of this route; see the crate's routes in README.md.

use lambda_http::{Body, Request, Response};
use pacs_shared::{ApiError, Context};

/// Handles one request that the authorizer already let through.
pub async fn handle(_ctx: &Context, _req: Request) -> Response<Body> {
    pacs_shared::http::error_response(&ApiError::new(
        http::StatusCode::NOT_IMPLEMENTED,
        "NotImplemented",
        "this route is not built yet",
    ))
}
