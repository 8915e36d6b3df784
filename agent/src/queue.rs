//! The durable upload queue: an SQLite database in the state dir that
//! records every instance before it is sent, so that nothing found is lost
//! and no content (by SHA-256) is sent twice, across restarts and crashes.
//!
//! States: `queued` (waiting to be sent) → `sending` (claimed, maybe with a
//! presigned upload) → `uploaded` (PUT done, waiting for the hub to index)
//! → `indexed` or `rejected` (final, as the hub reports), or `failed`
//! (given up after too many per-file errors).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// A failure of the queue database. The agent stops on any of these: the
/// queue is only ever changed in transactions, so stopping loses nothing.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot create the state dir {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the queue database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the queue database in {dir} cannot be written (disk full or read-only?): {source}")]
    Write {
        dir: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot read the queue database in {dir}: {source}")]
    Read {
        dir: PathBuf,
        source: rusqlite::Error,
    },
}

/// Where an instance was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An instance in Orthanc; the bytes are kept in the spool.
    Orthanc,
    /// A file in the watched folder, read again when sent.
    Folder,
    /// A file given to `pacs-agent push`.
    Push,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Orthanc => "orthanc",
            Source::Folder => "folder",
            Source::Push => "push",
        }
    }

    fn parse(text: &str) -> Source {
        match text {
            "orthanc" => Source::Orthanc,
            "folder" => Source::Folder,
            _ => Source::Push,
        }
    }
}

/// The state of one queued instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Queued,
    Sending,
    Uploaded,
    Indexed,
    Rejected,
    Failed,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Queued,
        State::Sending,
        State::Uploaded,
        State::Indexed,
        State::Rejected,
        State::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Sending => "sending",
            State::Uploaded => "uploaded",
            State::Indexed => "indexed",
            State::Rejected => "rejected",
            State::Failed => "failed",
        }
    }

    fn parse(text: &str) -> State {
        match text {
            "queued" => State::Queued,
            "sending" => State::Sending,
            "uploaded" => State::Uploaded,
            "indexed" => State::Indexed,
            "rejected" => State::Rejected,
            _ => State::Failed,
        }
    }

    /// Whether the hub has had its final word (or the agent gave up).
    pub fn is_final(self) -> bool {
        matches!(self, State::Indexed | State::Rejected | State::Failed)
    }
}

/// One instance in the queue.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: i64,
    pub sha256: String,
    pub size: u64,
    pub source: Source,
    /// Orthanc instance id, or the file path.
    pub locator: String,
    pub state: State,
    pub attempts: u32,
    pub failures: u32,
    pub upload_id: Option<String>,
    pub reason: Option<String>,
    pub updated_at: i64,
}

/// What `enqueue` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// New content, now queued under this id.
    New(i64),
    /// This content was already known, in this state; nothing is sent.
    Known(i64, State),
}

/// Counts of the queue by state, for `status`.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub by_state: Vec<(State, u64)>,
    pub skipped: u64,
}

