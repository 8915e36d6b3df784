//! A Lambda Runtime API emulator that runs a real, built function binary,
//! hands it one event and returns what it reported, so a test covers a
//! function's `main` (its settings, clients and runtime wiring) as Lambda
//! runs it.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::oneshot;

/// How long one invocation may take before the emulator gives up on the
/// process (a guard against a hung test, not a speed check).
const INVOCATION_GUARD: Duration = Duration::from_secs(120);

/// What the function reported for its one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// `POST /runtime/invocation/{id}/response` with this body.
    Response(Value),
    /// `POST /runtime/invocation/{id}/error` with this body
    /// (`errorType`, `errorMessage`).
    Error(Value),
    /// `POST /runtime/init/error`: the function failed before its handler.
    InitError(Value),
}

/// Runs one function binary under an emulated Runtime API.
pub struct RuntimeApi {
    function: String,
    env: Vec<(String, String)>,
}

struct Shared {
    event: Mutex<Option<(String, Value)>>,
    outcome: Mutex<Option<oneshot::Sender<Invocation>>>,
    function_arn: String,
}

impl RuntimeApi {
    /// For the binary named `function` (e.g. `register-hospital`).
    pub fn new(function: &str) -> Self {
        RuntimeApi {
            function: function.to_owned(),
            env: Vec::new(),
        }
    }

    /// Adds environment variables for the process, e.g. a stack's
    /// `function_env()`.
    pub fn env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env.extend(vars);
        self
    }

    /// Where the built binary is: next to the test executable's directory
    /// (`target/<profile>/`). `cargo build --workspace --bins` puts it there.
    pub fn binary_path(function: &str) -> anyhow::Result<PathBuf> {
        let exe = std::env::current_exe().context("locating the test executable")?;
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .context("the test executable has no target dir")?;
        let path = profile_dir.join(function);
        if !path.exists() {
            bail!(
                "{} is not built; run `cargo build --workspace --bins` first",
                path.display()
            );
        }
        Ok(path)
    }

    /// Starts the binary, hands it `event`, and returns its report. The
    /// process is killed afterwards (Lambda would freeze it).
    pub async fn invoke(self, event: Value) -> anyhow::Result<Invocation> {
        let binary = Self::binary_path(&self.function)?;
        let request_id = format!("{:032x}", rand::random::<u128>());
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            event: Mutex::new(Some((request_id, event))),
            outcome: Mutex::new(Some(tx)),
            function_arn: format!(
                "arn:aws:lambda:us-east-1:000000000000:function:{}",
                self.function
            ),
        });

        let app = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let mut child = tokio::process::Command::new(&binary)
            .envs(self.env)
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.function)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", self.function),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;

        let outcome = tokio::time::timeout(INVOCATION_GUARD, async {
            tokio::select! {
                reported = rx => reported.context("the emulator stopped"),
                status = child.wait() => {
                    bail!("{} exited before reporting: {:?}", self.function, status?)
                }
            }
        })
        .await;

        let _ = child.kill().await;
        server.abort();
        match outcome {
            Ok(result) => result,
            Err(_) => bail!(
                "{} reported nothing within {INVOCATION_GUARD:?}",
                self.function
            ),
        }
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let taken = shared.event.lock().expect("event").take();
    let Some((request_id, event)) = taken else {
        // One event per process: later polls wait, as a frozen sandbox does.
        futures::future::pending::<()>().await;
        unreachable!();
    };
    let deadline = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000
        + INVOCATION_GUARD.as_millis() as i128;
    let mut headers = HeaderMap::new();
    let value = |s: &str| HeaderValue::from_str(s).expect("header value");
    headers.insert("lambda-runtime-aws-request-id", value(&request_id));
    headers.insert("lambda-runtime-deadline-ms", value(&deadline.to_string()));
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        value(&shared.function_arn),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        value("Root=1-00000000-000000000000000000000000"),
    );
    headers.insert("content-type", value("application/json"));
    (StatusCode::OK, headers, event.to_string())
}

fn report(shared: &Shared, invocation: Invocation) -> StatusCode {
    if let Some(tx) = shared.outcome.lock().expect("outcome").take() {
        let _ = tx.send(invocation);
    }
    StatusCode::ACCEPTED
}

fn parse(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(_id): Path<String>,
    body: Bytes,
) -> StatusCode {
    report(&shared, Invocation::Response(parse(&body)))
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(_id): Path<String>,
    body: Bytes,
) -> StatusCode {
    report(&shared, Invocation::Error(parse(&body)))
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    report(&shared, Invocation::InitError(parse(&body)))
}
