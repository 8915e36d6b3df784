//! Study, series and instance items in the archive table: their keys, and
//! the one idempotent write that indexes an instance.
//!
//! A study and everything in it share the partition `{hosp}#{studyUid}`
//! (sort keys `STUDY`, `SERIES#{seriesUid}`, `INSTANCE#{seriesUid}#{sopUid}`),
//! so one hospital's ingest spreads over one partition per study, and a
//! study is read back with one Query. See docs/data-model.md.
//!
//! Indexing reads the study, series and instance items (one BatchGetItem),
//! decides from them whether the instance is new, a replacement or a
//! duplicate, and commits everything that follows in one
//! TransactWriteItems, guarded by conditions on what it read: the instance,
//! the series and study aggregates, one stored-bytes shard, the upload
//! record (which must still be `pending`) and, when the study was not
//! open, its open-study marker. A condition that fails means another
//! delivery got there first: the step is read and decided again.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem, Update};
use time::OffsetDateTime;

use crate::context::Context;
use crate::dicom::InstanceHeader;
use crate::domain::HospitalId;
use crate::dynamo;
use crate::item::{Item, get_flag, get_s, get_string, get_u64, key, n, s};
use crate::uploads::{UploadId, UploadStatus, upload_key};
use crate::usage::{USAGE_SHARDS, add_stored};

/// Largest DICOM JSON header stored on the instance item; a larger one is
/// left out (`metadataOmitted`) to keep the item under DynamoDB's 400 KB,
/// and is read from the object instead.
pub const MAX_STORED_METADATA: usize = 300_000;

/// How often one instance write is read and decided again when another
/// writer changed what it read.
const MAX_ATTEMPTS: u32 = 10;

/// The partition key of a study and everything in it.
pub fn study_pk(hospital: &HospitalId, study_uid: &str) -> String {
    format!("{hospital}#{study_uid}")
}

/// The primary key of a study item.
pub fn study_key(hospital: &HospitalId, study_uid: &str) -> Item {
    key(study_pk(hospital, study_uid), "STUDY")
}

/// The primary key of a series item.
pub fn series_key(hospital: &HospitalId, study_uid: &str, series_uid: &str) -> Item {
    key(
        study_pk(hospital, study_uid),
        format!("SERIES#{series_uid}"),
    )
}

/// The primary key of an instance item.
pub fn instance_key(
    hospital: &HospitalId,
    study_uid: &str,
    series_uid: &str,
    sop_uid: &str,
) -> Item {
    key(
        study_pk(hospital, study_uid),
        format!("INSTANCE#{series_uid}#{sop_uid}"),
    )
}

/// The primary key of a study's open marker in the tenants table: present
/// from a study's first new instance until it is announced stable.
pub fn open_study_key(hospital: &HospitalId, study_uid: &str) -> Item {
    key(format!("{hospital}#OPEN"), study_uid)
}

/// The study list's index keys: `gsi1pk = {hosp}`, `gsi1sk =
/// {studyDate}{studyTime}#{studyUid}` (newest first when read backwards).
pub fn study_list_keys(
    hospital: &HospitalId,
    study_date: Option<&str>,
    study_time: Option<&str>,
    study_uid: &str,
) -> (String, String) {
    let sk = format!(
        "{}{}#{study_uid}",
        study_date.unwrap_or(""),
        study_time.unwrap_or("")
    );
    (hospital.to_string(), sk)
}

/// One instance to index: its header and where it came from.
#[derive(Debug, Clone)]
pub struct InstanceToIndex<'a> {
    pub hospital: &'a HospitalId,
    pub upload_id: &'a UploadId,
    pub s3_key: &'a str,
    pub size: u64,
    pub sha256: &'a str,
    pub header: &'a InstanceHeader,
    pub now: OffsetDateTime,
}

/// What indexing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexOutcome {
    /// A new instance, counted once.
    Added { new_series: bool, new_study: bool },
    /// A different file of an instance already stored took its place; the
    /// superseded object is to be deleted.
    Replaced { superseded_key: String },
    /// The same bytes were already stored under another upload; the new
    /// object is redundant and is to be deleted.
    Duplicate,
    /// The upload was already indexed or rejected by an earlier delivery.
    AlreadyDone,
}