/// The queue; cheap to share behind an `Arc`. Several processes may open
/// it at once (`run`, `status`, `push`): every transaction that writes
/// takes the write lock at its start, so that it waits for the others
/// instead of failing half-way.
pub struct Queue {
    dir: PathBuf,
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS instances (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    source TEXT NOT NULL,
    locator TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    upload_id TEXT,
    reason TEXT,
    replaced INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_due ON instances (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS seen (
    source TEXT NOT NULL,
    locator TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (source, locator)
);
CREATE TABLE IF NOT EXISTS skipped (
    source TEXT NOT NULL,
    locator TEXT NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (source, locator)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

const COLUMNS: &str = "id, sha256, size, source, locator, state, attempts, failures, \
                       upload_id, reason, updated_at";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn entry_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: row.get(0)?,
        sha256: row.get(1)?,
        size: row.get::<_, i64>(2)? as u64,
        source: Source::parse(&row.get::<_, String>(3)?),
        locator: row.get(4)?,
        state: State::parse(&row.get::<_, String>(5)?),
        attempts: row.get(6)?,
        failures: row.get(7)?,
        upload_id: row.get(8)?,
        reason: row.get(9)?,
        updated_at: row.get(10)?,
    })
}

impl Queue {
    /// Opens (creating when needed) the queue in `dir` and proves it can
    /// be written, so an unwritable state dir stops the agent at start.
    pub fn open(dir: &Path) -> Result<Queue, QueueError> {
        std::fs::create_dir_all(dir).map_err(|source| QueueError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;

        let path = dir.join("queue.sqlite3");
        let conn = Connection::open(&path).map_err(|source| QueueError::Open {
            path: path.clone(),
            source,
        })?;
        let queue = Queue {
            dir: dir.to_owned(),
            conn: Mutex::new(conn),
        };

        {
            let conn = queue.conn.lock().unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .map_err(|source| queue.write_error(source))?;

            // WAL lets `status` read while `run` writes; FULL sync makes each
            // committed step survive a power cut, not only a crash.
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(|source| queue.write_error(source))?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(|source| queue.write_error(source))?;
            conn.execute_batch(SCHEMA)
                .map_err(|source| queue.write_error(source))?;
        }
        queue.set_meta("opened_at", &now_ms().to_string())?;
        Ok(queue)
    }

    /// The state dir this queue lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write_error(&self, source: rusqlite::Error) -> QueueError {
        QueueError::Write {
            dir: self.dir.clone(),
            source,
        }
    }

    fn read_error(&self, source: rusqlite::Error) -> QueueError {
        QueueError::Read {
            dir: self.dir.clone(),
            source,
        }
    }

    /// The fingerprint last recorded for a source location, if any.
    pub fn seen(&self, source: Source, locator: &str) -> Result<Option<String>, QueueError> {
        let conn = self.conn.lock().unwrap();
        conn.query_row(
            "SELECT fingerprint FROM seen WHERE source = ?1 AND locator = ?2",
            params![source.as_str(), locator],
            |row| row.get(0),
        )
        .optional()
        .map_err(|e| self.read_error(e))
    }

