//! End-to-end tests of pacs-hub on the local stack.

mod hostile;
mod ingest;