/// A failed archive read or write.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading study {study_key} before indexing: {source}")]
    ReadBeforeWrite {
        study_key: String,
        source: crate::dynamo::BatchError,
    },
    #[error("re-reading upload {upload_id}: {source}")]
    ReadUpload {
        upload_id: String,
        source: aws_sdk_dynamodb::Error,
    },
    #[error("writing instance of upload {upload_id}: {source}")]
    Write {
        upload_id: String,
        source: aws_sdk_dynamodb::Error,
    },
    #[error("writing instance of upload {upload_id}: still contended after {attempts} attempts")]
    Contended { upload_id: String, attempts: u32 },
    #[error("reading study {study_key}: {source}")]
    ReadStudy {
        study_key: String,
        source: aws_sdk_dynamodb::Error,
    },
    #[error("listing open studies of {hospital}: {source}")]
    ListOpen {
        hospital: String,
        source: aws_sdk_dynamodb::Error,
    },
    #[error("closing study {study_key}: {source}")]
    CloseStudy {
        study_key: String,
        source: aws_sdk_dynamodb::Error,
    },
}

/// An update expression built clause by clause, every name and value
/// behind a placeholder (so reserved words like `size` need no care).
#[derive(Default)]
struct Expr {
    sets: Vec<String>,
    adds: Vec<String>,
    conditions: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, attr: &str) -> String {
        let placeholder = format!("#{attr}");
        self.names.insert(placeholder.clone(), attr.to_owned());
        placeholder
    }

    fn value(&mut self, v: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), v);
        placeholder
    }

    fn set(&mut self, attr: &str, v: AttributeValue) {
        let (name, value) = (self.name(attr), self.value(v));
        self.sets.push(format!("{name} = {value}"));
    }

    fn add(&mut self, attr: &str, v: AttributeValue) {
        let (name, value) = (self.name(attr), self.value(v));
        self.adds.push(format!("{name} {value}"));
    }

    fn condition(&mut self, c: impl Into<String>) {
        self.conditions.push(c.into());
    }

    fn update(self, table: &str, key: Item) -> Update {
        let mut expression = String::new();
        if !self.sets.is_empty() {
            expression.push_str("SET ");
            expression.push_str(&self.sets.join(", "));
        }
        if !self.adds.is_empty() {
            expression.push_str(" ADD ");
            expression.push_str(&self.adds.join(", "));
        }
        let condition = (!self.conditions.is_empty()).then(|| self.conditions.join(" AND "));
        Update::builder()
            .table_name(table)
            .set_key(Some(key))
            .update_expression(expression.trim())
            .set_condition_expression(condition)
            .set_expression_attribute_names(Some(self.names))
            .set_expression_attribute_values((!self.values.is_empty()).then_some(self.values))
            .build()
            .expect("table, key and expression are set")
    }
}

/// What indexing read before deciding.
struct Existing {
    study: Option<Item>,
    series: Option<Item>,
    instance: Option<Item>,
}

/// Indexes one instance, idempotently; see the module documentation.
pub async fn index_instance(
    ctx: &Context,
    job: &InstanceToIndex<'_>,
) -> Result<IndexOutcome, ArchiveError> {
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            // A fresh look at the upload first: an earlier delivery may have
            // finished it while this one was contending.
            let status = read_upload_status(ctx, job).await?;
            if status != Some(UploadStatus::Pending) {
                return Ok(IndexOutcome::AlreadyDone);
            }
            let jitter = rand::random::<u64>() % 20;
            tokio::time::sleep(Duration::from_millis((10 << attempt.min(5)) + jitter)).await;
        }

        let existing = read_existing(ctx, job).await?;
        let (items, outcome) = plan_writes(ctx, job, &existing);
        let result = ctx
            .clients
            .dynamodb
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => return Ok(outcome),
            Err(e) => {
                let e = aws_sdk_dynamodb::Error::from(e);
                match &e {
                    aws_sdk_dynamodb::Error::TransactionCanceledException(_)
                    | aws_sdk_dynamodb::Error::TransactionConflictException(_) => {
                        tracing::debug!(attempt, "instance write contended");
                        continue;
                    }
                    _ => {
                        return Err(ArchiveError::Write {
                            upload_id: job.upload_id.to_string(),
                            source: e,
                        });
                    }
                }
            }
        }
    }
    Err(ArchiveError::Contended {
        upload_id: job.upload_id.to_string(),
        attempts: MAX_ATTEMPTS,
    })
}

