//! The API as API Gateway serves it: a route table, the REQUEST authorizer
//! called before every route, and each route's function called with the
//! REST proxy event Lambda would hand it.
//!
//! Adding a route is one line in [`ROUTES`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest,
    ApiGatewayCustomAuthorizerRequestTypeRequestContext,
    ApiGatewayCustomAuthorizerRequestTypeRequestIdentity, ApiGatewayCustomAuthorizerResponse,
    ApiGatewayProxyRequest,
};
use aws_lambda_events::iam::IamPolicyEffect;
use aws_lambda_events::query_map::QueryMap;
use axum::extract::{ConnectInfo, State};
use axum::response::Response as AxumResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::FutureExt;
use http::{HeaderMap, Method, StatusCode};
use pacs_shared::{ApiError, Context};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{ACCOUNT_ID, REGION};

/// API Gateway's payload limit.
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// The stage name the local API serves under.
const STAGE: &str = "local";

/// A function that serves routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    RegisterHospital,
    ManageHospital,
    AgentHeartbeat,
    PresignUpload,
    QueryStudies,
    ShareStudy,
    Dicomweb,
}

impl Function {
    /// The function's crate and Lambda name.
    pub const fn name(self) -> &'static str {
        match self {
            Function::RegisterHospital => "register-hospital",
            Function::ManageHospital => "manage-hospital",
            Function::AgentHeartbeat => "agent-heartbeat",
            Function::PresignUpload => "presign-upload",
            Function::QueryStudies => "query-studies",
            Function::ShareStudy => "share-study",
            Function::Dicomweb => "dicomweb",
        }
    }

    async fn call(
        self,
        ctx: &Context,
        req: lambda_http::Request,
    ) -> lambda_http::Response<lambda_http::Body> {
        match self {
            Function::RegisterHospital => register_hospital::handle(ctx, req).await,
            Function::ManageHospital => manage_hospital::handle(ctx, req).await,
            Function::AgentHeartbeat => agent_heartbeat::handle(ctx, req).await,
            Function::PresignUpload => presign_upload::handle(ctx, req).await,
            Function::QueryStudies => query_studies::handle(ctx, req).await,
            Function::ShareStudy => share_study::handle(ctx, req).await,
            Function::Dicomweb => dicomweb::handle(ctx, req).await,
        }
    }
}

/// One API Gateway resource and method, and the function behind it.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// An HTTP method, or `ANY`.
    pub method: &'static str,
    /// The resource template: `{name}` is one segment, `{name+}` the rest.
    pub path: &'static str,
    pub function: Function,
}

const fn route(method: &'static str, path: &'static str, function: Function) -> Route {
    Route {
        method,
        path,
        function,
    }
}

use Function::*;

/// Every route of the API, as template.yaml declares them.
pub const ROUTES: &[Route] = &[
    route("POST", "/api/hospitals/register", RegisterHospital),
    route("GET", "/api/hospitals", ManageHospital),
    route("GET", "/api/hospitals/{hospitalId}", ManageHospital),
    route("PATCH", "/api/hospitals/{hospitalId}", ManageHospital),
    route("POST", "/api/hospitals/{hospitalId}/keys", ManageHospital),
    route("GET", "/api/hospitals/{hospitalId}/keys", ManageHospital),
    route(
        "DELETE",
        "/api/hospitals/{hospitalId}/keys/{keyId}",
        ManageHospital,
    ),
    route("POST", "/api/hospitals/{hospitalId}/users", ManageHospital),
    route("GET", "/api/hospitals/{hospitalId}/users", ManageHospital),
    route("POST", "/api/hospitals/{hospitalId}/grants", ManageHospital),
    route("GET", "/api/hospitals/{hospitalId}/grants", ManageHospital),
    route(
        "DELETE",
        "/api/hospitals/{hospitalId}/grants/{granteeId}",
        ManageHospital,
    ),
    route("GET", "/api/usage", ManageHospital),
    route("GET", "/api/audit", ManageHospital),
    route("POST", "/api/agents/register", AgentHeartbeat),
    route("POST", "/api/uploads", PresignUpload),
    route("GET", "/api/uploads/{uploadId}", PresignUpload),
    route("GET", "/api/studies", QueryStudies),
    route("GET", "/api/studies/{studyUid}", QueryStudies),
    route("GET", "/api/studies/{studyUid}/download", QueryStudies),
    route("POST", "/api/studies/{studyUid}/shares", ShareStudy),
    route(
        "DELETE",
        "/api/studies/{studyUid}/shares/{hospitalId}",
        ShareStudy,
    ),
    route("ANY", "/dicomweb/{proxy+}", Dicomweb),
];

