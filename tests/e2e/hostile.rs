//! Hostile files against the indexer as a process of its own: the real
//! handler, wired as its Lambda `main` is (`indexer-probe`), served S3
//! events by a small Lambda Runtime API in the test. Every file that lies
//! about its lengths, nests sequences too deep, inflates without end or
//! hides an executable is quarantined, and the process's peak resident
//! memory stays within 64 MiB of what it held idle.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pacs_testkit::dicom::{DicomFixture, TransferSyntax, hostile};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::ingest::{Harness, Hospital};

/// How far above its idle resident set the indexer may go.
const MEMORY_BUDGET: u64 = 64 * 1024 * 1024;

/// One invocation waiting for the function, and where its outcome goes.
struct Invocation {
    request_id: String,
    event: Value,
    outcome: oneshot::Sender<Result<Value, Value>>,
}

/// The part of the Lambda Runtime API a function's runtime client uses:
/// `next`, `response`, `error` and `init/error`.
#[derive(Clone)]
struct RuntimeApi {
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Invocation>>>,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Result<Value, Value>>>>>,
    init_errors: mpsc::UnboundedSender<Value>,
}

/// The emulator's handle: hand it events, get the function's answers.
struct Emulator {
    address: String,
    queue: mpsc::UnboundedSender<Invocation>,
    init_errors: mpsc::UnboundedReceiver<Value>,
    sequence: u64,
}

impl Emulator {
    async fn start() -> Emulator {
        let (queue, rx) = mpsc::unbounded_channel();
        let (init_tx, init_errors) = mpsc::unbounded_channel();
        let api = RuntimeApi {
            queue: Arc::new(Mutex::new(rx)),
            waiting: Default::default(),
            init_errors: init_tx,
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(api);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.expect("runtime api") });
        Emulator {
            address,
            queue,
            init_errors,
            sequence: 0,
        }
    }

    /// Invokes the function with `event` and waits for its answer.
    async fn invoke(&mut self, event: Value) -> Result<Value, Value> {
        self.sequence += 1;
        let (outcome, answer) = oneshot::channel();
        let request_id = format!("00000000-0000-4000-8000-{:012}", self.sequence);
        self.queue
            .send(Invocation {
                request_id,
                event,
                outcome,
            })
            .expect("queue");
        tokio::select! {
            answer = answer => answer.expect("the emulator answers"),
            Some(init) = self.init_errors.recv() => panic!("the function failed to start: {init}"),
        }
    }
}

async fn next(State(api): State<RuntimeApi>) -> Response {
    let Some(invocation) = api.queue.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 900_000;
    let mut headers = HeaderMap::new();
    let mut header = |name: &'static str, value: String| {
        headers.insert(name, HeaderValue::from_str(&value).expect("header value"));
    };
    header(
        "lambda-runtime-aws-request-id",
        invocation.request_id.clone(),
    );
    header("lambda-runtime-deadline-ms", deadline.to_string());
    header(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:000000000000:function:on-object-created".into(),
    );
    header(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000".into(),
    );
    header("content-type", "application/json".into());
    api.waiting
        .lock()
        .await
        .insert(invocation.request_id, invocation.outcome);
    (headers, invocation.event.to_string()).into_response()
}

async fn finish(api: &RuntimeApi, id: &str, outcome: Result<Value, Value>) -> StatusCode {
    match api.waiting.lock().await.remove(id) {
        Some(waiter) => {
            let _ = waiter.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

fn json_or_text(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| String::from_utf8_lossy(body).into())
}

async fn response(
    State(api): State<RuntimeApi>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    finish(&api, &id, Ok(json_or_text(&body))).await
}

async fn error(State(api): State<RuntimeApi>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    finish(&api, &id, Err(json_or_text(&body))).await
}

async fn init_error(State(api): State<RuntimeApi>, body: Bytes) -> StatusCode {
    let _ = api.init_errors.send(json_or_text(&body));
    StatusCode::ACCEPTED
}

/// An `ObjectCreated:Put` event for one object, every field as S3 fills it.
fn s3_event(bucket: &str, key: &str, size: usize) -> Value {
    json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": "2025-01-01T00:00:00.000Z",
            "eventName": "ObjectCreated:Put",
            "userIdentity": { "principalId": "PACSHUBTEST" },
            "requestParameters": { "sourceIPAddress": "127.0.0.1" },
            "responseElements": {
                "x-amz-request-id": "0000000000000000",
                "x-amz-id-2": "AAAA",
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "dicom-object-created",
                "bucket": {
                    "name": bucket,
                    "ownerIdentity": { "principalId": "PACSHUBTEST" },
                    "arn": format!("arn:aws:s3:::{bucket}"),
                },
                "object": { "key": key, "size": size, "eTag": "0", "sequencer": "00" },
            },
        }],
    })
}

/// VmRSS and VmHWM of a process, in bytes.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).expect(name);
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect(name);
        kb * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Presigns `bytes` for `h` and stores them at the upload's key without
