//! Management of hospitals: the platform operator's list, and each
//! hospital's profile, settings, keys, users, grants and usage.
//!
//! Who may do what: the platform admin manages every hospital (not its
//! users or grants, which are the hospital's own decisions); a hospital's
//! `admin` key manages its own hospital only. Another hospital's id in the
//! path answers 404, exactly as an unknown one does.

use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use pacs_shared::auth::{self, KeyId, Principal};
use pacs_shared::domain::{HospitalId, HospitalStatus, Role};
use pacs_shared::http::{
    MAX_JSON_BODY, json_fields, no_route, path_param, principal, query_names, query_param, respond,
    route,
};
use pacs_shared::tenants::{self, HospitalPatch, KeyRecord, NewUser};
use pacs_shared::validate::{self, Fields};
use pacs_shared::{ApiError, ApiResult, Context};
use serde_json::{Value, json};

mod pages;
mod usage;

/// Handles one request that the authorizer already let through.
pub async fn handle(ctx: &Context, req: Request) -> Response<Body> {
    let status = if req.method() == Method::POST {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    respond(status, dispatch(ctx, &req).await)
}

async fn dispatch(ctx: &Context, req: &Request) -> ApiResult<Value> {
    let caller = principal(req)?;
    let route = route(req);
    match (req.method().clone(), route.as_str()) {
        (Method::GET, "/api/hospitals") => list_hospitals(ctx, req, &caller).await,
        (Method::GET, "/api/hospitals/{hospitalId}") => {
            let id = managed_hospital(ctx, req, &caller).await?;
            get_hospital(ctx, &id).await
        }
        (Method::PATCH, "/api/hospitals/{hospitalId}") => {
            let id = managed_hospital(ctx, req, &caller).await?;
            patch_hospital(ctx, req, &caller, &id).await
        }
        (Method::POST, "/api/hospitals/{hospitalId}/keys") => {
            let id = managed_hospital(ctx, req, &caller).await?;
            create_key(ctx, req, &id).await
        }
        (Method::GET, "/api/hospitals/{hospitalId}/keys") => {
            let id = managed_hospital(ctx, req, &caller).await?;
            let keys = tenants::list_keys(ctx, &id).await?;
            Ok(json!({ "keys": keys.iter().map(|k| k.to_json()).collect::<Vec<_>>() }))
        }
        (Method::DELETE, "/api/hospitals/{hospitalId}/keys/{keyId}") => {
            let id = managed_hospital(ctx, req, &caller).await?;
            let key_id = path_param(req, "keyId")?;
            let key_id = KeyId::parse(&key_id)
                .ok_or_else(|| ApiError::not_found(format!("key {key_id}")))?;
            tenants::revoke_key(ctx, &id, &key_id).await?;
            tracing::info!(hospital_id = %id, key_id = %key_id, "key revoked");
            Ok(json!({ "keyId": key_id.as_str(), "status": "revoked" }))
        }
        (Method::POST, "/api/hospitals/{hospitalId}/users") => {
            let id = own_hospital_admin(req, &caller)?;
            create_user(ctx, req, &id).await
        }
        (Method::GET, "/api/hospitals/{hospitalId}/users") => {
            let id = managed_hospital(ctx, req, &caller).await?;
            Ok(json!({ "users": tenants::list_users(ctx, &id).await? }))
        }
        (Method::POST, "/api/hospitals/{hospitalId}/grants") => {
            let id = own_hospital_admin(req, &caller)?;
            create_grant(ctx, req, &caller, &id).await
        }
        (Method::GET, "/api/hospitals/{hospitalId}/grants") => {
            let id = managed_hospital(ctx, req, &caller).await?;
            Ok(json!({ "grants": tenants::list_grants(ctx, &id).await? }))
        }
        (Method::DELETE, "/api/hospitals/{hospitalId}/grants/{granteeId}") => {
            let id = own_hospital_admin(req, &caller)?;
            let grantee: HospitalId = path_param(req, "granteeId")?
                .parse()
                .map_err(|_| ApiError::not_found("grant"))?;
            tenants::delete_grant(ctx, &id, &grantee).await?;
            tracing::info!(hospital_id = %id, grantee = %grantee, "grant revoked");
            Ok(json!({ "granteeHospitalId": grantee, "status": "revoked" }))
        }
        (Method::GET, "/api/usage") => {
            let hospital = caller
                .hospital()
                .filter(|p| p.role == Role::Admin)
                .ok_or_else(|| ApiError::role_required("read usage (hospital admin only)"))?;
            usage::report(ctx, &hospital.hospital_id).await
        }
        _ => Err(no_route(req)),
    }
}

/// The hospital in the path, if the caller may manage it: the platform
/// admin (for an existing hospital) or that hospital's admin.
async fn managed_hospital(
    ctx: &Context,
    req: &Request,
    caller: &Principal,
) -> ApiResult<HospitalId> {
    let raw = path_param(req, "hospitalId")?;
    let not_found = || ApiError::not_found(format!("hospital {raw}"));
    let id: HospitalId = raw.parse().map_err(|_| not_found())?;
    match caller {
        Principal::PlatformAdmin => {
            tenants::require_hospital(ctx, &id).await?;
            Ok(id)
        }
        Principal::Hospital(p) if p.hospital_id != id => Err(not_found()),
        Principal::Hospital(p) if p.role != Role::Admin => {
            Err(ApiError::role_required("manage the hospital (admin only)"))
        }
        Principal::Hospital(_) => Ok(id),
    }
}

/// The hospital in the path, if the caller is its own admin: users and
/// grants are the hospital's decisions, not the operator's.
fn own_hospital_admin(req: &Request, caller: &Principal) -> ApiResult<HospitalId> {
    let raw = path_param(req, "hospitalId")?;
    let not_found = || ApiError::not_found(format!("hospital {raw}"));
    let id: HospitalId = raw.parse().map_err(|_| not_found())?;
    match caller {
        Principal::PlatformAdmin => Err(ApiError::role_required(
            "manage a hospital's users or grants (the hospital's admin does)",
        )),
        Principal::Hospital(p) if p.hospital_id != id => Err(not_found()),
        Principal::Hospital(p) if p.role != Role::Admin => Err(ApiError::role_required(
            "manage users or grants (admin only)",
        )),
        Principal::Hospital(_) => Ok(id),
    }
}

async fn list_hospitals(ctx: &Context, req: &Request, caller: &Principal) -> ApiResult<Value> {
    if caller != &Principal::PlatformAdmin {
        return Err(ApiError::role_required(
            "list hospitals (platform-admin only)",
        ));
    }
    if let Some(bad) = query_names(req)
        .into_iter()
        .find(|q| q != "limit" && q != "cursor")
    {
        return Err(ApiError::validation(format!(
            "query parameter {bad} is not supported; use limit and cursor"
        )));
    }
    let limit = match query_param(req, "limit") {
        None => 50,
        Some(v) => v
            .parse::<i32>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| ApiError::validation("limit must be a whole number from 1 to 100"))?,
    };
    let start = query_param(req, "cursor")
        .map(|c| pages::decode(&c))
        .transpose()?;
    let (hospitals, next) = tenants::list_hospitals(ctx, limit, start).await?;
    Ok(json!({
        "hospitals": hospitals.iter().map(|h| h.to_json()).collect::<Vec<_>>(),
        "nextCursor": next.map(|k| pages::encode(&k)),
    }))
}

