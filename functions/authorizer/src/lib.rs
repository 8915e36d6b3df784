//! The API Gateway REQUEST authorizer: turns an API key into the principal
//! every route trusts, or refuses the request before any route runs.
//!
//! - no key, a malformed, unknown or revoked key: no policy at all, which
//!   API Gateway answers with 401;
//! - hospital not `active`, source address outside `allowedIPs`, or a
//!   write after the subscription ended: a Deny policy whose context holds
//!   `code` and `message`, which the API's ACCESS_DENIED gateway response
//!   turns into the contract's 403 body;
//! - otherwise an Allow policy whose context is the [`Principal`].
//!
//! The common path costs one consistent BatchGetItem (key and hospital);
//! a user's key adds one BatchGetItem of grants.

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest,
    ApiGatewayCustomAuthorizerResponse,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use http::Method;
use pacs_shared::auth::{self, HospitalPrincipal, PresentedKey, Principal};
use pacs_shared::domain::HospitalStatus;
use pacs_shared::{ApiError, Context, tenants};
use serde_json::{Value, json};

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

/// The outcome of authorizing one request, before it is written as a
/// policy.
#[derive(Debug)]
pub enum Decision {
    Allow(Principal),
    Deny(ApiError),
}

/// Decides one request: an Allow policy with the principal as context, a
/// Deny policy with `code` and `message` in its context (API Gateway answers
/// 403 with them), or [`AuthorizerError::Unauthorized`] (401).
pub async fn handle(
    ctx: &Context,
    event: ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> Result<ApiGatewayCustomAuthorizerResponse, AuthorizerError> {
    let decision = decide(ctx, &event).await?;
    let method_arn = event.method_arn.as_deref().unwrap_or("*");
    Ok(policy(method_arn, decision))
}

/// The decision alone, for callers that want it unwrapped.
pub async fn decide(
    ctx: &Context,
    event: &ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> Result<Decision, AuthorizerError> {
    let key = PresentedKey::from_headers(&event.headers).ok_or(AuthorizerError::Unauthorized)?;
    let secrets = ctx
        .secrets()
        .await
        .map_err(|e| AuthorizerError::Internal(e.to_string()))?;

    let (hospital_id, key_id, secret) = match key {
        PresentedKey::Platform { secret } => {
            if auth::verify_platform_key(&secrets.pepper, &secret, &secrets.platform_admin_key) {
                tracing::info!(principal = "platform-admin", "request authorized");
                return Ok(Decision::Allow(Principal::PlatformAdmin));
            }
            return Err(AuthorizerError::Unauthorized);
        }
        PresentedKey::Hospital {
            hospital,
            key_id,
            secret,
        } => (hospital, key_id, secret),
    };

    let (stored, hospital) = tenants::get_key_and_hospital(ctx, &hospital_id, &key_id)
        .await
        .map_err(|e| AuthorizerError::Internal(e.message))?;
    let (Some(stored), Some(hospital)) = (stored, hospital) else {
        tracing::warn!(hospital_id = %hospital_id, key_id = %key_id, "unknown key");
        return Err(AuthorizerError::Unauthorized);
    };
    if !stored.is_active() || !auth::verify_secret(&secrets.pepper, &secret, &stored.key_hash) {
        tracing::warn!(hospital_id = %hospital_id, key_id = %key_id, "key refused");
        return Err(AuthorizerError::Unauthorized);
    }
    tenants::touch_key(ctx, &stored).await;

    if hospital.status != HospitalStatus::Active {
        return Ok(Decision::Deny(ApiError::forbidden(
            "HospitalInactive",
            format!(
                "hospital {hospital_id} is {}; contact the platform operator",
                hospital.status.as_str()
            ),
        )));
    }
    let source_ip = event
        .request_context
        .identity
        .as_ref()
        .and_then(|i| i.source_ip.as_deref())
        .unwrap_or("");
    if !hospital.settings.allows_ip(source_ip) {
        return Ok(Decision::Deny(ApiError::forbidden(
            "IpNotAllowed",
            "requests from this address are not in the hospital's allowedIPs",
        )));
    }
    let expired = hospital.subscription_expired(pacs_shared::time::now());
    if expired && is_write(event) {
        return Ok(Decision::Deny(ApiError::forbidden(
            "SubscriptionExpired",
            "the hospital's subscription has ended; reads still work, writes need a renewal",
        )));
    }

    // A user's accessibleHospitals count only where that hospital granted
    // access to the user's own hospital.
    let readable = tenants::granted_by(ctx, &hospital_id, &stored.accessible_hospitals)
        .await
        .map_err(|e| AuthorizerError::Internal(e.message))?;

    tracing::info!(hospital_id = %hospital_id, key_id = %key_id, role = stored.role.as_str(), "request authorized");
    Ok(Decision::Allow(Principal::Hospital(HospitalPrincipal {
        hospital_id,
        role: stored.role,
        key_id,
        username: stored.username,
        readable_hospitals: readable,
        subscription_expired: expired,
    })))
}

fn is_write(event: &ApiGatewayCustomAuthorizerRequestTypeRequest) -> bool {
    let method = event
        .http_method
        .clone()
        .or_else(|| event.request_context.http_method.clone())
        .unwrap_or(Method::GET);
    !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Writes a decision as API Gateway expects it. The Allow statement covers
/// the whole stage, so a cached answer serves every route of that key.
pub fn policy(method_arn: &str, decision: Decision) -> ApiGatewayCustomAuthorizerResponse {
    let (effect, principal_id, context) = match decision {
        Decision::Allow(p) => {
            let id = match &p {
                Principal::PlatformAdmin => "platform-admin".to_owned(),
                Principal::Hospital(h) => h.key_id.to_string(),
            };
            let ctx: serde_json::Map<String, Value> = p.to_context().into_iter().collect();
            (IamPolicyEffect::Allow, id, Value::Object(ctx))
        }
        Decision::Deny(err) => (
            IamPolicyEffect::Deny,
            "denied".to_owned(),
            json!({ "code": err.code, "message": err.message }),
        ),
    };
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".into()];
    statement.effect = effect;
    statement.resource = vec![stage_wildcard(method_arn)];
    let mut document = ApiGatewayCustomAuthorizerPolicy::default();
    document.version = Some("2012-10-17".into());
    document.statement = vec![statement];
    let mut response = ApiGatewayCustomAuthorizerResponse::default();
    response.principal_id = Some(principal_id);
    response.policy_document = document;
    response.context = context;
    response
}

/// `arn:aws:execute-api:region:account:api/stage/METHOD/path` becomes
/// `arn:aws:execute-api:region:account:api/stage/*`.
fn stage_wildcard(method_arn: &str) -> String {
    let mut parts = method_arn.splitn(3, '/');
    match (parts.next(), parts.next()) {
        (Some(api), Some(stage)) => format!("{api}/{stage}/*"),
        _ => method_arn.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_covers_the_stage() {
        let arn = "arn:aws:execute-api:eu-west-1:123:abc/prod/GET/api/studies";
        assert_eq!(
            stage_wildcard(arn),
            "arn:aws:execute-api:eu-west-1:123:abc/prod/*"
        );
    }

    #[test]
    fn deny_carries_code_and_message() {
        let r = policy(
            "arn:x/prod/GET/a",
            Decision::Deny(ApiError::forbidden("HospitalInactive", "suspended")),
        );
        assert_eq!(r.context["code"], "HospitalInactive");
        assert_eq!(r.policy_document.statement[0].effect, IamPolicyEffect::Deny);
    }
}