/// Every function that serves a route, once.
pub const FUNCTIONS: &[Function] = &[
    RegisterHospital,
    ManageHospital,
    AgentHeartbeat,
    PresignUpload,
    QueryStudies,
    ShareStudy,
    Dicomweb,
];

/// The path parameters of `path` if it matches `template`.
fn match_path(template: &str, path: &str) -> Option<HashMap<String, String>> {
    let mut params = HashMap::new();
    let mut given = path.trim_start_matches('/').split('/');
    let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix("+}")) {
            // A greedy parameter takes the rest, at least one segment.
            let rest: Vec<&str> = given.by_ref().collect();
            if i + 1 != parts.len() || rest.is_empty() || rest[0].is_empty() {
                return None;
            }
            params.insert(name.to_owned(), decode(&rest.join("/")));
            return Some(params);
        }
        let segment = given.next()?;
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) if !segment.is_empty() => {
                params.insert(name.to_owned(), decode(segment));
            }
            Some(_) => return None,
            None if *part == segment => {}
            None => return None,
        }
    }
    given.next().is_none().then_some(params)
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// How many times each function has been called by the router.
#[derive(Default)]
pub struct CallCounter(Mutex<HashMap<&'static str, u64>>);

impl CallCounter {
    fn record(&self, function: Function) {
        *self
            .0
            .lock()
            .expect("call counter")
            .entry(function.name())
            .or_default() += 1;
    }

    pub fn get(&self, function: &str) -> u64 {
        self.0
            .lock()
            .expect("call counter")
            .get(function)
            .copied()
            .unwrap_or(0)
    }
}

/// What the router needs for every request.
pub struct Gateway {
    pub context: Arc<Context>,
    pub calls: Arc<CallCounter>,
}

/// Serves the API on `listener` until `stop`.
pub fn serve(
    listener: std::net::TcpListener,
    gateway: Gateway,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let app = axum::Router::new()
        .fallback(handle_request)
        .with_state(Arc::new(gateway));
    tokio::spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return tracing::error!(error = %e, "api failed"),
        };
        let shutdown = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "api failed");
        }
    })
}

/// One request, as it was received.
struct Incoming {
    method: Method,
    path: String,
    headers: HeaderMap,
    query: HashMap<String, Vec<String>>,
    body: Option<String>,
    is_base64: bool,
    source_ip: String,
    request_id: String,
}

async fn handle_request(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
) -> AxumResponse {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let method = parts.method.clone();

    if path == "/health" && method == Method::GET {
        return health(&gateway.context).await;
    }

    // Route first, as API Gateway does: an unknown resource never reaches
    // the authorizer.
    let candidates: Vec<(&Route, HashMap<String, String>)> = ROUTES
        .iter()
        .filter_map(|r| match_path(r.path, &path).map(|params| (r, params)))
        .collect();
    if candidates.is_empty() {
        let message = format!("no route for {method} {path}");
        return to_axum(error(StatusCode::NOT_FOUND, "NotFound", message));
    }
    let preflight = method == Method::OPTIONS;
    let matched = candidates
        .iter()
        .find(|(r, _)| r.method == "ANY" || r.method == method.as_str())
        .or_else(|| preflight.then(|| &candidates[0]));
    let Some((route, params)) = matched else {
        return to_axum(pacs_shared::http::error_response(
            &ApiError::method_not_allowed(method.as_str(), &path),
        ));
    };

    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        let message = format!("the request body is larger than {MAX_BODY_BYTES} bytes");
        to_axum(pacs_shared::http::error_response(&ApiError::too_large(
            message,
        )))
    };
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return too_large();
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return too_large();
    };

    let (body, is_base64) = encode_body(&parts.headers, &bytes);
    let incoming = Incoming {
        method: method.clone(),
        path: path.clone(),
        headers: parts.headers,
        query: parse_query(parts.uri.query()),
        body,
        is_base64,
        source_ip: peer.ip().to_string(),
        request_id: request_id(),
    };

    // A CORS preflight carries no key; API Gateway lets it through to the
    // route's OPTIONS integration.
    let authorizer_context = if preflight {
        HashMap::new()
    } else {
        match authorize(&gateway.context, route, params, &incoming).await {
            Ok(context) => context,
            Err(response) => return to_axum(*response),
        }
    };

    let event = proxy_event(route, params.clone(), incoming, authorizer_context);
    let request = http::Request::from(lambda_http::request::LambdaRequest::ApiGatewayV1(event));
    gateway.calls.record(route.function);
    let call = route.function.call(&gateway.context, request);
    match std::panic::AssertUnwindSafe(call).catch_unwind().await {
        Ok(response) => to_axum(response),
        Err(_) => {
            tracing::error!(function = route.function.name(), "function panicked");
            let message = "the function failed; retry later";
            to_axum(error(
                StatusCode::BAD_GATEWAY,
                "InternalError",
                message.into(),
            ))
        }
    }
}

