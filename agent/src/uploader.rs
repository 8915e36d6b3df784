//! Sends what the queue holds: claims due entries, presigns them in
//! batches, PUTs them with bounded concurrency, and asks the hub for each
//! upload's outcome until it is `indexed` or `rejected`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::UnboundedSender;

use crate::hub::{FileToUpload, Hub, HubError, MAX_BATCH, PresignedUpload, UploadStatus};
use crate::queue::{Entry, Queue, QueueError, Source, State, now_ms};
use crate::spool::{Spool, SpoolError};

/// An error that stops the agent: the queue or spool cannot be kept.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// What happened to a file, for progress reports.
#[derive(Debug, Clone)]
pub enum UploadEvent {
    /// The bytes reached storage.
    Sent { id: i64, size: u64 },
    /// The hub's final word, or the agent gave up.
    Finished {
        id: i64,
        state: State,
        reason: Option<String>,
    },
}

/// How a round went.
#[derive(Debug)]
pub enum Round {
    /// Something was sent or settled.
    Worked,
    /// Nothing was due.
    Idle,
    /// The hub could not be used; wait before the next round.
    Blocked(HubError),
}

/// How long the hub may leave a sent upload `pending` before the agent
/// sends it again (the hub indexes within seconds; this covers a lost
/// storage event).
const PENDING_LIMIT_MS: i64 = 15 * 60 * 1000;

/// The sender.
pub struct Uploader {
    pub queue: Arc<Queue>,
    pub hub: Hub,
    pub spool: Spool,
    pub concurrency: usize,
    pub max_attempts: u32,
    pub events: Option<UnboundedSender<UploadEvent>>,
}

/// Exponential backoff with jitter: about `base * 2^n`, capped, and
/// spread between half and all of it so agents do not retry in step.
pub fn backoff(attempt: u32, base_ms: u64, cap_ms: u64) -> Duration {
    let full = base_ms.saturating_mul(1u64 << attempt.min(20)).min(cap_ms);
    let spread = rand::random_range(full / 2..=full.max(1));
    Duration::from_millis(spread)
}

/// Bytes read at a time when hashing or sending a file.
const CHUNK: usize = 256 * 1024;

fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buffer[..n]);
    }
}

/// A request body that streams the file in chunks.
async fn file_body(path: &Path) -> std::io::Result<reqwest::Body> {
    let file = tokio::fs::File::open(path).await?;
    let chunks = futures::stream::try_unfold(file, |mut file| async move {
        let mut buffer = vec![0u8; CHUNK];
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buffer.truncate(n);
        Ok(Some((bytes::Bytes::from(buffer), file)))
    });
    Ok(reqwest::Body::wrap_stream(chunks))
}

enum Loaded {
    File(PathBuf),
    /// The bytes cannot be had any more; the entry is `failed`.
    Gone(&'static str),
}

impl Uploader {
    fn emit(&self, event: UploadEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }

    /// Settles entries a stopped process left `sending`: asks the hub
    /// about those that had an upload, and queues the rest again.
    pub async fn settle_interrupted(&self) -> Result<(), UploadError> {
        for entry in self.queue.interrupted()? {
            let status = match &entry.upload_id {
                Some(upload_id) => self.hub.upload_status(upload_id).await.ok(),
                None => None,
            };
            match status {
                Some(UploadStatus::Indexed { replaced }) => {
                    self.finish(&entry, State::Indexed, None, replaced).await?
                }
                Some(UploadStatus::Rejected { reason }) => {
                    self.finish(&entry, State::Rejected, Some(reason), false)
                        .await?
                }
                _ => self.queue.requeue(entry.id)?,
            }
        }
        Ok(())
    }

