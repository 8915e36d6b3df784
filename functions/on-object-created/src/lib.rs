//! Indexes each DICOM object that lands under `dicom/`: reads its header
//! with ranged GETs, checks it against its upload, writes the instance and
//! its aggregates once, and quarantines whatever is not a good file of the
//! hospital whose prefix it sits under.
//!
//! Content problems are outcomes, not errors: the object moves to
//! `quarantine/`, the upload says `rejected` with the reason, and the event
//! succeeds. Only failures of the services themselves fail the invocation,
//! so that Lambda retries it and then hands it to the dead-letter queue;
//! every step is safe to repeat.
//!
//! The same crate's `stable-studies` binary counts open studies and
//! announces those quiet for `STABLE_STUDY_SECONDS` ([`sweep_open_studies`]).

use aws_lambda_events::s3::{S3Event, S3EventRecord};
use aws_sdk_s3::types::MetadataDirective;
use futures::StreamExt;
use pacs_shared::Context;
use pacs_shared::archive::{self, IndexOutcome, InstanceToIndex};
use pacs_shared::dicom::{self, HeaderLimits, HeaderRead, InstanceHeader};
use pacs_shared::domain::HospitalId;
use pacs_shared::events::{self, InstanceIndexed};
use pacs_shared::uploads::{self, Upload, UploadId, UploadStatus};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// The first ranged GET: most headers end well inside it.
pub const FIRST_READ_BYTES: u64 = 64 * 1024;

/// A failure that must fail the invocation, so that S3's asynchronous
/// delivery retries it and then sends it to the dead-letter queue.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("record {index} names no object key")]
    MissingKey { index: usize },
    #[error("loading the upload of {key}: {source}")]
    LoadUpload {
        key: String,
        source: uploads::UploadStoreError,
    },
    #[error("reading bytes {start}-{end} of {key}: {source}")]
    ReadObject {
        key: String,
        start: u64,
        end: u64,
        source: aws_sdk_s3::Error,
    },
    #[error("reading {key}: {detail}")]
    ReadBody { key: String, detail: String },
    #[error("copying {key} to quarantine: {source}")]
    Quarantine {
        key: String,
        source: aws_sdk_s3::Error,
    },
    #[error("recording the rejection of {key}: {source}")]
    MarkRejected {
        key: String,
        source: uploads::UploadStoreError,
    },
    #[error("deleting {key}: {source}")]
    DeleteObject {
        key: String,
        source: aws_sdk_s3::Error,
    },
    #[error("indexing {key}: {source}")]
    Index {
        key: String,
        source: archive::ArchiveError,
    },
    #[error("publishing for {key}: {source}")]
    Publish {
        key: String,
        source: events::EventError,
    },
    #[error("listing hospitals for the stable-study sweep: {source}")]
    ListHospitals { source: aws_sdk_dynamodb::Error },
    #[error("stable-study sweep: {source}")]
    Sweep { source: archive::ArchiveError },
    #[error("announcing stable study: {source}")]
    AnnounceStable { source: events::EventError },
}

impl From<IngestError> for lambda_runtime::Diagnostic {
    fn from(err: IngestError) -> Self {
        let error_type = match &err {
            IngestError::MissingKey { .. } => "MissingKey",
            IngestError::LoadUpload { .. } => "LoadUpload",
            IngestError::ReadObject { .. } | IngestError::ReadBody { .. } => "ReadObject",
            IngestError::Quarantine { .. } => "Quarantine",
            IngestError::MarkRejected { .. } => "MarkRejected",
            IngestError::DeleteObject { .. } => "DeleteObject",
            IngestError::Index { .. } => "Index",
            IngestError::Publish { .. } => "Publish",
            IngestError::ListHospitals { .. }
            | IngestError::Sweep { .. }
            | IngestError::AnnounceStable { .. } => "StableStudySweep",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: err.to_string(),
        }
    }
}

/// Handles one S3 event (one or more records), record by record.
pub async fn handle(ctx: &Context, event: S3Event) -> Result<(), IngestError> {
    for (index, record) in event.records.iter().enumerate() {
        index_record(ctx, index, record).await?;
    }
    Ok(())
}

