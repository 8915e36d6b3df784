//! Indexes each DICOM object that lands under `dicom/`.

use aws_lambda_events::s3::S3Event;
use pacs_shared::Context;

/// A failure that must fail the invocation, so that S3's asynchronous
/// delivery retries it and then sends it to the dead-letter queue.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("not built yet")]
    NotBuilt,
}

/// Handles one S3 event (one or more records).
pub async fn handle(_ctx: &Context, _event: S3Event) -> Result<(), IngestError> {
    Err(IngestError::NotBuilt)
}

impl From<IngestError> for lambda_runtime::Diagnostic {
    fn from(err: IngestError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "IngestError".into(),
            error_message: err.to_string(),
        }
    }
}
