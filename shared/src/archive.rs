//! Study, series and instance items in the archive table: their keys, the
//! idempotent write that indexes an instance, and the sweep that keeps a
//! study's aggregates and the hospital's stored bytes.
//!
//! A study and everything in it share the partition `{hosp}#{studyUid}`
//! (sort keys `STUDY`, `SERIES#{seriesUid}`, `INSTANCE#{seriesUid}#{sopUid}`),
//! so one hospital's ingest spreads over one partition per study, and a
//! study is read back with one Query. See docs/data-model.md.
//!
//! Indexing writes what belongs to the instance alone: the instance item
//! (one conditional PutItem), then, once per study and series, the items
//! that list them, then the upload (the commit point). Counters are not
//! written per instance: [`sweep_study`], run on a schedule for every open
//! study, computes a study's series and study aggregates from its
//! instances and adds the change in size to the hospital's stored bytes,
//! exactly once, in one transaction guarded by what it last counted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use time::OffsetDateTime;

use crate::context::Context;
use crate::dicom::InstanceHeader;
use crate::domain::HospitalId;
use crate::dynamo;
use crate::item::{Item, get_count, get_flag, get_s, get_string, key, n, s};
use crate::uploads::{UploadId, UploadStatus, upload_key};
use crate::usage::{USAGE_SHARDS, add_stored};

/// How often one instance write is tried again when another writer
/// changed the instance between its read and its write.
const MAX_ATTEMPTS: u32 = 10;

/// Name of the archive table's index of open studies.
pub const OPEN_INDEX: &str = "gsi2";

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

/// The usage shard a study's stored bytes are counted on.
pub fn usage_shard(study_uid: &str) -> u32 {
    // FNV-1a: stable across builds, unlike the std hasher.
    let hash = study_uid.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % USAGE_SHARDS
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
    /// A new instance.
    Added { new_series: bool, new_study: bool },
    /// A different file of an instance already stored took its place; the
    /// superseded object is to be deleted, and so is `earlier_key`, the
    /// object that one had replaced, in case that replacement stopped
    /// before its own deletion.
    Replaced {
        superseded_key: String,
        earlier_key: Option<String>,
    },
    /// The same bytes were already stored under another upload; the new
    /// object is redundant and is to be deleted.
    Duplicate,
    /// The upload was already indexed or rejected by an earlier delivery.
    AlreadyDone,
}

/// A failed archive read or write.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading study {study_key}: {source}")]
    Read {
        study_key: String,
        source: crate::dynamo::BatchError,
    },
    #[error("re-reading upload {upload_id}: {source}")]
    ReadUpload {
        upload_id: String,
        source: aws_sdk_dynamodb::Error,
    },
    #[error("writing {what} of upload {upload_id}: {source}")]
    Write {
        what: &'static str,
        upload_id: String,
        source: aws_sdk_dynamodb::Error,
    },
    #[error("writing instance of upload {upload_id}: still contended after {attempts} attempts")]
    Contended { upload_id: String, attempts: u32 },
    #[error("querying study {study_key}: {source}")]
    QueryStudy {
        study_key: String,
        source: aws_sdk_dynamodb::Error,
    },
    #[error("listing open studies of {hospital}: {source}")]
    ListOpen {
        hospital: String,
        source: aws_sdk_dynamodb::Error,
    },
    #[error("updating study {study_key}: {source}")]
    UpdateStudy {
        study_key: String,
        source: aws_sdk_dynamodb::Error,
    },
}

/// Whether a DynamoDB failure is a condition that did not hold (alone or
/// in a transaction) or a transaction that met another.
fn is_condition_failure(e: &aws_sdk_dynamodb::Error) -> bool {
    matches!(
        e,
        aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)
            | aws_sdk_dynamodb::Error::TransactionCanceledException(_)
            | aws_sdk_dynamodb::Error::TransactionConflictException(_)
    )
}

/// An update expression built clause by clause, every name and value
/// behind a placeholder (so reserved words like `size` need no care).
#[derive(Default)]
struct Expr {
    sets: Vec<String>,
    removes: Vec<String>,
    conditions: Vec<String>,
    names: std::collections::HashMap<String, String>,
    values: std::collections::HashMap<String, AttributeValue>,
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

    fn remove(&mut self, attr: &str) {
        let name = self.name(attr);
        self.removes.push(name);
    }

    fn condition(&mut self, c: impl Into<String>) {
        self.conditions.push(c.into());
    }

    fn is_empty(&self) -> bool {
        self.sets.is_empty() && self.removes.is_empty()
    }

    fn expression(&self) -> String {
        let mut clauses = Vec::new();
        if !self.sets.is_empty() {
            clauses.push(format!("SET {}", self.sets.join(", ")));
        }
        if !self.removes.is_empty() {
            clauses.push(format!("REMOVE {}", self.removes.join(", ")));
        }
        clauses.join(" ")
    }