/// Decodes an object key as S3 writes it into events (form encoding: `+`
/// for space, `%XX` for other bytes).
pub fn decode_event_key(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// Where one object stands before its header is read.
struct Located {
    bucket: String,
    key: String,
    hospital: HospitalId,
    upload_id: UploadId,
}

async fn index_record(
    ctx: &Context,
    index: usize,
    record: &S3EventRecord,
) -> Result<(), IngestError> {
    let raw_key = record
        .s3
        .object
        .key
        .as_deref()
        .ok_or(IngestError::MissingKey { index })?;
    let key = decode_event_key(raw_key);
    let bucket = record
        .s3
        .bucket
        .name
        .clone()
        .unwrap_or_else(|| ctx.settings.bucket.clone());

    // The key alone says whose object it is; anything else is unattributable.
    let Some((hospital, upload_id)) = uploads::parse_object_key(&key) else {
        let target = format!("quarantine/unattributed/{}", sanitize_key(&key));
        let reason = "the object key is not dicom/{hospitalId}/{uploadId}.dcm, so the object \
                      belongs to no upload of any hospital";
        quarantine_object(ctx, &bucket, &key, &target, reason).await?;
        tracing::warn!(target_key = %target, "unattributable object quarantined");
        return Ok(());
    };
    let at = Located {
        bucket,
        key,
        hospital,
        upload_id,
    };

    // The upload and the object's header are read at once when the event
    // gives the object's size (S3 always does): one round trip less per
    // instance. The header is used only if the upload is still pending.
    let event_size = record.s3.object.size.map(|s| s.max(0) as u64);
    let load_upload = async {
        uploads::get_upload(ctx, &at.hospital, &at.upload_id)
            .await
            .map_err(|source| IngestError::LoadUpload {
                key: at.key.clone(),
                source,
            })
    };
    let (upload, early_header) = match event_size {
        Some(size) => {
            let (upload, header) = tokio::join!(load_upload, read_header(ctx, &at, size));
            (upload?, Some(header))
        }
        None => (load_upload.await?, None),
    };
    let Some(upload) = upload else {
        let reason = "no upload with this id exists for the hospital whose prefix holds the \
                      object: it was not written through a URL this hospital asked for";
        let target = uploads::quarantine_key(&at.hospital, &at.upload_id);
        quarantine_object(ctx, &at.bucket, &at.key, &target, reason).await?;
        tracing::warn!(hospital_id = %at.hospital, upload_id = %at.upload_id, "object without upload quarantined");
        return Ok(());
    };

    match upload.status {
        UploadStatus::Indexed => return finish_indexed(ctx, &at, &upload).await,
        UploadStatus::Rejected => {
            // An earlier delivery quarantined it; make sure the original is gone.
            delete_object(ctx, &at.bucket, &at.key).await?;
            return Ok(());
        }
        UploadStatus::Pending => {}
    }

    let size = event_size.unwrap_or(upload.size);
    if size != upload.size {
        let reason = format!(
            "the object is {size} bytes but the upload declared {} bytes",
            upload.size
        );
        return reject(ctx, &at, &reason).await;
    }

    let header = match early_header {
        Some(header) => header,
        None => read_header(ctx, &at, size).await,
    };
    let header = match header {
        Err(IngestError::ReadObject {
            source: aws_sdk_s3::Error::NoSuchKey(_),
            ..
        }) => {
            // Nothing left to index or to quarantine, and retrying cannot
            // bring it back: say so on the upload rather than fail forever.
            let reason = "the object was gone before it could be indexed: deleted, or \
                          replaced by a later upload of the same instance";
            uploads::mark_rejected(ctx, &at.hospital, &at.upload_id, reason, "")
                .await
                .map_err(|source| IngestError::MarkRejected {
                    key: at.key.clone(),
                    source,
                })?;
            tracing::warn!(hospital_id = %at.hospital, upload_id = %at.upload_id, "object gone before indexing");
            return Ok(());
        }
        other => other?,
    };
    let header = match header {
        Ok(header) => header,
        Err(reason) => return reject(ctx, &at, &reason).await,
    };
    if let Some(reason) = check_uids(&header, &upload) {
        return reject(ctx, &at, &reason).await;
    }

    let job = InstanceToIndex {
        hospital: &at.hospital,
        upload_id: &at.upload_id,
        s3_key: &at.key,
        size,
        sha256: &upload.sha256,
        header: &header,
        now: pacs_shared::time::now(),
    };
    let outcome =
        archive::index_instance(ctx, &job)
            .await
            .map_err(|source| IngestError::Index {
                key: at.key.clone(),
                source,
            })?;
    tracing::info!(
        hospital_id = %at.hospital,
        upload_id = %at.upload_id,
        outcome = ?outcome,
        header_bytes = header.header_len,
        "instance indexed"
    );

    match outcome {
        IndexOutcome::Replaced {
            superseded_key,
            earlier_key,
        } => {
            delete_object(ctx, &at.bucket, &superseded_key).await?;
            if let Some(earlier) = earlier_key.filter(|k| *k != at.key) {
                delete_object(ctx, &at.bucket, &earlier).await?;
            }
        }
        IndexOutcome::Duplicate => delete_object(ctx, &at.bucket, &at.key).await?,
        IndexOutcome::Added { .. } | IndexOutcome::AlreadyDone => {}
    }
    publish_indexed(
        ctx,
        &at,
        &header.study_instance_uid,
        &header.series_instance_uid,
        &header.sop_instance_uid,
    )
    .await
}

/// Repeats what follows a committed index for a redelivered event: the
/// object deletions and the notification are idempotent, so an earlier
/// delivery that failed after its commit is completed here.
async fn finish_indexed(ctx: &Context, at: &Located, upload: &Upload) -> Result<(), IngestError> {
    if upload.duplicate {
        delete_object(ctx, &at.bucket, &at.key).await?;
    }
    if let Some(superseded) = &upload.superseded_key {
        delete_object(ctx, &at.bucket, superseded).await?;
    }
    if let Some(uids) = &upload.indexed {
        publish_indexed(
            ctx,
            at,
            &uids.study_instance_uid,
            &uids.series_instance_uid,
            &uids.sop_instance_uid,
        )
        .await?;
    }
    Ok(())
}

async fn publish_indexed(
    ctx: &Context,
    at: &Located,
    study: &str,
    series: &str,
    sop: &str,
) -> Result<(), IngestError> {
    let detail = InstanceIndexed {
        hospital_id: at.hospital.to_string(),
        upload_id: at.upload_id.to_string(),
        study_instance_uid: study.to_owned(),
        series_instance_uid: series.to_owned(),
        sop_instance_uid: sop.to_owned(),
    };
    events::publish(ctx, "InstanceIndexed", &detail)
        .await
        .map_err(|source| IngestError::Publish {
            key: at.key.clone(),
            source,
        })
}

/// Reads the header with ranged GETs, growing the range only as far as
/// the reader asks and never past the reader's `max_header_bytes`. The
/// inner `Err` is a quarantine reason.
async fn read_header(
    ctx: &Context,
    at: &Located,
    size: u64,
) -> Result<Result<InstanceHeader, String>, IngestError> {
    let limits = HeaderLimits::default();
    let max_read = limits.max_header_bytes;
    let first = size.min(FIRST_READ_BYTES);
    let mut buf = get_range(ctx, at, 0, first).await?;
    loop {
        match dicom::read_header(&buf, size, &limits) {
            Ok(HeaderRead::Complete(header)) => return Ok(Ok(header)),
            Err(e) => return Ok(Err(e.reason())),
            Ok(HeaderRead::NeedMore { until }) => {
                let have = buf.len() as u64;
                if until > size {
                    return Ok(Err(format!(
                        "truncated: the header needs {until} bytes but the file has {size}"
                    )));
                }
                if until > max_read {
                    return Ok(Err(format!(
                        "the header is longer than {max_read} bytes, the most the indexer reads"
                    )));
                }
                if until <= have {
                    return Ok(Err("the header could not be read to its end".into()));
                }
                // Grow at least geometrically, so a long header costs few GETs.
                let next = until.max(have * 2).min(size).min(max_read);
                let more = get_range(ctx, at, have, next).await?;
                if more.is_empty() {
                    return Ok(Err("truncated: the object ended before its header".into()));
                }
                buf.extend_from_slice(&more);
            }
        }
    }
}

/// Bytes `start..end` of the object (end exclusive).
async fn get_range(
    ctx: &Context,
    at: &Located,
    start: u64,
    end: u64,
) -> Result<Vec<u8>, IngestError> {
    if end <= start {
        return Ok(Vec::new());
    }
    let out = ctx
        .clients
        .s3
        .get_object()
        .bucket(&at.bucket)
        .key(&at.key)
        .range(format!("bytes={start}-{}", end - 1))
        .send()
        .await
        .map_err(|e| IngestError::ReadObject {
            key: at.key.clone(),
            start,
            end,
            source: e.into(),
        })?;
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| IngestError::ReadBody {
            key: at.key.clone(),
            detail: e.to_string(),
        })?
        .into_bytes();
    // A server that ignores the range must not make us hold the object.
    let want = (end - start) as usize;
    Ok(bytes[..bytes.len().min(want)].to_vec())
}

