//! Hospitals and what belongs to them in the tenants table: API keys,
//! users, grants and agent heartbeats. Key design: `docs/data-model.md`.
//!
//! Every read and write names the hospital in its partition key; listing
//! all hospitals (platform admin only) is a Query on `gsi1`, never a Scan.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::auth::KeyId;
use crate::context::Context;
use crate::domain::{HospitalId, HospitalSettings, HospitalStatus, Plan, Role};
use crate::dynamo::{self, store_error};
use crate::error::{ApiError, ApiResult};
use crate::item::{self, Item, get_s, get_strings, get_u64, n, s};
use crate::time::{now, parse_rfc3339, rfc3339};

const HOSPITAL_SK: &str = "HOSPITAL";
const HOSPITALS_GSI: &str = "HOSPITALS";

/// A hospital as stored.
#[derive(Debug, Clone)]
pub struct Hospital {
    pub id: HospitalId,
    pub name: String,
    pub contact_email: String,
    pub contact_phone: String,
    pub address: String,
    pub plan: Plan,
    pub status: HospitalStatus,
    pub settings: HospitalSettings,
    pub max_users: u32,
    pub max_storage_bytes: u64,
    pub user_count: u32,
    pub subscription_start: String,
    pub subscription_end: String,
    pub created_at: String,
    pub updated_at: String,
}

impl Hospital {
    /// Whether the subscription has ended at `at`.
    pub fn subscription_expired(&self, at: OffsetDateTime) -> bool {
        parse_rfc3339(&self.subscription_end).is_none_or(|end| end <= at)
    }

    /// The hospital as the API shows it: no key material, ever.
    pub fn to_json(&self) -> Value {
        json!({
            "hospitalId": self.id,
            "name": self.name,
            "contactEmail": self.contact_email,
            "contactPhone": self.contact_phone,
            "address": self.address,
            "plan": self.plan.as_str(),
            "status": self.status.as_str(),
            "settings": self.settings,
            "maxUsers": self.max_users,
            "maxStorageBytes": self.max_storage_bytes,
            "userCount": self.user_count,
            "subscriptionStart": self.subscription_start,
            "subscriptionEnd": self.subscription_end,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        })
    }

    fn to_item(&self) -> Item {
        let settings = serde_json::to_value(&self.settings).unwrap_or_default();
        HashMap::from([
            ("pk".into(), s(self.id.as_str())),
            ("sk".into(), s(HOSPITAL_SK)),
            ("gsi1pk".into(), s(HOSPITALS_GSI)),
            (
                "gsi1sk".into(),
                s(format!("{}#{}", self.created_at, self.id)),
            ),
            ("hospitalId".into(), s(self.id.as_str())),
            ("name".into(), s(&self.name)),
            ("contactEmail".into(), s(&self.contact_email)),
            ("contactPhone".into(), s(&self.contact_phone)),
            ("address".into(), s(&self.address)),
            ("plan".into(), s(self.plan.as_str())),
            ("status".into(), s(self.status.as_str())),
            ("settings".into(), item::from_json(&settings)),
            ("maxUsers".into(), n(self.max_users)),
            ("maxStorageBytes".into(), n(self.max_storage_bytes)),
            ("userCount".into(), n(self.user_count)),
            ("subscriptionStart".into(), s(&self.subscription_start)),
            ("subscriptionEnd".into(), s(&self.subscription_end)),
            ("createdAt".into(), s(&self.created_at)),
            ("updatedAt".into(), s(&self.updated_at)),
        ])
    }

    /// Reads a hospital item; `None` if it is not one.
    pub fn from_item(item: &Item) -> Option<Self> {
        let settings = item
            .get("settings")
            .map(item::to_json)
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let text = |k: &str| get_s(item, k).unwrap_or_default().to_owned();
        Some(Hospital {
            id: get_s(item, "hospitalId")?.parse().ok()?,
            name: text("name"),
            contact_email: text("contactEmail"),
            contact_phone: text("contactPhone"),
            address: text("address"),
            plan: get_s(item, "plan")?.parse().ok()?,
            status: get_s(item, "status")?.parse().ok()?,
            settings,
            max_users: get_u64(item, "maxUsers").unwrap_or(0) as u32,
            max_storage_bytes: get_u64(item, "maxStorageBytes").unwrap_or(0),
            user_count: get_u64(item, "userCount").unwrap_or(0) as u32,
            subscription_start: text("subscriptionStart"),
            subscription_end: text("subscriptionEnd"),
            created_at: text("createdAt"),
            updated_at: text("updatedAt"),
        })
    }
}

