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

/// A batch call that could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// DynamoDB refused or failed the request.
    #[error("{0}")]
    Request(#[from] aws_sdk_dynamodb::Error),
    /// Throttling left part of the batch undone after every retry.
    #[error("{left} item(s) still unprocessed after {BATCH_ROUNDS} rounds")]
    Unprocessed { left: usize },
}

/// The client's view of a failed batch call.
fn batch_error(step: &str, err: BatchError) -> ApiError {
    match err {
        BatchError::Request(e) => store_error(step, e),
        BatchError::Unprocessed { left } => {
            ApiError::unavailable(format!("{step}: {left} item(s) unprocessed"))
        }
    }
}

/// Waits before retry round `round` (1-based): 40 ms, doubling.
async fn back_off(round: u32) {
    tokio::time::sleep(Duration::from_millis(20 << round.min(6))).await;
}

/// Gets `keys` from `table` with BatchGetItem, 100 at a time, retrying
/// unprocessed keys with backoff. Items come back in no particular order;
/// missing ones are simply absent.
pub async fn get_items(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: Vec<Item>,
    consistent: bool,
) -> Result<Vec<Item>, BatchError> {
    let mut found = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(100) {
        let mut pending = chunk.to_vec();
        let mut round = 0;
        while !pending.is_empty() {
            if round > 0 {
                if round >= BATCH_ROUNDS {
                    return Err(BatchError::Unprocessed {
                        left: pending.len(),
                    });
                }
                back_off(round).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(consistent)
                .build()
                .expect("keys are set");
            let out = client
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await
                .map_err(aws_sdk_dynamodb::Error::from)?;
            if let Some(items) = out.responses.and_then(|mut r| r.remove(table)) {
                found.extend(items);
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .map(|k| k.keys)
                .unwrap_or_default();
            round += 1;
        }
    }
    Ok(found)
}

/// Puts `items` into `table` with BatchWriteItem, 25 at a time, retrying
/// unprocessed items with backoff.
pub async fn put_items(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    items: Vec<Item>,
) -> Result<(), BatchError> {
    for chunk in items.chunks(25) {
        let mut pending: Vec<WriteRequest> = chunk
            .iter()
            .map(|item| {
                let put = PutRequest::builder()
                    .set_item(Some(item.clone()))
                    .build()
                    .expect("an item is set");
                WriteRequest::builder().put_request(put).build()
            })
            .collect();
        let mut round = 0;
        while !pending.is_empty() {
            if round > 0 {
                if round >= BATCH_ROUNDS {
                    return Err(BatchError::Unprocessed {
                        left: pending.len(),
                    });
                }
                back_off(round).await;
            }
            let out = client
                .batch_write_item()
                .request_items(table, std::mem::take(&mut pending))
                .send()
                .await
                .map_err(aws_sdk_dynamodb::Error::from)?;
            pending = out
                .unprocessed_items
                .and_then(|mut u| u.remove(table))
                .unwrap_or_default();
            round += 1;
        }
    }
    Ok(())
}

/// [`get_items`] for a route: eventually consistent, failures as the
/// client sees them.
pub async fn batch_get(ctx: &Context, table: &str, keys: Vec<Item>) -> ApiResult<Vec<Item>> {
    get_items(&ctx.clients.dynamodb, table, keys, false)
        .await
        .map_err(|e| batch_error("batch get", e))
}

/// [`batch_get`] with strongly consistent reads, for decisions that must
/// see the latest write (a revoked key, a withdrawn grant).
pub async fn batch_get_consistent(
    ctx: &Context,
    table: &str,
    keys: Vec<Item>,
) -> ApiResult<Vec<Item>> {
    get_items(&ctx.clients.dynamodb, table, keys, true)
        .await
        .map_err(|e| batch_error("batch get", e))
}

/// [`put_items`] for a route.
pub async fn batch_put(ctx: &Context, table: &str, items: Vec<Item>) -> ApiResult<()> {
    put_items(&ctx.clients.dynamodb, table, items)
        .await
        .map_err(|e| batch_error("batch write", e))
}
