//! `POST /api/hospitals/register`: the platform operator registers a
//! hospital and receives its first key (role `agent`), shown once.

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use pacs_shared::auth::{self, Principal};
use pacs_shared::domain::{HospitalId, HospitalSettings, Role};
use pacs_shared::http::{MAX_JSON_BODY, json_fields, principal, respond};
use pacs_shared::tenants::{self, KeyRecord, NewHospital};
use pacs_shared::validate::{self, Fields};
use pacs_shared::{ApiError, ApiResult, Context};
use serde_json::{Value, json};

/// Handles one request that the authorizer already let through.
pub async fn handle(ctx: &Context, req: Request) -> Response<Body> {
    respond(StatusCode::CREATED, register(ctx, &req).await)
}

async fn register(ctx: &Context, req: &Request) -> ApiResult<Value> {
    if principal(req)? != Principal::PlatformAdmin {
        return Err(ApiError::role_required(
            "register hospitals (platform-admin only)",
        ));
    }
    let new = parse_registration(json_fields(req, MAX_JSON_BODY)?)?;

    let id = HospitalId::generate();
    let pepper = &ctx.secrets_for_route().await?.pepper;
    let issued = auth::issue_hospital_key(pepper, &id);
    let record = KeyRecord {
        hospital_id: &id,
        key_id: &issued.key_id,
        hash: &issued.hash,
        role: Role::Agent,
        label: "first agent key",
        username: None,
        accessible_hospitals: &[],
    };
    let hospital = tenants::create_hospital(ctx, new, &record).await?;

    tracing::info!(hospital_id = %id, plan = hospital.plan.as_str(), "hospital registered");
    let mut data = hospital.to_json();
    data["apiKey"] = json!(issued.token);
    data["keyId"] = json!(issued.key_id.as_str());
    Ok(data)
}

/// Reads and checks the registration body, naming the first wrong field.
pub fn parse_registration(mut body: Fields) -> ApiResult<NewHospital> {
    let name = body.string("name", 200)?;
    let contact_email = body.string("contactEmail", 254)?;
    validate::email("contactEmail", &contact_email)?;
    let contact_phone = body.string("contactPhone", 40)?;
    validate::phone("contactPhone", &contact_phone)?;
    let address = match body.opt_raw("address") {
        None => return Err(ApiError::validation("address is required")),
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 500 => s.trim().to_owned(),
        Some(Value::Object(parts)) if !parts.is_empty() => {
            // Structured addresses are kept as given, one line per part.
            let mut lines = Vec::new();
            for (k, v) in parts {
                match v {
                    Value::String(s) if s.len() <= 200 => lines.push(s.trim().to_owned()),
                    _ => {
                        return Err(ApiError::validation(format!(
                            "address.{k} must be a string of at most 200 characters"
                        )));
                    }
                }
            }
            lines.retain(|l| !l.is_empty());
            lines.join(", ")
        }
        Some(_) => {
            return Err(ApiError::validation(
                "address must be a non-empty string of at most 500 characters, or an object of strings",
            ));
        }
    };
    let plan = body.string("plan", 20)?.parse()?;
    let settings = match body.opt_object("settings")? {
        Some(fields) => parse_settings(fields)?,
        None => HospitalSettings::default(),
    };
    body.finish()?;
    Ok(NewHospital {
        name,
        contact_email,
        contact_phone,
        address,
        plan,
        settings,
    })
}

/// Reads hospital settings field by field.
pub fn parse_settings(mut f: Fields) -> ApiResult<HospitalSettings> {
    let settings = HospitalSettings {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> ApiResult<NewHospital> {
        parse_registration(Fields::new(v).unwrap())
    }

    fn valid() -> Value {
        json!({
            "name": "St. Example", "contactEmail": "it@example.org",
            "contactPhone": "+41 44 123 45 67", "address": "1 Main St",
            "plan": "basic", "settings": {"allowedIPs": ["10.0.0.0/8"]}
        })
    }

    #[test]
    fn accepts_a_complete_body() {
        let h = parse(valid()).unwrap();
        assert_eq!(h.settings.allowed_ips, vec!["10.0.0.0/8"]);
    }

    #[test]
    fn names_each_wrong_field() {
        for (field, value, expect) in [
            ("name", json!(""), "name"),
            ("contactEmail", json!("nope"), "contactEmail"),
            ("contactPhone", json!("abc"), "contactPhone"),
            ("plan", json!("gold"), "plan"),
            (
                "settings",
                json!({"allowedIPs": ["300.1.1.1/8"]}),
                "allowedIPs",
            ),
            (
                "settings",
                json!({"dataRetentionDays": -1}),
                "dataRetentionDays",
            ),
            ("address", json!(12), "address"),
            ("extra", json!(1), "extra"),
        ] {
            let mut body = valid();
            body[field] = value;
            let err = parse(body)
                .err()
                .unwrap_or_else(|| panic!("{field} accepted"));
            assert!(err.message.contains(expect), "{field}: {}", err.message);
        }
    }
}