/// What registration supplies.
#[derive(Debug, Clone)]
pub struct NewHospital {
    pub name: String,
    pub contact_email: String,
    pub contact_phone: String,
    pub address: String,
    pub plan: Plan,
    pub settings: HospitalSettings,
}

/// A stored API key, without its hash.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub hospital_id: HospitalId,
    pub key_id: KeyId,
    pub role: Role,
    pub label: String,
    pub status: String,
    pub username: Option<String>,
    pub accessible_hospitals: Vec<HospitalId>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    /// Only the authorizer reads this.
    pub key_hash: String,
}

impl StoredKey {
    fn from_item(item: &Item) -> Option<Self> {
        Some(StoredKey {
            hospital_id: get_s(item, "hospitalId")?.parse().ok()?,
            key_id: KeyId::parse(get_s(item, "keyId")?)?,
            role: get_s(item, "role")?.parse().ok()?,
            label: get_s(item, "label").unwrap_or_default().to_owned(),
            status: get_s(item, "status").unwrap_or("active").to_owned(),
            username: get_s(item, "username").map(str::to_owned),
            accessible_hospitals: get_strings(item, "accessibleHospitals")
                .iter()
                .filter_map(|h| h.parse().ok())
                .collect(),
            created_at: get_s(item, "createdAt").unwrap_or_default().to_owned(),
            last_used_at: get_s(item, "lastUsedAt").map(str::to_owned),
            key_hash: get_s(item, "keyHash")?.to_owned(),
        })
    }

    /// The key as listings show it: no hash, no secret.
    pub fn to_json(&self) -> Value {
        json!({
            "keyId": self.key_id.as_str(),
            "hospitalId": self.hospital_id,
            "role": self.role.as_str(),
            "label": self.label,
            "status": self.status,
            "username": self.username,
            "createdAt": self.created_at,
            "lastUsedAt": self.last_used_at,
        })
    }

    /// Whether the key may still be used.
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// A key to store, with its hash.
pub struct KeyRecord<'a> {
    pub hospital_id: &'a HospitalId,
    pub key_id: &'a KeyId,
    pub hash: &'a str,
    pub role: Role,
    pub label: &'a str,
    pub username: Option<&'a str>,
    pub accessible_hospitals: &'a [HospitalId],
}

impl KeyRecord<'_> {
    fn to_item(&self, at: &str) -> Item {
        let accessible: Vec<String> = self
            .accessible_hospitals
            .iter()
            .map(|h| h.to_string())
            .collect();
        let mut item = HashMap::from([
            ("pk".into(), s(self.hospital_id.as_str())),
            ("sk".into(), s(format!("KEY#{}", self.key_id))),
            ("hospitalId".into(), s(self.hospital_id.as_str())),
            ("keyId".into(), s(self.key_id.as_str())),
            ("keyHash".into(), s(self.hash)),
            ("role".into(), s(self.role.as_str())),
            ("label".into(), s(self.label)),
            ("status".into(), s("active")),
            ("accessibleHospitals".into(), item::strings(&accessible)),
            ("createdAt".into(), s(at)),
        ]);
        if let Some(user) = self.username {
            item.insert("username".into(), s(user));
        }
        item
    }
}

fn hospital_key(id: &HospitalId) -> Item {
    HashMap::from([("pk".into(), s(id.as_str())), ("sk".into(), s(HOSPITAL_SK))])
}

/// Creates a hospital and its first key in one transaction.
pub async fn create_hospital(
    ctx: &Context,
    new: NewHospital,
    first_key: &KeyRecord<'_>,
) -> ApiResult<Hospital> {
    let at = now();
    let stamp = rfc3339(at);
    let end = at
        .replace_year(at.year() + 1)
        .unwrap_or(at + time::Duration::days(365));
    let hospital = Hospital {
        id: first_key.hospital_id.clone(),
        name: new.name,
        contact_email: new.contact_email,
        contact_phone: new.contact_phone,
        address: new.address,
        plan: new.plan,
        status: HospitalStatus::Active,
        settings: new.settings,
        max_users: new.plan.max_users(),
        max_storage_bytes: new.plan.max_storage_bytes(),
        user_count: 0,
        subscription_start: stamp.clone(),
        subscription_end: rfc3339(end),
        created_at: stamp.clone(),
        updated_at: stamp.clone(),
    };
    let table = &ctx.settings.tenants_table;
    let put = |item: Item| {
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .expect("table, item and condition are set"),
            )
            .build()
    };
    ctx.clients
        .dynamodb
        .transact_write_items()
        .transact_items(put(hospital.to_item()))
        .transact_items(put(first_key.to_item(&stamp)))
        .send()
        .await
        .map_err(|e| store_error("creating hospital", e))?;
    Ok(hospital)
}