/// The response that ends a request the authorizer did not allow.
type Refusal = Box<lambda_http::Response<lambda_http::Body>>;

/// Calls the authorizer as API Gateway does and applies its answer: the
/// principal's context, or the response that ends the request.
async fn authorize(
    ctx: &Context,
    route: &Route,
    params: &HashMap<String, String>,
    incoming: &Incoming,
) -> Result<HashMap<String, Value>, Refusal> {
    let method_arn = format!(
        "arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:local/{STAGE}/{}/{}",
        incoming.method,
        incoming.path.trim_start_matches('/')
    );
    let event = authorizer_event(route, params.clone(), incoming, &method_arn);
    let outcome = std::panic::AssertUnwindSafe(authorizer::handle(ctx, event))
        .catch_unwind()
        .await;
    match outcome {
        Ok(Ok(response)) => decide(&response, &method_arn),
        Ok(Err(authorizer::AuthorizerError::Unauthorized)) => Err(Box::new(
            pacs_shared::http::error_response(&ApiError::unauthorized()),
        )),
        Ok(Err(e)) => Err(Box::new(pacs_shared::http::error_response(
            &ApiError::internal(e),
        ))),
        Err(_) => Err(Box::new(pacs_shared::http::error_response(
            &ApiError::internal("the authorizer panicked"),
        ))),
    }
}

/// Applies a policy to the method ARN as API Gateway does: an explicit
/// Deny wins, then an Allow that covers the ARN; anything else is denied.
fn decide(
    response: &ApiGatewayCustomAuthorizerResponse,
    method_arn: &str,
) -> Result<HashMap<String, Value>, Refusal> {
    let covers = |s: &aws_lambda_events::iam::IamPolicyStatement| {
        s.action.iter().any(|a| glob_match(a, "execute-api:Invoke"))
            && s.resource.iter().any(|r| glob_match(r, method_arn))
    };
    let statements = &response.policy_document.statement;
    let denied = statements
        .iter()
        .any(|s| s.effect == IamPolicyEffect::Deny && covers(s));
    let allowed = statements
        .iter()
        .any(|s| s.effect == IamPolicyEffect::Allow && covers(s));
    let context: HashMap<String, Value> = match &response.context {
        Value::Object(map) => map.clone().into_iter().collect(),
        _ => HashMap::new(),
    };

    if allowed && !denied {
        return Ok(context);
    }
    let text = |k: &str| context.get(k).and_then(Value::as_str).map(str::to_owned);
    let code = text("code").unwrap_or_else(|| "Forbidden".into());
    let message = text("message").unwrap_or_else(|| "this key may not access this resource".into());
    Err(Box::new(error(StatusCode::FORBIDDEN, &code, message)))
}

/// `*` matches any run of characters, `?` any one, as in IAM policies.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn single_values(headers: &HeaderMap) -> HeaderMap {
    let mut single = HeaderMap::new();
    for (name, value) in headers {
        single.insert(name.clone(), value.clone());
    }
    single
}

fn single_query(query: &HashMap<String, Vec<String>>) -> QueryMap {
    let last: HashMap<String, String> = query
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.last()?.clone())))
        .collect();
    QueryMap::from(last)
}

