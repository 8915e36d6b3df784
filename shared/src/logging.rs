//! Structured logging for CloudWatch.
//!
//! JSON lines, one per event, without ANSI colours; the level comes from
//! `RUST_LOG` (default `info`). Handlers log identifiers and counts only:
//! never patient tags, request bodies, presigned URLs, keys or secrets.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber. Safe to call more than once: later calls
/// keep the first subscriber.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .with_ansi(false)
        .without_time()
        .try_init();
}