    fn condition_text(&self) -> Option<String> {
        (!self.conditions.is_empty()).then(|| self.conditions.join(" AND "))
    }

    /// The expression as a step of a transaction.
    fn update(self, table: &str, key: Item) -> Update {
        Update::builder()
            .table_name(table)
            .set_key(Some(key))
            .update_expression(self.expression())
            .set_condition_expression(self.condition_text())
            .set_expression_attribute_names(Some(self.names))
            .set_expression_attribute_values((!self.values.is_empty()).then_some(self.values))
            .build()
            .expect("table, key and expression are set")
    }

    /// Sends the expression as one UpdateItem.
    async fn send(
        self,
        ctx: &Context,
        table: &str,
        key: Item,
    ) -> Result<(), aws_sdk_dynamodb::Error> {
        ctx.clients
            .dynamodb
            .update_item()
            .table_name(table)
            .set_key(Some(key))
            .update_expression(self.expression())
            .set_condition_expression(self.condition_text())
            .set_expression_attribute_names(Some(self.names))
            .set_expression_attribute_values((!self.values.is_empty()).then_some(self.values))
            .send()
            .await
            .map(|_| ())
            .map_err(Into::into)
    }
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

/// What the conditional instance write found.
enum InstanceWrite {
    Written,
    /// Another item holds the instance's key (or no longer the one read).
    Found(Option<Item>),
}

/// Indexes one instance, idempotently; see the module documentation.
///
/// The steps, each safe to repeat: the instance item, written on the
/// condition that it is absent or still the item a replacement read; the
/// study and series items, created or reopened when needed; the upload,
/// from `pending` to `indexed`. A redelivery that finds its own object
/// already stored as the instance resumes at the study step.
pub async fn index_instance(
    ctx: &Context,
    job: &InstanceToIndex<'_>,
) -> Result<IndexOutcome, ArchiveError> {
    let now = crate::time::rfc3339(job.now);
    // The stored instance a replacement is to take the place of.
    let mut replacing: Option<Item> = None;
    let mut contended = 0;
    for _ in 0..MAX_ATTEMPTS * 2 {
        if contended >= MAX_ATTEMPTS {
            break;
        }
        match put_instance(ctx, job, &now, replacing.as_ref()).await? {
            InstanceWrite::Written => {
                let superseded = replacing.as_ref().and_then(|old| get_string(old, "s3Key"));
                let earlier_key = replacing
                    .as_ref()
                    .and_then(|old| get_string(old, "supersededKey"));
                let (new_series, new_study) = ensure_study(ctx, job, &now).await?;
                finish_upload(ctx, job, &now, superseded.as_deref(), false).await?;
                return Ok(match superseded {
                    Some(superseded_key) => IndexOutcome::Replaced {
                        superseded_key,
                        earlier_key,
                    },
                    None => IndexOutcome::Added {
                        new_series,
                        new_study,
                    },
                });
            }
            InstanceWrite::Found(None) => {
                // The instance read for a replacement is gone: add anew.
                replacing = None;
            }
            InstanceWrite::Found(Some(old)) => {
                if get_s(&old, "s3Key") == Some(job.s3_key) {
                    // This upload's object is already the instance: an
                    // earlier delivery stopped after writing it.
                    let superseded = get_string(&old, "supersededKey");
                    ensure_study(ctx, job, &now).await?;
                    finish_upload(ctx, job, &now, superseded.as_deref(), false).await?;
                    return Ok(match superseded {
                        Some(superseded_key) => IndexOutcome::Replaced {
                            superseded_key,
                            earlier_key: None,
                        },
                        None => IndexOutcome::AlreadyDone,
                    });
                }
                if get_s(&old, "supersededKey") == Some(job.s3_key) {
                    // A later upload already replaced this one's object (a
                    // late redelivery): it must not take the instance back.
                    finish_upload(ctx, job, &now, None, false).await?;
                    return Ok(IndexOutcome::AlreadyDone);
                }
                if get_s(&old, "sha256") == Some(job.sha256) {
                    if mark_duplicate(ctx, job, &now).await? {
                        return Ok(IndexOutcome::Duplicate);
                    }
                    // The instance changed, or the upload is no longer
                    // pending: look again, unless an earlier delivery
                    // finished it.
                    if upload_status(ctx, job).await? != Some(UploadStatus::Pending) {
                        return Ok(IndexOutcome::AlreadyDone);
                    }
                    contended += 1;
                    back_off(contended).await;
                    replacing = None;
                    continue;
                }
                if replacing.is_some() {
                    // Changed since it was read: a concurrent writer.
                    contended += 1;
                    back_off(contended).await;
                }
                replacing = Some(old);
            }
        }
    }
    Err(ArchiveError::Contended {
        upload_id: job.upload_id.to_string(),
        attempts: MAX_ATTEMPTS,
    })
}

async fn back_off(attempt: u32) {
    let jitter = rand::random::<u64>() % 20;
    tokio::time::sleep(Duration::from_millis((10 << attempt.min(5)) + jitter)).await;
}

async fn upload_status(
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

/// Writes the instance item: on condition that there is none, or, for a
/// replacement, that it is still the one read (`sha256` and `s3Key`).
async fn put_instance(
    ctx: &Context,
    job: &InstanceToIndex<'_>,
    now: &str,
    replacing: Option<&Item>,
) -> Result<InstanceWrite, ArchiveError> {
    let h = job.header;
    let key = instance_key(
        job.hospital,
        &h.study_instance_uid,
        &h.series_instance_uid,
        &h.sop_instance_uid,
    );
    let superseded = replacing.and_then(|old| get_string(old, "s3Key"));
    let mut put = ctx
        .clients
        .dynamodb
        .put_item()
        .table_name(&ctx.settings.archive_table)
        .set_item(Some(instance_item(job, key, now, superseded.as_deref())))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    put = match replacing {
        None => put.condition_expression("attribute_not_exists(pk)"),
        Some(old) => put
            .condition_expression("sha256 = :sha AND s3Key = :key")
            .expression_attribute_values(":sha", s(get_s(old, "sha256").unwrap_or_default()))
            .expression_attribute_values(":key", s(get_s(old, "s3Key").unwrap_or_default())),
    };
    match put.send().await {
        Ok(_) => Ok(InstanceWrite::Written),
        Err(e) => {
            let found = match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => Some(c.item().cloned()),
                _ => None,
            };
            match found {
                Some(item) => Ok(InstanceWrite::Found(item)),
                None => Err(ArchiveError::Write {
                    what: "instance",
                    upload_id: job.upload_id.to_string(),
                    source: e.into(),
                }),
            }
        }
    }
}

fn instance_item(
    job: &InstanceToIndex<'_>,
    mut item: Item,
    now: &str,
    superseded: Option<&str>,
) -> Item {
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
    put("modality", h.modality.as_deref().map(s));
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
    put("supersededKey", superseded.map(s));
    item
}

/// Makes sure the instance's study and series items exist, carry the
/// listed fields the header has, and that the study is open (so the sweep
/// will count it). Returns whether it created the series and the study.
///
/// Reads both items (one consistent BatchGetItem) after the instance is
/// written and writes only what is missing, so a study's instances after
/// the first cost no write here. Reading after the instance write is what
/// keeps a closing sweep from missing the instance: either this read sees
/// the study closed and reopens it, or the sweep's second look, which
/// follows its close, finds the instance.
async fn ensure_study(
    ctx: &Context,
    job: &InstanceToIndex<'_>,
    now: &str,
) -> Result<(bool, bool), ArchiveError> {
    let h = job.header;
    let table = ctx.settings.archive_table.as_str();
    let study_key = study_key(job.hospital, &h.study_instance_uid);
    let series_key = series_key(job.hospital, &h.study_instance_uid, &h.series_instance_uid);
    let found = dynamo::get_items(
        &ctx.clients.dynamodb,
        table,
        vec![study_key.clone(), series_key.clone()],
        true,
    )
    .await
    .map_err(|source| ArchiveError::Read {
        study_key: study_pk(job.hospital, &h.study_instance_uid),
        source,
    })?;
    let study = found.iter().find(|i| get_s(i, "sk") == Some("STUDY"));
    let series = found
        .iter()
        .find(|i| get_s(i, "sk").is_some_and(|sk| sk.starts_with("SERIES#")));

    let study_write = study_update(job, study, now);
    let series_write = series_update(job, series, now);
    let (a, b) = tokio::join!(
        write_if_needed(ctx, table, study_key, study_write),
        write_if_needed(ctx, table, series_key, series_write),
    );
    for result in [a, b] {
        result.map_err(|source| ArchiveError::Write {
            what: "study",
            upload_id: job.upload_id.to_string(),
            source,
        })?;
    }
    Ok((series.is_none(), study.is_none()))
}

/// Sends `expr` if it changes anything; a creation that lost to another
/// writer (its `attribute_not_exists` condition failed) is success.
async fn write_if_needed(
    ctx: &Context,
    table: &str,
    key: Item,
    expr: Option<Expr>,
) -> Result<(), aws_sdk_dynamodb::Error> {
    let Some(expr) = expr.filter(|e| !e.is_empty()) else {
        return Ok(());
    };
    match expr.send(ctx, table, key).await {
        Err(aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)) => Ok(()),
        other => other,
    }
}

