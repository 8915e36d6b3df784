//! Single studies one hospital shares with another, read-only, optionally
//! until a given time.
//!
//! A share is three writes made in one transaction: the owner-side item
//! (`{owner}#{study}`, `SHARE#{grantee}`), the grantee-side item
//! (`{grantee}#SHARED`, `{owner}#{study}`) that the grantee's queries read,
//! and the grantee added to the study's `sharedWith`. Expiry is checked on
//! every read, so an expired share stops at once; the table's TTL removes
//! the items later (the study's `sharedWith` keeps the grantee until the
//! share is revoked or replaced).

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use serde::Serialize;
use time::OffsetDateTime;

use crate::auth::KeyId;
use crate::context::Context;
use crate::domain::HospitalId;
use crate::dynamo::store_error;
use crate::error::{ApiError, ApiResult};
use crate::item::{Item, get_i64, get_string, key, n, s};
use crate::studies::{STUDY_SK, study_pk};

/// Partition of the studies shared with `grantee`.
pub fn shared_pk(grantee: &HospitalId) -> String {
    format!("{grantee}#SHARED")
}

/// A share as the grantee side sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedStudy {
    /// The hospital that owns the study.
    pub owner: HospitalId,
    /// The study's UID.
    pub study_uid: String,
    /// Epoch seconds after which the share no longer counts.
    pub expires_at: Option<i64>,
}

/// A share as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Share {
    /// Study Instance UID (0020,000D).
    pub study_instance_uid: String,
    /// The grantee hospital.
    pub hospital_id: String,
    /// The hospital that owns the study.
    pub owner_hospital_id: String,
    /// Always `read`: the only level implemented.
    pub access_level: &'static str,
    /// When the share ends, if it does (RFC 3339).
    pub expires_at: Option<String>,
    /// When the first instance was indexed (RFC 3339).
    pub created_at: String,
}

fn active(item: &Item, now: i64) -> bool {
    get_i64(item, "expiresAt").is_none_or(|t| t > now)
}

/// The unexpired studies shared with `grantee`: one Query of its
/// `#SHARED` partition.
pub async fn list_shared_with(ctx: &Context, grantee: &HospitalId) -> ApiResult<Vec<SharedStudy>> {
    let now = crate::time::now().unix_timestamp();
    let mut out = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let resp = ctx
            .clients
            .dynamodb
            .query()
            .table_name(&ctx.settings.archive_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(shared_pk(grantee)))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| store_error("query shares", e))?;
        for item in resp.items.unwrap_or_default() {
            if !active(&item, now) {
                continue;
            }
            let owner = get_string(&item, "ownerHospitalId").and_then(|h| h.parse().ok());
            let uid = get_string(&item, "studyInstanceUid");
            if let (Some(owner), Some(study_uid)) = (owner, uid) {
                out.push(SharedStudy {
                    owner,
                    study_uid,
                    expires_at: get_i64(&item, "expiresAt"),
                });
            }
        }
        start = resp.last_evaluated_key.filter(|k| !k.is_empty());
        if start.is_none() {
            return Ok(out);
        }
    }
}

/// Whether `owner` currently shares `study_uid` with `grantee`.
pub async fn share_active(
    ctx: &Context,
    grantee: &HospitalId,
    owner: &HospitalId,
    study_uid: &str,
) -> ApiResult<bool> {
    let out = ctx
        .clients
        .dynamodb
        .get_item()
        .table_name(&ctx.settings.archive_table)
        .set_key(Some(key(shared_pk(grantee), study_pk(owner, study_uid))))
        .send()
        .await
        .map_err(|e| store_error("get share", e))?;
    let now = crate::time::now().unix_timestamp();
    Ok(out.item.is_some_and(|item| active(&item, now)))
}

/// Whether `hospital` is registered: one GetItem of its tenants item.
pub async fn hospital_exists(ctx: &Context, hospital: &HospitalId) -> ApiResult<bool> {
    let out = ctx
        .clients
        .dynamodb
        .get_item()
        .table_name(&ctx.settings.tenants_table)
        .set_key(Some(key(hospital.as_str(), "HOSPITAL")))
        .projection_expression("pk")
        .send()
        .await
        .map_err(|e| store_error("get hospital", e))?;
    Ok(out.item.is_some())
}

