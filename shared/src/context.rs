//! What a handler is called with: settings, clients and secrets, built once
//! per cold start (or once per `pacs-hub up`) and passed by reference.

use tokio::sync::OnceCell;

use crate::clients::Clients;
use crate::config::{ConfigError, Settings};
use crate::error::ApiError;
use crate::secrets::{Secrets, SecretsError};

/// Everything a handler needs besides its request.
#[derive(Debug)]
pub struct Context {
    pub settings: Settings,
    pub clients: Clients,
    /// Loaded on first use, so functions that never hash a key never call
    /// Secrets Manager.
    secrets: OnceCell<Secrets>,
}

impl Context {
    /// A context over existing settings and clients.
    pub fn new(settings: Settings, clients: Clients) -> Self {
        Context {
            settings,
            clients,
            secrets: OnceCell::new(),
        }
    }

    /// Reads the settings from the environment and builds the clients: what
    /// a Lambda `main` does once.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let settings = Settings::from_env()?;
        let clients = Clients::from_env(&settings).await;
        Ok(Self::new(settings, clients))
    }

    /// The secrets, fetched on first call.
    pub async fn secrets(&self) -> Result<&Secrets, SecretsError> {
        self.secrets
            .get_or_try_init(|| Secrets::load(&self.settings.secrets, &self.clients.secrets))
            .await
    }

    /// The secrets, with a failure turned into a 500 for routes.
    pub async fn secrets_for_route(&self) -> Result<&Secrets, ApiError> {
        self.secrets().await.map_err(ApiError::internal)
    }
}
