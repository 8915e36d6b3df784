//! What the archive read paths add to [`crate::item`]: owned attribute
//! readers that tolerate the shapes different writers use (a set or a
//! list, a number or its text), and the two batch calls every read path
//! needs (BatchGetItem and BatchWriteItem with their unprocessed-item
//! retries).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, PutRequest, WriteRequest};

use crate::context::Context;
use crate::error::{ApiError, ApiResult};

pub use crate::item::{Item, n, s, to_json};

/// Most rounds spent on a batch's unprocessed keys before giving up.
const BATCH_ROUNDS: u32 = 8;

/// A string attribute, if present and a string.
pub fn get_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

/// A number attribute as `i64`, if present and whole.
pub fn get_i64(item: &Item, name: &str) -> Option<i64> {
    let v = item.get(name)?;
    let text = v.as_n().ok().or_else(|| v.as_s().ok())?;
    text.parse::<i64>()
        .ok()
        .or_else(|| text.parse::<f64>().ok().map(|f| f as i64))
}

/// A number attribute as `u64`, 0 when absent.
pub fn get_u64(item: &Item, name: &str) -> u64 {
    get_i64(item, name).map(|n| n.max(0) as u64).unwrap_or(0)
}

/// A string set (or list of strings) attribute, sorted; empty when absent.
pub fn get_ss(item: &Item, name: &str) -> Vec<String> {
    let mut out: Vec<String> = match item.get(name) {
        Some(AttributeValue::Ss(v)) => v.clone(),
        Some(AttributeValue::L(v)) => v.iter().filter_map(|x| x.as_s().ok().cloned()).collect(),
        Some(AttributeValue::S(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    };
    out.sort();
    out
}

/// The `(pk, sk)` key of an item.
pub fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// A DynamoDB failure as a route sees it: throttling is a 503 the client
/// may retry, anything else a 500. Only the step and the error code (or,
/// without one, the SDK's failure category) reach the log: a service
/// message may quote the request's values, which can be patient data.
pub fn store_error(
    step: &str,
    err: impl aws_sdk_dynamodb::error::ProvideErrorMetadata + std::fmt::Display,
) -> ApiError {
    let code = err.code().map(str::to_owned);
    let detail = match &code {
        Some(c) => format!("{step}: {c}"),
        None => format!("{step}: {err}"),
    };
    match code.as_deref() {
        Some(c) if c.contains("Throttl") || c == "ProvisionedThroughputExceededException" => {
            ApiError::unavailable(detail)
        }
        _ => ApiError::internal(detail),
    }
}

/// Gets `keys` from `table` with BatchGetItem, 100 at a time, retrying
/// unprocessed keys. Items come back in no particular order; missing ones
/// are simply absent.
pub async fn batch_get(ctx: &Context, table: &str, keys: Vec<Item>) -> ApiResult<Vec<Item>> {
    let mut found = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(100) {
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .build()
                .map_err(|e| ApiError::internal(format!("building batch get: {e}")))?,
        );
        let mut round = 0;
        while let Some(request) = pending.take() {
            let out = ctx
                .clients
                .dynamodb
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await
                .map_err(|e| store_error("batch get", e))?;
            if let Some(items) = out.responses.and_then(|mut r| r.remove(table)) {
                found.extend(items);
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .filter(|k| !k.keys.is_empty());
            if pending.is_some() {
                round += 1;
                if round >= BATCH_ROUNDS {
                    return Err(ApiError::unavailable("batch get left keys unprocessed"));
                }
                tokio::time::sleep(Duration::from_millis(20 << round)).await;
            }
        }
    }
    Ok(found)
}

/// Puts `items` into `table` with BatchWriteItem, 25 at a time, retrying
/// unprocessed items.
pub async fn batch_put(ctx: &Context, table: &str, items: Vec<Item>) -> ApiResult<()> {
    for chunk in items.chunks(25) {
        let mut pending: Vec<WriteRequest> = chunk
            .iter()
            .map(|item| {
                let put = PutRequest::builder()
                    .set_item(Some(item.clone()))
                    .build()
                    .map_err(|e| ApiError::internal(format!("building batch put: {e}")))?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<ApiResult<_>>()?;
        let mut round = 0;
        while !pending.is_empty() {
            let out = ctx
                .clients
                .dynamodb
                .batch_write_item()
                .request_items(table, pending)
                .send()
                .await
                .map_err(|e| store_error("batch write", e))?;
            pending = out
                .unprocessed_items
                .and_then(|mut u| u.remove(table))
                .unwrap_or_default();
            if !pending.is_empty() {
                round += 1;
                if round >= BATCH_ROUNDS {
                    return Err(ApiError::unavailable("batch write left items unprocessed"));
                }
                tokio::time::sleep(Duration::from_millis(20 << round)).await;
            }
        }
    }
    Ok(())
}
