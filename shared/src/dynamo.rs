//! DynamoDB requests every module shares: the one mapping of a store
//! failure to the client's view, and BatchGetItem and BatchWriteItem with
//! their unprocessed-item retries.

use std::time::Duration;

use aws_sdk_dynamodb::types::{KeysAndAttributes, PutRequest, WriteRequest};

use crate::context::Context;
use crate::error::{ApiError, ApiResult};

use crate::item::Item;

/// Most rounds spent on a batch's unprocessed keys before giving up.
const BATCH_ROUNDS: u32 = 8;

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
    batch_get_items(ctx, table, keys, false).await
}

/// [`batch_get`] with strongly consistent reads, for decisions that must
/// see the latest write (a revoked key, a withdrawn grant).
pub async fn batch_get_consistent(
    ctx: &Context,
    table: &str,
    keys: Vec<Item>,
) -> ApiResult<Vec<Item>> {
    batch_get_items(ctx, table, keys, true).await
}

async fn batch_get_items(
    ctx: &Context,
    table: &str,
    keys: Vec<Item>,
    consistent: bool,
) -> ApiResult<Vec<Item>> {
    let mut found = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(100) {
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .consistent_read(consistent)
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