    /// Whether this content is already in the queue, in any state.
    pub fn knows(&self, sha256: &str) -> Result<bool, QueueError> {
        let conn = self.conn.lock().unwrap();
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM instances WHERE sha256 = ?1)",
            params![sha256],
            |row| row.get(0),
        )
        .map_err(|e| self.read_error(e))
    }

    /// Records a new instance (or finds its content already known) and
    /// marks the location seen with `fingerprint`, in one transaction.
    pub fn enqueue(
        &self,
        source: Source,
        locator: &str,
        fingerprint: &str,
        sha256: &str,
        size: u64,
    ) -> Result<Enqueued, QueueError> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.write_error(e))?;

        let known: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, state FROM instances WHERE sha256 = ?1",
                params![sha256],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|e| self.read_error(e))?;
        let outcome = match known {
            Some((id, state)) => Enqueued::Known(id, State::parse(&state)),
            None => {
                let now = now_ms();
                tx.execute(
                    "INSERT INTO instances (sha256, size, source, locator, state, \
                     created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5)",
                    params![sha256, size as i64, source.as_str(), locator, now],
                )
                .map_err(|e| self.write_error(e))?;
                Enqueued::New(tx.last_insert_rowid())
            }
        };
        tx.execute(
            "INSERT INTO seen (source, locator, fingerprint) VALUES (?1, ?2, ?3) \
             ON CONFLICT (source, locator) DO UPDATE SET fingerprint = excluded.fingerprint",
            params![source.as_str(), locator, fingerprint],
        )
        .map_err(|e| self.write_error(e))?;
        tx.commit().map_err(|e| self.write_error(e))?;
        Ok(outcome)
    }

    /// Records a file that is not sent (not DICOM, unreadable) with the
    /// reason, and marks it seen so it is reported once, not every scan.
    pub fn record_skipped(
        &self,
        source: Source,
        locator: &str,
        fingerprint: &str,
        reason: &str,
    ) -> Result<(), QueueError> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.write_error(e))?;
        tx.execute(
            "INSERT INTO skipped (source, locator, reason, at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (source, locator) DO UPDATE SET reason = excluded.reason, at = excluded.at",
            params![source.as_str(), locator, reason, now_ms()],
        )
        .map_err(|e| self.write_error(e))?;
        tx.execute(
            "INSERT INTO seen (source, locator, fingerprint) VALUES (?1, ?2, ?3) \
             ON CONFLICT (source, locator) DO UPDATE SET fingerprint = excluded.fingerprint",
            params![source.as_str(), locator, fingerprint],
        )
        .map_err(|e| self.write_error(e))?;
        tx.commit().map_err(|e| self.write_error(e))
    }

    /// Skipped files with their reasons.
    pub fn skipped(&self) -> Result<Vec<(String, String)>, QueueError> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn
            .prepare("SELECT locator, reason FROM skipped ORDER BY at")
            .map_err(|e| self.read_error(e))?;
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.read_error(e))
    }

    /// Claims up to `limit` queued entries that are due, marking them
    /// `sending` so no other worker takes them.
    pub fn claim_due(&self, limit: usize) -> Result<Vec<Entry>, QueueError> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.write_error(e))?;
        let entries: Vec<Entry> = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM instances WHERE state = 'queued' \
                     AND next_attempt_at <= ?1 ORDER BY id LIMIT ?2"
                ))
                .map_err(|e| self.read_error(e))?;
            stmt.query_map(params![now_ms(), limit as i64], entry_from_row)
                .and_then(|rows| rows.collect())
                .map_err(|e| self.read_error(e))?
        };
        for entry in &entries {
            tx.execute(
                "UPDATE instances SET state = 'sending', upload_id = NULL, updated_at = ?2 \
                 WHERE id = ?1",
                params![entry.id, now_ms()],
            )
            .map_err(|e| self.write_error(e))?;
        }
        tx.commit().map_err(|e| self.write_error(e))?;
        Ok(entries
            .into_iter()
            .map(|e| Entry {
                state: State::Sending,
                ..e
            })
            .collect())
    }

    /// Remembers the hub's upload id before the PUT, so that after a crash
    /// the agent can ask the hub whether the PUT had landed.
    pub fn set_upload_id(&self, id: i64, upload_id: &str) -> Result<(), QueueError> {
        self.update(
            "UPDATE instances SET upload_id = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, upload_id, now_ms()],
        )
    }

    /// The PUT succeeded; the hub is to be asked for the outcome from
    /// `next_poll_at` on.
    pub fn mark_uploaded(&self, id: i64, next_poll_at: i64) -> Result<(), QueueError> {
        self.update(
            "UPDATE instances SET state = 'uploaded', next_attempt_at = ?2, updated_at = ?3 \
             WHERE id = ?1",
            params![id, next_poll_at, now_ms()],
        )
    }

    /// Puts an entry back to `queued` until `at`. A per-file error
    /// (`failure`) counts towards `max_attempts`; past it the entry is
    /// `failed` with `reason`.
    pub fn retry_later(
        &self,
        id: i64,
        at: i64,
        reason: &str,
        failure: bool,
        max_attempts: u32,
    ) -> Result<State, QueueError> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.write_error(e))?;
        let failures: u32 = tx
            .query_row(
                "SELECT failures FROM instances WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .map_err(|e| self.read_error(e))?;
        let failures = failures + u32::from(failure);
        let state = if failures >= max_attempts {
            State::Failed
        } else {
            State::Queued
        };
        tx.execute(
            "UPDATE instances SET state = ?2, attempts = attempts + 1, failures = ?3, \
             next_attempt_at = ?4, reason = ?5, upload_id = NULL, updated_at = ?6 WHERE id = ?1",
            params![id, state.as_str(), failures, at, reason, now_ms()],
        )
        .map_err(|e| self.write_error(e))?;
        tx.commit().map_err(|e| self.write_error(e))?;
        Ok(state)
    }

    /// Asks for the hub's outcome again at `at`.
    pub fn poll_later(&self, id: i64, at: i64) -> Result<(), QueueError> {
        self.update(
            "UPDATE instances SET next_attempt_at = ?2 WHERE id = ?1",
            params![id, at],
        )
    }

    /// Records the final outcome.
    pub fn finish(
        &self,
        id: i64,
        state: State,
        reason: Option<&str>,
        replaced: bool,
    ) -> Result<(), QueueError> {
        self.update(
            "UPDATE instances SET state = ?2, reason = ?3, replaced = ?4, updated_at = ?5 \
             WHERE id = ?1",
            params![id, state.as_str(), reason, replaced, now_ms()],
        )
    }

    /// Uploaded entries whose outcome is due to be asked for.
    pub fn uploaded_due(&self, limit: usize) -> Result<Vec<Entry>, QueueError> {
        self.select(
            &format!(
                "SELECT {COLUMNS} FROM instances WHERE state = 'uploaded' \
                 AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2"
            ),
            params![now_ms(), limit as i64],
        )
    }

    /// Entries left `sending` by a process that stopped; `run` settles
    /// them at start.
    pub fn interrupted(&self) -> Result<Vec<Entry>, QueueError> {
        self.select(
            &format!("SELECT {COLUMNS} FROM instances WHERE state = 'sending' ORDER BY id"),
            params![],
        )
    }

    /// Puts an interrupted entry back to `queued`, as if never claimed.
    pub fn requeue(&self, id: i64) -> Result<(), QueueError> {
        self.update(
            "UPDATE instances SET state = 'queued', upload_id = NULL, next_attempt_at = 0, \
             updated_at = ?2 WHERE id = ?1",
            params![id, now_ms()],
        )
    }

    /// One entry by id.
    pub fn get(&self, id: i64) -> Result<Option<Entry>, QueueError> {
        let mut rows = self.select(
            &format!("SELECT {COLUMNS} FROM instances WHERE id = ?1"),
            params![id],
        )?;
        Ok(rows.pop())
    }

    /// Every entry, oldest first (for reports and tests).
    pub fn all(&self) -> Result<Vec<Entry>, QueueError> {
        self.select(
            &format!("SELECT {COLUMNS} FROM instances ORDER BY id"),
            params![],
        )
    }

    /// Whether anything is still to be sent or confirmed.
    pub fn has_open_work(&self) -> Result<bool, QueueError> {
        let conn = self.conn.lock().unwrap();
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM instances WHERE state IN ('queued','sending','uploaded'))",
            [],
            |row| row.get(0),
        )
        .map_err(|e| self.read_error(e))
    }

    /// The earliest time anything queued or uploaded is due, if any.
    pub fn next_due_at(&self) -> Result<Option<i64>, QueueError> {
        let conn = self.conn.lock().unwrap();
        conn.query_row(
            "SELECT MIN(next_attempt_at) FROM instances WHERE state IN ('queued','uploaded')",
            [],
            |row| row.get(0),
        )
        .map_err(|e| self.read_error(e))
    }

    /// Counts by state, for `status`.
    pub fn counts(&self) -> Result<Counts, QueueError> {
        let conn = self.conn.lock().unwrap();
        let mut by_state = Vec::new();
        for state in State::ALL {
            let n: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM instances WHERE state = ?1",
                    params![state.as_str()],
                    |row| row.get(0),
                )
                .map_err(|e| self.read_error(e))?;
            by_state.push((state, n as u64));
        }
        let skipped: i64 = conn
            .query_row("SELECT COUNT(*) FROM skipped", [], |row| row.get(0))
            .map_err(|e| self.read_error(e))?;
        Ok(Counts {
            by_state,
            skipped: skipped as u64,
        })
    }

    /// A small named value: the Orthanc cursor, last sync, last error.
    pub fn meta(&self, key: &str) -> Result<Option<String>, QueueError> {
        let conn = self.conn.lock().unwrap();
        conn.query_row(
            "SELECT value FROM meta WHERE key = ?1",
            params![key],
            |row| row.get(0),
        )
        .optional()
        .map_err(|e| self.read_error(e))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), QueueError> {
        self.update(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )
    }

    /// Remembers the latest problem for `status`.
    pub fn record_error(&self, message: &str) -> Result<(), QueueError> {
        self.set_meta("last_error", message)?;
        self.set_meta("last_error_at", &now_ms().to_string())
    }

    fn update(&self, sql: &str, params: impl rusqlite::Params) -> Result<(), QueueError> {
        let conn = self.conn.lock().unwrap();
        conn.execute(sql, params)
            .map(|_| ())
            .map_err(|e| self.write_error(e))
    }

    fn select(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Entry>, QueueError> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn.prepare(sql).map_err(|e| self.read_error(e))?;
        stmt.query_map(params, entry_from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.read_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn same_content_is_queued_once() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(dir.path()).unwrap();

        let first = queue
            .enqueue(Source::Orthanc, "i1", "1", SHA_A, 10)
            .unwrap();
        let again = queue
            .enqueue(Source::Folder, "/x/a", "10:1", SHA_A, 10)
            .unwrap();

        let Enqueued::New(id) = first else {
            panic!("{first:?}")
        };
        assert_eq!(again, Enqueued::Known(id, State::Queued));
        assert_eq!(queue.all().unwrap().len(), 1);
        assert_eq!(
            queue.seen(Source::Folder, "/x/a").unwrap().as_deref(),
            Some("10:1")
        );
    }

    #[test]
    fn queue_survives_reopen_and_claims_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let queue = Queue::open(dir.path()).unwrap();
            queue.enqueue(Source::Push, "/a", "1", SHA_A, 10).unwrap();
            queue.set_meta("cursor", "42").unwrap();
        }

        let queue = Queue::open(dir.path()).unwrap();
        assert_eq!(queue.meta("cursor").unwrap().as_deref(), Some("42"));
        let claimed = queue.claim_due(10).unwrap();
        assert_eq!(claimed.len(), 1);
        assert!(queue.claim_due(10).unwrap().is_empty());
        assert_eq!(queue.interrupted().unwrap().len(), 1);
    }

    #[test]
    fn per_file_failures_end_in_failed() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(dir.path()).unwrap();
        let Enqueued::New(id) = queue.enqueue(Source::Push, "/a", "1", SHA_A, 10).unwrap() else {
            panic!()
        };

        // Transient errors never give up; per-file ones do.
        for _ in 0..5 {
            assert_eq!(
                queue.retry_later(id, 0, "hub down", false, 2).unwrap(),
                State::Queued
            );
        }
        assert_eq!(
            queue.retry_later(id, 0, "refused", true, 2).unwrap(),
            State::Queued
        );
        assert_eq!(
            queue.retry_later(id, 0, "refused", true, 2).unwrap(),
            State::Failed
        );
    }

    #[test]
    fn two_processes_share_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let queue = Queue::open(&path).unwrap();
                    for i in 0..50 {
                        let sha = format!("{w}{i:063}");
                        queue.enqueue(Source::Push, &sha, "1", &sha, 1).unwrap();
                        queue.claim_due(5).unwrap();
                        Queue::open(&path).unwrap().counts().unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        assert_eq!(Queue::open(&path).unwrap().all().unwrap().len(), 100);
    }

    #[test]
    fn unwritable_state_dir_is_reported() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = Queue::open(&file.path().join("state")).err().unwrap();
        assert!(err.to_string().contains("state dir"), "{err}");
    }
}