/// A quarantine reason when the file's UIDs are malformed or differ from
/// the declared ones. Names the attribute, never its value.
fn check_uids(header: &InstanceHeader, upload: &Upload) -> Option<String> {
    let found = [
        (
            "StudyInstanceUID",
            &header.study_instance_uid,
            &upload.declared.study_instance_uid,
        ),
        (
            "SeriesInstanceUID",
            &header.series_instance_uid,
            &upload.declared.series_instance_uid,
        ),
        (
            "SOPInstanceUID",
            &header.sop_instance_uid,
            &upload.declared.sop_instance_uid,
        ),
    ];
    for (name, value, declared) in found {
        if !uploads::is_valid_uid(value) {
            return Some(format!(
                "the file's {name} is missing or not a valid DICOM UID"
            ));
        }
        if declared.as_ref().is_some_and(|d| d != value) {
            return Some(format!(
                "the file's {name} differs from the one declared with the upload"
            ));
        }
    }
    None
}

/// Quarantines the object of an upload and records why on the upload.
async fn reject(ctx: &Context, at: &Located, reason: &str) -> Result<(), IngestError> {
    let target = uploads::quarantine_key(&at.hospital, &at.upload_id);
    let copied = copy_to_quarantine(ctx, &at.bucket, &at.key, &target, reason).await?;
    let quarantine_key = if copied { target.as_str() } else { "" };
    uploads::mark_rejected(ctx, &at.hospital, &at.upload_id, reason, quarantine_key)
        .await
        .map_err(|source| IngestError::MarkRejected {
            key: at.key.clone(),
            source,
        })?;
    delete_object(ctx, &at.bucket, &at.key).await?;
    tracing::warn!(
        hospital_id = %at.hospital,
        upload_id = %at.upload_id,
        reason,
        "upload quarantined"
    );
    Ok(())
}

