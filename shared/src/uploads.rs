//! Upload records: one item per presigned file in the tenants table, from
//! `pending` to `indexed` or `rejected`, and the S3 keys an upload owns.
//!
//! Each upload is a partition of its own (`{hosp}#UPLOAD#{uploadId}`), so a
//! burst of presigns and indexing from one hospital spreads over many keys.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::context::Context;
use crate::domain::HospitalId;
use crate::item::{Item, get_flag, get_s, get_string, get_u64, key, n, s};

/// How long an upload record outlives its URL: long enough for S3's
/// delivery retries and for the agent to read the outcome.
pub const RECORD_GRACE: Duration = Duration::from_secs(3 * 24 * 3600);

/// Identifier of one upload: `upl_` and 24 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    /// A fresh random id.
    pub fn generate() -> Self {
        UploadId(format!("upl_{}", hex::encode(rand::random::<[u8; 12]>())))
    }

    /// Parses `upl_` and 24 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("upl_")?;
        let ok = hex.len() == 24 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| UploadId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A number in `0..buckets` spread evenly over ids, for sharded
    /// counters.
    pub fn shard(&self, buckets: u32) -> u32 {
        let hex = &self.0[4..12];
        u32::from_str_radix(hex, 16).unwrap_or(0) % buckets
    }
}

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The S3 key an upload's file is written to: `dicom/{hosp}/{uploadId}.dcm`.
pub fn object_key(hospital: &HospitalId, upload: &UploadId) -> String {
    format!("dicom/{hospital}/{upload}.dcm")
}

/// Where a rejected upload's file is moved: `quarantine/{hosp}/{uploadId}.dcm`.
pub fn quarantine_key(hospital: &HospitalId, upload: &UploadId) -> String {
    format!("quarantine/{hospital}/{upload}.dcm")
}

/// Reads `dicom/{hosp}/{uploadId}.dcm` back into its parts; `None` for any
/// other key.
pub fn parse_object_key(object_key: &str) -> Option<(HospitalId, UploadId)> {
    let rest = object_key.strip_prefix("dicom/")?;
    let (hosp, file) = rest.split_once('/')?;
    let upload = file.strip_suffix(".dcm")?;
    Some((hosp.parse().ok()?, UploadId::parse(upload)?))
}

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadStatus {
    /// Presigned; the file has not been indexed (yet).
    Pending,
    /// The file was indexed.
    Indexed,
    /// The file was quarantined; `reason` says why.
    Rejected,
}

impl UploadStatus {
    /// The status as the API and the table write it.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadStatus::Pending => "pending",
            UploadStatus::Indexed => "indexed",
            UploadStatus::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(UploadStatus::Pending),
            "indexed" => Some(UploadStatus::Indexed),
            "rejected" => Some(UploadStatus::Rejected),
            _ => None,
        }
    }
}

/// The three UIDs that place an instance in the archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceUids {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
}

/// UIDs an uploader declared up front; each is checked against the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclaredUids {
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
}

/// One upload record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The hospital that asked for the URL.
    pub hospital_id: HospitalId,
    /// The upload's id.
    pub upload_id: UploadId,
    /// Where it stands.
    pub status: UploadStatus,
    /// The S3 key the URL writes to.
    pub s3_key: String,
    /// Declared size in bytes, signed into the URL.
    pub size: u64,
    /// Declared SHA-256 (lowercase hex), signed into the URL.
    pub sha256: String,
    /// UIDs declared with the request.
    pub declared: DeclaredUids,
    /// The key that asked for the URL.
    pub key_id: String,
    /// When the URL was made (RFC 3339).
    pub created_at: String,
    /// When the URL stops working (RFC 3339).
    pub url_expires_at: String,
    /// When the record itself is deleted by TTL (epoch seconds).
    pub ttl: i64,
    /// Once indexed: when, and where the instance went.
    pub indexed_at: Option<String>,
    pub indexed: Option<InstanceUids>,
    /// The file replaced an earlier, different file of the same instance.
    pub replaced: bool,
    /// The file was byte-identical to the instance already stored; the
    /// stored copy was kept and this one deleted.
    pub duplicate: bool,
    /// The object this upload superseded (deleted after indexing).
    pub superseded_key: Option<String>,
    /// Once rejected: why, and where the file went.
    pub reason: Option<String>,
    pub quarantine_key: Option<String>,
}

/// The partition key of an upload record.
pub fn upload_pk(hospital: &HospitalId, upload: &UploadId) -> String {
    format!("{hospital}#UPLOAD#{upload}")
}

/// The primary key of an upload record.
pub fn upload_key(hospital: &HospitalId, upload: &UploadId) -> Item {
    key(upload_pk(hospital, upload), "UPLOAD")
}

