//! The key pepper and the platform-admin key.
//!
//! In AWS both are Secrets Manager secrets that the template generates; on
//! the local stack they are a JSON file in the data dir. Either way they are
//! read once per cold start and held in memory, never logged.

use aws_sdk_secretsmanager::Client as SecretsClient;
use serde::Deserialize;

use crate::config::SecretSource;

/// The secrets a function needs.
#[derive(Clone)]
pub struct Secrets {
    /// Key of the HMAC that hashes every API key secret.
    pub pepper: Vec<u8>,
    /// The platform operator's key, `pha_...`.
    pub platform_admin_key: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

/// The secrets could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("reading secret {arn} from Secrets Manager failed: {source}")]
    Fetch {
        arn: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("secret {arn} has no string value")]
    Empty { arn: String },
    #[error("reading secrets file {path} failed: {source}")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("secrets file {path} is not valid: {source}")]
    ParseFile {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the pepper is shorter than 32 characters")]
    WeakPepper,
}

/// The local stack's secrets file.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretsFile {
    pepper: String,
    platform_admin_key: String,
}

impl Secrets {
    /// Loads the secrets from wherever the settings say they are.
    pub async fn load(source: &SecretSource, client: &SecretsClient) -> Result<Self, SecretsError> {
        let (pepper, admin) = match source {
            SecretSource::SecretsManager {
                pepper_arn,
                admin_key_arn,
            } => (
                fetch(client, pepper_arn).await?,
                fetch(client, admin_key_arn).await?,
            ),
            SecretSource::File(path) => {
                let shown = path.display().to_string();
                let text =
                    std::fs::read_to_string(path).map_err(|source| SecretsError::ReadFile {
                        path: shown.clone(),
                        source,
                    })?;
                let file: SecretsFile =
                    serde_json::from_str(&text).map_err(|source| SecretsError::ParseFile {
                        path: shown,
                        source,
                    })?;
                (file.pepper, file.platform_admin_key)
            }
        };
        Self::from_values(&pepper, &admin)
    }

    /// Builds the secrets from their stored values. The platform-admin value
    /// may be stored with or without its `pha_` prefix.
    pub fn from_values(pepper: &str, platform_admin_key: &str) -> Result<Self, SecretsError> {
        let pepper = pepper.trim();
        if pepper.len() < 32 {
            return Err(SecretsError::WeakPepper);
        }
        let admin = platform_admin_key.trim();
        let platform_admin_key = if admin.starts_with("pha_") {
            admin.to_owned()
        } else {
            format!("pha_{admin}")
        };
        Ok(Secrets {
            pepper: pepper.as_bytes().to_vec(),
            platform_admin_key,
        })
    }
}

async fn fetch(client: &SecretsClient, arn: &str) -> Result<String, SecretsError> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| SecretsError::Fetch {
            arn: arn.to_owned(),
            source: Box::new(e),
        })?;
    out.secret_string
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SecretsError::Empty {
            arn: arn.to_owned(),
        })
}
