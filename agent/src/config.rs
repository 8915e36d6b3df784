//! The agent's settings: a JSON file in the format hospitals already use,
//! overridden by environment variables, checked once at start.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything that can be wrong with the settings; each names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration file {path} is not valid JSON: {source}")]
    ParseFile {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("setting `{name}` is missing (set it in the file or with {env})")]
    Missing {
        name: &'static str,
        env: &'static str,
    },
    #[error("setting `{name}` is wrong: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// The file as written by a hospital. Every key is optional here so that
/// a missing one is reported by name rather than as a parse error.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    hospital_id: Option<String>,
    hospital_name: Option<String>,
    aws_api_url: Option<String>,
    api_key: Option<String>,
    orthanc_url: Option<String>,
    orthanc_username: Option<String>,
    orthanc_password: Option<String>,
    sync_interval: Option<serde_json::Value>,
    watch_folder: Option<String>,
    #[serde(default)]
    features: RawFeatures,
    state_dir: Option<String>,
    concurrency: Option<serde_json::Value>,
    webhook_listen: Option<String>,
    backfill_since: Option<String>,
    max_attempts: Option<serde_json::Value>,
    heartbeat_interval: Option<serde_json::Value>,
    folder_interval: Option<serde_json::Value>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFeatures {
    auto_sync: Option<bool>,
    folder_watch: Option<bool>,
    webhooks: Option<bool>,
}

/// Which of the agent's sources are switched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Follow Orthanc's change log and upload each stable study.
    pub auto_sync: bool,
    /// Upload DICOM files that appear in `watch_folder`.
    pub folder_watch: bool,
    /// Listen for Orthanc's stable-study callbacks.
    pub webhooks: bool,
}

/// What a command needs from the settings; `push` and `status` need no
/// Orthanc, `run` needs what its features use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Run,
    Push,
    Status,
}

/// The checked settings.
#[derive(Clone)]
pub struct Config {
    pub hospital_id: String,
    pub hospital_name: String,
    /// Base URL of the hub's API, without a trailing slash.
    pub aws_api_url: String,
    pub api_key: String,
    /// Base URL of Orthanc's REST API, without a trailing slash.
    pub orthanc_url: Option<String>,
    pub orthanc_username: Option<String>,
    pub orthanc_password: Option<String>,
    /// How often Orthanc's change log is read, in milliseconds.
    pub sync_interval_ms: u64,
    pub watch_folder: Option<PathBuf>,
    pub features: Features,
    /// Where the queue database and the sync cursor live.
    pub state_dir: PathBuf,
    /// Uploads in flight at once.
    pub concurrency: usize,
    pub webhook_listen: SocketAddr,
    /// First start only: back-fill Orthanc studies on or after this date
    /// (YYYYMMDD); `None` back-fills everything.
    pub backfill_since: Option<String>,
    /// Tries of one file before it is given up as failed.
    pub max_attempts: u32,
    pub heartbeat_interval_ms: u64,
    /// How often the watch folder is scanned; a file must be unchanged
    /// over one interval to be taken.
    pub folder_interval_ms: u64,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("hospital_id", &self.hospital_id)
            .field("hospital_name", &self.hospital_name)
            .field("aws_api_url", &self.aws_api_url)
            .field("api_key", &"<redacted>")
            .field("orthanc_url", &self.orthanc_url)
            .field("orthanc_username", &self.orthanc_username)
            .field(
                "orthanc_password",
                &self.orthanc_password.as_ref().map(|_| "<redacted>"),
            )
            .field("sync_interval_ms", &self.sync_interval_ms)
            .field("watch_folder", &self.watch_folder)
            .field("features", &self.features)
            .field("state_dir", &self.state_dir)
            .field("concurrency", &self.concurrency)
            .field("webhook_listen", &self.webhook_listen)
            .field("backfill_since", &self.backfill_since)
            .field("max_attempts", &self.max_attempts)
            .field("heartbeat_interval_ms", &self.heartbeat_interval_ms)
            .field("folder_interval_ms", &self.folder_interval_ms)
            .finish()
    }
}

/// Default address of the webhook listener: loopback only, so that only
/// the Orthanc on the same host can call it.
pub const DEFAULT_WEBHOOK_LISTEN: &str = "127.0.0.1:8043";