/// The study write an instance needs: the whole item when the study is
/// new, the fields it lacks, and reopening when it is closed.
fn study_update(job: &InstanceToIndex<'_>, study: Option<&Item>, now: &str) -> Option<Expr> {
    let h = job.header;
    let mut e = Expr::default();
    let (gsi1pk, gsi1sk) = study_list_keys(
        job.hospital,
        h.study_date.as_deref(),
        h.study_time.as_deref(),
        &h.study_instance_uid,
    );
    let lower = h.patient_name.as_deref().map(|p| s(p.to_lowercase()));
    let fields: [(&str, Option<AttributeValue>); 13] = [
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
    ];
    // Listed fields are set once, by the first instance that carries
    // them, so a study's list entry (the index) is written rarely.
    set_missing(&mut e, study, fields);
    match study {
        None => {
            // Until the sweep counts the study, it shows this instance;
            // nothing of it is in the stored bytes yet.
            e.set("numberOfSeries", n(1));
            e.set("numberOfInstances", n(1));
            e.set("sizeBytes", n(job.size));
            e.set("countedBytes", n(0));
            e.set("countedInstances", n(0));
            if let Some(m) = h.modality.as_deref().filter(|m| !m.is_empty()) {
                e.set("modalities", AttributeValue::Ss(vec![m.to_owned()]));
            }
            e.set("createdAt", s(now));
            e.set("updatedAt", s(now));
            e.set("lastInstanceAt", s(now));
            open(&mut e, job.hospital, &h.study_instance_uid, now);
            e.condition("attribute_not_exists(pk)");
        }
        Some(st) => {
            // A study whose first instances lacked StudyDate or StudyTime
            // takes them from a later one: its list position follows.
            let (_, sort_key) = study_list_keys(
                job.hospital,
                get_s(st, "studyDate").or(h.study_date.as_deref()),
                get_s(st, "studyTime").or(h.study_time.as_deref()),
                &h.study_instance_uid,
            );
            let stored = get_s(st, "gsi1sk");
            if stored.is_some_and(|stored| stored != sort_key) {
                e.set("gsi1sk", s(sort_key));
            }
            if !get_flag(st, "open") || !st.contains_key("gsi2pk") {
                open(&mut e, job.hospital, &h.study_instance_uid, now);
            }
            if !e.is_empty() {
                e.set("updatedAt", s(now));
            }
        }
    }
    Some(e)
}