async fn read_upload_status(
    ctx: &Context,
    job: &InstanceToIndex<'_>,
) -> Result<Option<UploadStatus>, ArchiveError> {
    crate::uploads::get_upload(ctx, job.hospital, job.upload_id)
        .await
        .map(|u| u.map(|u| u.status))
        .map_err(|e| match e {
            crate::uploads::UploadStoreError::Read { upload_id, source } => {
                ArchiveError::ReadUpload { upload_id, source }
            }
            other => ArchiveError::Contended {
                upload_id: format!("{} ({other})", job.upload_id),
                attempts: 0,
            },
        })
}

async fn read_existing(ctx: &Context, job: &InstanceToIndex<'_>) -> Result<Existing, ArchiveError> {
    let h = job.header;
    let table = &ctx.settings.archive_table;
    let study = study_key(job.hospital, &h.study_instance_uid);
    let series = series_key(job.hospital, &h.study_instance_uid, &h.series_instance_uid);
    let instance = instance_key(
        job.hospital,
        &h.study_instance_uid,
        &h.series_instance_uid,
        &h.sop_instance_uid,
    );
    let err = |source| ArchiveError::ReadBeforeWrite {
        study_key: study_pk(job.hospital, &h.study_instance_uid),
        source,
    };

    let keys = vec![study.clone(), series.clone(), instance.clone()];
    let found = dynamo::get_items(&ctx.clients.dynamodb, table, keys, true)
        .await
        .map_err(err)?;

    let mut existing = Existing {
        study: None,
        series: None,
        instance: None,
    };
    for item in found {
        match get_s(&item, "sk") {
            Some("STUDY") => existing.study = Some(item),
            Some(sk) if sk.starts_with("SERIES#") => existing.series = Some(item),
            Some(sk) if sk.starts_with("INSTANCE#") => existing.instance = Some(item),
            _ => {}
        }
    }
    Ok(existing)
}