/// Moves an object that belongs to no upload into quarantine.
async fn quarantine_object(
    ctx: &Context,
    bucket: &str,
    key: &str,
    target: &str,
    reason: &str,
) -> Result<(), IngestError> {
    copy_to_quarantine(ctx, bucket, key, target, reason).await?;
    delete_object(ctx, bucket, key).await
}

/// Copies `key` to `target` with the reason in its metadata; `false` when
/// the object is already gone (an earlier delivery moved it).
async fn copy_to_quarantine(
    ctx: &Context,
    bucket: &str,
    key: &str,
    target: &str,
    reason: &str,
) -> Result<bool, IngestError> {
    const KEY_SAFE: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.');
    let source = format!("{bucket}/{}", utf8_percent_encode(key, KEY_SAFE));
    let result = ctx
        .clients
        .s3
        .copy_object()
        .bucket(bucket)
        .key(target)
        .copy_source(source)
        .metadata_directive(MetadataDirective::Replace)
        .metadata("quarantine-reason", ascii_header_value(reason))
        .metadata("quarantined-from", ascii_header_value(key))
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(e) => {
            let e = aws_sdk_s3::Error::from(e);
            if matches!(e, aws_sdk_s3::Error::NoSuchKey(_)) || is_not_found(&e) {
                return Ok(false);
            }
            Err(IngestError::Quarantine {
                key: key.to_owned(),
                source: e,
            })
        }
    }
}

fn is_not_found(e: &aws_sdk_s3::Error) -> bool {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    matches!(e.code(), Some("NoSuchKey" | "NotFound"))
}

/// Deletes an object; deleting one already gone succeeds.
async fn delete_object(ctx: &Context, bucket: &str, key: &str) -> Result<(), IngestError> {
    match ctx
        .clients
        .s3
        .delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = aws_sdk_s3::Error::from(e);
            if is_not_found(&e) {
                return Ok(());
            }
            Err(IngestError::DeleteObject {
                key: key.to_owned(),
                source: e,
            })
        }
    }
}

