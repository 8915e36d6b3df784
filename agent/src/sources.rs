//! Where instances come from in Orthanc: the change log follower (with the
//! first-start back-fill) and the stable-study webhook. Both hand study ids
//! to the [`Collector`], which records each new instance in the queue.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::routing::post;
use tokio::sync::{Notify, mpsc};

use crate::orthanc::{DownloadError, Orthanc, OrthancError, is_orthanc_id};
use crate::queue::{Enqueued, Queue, QueueError, Source, now_ms};
use crate::spool::{Spool, SpoolError};
use crate::uploader::backoff;

/// A failure while collecting; only [`SourceError::Orthanc`] is retried,
/// the others stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Orthanc(#[from] OrthancError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Meta key of the last Orthanc change sequence handled.
pub const CURSOR_KEY: &str = "orthanc_cursor";

/// Records Orthanc instances in the queue.
#[derive(Clone)]
pub struct Collector {
    pub queue: Arc<Queue>,
    pub spool: Spool,
    pub orthanc: Orthanc,
    /// Woken when something new is queued.
    pub wake: Arc<Notify>,
}

impl Collector {
    /// Queues every instance of `study` not seen before; returns how many
    /// were new. Each is spooled, then recorded, before anything is sent.
    pub async fn collect_study(&self, study: &str) -> Result<usize, SourceError> {
        // A study or instance deleted from Orthanc in the meantime is
        // skipped, or the change log would be stuck on it.
        let instances = match self.orthanc.study_instances(study).await {
            Err(OrthancError::Status { status: 404, .. }) => return Ok(0),
            other => other?,
        };
        let mut new = 0;
        for instance in instances {
            if self.queue.seen(Source::Orthanc, &instance)?.is_some() {
                continue;
            }

            let incoming = match self.orthanc.download_instance(&instance, &self.spool).await {
                Err(DownloadError::Orthanc(OrthancError::Status { status: 404, .. })) => {
                    tracing::debug!(instance = %instance, "instance gone from orthanc");
                    continue;
                }
                Err(DownloadError::Orthanc(error)) => return Err(error.into()),
                Err(DownloadError::Spool(error)) => return Err(error.into()),
                Ok(incoming) => incoming,
            };
            let (sha256, size) = incoming.digest();
            if self.queue.knows(&sha256)? {
                incoming.discard().await;
            } else {
                incoming.keep(&self.spool).await?;
            }
            if let Enqueued::New(_) =
                self.queue
                    .enqueue(Source::Orthanc, &instance, "1", &sha256, size)?
            {
                new += 1;
                self.wake.notify_one();
            }
        }
        if new > 0 {
            tracing::info!(study = %study, instances = new, "study queued");
        }
        Ok(new)
    }

    /// One pass over Orthanc's change log from the stored cursor; on the
    /// very first pass, back-fills the studies Orthanc already holds
    /// (those dated on or after `since`, when given).
    pub async fn sync_once(&self, since: Option<&str>) -> Result<(), SourceError> {
        let mut cursor = match self.queue.meta(CURSOR_KEY)? {
            Some(cursor) => cursor.parse().unwrap_or(0),
            None => self.backfill(since).await?,
        };

        loop {
            let page = self.orthanc.changes(cursor, 100).await?;
            for change in &page.changes {
                if change.change_type == "StableStudy" && is_orthanc_id(&change.id) {
                    self.collect_study(&change.id).await?;
                }
            }

            // The cursor moves only once the page's studies are recorded.
            cursor = page.last.max(cursor);
            self.queue.set_meta(CURSOR_KEY, &cursor.to_string())?;
            if page.done || page.changes.is_empty() {
                return Ok(());
            }
        }
    }

