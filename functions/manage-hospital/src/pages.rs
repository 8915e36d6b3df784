//! Opaque page cursors for the platform admin's hospital list.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pacs_shared::item::{Item, get_s, s};
use pacs_shared::{ApiError, ApiResult};

const KEYS: [&str; 4] = ["pk", "sk", "gsi1pk", "gsi1sk"];

/// Encodes a LastEvaluatedKey of the hospital index.
pub fn encode(key: &Item) -> String {
    let map: HashMap<&str, &str> = KEYS
        .iter()
        .filter_map(|k| Some((*k, get_s(key, k)?)))
        .collect();
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&map).unwrap_or_default())
}

/// Decodes a cursor; anything that is not one of ours is a 400.
pub fn decode(cursor: &str) -> ApiResult<Item> {
    let bad = || ApiError::validation("cursor is not valid; pass nextCursor as it was returned");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let map: HashMap<String, String> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if map.len() != KEYS.len() || !KEYS.iter().all(|k| map.contains_key(*k)) {
        return Err(bad());
    }
    if map["gsi1pk"] != "HOSPITALS" {
        return Err(bad());
    }
    Ok(map.into_iter().map(|(k, v)| (k, s(v))).collect())
}