/// S3 metadata travels in HTTP headers: printable ASCII only, bounded.
fn ascii_header_value(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .take(512)
        .collect()
}

/// A key made safe to sit under `quarantine/unattributed/`.
fn sanitize_key(key: &str) -> String {
    let flat: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    if flat.is_empty() { "_".into() } else { flat }
}

/// Open studies one sweep brings up to date at once.
const STUDIES_SWEPT_AT_ONCE: usize = 16;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sweep {
    /// Open studies brought up to date.
    pub swept: usize,
    /// Of those, studies closed and announced stable.
    pub announced: usize,
}

/// Brings every open study, of every hospital, up to date: its series and
/// study counts and the hospital's stored bytes, from its instances. A
/// study that had no new instance for `stable_study_after` is closed and
/// announced, once per quiet spell. Runs on a schedule (the
/// `stable-studies` binary); see docs/data-model.md.
pub async fn sweep_open_studies(ctx: &Context) -> Result<Sweep, IngestError> {
    let now = pacs_shared::time::now();
    let quiet = ctx.settings.stable_study_after;
    let mut sweep = Sweep::default();
    // A study that fails is logged and the sweep goes on, so one bad
    // study cannot starve the hospitals listed after it; the run still
    // fails at the end, for the alarm and the retry.
    let mut first_error = None;
    for hospital in list_hospitals(ctx).await? {
        let open = match archive::open_studies(ctx, &hospital).await {
            Ok(open) => open,
            Err(source) => {
                let e = IngestError::Sweep { source };
                tracing::error!(hospital_id = %hospital, error = %e, "listing open studies failed");
                first_error.get_or_insert(e);
                continue;
            }
        };
        // Studies are independent partitions: several at a time, so a
        // hospital with many open studies fits in one run.
        let announced: Vec<Result<bool, IngestError>> = futures::stream::iter(open)
            .map(|study| async move {
                let stable = archive::sweep_study(ctx, &study, now, quiet)
                    .await
                    .map_err(|source| IngestError::Sweep { source })?;
                let Some(detail) = stable else {
                    return Ok(false);
                };
                events::publish(ctx, "StudyStable", &detail)
                    .await
                    .map_err(|source| IngestError::AnnounceStable { source })?;
                archive::mark_announced(ctx, &study, &detail.stable_at)
                    .await
                    .map_err(|source| IngestError::Sweep { source })?;
                tracing::info!(hospital_id = %study.hospital, "study stable");
                Ok(true)
            })
            .buffer_unordered(STUDIES_SWEPT_AT_ONCE)
            .collect()
            .await;
        for result in announced {
            sweep.swept += 1;
            match result {
                Ok(stable) => sweep.announced += usize::from(stable),
                Err(e) => {
                    tracing::error!(hospital_id = %hospital, error = %e, "study sweep failed");
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(sweep),
    }
}

/// Every hospital, from the tenants table's `HOSPITALS` index partition.
async fn list_hospitals(ctx: &Context) -> Result<Vec<HospitalId>, IngestError> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = ctx
            .clients
            .dynamodb
            .query()
            .table_name(&ctx.settings.tenants_table)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :p")
            .expression_attribute_values(
                ":p",
                aws_sdk_dynamodb::types::AttributeValue::S("HOSPITALS".into()),
            )
            .projection_expression("pk")
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| IngestError::ListHospitals { source: e.into() })?;
        for item in page.items.unwrap_or_default() {
            if let Some(Ok(id)) = item
                .get("pk")
                .and_then(|v| v.as_s().ok())
                .map(|s| s.parse())
            {
                out.push(id);
            }
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_decode_like_s3_writes_them() {
        assert_eq!(decode_event_key("dicom/a+b%2Bc.dcm"), "dicom/a b+c.dcm");
        assert_eq!(decode_event_key("dicom/%C3%A9"), "dicom/é");
    }

    #[test]
    fn quarantine_names_are_flat_and_bounded() {
        assert_eq!(sanitize_key("../x y/z"), ".._x_y_z");
        assert_eq!(sanitize_key(&"a".repeat(500)).len(), 200);
        assert_eq!(ascii_header_value("naïve\nline"), "na_ve_line");
    }
}
