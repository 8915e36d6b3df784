//! A hospital's storage use: stored bytes in 16 counter shards, and bytes
//! reserved by presigned uploads that have not been counted yet.
//!
//! Stored bytes are added by the study sweep (`archive::sweep_study`), in
//! the same transaction that records what it counted on the study, to the
//! shard the study's UID picks: each file counts exactly once, and the
//! counter writes are per study, not per instance. The quota check reads
//! the hospital, the 16 shards and the reservations in one BatchGetItem.
//!
//! Reservations live in one item per hospital (`{hosp}#PENDING`), as one
//! attribute per minute in which they end (`m{epochMinute}` = bytes). A
//! presign adds its bytes to the minute its URLs expire in plus
//! [`RESERVATION_GRACE`], and removes the minutes already past; nothing
//! else writes the item, so its write rate is the presign call rate (each
//! call covers up to 100 files), not the file rate. The grace covers the
//! time from a last-second upload to the sweep that counts it, so a file
//! is always counted as pending or as stored. The trade-off: indexing does
//! not release a reservation (that would put every instance write on this
//! one key), so a file may count twice, as stored and as pending, until
//! its reservation's minute ends, at most the presign TTL plus the grace.
//! A hospital near its limit may be refused for those minutes; it is never
//! let past its limit. Concurrent presigns read before they reserve, so
//! two racing calls may each pass alone and overshoot together by at most
//! one call's declared bytes.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Update};

use crate::context::Context;
use crate::domain::{HospitalId, Plan};
use crate::dynamo;
use crate::error::ApiResult;
use crate::item::{Item, get_i64, get_s, get_u64, key, n, s};

/// How long a reservation outlives its URL: time for the upload's event
/// to be indexed and for the next sweep (every minute) to count it.
pub const RESERVATION_GRACE: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// How many counter items each hospital's usage is spread over.
pub const SHARDS: u32 = 16;

/// The same, under the name the ingest modules use.
pub const USAGE_SHARDS: u32 = SHARDS;

/// The partition key of stored-bytes shard `shard`.
pub fn shard_pk(hospital: &HospitalId, shard: u32) -> String {
    format!("{hospital}#USAGE#{shard}")
}

/// The primary key of stored-bytes shard `shard` (sort key `USAGE`).
pub fn shard_key(hospital: &HospitalId, shard: u32) -> Item {
    key(shard_pk(hospital, shard), "USAGE")
}

/// The primary key of the hospital's pending-reservations item.
pub fn pending_key(hospital: &HospitalId) -> Item {
    key(format!("{hospital}#PENDING"), "PENDING")
}

/// What a hospital stores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredUsage {
    pub bytes: u64,
    pub instances: u64,
}

/// Sums the hospital's counter shards: one BatchGetItem.
pub async fn stored(ctx: &Context, id: &HospitalId) -> ApiResult<StoredUsage> {
    let keys = (0..SHARDS).map(|shard| shard_key(id, shard)).collect();
    let (mut bytes, mut instances) = (0i64, 0i64);
    for item in dynamo::batch_get(ctx, &ctx.settings.tenants_table, keys).await? {
        // A replacement subtracts from its own shard, so one shard may be
        // negative; only the sum means anything.
        bytes += get_i64(&item, "storedBytes").unwrap_or(0);
        instances += get_i64(&item, "instances").unwrap_or(0);
    }
    Ok(StoredUsage {
        bytes: bytes.max(0) as u64,
        instances: instances.max(0) as u64,
    })
}

/// A transaction step that adds `bytes` and `instances` (either may be
/// negative) to one stored-bytes shard of `hospital`.
pub fn add_stored(
    table: &str,
    hospital: &HospitalId,
    shard: u32,
    bytes: i64,
    instances: i64,
) -> Update {
    Update::builder()
        .table_name(table)
        .set_key(Some(shard_key(hospital, shard)))
        .update_expression("SET hospitalId = :h ADD storedBytes :b, instances :i")
        .expression_attribute_values(":h", s(hospital.as_str()))
        .expression_attribute_values(":b", n(bytes))
        .expression_attribute_values(":i", n(instances))
        .build()
        .expect("table, key and expression are set")
}

/// What the quota check needs, read at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageSnapshot {
    /// The plan's storage limit; `None` when the hospital record is absent.
    pub max_storage_bytes: Option<u64>,
    /// Bytes of indexed DICOM (sum of the shards).
    pub stored_bytes: u64,
    /// Indexed instances (sum of the shards).
    pub instances: u64,
    /// Bytes reserved by URLs that have not expired.
    pub pending_bytes: u64,
    /// Reservation minutes already past, to drop on the next write.
    pub expired_minutes: Vec<String>,
}

/// A failed read or write of usage items.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("reading usage of {hospital}: {source}")]
    Read {
        hospital: String,
        source: crate::dynamo::BatchError,
    },
    #[error("reserving pending bytes of {hospital}: {source}")]
    Reserve {
        hospital: String,
        source: aws_sdk_dynamodb::Error,
    },
}