impl Config {
    /// Reads `path` (when it exists or was given explicitly), applies the
    /// environment, and checks what `purpose` needs.
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        purpose: Purpose,
    ) -> Result<Config, ConfigError> {
        let raw = match path {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                        path: path.to_owned(),
                        source,
                    })?;
                serde_json::from_str(&text).map_err(|source| ConfigError::ParseFile {
                    path: path.to_owned(),
                    source,
                })?
            }
            None => RawConfig::default(),
        };
        Self::from_raw(raw, env, purpose)
    }

    /// Checks a configuration given as JSON text (used by tests).
    pub fn from_json(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        purpose: Purpose,
    ) -> Result<Config, ConfigError> {
        let raw = serde_json::from_str(text).map_err(|source| ConfigError::ParseFile {
            path: PathBuf::from("<text>"),
            source,
        })?;
        Self::from_raw(raw, env, purpose)
    }

    fn from_raw(
        raw: RawConfig,
        env: &dyn Fn(&str) -> Option<String>,
        purpose: Purpose,
    ) -> Result<Config, ConfigError> {
        let pick = |file: Option<String>, var: &str| -> Option<String> {
            env(var).or(file).filter(|v| !v.trim().is_empty())
        };

        let hospital_id = pick(raw.hospital_id, "HOSPITAL_ID").ok_or(ConfigError::Missing {
            name: "hospitalId",
            env: "HOSPITAL_ID",
        })?;
        if !is_hospital_id(&hospital_id) {
            return Err(ConfigError::Invalid {
                name: "hospitalId",
                reason: "expected `hosp_` followed by 16 hex digits".into(),
            });
        }
        let hospital_name =
            pick(raw.hospital_name, "HOSPITAL_NAME").ok_or(ConfigError::Missing {
                name: "hospitalName",
                env: "HOSPITAL_NAME",
            })?;
        let aws_api_url = pick(raw.aws_api_url, "AWS_API_URL").ok_or(ConfigError::Missing {
            name: "awsApiUrl",
            env: "AWS_API_URL",
        })?;
        let aws_api_url = check_url("awsApiUrl", &aws_api_url)?;
        let api_key = pick(raw.api_key, "API_KEY").ok_or(ConfigError::Missing {
            name: "apiKey",
            env: "API_KEY",
        })?;
        if api_key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            // The key itself is never echoed, only what is wrong with it.
            return Err(ConfigError::Invalid {
                name: "apiKey",
                reason: "contains spaces or control characters".into(),
            });
        }

        let orthanc_url = pick(raw.orthanc_url, "ORTHANC_URL")
            .map(|u| check_url("orthancUrl", &u))
            .transpose()?;
        let orthanc_username = pick(raw.orthanc_username, "ORTHANC_USERNAME");
        let orthanc_password = pick(raw.orthanc_password, "ORTHANC_PASSWORD");
        let watch_folder = pick(raw.watch_folder, "WATCH_FOLDER").map(PathBuf::from);

        let features = Features {
            auto_sync: raw.features.auto_sync.unwrap_or(true),
            folder_watch: raw.features.folder_watch.unwrap_or(watch_folder.is_some()),
            webhooks: raw.features.webhooks.unwrap_or(false),
        };

        let sync_interval_ms = number(
            "syncInterval",
            raw.sync_interval.as_ref(),
            30_000,
            100,
            86_400_000,
        )?;
        let concurrency = number("concurrency", raw.concurrency.as_ref(), 4, 1, 64)? as usize;
        let max_attempts = number("maxAttempts", raw.max_attempts.as_ref(), 10, 1, 1000)? as u32;
        let heartbeat_interval_ms = number(
            "heartbeatInterval",
            raw.heartbeat_interval.as_ref(),
            60_000,
            100,
            86_400_000,
        )?;

        let folder_interval_ms = number(
            "folderInterval",
            raw.folder_interval.as_ref(),
            3_000,
            100,
            3_600_000,
        )?;

        let webhook_listen = raw
            .webhook_listen
            .unwrap_or_else(|| DEFAULT_WEBHOOK_LISTEN.to_owned())
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::Invalid {
                name: "webhookListen",
                reason: format!("expected host:port such as {DEFAULT_WEBHOOK_LISTEN} ({e})"),
            })?;

        let backfill_since = raw.backfill_since.filter(|s| !s.is_empty());
        if let Some(date) = &backfill_since {
            check_date("backfillSince", date)?;
        }

        // systemd's StateDirectory= announces itself in STATE_DIRECTORY.
        let state_dir = raw
            .state_dir
            .or_else(|| env("PACS_AGENT_STATE_DIR"))
            .or_else(|| env("STATE_DIRECTORY"))
            .unwrap_or_else(|| ".pacs-agent".to_owned());

        if purpose == Purpose::Run {
            if (features.auto_sync || features.webhooks) && orthanc_url.is_none() {
                return Err(ConfigError::Missing {
                    name: "orthancUrl",
                    env: "ORTHANC_URL",
                });
            }
            if features.folder_watch && watch_folder.is_none() {
                return Err(ConfigError::Missing {
                    name: "watchFolder",
                    env: "WATCH_FOLDER",
                });
            }
            if orthanc_username.is_some() != orthanc_password.is_some() {
                let name = if orthanc_username.is_some() {
                    "orthancPassword"
                } else {
                    "orthancUsername"
                };
                return Err(ConfigError::Invalid {
                    name,
                    reason: "orthancUsername and orthancPassword go together".into(),
                });
            }
        }

        Ok(Config {
            hospital_id,
            hospital_name,
            aws_api_url,
            api_key,
            orthanc_url,
            orthanc_username,
            orthanc_password,
            sync_interval_ms,
            watch_folder,
            features,
            state_dir: PathBuf::from(state_dir),
            concurrency,
            webhook_listen,
            backfill_since,
            max_attempts,
            heartbeat_interval_ms,
            folder_interval_ms,
        })
    }
}