/// Marks a study open: `open`, and its entry in the open-study index.
fn open(e: &mut Expr, hospital: &HospitalId, study_uid: &str, now: &str) {
    e.set("open", AttributeValue::Bool(true));
    e.set("openedAt", s(now));
    e.set("gsi2pk", s(hospital.as_str()));
    e.set("gsi2sk", s(study_uid));
}

/// The series write an instance needs: the whole item when the series is
/// new, else the descriptive fields it lacks.
fn series_update(job: &InstanceToIndex<'_>, series: Option<&Item>, now: &str) -> Option<Expr> {
    let h = job.header;
    let mut e = Expr::default();
    let fields: [(&str, Option<AttributeValue>); 7] = [
        ("hospitalId", Some(s(job.hospital.as_str()))),
        ("studyInstanceUid", Some(s(&h.study_instance_uid))),
        ("seriesInstanceUid", Some(s(&h.series_instance_uid))),
        ("modality", h.modality.as_deref().map(s)),
        ("seriesNumber", h.series_number.map(n)),
        ("seriesDescription", h.series_description.as_deref().map(s)),
        ("bodyPartExamined", h.body_part_examined.as_deref().map(s)),
    ];
    set_missing(&mut e, series, fields);
    if series.is_none() {
        e.set("numberOfInstances", n(1));
        e.set("sizeBytes", n(job.size));
        e.set("createdAt", s(now));
        e.condition("attribute_not_exists(pk)");
    }
    if !e.is_empty() {
        e.set("updatedAt", s(now));
    }
    Some(e)
}

/// The upload's step from `pending` to `indexed`: the commit point of an
/// indexing. An upload no longer pending was finished by an earlier
/// delivery.
fn upload_indexed(
    job: &InstanceToIndex<'_>,
    now: &str,
    superseded: Option<&str>,
    duplicate: bool,
) -> Expr {
    let h = job.header;
    let mut e = Expr::default();
    e.set("status", s("indexed"));
    e.set("indexedAt", s(now));
    e.set("studyInstanceUid", s(&h.study_instance_uid));
    e.set("seriesInstanceUid", s(&h.series_instance_uid));
    e.set("sopInstanceUid", s(&h.sop_instance_uid));
    e.set("replaced", AttributeValue::Bool(superseded.is_some()));
    e.set("duplicate", AttributeValue::Bool(duplicate));
    if let Some(k) = superseded {
        e.set("supersededKey", s(k));
    }
    let pending = e.value(s("pending"));
    e.condition(format!("#status = {pending}"));
    e
}

