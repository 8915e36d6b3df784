//! Copies of Orthanc instances kept in the state dir between the moment
//! they are queued and the moment the hub has indexed them, so that an
//! instance Orthanc deletes or recycles meanwhile is still sent.

use std::io::Write;
use std::path::{Path, PathBuf};

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

    /// Writes the copy durably (temporary file, fsync, rename) before the
    /// queue records the instance.
    pub async fn write(&self, sha256: &str, bytes: Vec<u8>) -> Result<(), SpoolError> {
        let path = self.path(sha256);
        let tmp = self.dir.join(format!("{sha256}.tmp"));
        tokio::task::spawn_blocking(move || {
            let write = || -> std::io::Result<()> {
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                std::fs::rename(&tmp, &path)
            };
            write().map_err(|source| {
                let _ = std::fs::remove_file(&tmp);
                SpoolError {
                    step: "write",
                    path,
                    source,
                }
            })
        })
        .await
        .expect("spool write does not panic")
    }

    /// Drops the copy once the hub has had its final word.
    pub async fn remove(&self, sha256: &str) {
        let _ = tokio::fs::remove_file(self.path(sha256)).await;
    }
}
