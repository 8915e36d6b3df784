//! `pacs-agent push PATH...`: sends files and folders once, through the
//! same queue as the daemon (so content already sent is not sent again),
//! with a progress bar on a terminal and a summary at the end.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::folder::{Found, Taken, scan, take_file};
use crate::hub::Hub;
use crate::queue::{Enqueued, Queue, Source, State};
use crate::run::RunError;
use crate::spool::Spool;
use crate::uploader::{Round, UploadEvent, Uploader, backoff};

/// Rounds in a row the hub may be unreachable before a push gives up
/// (a few minutes with the backoff).
const PATIENCE: u32 = 12;

/// What a push did, file by file.
#[derive(Debug, Default)]
pub struct PushSummary {
    pub indexed: usize,
    pub replaced: usize,
    /// Content the queue already held as indexed: not sent again.
    pub already_sent: usize,
    pub rejected: Vec<(String, String)>,
    pub failed: Vec<(String, String)>,
    pub not_dicom: Vec<String>,
    /// The hub refused the agent itself (key, plan) or stayed unreachable,
    /// with its message.
    pub refused: Option<String>,
}

impl PushSummary {
    /// Whether the exit status should say something went wrong.
    pub fn is_failure(&self) -> bool {
        !self.rejected.is_empty() || !self.failed.is_empty() || self.refused.is_some()
    }
}

fn expand(paths: &[PathBuf]) -> Vec<Found> {
    let mut files = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => files.extend(scan(path)),
            Ok(meta) => {
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                files.push(Found {
                    path: path.clone(),
                    size: meta.len(),
                    fingerprint: format!("{}:{mtime}", meta.len()),
                });
            }
            Err(error) => eprintln!("cannot read {}: {error}", path.display()),
        }
    }
    files
}

/// Sends `paths` and waits for the hub's word on each file.
pub async fn push(config: &Config, paths: &[PathBuf]) -> Result<PushSummary, RunError> {
    let queue = Arc::new(Queue::open(&config.state_dir)?);
    let spool = Spool::open(&config.state_dir)?;
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let uploader = Uploader {
        queue: queue.clone(),
        hub: Hub::new(&config.aws_api_url, &config.api_key),
        spool,
        concurrency: config.concurrency,
        max_attempts: config.max_attempts,
        events: Some(events),
    };
    // Uploads a stopped run or push left half-done are settled first, or
    // this push would wait for them forever.
    uploader.settle_interrupted().await?;
    let tty = std::io::stderr().is_terminal();
    let mut summary = PushSummary::default();

    // Record every file first, so that an interrupted push resumes.
    let files = expand(paths);
    let mut waiting: HashMap<i64, (String, u64)> = HashMap::new();
    for found in &files {
        let name = found.path.display().to_string();
        match take_file(&queue, Source::Push, found).await? {
            Taken::NotDicom => summary.not_dicom.push(name),
            Taken::Changing => summary
                .failed
                .push((name, "file changed while read".into())),
            Taken::Queued(Enqueued::New(id)) => {
                waiting.insert(id, (name, found.size));
            }
            Taken::Queued(Enqueued::Known(id, state)) => match state {
                State::Indexed => summary.already_sent += 1,
                State::Rejected | State::Failed => {
                    // Asked again: try once more.
                    queue.requeue(id)?;
                    waiting.insert(id, (name, found.size));
                }
                _ => {
                    waiting.insert(id, (name, found.size));
                }
            },
        }
    }

    let total_bytes: u64 = waiting.values().map(|(_, size)| size).sum();
    let total_files = waiting.len();
    let bar = if tty {
        let bar = ProgressBar::new(total_bytes);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
            )
            .expect("the progress template is valid"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let say = |line: String| {
        if tty {
            bar.println(line);
        } else {
            eprintln!("{line}");
        }
    };
    say(format!(
        "{total_files} files to send ({total_bytes} bytes), {} already sent, {} not DICOM",
        summary.already_sent,
        summary.not_dicom.len()
    ));

    let mut open: HashSet<i64> = waiting.keys().copied().collect();
    let mut sent_files = 0usize;
    let mut blocked = 0u32;
    while !open.is_empty() {
        let sent = uploader.send_due().await?;
        let polled = uploader.poll_due().await?;

        while let Ok(event) = received.try_recv() {
            match event {
                UploadEvent::Sent { id, size } if waiting.contains_key(&id) => {
                    sent_files += 1;
                    bar.inc(size);
                    bar.set_message(format!("{sent_files}/{total_files} files"));
                    if !tty {
                        eprintln!("sent {sent_files}/{total_files} files");
                    }
                }
                UploadEvent::Finished { id, .. } => {
                    open.remove(&id);
                }
                _ => {}
            }
        }

        match (sent, polled) {
            (Round::Blocked(error), _) | (_, Round::Blocked(error)) => {
                blocked += 1;
                // The queue keeps the files for a later push or `run`.
                if !error.is_transient() || blocked > PATIENCE {
                    summary.refused = Some(error.to_string());
                    break;
                }
                say(format!("{error}; retrying"));
                tokio::time::sleep(backoff(blocked, 500, 30_000)).await;
            }
            _ => {
                blocked = 0;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    bar.finish_and_clear();

    for (id, (name, _)) in &waiting {
        let Some(entry) = queue.get(*id)? else {
            continue;
        };
        let reason = entry.reason.clone().unwrap_or_default();
        match entry.state {
            State::Indexed => summary.indexed += 1,
            State::Rejected => summary.rejected.push((name.clone(), reason)),
            State::Failed => summary.failed.push((name.clone(), reason)),
            _ => summary.failed.push((name.clone(), "not finished".into())),
        }
    }
    summary.rejected.sort();
    summary.failed.sort();
    Ok(summary)
}

/// Prints the summary to standard output.
pub fn print_summary(summary: &PushSummary) {
    println!(
        "indexed {}, already sent {}, rejected {}, failed {}, not DICOM {}",
        summary.indexed,
        summary.already_sent,
        summary.rejected.len(),
        summary.failed.len(),
        summary.not_dicom.len()
    );
    for (name, reason) in &summary.rejected {
        println!("rejected: {name}: {reason}");
    }
    for (name, reason) in &summary.failed {
        println!("failed: {name}: {reason}");
    }
    for name in &summary.not_dicom {
        println!("not DICOM, skipped: {name}");
    }
    if let Some(refused) = &summary.refused {
        println!("stopped: {refused}");
    }
}