async fn finish_upload(
    ctx: &Context,
    job: &InstanceToIndex<'_>,
    now: &str,
    superseded: Option<&str>,
    duplicate: bool,
) -> Result<(), ArchiveError> {
    let e = upload_indexed(job, now, superseded, duplicate);
    match e
        .send(
            ctx,
            &ctx.settings.tenants_table,
            upload_key(job.hospital, job.upload_id),
        )
        .await
    {
        Ok(()) | Err(aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)) => Ok(()),
        Err(source) => Err(ArchiveError::Write {
            what: "upload",
            upload_id: job.upload_id.to_string(),
            source,
        }),
    }
}

/// Records a duplicate: the upload says `indexed, duplicate`, on
/// condition that the stored instance still holds the same bytes and the
/// upload is still pending. `false` when either changed.
async fn mark_duplicate(
    ctx: &Context,
    job: &InstanceToIndex<'_>,
    now: &str,
) -> Result<bool, ArchiveError> {
    let h = job.header;
    let check = ConditionCheck::builder()
        .table_name(&ctx.settings.archive_table)
        .set_key(Some(instance_key(
            job.hospital,
            &h.study_instance_uid,
            &h.series_instance_uid,
            &h.sop_instance_uid,
        )))
        .condition_expression("sha256 = :sha")
        .expression_attribute_values(":sha", s(job.sha256))
        .build()
        .expect("table, key and condition are set");
    let upload = upload_indexed(job, now, None, true).update(
        &ctx.settings.tenants_table,
        upload_key(job.hospital, job.upload_id),
    );
    let result = ctx
        .clients
        .dynamodb
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().condition_check(check).build())
        .transact_items(TransactWriteItem::builder().update(upload).build())
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(e) => {
            let e = aws_sdk_dynamodb::Error::from(e);
            if is_condition_failure(&e) {
                return Ok(false);
            }
            Err(ArchiveError::Write {
                what: "duplicate upload",
                upload_id: job.upload_id.to_string(),
                source: e,
            })
        }
    }
}

/// A study open for instances, as the sweep finds it.
#[derive(Debug, Clone)]
pub struct OpenStudy {
    pub hospital: HospitalId,
    pub study_instance_uid: String,
}

/// The studies of `hospital` that received instances and have not been
/// announced stable since: one Query of the sparse open-study index.
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
            .table_name(&ctx.settings.archive_table)
            .index_name(OPEN_INDEX)
            .key_condition_expression("gsi2pk = :h")
            .expression_attribute_values(":h", s(hospital.as_str()))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| ArchiveError::ListOpen {
                hospital: hospital.to_string(),
                source: e.into(),
            })?;
        for item in page.items.unwrap_or_default() {
            if let Some(uid) = get_string(&item, "gsi2sk") {
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

/// Every item of a study's partition, strongly consistent.
async fn query_study(ctx: &Context, open: &OpenStudy) -> Result<Vec<Item>, ArchiveError> {
    let pk = study_pk(&open.hospital, &open.study_instance_uid);
    let mut out = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let page = ctx
            .clients
            .dynamodb
            .query()
            .table_name(&ctx.settings.archive_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(&pk))
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| ArchiveError::QueryStudy {
                study_key: pk.clone(),
                source: e.into(),
            })?;
        out.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(out),
        }
    }
}

/// One series as its instances add it up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct SeriesTotals {
    instances: u64,
    bytes: u64,
}

/// What a study's instances add up to.
#[derive(Debug, Default)]
struct Totals {
    series: BTreeMap<String, SeriesTotals>,
    instances: u64,
    bytes: u64,
    modalities: BTreeSet<String>,
    last_instance_at: Option<String>,
    /// Every instance's sort key and content hash: what a second look
    /// compares to see whether anything arrived in between.
    fingerprint: BTreeSet<(String, String)>,
}