impl Upload {
    /// The item as stored.
    pub fn to_item(&self) -> Item {
        let mut item = upload_key(&self.hospital_id, &self.upload_id);
        let mut put = |k: &str, v: AttributeValue| {
            item.insert(k.to_owned(), v);
        };
        put("hospitalId", s(self.hospital_id.as_str()));
        put("uploadId", s(self.upload_id.as_str()));
        put("status", s(self.status.as_str()));
        put("s3Key", s(&self.s3_key));
        put("size", n(self.size));
        put("sha256", s(&self.sha256));
        put("keyId", s(&self.key_id));
        put("createdAt", s(&self.created_at));
        put("urlExpiresAt", s(&self.url_expires_at));
        put("expiresAt", n(self.ttl));
        let d = &self.declared;
        for (name, v) in [
            ("declaredStudyInstanceUid", &d.study_instance_uid),
            ("declaredSeriesInstanceUid", &d.series_instance_uid),
            ("declaredSopInstanceUid", &d.sop_instance_uid),
        ] {
            if let Some(v) = v {
                put(name, s(v));
            }
        }
        if let Some(u) = &self.indexed {
            put("studyInstanceUid", s(&u.study_instance_uid));
            put("seriesInstanceUid", s(&u.series_instance_uid));
            put("sopInstanceUid", s(&u.sop_instance_uid));
        }
        for (name, v) in [
            ("indexedAt", &self.indexed_at),
            ("supersededKey", &self.superseded_key),
            ("reason", &self.reason),
            ("quarantineKey", &self.quarantine_key),
        ] {
            if let Some(v) = v {
                put(name, s(v));
            }
        }
        if self.replaced {
            put("replaced", AttributeValue::Bool(true));
        }
        if self.duplicate {
            put("duplicate", AttributeValue::Bool(true));
        }
        item
    }

    /// Reads a stored item; `None` when it is not an upload record.
    pub fn from_item(item: &Item) -> Option<Self> {
        let indexed = match (
            get_string(item, "studyInstanceUid"),
            get_string(item, "seriesInstanceUid"),
            get_string(item, "sopInstanceUid"),
        ) {
            (Some(study), Some(series), Some(sop)) => Some(InstanceUids {
                study_instance_uid: study,
                series_instance_uid: series,
                sop_instance_uid: sop,
            }),
            _ => None,
        };
        Some(Upload {
            hospital_id: get_s(item, "hospitalId")?.parse().ok()?,
            upload_id: UploadId::parse(get_s(item, "uploadId")?)?,
            status: UploadStatus::parse(get_s(item, "status")?)?,
            s3_key: get_string(item, "s3Key")?,
            size: get_u64(item, "size")?,
            sha256: get_string(item, "sha256")?,
            declared: DeclaredUids {
                study_instance_uid: get_string(item, "declaredStudyInstanceUid"),
                series_instance_uid: get_string(item, "declaredSeriesInstanceUid"),
                sop_instance_uid: get_string(item, "declaredSopInstanceUid"),
            },
            key_id: get_string(item, "keyId").unwrap_or_default(),
            created_at: get_string(item, "createdAt").unwrap_or_default(),
            url_expires_at: get_string(item, "urlExpiresAt").unwrap_or_default(),
            ttl: crate::item::get_i64(item, "expiresAt").unwrap_or_default(),
            indexed_at: get_string(item, "indexedAt"),
            indexed,
            replaced: get_flag(item, "replaced"),
            duplicate: get_flag(item, "duplicate"),
            superseded_key: get_string(item, "supersededKey"),
            reason: get_string(item, "reason"),
            quarantine_key: get_string(item, "quarantineKey"),
        })
    }

    /// The record as `GET /api/uploads/{uploadId}` shows it.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "uploadId": self.upload_id.as_str(),
            "status": self.status.as_str(),
            "size": self.size,
            "sha256": self.sha256,
            "createdAt": self.created_at,
            "expiresAt": self.url_expires_at,
        });
        let obj = v.as_object_mut().expect("a JSON object");
        if let Some(u) = &self.indexed {
            obj.insert(
                "studyInstanceUid".into(),
                u.study_instance_uid.clone().into(),
            );
            obj.insert(
                "seriesInstanceUid".into(),
                u.series_instance_uid.clone().into(),
            );
            obj.insert("sopInstanceUid".into(), u.sop_instance_uid.clone().into());
        }
        if let Some(at) = &self.indexed_at {
            obj.insert("indexedAt".into(), at.clone().into());
        }
        if self.status == UploadStatus::Indexed {
            obj.insert("replaced".into(), self.replaced.into());
            obj.insert("duplicate".into(), self.duplicate.into());
        }
        if let Some(reason) = &self.reason {
            obj.insert("reason".into(), reason.clone().into());
        }
        v
    }
}

/// A failed read or write of upload records.
#[derive(Debug, thiserror::Error)]
pub enum UploadStoreError {
    #[error("writing {count} upload records: {source}")]
    Write {
        count: usize,
        source: crate::dynamo::BatchError,
    },
    #[error("reading upload {upload_id}: {source}")]
    Read {
        upload_id: String,
        source: aws_sdk_dynamodb::Error,
    },
    #[error("upload {upload_id} is stored in an unreadable shape")]
    Malformed { upload_id: String },
    #[error("marking upload {upload_id} rejected: {source}")]
    MarkRejected {
        upload_id: String,
        source: aws_sdk_dynamodb::Error,
    },
}

