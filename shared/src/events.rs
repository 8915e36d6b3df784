//! Notifications on the EventBridge bus: an instance was indexed, a study
//! has been quiet long enough to count as stable.
//!
//! Delivery is at least once: a redelivered S3 event publishes its
//! `InstanceIndexed` again, so consumers deduplicate on `uploadId` (and on
//! `hospitalId` + `studyInstanceUid` + `stableAt` for `StudyStable`).
//! Details carry identifiers only, never patient data.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde::Serialize;

use crate::context::Context;

/// The `source` of every event pacs-hub publishes.
pub const SOURCE: &str = "pacs-hub.ingest";

/// An instance was written to the archive.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceIndexed {
    pub hospital_id: String,
    pub upload_id: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
}

/// No instance has arrived for a study for the configured quiet time.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StudyStable {
    pub hospital_id: String,
    pub study_instance_uid: String,
    pub number_of_series: u64,
    pub number_of_instances: u64,
    pub last_instance_at: String,
    pub stable_at: String,
}

/// A publish that failed.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("encoding {detail_type}: {source}")]
    Encode {
        detail_type: &'static str,
        source: serde_json::Error,
    },
    #[error("publishing {detail_type}: {source}")]
    Publish {
        detail_type: &'static str,
        source: aws_sdk_eventbridge::Error,
    },
    #[error("publishing {detail_type}: the bus refused it ({code})")]
    Refused {
        detail_type: &'static str,
        code: String,
    },
}

/// Publishes one event of `detail_type` to the configured bus; does
/// nothing when no bus is configured.
pub async fn publish<T: Serialize>(
    ctx: &Context,
    detail_type: &'static str,
    detail: &T,
) -> Result<(), EventError> {
    let Some(bus) = &ctx.settings.event_bus else {
        return Ok(());
    };
    let detail = serde_json::to_string(detail).map_err(|source| EventError::Encode {
        detail_type,
        source,
    })?;
    let entry = PutEventsRequestEntry::builder()
        .event_bus_name(bus)
        .source(SOURCE)
        .detail_type(detail_type)
        .detail(detail)
        .build();
    let out = ctx
        .clients
        .events
        .put_events()
        .entries(entry)
        .send()
        .await
        .map_err(|e| EventError::Publish {
            detail_type,
            source: e.into(),
        })?;
    if out.failed_entry_count > 0 {
        let code = out
            .entries
            .unwrap_or_default()
            .into_iter()
            .find_map(|e| e.error_code)
            .unwrap_or_else(|| "unknown".into());
        return Err(EventError::Refused { detail_type, code });
    }
    Ok(())
}