impl Totals {
    fn of(items: &[Item]) -> Totals {
        let series_modality: BTreeMap<&str, &str> = items
            .iter()
            .filter_map(|i| {
                let uid = get_s(i, "sk")?.strip_prefix("SERIES#")?;
                Some((uid, get_s(i, "modality")?))
            })
            .collect();
        let mut t = Totals::default();
        for item in items {
            let Some(rest) = get_s(item, "sk").and_then(|sk| sk.strip_prefix("INSTANCE#")) else {
                continue;
            };
            let series_uid = get_string(item, "seriesInstanceUid")
                .or_else(|| rest.split_once('#').map(|(se, _)| se.to_owned()))
                .unwrap_or_default();
            let bytes = get_count(item, "sizeBytes");
            let totals = t.series.entry(series_uid.clone()).or_default();
            totals.instances += 1;
            totals.bytes += bytes;
            t.instances += 1;
            t.bytes += bytes;
            let modality = get_s(item, "modality")
                .or_else(|| series_modality.get(series_uid.as_str()).copied())
                .filter(|m| !m.is_empty());
            if let Some(m) = modality {
                t.modalities.insert(m.to_owned());
            }
            if let Some(at) = get_string(item, "indexedAt") {
                if t.last_instance_at.as_ref().is_none_or(|l| at > *l) {
                    t.last_instance_at = Some(at);
                }
            }
            t.fingerprint.insert((
                rest.to_owned(),
                get_string(item, "sha256").unwrap_or_default(),
            ));
        }
        t
    }
}

/// Brings one open study up to date and, when it has had no new instance
/// for `quiet`, closes it and returns what to announce.
///
/// 1. Reads the whole partition (one consistent Query, paged).
/// 2. Writes each series whose counts differ (absolute values, so a
///    repeated sweep writes the same).
/// 3. Writes the study's counts, modalities and `lastInstanceAt`, and adds
///    what changed since the last count to one stored-bytes shard, in one
///    transaction on condition that the study's `countedBytes` and
///    `countedInstances` are still what step 1 read: exactly once, however
///    many sweeps run.
/// 4. Closes a quiet study (`open = false`, out of the open index), then
///    reads the partition again: an instance that arrived in between
///    reopens it, and it is announced after its next quiet spell.
pub async fn sweep_study(
    ctx: &Context,
    open: &OpenStudy,
    now: OffsetDateTime,
    quiet: Duration,
) -> Result<Option<crate::events::StudyStable>, ArchiveError> {
    for attempt in 1..=MAX_ATTEMPTS {
        match sweep_once(ctx, open, now, quiet).await? {
            Swept::Done(stable) => return Ok(stable),
            // Another sweep counted between this one's read and write, or
            // the stored-bytes shard was busy: read again after a pause.
            Swept::Raced => back_off(attempt).await,
        }
    }
    // The next run counts it; nothing was written half-way.
    tracing::warn!(hospital_id = %open.hospital, attempts = MAX_ATTEMPTS, "study sweep kept racing");
    Ok(None)
}

enum Swept {
    Done(Option<crate::events::StudyStable>),
    Raced,
}

