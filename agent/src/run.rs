//! `pacs-agent run`: the daemon. Starts the heartbeat, the sources that
//! are switched on, and the uploader, and stops on a signal or on an error
//! that would otherwise lose data (queue or spool cannot be written).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use crate::config::{Config, dicom_date};
use crate::hub::{Hub, HubError};
use crate::orthanc::Orthanc;
use crate::queue::{Queue, QueueError};
use crate::sources::{Collector, SourceError, collect_announced, follow_orthanc, webhook_router};
use crate::spool::{Spool, SpoolError};
use crate::uploader::{Round, UploadError, Uploader, backoff};

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot listen for webhooks on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "the API key belongs to hospital {actual}, but hospitalId is {configured}; \
         fix hospitalId or apiKey"
    )]
    WrongHospital { configured: String, actual: String },
}

impl From<UploadError> for RunError {
    fn from(error: UploadError) -> RunError {
        match error {
            UploadError::Queue(e) => RunError::Queue(e),
            UploadError::Spool(e) => RunError::Spool(e),
        }
    }
}

impl From<SourceError> for RunError {
    fn from(error: SourceError) -> RunError {
        match error {
            SourceError::Queue(e) => RunError::Queue(e),
            SourceError::Spool(e) => RunError::Spool(e),
            // Orthanc failures are retried where they happen.
            SourceError::Orthanc(e) => unreachable!("orthanc error escaped its retry loop: {e}"),
        }
    }
}

/// The capabilities the heartbeat announces.
pub fn capabilities(config: &Config) -> Vec<&'static str> {
    let mut list = vec!["push"];
    if config.features.auto_sync {
        list.push("orthanc-sync");
    }
    if config.features.folder_watch {
        list.push("folder-watch");
    }
    if config.features.webhooks {
        list.push("webhooks");
    }
    list
}

/// Runs until `shutdown` completes or an error stops it.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let queue = Arc::new(Queue::open(&config.state_dir)?);
    let spool = Spool::open(&config.state_dir)?;
    let hub = Hub::new(&config.aws_api_url, &config.api_key);
    let wake = Arc::new(Notify::new());
    tracing::info!(
        hospital_id = %config.hospital_id,
        state_dir = %config.state_dir.display(),
        auto_sync = config.features.auto_sync,
        folder_watch = config.features.folder_watch,
        webhooks = config.features.webhooks,
        "agent starting"
    );

    let uploader = Arc::new(Uploader {
        queue: queue.clone(),
        hub: hub.clone(),
        spool: spool.clone(),
        concurrency: config.concurrency,
        max_attempts: config.max_attempts,
        events: None,
    });
    uploader.settle_interrupted().await?;

    let mut tasks: JoinSet<Result<(), RunError>> = JoinSet::new();
    tasks.spawn(heartbeat_loop(config.clone(), hub.clone()));
    tasks.spawn(upload_loop(uploader.clone(), wake.clone()));

    let orthanc = config.orthanc_url.as_deref().map(|url| {
        Orthanc::new(
            url,
            config.orthanc_username.as_deref(),
            config.orthanc_password.as_deref(),
        )
    });
    if let Some(orthanc) = orthanc {
        let collector = Collector {
            queue: queue.clone(),
            spool: spool.clone(),
            orthanc,
            wake: wake.clone(),
        };
        if config.features.auto_sync {
            let interval = Duration::from_millis(config.sync_interval_ms);
            let since = config.backfill_since.as_deref().map(dicom_date);
            let collector = collector.clone();
            tasks.spawn(async move { Ok(follow_orthanc(collector, interval, since).await?) });
        }
        if config.features.webhooks {
            let listener = tokio::net::TcpListener::bind(config.webhook_listen)
                .await
                .map_err(|source| RunError::Listen {
                    addr: config.webhook_listen,
                    source,
                })?;
            tracing::info!(addr = %config.webhook_listen, "webhook listener ready");
            let (sender, receiver) = mpsc::channel(10_000);
            tasks.spawn(async move {
                // Serving ends only when the listener fails.
                let _ = axum::serve(listener, webhook_router(sender)).await;
                Ok(())
            });
            tasks.spawn(async move { Ok(collect_announced(collector, receiver).await?) });
        }
    }

    if config.features.folder_watch
        && let Some(folder) = config.watch_folder.clone()
    {
        let queue = queue.clone();
        let wake = wake.clone();
        let interval = Duration::from_millis(config.folder_interval_ms);
        tasks.spawn(async move {
            Ok(crate::folder::watch_folder(queue, folder, interval, wake).await?)
        });
    }

    tokio::select! {
        () = shutdown => {
            tracing::info!("agent stopping");
            tasks.abort_all();
            Ok(())
        }
        Some(done) = tasks.join_next() => {
            tasks.abort_all();
            match done {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic.into_panic()),
            }
        }
    }
}

async fn heartbeat_loop(config: Config, hub: Hub) -> Result<(), RunError> {
    let capabilities = capabilities(&config);
    let interval = Duration::from_millis(config.heartbeat_interval_ms);
    loop {
        match hub
            .heartbeat(&config.hospital_name, &capabilities, "running")
            .await
        {
            Ok(_) => tracing::debug!("heartbeat sent"),
            Err(error) => tracing::warn!(error = %error, "heartbeat failed"),
        }
        tokio::time::sleep(interval).await;
    }
}

/// Sends and confirms uploads; waits with backoff while the hub is down
/// or refuses the agent, and otherwise sleeps until woken or due.
pub async fn upload_loop(uploader: Arc<Uploader>, wake: Arc<Notify>) -> Result<(), RunError> {
    let mut blocked = 0u32;
    loop {
        let sent = uploader.send_due().await?;
        let polled = uploader.poll_due().await?;

        let error = match (sent, polled) {
            (Round::Blocked(e), _) | (_, Round::Blocked(e)) => Some(e),
            (Round::Worked, _) | (_, Round::Worked) => {
                blocked = 0;
                continue;
            }
            _ => None,
        };

        let wait = match error {
            Some(error) => {
                blocked += 1;
                report_blocked(&uploader.queue, &error)?;
                // A refused key or plan will not fix itself quickly.
                let cap = if error.is_transient() {
                    60_000
                } else {
                    300_000
                };
                backoff(blocked, 1_000, cap)
            }
            None => {
                blocked = 0;
                let next = uploader.queue.next_due_at()?;
                let now = crate::queue::now_ms();
                let ms = next.map(|at| (at - now).clamp(50, 5_000)).unwrap_or(5_000);
                Duration::from_millis(ms as u64)
            }
        };
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

fn report_blocked(queue: &Queue, error: &HubError) -> Result<(), QueueError> {
    if error.is_transient() {
        tracing::warn!(error = %error, "hub not available, queue kept, will retry");
    } else {
        tracing::error!(error = %error, "hub refuses uploads, queue kept, will retry");
    }
    queue.record_error(&error.to_string())
}
