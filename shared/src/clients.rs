//! AWS SDK clients, built once per cold start and shared by reference.
//!
//! The same clients talk to AWS or, where the settings name endpoints, to
//! the local stack's compatible servers (path-style addressing for S3).

use aws_config::{BehaviorVersion, SdkConfig};

use crate::config::Settings;

/// The clients every function may use.
#[derive(Debug, Clone)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub events: aws_sdk_eventbridge::Client,
}

impl Clients {
    /// Loads the AWS configuration from the environment (the Lambda role's
    /// credentials and region) and builds the clients.
    pub async fn from_env(settings: &Settings) -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        Self::from_config(&config, settings)
    }

    /// Builds the clients from an existing configuration, applying the
    /// endpoint overrides in `settings`.
    pub fn from_config(config: &SdkConfig, settings: &Settings) -> Self {
        let mut ddb = aws_sdk_dynamodb::config::Builder::from(config);
        if let Some(url) = &settings.dynamodb_endpoint {
            ddb = ddb.endpoint_url(url);
        }
        let mut s3 = aws_sdk_s3::config::Builder::from(config);
        if let Some(url) = &settings.s3_endpoint {
            s3 = s3.endpoint_url(url).force_path_style(true);
        }
        let mut events = aws_sdk_eventbridge::config::Builder::from(config);
        if let Some(url) = &settings.events_endpoint {
            events = events.endpoint_url(url);
        }
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(ddb.build()),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            secrets: aws_sdk_secretsmanager::Client::new(config),
            events: aws_sdk_eventbridge::Client::from_conf(events.build()),
        }
    }
}