fn authorizer_event(
    route: &Route,
    params: HashMap<String, String>,
    incoming: &Incoming,
    method_arn: &str,
) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    let mut identity = ApiGatewayCustomAuthorizerRequestTypeRequestIdentity::default();
    identity.source_ip = Some(incoming.source_ip.clone());

    let mut context = ApiGatewayCustomAuthorizerRequestTypeRequestContext::default();
    context.path = Some(format!("/{STAGE}{}", incoming.path));
    context.account_id = Some(ACCOUNT_ID.into());
    context.resource_id = Some(resource_id(route));
    context.stage = Some(STAGE.into());
    context.request_id = Some(incoming.request_id.clone());
    context.identity = Some(identity);
    context.resource_path = Some(route.path.into());
    context.http_method = Some(incoming.method.clone());
    context.apiid = Some("local".into());

    let mut event = ApiGatewayCustomAuthorizerRequestTypeRequest::default();
    event.type_ = Some("REQUEST".into());
    event.method_arn = Some(method_arn.to_owned());
    event.resource = Some(route.path.into());
    event.path = Some(incoming.path.clone());
    event.http_method = Some(incoming.method.clone());
    event.headers = single_values(&incoming.headers);
    event.multi_value_headers = incoming.headers.clone();
    event.query_string_parameters = single_query(&incoming.query);
    event.multi_value_query_string_parameters = QueryMap::from(incoming.query.clone());
    event.path_parameters = params;
    event.request_context = context;
    event
}

fn proxy_event(
    route: &Route,
    params: HashMap<String, String>,
    incoming: Incoming,
    authorizer_context: HashMap<String, Value>,
) -> ApiGatewayProxyRequest {
    let now = time::OffsetDateTime::now_utc();
    let mut context = aws_lambda_events::apigw::ApiGatewayProxyRequestContext::default();
    context.account_id = Some(ACCOUNT_ID.into());
    context.resource_id = Some(resource_id(route));
    context.stage = Some(STAGE.into());
    context.domain_name = incoming
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    context.request_id = Some(incoming.request_id.clone());
    context.protocol = Some("HTTP/1.1".into());
    context.identity.source_ip = Some(incoming.source_ip.clone());
    context.identity.user_agent = incoming
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    context.resource_path = Some(route.path.into());
    context.path = Some(format!("/{STAGE}{}", incoming.path));
    context.authorizer.fields = authorizer_context;
    context.http_method = incoming.method.clone();
    context.request_time_epoch = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    context.apiid = Some("local".into());

    let mut event = ApiGatewayProxyRequest::default();
    event.resource = Some(route.path.into());
    event.path = Some(incoming.path);
    event.http_method = incoming.method;
    event.headers = single_values(&incoming.headers);
    event.multi_value_headers = incoming.headers;
    event.query_string_parameters = single_query(&incoming.query);
    event.multi_value_query_string_parameters = QueryMap::from(incoming.query);
    event.path_parameters = params;
    event.request_context = context;
    event.body = incoming.body;
    event.is_base64_encoded = incoming.is_base64;
    event
}

fn resource_id(route: &Route) -> String {
    hex::encode(&sha2_digest(route.path)[..3])
}

fn sha2_digest(s: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).to_vec()
}

