//! `pacs-hub up` as a library: every function, an embedded DynamoDB, an
//! embedded S3, a local EventBridge endpoint and the API router in one
//! process, on one data dir.
//!
//! The functions run unchanged: the router calls the authorizer and the
//! route handlers with the same API Gateway events Lambda would hand them,
//! and the S3 server delivers real S3 events to the object-created handler.
//! Tests start a [`Stack`] on port 0; the CLI starts one on the ports given.
//!
//! The data dir holds `dynamodb.sqlite` (the tables), `s3/` (the bucket),
//! `secrets.json` and `platform-admin.key` (pepper and platform key),
//! `s3-credentials.json` (the local access key), `events.jsonl` (every
//! published event) and `dead-letter/` (S3 events whose three attempts
//! failed).
//!
//! Where it differs from AWS: the authorizer's answer is never cached (a
//! revoked key fails at once), the event bus records events but routes
//! them nowhere, and S3 events go only to `on-object-created`.

mod api;
mod dynamodb;
mod events;
mod s3;
mod secrets;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use pacs_shared::{Clients, Context, Settings};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use api::{FUNCTIONS, Function, ROUTES, Route};
pub use s3::S3Delivery;

/// Region every local client and event names.
pub const REGION: &str = "us-east-1";
/// Account id in the ARNs of local events.
pub const ACCOUNT_ID: &str = "000000000000";
/// The local tenants table (`TenantsTable` in template.yaml).
pub const TENANTS_TABLE: &str = "pacs-hub-tenants";
/// The local archive table (`ArchiveTable` in template.yaml).
pub const ARCHIVE_TABLE: &str = "pacs-hub-archive";
/// The local DICOM bucket.
pub const DICOM_BUCKET: &str = "pacs-hub-dicom";
/// The local event bus name the functions publish to.
pub const EVENT_BUS: &str = "pacs-hub-events";

/// How to start a [`Stack`].
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Where tables, objects, secrets, events and dead letters are kept.
    pub data_dir: PathBuf,
    /// API port on 127.0.0.1; 0 picks a free one.
    pub api_port: u16,
    /// S3 port on 127.0.0.1; 0 picks a free one.
    pub s3_port: u16,
    /// DynamoDB port on 127.0.0.1; 0 picks a free one.
    pub dynamodb_port: u16,
    /// EventBridge port on 127.0.0.1; 0 picks a free one.
    pub events_port: u16,
    /// Waits between the attempts of an S3 event delivery (Lambda's
    /// asynchronous invoke makes three attempts in all).
    pub delivery_backoff: Vec<Duration>,
    /// How often the study sweep runs (as the scheduled `stable-studies`
    /// function); `None` runs it only when [`Stack::sweep_now`] is called.
    pub sweep_every: Option<Duration>,
}

impl StackOptions {
    /// Options for `data_dir` with every port chosen freely.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StackOptions {
            data_dir: data_dir.into(),
            api_port: 0,
            s3_port: 0,
            dynamodb_port: 0,
            events_port: 0,
            delivery_backoff: vec![Duration::from_millis(200), Duration::from_millis(800)],
            sweep_every: Some(STABLE_SWEEP_EVERY),
        }
    }
}