    async fn backfill(&self, since: Option<&str>) -> Result<i64, SourceError> {
        // Changes after this point are followed from the log; studies
        // listed now are collected here; an overlap is harmless.
        let last = self.orthanc.last_change().await?;
        let studies = self.orthanc.studies().await?;
        tracing::info!(studies = studies.len(), "back-fill of orthanc started");

        let mut taken = 0;
        for study in studies.iter().filter(|s| is_orthanc_id(s)) {
            if let Some(since) = since {
                let date = self.orthanc.study_date(study).await?.unwrap_or_default();
                if date.as_str() < since {
                    continue;
                }
            }
            self.collect_study(study).await?;
            taken += 1;
        }

        self.queue.set_meta(CURSOR_KEY, &last.to_string())?;
        tracing::info!(studies = taken, "back-fill of orthanc done");
        Ok(last)
    }
}

/// Follows Orthanc's change log every `interval` until an error that
/// must stop the agent. Orthanc failures are reported and retried.
pub async fn follow_orthanc(
    collector: Collector,
    interval: Duration,
    since: Option<String>,
) -> Result<(), SourceError> {
    let mut failures = 0u32;
    loop {
        let wait = match collector.sync_once(since.as_deref()).await {
            Ok(()) => {
                failures = 0;
                collector
                    .queue
                    .set_meta("last_sync", &now_ms().to_string())?;
                interval
            }
            Err(SourceError::Orthanc(error)) => {
                tracing::error!(error = %error, "orthanc sync failed, will retry");
                collector.queue.record_error(&error.to_string())?;
                failures += 1;
                backoff(failures, 1_000, interval.as_millis() as u64).max(interval / 4)
            }
            Err(fatal) => return Err(fatal),
        };
        tokio::time::sleep(wait).await;
    }
}

/// The webhook listener's routes: `POST /orthanc/stable-study` with
/// `{"Type": "StableStudy", "ID": "<orthanc study id>"}`.
pub fn webhook_router(studies: mpsc::Sender<String>) -> Router {
    Router::new()
        .route("/orthanc/stable-study", post(stable_study))
        .with_state(studies)
}

async fn stable_study(
    AxumState(studies): AxumState<mpsc::Sender<String>>,
    body: Bytes,
) -> (StatusCode, String) {
    #[derive(serde::Deserialize)]
    struct Callback {
        #[serde(rename = "Type")]
        kind: String,
        #[serde(rename = "ID")]
        id: String,
    }

    let callback: Callback = match serde_json::from_slice(&body) {
        Ok(callback) => callback,
        Err(_) => {
            let message = r#"expected a JSON body {"Type": "StableStudy", "ID": "..."}"#;
            return (StatusCode::BAD_REQUEST, message.to_owned());
        }
    };
    if callback.kind != "StableStudy" {
        return (
            StatusCode::BAD_REQUEST,
            "only Type StableStudy is handled".to_owned(),
        );
    }
    if !is_orthanc_id(&callback.id) {
        return (
            StatusCode::BAD_REQUEST,
            "ID is not an Orthanc study id".to_owned(),
        );
    }

    match studies.try_send(callback.id) {
        Ok(()) => (StatusCode::ACCEPTED, "queued".to_owned()),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "busy, the change log will catch up".to_owned(),
        ),
    }
}

/// Collects the studies announced by webhooks, retrying Orthanc failures a
/// few times (the change log follower, when on, is the safety net).
pub async fn collect_announced(
    collector: Collector,
    mut studies: mpsc::Receiver<String>,
) -> Result<(), SourceError> {
    while let Some(study) = studies.recv().await {
        tracing::info!(study = %study, "stable study announced");
        for attempt in 0..5 {
            match collector.collect_study(&study).await {
                Ok(_) => break,
                Err(SourceError::Orthanc(error)) => {
                    tracing::error!(error = %error, attempt, "orthanc read failed, will retry");
                    collector.queue.record_error(&error.to_string())?;
                    tokio::time::sleep(backoff(attempt, 1_000, 30_000)).await;
                }
                Err(fatal) => return Err(fatal),
            }
        }
    }
    Ok(())
}