async fn get_hospital(ctx: &Context, id: &HospitalId) -> ApiResult<Value> {
    let hospital = tenants::require_hospital(ctx, id).await?;
    let mut data = hospital.to_json();
    data["agents"] = json!(tenants::list_agents(ctx, id).await?);
    Ok(data)
}

async fn patch_hospital(
    ctx: &Context,
    req: &Request,
    caller: &Principal,
    id: &HospitalId,
) -> ApiResult<Value> {
    let mut body = json_fields(req, MAX_JSON_BODY)?;
    let operator_only = ["status", "plan", "subscriptionEnd"];
    let mut patch = HospitalPatch::default();
    if let Some(status) = body.opt_string("status", 20)? {
        patch.status = Some(status.parse::<HospitalStatus>()?);
    }
    if let Some(plan) = body.opt_string("plan", 20)? {
        patch.plan = Some(plan.parse()?);
    }
    if let Some(end) = body.opt_string("subscriptionEnd", 40)? {
        let at = pacs_shared::time::parse_rfc3339(&end).ok_or_else(|| {
            ApiError::validation(
                "subscriptionEnd must be an RFC 3339 time such as 2027-12-31T23:59:59Z",
            )
        })?;
        patch.subscription_end = Some(pacs_shared::time::rfc3339(at));
    }
    if let Some(settings) = body.opt_object("settings")? {
        patch.settings = Some(register_settings(settings)?);
    }
    body.finish()?;

    if caller != &Principal::PlatformAdmin {
        let touched = [
            patch.status.is_some(),
            patch.plan.is_some(),
            patch.subscription_end.is_some(),
        ];
        if let Some((field, _)) = operator_only.iter().zip(touched).find(|(_, t)| *t) {
            return Err(ApiError::role_required(&format!(
                "change {field} (platform-admin only; a hospital admin changes settings)"
            )));
        }
    }
    if patch.status.is_none()
        && patch.plan.is_none()
        && patch.subscription_end.is_none()
        && patch.settings.is_none()
    {
        return Err(ApiError::validation(
            "nothing to change: send status, plan, subscriptionEnd or settings",
        ));
    }

    let hospital = tenants::update_hospital(ctx, id, patch).await?;
    tracing::info!(hospital_id = %id, "hospital updated");
    Ok(hospital.to_json())
}

