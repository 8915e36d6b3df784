//! Request and response helpers for the HTTP functions: the contract's
//! envelopes, JSON bodies with size limits, path and query parameters, and
//! the principal the authorizer handed over.

use http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};

/// Largest JSON body the management routes accept.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// `{"success": true, "data": ...}` with `status`.
pub fn ok<T: Serialize>(status: StatusCode, data: &T) -> Response<Body> {
    match serde_json::to_vec(&serde_json::json!({ "success": true, "data": data })) {
        Ok(bytes) => json_response(status, bytes),
        Err(e) => error_response(&ApiError::internal(format!("serialising response: {e}"))),
    }
}

/// The contract's error body, with the status and a log line at the level
/// the status deserves (warn for 4xx; the 5xx detail was logged when the
/// error was made).
pub fn error_response(err: &ApiError) -> Response<Body> {
    if err.status.is_client_error() {
        tracing::warn!(
            status = err.status.as_u16(),
            code = err.code,
            "request refused"
        );
    }
    json_response(err.status, err.body().to_string().into_bytes())
}

/// Turns a route's outcome into its response.
pub fn respond<T: Serialize>(status: StatusCode, outcome: ApiResult<T>) -> Response<Body> {
    match outcome {
        Ok(data) => ok(status, &data),
        Err(err) => error_response(&err),
    }
}

fn json_response(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Body::Binary(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The request body as bytes, refusing more than `limit`.
pub fn body_bytes(req: &Request, limit: usize) -> ApiResult<&[u8]> {
    let bytes: &[u8] = match req.body() {
        Body::Empty => &[],
        Body::Text(s) => s.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    };
    if bytes.len() > limit {
        return Err(ApiError::too_large(format!(
            "the request body is {} bytes; this route accepts at most {limit}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Parses the JSON body into `T`, with a message that names the field and
/// what is wrong with it.
pub fn json_body<T: DeserializeOwned>(req: &Request, limit: usize) -> ApiResult<T> {
    let bytes = body_bytes(req, limit)?;
    if bytes.is_empty() {
        return Err(ApiError::invalid_json(
            "the request body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let msg = e.to_string();
        match e.classify() {
            serde_json::error::Category::Data => ApiError::validation(msg),
            _ => ApiError::invalid_json(format!("the request body is not valid JSON: {msg}")),
        }
    })
}

/// A path parameter the route template names.
pub fn path_param(req: &Request, name: &str) -> ApiResult<String> {
    req.path_parameters_ref()
        .and_then(|p| p.first(name))
        .map(str::to_owned)
        .ok_or_else(|| ApiError::validation(format!("path parameter {name} is missing")))
}

/// A query parameter, if present and not empty.
pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name))
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Names of all query parameters present, for routes that refuse unknown
/// ones.
pub fn query_names(req: &Request) -> Vec<String> {
    req.query_string_parameters_ref()
        .map(|q| q.iter().map(|(k, _)| k.to_owned()).collect())
        .unwrap_or_default()
}

/// The principal the authorizer resolved for this request. A request that
/// reached a route without one is refused: routes never trust a hospital
/// id from the body or the path.
pub fn principal(req: &Request) -> ApiResult<Principal> {
    use lambda_http::request::RequestContext;
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => {
            Principal::from_context(&ctx.authorizer.fields).ok_or_else(ApiError::unauthorized)
        }
        _ => Err(ApiError::unauthorized()),
    }
}

/// The route template the request matched, e.g.
/// `/api/hospitals/{hospitalId}/keys`, as API Gateway reports it.
pub fn route(req: &Request) -> String {
    use lambda_http::request::RequestContext;
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.resource_path.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// The client's address as API Gateway saw it.
pub fn source_ip(req: &Request) -> String {
    use lambda_http::request::RequestContext;
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => {
            ctx.identity.source_ip.clone().unwrap_or_default()
        }
        _ => String::new(),
    }
}

/// The 404 for a method and path no route of this function serves.
pub fn no_route(req: &Request) -> ApiError {
    ApiError::not_found(format!("route {} {}", req.method(), req.uri().path()))
}

/// A JSON body parsed as an object, ready for field-by-field reading.
pub fn json_fields(req: &Request, limit: usize) -> ApiResult<crate::validate::Fields> {
    crate::validate::Fields::new(json_body::<serde_json::Value>(req, limit)?)
}