async fn sweep_once(
    ctx: &Context,
    open: &OpenStudy,
    now: OffsetDateTime,
    quiet: Duration,
) -> Result<Swept, ArchiveError> {
    let table = ctx.settings.archive_table.as_str();
    let pk = study_pk(&open.hospital, &open.study_instance_uid);
    let update_err = |source| ArchiveError::UpdateStudy {
        study_key: pk.clone(),
        source,
    };
    let items = query_study(ctx, open).await?;
    let Some(study) = items.iter().find(|i| get_s(i, "sk") == Some("STUDY")) else {
        return Ok(Swept::Done(None));
    };
    let totals = Totals::of(&items);
    let stamp = crate::time::rfc3339(now);
    if !get_flag(study, "open") {
        return closed_study(ctx, open, study, &totals, &stamp).await;
    }

    let last = totals
        .last_instance_at
        .clone()
        .or_else(|| get_string(study, "openedAt"))
        .unwrap_or_else(|| stamp.clone());
    let stored_modalities: BTreeSet<String> = crate::item::get_strings(study, "modalities")
        .into_iter()
        .collect();
    // A study without `countedBytes` was indexed before the sweep
    // counted studies, when every instance added to the stored bytes as
    // it was written: its own counters are what was counted.
    let legacy = !study.contains_key("countedBytes");
    let (counted_bytes, counted_instances) = if legacy {
        (
            get_count(study, "sizeBytes"),
            get_count(study, "numberOfInstances"),
        )
    } else {
        (
            get_count(study, "countedBytes"),
            get_count(study, "countedInstances"),
        )
    };
    let number_of_series = totals.series.len() as u64;
    let changed = get_count(study, "numberOfSeries") != number_of_series
        || get_count(study, "numberOfInstances") != totals.instances
        || get_count(study, "sizeBytes") != totals.bytes
        || stored_modalities != totals.modalities
        || counted_bytes != totals.bytes
        || counted_instances != totals.instances
        || legacy
        || get_s(study, "lastInstanceAt") != Some(last.as_str());
    if changed {
        let mut e = Expr::default();
        e.set("numberOfSeries", n(number_of_series));
        e.set("numberOfInstances", n(totals.instances));
        e.set("sizeBytes", n(totals.bytes));
        e.set("countedBytes", n(totals.bytes));
        e.set("countedInstances", n(totals.instances));
        e.set("lastInstanceAt", s(&last));
        e.set("updatedAt", s(&stamp));
        if totals.modalities.is_empty() {
            e.remove("modalities");
        } else {
            e.set(
                "modalities",
                AttributeValue::Ss(totals.modalities.iter().cloned().collect()),
            );
        }
        // What this sweep read must still be what was last counted.
        let (b, i) = (e.value(n(counted_bytes)), e.value(n(counted_instances)));
        let (nb, ni) = (e.name("countedBytes"), e.name("countedInstances"));
        if legacy {
            let (sb, si) = (e.name("sizeBytes"), e.name("numberOfInstances"));
            e.condition(format!(
                "attribute_not_exists({nb}) AND {sb} = {b} AND {si} = {i}"
            ));
        } else {
            e.condition(format!("{nb} = {b} AND {ni} = {i}"));
        }
        let delta_bytes = totals.bytes as i64 - counted_bytes as i64;
        let delta_instances = totals.instances as i64 - counted_instances as i64;
        let key = study_key(&open.hospital, &open.study_instance_uid);
        let result = if delta_bytes == 0 && delta_instances == 0 {
            e.send(ctx, table, key).await
        } else {
            let usage = add_stored(
                &ctx.settings.tenants_table,
                &open.hospital,
                usage_shard(&open.study_instance_uid),
                delta_bytes,
                delta_instances,
            );
            ctx.clients
                .dynamodb
                .transact_write_items()
                .transact_items(
                    TransactWriteItem::builder()
                        .update(e.update(table, key))
                        .build(),
                )
                .transact_items(TransactWriteItem::builder().update(usage).build())
                .send()
                .await
                .map(|_| ())
                .map_err(Into::into)
        };
        match result {
            Ok(()) => {}
            Err(e) if is_condition_failure(&e) => return Ok(Swept::Raced),
            Err(e) => return Err(update_err(e)),
        }
    }

    // Series after the study: a sweep that lost the study's race above
    // never writes its older view of the series.
    for (series_uid, counted) in &totals.series {
        let key = series_key(&open.hospital, &open.study_instance_uid, series_uid);
        let stored = items.iter().find(|i| i.get("sk") == key.get("sk"));
        let current = stored.map(|i| SeriesTotals {
            instances: get_count(i, "numberOfInstances"),
            bytes: get_count(i, "sizeBytes"),
        });
        if current.as_ref() == Some(counted) {
            continue;
        }
        let mut e = Expr::default();
        e.set("numberOfInstances", n(counted.instances));
        e.set("sizeBytes", n(counted.bytes));
        e.set("updatedAt", s(&stamp));
        if stored.is_none() {
            e.set("hospitalId", s(open.hospital.as_str()));
            e.set("studyInstanceUid", s(&open.study_instance_uid));
            e.set("seriesInstanceUid", s(series_uid));
            e.set("createdAt", s(&stamp));
        }
        e.send(ctx, table, key).await.map_err(update_err)?;
    }

    let quiet_since = crate::time::parse_rfc3339(&last).map(|t| now - t);
    if quiet_since.is_none_or(|q| q < quiet) {
        return Ok(Swept::Done(None));
    }

    // Close, then look again: see `ensure_study` for the other half. The
    // study stays in the open index until its announcement is published
    // ([`mark_announced`]), so a failed publish is retried.
    let mut close = Expr::default();
    close.set("open", AttributeValue::Bool(false));
    close.set("stableAt", s(&stamp));
    let (o, t) = (close.name("open"), close.value(AttributeValue::Bool(true)));
    close.condition(format!("{o} = {t}"));
    let key = study_key(&open.hospital, &open.study_instance_uid);
    match close.send(ctx, table, key.clone()).await {
        Ok(()) => {}
        Err(e) if is_condition_failure(&e) => return Ok(Swept::Done(None)),
        Err(e) => return Err(update_err(e)),
    }
    let again = Totals::of(&query_study(ctx, open).await?);
    if again.fingerprint != totals.fingerprint {
        reopen(ctx, open, &stamp).await?;
        return Ok(Swept::Done(None));
    }
    Ok(Swept::Done(Some(crate::events::StudyStable {
        hospital_id: open.hospital.to_string(),
        study_instance_uid: open.study_instance_uid.clone(),
        number_of_series,
        number_of_instances: totals.instances,
        last_instance_at: last,
        stable_at: stamp,
    })))
}