fn register_settings(mut f: Fields) -> ApiResult<pacs_shared::domain::HospitalSettings> {
    let settings = pacs_shared::domain::HospitalSettings {
        allowed_ips: f.opt_strings("allowedIPs", 64, 50)?.unwrap_or_default(),
        require_mfa: f.opt_bool("requireMFA")?.unwrap_or(false),
        data_retention_days: f
            .opt_u64("dataRetentionDays", 1..=36_500)?
            .map(|d| d as u32),
    };
    f.finish()?;
    settings.validate()?;
    Ok(settings)
}

async fn create_key(ctx: &Context, req: &Request, id: &HospitalId) -> ApiResult<Value> {
    let mut body = json_fields(req, MAX_JSON_BODY)?;
    let role: Role = body.string("role", 20)?.parse()?;
    let label = body.opt_string("label", 100)?.unwrap_or_default();
    body.finish()?;

    let pepper = &ctx.secrets_for_route().await?.pepper;
    let issued = auth::issue_hospital_key(pepper, id);
    tenants::put_key(
        ctx,
        &KeyRecord {
            hospital_id: id,
            key_id: &issued.key_id,
            hash: &issued.hash,
            role,
            label: &label,
            username: None,
            accessible_hospitals: &[],
        },
    )
    .await?;
    tracing::info!(hospital_id = %id, key_id = %issued.key_id, role = role.as_str(), "key issued");
    Ok(json!({
        "keyId": issued.key_id.as_str(),
        "apiKey": issued.token,
        "role": role.as_str(),
        "label": label,
    }))
}

async fn create_user(ctx: &Context, req: &Request, id: &HospitalId) -> ApiResult<Value> {
    let mut body = json_fields(req, MAX_JSON_BODY)?;
    let username = body.string("username", 64)?;
    if !username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
    {
        return Err(ApiError::validation(
            "username may hold letters, digits and . _ @ - only",
        ));
    }
    let email = body.string("email", 254)?;
    validate::email("email", &email)?;
    let roles = body
        .opt_strings("roles", 20, 3)?
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::validation("roles is required: a list of agent, reader, admin"))?
        .iter()
        .map(|r| r.parse::<Role>())
        .collect::<ApiResult<Vec<_>>>()?;
    let accessible = body
        .opt_strings("accessibleHospitals", 40, 100)?
        .unwrap_or_default()
        .iter()
        .map(|h| h.parse::<HospitalId>())
        .collect::<ApiResult<Vec<_>>>()?;
    if accessible.contains(id) {
        return Err(ApiError::validation(
            "accessibleHospitals lists other hospitals; a user always reads its own",
        ));
    }
    body.finish()?;

    // The key carries the strongest of the user's roles.
    let role = [Role::Admin, Role::Reader, Role::Agent]
        .into_iter()
        .find(|r| roles.contains(r))
        .unwrap_or(Role::Reader);
    let pepper = &ctx.secrets_for_route().await?.pepper;
    let issued = auth::issue_hospital_key(pepper, id);
    let label = format!("user {username}");
    let user = NewUser {
        hospital_id: id,
        username: &username,
        email: &email,
        roles: &roles,
        accessible_hospitals: &accessible,
        key: KeyRecord {
            hospital_id: id,
            key_id: &issued.key_id,
            hash: &issued.hash,
            role,
            label: &label,
            username: Some(&username),
            accessible_hospitals: &accessible,
        },
    };
    let mut data = tenants::create_user(ctx, &user).await?;
    tracing::info!(hospital_id = %id, key_id = %issued.key_id, "user created");
    data["apiKey"] = json!(issued.token);
    Ok(data)
}

async fn create_grant(
    ctx: &Context,
    req: &Request,
    caller: &Principal,
    id: &HospitalId,
) -> ApiResult<Value> {
    let mut body = json_fields(req, MAX_JSON_BODY)?;
    let grantee: HospitalId = body.string("hospitalId", 40)?.parse()?;
    body.finish()?;
    if &grantee == id {
        return Err(ApiError::validation(
            "hospitalId must be another hospital than your own",
        ));
    }
    tenants::require_hospital(ctx, &grantee).await?;
    let by = caller
        .hospital()
        .map(|p| p.key_id.to_string())
        .unwrap_or_default();
    let grant = tenants::put_grant(ctx, id, &grantee, &by).await?;
    tracing::info!(hospital_id = %id, grantee = %grantee, "grant given");
    Ok(grant)
}
