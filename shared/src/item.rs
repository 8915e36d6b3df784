//! Reading and writing DynamoDB attribute maps without ceremony. The
//! readers tolerate the shapes different writers use: a set or a list, a
//! number or its text.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// A string attribute.
pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number attribute.
pub fn n(v: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Reads a string attribute.
pub fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// Reads a number attribute as `u64`.
pub fn get_u64(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

/// Reads a number attribute (or its text) as `i64`, truncating fractions.
pub fn get_i64(item: &Item, name: &str) -> Option<i64> {
    let v = item.get(name)?;
    let text = v.as_n().ok().or_else(|| v.as_s().ok())?;
    text.parse::<i64>()
        .ok()
        .or_else(|| text.parse::<f64>().ok().map(|f| f as i64))
}

/// Reads a counter: a number attribute as `u64`, 0 when absent.
pub fn get_count(item: &Item, name: &str) -> u64 {
    get_i64(item, name).map(|n| n.max(0) as u64).unwrap_or(0)
}

/// Reads a string attribute, owned.
pub fn get_string(item: &Item, name: &str) -> Option<String> {
    get_s(item, name).map(str::to_owned)
}

/// Reads a boolean attribute, false when absent.
pub fn get_flag(item: &Item, name: &str) -> bool {
    get_bool(item, name).unwrap_or(false)
}

/// The `(pk, sk)` primary key of an item.
pub fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// Reads a boolean attribute.
pub fn get_bool(item: &Item, name: &str) -> Option<bool> {
    item.get(name).and_then(|v| v.as_bool().ok()).copied()
}

/// Reads a string set, a list of strings or a lone string, sorted; empty
/// when absent.
pub fn get_strings(item: &Item, name: &str) -> Vec<String> {
    let mut out: Vec<String> = match item.get(name) {
        Some(AttributeValue::Ss(v)) => v.clone(),
        Some(AttributeValue::L(v)) => v.iter().filter_map(|x| x.as_s().ok().cloned()).collect(),
        Some(AttributeValue::S(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    };
    out.sort();
    out
}

/// A list of strings (a list, not a set, so it may be empty).
pub fn strings(v: &[String]) -> AttributeValue {
    AttributeValue::L(v.iter().map(|x| s(x.clone())).collect())
}

/// Converts JSON into an attribute value (numbers stay numbers).
pub fn from_json(v: &serde_json::Value) -> AttributeValue {
    use serde_json::Value;
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(x) => AttributeValue::N(x.to_string()),
        Value::String(x) => AttributeValue::S(x.clone()),
        Value::Array(xs) => AttributeValue::L(xs.iter().map(from_json).collect()),
        Value::Object(m) => {
            AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
}

/// Converts an attribute value back into JSON.
pub fn to_json(v: &AttributeValue) -> serde_json::Value {
    use serde_json::Value;
    match v {
        AttributeValue::S(x) => Value::String(x.clone()),
        AttributeValue::N(x) => x
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| x.parse::<f64>().map(Value::from))
            .unwrap_or(Value::Null),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::L(xs) => Value::Array(xs.iter().map(to_json).collect()),
        AttributeValue::Ss(xs) => Value::Array(xs.iter().cloned().map(Value::String).collect()),
        AttributeValue::M(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
        _ => Value::Null,
    }
}
