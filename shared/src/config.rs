//! Settings read from the environment, in one place.
//!
//! Every function reads its settings once at cold start through
//! [`Settings::from_env`]; a missing or malformed variable stops the start
//! with an error that names it.

use std::time::Duration;

/// Where the function finds its tables, bucket, secrets and event bus, and
/// the limits it enforces.
#[derive(Debug, Clone)]
pub struct Settings {
    /// DynamoDB table of hospitals, keys, users, grants, uploads, usage and
    /// audit records (`TENANTS_TABLE`).
    pub tenants_table: String,
    /// DynamoDB table of studies, series, instances and shares
    /// (`ARCHIVE_TABLE`).
    pub archive_table: String,
    /// S3 bucket holding every hospital's DICOM objects (`DICOM_BUCKET`).
    pub bucket: String,
    /// Where the key pepper and the platform-admin key are kept.
    pub secrets: SecretSource,
    /// EventBridge bus for ingest notifications (`EVENT_BUS_NAME`); `None`
    /// publishes nothing.
    pub event_bus: Option<String>,
    /// Endpoint overrides, set only where the AWS services are stood in for
    /// by compatible servers (`DYNAMODB_ENDPOINT`, `S3_ENDPOINT`).
    pub dynamodb_endpoint: Option<String>,
    pub s3_endpoint: Option<String>,
    /// EventBridge endpoint override (`EVENTS_ENDPOINT`).
    pub events_endpoint: Option<String>,
    /// Lifetime of presigned upload and download URLs (`PRESIGN_TTL_SECONDS`,
    /// default 900, at most 900).
    pub presign_ttl: Duration,
    /// Largest single file accepted for upload (`MAX_FILE_BYTES`, default
    /// 5 GiB, the largest object one presigned PUT can carry).
    pub max_file_bytes: u64,
    /// Quiet time after which a study counts as stable
    /// (`STABLE_STUDY_SECONDS`, default 60).
    pub stable_study_after: Duration,
}

/// Where the secrets come from: Secrets Manager in AWS, a file on the
/// local stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Two Secrets Manager secrets, apart so that rotating the
    /// platform-admin key never changes the pepper (which would void every
    /// hospital key).
    SecretsManager {
        /// The pepper keyed hashes are made with (`PEPPER_SECRET_ARN`).
        pepper_arn: String,
        /// The platform-admin key (`ADMIN_KEY_SECRET_ARN`).
        admin_key_arn: String,
    },
    /// Path of a JSON file with the same fields (`SECRETS_FILE`).
    File(std::path::PathBuf),
}

/// A variable was missing or could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} is not set")]
    Missing { name: &'static str },
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// The largest object a single presigned PUT can write to S3.
pub const MAX_SINGLE_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024;

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`, so tests and the local stack can
    /// supply them without touching the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(ConfigError::Missing { name })
        };
        let optional = |name: &'static str| lookup(name).filter(|v| !v.trim().is_empty());
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match optional(name) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid {
                    name,
                    reason: format!("expected a whole number, got {v:?}"),
                }),
            }
        };

        let secrets = match optional("SECRETS_FILE") {
            Some(path) => SecretSource::File(path.into()),
            None => SecretSource::SecretsManager {
                pepper_arn: required("PEPPER_SECRET_ARN")?,
                admin_key_arn: required("ADMIN_KEY_SECRET_ARN")?,
            },
        };

        let presign_secs = number("PRESIGN_TTL_SECONDS", 900)?;
        if !(1..=900).contains(&presign_secs) {
            return Err(ConfigError::Invalid {
                name: "PRESIGN_TTL_SECONDS",
                reason: "must be between 1 and 900".into(),
            });
        }
        let max_file_bytes = number("MAX_FILE_BYTES", MAX_SINGLE_PUT_BYTES)?;
        if max_file_bytes == 0 || max_file_bytes > MAX_SINGLE_PUT_BYTES {
            return Err(ConfigError::Invalid {
                name: "MAX_FILE_BYTES",
                reason: format!("must be between 1 and {MAX_SINGLE_PUT_BYTES}"),
            });
        }

        Ok(Settings {
            tenants_table: required("TENANTS_TABLE")?,
            archive_table: required("ARCHIVE_TABLE")?,
            bucket: required("DICOM_BUCKET")?,
            secrets,
            event_bus: optional("EVENT_BUS_NAME"),
            dynamodb_endpoint: optional("DYNAMODB_ENDPOINT"),
            s3_endpoint: optional("S3_ENDPOINT"),
            events_endpoint: optional("EVENTS_ENDPOINT"),
            presign_ttl: Duration::from_secs(presign_secs),
            max_file_bytes,
            stable_study_after: Duration::from_secs(number("STABLE_STUDY_SECONDS", 60)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: [(&str, &str); 5] = [
        ("TENANTS_TABLE", "t"),
        ("ARCHIVE_TABLE", "a"),
        ("DICOM_BUCKET", "b"),
        ("PEPPER_SECRET_ARN", "arn:p"),
        ("ADMIN_KEY_SECRET_ARN", "arn:k"),
    ];

    #[test]
    fn names_the_missing_variable() {
        let err = Settings::from_lookup(env(&BASE[1..])).unwrap_err();
        assert!(err.to_string().contains("TENANTS_TABLE"), "{err}");
    }

    #[test]
    fn refuses_a_presign_ttl_over_fifteen_minutes() {
        let mut pairs = BASE.to_vec();
        pairs.push(("PRESIGN_TTL_SECONDS", "3600"));
        let err = Settings::from_lookup(env(&pairs)).unwrap_err();
        assert!(err.to_string().contains("PRESIGN_TTL_SECONDS"), "{err}");
    }

    #[test]
    fn defaults_apply() {
        let s = Settings::from_lookup(env(&BASE)).unwrap();
        assert_eq!(s.presign_ttl, Duration::from_secs(900));
        assert_eq!(
            s.secrets,
            SecretSource::SecretsManager {
                pepper_arn: "arn:p".into(),
                admin_key_arn: "arn:k".into()
            }
        );
        assert!(s.event_bus.is_none());
    }
}
