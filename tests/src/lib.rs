//! Helpers for the end-to-end tests: a whole local stack on a temporary
//! data dir with free ports, an HTTP client, the platform-admin key, the
//! tenancy calls most tests begin with, a Lambda Runtime API emulator
//! that drives the real function binaries, and DICOM fixtures written byte
//! by byte (shared with the bench).

pub mod dicom;
mod runtime_api;

use std::ops::Deref;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use pacs_local::{Stack, StackOptions};
use serde_json::{Value, json};

pub use runtime_api::{Invocation, RuntimeApi, RuntimeSession};

/// The workspace's `events/` folder of sample Lambda events.
pub fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

/// A sample event from `events/`, parsed.
pub fn sample_event(name: &str) -> Value {
    let path = events_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Logs of the code under test, captured per test by the harness; the
/// level comes from `RUST_LOG` (default `warn`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A local stack on a temporary data dir, removed when this is dropped.
/// Derefs to the [`Stack`] for its URLs, context and subscriptions.
pub struct TestStack {
    stack: Option<Stack>,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// A hospital registered through the API.
#[derive(Debug, Clone)]
pub struct TestHospital {
    /// `hosp_` + 16 hex.
    pub id: String,
    /// The agent key returned once at registration.
    pub agent_key: String,
}

impl TestStack {
    /// Starts a stack on a fresh temporary data dir, every port free.
    pub async fn start() -> TestStack {
        init_logging();
        let dir = tempfile::tempdir().expect("temporary data dir");
        let stack = Stack::start(StackOptions::new(dir.path()))
            .await
            .expect("stack starts");
        let http = reqwest::Client::builder().build().expect("http client");
        TestStack {
            stack: Some(stack),
            dir,
            http,
        }
    }

    /// Stops the stack and starts it again on the same data dir (new ports).
    pub async fn restart(&mut self) {
        if let Some(stack) = self.stack.take() {
            stack.shutdown().await;
        }
        let stack = Stack::start(StackOptions::new(self.dir.path()))
            .await
            .expect("stack restarts");
        self.stack = Some(stack);
    }

    /// Stops the stack; the data dir goes when this is dropped.
    pub async fn shutdown(mut self) {
        if let Some(stack) = self.stack.take() {
            stack.shutdown().await;
        }
    }

    /// The running stack.
    pub fn stack(&self) -> &Stack {
        self.stack.as_ref().expect("stack is running")
    }

    /// A client for the API (no key set: add `x-api-key` per request).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `api_url()` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.stack().api_url())
    }

    /// The platform-admin key of this data dir.
    pub fn platform_key(&self) -> String {
        self.stack().platform_admin_key().to_owned()
    }

    /// An S3 client for the embedded server, signed with the stack's
    /// credentials.
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let config = self.stack().sdk_config().await;
        let conf = aws_sdk_s3::config::Builder::from(&config)
            .endpoint_url(self.stack().s3_url())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// A DynamoDB client for the embedded server.
    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let config = self.stack().sdk_config().await;
        let conf = aws_sdk_dynamodb::config::Builder::from(&config)
            .endpoint_url(self.stack().dynamodb_url())
            .build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }

    /// Sends `method path` with `key` and an optional JSON body; returns
    /// the status and the parsed JSON body (`Null` when there is none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.context("sending request")?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.context("reading response")?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).context("response is not JSON")?
        };
        Ok((status, body))
    }

    /// Registers a hospital on the `basic` plan with the platform key.
    pub async fn register_hospital(&self, name: &str) -> anyhow::Result<TestHospital> {
        let body = json!({
            "name": name,
            "contactEmail": "pacs-admin@example.org",
            "contactPhone": "+44 20 7946 0000",
            "address": "1 Example Road, Exampleton",
            "plan": "basic",
            "settings": {},
        });
        let key = self.platform_key();
        let (status, resp) = self
            .call(
                reqwest::Method::POST,
                "/api/hospitals/register",
                Some(&key),
                Some(&body),
            )
            .await?;
        if status != 201 {
            bail!("registering {name:?} answered {status}: {resp}");
        }
        let field = |f: &str| {
            resp["data"][f]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("no data.{f}"))
        };
        Ok(TestHospital {
            id: field("hospitalId")?,
            agent_key: field("apiKey")?,
        })
    }

    /// Creates a key of `role` for `hospital_id`, with an admin key of that
    /// hospital or the platform key; returns the new key.
    pub async fn create_key(
        &self,
        hospital_id: &str,
        role: &str,
        admin_or_platform_key: &str,
    ) -> anyhow::Result<String> {
        let body = json!({ "role": role, "label": format!("test {role}") });
        let path = format!("/api/hospitals/{hospital_id}/keys");
        let (status, resp) = self
            .call(
                reqwest::Method::POST,
                &path,
                Some(admin_or_platform_key),
                Some(&body),
            )
            .await?;
        if status != 201 {
            bail!("creating a {role} key answered {status}: {resp}");
        }
        resp["data"]["apiKey"]
            .as_str()
            .map(str::to_owned)
            .context("no data.apiKey")
    }
}

impl Deref for TestStack {
    type Target = Stack;

    fn deref(&self) -> &Stack {
        self.stack()
    }
}
