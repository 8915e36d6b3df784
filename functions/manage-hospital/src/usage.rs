//! `GET /api/usage`: storage used against the plan, users against the plan.

use pacs_shared::domain::HospitalId;
use pacs_shared::{ApiResult, Context, tenants};
use serde_json::{Value, json};

/// The usage report of one hospital.
pub async fn report(ctx: &Context, id: &HospitalId) -> ApiResult<Value> {
    let hospital = tenants::require_hospital(ctx, id).await?;
    let stored = pacs_shared::usage::stored(ctx, id).await?;
    Ok(json!({
        "hospitalId": id,
        "plan": hospital.plan.as_str(),
        "storage": {
            "usedBytes": stored.bytes,
            "maxBytes": hospital.max_storage_bytes,
        },
        "users": {
            "count": hospital.user_count,
            "max": hospital.max_users,
        },
        "instances": stored.instances,
    }))
}