/// Reads a hospital; `None` if it does not exist.
pub async fn get_hospital(ctx: &Context, id: &HospitalId) -> ApiResult<Option<Hospital>> {
    let out = ctx
        .clients
        .dynamodb
        .get_item()
        .table_name(&ctx.settings.tenants_table)
        .set_key(Some(hospital_key(id)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| store_error("reading hospital", e))?;
    Ok(out.item.as_ref().and_then(Hospital::from_item))
}

/// Reads a hospital, answering 404 when it does not exist.
pub async fn require_hospital(ctx: &Context, id: &HospitalId) -> ApiResult<Hospital> {
    get_hospital(ctx, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("hospital {id}")))
}

/// One page of hospitals, oldest first.
pub async fn list_hospitals(
    ctx: &Context,
    limit: i32,
    start: Option<Item>,
) -> ApiResult<(Vec<Hospital>, Option<Item>)> {
    let out = ctx
        .clients
        .dynamodb
        .query()
        .table_name(&ctx.settings.tenants_table)
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :p")
        .expression_attribute_values(":p", s(HOSPITALS_GSI))
        .limit(limit)
        .set_exclusive_start_key(start)
        .send()
        .await
        .map_err(|e| store_error("listing hospitals", e))?;
    let hospitals = out.items().iter().filter_map(Hospital::from_item).collect();
    Ok((hospitals, out.last_evaluated_key))
}

/// What a PATCH may change.
#[derive(Debug, Default)]
pub struct HospitalPatch {
    pub status: Option<HospitalStatus>,
    pub plan: Option<Plan>,
    pub subscription_end: Option<String>,
    pub settings: Option<HospitalSettings>,
}

/// Applies a patch to an existing hospital and returns the result.
pub async fn update_hospital(
    ctx: &Context,
    id: &HospitalId,
    patch: HospitalPatch,
) -> ApiResult<Hospital> {
    let mut sets = vec!["updatedAt = :now".to_owned()];
    let mut values: Item = HashMap::from([(":now".into(), s(rfc3339(now())))]);
    let mut names: HashMap<String, String> = HashMap::new();
    if let Some(status) = patch.status {
        sets.push("#status = :status".into());
        names.insert("#status".into(), "status".into());
        values.insert(":status".into(), s(status.as_str()));
    }
    if let Some(plan) = patch.plan {
        sets.push("#plan = :plan, maxUsers = :mu, maxStorageBytes = :ms".into());
        names.insert("#plan".into(), "plan".into());
        values.insert(":plan".into(), s(plan.as_str()));
        values.insert(":mu".into(), n(plan.max_users()));
        values.insert(":ms".into(), n(plan.max_storage_bytes()));
    }
    if let Some(end) = patch.subscription_end {
        sets.push("subscriptionEnd = :end".into());
        values.insert(":end".into(), s(end));
    }
    if let Some(settings) = patch.settings {
        let v = serde_json::to_value(&settings).map_err(ApiError::internal)?;
        sets.push("settings = :settings".into());
        values.insert(":settings".into(), item::from_json(&v));
    }
    let result = ctx
        .clients
        .dynamodb
        .update_item()
        .table_name(&ctx.settings.tenants_table)
        .set_key(Some(hospital_key(id)))
        .update_expression(format!("SET {}", sets.join(", ")))
        .condition_expression("attribute_exists(pk)")
        .set_expression_attribute_names((!names.is_empty()).then_some(names))
        .set_expression_attribute_values(Some(values))
        .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
        .send()
        .await;
    match result {
        Ok(out) => out
            .attributes
            .as_ref()
            .and_then(Hospital::from_item)
            .ok_or_else(|| ApiError::internal("updated hospital item unreadable")),
        Err(e) if is_condition_failure(&e) => Err(ApiError::not_found(format!("hospital {id}"))),
        Err(e) => Err(store_error("updating hospital", e)),
    }
}

