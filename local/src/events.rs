//! A local EventBridge that answers the SDK's `PutEvents` (awsJson1.1),
//! so functions publish with the real client. Each entry is appended to
//! `<data>/events.jsonl` and broadcast to whoever subscribed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, broadcast, watch};
use tokio::task::JoinHandle;

use crate::{ACCOUNT_ID, REGION};

struct Bus {
    log: Mutex<PathBuf>,
    subscribers: broadcast::Sender<Value>,
}

/// Serves PutEvents on `listener` until `stop`.
pub fn serve(
    data_dir: &Path,
    listener: std::net::TcpListener,
    subscribers: broadcast::Sender<Value>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let bus = Arc::new(Bus {
        log: Mutex::new(data_dir.join("events.jsonl")),
        subscribers,
    });
    let app = axum::Router::new().fallback(put_events).with_state(bus);
    tokio::spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return tracing::error!(error = %e, "events endpoint failed"),
        };
        let shutdown = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "events endpoint failed");
        }
    })
}

async fn put_events(State(bus): State<Arc<Bus>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if target != "AWSEvents.PutEvents" {
        return aws_error(
            "UnknownOperationException",
            &format!("{target:?} is not supported"),
        );
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return aws_error("ValidationException", &format!("invalid JSON: {e}")),
    };
    let Some(entries) = request.get("Entries").and_then(Value::as_array) else {
        return aws_error("ValidationException", "Entries is required");
    };

    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time formats");
    let mut results = Vec::new();
    let mut lines = String::new();
    let mut published = Vec::new();
    for entry in entries {
        let id = uuid_like();
        let detail = entry
            .get("Detail")
            .and_then(Value::as_str)
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
            .unwrap_or(Value::Null);
        let event = json!({
            "version": "0",
            "id": id,
            "detail-type": entry.get("DetailType"),
            "source": entry.get("Source"),
            "account": ACCOUNT_ID,
            "time": entry.get("Time").cloned().unwrap_or_else(|| json!(now)),
            "region": REGION,
            "resources": entry.get("Resources").cloned().unwrap_or_else(|| json!([])),
            "detail": detail,
            "eventBusName": entry.get("EventBusName"),
        });
        lines.push_str(&event.to_string());
        lines.push('\n');
        published.push(event);
        results.push(json!({ "EventId": id }));
    }

    let path = bus.log.lock().await;
    let written = async {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&*path)
            .await?;
        file.write_all(lines.as_bytes()).await?;
        // tokio hands writes to a blocking thread: flush so the line is in
        // the file before anyone is told.
        file.flush().await
    };
    if let Err(e) = written.await {
        tracing::error!(error = %e, "events not recorded");
        return aws_error("InternalException", "the event log could not be written");
    }

    // Subscribers hear of an event only once it is in the log.
    for event in published {
        let _ = bus.subscribers.send(event);
    }

    let body = json!({ "FailedEntryCount": 0, "Entries": results });
    (
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

fn aws_error(kind: &str, message: &str) -> Response {
    let body = json!({ "__type": kind, "message": message });
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

fn uuid_like() -> String {
    let b = hex::encode(rand::random::<[u8; 16]>());
    format!(
        "{}-{}-{}-{}-{}",
        &b[..8],
        &b[8..12],
        &b[12..16],
        &b[16..20],
        &b[20..]
    )
}
