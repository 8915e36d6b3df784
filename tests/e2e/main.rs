//! End-to-end tests of pacs-hub on the local stack: real servers, real SDK
//! clients over HTTP, and the real function binaries.

mod cli;
mod gateway;
mod hostile;
mod ingest;
mod logs;
mod readpath;
mod runtime;
mod stack;
mod tenancy;

use std::time::Duration;

use pacs_local::S3Delivery;
use tokio::sync::broadcast;

/// A guard against a hung test, not a speed check.
const GUARD: Duration = Duration::from_secs(60);

/// The next delivery of an S3 event (any attempt).
async fn next_delivery(rx: &mut broadcast::Receiver<S3Delivery>) -> S3Delivery {
    tokio::time::timeout(GUARD, rx.recv())
        .await
        .expect("an S3 event is delivered")
        .expect("delivery channel open")
}