/// Whether a write failed on its condition (or a transaction on one of its
/// conditions).
pub fn is_condition_failure<E: ProvideErrorMetadata>(
    err: &aws_sdk_dynamodb::error::SdkError<E>,
) -> bool {
    matches!(
        err.code(),
        Some("ConditionalCheckFailedException") | Some("TransactionCanceledException")
    )
}

/// Stores a new key.
pub async fn put_key(ctx: &Context, key: &KeyRecord<'_>) -> ApiResult<()> {
    ctx.clients
        .dynamodb
        .put_item()
        .table_name(&ctx.settings.tenants_table)
        .set_item(Some(key.to_item(&rfc3339(now()))))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .map_err(|e| store_error("storing key", e))?;
    Ok(())
}

/// Lists a hospital's keys, without secrets or hashes.
pub async fn list_keys(ctx: &Context, id: &HospitalId) -> ApiResult<Vec<StoredKey>> {
    let items = query_prefix(ctx, id, "KEY#").await?;
    Ok(items.iter().filter_map(StoredKey::from_item).collect())
}

/// Marks a key revoked; 404 if the hospital has no such key.
pub async fn revoke_key(ctx: &Context, id: &HospitalId, key_id: &KeyId) -> ApiResult<()> {
    let result = ctx
        .clients
        .dynamodb
        .update_item()
        .table_name(&ctx.settings.tenants_table)
        .key("pk", s(id.as_str()))
        .key("sk", s(format!("KEY#{key_id}")))
        .update_expression("SET #status = :revoked, revokedAt = :now")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":revoked", s("revoked"))
        .expression_attribute_values(":now", s(rfc3339(now())))
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_condition_failure(&e) => Err(ApiError::not_found(format!("key {key_id}"))),
        Err(e) => Err(store_error("revoking key", e)),
    }
}

/// Reads a key and its hospital in one consistent BatchGetItem: the
/// authorizer's only read on the common path.
pub async fn get_key_and_hospital(
    ctx: &Context,
    id: &HospitalId,
    key_id: &KeyId,
) -> ApiResult<(Option<StoredKey>, Option<Hospital>)> {
    let keys = vec![
        hospital_key(id),
        item::key(id.as_str(), format!("KEY#{key_id}")),
    ];
    let found = dynamo::batch_get_consistent(ctx, &ctx.settings.tenants_table, keys).await?;

    let key = found.iter().find_map(StoredKey::from_item);
    let hospital = found.iter().find_map(Hospital::from_item);
    Ok((key, hospital))
}

/// Records that a key was used, at most once a minute per key, so that the
/// hot path does not write on every request.
pub async fn touch_key(ctx: &Context, key: &StoredKey) {
    let at = now();
    let fresh = key
        .last_used_at
        .as_deref()
        .and_then(parse_rfc3339)
        .is_some_and(|last| at - last < time::Duration::minutes(1));
    if fresh {
        return;
    }
    let cutoff = rfc3339(at - time::Duration::minutes(1));
    let result = ctx
        .clients
        .dynamodb
        .update_item()
        .table_name(&ctx.settings.tenants_table)
        .key("pk", s(key.hospital_id.as_str()))
        .key("sk", s(format!("KEY#{}", key.key_id)))
        .update_expression("SET lastUsedAt = :now")
        .condition_expression(
            "attribute_exists(pk) AND (attribute_not_exists(lastUsedAt) OR lastUsedAt < :cutoff)",
        )
        .expression_attribute_values(":now", s(rfc3339(at)))
        .expression_attribute_values(":cutoff", s(cutoff))
        .send()
        .await;
    if let Err(e) = result {
        if !is_condition_failure(&e) {
            tracing::warn!(key_id = %key.key_id, error = %e, "could not record key use");
        }
    }
}

/// A user to create.
pub struct NewUser<'a> {
    pub hospital_id: &'a HospitalId,
    pub username: &'a str,
    pub email: &'a str,
    pub roles: &'a [Role],
    pub accessible_hospitals: &'a [HospitalId],
    pub key: KeyRecord<'a>,
}