/// Decides what the write is and builds its transaction.
fn plan_writes(
    ctx: &Context,
    job: &InstanceToIndex<'_>,
    existing: &Existing,
) -> (Vec<TransactWriteItem>, IndexOutcome) {
    let archive = ctx.settings.archive_table.as_str();
    let tenants = ctx.settings.tenants_table.as_str();
    let h = job.header;
    let now = crate::time::rfc3339(job.now);
    let inst_key = instance_key(
        job.hospital,
        &h.study_instance_uid,
        &h.series_instance_uid,
        &h.sop_instance_uid,
    );

    // The same bytes already stored: only the upload changes, and only if
    // the stored instance is still those bytes when the write commits.
    if let Some(inst) = &existing.instance {
        if get_s(inst, "sha256") == Some(job.sha256) {
            if get_s(inst, "s3Key") == Some(job.s3_key) {
                // This very upload's object is already the instance: only
                // the upload is left to finish, and its object must stay.
                let items = vec![upload_update(tenants, job, &now, false, false, None)];
                return (items, IndexOutcome::AlreadyDone);
            }
            let check = ConditionCheck::builder()
                .table_name(archive)
                .set_key(Some(inst_key))
                .condition_expression("sha256 = :sha")
                .expression_attribute_values(":sha", s(job.sha256))
                .build()
                .expect("table, key and condition are set");
            let items = vec![
                TransactWriteItem::builder().condition_check(check).build(),
                upload_update(tenants, job, &now, false, true, None),
            ];
            return (items, IndexOutcome::Duplicate);
        }
    }

    let mut items = Vec::with_capacity(6);
    let replaced = existing.instance.as_ref().map(|inst| {
        let old_key = get_string(inst, "s3Key").unwrap_or_default();
        let old_sha = get_string(inst, "sha256").unwrap_or_default();
        let old_size = get_u64(inst, "sizeBytes").unwrap_or(0);
        (old_key, old_sha, old_size)
    });

    // The instance itself.
    let mut put = Put::builder()
        .table_name(archive)
        .set_item(Some(instance_item(job, inst_key, &now)));
    match &replaced {
        None => put = put.condition_expression("attribute_not_exists(pk)"),
        Some((old_key, old_sha, _)) => {
            put = put
                .condition_expression("sha256 = :sha AND s3Key = :key")
                .expression_attribute_values(":sha", s(old_sha))
                .expression_attribute_values(":key", s(old_key));
        }
    }
    items.push(
        TransactWriteItem::builder()
            .put(put.build().expect("table and item are set"))
            .build(),
    );

    let (delta_bytes, delta_instances) = match &replaced {
        None => (job.size as i64, 1i64),
        Some((_, _, old_size)) => (job.size as i64 - *old_size as i64, 0),
    };

    // The series.
    let new_series = existing.series.is_none();
    let mut series = Expr::default();
    series.add("numberOfInstances", n(delta_instances));
    series.add("sizeBytes", n(delta_bytes));
    series.set("updatedAt", s(&now));
    let series_fields: [(&str, Option<AttributeValue>); 7] = [
        ("hospitalId", Some(s(job.hospital.as_str()))),
        ("studyInstanceUid", Some(s(&h.study_instance_uid))),
        ("seriesInstanceUid", Some(s(&h.series_instance_uid))),
        ("modality", h.modality.as_deref().map(s)),
        ("seriesNumber", h.series_number.map(n)),
        ("seriesDescription", h.series_description.as_deref().map(s)),
        ("bodyPartExamined", h.body_part_examined.as_deref().map(s)),
    ];
    set_missing(&mut series, existing.series.as_ref(), series_fields);
    if new_series {
        series.set("createdAt", s(&now));
        series.condition("attribute_not_exists(pk)");
    }
    let series_key = series_key(job.hospital, &h.study_instance_uid, &h.series_instance_uid);
    items.push(
        TransactWriteItem::builder()
            .update(series.update(archive, series_key))
            .build(),
    );

    // The study.
    let new_study = existing.study.is_none();
    let was_open = existing
        .study
        .as_ref()
        .is_some_and(|st| get_flag(st, "open"));
    let mut study = Expr::default();
    study.add("numberOfInstances", n(delta_instances));
    study.add("sizeBytes", n(delta_bytes));
    if new_series {
        study.add("numberOfSeries", n(1));
    }
    if let Some(m) = h.modality.as_deref().filter(|m| !m.is_empty()) {
        study.add("modalities", AttributeValue::Ss(vec![m.to_owned()]));
    }
    study.set("updatedAt", s(&now));
    study.set("lastInstanceAt", s(&now));
    let (gsi1pk, gsi1sk) = study_list_keys(
        job.hospital,
        h.study_date.as_deref(),
        h.study_time.as_deref(),
        &h.study_instance_uid,
    );
    let lower = h.patient_name.as_deref().map(|p| s(p.to_lowercase()));
    let study_fields: [(&str, Option<AttributeValue>); 14] = [
        ("hospitalId", Some(s(job.hospital.as_str()))),
        ("studyInstanceUid", Some(s(&h.study_instance_uid))),
        ("patientId", h.patient_id.as_deref().map(s)),
        ("patientName", h.patient_name.as_deref().map(s)),
        ("patientNameLower", lower),
        ("patientBirthDate", h.patient_birth_date.as_deref().map(s)),
        ("patientSex", h.patient_sex.as_deref().map(s)),
        ("studyDate", h.study_date.as_deref().map(s)),
        ("studyTime", h.study_time.as_deref().map(s)),
        ("accessionNumber", h.accession_number.as_deref().map(s)),
        ("studyDescription", h.study_description.as_deref().map(s)),
        ("gsi1pk", Some(s(gsi1pk))),
        ("gsi1sk", Some(s(gsi1sk))),
        ("createdAt", Some(s(&now))),
    ];
    // Fields are set once, by the first instance that carries them, so a
    // study's list entry (the index) is written rarely.
    set_missing(&mut study, existing.study.as_ref(), study_fields);
    if was_open {
        // Guards against the sweep closing the study between read and
        // write: then the write fails, and the retry opens it again.
        let t = study.value(AttributeValue::Bool(true));
        study.condition(format!("#open = {t}"));
        study.name("open");
    } else {
        study.set("open", AttributeValue::Bool(true));
        let marker = Put::builder()
            .table_name(tenants)
            .set_item(Some({
                let mut item = open_study_key(job.hospital, &h.study_instance_uid);
                item.insert("hospitalId".into(), s(job.hospital.as_str()));
                item.insert("studyInstanceUid".into(), s(&h.study_instance_uid));
                item.insert("openedAt".into(), s(&now));
                item
            }))
            .build()
            .expect("table and item are set");
        items.push(TransactWriteItem::builder().put(marker).build());
    }
    let study_key = study_key(job.hospital, &h.study_instance_uid);
    items.push(
        TransactWriteItem::builder()
            .update(study.update(archive, study_key))
            .build(),
    );

    // Stored bytes, on the shard the upload id picks.
    let shard = job.upload_id.shard(USAGE_SHARDS);
    let usage = add_stored(tenants, job.hospital, shard, delta_bytes, delta_instances);
    items.push(TransactWriteItem::builder().update(usage).build());

    let superseded = replaced.as_ref().map(|(k, _, _)| k.clone());
    items.push(upload_update(
        tenants,
        job,
        &now,
        superseded.is_some(),
        false,
        superseded.as_deref(),
    ));

    let outcome = match superseded {
        Some(superseded_key) => IndexOutcome::Replaced { superseded_key },
        None => IndexOutcome::Added {
            new_series,
            new_study,
        },
    };
    (items, outcome)
}

