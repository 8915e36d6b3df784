//! The watched folder: scanned at start and then every few seconds; a file
//! is taken once its size and modification time are the same in two
//! scans in a row (so a file still being written is left alone), and
//! recognized as DICOM by its content, whatever its name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::dicom::{Kind, classify};
use crate::queue::{Enqueued, Queue, QueueError, Source};

/// A file seen in a scan: its path and fingerprint (size and mtime).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub size: u64,
    pub fingerprint: String,
}

/// Lists regular files under `root`, recursively. Hidden files (a leading
/// dot, as copy tools use for partial files) are left out.
pub fn scan(root: &Path) -> Vec<Found> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                dirs.push(path);
            } else if meta.is_file() {
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                let fingerprint = format!("{}:{mtime}", meta.len());
                found.push(Found {
                    path,
                    size: meta.len(),
                    fingerprint,
                });
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// What taking a file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    Queued(Enqueued),
    NotDicom,
    /// It changed while being read; the next scans will see it again.
    Changing,
}

/// Reads a stable file, and queues it or records why not.
pub async fn take_file(queue: &Queue, source: Source, found: &Found) -> Result<Taken, QueueError> {
    let locator = found.path.to_string_lossy().into_owned();
    let Ok(bytes) = tokio::fs::read(&found.path).await else {
        return Ok(Taken::Changing);
    };
    if bytes.len() as u64 != found.size {
        return Ok(Taken::Changing);
    }

    if classify(&bytes[..bytes.len().min(256)]) == Kind::NotDicom {
        // Reported once: the fingerprint marks it seen until it changes.
        tracing::warn!(file = %locator, "file is not DICOM, skipped");
        queue.record_skipped(source, &locator, &found.fingerprint, "not DICOM")?;
        return Ok(Taken::NotDicom);
    }

    let sha256 = hex::encode(Sha256::digest(&bytes));
    let outcome = queue.enqueue(source, &locator, &found.fingerprint, &sha256, found.size)?;
    Ok(Taken::Queued(outcome))
}

/// Watches `root` until the queue fails.
pub async fn watch_folder(
    queue: Arc<Queue>,
    root: PathBuf,
    interval: Duration,
    wake: Arc<Notify>,
) -> Result<(), QueueError> {
    if !root.is_dir() {
        tracing::error!(folder = %root.display(), "watch folder does not exist, waiting for it");
    }
    let mut previous: HashMap<PathBuf, String> = HashMap::new();
    loop {
        let listing = {
            let root = root.clone();
            tokio::task::spawn_blocking(move || scan(&root))
                .await
                .unwrap_or_default()
        };

        let mut current = HashMap::with_capacity(listing.len());
        for found in listing {
            let locator = found.path.to_string_lossy().into_owned();
            if queue.seen(Source::Folder, &locator)?.as_deref() == Some(&found.fingerprint) {
                continue;
            }
            if previous.get(&found.path) == Some(&found.fingerprint) {
                if let Taken::Queued(Enqueued::New(_)) =
                    take_file(&queue, Source::Folder, &found).await?
                {
                    tracing::info!(file = %locator, "file queued");
                    wake.notify_one();
                }
                continue;
            }
            current.insert(found.path, found.fingerprint);
        }
        previous = current;
        tokio::time::sleep(interval).await;
    }
}