/// Creates a user and its key, counting it against the plan's `maxUsers`,
/// all in one transaction: at the limit nothing is created.
pub async fn create_user(ctx: &Context, user: &NewUser<'_>) -> ApiResult<Value> {
    let table = &ctx.settings.tenants_table;
    let at = rfc3339(now());
    let roles: Vec<String> = user.roles.iter().map(|r| r.as_str().to_owned()).collect();
    let accessible: Vec<String> = user
        .accessible_hospitals
        .iter()
        .map(|h| h.to_string())
        .collect();
    let user_item: Item = HashMap::from([
        ("pk".into(), s(user.hospital_id.as_str())),
        ("sk".into(), s(format!("USER#{}", user.username))),
        ("hospitalId".into(), s(user.hospital_id.as_str())),
        ("username".into(), s(user.username)),
        ("email".into(), s(user.email)),
        ("roles".into(), item::strings(&roles)),
        ("accessibleHospitals".into(), item::strings(&accessible)),
        ("keyId".into(), s(user.key.key_id.as_str())),
        ("createdAt".into(), s(&at)),
    ]);
    let count = Update::builder()
        .table_name(table)
        .set_key(Some(hospital_key(user.hospital_id)))
        .update_expression("ADD userCount :one")
        .condition_expression("attribute_exists(pk) AND userCount < maxUsers")
        .expression_attribute_values(":one", n(1))
        .build()
        .map_err(ApiError::internal)?;
    let put = |item: Item| {
        Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(ApiError::internal)
    };
    let result = ctx
        .clients
        .dynamodb
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().update(count).build())
        .transact_items(TransactWriteItem::builder().put(put(user_item)?).build())
        .transact_items(
            TransactWriteItem::builder()
                .put(put(user.key.to_item(&at))?)
                .build(),
        )
        .send()
        .await;
    match result {
        Ok(_) => Ok(json!({
            "username": user.username,
            "email": user.email,
            "roles": roles,
            "accessibleHospitals": accessible,
            "keyId": user.key.key_id.as_str(),
            "createdAt": at,
        })),
        Err(e) => {
            let reasons = cancellation_codes(&e);
            match reasons.as_slice() {
                [Some(c), ..] if c == "ConditionalCheckFailed" => Err(ApiError::forbidden(
                    "UserLimitReached",
                    "the hospital has reached its plan's maxUsers; upgrade the plan or remove a user",
                )),
                [_, Some(c), ..] if c == "ConditionalCheckFailed" => {
                    Err(ApiError::conflict(format!(
                        "username {:?} already exists in this hospital",
                        user.username
                    )))
                }
                _ => Err(store_error("creating user", e)),
            }
        }
    }
}

fn cancellation_codes<R>(
    err: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        R,
    >,
) -> Vec<Option<String>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(t)) => t
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().filter(|c| *c != "None").map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Lists a hospital's users.
pub async fn list_users(ctx: &Context, id: &HospitalId) -> ApiResult<Vec<Value>> {
    let items = query_prefix(ctx, id, "USER#").await?;
    Ok(items
        .iter()
        .map(|i| {
            json!({
                "username": get_s(i, "username"),
                "email": get_s(i, "email"),
                "roles": get_strings(i, "roles"),
                "accessibleHospitals": get_strings(i, "accessibleHospitals"),
                "keyId": get_s(i, "keyId"),
                "createdAt": get_s(i, "createdAt"),
            })
        })
        .collect())
}

/// Lets `grantee`'s users read all of `owner`'s studies.
pub async fn put_grant(
    ctx: &Context,
    owner: &HospitalId,
    grantee: &HospitalId,
    created_by: &str,
) -> ApiResult<Value> {
    let at = rfc3339(now());
    ctx.clients
        .dynamodb
        .put_item()
        .table_name(&ctx.settings.tenants_table)
        .item("pk", s(owner.as_str()))
        .item("sk", s(format!("GRANT#{grantee}")))
        .item("hospitalId", s(owner.as_str()))
        .item("granteeHospitalId", s(grantee.as_str()))
        .item("createdAt", s(&at))
        .item("createdBy", s(created_by))
        .send()
        .await
        .map_err(|e| store_error("storing grant", e))?;
    Ok(json!({ "hospitalId": owner, "granteeHospitalId": grantee, "createdAt": at }))
}