/// Sets each field that `existing` lacks (all of them when it is absent).
fn set_missing<const N: usize>(
    expr: &mut Expr,
    existing: Option<&Item>,
    fields: [(&str, Option<AttributeValue>); N],
) {
    for (attr, value) in fields {
        let Some(value) = value else { continue };
        if existing.is_some_and(|item| item.contains_key(attr)) {
            continue;
        }
        expr.set(attr, value);
    }
}

fn instance_item(job: &InstanceToIndex<'_>, mut item: Item, now: &str) -> Item {
    let h = job.header;
    let mut put = |k: &str, v: Option<AttributeValue>| {
        if let Some(v) = v {
            item.insert(k.to_owned(), v);
        }
    };
    put("hospitalId", Some(s(job.hospital.as_str())));
    put("studyInstanceUid", Some(s(&h.study_instance_uid)));
    put("seriesInstanceUid", Some(s(&h.series_instance_uid)));
    put("sopInstanceUid", Some(s(&h.sop_instance_uid)));
    put("sopClassUid", Some(s(&h.sop_class_uid)));
    put("transferSyntaxUid", Some(s(&h.transfer_syntax_uid)));
    put("instanceNumber", h.instance_number.map(n));
    put("numberOfFrames", h.number_of_frames.map(n));
    put("rows", h.rows.map(n));
    put("columns", h.columns.map(n));
    put("s3Key", Some(s(job.s3_key)));
    put("sizeBytes", Some(n(job.size)));
    put("headerBytes", Some(n(h.header_len)));
    put("sha256", Some(s(job.sha256)));
    put("uploadId", Some(s(job.upload_id.as_str())));
    put("indexedAt", Some(s(now)));
    match serde_json::to_string(&h.metadata) {
        Ok(json) if json.len() <= MAX_STORED_METADATA => put("metadata", Some(s(json))),
        _ => put("metadataOmitted", Some(AttributeValue::Bool(true))),
    }
    item
}

fn upload_update(
    table: &str,
    job: &InstanceToIndex<'_>,
    now: &str,
    replaced: bool,
    duplicate: bool,
    superseded_key: Option<&str>,
) -> TransactWriteItem {
    let h = job.header;
    let mut e = Expr::default();
    e.set("status", s("indexed"));
    e.set("indexedAt", s(now));
    e.set("studyInstanceUid", s(&h.study_instance_uid));
    e.set("seriesInstanceUid", s(&h.series_instance_uid));
    e.set("sopInstanceUid", s(&h.sop_instance_uid));
    e.set("replaced", AttributeValue::Bool(replaced));
    e.set("duplicate", AttributeValue::Bool(duplicate));
    if let Some(k) = superseded_key {
        e.set("supersededKey", s(k));
    }
    let pending = e.value(s("pending"));
    e.condition(format!("#status = {pending}"));
    let update = e.update(table, upload_key(job.hospital, job.upload_id));
    TransactWriteItem::builder().update(update).build()
}