/// The stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("port {port} ({service}) is already in use: stop what holds it or choose another port")]
    PortInUse { service: &'static str, port: u16 },
    #[error("binding port {port} for the {service} failed: {source}")]
    Bind {
        service: &'static str,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("preparing data dir {path} failed: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secrets file {path} is not valid: {reason}")]
    Secrets { path: PathBuf, reason: String },
    #[error("opening the DynamoDB database failed: {0}")]
    OpenDatabase(String),
    #[error("creating the tables from template.yaml failed: {0}")]
    CreateTables(String),
    #[error("starting the S3 server failed: {0}")]
    S3(String),
    #[error("the settings for the functions are invalid: {0}")]
    Settings(#[from] pacs_shared::config::ConfigError),
}

/// A running local stack. Dropping it without [`Stack::shutdown`] stops the
/// servers abruptly.
pub struct Stack {
    data_dir: PathBuf,
    api_addr: SocketAddr,
    s3_addr: SocketAddr,
    dynamodb_addr: SocketAddr,
    events_addr: SocketAddr,
    context: Arc<Context>,
    credentials: secrets::S3Credentials,
    platform_admin_key: String,
    deliveries: broadcast::Sender<S3Delivery>,
    bus: broadcast::Sender<serde_json::Value>,
    calls: Arc<api::CallCounter>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    dynamodb: Option<dynamodb::EmbeddedDynamo>,
    pending_deliveries: Arc<Mutex<tokio::task::JoinSet<()>>>,
}

impl Stack {
    /// Starts every part and returns once all of them answer.
    pub async fn start(options: StackOptions) -> Result<Stack, StartError> {
        let data_dir = prepare_dir(&options.data_dir)?;

        // Bind every port first, so a port in use stops the start before
        // anything is written.
        let api = bind("API", options.api_port)?;
        let s3_listener = bind("S3 server", options.s3_port)?;
        let ddb_listener = bind("DynamoDB server", options.dynamodb_port)?;
        let events_listener = bind("EventBridge endpoint", options.events_port)?;
        let local = |l: &std::net::TcpListener| l.local_addr().expect("bound listener");
        let (api_addr, s3_addr) = (local(&api), local(&s3_listener));
        let (dynamodb_addr, events_addr) = (local(&ddb_listener), local(&events_listener));

        let stored = secrets::ensure(&data_dir)?;
        let (stop, stop_rx) = watch::channel(false);

        let dynamodb = dynamodb::EmbeddedDynamo::start(&data_dir, ddb_listener, stop_rx.clone())?;

        let settings = Settings::from_lookup(|name| {
            let value = match name {
                "TENANTS_TABLE" => TENANTS_TABLE.to_owned(),
                "ARCHIVE_TABLE" => ARCHIVE_TABLE.to_owned(),
                "DICOM_BUCKET" => DICOM_BUCKET.to_owned(),
                "EVENT_BUS_NAME" => EVENT_BUS.to_owned(),
                "SECRETS_FILE" => secrets::secrets_path(&data_dir).display().to_string(),
                "DYNAMODB_ENDPOINT" => format!("http://{dynamodb_addr}"),
                "S3_ENDPOINT" => format!("http://{s3_addr}"),
                "EVENTS_ENDPOINT" => format!("http://{events_addr}"),
                _ => return None,
            };
            Some(value)
        })?;
        let sdk_config = sdk_config(&stored.s3).await;
        let context = Arc::new(Context::new(
            settings.clone(),
            Clients::from_config(&sdk_config, &settings),
        ));

        dynamodb::create_tables(&context.clients.dynamodb).await?;

        let mut tasks = Vec::new();
        let (deliveries, _) = broadcast::channel(1024);
        let (bus, _) = broadcast::channel(1024);
        let pending_deliveries = Arc::new(Mutex::new(tokio::task::JoinSet::new()));

        let notifier = s3::Notifier {
            context: context.clone(),
            data_dir: data_dir.clone(),
            deliveries: deliveries.clone(),
            backoff: options.delivery_backoff.clone(),
            pending: pending_deliveries.clone(),
            sequence: Default::default(),
        };
        tasks.push(s3::serve(
            &data_dir,
            s3_listener,
            &stored.s3,
            notifier,
            stop_rx.clone(),
        )?);
        tasks.push(events::serve(
            &data_dir,
            events_listener,
            bus.clone(),
            stop_rx.clone(),
        ));

        let calls = Arc::new(api::CallCounter::default());
        let gateway = api::Gateway {
            context: context.clone(),
            calls: calls.clone(),
        };
        tasks.push(api::serve(api, gateway, stop_rx.clone()));
        if let Some(every) = options.sweep_every {
            tasks.push(sweep_stable_studies(
                context.clone(),
                every,
                stop_rx.clone(),
            ));
        }

        tracing::info!(
            api = %api_addr, s3 = %s3_addr, dynamodb = %dynamodb_addr, events = %events_addr,
            "stack started"
        );
        Ok(Stack {
            data_dir,
            api_addr,
            s3_addr,
            dynamodb_addr,
            events_addr,
            context,
            credentials: stored.s3,
            platform_admin_key: stored.platform_admin_key,
            deliveries,
            bus,
            calls,
            stop,
            tasks,
            dynamodb: Some(dynamodb),
            pending_deliveries,
        })
    }

    /// Base URL of the API, e.g. `http://127.0.0.1:8080`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// Endpoint of the embedded S3 server (path-style).
    pub fn s3_url(&self) -> String {
        format!("http://{}", self.s3_addr)
    }

    /// Endpoint of the embedded DynamoDB server.
    pub fn dynamodb_url(&self) -> String {
        format!("http://{}", self.dynamodb_addr)
    }

    /// Endpoint of the local EventBridge.
    pub fn events_url(&self) -> String {
        format!("http://{}", self.events_addr)
    }

    /// The data dir the stack keeps everything in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where the platform-admin key is written (mode 0600).
    pub fn platform_admin_key_path(&self) -> PathBuf {
        secrets::admin_key_path(&self.data_dir)
    }

    /// The settings and clients the functions run with.
    pub fn context(&self) -> Arc<Context> {
        self.context.clone()
    }

    /// Runs the study sweep now rather than at the next tick: counts every
    /// open study (and announces those quiet long enough), as the
    /// scheduled `stable-studies` function does.
    pub async fn sweep_now(
        &self,
    ) -> Result<on_object_created::Sweep, on_object_created::IngestError> {
        on_object_created::sweep_open_studies(&self.context).await
    }

    /// The platform-admin key, `pha_...`.
    pub fn platform_admin_key(&self) -> &str {
        &self.platform_admin_key
    }

    /// An SDK configuration with the stack's credentials and region, for
    /// clients of tests and tools.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config(&self.credentials).await
    }

    /// The environment a function binary needs to run against this stack:
    /// its settings, the endpoints and the credentials.
    pub fn function_env(&self) -> Vec<(String, String)> {
        let settings = &self.context.settings;
        let mut env = vec![
            ("TENANTS_TABLE", settings.tenants_table.clone()),
            ("ARCHIVE_TABLE", settings.archive_table.clone()),
            ("DICOM_BUCKET", settings.bucket.clone()),
            ("EVENT_BUS_NAME", EVENT_BUS.to_owned()),
            (
                "SECRETS_FILE",
                secrets::secrets_path(&self.data_dir).display().to_string(),
            ),
            ("DYNAMODB_ENDPOINT", self.dynamodb_url()),
            ("S3_ENDPOINT", self.s3_url()),
            ("EVENTS_ENDPOINT", self.events_url()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_DEFAULT_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", self.credentials.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY",
                self.credentials.secret_access_key.clone(),
            ),
        ];
        env.push(("AWS_EC2_METADATA_DISABLED", "true".to_owned()));
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// Every S3 event delivery attempt from now on, with the handler's
    /// outcome.
    pub fn subscribe_s3_deliveries(&self) -> broadcast::Receiver<S3Delivery> {
        self.deliveries.subscribe()
    }

    /// Every entry published to the local EventBridge from now on.
    pub fn subscribe_bus_events(&self) -> broadcast::Receiver<serde_json::Value> {
        self.bus.subscribe()
    }

    /// How many times the router has called `function` (its crate name,
    /// e.g. `register-hospital`) since the start.
    pub fn route_calls(&self, function: &str) -> u64 {
        self.calls.get(function)
    }

    /// Stops every server, waits for them, and closes the database.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        self.pending_deliveries
            .lock()
            .expect("delivery set")
            .abort_all();
        if let Some(ddb) = self.dynamodb.take() {
            let _ = tokio::task::spawn_blocking(move || ddb.join()).await;
        }
        tracing::info!("stack stopped");
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// How often the local stack runs the study sweep (counts, stable
/// studies), as the scheduled `stable-studies` function does in AWS.
pub const STABLE_SWEEP_EVERY: Duration = Duration::from_secs(15);

/// Runs `sweep_open_studies` every `every` until `stop`;
/// a failed sweep is logged and retried at the next tick.
fn sweep_stable_studies(
    context: Arc<Context>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = on_object_created::sweep_open_studies(&context).await {
                tracing::error!(error = %e, "stable-study sweep failed");
            }
        }
    })
}

fn prepare_dir(dir: &Path) -> Result<PathBuf, StartError> {
    let fail = |source| StartError::DataDir {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    std::fs::canonicalize(dir).map_err(fail)
}

fn bind(service: &'static str, port: u16) -> Result<std::net::TcpListener, StartError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            StartError::PortInUse { service, port }
        } else {
            StartError::Bind {
                service,
                port,
                source,
            }
        }
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| StartError::Bind {
            service,
            port,
            source,
        })?;
    Ok(listener)
}

async fn sdk_config(creds: &secrets::S3Credentials) -> aws_config::SdkConfig {
    let credentials = Credentials::from_keys(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        None,
    );
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .load()
        .await
}