/// Withdraws a grant; 404 if there was none.
pub async fn delete_grant(
    ctx: &Context,
    owner: &HospitalId,
    grantee: &HospitalId,
) -> ApiResult<()> {
    let result = ctx
        .clients
        .dynamodb
        .delete_item()
        .table_name(&ctx.settings.tenants_table)
        .key("pk", s(owner.as_str()))
        .key("sk", s(format!("GRANT#{grantee}")))
        .condition_expression("attribute_exists(pk)")
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_condition_failure(&e) => {
            Err(ApiError::not_found(format!("grant to {grantee}")))
        }
        Err(e) => Err(store_error("deleting grant", e)),
    }
}

/// Lists the grants a hospital has given.
pub async fn list_grants(ctx: &Context, owner: &HospitalId) -> ApiResult<Vec<Value>> {
    let items = query_prefix(ctx, owner, "GRANT#").await?;
    Ok(items
        .iter()
        .map(|i| {
            json!({
                "granteeHospitalId": get_s(i, "granteeHospitalId"),
                "createdAt": get_s(i, "createdAt"),
            })
        })
        .collect())
}

/// Of `candidates`, the hospitals that have granted `grantee` access: one
/// BatchGetItem of their grant items.
pub async fn granted_by(
    ctx: &Context,
    grantee: &HospitalId,
    candidates: &[HospitalId],
) -> ApiResult<Vec<HospitalId>> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let keys = candidates
        .iter()
        .map(|owner| item::key(owner.as_str(), format!("GRANT#{grantee}")))
        .collect();
    let items = dynamo::batch_get_consistent(ctx, &ctx.settings.tenants_table, keys).await?;
    let mut found: Vec<HospitalId> = items
        .iter()
        .filter_map(|i| get_s(i, "hospitalId").and_then(|h| h.parse().ok()))
        .collect();
    found.sort();
    found.dedup();
    Ok(found)
}

/// An agent's heartbeat.
pub struct Heartbeat<'a> {
    pub hospital_id: &'a HospitalId,
    pub hospital_name: &'a str,
    pub version: &'a str,
    pub capabilities: &'a [String],
    pub status: &'a str,
    pub key_id: &'a KeyId,
    pub source_ip: &'a str,
}

/// Records an agent's heartbeat as its last-seen state.
pub async fn record_heartbeat(ctx: &Context, beat: &Heartbeat<'_>) -> ApiResult<Value> {
    let at = rfc3339(now());
    ctx.clients
        .dynamodb
        .put_item()
        .table_name(&ctx.settings.tenants_table)
        .item("pk", s(beat.hospital_id.as_str()))
        .item("sk", s(format!("AGENT#{}", beat.hospital_name)))
        .item("hospitalId", s(beat.hospital_id.as_str()))
        .item("hospitalName", s(beat.hospital_name))
        .item("version", s(beat.version))
        .item("capabilities", item::strings(beat.capabilities))
        .item("status", s(beat.status))
        .item("keyId", s(beat.key_id.as_str()))
        .item("sourceIp", s(beat.source_ip))
        .item("lastSeenAt", s(&at))
        .send()
        .await
        .map_err(|e| store_error("recording heartbeat", e))?;
    Ok(json!({
        "hospitalName": beat.hospital_name,
        "version": beat.version,
        "capabilities": beat.capabilities,
        "status": beat.status,
        "lastSeenAt": at,
    }))
}

/// The agents a hospital has seen, with when each was last seen.
pub async fn list_agents(ctx: &Context, id: &HospitalId) -> ApiResult<Vec<Value>> {
    let items = query_prefix(ctx, id, "AGENT#").await?;
    Ok(items
        .iter()
        .map(|i| {
            json!({
                "hospitalName": get_s(i, "hospitalName"),
                "version": get_s(i, "version"),
                "capabilities": get_strings(i, "capabilities"),
                "status": get_s(i, "status"),
                "lastSeenAt": get_s(i, "lastSeenAt"),
            })
        })
        .collect())
}

/// All items of a hospital's partition whose sort key starts with `prefix`,
/// following pages. Bounded by what one hospital owns of that kind (keys,
/// users, grants, agents: tens to hundreds).
async fn query_prefix(ctx: &Context, id: &HospitalId, prefix: &str) -> ApiResult<Vec<Item>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = ctx
            .clients
            .dynamodb
            .query()
            .table_name(&ctx.settings.tenants_table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(id.as_str()))
            .expression_attribute_values(":prefix", s(prefix))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| store_error("listing tenant items", e))?;
        items.extend(out.items.unwrap_or_default());
        start = out.last_evaluated_key;
        if start.is_none() {
            return Ok(items);
        }
    }
}
