//! Field-by-field reading of JSON request bodies, so that every message
//! names the field that is wrong and says what to send instead.
//!
//! Bodies are first parsed as a JSON object; each route then takes the
//! fields it knows, and [`Fields::finish`] refuses any it does not.

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// The fields of one JSON object, taken one by one.
pub struct Fields {
    map: Map<String, Value>,
    /// Prefix for nested objects, e.g. `settings.`.
    path: String,
}

impl Fields {
    /// Wraps a parsed body; anything but an object is refused.
    pub fn new(body: Value) -> ApiResult<Self> {
        Self::nested(body, "")
    }

    /// Wraps a nested object found at `path`.
    pub fn nested(value: Value, path: &str) -> ApiResult<Self> {
        match value {
            Value::Object(map) => Ok(Fields {
                map,
                path: path.to_owned(),
            }),
            other => Err(ApiError::validation(format!(
                "{} must be a JSON object, not {}",
                if path.is_empty() {
                    "the request body"
                } else {
                    path.trim_end_matches('.')
                },
                kind(&other)
            ))),
        }
    }

    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.path)
    }

    fn take(&mut self, field: &str) -> Option<Value> {
        self.map.remove(field).filter(|v| !v.is_null())
    }

    /// A required string, trimmed, of 1 to `max` characters.
    pub fn string(&mut self, field: &str, max: usize) -> ApiResult<String> {
        self.opt_string(field, max)?
            .ok_or_else(|| ApiError::validation(format!("{} is required", self.name(field))))
    }

    /// An optional string, trimmed, of 1 to `max` characters.
    pub fn opt_string(&mut self, field: &str, max: usize) -> ApiResult<Option<String>> {
        let name = self.name(field);
        match self.take(field) {
            None => Ok(None),
            Some(Value::String(s)) => {
                let s = s.trim().to_owned();
                if s.is_empty() {
                    Err(ApiError::validation(format!("{name} must not be empty")))
                } else if s.chars().count() > max {
                    Err(ApiError::validation(format!(
                        "{name} is longer than {max} characters"
                    )))
                } else if s.chars().any(char::is_control) {
                    Err(ApiError::validation(format!(
                        "{name} contains control characters"
                    )))
                } else {
                    Ok(Some(s))
                }
            }
            Some(other) => Err(type_error(&name, "a string", &other)),
        }
    }

    /// An optional boolean.
    pub fn opt_bool(&mut self, field: &str) -> ApiResult<Option<bool>> {
        let name = self.name(field);
        match self.take(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(type_error(&name, "true or false", &other)),
        }
    }

    /// An optional whole number within `range`.
    pub fn opt_u64(
        &mut self,
        field: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> ApiResult<Option<u64>> {
        let name = self.name(field);
        match self.take(field) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if range.contains(&v) => Ok(Some(v)),
                _ => Err(ApiError::validation(format!(
                    "{name} must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ))),
            },
            Some(other) => Err(type_error(&name, "a number", &other)),
        }
    }

    /// An optional list of strings, each of 1 to `max` characters, at most
    /// `max_items` of them.
    pub fn opt_strings(
        &mut self,
        field: &str,
        max: usize,
        max_items: usize,
    ) -> ApiResult<Option<Vec<String>>> {
        let name = self.name(field);
        match self.take(field) {
            None => Ok(None),
            Some(Value::Array(items)) => {
                if items.len() > max_items {
                    return Err(ApiError::validation(format!(
                        "{name} holds at most {max_items} entries"
                    )));
                }
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::String(s) if !s.trim().is_empty() && s.len() <= max => {
                            Ok(s.trim().to_owned())
                        }
                        Value::String(_) => Err(ApiError::validation(format!(
                            "{name}[{i}] must be 1 to {max} characters"
                        ))),
                        other => Err(type_error(&format!("{name}[{i}]"), "a string", &other)),
                    })
                    .collect::<ApiResult<Vec<_>>>()
                    .map(Some)
            }
            Some(other) => Err(type_error(&name, "a list of strings", &other)),
        }
    }

    /// An optional nested object.
    pub fn opt_object(&mut self, field: &str) -> ApiResult<Option<Fields>> {
        let name = self.name(field);
        match self.take(field) {
            None => Ok(None),
            Some(v) => Fields::nested(v, &format!("{name}.")).map(Some),
        }
    }

    /// An optional value of any JSON type, left for the caller to read.
    pub fn opt_raw(&mut self, field: &str) -> Option<Value> {
        self.take(field)
    }

    /// Refuses whatever fields were not taken.
    pub fn finish(self) -> ApiResult<()> {
        let mut unknown: Vec<String> = self.map.keys().map(|k| self.name(k)).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort();
        Err(ApiError::validation(format!(
            "unknown field(s): {}",
            unknown.join(", ")
        )))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn type_error(name: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::validation(format!("{name} must be {expected}, not {}", kind(got)))
}

/// Checks an e-mail address loosely: one `@`, a dot in the domain, no
/// spaces. Mail servers decide the rest.
pub fn email(field: &str, value: &str) -> ApiResult<()> {
    let ok = value.len() <= 254
        && !value.contains(char::is_whitespace)
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "{field} is not an e-mail address such as radiology@example.org"
        )))
    }
}

/// Checks a phone number: digits with optional `+`, spaces, dashes, dots
/// and parentheses, 6 to 20 digits.
pub fn phone(field: &str, value: &str) -> ApiResult<()> {
    let allowed = value
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    let digits = value.chars().filter(char::is_ascii_digit).count();
    if allowed && (6..=20).contains(&digits) && !value[1..].contains('+') {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "{field} is not a phone number such as +41 44 123 45 67 (6 to 20 digits)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_field_with_the_wrong_type() {
        let mut f = Fields::new(json!({"name": 5})).unwrap();
        let err = f.string("name", 10).unwrap_err();
        assert!(
            err.message.contains("name must be a string"),
            "{}",
            err.message
        );
    }

    #[test]
    fn refuses_unknown_fields_by_name() {
        let mut f = Fields::new(json!({"name": "a", "colour": "red"})).unwrap();
        f.string("name", 10).unwrap();
        let err = f.finish().unwrap_err();
        assert!(err.message.contains("colour"), "{}", err.message);
    }

    #[test]
    fn nested_fields_carry_their_path() {
        let mut f = Fields::new(json!({"settings": {"requireMFA": "yes"}})).unwrap();
        let mut s = f.opt_object("settings").unwrap().unwrap();
        let err = s.opt_bool("requireMFA").unwrap_err();
        assert!(
            err.message.contains("settings.requireMFA"),
            "{}",
            err.message
        );
    }

    #[test]
    fn emails_and_phones() {
        assert!(email("e", "a@b.org").is_ok());
        for bad in ["a", "a@b", "@b.org", "a b@c.org", "a@@b.org"] {
            assert!(email("e", bad).is_err(), "{bad}");
        }
        assert!(phone("p", "+41 44 123 45 67").is_ok());
        for bad in ["12", "call me", "+1+2345678"] {
            assert!(phone("p", bad).is_err(), "{bad}");
        }
    }
}