/// Text bodies travel as they are; binary ones base64-encoded with
/// `isBase64Encoded`, as API Gateway does for its binary media types.
fn encode_body(headers: &HeaderMap, bytes: &[u8]) -> (Option<String>, bool) {
    if bytes.is_empty() {
        return (None, false);
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let binary_type = [
        "application/dicom",
        "multipart/",
        "application/octet-stream",
        "image/",
    ]
    .iter()
    .any(|t| content_type.starts_with(t));
    match std::str::from_utf8(bytes) {
        Ok(text) if !binary_type => (Some(text.to_owned()), false),
        _ => (Some(BASE64.encode(bytes)), true),
    }
}

fn parse_query(query: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        map.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    map
}

fn request_id() -> String {
    let b = hex::encode(rand::random::<[u8; 16]>());
    format!(
        "{}-{}-{}-{}-{}",
        &b[..8],
        &b[8..12],
        &b[12..16],
        &b[16..20],
        &b[20..]
    )
}

fn error(
    status: StatusCode,
    code: &str,
    message: String,
) -> lambda_http::Response<lambda_http::Body> {
    let body = json!({ "success": false, "code": code, "message": message });
    let mut resp = lambda_http::Response::new(lambda_http::Body::Text(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn to_axum(response: lambda_http::Response<lambda_http::Body>) -> AxumResponse {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        lambda_http::Body::Text(text) => text.into_bytes(),
        lambda_http::Body::Binary(bytes) => bytes,
        _ => Vec::new(),
    };
    AxumResponse::from_parts(parts, axum::body::Body::from(bytes))
}

/// 200 once DynamoDB and S3 answer through the functions' own clients.
async fn health(ctx: &Context) -> AxumResponse {
    let dynamodb = ctx
        .clients
        .dynamodb
        .list_tables()
        .limit(1)
        .send()
        .await
        .is_ok();
    let s3 = ctx
        .clients
        .s3
        .head_bucket()
        .bucket(&ctx.settings.bucket)
        .send()
        .await
        .is_ok();
    let state = |up: bool| if up { "ok" } else { "down" };
    if dynamodb && s3 {
        let data = json!({ "status": "ok", "dynamodb": "ok", "s3": "ok", "api": "ok" });
        return to_axum(pacs_shared::http::ok(StatusCode::OK, &data));
    }
    let message = format!("dynamodb is {}, s3 is {}", state(dynamodb), state(s3));
    to_axum(error(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        message,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerPolicy;
    use aws_lambda_events::iam::IamPolicyStatement;

    #[test]
    fn paths_match_templates() {
        let p = match_path(
            "/api/hospitals/{hospitalId}/keys/{keyId}",
            "/api/hospitals/h1/keys/k2",
        )
        .unwrap();
        assert_eq!(p["hospitalId"], "h1");
        assert_eq!(p["keyId"], "k2");
        assert!(match_path("/api/hospitals/{hospitalId}", "/api/hospitals/h1/keys").is_none());
        assert!(match_path("/api/hospitals/{hospitalId}", "/api/hospitals/").is_none());
        let p = match_path("/dicomweb/{proxy+}", "/dicomweb/studies/1.2/series").unwrap();
        assert_eq!(p["proxy"], "studies/1.2/series");
        assert!(match_path("/dicomweb/{proxy+}", "/dicomweb").is_none());
        assert!(match_path("/api/usage", "/api/usage").unwrap().is_empty());
    }

    #[test]
    fn globs_match_like_iam() {
        assert!(glob_match(
            "arn:aws:execute-api:*:*:local/*",
            "arn:aws:execute-api:r:a:local/x/GET/"
        ));
        assert!(glob_match("execute-api:*", "execute-api:Invoke"));
        assert!(!glob_match("arn:a/*/GET/*", "arn:a/local/POST/x"));
    }

    fn policy(effect: IamPolicyEffect, context: Value) -> ApiGatewayCustomAuthorizerResponse {
        let mut statement = IamPolicyStatement::default();
        statement.action = vec!["execute-api:Invoke".into()];
        statement.effect = effect;
        statement.resource = vec!["arn:aws:execute-api:*".into()];
        let mut document = ApiGatewayCustomAuthorizerPolicy::default();
        document.version = Some("2012-10-17".into());
        document.statement = vec![statement];
        let mut response = ApiGatewayCustomAuthorizerResponse::default();
        response.principal_id = Some("p".into());
        response.policy_document = document;
        response.context = context;
        response
    }

    #[test]
    fn allow_hands_over_the_context_and_deny_answers_its_code() {
        let arn = "arn:aws:execute-api:us-east-1:0:local/local/GET/api/usage";
        let allowed = decide(
            &policy(IamPolicyEffect::Allow, json!({"principalType": "x"})),
            arn,
        );
        assert_eq!(allowed.unwrap()["principalType"], "x");

        let context = json!({"code": "HospitalInactive", "message": "suspended"});
        let denied = decide(&policy(IamPolicyEffect::Deny, context), arn).unwrap_err();
        assert_eq!(denied.status(), StatusCode::FORBIDDEN);
        let lambda_http::Body::Text(body) = denied.body() else {
            panic!("text body")
        };
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            body,
            json!({"success": false, "code": "HospitalInactive", "message": "suspended"})
        );
    }

    #[test]
    fn an_allow_for_another_arn_is_a_deny() {
        let mut response = policy(IamPolicyEffect::Allow, json!({}));
        response.policy_document.statement[0].resource = vec!["arn:other".into()];
        let arn = "arn:aws:execute-api:us-east-1:0:local/local/GET/api/usage";
        assert_eq!(
            decide(&response, arn).unwrap_err().status(),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn every_route_names_a_known_function() {
        for route in ROUTES {
            assert!(FUNCTIONS.contains(&route.function), "{route:?}");
            assert!(route.path.starts_with('/'));
        }
    }
}
