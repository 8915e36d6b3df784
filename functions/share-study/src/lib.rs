//! `POST /api/studies/{studyUid}/shares` and `DELETE
//! /api/studies/{studyUid}/shares/{hospitalId}`: the owning hospital's
//! admin shares one study with another hospital for reading, or revokes
//! the share. Both are recorded in the owner's audit trail.

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use pacs_shared::audit::{AuditOutcome, AuditTrail};
use pacs_shared::auth::{HospitalPrincipal, Principal};
use pacs_shared::domain::{HospitalId, Role};
use pacs_shared::http::{MAX_JSON_BODY, error_response, json_body, ok, path_param, principal};
use pacs_shared::{ApiError, ApiResult, Context, shares, studies};
use serde::Deserialize;

/// Handles one request that the authorizer already let through.
pub async fn handle(ctx: &Context, req: Request) -> Response<Body> {
    let principal = match principal(&req) {
        Ok(p) => p,
        Err(err) => return error_response(&err),
    };
    let caller = match owner_admin(&principal) {
        Ok(c) => c.clone(),
        Err(err) => {
            let action = if req.method() == http::Method::DELETE {
                "share.revoke"
            } else {
                "share.create"
            };
            pacs_shared::audit::record_refused(ctx, &principal, action, &err).await;
            return error_response(&err);
        }
    };
    let uid = path_param(&req, "studyUid").unwrap_or_default();
    let mut trail = AuditTrail::new(&caller);

    let (action, status, outcome) = match *req.method() {
        http::Method::POST => (
            "share.create",
            StatusCode::CREATED,
            create(ctx, &req, &caller, &uid).await,
        ),
        http::Method::DELETE => (
            "share.revoke",
            StatusCode::OK,
            revoke(ctx, &req, &caller, &uid).await,
        ),
        ref m => {
            let err = ApiError::method_not_allowed(m.as_str(), req.uri().path());
            return error_response(&err);
        }
    };
    let (response, result, grantee) = match outcome {
        Ok((value, grantee)) => (ok(status, &value), AuditOutcome::Success, grantee),
        Err(err) => {
            let grantee = path_param(&req, "hospitalId").unwrap_or_default();
            (
                error_response(&err),
                AuditOutcome::from_status(err.status),
                grantee,
            )
        }
    };
    trail.record(
        &caller.hospital_id,
        action,
        format!("share:{uid}:{grantee}"),
        result,
    );
    trail.flush(ctx).await;
    response
}

/// Shares are made by the owning hospital's admin only.
fn owner_admin(p: &Principal) -> ApiResult<&HospitalPrincipal> {
    match p {
        Principal::PlatformAdmin => Err(ApiError::forbidden(
            "Forbidden",
            "studies are shared by the owning hospital's admin key, not the platform-admin key",
        )),
        Principal::Hospital(h) if h.role != Role::Admin => {
            Err(ApiError::role_required("share studies"))
        }
        Principal::Hospital(h) if h.subscription_expired => Err(ApiError::forbidden(
            "SubscriptionExpired",
            "the hospital's subscription has ended; sharing is a write and is refused",
        )),
        Principal::Hospital(h) => Ok(h),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ShareRequest {
    hospital_id: String,
    #[serde(default)]
    access_level: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

async fn create(
    ctx: &Context,
    req: &Request,
    caller: &HospitalPrincipal,
    uid: &str,
) -> ApiResult<(serde_json::Value, String)> {
    studies::validate_uid("studyUid", uid)?;
    let body: ShareRequest = json_body(req, MAX_JSON_BODY)?;
    let grantee: HospitalId = body.hospital_id.trim().parse()?;
    match body.access_level.as_deref().map(str::trim) {
        None | Some("read") => {}
        Some(other) => {
            return Err(ApiError::validation(format!(
                "accessLevel {other:?} is not available: only read is implemented"
            )));
        }
    }
    let expires_at = match body.expires_at.as_deref() {
        None => None,
        Some(v) => {
            let t = pacs_shared::time::parse_rfc3339(v.trim()).ok_or_else(|| {
                ApiError::validation(
                    "expiresAt must be an RFC 3339 time such as 2030-01-31T12:00:00Z",
                )
            })?;
            if t <= pacs_shared::time::now() {
                return Err(ApiError::validation("expiresAt must be in the future"));
            }
            Some(t)
        }
    };
    if grantee == caller.hospital_id {
        return Err(ApiError::validation(
            "hospitalId is your own hospital: share with another one",
        ));
    }

    if !shares::hospital_exists(ctx, &grantee).await? {
        return Err(ApiError::not_found(format!("hospital {grantee}")));
    }
    if studies::get_study_item(ctx, &caller.hospital_id, uid)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!("study {uid}")));
    }
    let share = shares::create_share(
        ctx,
        &caller.hospital_id,
        uid,
        &grantee,
        expires_at,
        &caller.key_id,
    )
    .await?;
    tracing::info!(hospital_id = %caller.hospital_id, grantee = %grantee, "study shared");
    let value = serde_json::to_value(&share).map_err(ApiError::internal)?;
    Ok((value, grantee.to_string()))
}

async fn revoke(
    ctx: &Context,
    req: &Request,
    caller: &HospitalPrincipal,
    uid: &str,
) -> ApiResult<(serde_json::Value, String)> {
    studies::validate_uid("studyUid", uid)?;
    let grantee: HospitalId = path_param(req, "hospitalId")?.trim().parse()?;
    shares::revoke_share(ctx, &caller.hospital_id, uid, &grantee).await?;
    tracing::info!(hospital_id = %caller.hospital_id, grantee = %grantee, "share revoked");
    let value = serde_json::json!({
        "studyInstanceUid": uid,
        "hospitalId": grantee.to_string(),
        "revoked": true,
    });
    Ok((value, grantee.to_string()))
}