    /// Sends up to one batch of due entries.
    pub async fn send_due(&self) -> Result<Round, UploadError> {
        let entries = self.queue.claim_due(MAX_BATCH)?;
        if entries.is_empty() {
            return Ok(Round::Idle);
        }

        match self.presign(&entries).await? {
            Ok(uploads) => {
                self.put_all(entries.into_iter().zip(uploads).collect())
                    .await?;
                Ok(Round::Worked)
            }
            Err(HubError::Rejected { .. }) if entries.len() > 1 => {
                // One file spoiled the batch (too large, say): find it by
                // asking for each file alone.
                for (i, entry) in entries.iter().enumerate() {
                    match self.presign(std::slice::from_ref(entry)).await? {
                        Ok(uploads) => {
                            self.put_all(vec![(entry.clone(), uploads[0].clone())])
                                .await?
                        }
                        Err(e) => {
                            if let Some(blocked) =
                                self.presign_failed(std::slice::from_ref(entry), e).await?
                            {
                                for rest in &entries[i + 1..] {
                                    self.queue.requeue(rest.id)?;
                                }
                                return Ok(blocked);
                            }
                        }
                    }
                }
                Ok(Round::Worked)
            }
            Err(e) => Ok(self
                .presign_failed(&entries, e)
                .await?
                .unwrap_or(Round::Worked)),
        }
    }

    async fn presign(
        &self,
        entries: &[Entry],
    ) -> Result<Result<Vec<PresignedUpload>, HubError>, UploadError> {
        let files: Vec<FileToUpload> = entries
            .iter()
            .map(|e| FileToUpload {
                size: e.size,
                sha256: e.sha256.clone(),
            })
            .collect();
        let uploads = match self.hub.presign(&files).await {
            Ok(uploads) => uploads,
            Err(e) => return Ok(Err(e)),
        };
        for (entry, upload) in entries.iter().zip(&uploads) {
            self.queue.set_upload_id(entry.id, &upload.upload_id)?;
        }
        Ok(Ok(uploads))
    }

    /// Handles a presign failure: a refused file ends `rejected` with the
    /// hub's reason; anything else puts the batch back and blocks.
    async fn presign_failed(
        &self,
        entries: &[Entry],
        error: HubError,
    ) -> Result<Option<Round>, UploadError> {
        if let HubError::Rejected { code, message, .. } = &error
            && entries.len() == 1
        {
            let reason = format!("{code}: {message}");
            self.finish(&entries[0], State::Rejected, Some(reason), false)
                .await?;
            return Ok(None);
        }

        for entry in entries {
            self.queue.requeue(entry.id)?;
        }
        Ok(Some(Round::Blocked(error)))
    }