/// Reads the hospital's limit, its 16 shards and its reservations in one
/// BatchGetItem (retried for unprocessed keys).
pub async fn storage_snapshot(
    ctx: &Context,
    hospital: &HospitalId,
    now_epoch: i64,
) -> Result<StorageSnapshot, UsageError> {
    let table = &ctx.settings.tenants_table;
    let mut keys: Vec<Item> = (0..USAGE_SHARDS).map(|i| shard_key(hospital, i)).collect();
    keys.push(key(hospital.as_str(), "HOSPITAL"));
    keys.push(pending_key(hospital));

    let items = dynamo::get_items(&ctx.clients.dynamodb, table, keys, true)
        .await
        .map_err(|source| UsageError::Read {
            hospital: hospital.to_string(),
            source,
        })?;

    let mut snap = StorageSnapshot::default();
    for item in &items {
        match get_s(item, "sk") {
            Some("USAGE") => {
                // Replacements subtract, so a shard may dip below zero.
                let bytes = get_i64(item, "storedBytes").unwrap_or(0);
                let count = get_i64(item, "instances").unwrap_or(0);
                snap.stored_bytes = snap.stored_bytes.saturating_add_signed(bytes);
                snap.instances = snap.instances.saturating_add_signed(count);
            }
            Some("HOSPITAL") => {
                snap.max_storage_bytes = get_u64(item, "maxStorageBytes").or_else(|| {
                    get_s(item, "plan")?
                        .parse::<Plan>()
                        .ok()
                        .map(Plan::max_storage_bytes)
                });
            }
            Some("PENDING") => {
                let (live, expired) = pending_buckets(item, now_epoch);
                snap.pending_bytes = live;
                snap.expired_minutes = expired;
            }
            _ => {}
        }
    }
    Ok(snap)
}

/// Sums the reservation minutes still running at `now_epoch`, and lists the
/// ones that are over.
fn pending_buckets(item: &Item, now_epoch: i64) -> (u64, Vec<String>) {
    let mut live = 0u64;
    let mut expired = Vec::new();
    for (name, value) in item {
        let Some(minute) = name.strip_prefix('m').and_then(|m| m.parse::<i64>().ok()) else {
            continue;
        };
        if minute * 60 > now_epoch {
            let bytes = value
                .as_n()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            live = live.saturating_add(bytes);
        } else {
            expired.push(name.clone());
        }
    }
    (live, expired)
}

/// Reserves `bytes` until `expires_epoch` (rounded up to the minute) and
/// drops the minutes listed in `expired`.
pub async fn reserve_pending(
    ctx: &Context,
    hospital: &HospitalId,
    bytes: u64,
    expires_epoch: i64,
    expired: &[String],
) -> Result<(), UsageError> {
    let minute = (expires_epoch + 59) / 60;
    let bucket = format!("m{minute}");
    let mut names: HashMap<String, String> = HashMap::from([("#b".to_owned(), bucket.clone())]);
    let mut removes = Vec::new();
    // One request stays small however long the item was left alone.
    for (i, old) in expired
        .iter()
        .filter(|o| **o != bucket)
        .take(50)
        .enumerate()
    {
        names.insert(format!("#x{i}"), old.clone());
        removes.push(format!("#x{i}"));
    }
    let mut expression = "SET hospitalId = :h, expiresAt = :ttl ADD #b :n".to_owned();
    if !removes.is_empty() {
        expression.push_str(" REMOVE ");
        expression.push_str(&removes.join(", "));
    }
    // The item goes away a day after its last reservation ends.
    let ttl = minute * 60 + 86_400;
    ctx.clients
        .dynamodb
        .update_item()
        .table_name(&ctx.settings.tenants_table)
        .set_key(Some(pending_key(hospital)))
        .update_expression(expression)
        .set_expression_attribute_names(Some(names))
        .expression_attribute_values(":h", s(hospital.as_str()))
        .expression_attribute_values(":ttl", n(ttl))
        .expression_attribute_values(":n", AttributeValue::N(bytes.to_string()))
        .send()
        .await
        .map_err(|e| UsageError::Reserve {
            hospital: hospital.to_string(),
            source: e.into(),
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_buckets_split_live_and_expired() {
        let mut item = pending_key(&HospitalId::generate());
        item.insert("m100".into(), n(5));
        item.insert("m101".into(), n(7));
        item.insert("m99".into(), n(11));
        item.insert("expiresAt".into(), n(123));
        let (live, mut expired) = pending_buckets(&item, 100 * 60 - 1);
        assert_eq!(live, 5 + 7);
        expired.sort();
        assert_eq!(expired, vec!["m99".to_owned()]);
        let (live, expired) = pending_buckets(&item, 100 * 60);
        assert_eq!(live, 7);
        assert_eq!(expired.len(), 2);
    }
}
