//! `POST /api/agents/register`: a bridge agent reports that it is alive,
//! with its version, capabilities and status. Admins see it on the
//! hospital as last seen.

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use pacs_shared::http::{MAX_JSON_BODY, json_fields, principal, respond, source_ip};
use pacs_shared::tenants::{self, Heartbeat};
use pacs_shared::{ApiError, ApiResult, Context};
use serde_json::Value;

/// Handles one request that the authorizer already let through.
pub async fn handle(ctx: &Context, req: Request) -> Response<Body> {
    respond(StatusCode::OK, heartbeat(ctx, &req).await)
}

async fn heartbeat(ctx: &Context, req: &Request) -> ApiResult<Value> {
    let caller = principal(req)?;
    let agent = caller
        .hospital()
        .filter(|p| p.role.can_upload())
        .ok_or_else(|| ApiError::role_required("register an agent (agent or admin keys)"))?;

    let mut body = json_fields(req, MAX_JSON_BODY)?;
    let hospital_name = body.string("hospitalName", 200)?;
    let version = body.string("version", 40)?;
    let capabilities = body
        .opt_strings("capabilities", 40, 20)?
        .unwrap_or_default();
    let status = body
        .opt_string("status", 40)?
        .unwrap_or_else(|| "running".into());
    // Agents may report more than this version knows; keep what we read.
    drop(body);

    let ip = source_ip(req);
    let beat = Heartbeat {
        hospital_id: &agent.hospital_id,
        hospital_name: &hospital_name,
        version: &version,
        capabilities: &capabilities,
        status: &status,
        key_id: &agent.key_id,
        source_ip: &ip,
    };
    let data = tenants::record_heartbeat(ctx, &beat).await?;
    tracing::info!(hospital_id = %agent.hospital_id, version = %version, "agent heartbeat");
    Ok(data)
}
