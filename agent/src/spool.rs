//! Copies of Orthanc instances kept in the state dir between the moment
//! they are queued and the moment the hub has indexed them, so that an
//! instance Orthanc deletes or recycles meanwhile is still sent.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// A failure to keep a copy; the agent stops on it (disk full, read-only).
#[derive(Debug, thiserror::Error)]
#[error("cannot {step} the spool file {path} (disk full or read-only?): {source}")]
pub struct SpoolError {
    pub step: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// The spool folder, one file per SHA-256.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn open(state_dir: &Path) -> Result<Spool, SpoolError> {
        let dir = state_dir.join("spool");
        std::fs::create_dir_all(&dir).map_err(|source| SpoolError {
            step: "create",
            path: dir.clone(),
            source,
        })?;
        Ok(Spool { dir })
    }

    /// Where the copy of this content lives.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// A new file for a download in progress; see [`Incoming`].
    pub async fn incoming(&self) -> Result<Incoming, SpoolError> {
        let name = format!("incoming-{:016x}.tmp", rand::random::<u64>());
        let path = self.dir.join(name);
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|source| SpoolError {
                step: "create",
                path: path.clone(),
                source,
            })?;
        Ok(Incoming {
            path,
            file,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Drops the copy once the hub has had its final word.
    pub async fn remove(&self, sha256: &str) {
        let _ = tokio::fs::remove_file(self.path(sha256)).await;
    }
}

/// A download being written to the spool, hashed as it goes. Kept under a
/// temporary name until [`Incoming::keep`] names it by its SHA-256.
pub struct Incoming {
    path: PathBuf,
    file: tokio::fs::File,
    hasher: Sha256,
    size: u64,
}

impl Incoming {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), SpoolError> {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file
            .write_all(chunk)
            .await
            .map_err(|source| SpoolError {
                step: "write",
                path: self.path.clone(),
                source,
            })
    }

    /// The content's SHA-256 (lowercase hex) and size so far.
    pub fn digest(&self) -> (String, u64) {
        (hex::encode(self.hasher.clone().finalize()), self.size)
    }

    /// Makes the copy durable under its content's name.
    pub async fn keep(mut self, spool: &Spool) -> Result<(), SpoolError> {
        let (sha256, _) = self.digest();
        let target = spool.path(&sha256);
        let result = async {
            self.file.flush().await?;
            self.file.sync_all().await?;
            tokio::fs::rename(&self.path, &target).await
        }
        .await;
        result.map_err(|source| {
            let _ = std::fs::remove_file(&self.path);
            SpoolError {
                step: "write",
                path: target,
                source,
            }
        })
    }

    /// Drops a download that is not needed (content already known) or
    /// failed half-way.
    pub async fn discard(self) {
        let _ = tokio::fs::remove_file(&self.path).await;
    }
}