/// Shares `owner`'s study with `grantee` for reading, until `expires_at`
/// when given; sharing again replaces the expiry. 404 when the study is
/// gone.
pub async fn create_share(
    ctx: &Context,
    owner: &HospitalId,
    study_uid: &str,
    grantee: &HospitalId,
    expires_at: Option<OffsetDateTime>,
    created_by: &KeyId,
) -> ApiResult<Share> {
    let now = crate::time::rfc3339(crate::time::now());
    let table = &ctx.settings.archive_table;
    let study_key = study_pk(owner, study_uid);
    let common = |item: &mut Item| {
        item.insert("ownerHospitalId".into(), s(owner.as_str()));
        item.insert("granteeHospitalId".into(), s(grantee.as_str()));
        item.insert("studyInstanceUid".into(), s(study_uid));
        item.insert("accessLevel".into(), s("read"));
        item.insert("createdAt".into(), s(&now));
        item.insert("createdBy".into(), s(created_by.as_str()));
        if let Some(t) = expires_at {
            item.insert("expiresAt".into(), n(t.unix_timestamp()));
        }
    };
    let mut owner_item = key(&study_key, format!("SHARE#{grantee}"));
    owner_item.insert("hospitalId".into(), s(owner.as_str()));
    common(&mut owner_item);
    let mut grantee_item = key(shared_pk(grantee), &study_key);
    grantee_item.insert("hospitalId".into(), s(grantee.as_str()));
    common(&mut grantee_item);

    let build = |e: aws_sdk_dynamodb::error::BuildError| ApiError::internal(format!("share: {e}"));
    let items = vec![
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(table)
                    .set_item(Some(owner_item))
                    .build()
                    .map_err(build)?,
            )
            .build(),
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(table)
                    .set_item(Some(grantee_item))
                    .build()
                    .map_err(build)?,
            )
            .build(),
        TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(table)
                    .set_key(Some(key(&study_key, STUDY_SK)))
                    .update_expression("ADD sharedWith :g SET updatedAt = :now")
                    .condition_expression("attribute_exists(pk)")
                    .expression_attribute_values(
                        ":g",
                        AttributeValue::Ss(vec![grantee.to_string()]),
                    )
                    .expression_attribute_values(":now", s(&now))
                    .build()
                    .map_err(build)?,
            )
            .build(),
    ];
    transact(ctx, items, || {
        ApiError::not_found(format!("study {study_uid}"))
    })
    .await?;

    Ok(Share {
        study_instance_uid: study_uid.into(),
        hospital_id: grantee.to_string(),
        owner_hospital_id: owner.to_string(),
        access_level: "read",
        expires_at: expires_at.map(crate::time::rfc3339),
        created_at: now,
    })
}

/// Revokes the share of `owner`'s study with `grantee`: all three writes
/// undone together. 404 when there is no such share.
pub async fn revoke_share(
    ctx: &Context,
    owner: &HospitalId,
    study_uid: &str,
    grantee: &HospitalId,
) -> ApiResult<()> {
    let table = &ctx.settings.archive_table;
    let study_key = study_pk(owner, study_uid);
    let now = crate::time::rfc3339(crate::time::now());
    let build = |e: aws_sdk_dynamodb::error::BuildError| ApiError::internal(format!("revoke: {e}"));
    let items = vec![
        TransactWriteItem::builder()
            .delete(
                Delete::builder()
                    .table_name(table)
                    .set_key(Some(key(&study_key, format!("SHARE#{grantee}"))))
                    .condition_expression("attribute_exists(pk)")
                    .build()
                    .map_err(build)?,
            )
            .build(),
        TransactWriteItem::builder()
            .delete(
                Delete::builder()
                    .table_name(table)
                    .set_key(Some(key(shared_pk(grantee), &study_key)))
                    .build()
                    .map_err(build)?,
            )
            .build(),
        TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(table)
                    .set_key(Some(key(&study_key, STUDY_SK)))
                    .update_expression("DELETE sharedWith :g SET updatedAt = :now")
                    .condition_expression("attribute_exists(pk)")
                    .expression_attribute_values(
                        ":g",
                        AttributeValue::Ss(vec![grantee.to_string()]),
                    )
                    .expression_attribute_values(":now", s(&now))
                    .build()
                    .map_err(build)?,
            )
            .build(),
    ];
    transact(ctx, items, || {
        ApiError::not_found(format!("share of study {study_uid} with {grantee}"))
    })
    .await
}

/// Runs a transaction; a failed condition becomes `missing()`.
async fn transact(
    ctx: &Context,
    items: Vec<TransactWriteItem>,
    missing: impl Fn() -> ApiError,
) -> ApiResult<()> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match ctx
        .clients
        .dynamodb
        .transact_write_items()
        .set_transact_items(Some(items))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(err) => match err.into_service_error() {
            TransactWriteItemsError::TransactionCanceledException(e)
                if e.cancellation_reasons()
                    .iter()
                    .any(|r| r.code() == Some("ConditionalCheckFailed")) =>
            {
                Err(missing())
            }
            other => Err(store_error("share transaction", other)),
        },
    }
}