fn is_hospital_id(id: &str) -> bool {
    id.strip_prefix("hosp_")
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn check_url(name: &'static str, value: &str) -> Result<String, ConfigError> {
    let url = url::Url::parse(value).map_err(|e| ConfigError::Invalid {
        name,
        reason: format!("not a URL ({e})"),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::Invalid {
            name,
            reason: "expected an http:// or https:// URL with a host".into(),
        });
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// Checks a date setting (YYYY-MM-DD or YYYYMMDD).
pub fn check_date(name: &'static str, value: &str) -> Result<(), ConfigError> {
    let digits: String = value.chars().filter(|c| *c != '-').collect();
    let ok = digits.len() == 8
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (1..=12).contains(&digits[4..6].parse::<u32>().unwrap_or(0))
        && (1..=31).contains(&digits[6..8].parse::<u32>().unwrap_or(0));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: "expected a date as YYYY-MM-DD or YYYYMMDD".into(),
        })
    }
}

/// A date setting in DICOM form (YYYYMMDD).
pub fn dicom_date(value: &str) -> String {
    value.chars().filter(|c| *c != '-').collect()
}

fn number(
    name: &'static str,
    value: Option<&serde_json::Value>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };

    // Older configurations sometimes hold numbers as strings.
    let parsed = match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    match parsed {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError::Invalid {
            name,
            reason: format!("expected a whole number from {min} to {max}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{
        "hospitalId": "hosp_0123456789abcdef",
        "hospitalName": "General",
        "awsApiUrl": "https://api.example.org/prod/",
        "apiKey": "pk_secret_value",
        "orthancUrl": "http://localhost:8042",
        "orthancUsername": "orthanc",
        "orthancPassword": "pw_orthanc_secret",
        "syncInterval": 60000,
        "watchFolder": "/srv/dicom-in",
        "features": {"autoSync": true, "folderWatch": true, "webhooks": false}
    }"#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn existing_configuration_loads() {
        let config = Config::from_json(FULL, &no_env, Purpose::Run).unwrap();
        assert_eq!(config.aws_api_url, "https://api.example.org/prod");
        assert_eq!(config.sync_interval_ms, 60_000);
        assert!(config.features.folder_watch);
        assert_eq!(config.webhook_listen.to_string(), DEFAULT_WEBHOOK_LISTEN);
        assert_eq!(config.concurrency, 4);
    }

    #[test]
    fn environment_overrides_file() {
        let env = |name: &str| match name {
            "API_KEY" => Some("from_env".to_owned()),
            "ORTHANC_URL" => Some("http://127.0.0.1:9999".to_owned()),
            _ => None,
        };
        let config = Config::from_json(FULL, &env, Purpose::Run).unwrap();
        assert_eq!(config.api_key, "from_env");
        assert_eq!(config.orthanc_url.as_deref(), Some("http://127.0.0.1:9999"));
    }

    #[test]
    fn missing_setting_is_named() {
        let text = FULL.replace("\"awsApiUrl\"", "\"unused\"");
        let err = Config::from_json(&text, &no_env, Purpose::Run).unwrap_err();
        assert!(err.to_string().contains("awsApiUrl"), "{err}");
        assert!(err.to_string().contains("AWS_API_URL"), "{err}");
    }

    #[test]
    fn wrong_settings_are_named() {
        for (from, to, name) in [
            ("60000", "\"soon\"", "syncInterval"),
            ("hosp_0123456789abcdef", "hospital-1", "hospitalId"),
            ("http://localhost:8042", "localhost:8042", "orthancUrl"),
        ] {
            let text = FULL.replace(from, to);
            let err = Config::from_json(&text, &no_env, Purpose::Run).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn orthanc_not_needed_for_push() {
        let text = FULL.replace("\"orthancUrl\"", "\"unused\"");
        assert!(Config::from_json(&text, &no_env, Purpose::Run).is_err());
        assert!(Config::from_json(&text, &no_env, Purpose::Push).is_ok());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let config = Config::from_json(FULL, &no_env, Purpose::Run).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("pk_secret_value"));
        assert!(!shown.contains("pw_orthanc_secret"));
        assert!(shown.contains("<redacted>"));
    }
}
