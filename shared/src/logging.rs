//! Structured logging for CloudWatch.
//!
//! JSON lines, one per event, without ANSI colours; the level comes from
//! `RUST_LOG` (default `info`). Handlers log identifiers and counts only:
//! never patient tags, request bodies, presigned URLs, keys or secrets.

use tracing_subscriber::EnvFilter;

const CAPPED: [&str; 8] = [
    "s3s=info",
    "s3s_fs=info",
    "aws_smithy_runtime=info",
    "aws_smithy_runtime_api=info",
    "aws_sigv4=info",
    "aws_config=info",
    "hyper=info",
    "hyper_util=info",
];

/// Installs the JSON subscriber. Safe to call more than once: later calls
/// keep the first subscriber.
pub fn init() {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // These crates write whole requests (presigned query strings, signing
    // headers) at debug and trace level; they stay at info whatever
    // RUST_LOG asks for.
    for quiet in CAPPED {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .with_ansi(false)
        .without_time()
        .try_init();
}