    async fn put_all(&self, work: Vec<(Entry, PresignedUpload)>) -> Result<(), UploadError> {
        let results: Vec<Result<(), UploadError>> = futures::stream::iter(work)
            .map(|(entry, upload)| self.put_one(entry, upload))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn put_one(&self, entry: Entry, upload: PresignedUpload) -> Result<(), UploadError> {
        let path = match self.load(&entry).await? {
            Loaded::File(path) => path,
            Loaded::Gone(reason) => {
                tracing::warn!(entry = entry.id, reason, "file cannot be sent");
                return self
                    .finish(&entry, State::Failed, Some(reason.to_owned()), false)
                    .await;
            }
        };

        let body = match file_body(&path).await {
            Ok(body) => body,
            Err(_) => {
                let reason = "the file became unreadable";
                return self
                    .finish(&entry, State::Failed, Some(reason.to_owned()), false)
                    .await;
            }
        };
        match self.hub.put(&upload, body, entry.size).await {
            Ok(()) => {
                tracing::debug!(entry = entry.id, upload_id = %upload.upload_id, "file sent");
                self.queue.mark_uploaded(entry.id, now_ms() + 300)?;
                self.emit(UploadEvent::Sent {
                    id: entry.id,
                    size: entry.size,
                });
            }
            Err(error) => {
                let failure = !error.is_transient();
                let delay = backoff(entry.attempts, 1_000, 120_000);
                let at = now_ms() + delay.as_millis() as i64;
                let reason = error.to_string();
                let state =
                    self.queue
                        .retry_later(entry.id, at, &reason, failure, self.max_attempts)?;
                tracing::warn!(entry = entry.id, error = %reason, "upload failed, will retry");
                if state == State::Failed {
                    tracing::error!(entry = entry.id, "upload given up after too many failures");
                    self.emit(UploadEvent::Finished {
                        id: entry.id,
                        state,
                        reason: Some(reason),
                    });
                }
            }
        }
        Ok(())
    }

    /// The file holding an entry's bytes, checked against the SHA-256 it
    /// was queued with (a watched file may have changed since). The check
    /// streams the file; nothing is held whole in memory.
    async fn load(&self, entry: &Entry) -> Result<Loaded, UploadError> {
        let path = match entry.source {
            Source::Orthanc => self.spool.path(&entry.sha256),
            Source::Folder | Source::Push => PathBuf::from(&entry.locator),
        };

        let digest = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || file_sha256(&path))
                .await
                .expect("hashing does not panic")
        };
        match digest {
            Ok(digest) if digest == entry.sha256 => Ok(Loaded::File(path)),
            Ok(_) => Ok(Loaded::Gone("the file changed after it was queued")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Loaded::Gone(if entry.source == Source::Orthanc {
                    "the spooled copy is missing"
                } else {
                    "the file is gone"
                }))
            }
            // The spool is the agent's own: failing to read it is fatal.
            Err(source) if entry.source == Source::Orthanc => Err(SpoolError {
                step: "read",
                path,
                source,
            }
            .into()),
            Err(_) => Ok(Loaded::Gone("the file is unreadable")),
        }
    }

    /// Asks the hub for the outcome of sent uploads that are due.
    pub async fn poll_due(&self) -> Result<Round, UploadError> {
        let entries = self.queue.uploaded_due(MAX_BATCH)?;
        if entries.is_empty() {
            return Ok(Round::Idle);
        }

        let results: Vec<Result<Option<HubError>, UploadError>> = futures::stream::iter(entries)
            .map(|entry| self.poll_one(entry))
            .buffer_unordered(self.concurrency.max(4))
            .collect()
            .await;
        let mut blocked = None;
        for result in results {
            if let Some(error) = result? {
                blocked = Some(error);
            }
        }
        Ok(blocked.map(Round::Blocked).unwrap_or(Round::Worked))
    }

    async fn poll_one(&self, entry: Entry) -> Result<Option<HubError>, UploadError> {
        let Some(upload_id) = entry.upload_id.clone() else {
            self.queue.requeue(entry.id)?;
            return Ok(None);
        };
        let age = now_ms() - entry.updated_at;

        match self.hub.upload_status(&upload_id).await {
            Ok(UploadStatus::Indexed { replaced }) => {
                self.finish(&entry, State::Indexed, None, replaced).await?;
            }
            Ok(UploadStatus::Rejected { reason }) => {
                self.finish(&entry, State::Rejected, Some(reason), false)
                    .await?;
            }
            Ok(UploadStatus::Pending) if age < PENDING_LIMIT_MS => {
                tracing::debug!(entry = entry.id, "upload pending");
                let wait = (age / 2).clamp(300, 30_000);
                self.queue.poll_later(entry.id, now_ms() + wait)?;
            }
            Ok(UploadStatus::Pending) | Ok(UploadStatus::Unknown) => {
                let reason = "the hub did not index the upload; sending again";
                tracing::warn!(entry = entry.id, upload_id = %upload_id, "{reason}");
                self.queue
                    .retry_later(entry.id, now_ms(), reason, true, self.max_attempts)?;
            }
            Err(error) => {
                self.queue.poll_later(entry.id, now_ms() + 2_000)?;
                return Ok(Some(error));
            }
        }
        Ok(None)
    }

    async fn finish(
        &self,
        entry: &Entry,
        state: State,
        reason: Option<String>,
        replaced: bool,
    ) -> Result<(), UploadError> {
        self.queue
            .finish(entry.id, state, reason.as_deref(), replaced)?;
        match state {
            State::Indexed => {
                tracing::info!(entry = entry.id, replaced, "instance indexed");
                self.queue.set_meta("last_upload", &now_ms().to_string())?;
            }
            _ => {
                let reason = reason.as_deref().unwrap_or("");
                tracing::warn!(
                    entry = entry.id,
                    state = state.as_str(),
                    reason,
                    "instance not indexed"
                );
                self.queue.record_error(&format!(
                    "entry {} {}: {reason}",
                    entry.id,
                    state.as_str()
                ))?;
            }
        }
        if entry.source == Source::Orthanc {
            self.spool.remove(&entry.sha256).await;
        }
        self.emit(UploadEvent::Finished {
            id: entry.id,
            state,
            reason,
        });
        Ok(())
    }
}