/// Writes new upload records, 25 per BatchWriteItem, retrying unprocessed
/// items with backoff.
pub async fn put_uploads(ctx: &Context, uploads: &[Upload]) -> Result<(), UploadStoreError> {
    let items = uploads.iter().map(Upload::to_item).collect();
    crate::dynamo::put_items(&ctx.clients.dynamodb, &ctx.settings.tenants_table, items)
        .await
        .map_err(|source| UploadStoreError::Write {
            count: uploads.len(),
            source,
        })
}

/// Reads one upload of `hospital` (strongly consistent); `None` when that
/// hospital has no such upload.
pub async fn get_upload(
    ctx: &Context,
    hospital: &HospitalId,
    upload: &UploadId,
) -> Result<Option<Upload>, UploadStoreError> {
    let out = ctx
        .clients
        .dynamodb
        .get_item()
        .table_name(&ctx.settings.tenants_table)
        .set_key(Some(upload_key(hospital, upload)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| UploadStoreError::Read {
            upload_id: upload.to_string(),
            source: e.into(),
        })?;
    match out.item {
        None => Ok(None),
        Some(item) => {
            Upload::from_item(&item)
                .map(Some)
                .ok_or_else(|| UploadStoreError::Malformed {
                    upload_id: upload.to_string(),
                })
        }
    }
}

/// Records that an upload's file was quarantined, unless it was already
/// indexed (a late duplicate delivery must not undo an indexing).
pub async fn mark_rejected(
    ctx: &Context,
    hospital: &HospitalId,
    upload: &UploadId,
    reason: &str,
    quarantine_key: &str,
) -> Result<(), UploadStoreError> {
    let result = ctx
        .clients
        .dynamodb
        .update_item()
        .table_name(&ctx.settings.tenants_table)
        .set_key(Some(upload_key(hospital, upload)))
        .update_expression("SET #status = :rejected, reason = :reason, quarantineKey = :q")
        .condition_expression("attribute_exists(pk) AND #status <> :indexed")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":rejected", s("rejected"))
        .expression_attribute_values(":indexed", s("indexed"))
        .expression_attribute_values(":reason", s(reason))
        .expression_attribute_values(":q", s(quarantine_key))
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = aws_sdk_dynamodb::Error::from(e);
            if matches!(
                e,
                aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)
            ) {
                return Ok(());
            }
            Err(UploadStoreError::MarkRejected {
                upload_id: upload.to_string(),
                source: e,
            })
        }
    }
}

/// Whether `s` is a DICOM UID, by the reader's rule
/// ([`crate::dicom::is_valid_uid`]), so a declared UID and the file's are
/// judged alike.
pub fn is_valid_uid(s: &str) -> bool {
    crate::dicom::is_valid_uid(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_round_trip_and_refuse_others() {
        let h = HospitalId::generate();
        let u = UploadId::generate();
        assert_eq!(
            parse_object_key(&object_key(&h, &u)),
            Some((h.clone(), u.clone()))
        );
        for bad in [
            "quarantine/x.dcm".to_owned(),
            format!("dicom/{h}/{u}.dcm.extra"),
            format!("dicom/{h}/sub/{u}.dcm"),
            format!("dicom/{h}/upl_XYZ.dcm"),
            format!("dicom/hosp_zz/{u}.dcm"),
        ] {
            assert_eq!(parse_object_key(&bad), None, "{bad}");
        }
    }

    #[test]
    fn upload_ids_parse_and_shard() {
        let u = UploadId::generate();
        assert_eq!(UploadId::parse(u.as_str()), Some(u.clone()));
        assert!(u.shard(16) < 16);
        assert!(UploadId::parse("upl_123").is_none());
    }

    #[test]
    fn uids_are_checked() {
        assert!(is_valid_uid("1.2.840.10008.5.1.4.1.1.2"));
        for bad in ["", "1..2", "1.2.", "1.2a", "1#2", "1.02", &"1".repeat(65)] {
            assert!(!is_valid_uid(bad), "{bad}");
        }
    }

    #[test]
    fn records_round_trip() {
        let h = HospitalId::generate();
        let u = UploadId::generate();
        let upload = Upload {
            s3_key: object_key(&h, &u),
            hospital_id: h,
            upload_id: u,
            status: UploadStatus::Indexed,
            size: 42,
            sha256: "ab".repeat(32),
            declared: DeclaredUids {
                sop_instance_uid: Some("1.2.3".into()),
                ..Default::default()
            },
            key_id: "key_0123456789abcdef".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            url_expires_at: "2026-01-01T00:15:00Z".into(),
            ttl: 1_767_500_000,
            indexed_at: Some("2026-01-01T00:01:00Z".into()),
            indexed: Some(InstanceUids {
                study_instance_uid: "1.2".into(),
                series_instance_uid: "1.2.1".into(),
                sop_instance_uid: "1.2.3".into(),
            }),
            replaced: true,
            duplicate: false,
            superseded_key: Some("dicom/x".into()),
            reason: None,
            quarantine_key: None,
        };
        assert_eq!(Upload::from_item(&upload.to_item()), Some(upload));
    }
}