/// A study whose open marker is set, as the stable-study sweep sees it.
#[derive(Debug, Clone)]
pub struct OpenStudy {
    pub hospital: HospitalId,
    pub study_instance_uid: String,
}

/// The studies of `hospital` that received instances and have not been
/// announced stable since.
pub async fn open_studies(
    ctx: &Context,
    hospital: &HospitalId,
) -> Result<Vec<OpenStudy>, ArchiveError> {
    let mut out = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let page = ctx
            .clients
            .dynamodb
            .query()
            .table_name(&ctx.settings.tenants_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(format!("{hospital}#OPEN")))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| ArchiveError::ListOpen {
                hospital: hospital.to_string(),
                source: e.into(),
            })?;
        for item in page.items.unwrap_or_default() {
            if let Some(uid) = get_string(&item, "sk") {
                out.push(OpenStudy {
                    hospital: hospital.clone(),
                    study_instance_uid: uid,
                });
            }
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(out),
        }
    }
}

/// Closes an open study if no instance arrived for `quiet`, returning what
/// to announce. The close is conditional on the `lastInstanceAt` it read,
/// so an instance arriving meanwhile keeps the study open.
pub async fn close_if_stable(
    ctx: &Context,
    open: &OpenStudy,
    now: OffsetDateTime,
    quiet: Duration,
) -> Result<Option<crate::events::StudyStable>, ArchiveError> {
    let study_key_text = study_pk(&open.hospital, &open.study_instance_uid);
    let item = ctx
        .clients
        .dynamodb
        .get_item()
        .table_name(&ctx.settings.archive_table)
        .set_key(Some(study_key(&open.hospital, &open.study_instance_uid)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| ArchiveError::ReadStudy {
            study_key: study_key_text.clone(),
            source: e.into(),
        })?
        .item;
    let marker = TransactWriteItem::builder()
        .delete(
            aws_sdk_dynamodb::types::Delete::builder()
                .table_name(&ctx.settings.tenants_table)
                .set_key(Some(open_study_key(
                    &open.hospital,
                    &open.study_instance_uid,
                )))
                .build()
                .expect("table and key are set"),
        )
        .build();

    let Some(item) = item else {
        // A marker without its study: nothing to announce, drop the marker.
        let _ = ctx
            .clients
            .dynamodb
            .transact_write_items()
            .transact_items(marker)
            .send()
            .await;
        return Ok(None);
    };
    let Some(last) = get_string(&item, "lastInstanceAt") else {
        return Ok(None);
    };
    let quiet_since = crate::time::parse_rfc3339(&last).map(|t| now - t);
    if quiet_since.is_none_or(|q| q < quiet) {
        return Ok(None);
    }

    let stable_at = crate::time::rfc3339(now);
    let close = Update::builder()
        .table_name(&ctx.settings.archive_table)
        .set_key(Some(study_key(&open.hospital, &open.study_instance_uid)))
        .update_expression("SET #open = :false, stableAt = :now")
        .condition_expression("lastInstanceAt = :last")
        .expression_attribute_names("#open", "open")
        .expression_attribute_values(":false", AttributeValue::Bool(false))
        .expression_attribute_values(":now", s(&stable_at))
        .expression_attribute_values(":last", s(&last))
        .build()
        .expect("table, key and expression are set");
    let result = ctx
        .clients
        .dynamodb
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().update(close).build())
        .transact_items(marker)
        .send()
        .await;
    match result {
        Ok(_) => Ok(Some(crate::events::StudyStable {
            hospital_id: open.hospital.to_string(),
            study_instance_uid: open.study_instance_uid.clone(),
            number_of_series: get_u64(&item, "numberOfSeries").unwrap_or(0),
            number_of_instances: get_u64(&item, "numberOfInstances").unwrap_or(0),
            last_instance_at: last,
            stable_at,
        })),
        Err(e) => {
            let e = aws_sdk_dynamodb::Error::from(e);
            match e {
                aws_sdk_dynamodb::Error::TransactionCanceledException(_)
                | aws_sdk_dynamodb::Error::TransactionConflictException(_) => Ok(None),
                other => Err(ArchiveError::CloseStudy {
                    study_key: study_key_text,
                    source: other,
                }),
            }
        }
    }
}
