//! What every pacs-hub function shares: the tenant domain, settings read
//! from the environment, the AWS clients, authentication, the one mapping
//! from errors to HTTP responses, and DICOM header indexing.
//!
//! Functions never import each other; whatever two of them need lives here.

pub mod archive;
pub mod audit;
pub mod auth;
pub mod clients;
pub mod config;
pub mod context;
pub mod cursor;
pub mod dicom;
pub mod domain;
pub mod dynamo;
pub mod error;
pub mod events;
pub mod http;
pub mod item;
pub mod logging;
pub mod secrets;
pub mod shares;
pub mod studies;
pub mod tenants;
pub mod time;
pub mod uploads;
pub mod usage;
pub mod validate;

pub use clients::Clients;
pub use config::Settings;
pub use context::Context;
pub use error::{ApiError, ApiResult};