/// A closed study still in the open index: its announcement was not
/// published (the sweep stopped between closing and publishing). It is
/// announced now if nothing arrived since it was counted, else reopened.
async fn closed_study(
    ctx: &Context,
    open: &OpenStudy,
    study: &Item,
    totals: &Totals,
    stamp: &str,
) -> Result<Swept, ArchiveError> {
    if !study.contains_key("gsi2pk") {
        // The index lags the item: already announced.
        return Ok(Swept::Done(None));
    }
    let unchanged = get_count(study, "countedInstances") == totals.instances
        && get_count(study, "countedBytes") == totals.bytes
        && study.contains_key("countedBytes")
        && get_s(study, "lastInstanceAt") == totals.last_instance_at.as_deref();
    if !unchanged {
        reopen(ctx, open, stamp).await?;
        return Ok(Swept::Done(None));
    }
    Ok(Swept::Done(Some(crate::events::StudyStable {
        hospital_id: open.hospital.to_string(),
        study_instance_uid: open.study_instance_uid.clone(),
        number_of_series: totals.series.len() as u64,
        number_of_instances: totals.instances,
        last_instance_at: get_string(study, "lastInstanceAt").unwrap_or_default(),
        stable_at: get_string(study, "stableAt").unwrap_or_else(|| stamp.to_owned()),
    })))
}

async fn reopen(ctx: &Context, open: &OpenStudy, stamp: &str) -> Result<(), ArchiveError> {
    let mut e = Expr::default();
    self::open(&mut e, &open.hospital, &open.study_instance_uid, stamp);
    e.send(
        ctx,
        &ctx.settings.archive_table,
        study_key(&open.hospital, &open.study_instance_uid),
    )
    .await
    .map_err(|source| ArchiveError::UpdateStudy {
        study_key: study_pk(&open.hospital, &open.study_instance_uid),
        source,
    })
}

/// Takes an announced study out of the open index: on condition that it
/// is still closed from the announcement at `stable_at` (an instance that
/// reopened it meanwhile keeps it in).
pub async fn mark_announced(
    ctx: &Context,
    open: &OpenStudy,
    stable_at: &str,
) -> Result<(), ArchiveError> {
    let mut e = Expr::default();
    e.remove("gsi2pk");
    e.remove("gsi2sk");
    let (o, f) = (e.name("open"), e.value(AttributeValue::Bool(false)));
    let (st, at) = (e.name("stableAt"), e.value(s(stable_at)));
    e.condition(format!("{o} = {f} AND {st} = {at}"));
    let key = study_key(&open.hospital, &open.study_instance_uid);
    match e.send(ctx, &ctx.settings.archive_table, key).await {
        Ok(()) => Ok(()),
        Err(e) if is_condition_failure(&e) => Ok(()),
        Err(source) => Err(ArchiveError::UpdateStudy {
            study_key: study_pk(&open.hospital, &open.study_instance_uid),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_shards_are_stable_and_in_range() {
        let a = usage_shard("1.2.840.113619.2.55.3.604688119.969.1268071029.320");
        assert_eq!(
            a,
            usage_shard("1.2.840.113619.2.55.3.604688119.969.1268071029.320")
        );
        assert!(a < USAGE_SHARDS);
        let spread: BTreeSet<u32> = (0..200)
            .map(|i| usage_shard(&format!("2.25.{i}")))
            .collect();
        assert_eq!(spread.len() as u32, USAGE_SHARDS);
    }

    #[test]
    fn totals_count_instances_per_series_and_ignore_other_items() {
        let item = |sk: &str, size: u64, at: &str| {
            let mut i = key("h#s", sk);
            i.insert("sizeBytes".into(), n(size));
            i.insert("indexedAt".into(), s(at));
            i.insert("sha256".into(), s(sk));
            i
        };
        let mut series = key("h#s", "SERIES#1.1");
        series.insert("modality".into(), s("CT"));
        let items = vec![
            key("h#s", "STUDY"),
            series,
            item("INSTANCE#1.1#1", 10, "2026-01-01T00:00:01Z"),
            item("INSTANCE#1.1#2", 20, "2026-01-01T00:00:03Z"),
            item("INSTANCE#1.2#3", 5, "2026-01-01T00:00:02Z"),
            key("h#s", "SHARE#hosp_x"),
        ];
        let t = Totals::of(&items);
        assert_eq!((t.instances, t.bytes), (3, 35));
        assert_eq!(
            t.series["1.1"],
            SeriesTotals {
                instances: 2,
                bytes: 30
            }
        );
        assert_eq!(
            t.series["1.2"],
            SeriesTotals {
                instances: 1,
                bytes: 5
            }
        );
        assert_eq!(t.modalities, BTreeSet::from(["CT".to_owned()]));
        assert_eq!(t.last_instance_at.as_deref(), Some("2026-01-01T00:00:03Z"));
        assert_eq!(t.fingerprint.len(), 3);
    }
}