/// the stack's own notification (a copy from a staging key notifies no
/// one locally), so that only the process under test indexes them.
async fn stage(harness: &Harness, h: &Hospital, bytes: &[u8]) -> (String, String) {
    let upload = harness.presign(h, bytes, None).await;
    let ctx = harness.stack.context();
    let bucket = ctx.settings.bucket.clone();
    let staging = format!("staging/{}.dcm", upload.id);
    let key = format!("dicom/{}/{}.dcm", h.id, upload.id);
    let put = ctx.clients.s3.put_object().bucket(&bucket).key(&staging);
    put.body(bytes.to_vec().into())
        .send()
        .await
        .expect("staging put");
    let copy = ctx.clients.s3.copy_object().bucket(&bucket).key(&key);
    copy.copy_source(format!("{bucket}/{staging}"))
        .send()
        .await
        .expect("copy to upload key");
    (upload.id, key)
}

#[tokio::test]
async fn hostile_files_are_quarantined_within_a_bounded_memory() {
    let harness = Harness::start().await;
    let h = harness.register("Hostile Hospital").await;
    let bucket = harness.stack.context().settings.bucket.clone();
    let mut deliveries = harness.stack.subscribe_s3_deliveries();

    let warm_up = DicomFixture::ct().to_bytes();
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "1 GiB text value, explicit VR",
            hostile::declared_length(1 << 30, TransferSyntax::ExplicitVrLittleEndian),
        ),
        (
            "2 GiB text value, implicit VR",
            hostile::declared_length(1 << 31, TransferSyntax::ImplicitVrLittleEndian),
        ),
        (
            "1 GiB text value, big endian",
            hostile::declared_length(1 << 30, TransferSyntax::ExplicitVrBigEndian),
        ),
        ("1 GiB sequence", hostile::gigabyte_sequence()),
        ("8 MiB private element", hostile::oversized_element(8 << 20)),
        (
            "sequences 500 deep, explicit VR",
            hostile::deep_sequences(500, TransferSyntax::ExplicitVrLittleEndian),
        ),
        (
            "sequences 500 deep, implicit VR",
            hostile::deep_sequences(500, TransferSyntax::ImplicitVrLittleEndian),
        ),
        ("undelimited sequence", hostile::undelimited_sequence()),
        (
            "MZ preamble",
            hostile::executable_preamble(hostile::Executable::Mz),
        ),
        (
            "ELF preamble",
            hostile::executable_preamble(hostile::Executable::Elf),
        ),
        ("deflate bomb of 128 MiB", hostile::deflate_bomb(128 << 20)),
    ];
    let (warm_id, warm_key) = stage(&harness, &h, &warm_up).await;
    let mut staged = Vec::new();
    for (name, bytes) in &files {
        let (id, key) = stage(&harness, &h, bytes).await;
        staged.push((*name, id, key, bytes.len()));
    }
    assert!(
        deliveries.try_recv().is_err(),
        "the local stack notified a copy; stage() relies on it not doing so"
    );

    // The indexer, as Lambda would start it.
    let mut runtime = Emulator::start().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_indexer-probe"))
        .envs(harness.stack.function_env())
        .env("AWS_LAMBDA_RUNTIME_API", &runtime.address)
        .env("AWS_LAMBDA_FUNCTION_NAME", "on-object-created")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("indexer-probe starts");
    let pid = child.id().expect("pid");

    // A good file first, so clients, pools and the allocator are warm.
    let answer = runtime
        .invoke(s3_event(&bucket, &warm_key, warm_up.len()))
        .await;
    assert!(answer.is_ok(), "{answer:?}");
    assert_eq!(harness.settled(&h, &warm_id).await["status"], "indexed");

    // Idle: between invocations, blocked on the next one. Resetting the
    // high-water mark makes VmHWM the peak from here on.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (idle, _) = memory_of(pid);
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the peak");

    for (name, id, key, size) in &staged {
        let answer = runtime.invoke(s3_event(&bucket, key, *size)).await;
        assert!(answer.is_ok(), "{name}: the event must succeed: {answer:?}");
        let status = harness.settled(&h, id).await;
        assert_eq!(status["status"], "rejected", "{name}: {status}");
        assert!(
            status["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{name}"
        );
        let quarantined = format!("quarantine/{}/{id}.dcm", h.id);
        assert!(harness.object_exists(&quarantined).await, "{name}");
        assert!(!harness.object_exists(key).await, "{name}");
    }

    let (rss, peak) = memory_of(pid);
    eprintln!(
        "indexer memory: idle {} KiB, peak {} KiB, after {} KiB",
        idle / 1024,
        peak / 1024,
        rss / 1024
    );
    assert!(
        peak.saturating_sub(idle) < MEMORY_BUDGET,
        "peak {peak} bytes is more than 64 MiB above idle {idle} bytes"
    );

    child.kill().await.expect("stop the indexer");
    harness.stack.shutdown().await;
}
