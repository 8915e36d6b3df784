//! `pacs-agent status`: what the queue holds, when the agent last synced,
//! the last problem it met, and whether the hub answers.

use std::fmt::Write;

use crate::config::Config;
use crate::hub::Hub;
use crate::queue::{Queue, QueueError};

fn when(ms: Option<String>) -> String {
    let Some(ms) = ms.and_then(|v| v.parse::<i64>().ok()) else {
        return "never".to_owned();
    };
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The report, as printed.
pub async fn status_report(config: &Config) -> Result<String, QueueError> {
    let queue = Queue::open(&config.state_dir)?;
    let counts = queue.counts()?;
    let mut out = String::new();

    let _ = writeln!(
        out,
        "hospital: {} ({})",
        config.hospital_name, config.hospital_id
    );
    let _ = writeln!(out, "state dir: {}", config.state_dir.display());
    let states: Vec<String> = counts
        .by_state
        .iter()
        .map(|(s, n)| format!("{} {n}", s.as_str()))
        .collect();
    let _ = writeln!(out, "queue: {}", states.join(", "));
    let _ = writeln!(out, "skipped (not DICOM): {}", counts.skipped);
    let _ = writeln!(out, "last orthanc sync: {}", when(queue.meta("last_sync")?));
    let _ = writeln!(
        out,
        "last indexed upload: {}",
        when(queue.meta("last_upload")?)
    );
    match queue.meta("last_error")? {
        Some(error) => {
            let at = when(queue.meta("last_error_at")?);
            let _ = writeln!(out, "last error: {at}: {error}");
        }
        None => {
            let _ = writeln!(out, "last error: none");
        }
    }

    let hub = Hub::new(&config.aws_api_url, &config.api_key);
    match hub.probe().await {
        Ok(()) => {
            let _ = writeln!(
                out,
                "hub: reachable at {}, key accepted",
                config.aws_api_url
            );
        }
        Err(error) => {
            let _ = writeln!(out, "hub: {error}");
        }
    }
    Ok(out)
}
