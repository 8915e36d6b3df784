//! The few attribute helpers the ingest modules need beyond
//! [`crate::item`].

use std::collections::HashMap;

pub(crate) use crate::item::{Item, get_i64, get_s, get_u64, n, s};

/// A primary key of `pk` and `sk`.
pub(crate) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// A string attribute, owned.
pub(crate) fn get_string(item: &Item, name: &str) -> Option<String> {
    get_s(item, name).map(str::to_owned)
}

/// A boolean attribute, false when absent.
pub(crate) fn get_bool(item: &Item, name: &str) -> bool {
    crate::item::get_bool(item, name).unwrap_or(false)
}
