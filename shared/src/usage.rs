//! Stored bytes per hospital, kept in counter shards so that a burst of
//! indexing does not write one item thousands of times a second.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::KeysAndAttributes;

use crate::context::Context;
use crate::domain::HospitalId;
use crate::error::{ApiError, ApiResult};
use crate::item::{get_u64, s};
use crate::tenants::store_error;

/// How many counter items each hospital's usage is spread over.
pub const SHARDS: u32 = 16;

/// What a hospital stores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredUsage {
    pub bytes: u64,
    pub instances: u64,
}

/// Sums the hospital's counter shards: one BatchGetItem.
pub async fn stored(ctx: &Context, id: &HospitalId) -> ApiResult<StoredUsage> {
    let table = &ctx.settings.tenants_table;
    let mut keys = KeysAndAttributes::builder();
    for shard in 0..SHARDS {
        keys = keys.keys(HashMap::from([
            ("pk".into(), s(format!("{id}#USAGE#{shard}"))),
            ("sk".into(), s("USAGE")),
        ]));
    }
    let mut request = HashMap::from([(table.clone(), keys.build().map_err(ApiError::internal)?)]);
    let mut total = StoredUsage::default();
    for _ in 0..5 {
        let out = ctx
            .clients
            .dynamodb
            .batch_get_item()
            .set_request_items(Some(request))
            .send()
            .await
            .map_err(|e| store_error("reading usage", e))?;
        for item in out
            .responses
            .unwrap_or_default()
            .remove(table)
            .unwrap_or_default()
        {
            total.bytes += get_u64(&item, "storedBytes").unwrap_or(0);
            total.instances += get_u64(&item, "instances").unwrap_or(0);
        }
        match out.unprocessed_keys.filter(|u| !u.is_empty()) {
            Some(rest) => request = rest,
            None => break,
        }
    }
    Ok(total)
}
