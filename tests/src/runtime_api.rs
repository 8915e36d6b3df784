//! A Lambda Runtime API emulator that runs a real, built function binary
//! and hands it events, so a test covers a function's `main` (its settings,
//! clients and runtime wiring) as Lambda runs it: one event per process
//! (`invoke`), or many events to one warm process (`start`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long one invocation may take before the emulator gives up on the
/// process (a guard against a hung test, not a speed check).
const INVOCATION_GUARD: Duration = Duration::from_secs(120);

/// What the function reported for one event.
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

/// A started function process and the Runtime API serving it; events are
/// handed over one at a time, as Lambda does to a warm sandbox.
pub struct RuntimeSession {
    function: String,
    child: tokio::process::Child,
    pid: u32,
    queue: mpsc::UnboundedSender<Pending>,
    init_errors: mpsc::UnboundedReceiver<Value>,
    server: JoinHandle<()>,
    sequence: u64,
}

/// An event waiting for the function's `next` poll, and where its report
/// goes.
struct Pending {
    request_id: String,
    event: Value,
    outcome: oneshot::Sender<Invocation>,
}

/// The emulator's state, shared by its routes.
#[derive(Clone)]
struct Shared {
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>,
    in_flight: Arc<Mutex<HashMap<String, oneshot::Sender<Invocation>>>>,
    init_errors: mpsc::UnboundedSender<Value>,
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
    /// `function_env()`. They may override the `AWS_LAMBDA_*` defaults
    /// (memory size, log group), not the Runtime API address.
    pub fn env<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
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
        let mut session = self.start().await?;
        let outcome = session.invoke(event).await;
        session.shutdown().await;
        outcome
    }

    /// Starts the binary under a Runtime API of its own and returns the
    /// session that feeds it events. The process initialises on its own;
    /// a failed start shows as the first invocation's `InitError`.
    pub async fn start(self) -> anyhow::Result<RuntimeSession> {
        let binary = Self::binary_path(&self.function)?;

        let (queue, queued) = mpsc::unbounded_channel();
        let (init_tx, init_errors) = mpsc::unbounded_channel();
        let shared = Shared {
            queue: Arc::new(Mutex::new(queued)),
            in_flight: Default::default(),
            init_errors: init_tx,
            function_arn: format!(
                "arn:aws:lambda:us-east-1:000000000000:function:{}",
                self.function
            ),
        };
        let app = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the runtime api")?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let spawned = tokio::process::Command::new(&binary)
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.function)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", self.function),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .envs(self.env)
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()));
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                server.abort();
                return Err(e);
            }
        };
        let pid = child.id().context("the started process has no pid")?;

        Ok(RuntimeSession {
            function: self.function,
            child,
            pid,
            queue,
            init_errors,
            server,
            sequence: 0,
        })
    }
}

impl RuntimeSession {
    /// The function process's id, e.g. to read `/proc/<pid>/status`.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Hands `event` to the running function and waits for its report.
    /// Fails if the process exits or reports nothing within the guard.
    pub async fn invoke(&mut self, event: Value) -> anyhow::Result<Invocation> {
        self.sequence += 1;
        let request_id = format!("00000000-0000-4000-8000-{:012}", self.sequence);
        let (outcome, reported) = oneshot::channel();
        self.queue
            .send(Pending {
                request_id,
                event,
                outcome,
            })
            .context("the runtime api stopped")?;

        let RuntimeSession {
            function,
            child,
            init_errors,
            ..
        } = self;
        let waited = tokio::time::timeout(INVOCATION_GUARD, async {
            tokio::select! {
                reported = reported => reported.context("the runtime api stopped"),
                Some(init) = init_errors.recv() => Ok(Invocation::InitError(init)),
                status = child.wait() => Err(exited(function, status?)),
            }
        })
        .await;

        match waited {
            Ok(Err(exit)) => match init_errors.try_recv() {
                // It said why before it went.
                Ok(init) => Ok(Invocation::InitError(init)),
                Err(_) => Err(exit),
            },
            Ok(outcome) => outcome,
            Err(_) => bail!("{function} reported nothing within {INVOCATION_GUARD:?}"),
        }
    }

    /// Stops the process and the Runtime API.
    pub async fn shutdown(mut self) {
        let _ = self.child.kill().await;
        self.server.abort();
    }
}

impl Drop for RuntimeSession {
    fn drop(&mut self) {
        // The child is killed on drop; the server would otherwise outlive it.
        self.server.abort();
    }
}

fn exited(function: &str, status: ExitStatus) -> anyhow::Error {
    anyhow::anyhow!("{function} exited before reporting: {status:?}")
}

async fn next(State(shared): State<Shared>) -> Response {
    // Between events the poll waits, as a warm sandbox does.
    let Some(pending) = shared.queue.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };

    let deadline = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000
        + INVOCATION_GUARD.as_millis() as i128;
    let mut headers = HeaderMap::new();
    let value = |s: &str| HeaderValue::from_str(s).expect("header value");
    headers.insert("lambda-runtime-aws-request-id", value(&pending.request_id));
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

    shared
        .in_flight
        .lock()
        .await
        .insert(pending.request_id, pending.outcome);
    (StatusCode::OK, headers, pending.event.to_string()).into_response()
}

async fn report(shared: &Shared, id: &str, invocation: Invocation) -> StatusCode {
    match shared.in_flight.lock().await.remove(id) {
        Some(waiter) => {
            let _ = waiter.send(invocation);
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

fn parse(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(State(shared): State<Shared>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    report(&shared, &id, Invocation::Response(parse(&body))).await
}

async fn error(State(shared): State<Shared>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    report(&shared, &id, Invocation::Error(parse(&body))).await
}

async fn init_error(State(shared): State<Shared>, body: Bytes) -> StatusCode {
    let _ = shared.init_errors.send(parse(&body));
    StatusCode::ACCEPTED
}
