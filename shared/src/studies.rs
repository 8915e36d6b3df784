//! Reading studies, series and instances on behalf of a hospital key: who
//! may read what (own hospital, hospitals that granted access, single
//! shared studies), the merged and paged study list, study lookup by UID,
//! and presigned downloads.
//!
//! Keys follow docs/data-model.md. A study list reads, per page, one Query
//! of `gsi1` per readable hospital, one Query of the caller's shared
//! studies, and one BatchGetItem per 100 studies for the counters, which
//! the index does not project. Nothing here ever scans.
//!
//! Studies shared one by one are listed by reading the caller's whole
//! `{hospital}#SHARED` partition on every page: meant for the tens or
//! hundreds of studies a hospital shares on purpose, not for bulk access
//! (a grant covers that).

use std::cmp::Ordering;
use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use crate::auth::{HospitalPrincipal, Principal};
use crate::context::Context;
use crate::cursor::{CursorSigner, binding_hash};
use crate::dicom::MetadataRead;
use crate::domain::HospitalId;
use crate::dynamo::{self, store_error};
use crate::error::{ApiError, ApiResult};
use crate::item::{self, Item, get_count, get_i64, get_string, get_strings, key, s};
use crate::shares;

/// Sort key of a study item.
pub const STUDY_SK: &str = "STUDY";
/// Largest `limit` of a study list.
pub const MAX_LIMIT: usize = 1000;
/// `limit` when none is given.
pub const DEFAULT_LIMIT: usize = 100;

/// Partition key of a study and its series, instances and shares.
pub fn study_pk(hospital: &HospitalId, study_uid: &str) -> String {
    format!("{hospital}#{study_uid}")
}

/// The hospital key of a caller that may read patient data: a reader or
/// an admin of a hospital. The platform admin and agent keys get 403.
pub fn reader(principal: &Principal) -> ApiResult<&HospitalPrincipal> {
    match principal {
        Principal::PlatformAdmin => Err(ApiError::forbidden(
            "Forbidden",
            "the platform-admin key reads no patient data; use a hospital's reader or admin key",
        )),
        Principal::Hospital(p) if p.role.can_read() => Ok(p),
        Principal::Hospital(_) => Err(ApiError::role_required("read studies")),
    }
}

/// Checks that `uid` looks like a DICOM UID (digits and dots, at most 64
/// characters); a 400 naming `param` otherwise.
pub fn validate_uid(param: &str, uid: &str) -> ApiResult<()> {
    let ok = !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !uid.starts_with('.')
        && !uid.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "{param} is not a DICOM UID: use digits and dots, at most 64 characters"
        )))
    }
}

/// Hospitals a caller reads as a whole: its own first, then those that
/// granted it access.
pub fn readable_hospitals(p: &HospitalPrincipal) -> Vec<HospitalId> {
    let mut out = vec![p.hospital_id.clone()];
    for h in &p.readable_hospitals {
        if !out.contains(h) {
            out.push(h.clone());
        }
    }
    out
}

/// A study as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Study {
    /// Study Instance UID (0020,000D).
    pub study_instance_uid: String,
    /// The hospital that holds it.
    pub hospital_id: String,
    /// Patient ID (0010,0020).
    pub patient_id: Option<String>,
    /// Patient's Name (0010,0010), `FAMILY^GIVEN`.
    pub patient_name: Option<String>,
    /// Patient's Birth Date (0010,0030), `YYYYMMDD`.
    pub patient_birth_date: Option<String>,
    /// Patient's Sex (0010,0040).
    pub patient_sex: Option<String>,
    /// Study Date (0008,0020), `YYYYMMDD`.
    pub study_date: Option<String>,
    /// Study Time (0008,0030).
    pub study_time: Option<String>,
    /// Accession Number (0008,0050).
    pub accession_number: Option<String>,
    /// Study Description (0008,1030).
    pub study_description: Option<String>,
    /// Modalities of its series, sorted.
    pub modalities: Vec<String>,
    /// Series indexed so far.
    pub number_of_series: u64,
    /// Instances indexed so far.
    pub number_of_instances: u64,
    /// Bytes of DICOM stored.
    pub size_bytes: u64,
    /// Hospitals it is shared with (only the owner sees them all).
    pub shared_with: Vec<String>,
    /// When the first instance was indexed (RFC 3339).
    pub created_at: Option<String>,
    /// When it last changed (RFC 3339).
    pub updated_at: Option<String>,
}

impl Study {
    /// Reads a study item; `None` when it lacks its identity.
    pub fn from_item(item: &Item) -> Option<Self> {
        Some(Study {
            study_instance_uid: get_string(item, "studyInstanceUid")?,
            hospital_id: get_string(item, "hospitalId")?,
            patient_id: get_string(item, "patientId"),
            patient_name: get_string(item, "patientName"),
            patient_birth_date: get_string(item, "patientBirthDate"),
            patient_sex: get_string(item, "patientSex"),
            study_date: get_string(item, "studyDate"),
            study_time: get_string(item, "studyTime"),
            accession_number: get_string(item, "accessionNumber"),
            study_description: get_string(item, "studyDescription"),
            modalities: get_strings(item, "modalities"),
            number_of_series: get_count(item, "numberOfSeries"),
            number_of_instances: get_count(item, "numberOfInstances"),
            size_bytes: get_count(item, "sizeBytes"),
            shared_with: get_strings(item, "sharedWith"),
            created_at: get_string(item, "createdAt"),
            updated_at: get_string(item, "updatedAt"),
        })
    }
}

impl Study {
    /// Hides from a reader of another hospital's study which other
    /// hospitals it is shared with: only the owner sees the whole list.
    pub fn redact_for(&mut self, caller: &HospitalId) {
        if self.hospital_id != caller.as_str() {
            self.shared_with.retain(|h| h == caller.as_str());
        }
    }
}

/// A series as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    /// Series Instance UID (0020,000E).
    pub series_instance_uid: String,
    /// Study Instance UID (0020,000D).
    pub study_instance_uid: String,
    /// The hospital that holds it.
    pub hospital_id: String,
    /// Modality (0008,0060).
    pub modality: Option<String>,
    /// Series Number (0020,0011).
    pub series_number: Option<i64>,
    /// Series Description (0008,103E).
    pub series_description: Option<String>,
    /// Body Part Examined (0018,0015).
    pub body_part_examined: Option<String>,
    /// Instances indexed so far.
    pub number_of_instances: u64,
    /// Bytes of DICOM stored.
    pub size_bytes: u64,
    /// When the first instance was indexed (RFC 3339).
    pub created_at: Option<String>,
    /// When it last changed (RFC 3339).
    pub updated_at: Option<String>,
}

impl Series {
    /// Reads a series item; `None` when it lacks its identity.
    pub fn from_item(item: &Item) -> Option<Self> {
        Some(Series {
            series_instance_uid: get_string(item, "seriesInstanceUid")?,
            study_instance_uid: get_string(item, "studyInstanceUid")?,
            hospital_id: get_string(item, "hospitalId")?,
            modality: get_string(item, "modality"),
            series_number: get_i64(item, "seriesNumber"),
            series_description: get_string(item, "seriesDescription"),
            body_part_examined: get_string(item, "bodyPartExamined"),
            number_of_instances: get_count(item, "numberOfInstances"),
            size_bytes: get_count(item, "sizeBytes"),
            created_at: get_string(item, "createdAt"),
            updated_at: get_string(item, "updatedAt"),
        })
    }
}

/// An instance as the read paths use it.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// The hospital that holds it.
    pub hospital_id: String,
    /// Study Instance UID (0020,000D).
    pub study_instance_uid: String,
    /// Series Instance UID (0020,000E).
    pub series_instance_uid: String,
    /// SOP Instance UID (0008,0018).
    pub sop_instance_uid: String,
    /// SOP Class UID (0008,0016).
    pub sop_class_uid: Option<String>,
    /// Instance Number (0020,0013).
    pub instance_number: Option<i64>,
    /// Transfer syntax of the stored object.
    pub transfer_syntax_uid: Option<String>,
    /// Number of Frames (0028,0008).
    pub number_of_frames: Option<i64>,
    /// Rows (0028,0010).
    pub rows: Option<i64>,
    /// Columns (0028,0011).
    pub columns: Option<i64>,
    /// The object's key, under `dicom/{hospital}/`.
    pub s3_key: String,
    /// Bytes of DICOM stored.
    pub size_bytes: u64,
}

impl Instance {
    /// Reads an instance item; `None` when it lacks its identity or object.
    pub fn from_item(item: &Item) -> Option<Self> {
        Some(Instance {
            hospital_id: get_string(item, "hospitalId")?,
            study_instance_uid: get_string(item, "studyInstanceUid")?,
            series_instance_uid: get_string(item, "seriesInstanceUid")?,
            sop_instance_uid: get_string(item, "sopInstanceUid")?,
            sop_class_uid: get_string(item, "sopClassUid"),
            instance_number: get_i64(item, "instanceNumber"),
            transfer_syntax_uid: get_string(item, "transferSyntaxUid"),
            number_of_frames: get_i64(item, "numberOfFrames"),
            rows: get_i64(item, "rows"),
            columns: get_i64(item, "columns"),
            s3_key: get_string(item, "s3Key")?,
            size_bytes: get_count(item, "sizeBytes"),
        })
    }
}

/// The DICOM JSON header the indexer stored with an instance, whether it
/// stored it as JSON text, as a map, or as JSON bytes.
pub fn instance_metadata(item: &Item) -> Option<serde_json::Value> {
    match item.get("metadata")? {
        AttributeValue::S(text) => serde_json::from_str(text).ok(),
        AttributeValue::B(bytes) => serde_json::from_slice(bytes.as_ref()).ok(),
        other @ AttributeValue::M(_) => Some(item::to_json(other)),
        _ => None,
    }
}

/// The DICOM JSON header of an instance, read from its object with one
/// ranged GET of `headerBytes` (the indexer recorded where the header
/// ends) that stops before Pixel Data. An item that carries `metadata`
/// itself is answered from it.
pub async fn load_instance_metadata(
    ctx: &Context,
    hospital: &HospitalId,
    item: &Item,
) -> ApiResult<Option<serde_json::Value>> {
    if let Some(json) = instance_metadata(item) {
        return Ok(Some(json));
    }
    let Some(inst) = Instance::from_item(item) else {
        return Ok(None);
    };
    own_object(hospital, &inst.s3_key)?;

    let limits = crate::dicom::HeaderLimits::default();
    let size = inst.size_bytes;
    // The header's end plus room for the element that follows it, which
    // tells the reader the header is over.
    let mut until = match get_count(item, "headerBytes") {
        0 => 64 * 1024,
        header => header + 256,
    }
    .min(size.max(1));
    // A header is bounded by the limits; each pass fetches at least what
    // the reader asked for, so this ends after a few GETs.
    for _ in 0..8 {
        let prefix = read_range(ctx, &inst.s3_key, until).await?;
        match crate::dicom::read_metadata(&prefix, size, &limits) {
            Ok(MetadataRead::Complete(json)) => return Ok(Some(json)),
            Ok(MetadataRead::NeedMore { until: more }) if more > until => until = more,
            Ok(MetadataRead::NeedMore { .. }) => break,
            Err(e) => {
                return Err(ApiError::internal(format!(
                    "re-reading a stored header: {e}"
                )));
            }
        }
    }
    Err(ApiError::internal(
        "re-reading a stored header did not finish",
    ))
}

async fn read_range(ctx: &Context, s3_key: &str, until: u64) -> ApiResult<Vec<u8>> {
    let out = ctx
        .clients
        .s3
        .get_object()
        .bucket(&ctx.settings.bucket)
        .key(s3_key)
        .range(format!("bytes=0-{}", until.saturating_sub(1)))
        .send()
        .await
        .map_err(|e| ApiError::internal(format!("ranged get: {e:?}")))?;
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| ApiError::internal(format!("read range: {e}")))?;
    Ok(bytes.into_bytes().to_vec())
}

/// Which studies a list wants. Values that may be patient data never
/// leave this struct except as a hash (for cursors) or as field names
/// (for the audit trail).
#[derive(Debug, Clone, Default)]
pub struct StudyFilter {
    /// Exact PatientID.
    pub patient_id: Option<String>,
    /// Lower-case prefix of the patient name.
    pub patient_name_prefix: Option<String>,
    /// Lower-case pattern with `*` and `?` wildcards the whole name must
    /// match (DICOMweb); its literal head is also used as a prefix.
    pub patient_name_pattern: Option<String>,
    /// A modality the study holds.
    pub modality: Option<String>,
    /// First study date, `YYYYMMDD`, inclusive.
    pub from: Option<String>,
    /// Last study date, `YYYYMMDD`, inclusive.
    pub to: Option<String>,
    /// Exact AccessionNumber.
    pub accession_number: Option<String>,
    /// Only these StudyInstanceUIDs (at most 100).
    pub study_uids: Vec<String>,
    /// Only this hospital's studies.
    pub hospital: Option<HospitalId>,
}

impl StudyFilter {
    /// Names of the filters in use, for the audit trail.
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |on: bool, name: &str| {
            if on {
                out.push(name.to_owned());
            }
        };
        add(self.patient_id.is_some(), "patientId");
        add(
            self.patient_name_prefix.is_some() || self.patient_name_pattern.is_some(),
            "patientName",
        );
        add(self.modality.is_some(), "modality");
        add(self.from.is_some(), "from");
        add(self.to.is_some(), "to");
        add(self.accession_number.is_some(), "accessionNumber");
        add(!self.study_uids.is_empty(), "studyInstanceUid");
        add(self.hospital.is_some(), "hospitalId");
        out
    }

    fn hash(&self) -> String {
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "\u{0}".into());
        let parts = [
            opt(&self.patient_id),
            opt(&self.patient_name_prefix),
            opt(&self.patient_name_pattern),
            opt(&self.modality),
            opt(&self.from),
            opt(&self.to),
            opt(&self.accession_number),
            self.study_uids.join(","),
            self.hospital
                .as_ref()
                .map(|h| h.to_string())
                .unwrap_or_default(),
        ];
        binding_hash(parts.iter().map(String::as_str))
    }

    fn name_prefix(&self) -> Option<String> {
        let from_pattern = self.patient_name_pattern.as_ref().map(|p| {
            p.chars()
                .take_while(|c| *c != '*' && *c != '?')
                .collect::<String>()
        });
        match (&self.patient_name_prefix, from_pattern) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(p)) if !p.is_empty() => Some(p),
            _ => None,
        }
    }

    /// Whether a study item passes every filter (the same test the Query
    /// filter expression makes, plus the wildcard pattern).
    fn matches(&self, item: &Item, sort_key: &str) -> bool {
        let eq = |want: &Option<String>, attr: &str| {
            want.as_ref()
                .is_none_or(|w| get_string(item, attr).as_deref() == Some(w))
        };
        let name = get_string(item, "patientNameLower")
            .or_else(|| get_string(item, "patientName").map(|n| n.to_lowercase()))
            .unwrap_or_default();
        let date = &sort_key[..sort_key.len().min(8)];
        eq(&self.patient_id, "patientId")
            && eq(&self.accession_number, "accessionNumber")
            && self.name_prefix().is_none_or(|p| name.starts_with(&p))
            && self
                .patient_name_pattern
                .as_ref()
                .is_none_or(|p| wildcard_match(p, &name))
            && self
                .modality
                .as_ref()
                .is_none_or(|m| get_strings(item, "modalities").contains(m))
            && self.from.as_ref().is_none_or(|f| date >= f.as_str())
            && self.to.as_ref().is_none_or(|t| date <= t.as_str())
            && (self.study_uids.is_empty()
                || get_string(item, "studyInstanceUid")
                    .is_some_and(|u| self.study_uids.contains(&u)))
    }

    fn has_server_filter(&self) -> bool {
        self.patient_id.is_some()
            || self.name_prefix().is_some()
            || self.modality.is_some()
            || self.accession_number.is_some()
            || !self.study_uids.is_empty()
    }
}

/// Matches `text` against `pattern` where `*` is any run and `?` any one
/// character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Where in the merged list the next page starts: after the study with
/// this `gsi1sk` in this hospital. The merged list is ordered by
/// `(gsi1sk, hospitalId)` descending, so one position serves every source.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Position {
    k: String,
    h: String,
}

/// One study on its way into a page.
struct Candidate {
    sort_key: String,
    hospital: String,
    item: Item,
    /// Whether `item` is the whole study item (shared studies) rather
    /// than the index projection.
    full: bool,
}

impl Candidate {
    fn order(&self, other: &Self) -> Ordering {
        (other.sort_key.as_str(), other.hospital.as_str())
            .cmp(&(self.sort_key.as_str(), self.hospital.as_str()))
    }

    fn after(&self, pos: &Position) -> bool {
        (self.sort_key.as_str(), self.hospital.as_str()) < (pos.k.as_str(), pos.h.as_str())
    }
}

/// A page of studies.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StudyPage {
    /// The studies of this page, newest first.
    pub studies: Vec<Study>,
    /// Pass back as `cursor` for the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// Lists the studies `caller` may read, newest `studyDate` first, one page
/// of at most `limit`, resuming at `cursor` (a `nextCursor` of an earlier
/// page of the same caller and filters; anything else is a 400).
pub async fn list_studies(
    ctx: &Context,
    caller: &HospitalPrincipal,
    filter: &StudyFilter,
    limit: usize,
    cursor: Option<&str>,
) -> ApiResult<StudyPage> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let secrets = ctx.secrets_for_route().await?;
    let signer = CursorSigner::new(&secrets.pepper, "studies");
    let sources = readable_hospitals(caller);
    let binding = format!(
        "{}|{}|{}",
        caller.hospital_id,
        filter.hash(),
        binding_hash(sources.iter().map(HospitalId::as_str))
    );
    let after: Option<Position> = match cursor {
        Some(c) => Some(signer.open("cursor", &binding, c)?),
        None => None,
    };

    let (studies, more) = collect(ctx, caller, filter, after.as_ref(), limit, 0).await?;

    let next_cursor = match (more, studies.last()) {
        (true, Some(last)) => Some(signer.seal(&binding, last.0.as_ref().expect("position"))),
        _ => None,
    };
    Ok(StudyPage {
        studies: studies.into_iter().map(|(_, s)| s).collect(),
        next_cursor,
    })
}

/// The studies `caller` may read that match `filter`, skipping `offset`
/// and returning at most `limit`: the DICOMweb search, which pages by
/// offset.
pub async fn search_studies(
    ctx: &Context,
    caller: &HospitalPrincipal,
    filter: &StudyFilter,
    offset: usize,
    limit: usize,
) -> ApiResult<Vec<Study>> {
    let (studies, _) = collect(ctx, caller, filter, None, offset + limit, offset).await?;
    Ok(studies.into_iter().map(|(_, s)| s).collect())
}

/// The first `want` studies after `after` in merged order, less the first
/// `skip` of them (read from the index only, never fetched in full), with
/// whether more follow.
async fn collect(
    ctx: &Context,
    caller: &HospitalPrincipal,
    filter: &StudyFilter,
    after: Option<&Position>,
    want: usize,
    skip: usize,
) -> ApiResult<(Vec<(Option<Position>, Study)>, bool)> {
    let readable = readable_hospitals(caller);
    let sources: Vec<&HospitalId> = readable
        .iter()
        .filter(|h| filter.hospital.as_ref().is_none_or(|f| f == *h))
        .collect();

    // Every source yields up to want + 1 candidates, so the merge knows
    // whether another page follows.
    let queries = sources
        .iter()
        .map(|h| query_hospital(ctx, h, filter, after, want + 1));
    let mut candidates: Vec<Candidate> = Vec::new();
    for found in futures::future::join_all(queries).await {
        candidates.extend(found?);
    }
    candidates.extend(shared_candidates(ctx, caller, &readable, filter, after).await?);

    candidates.sort_by(Candidate::order);
    let more = candidates.len() > want;
    candidates.truncate(want);
    candidates.drain(..skip.min(candidates.len()));

    // The index does not project the counters: read them from the study
    // items, in one batch per hundred.
    let keys: Vec<Item> = candidates
        .iter()
        .filter(|c| !c.full)
        .filter_map(|c| {
            let uid = get_string(&c.item, "studyInstanceUid")?;
            Some(key(format!("{}#{uid}", c.hospital), STUDY_SK))
        })
        .collect();
    let mut full: HashMap<String, Item> = HashMap::new();
    for item in dynamo::batch_get(ctx, &ctx.settings.archive_table, keys).await? {
        if let Some(pk) = get_string(&item, "pk") {
            full.insert(pk, item);
        }
    }

    let mut out = Vec::with_capacity(candidates.len());
    for c in candidates {
        let pos = Position {
            k: c.sort_key.clone(),
            h: c.hospital.clone(),
        };
        let item = if c.full {
            c.item
        } else {
            let pk = get_string(&c.item, "pk").unwrap_or_default();
            // A study deleted between the Query and the read falls back
            // to what the index held.
            full.remove(&pk).unwrap_or(c.item)
        };
        if let Some(mut study) = Study::from_item(&item) {
            study.redact_for(&caller.hospital_id);
            out.push((Some(pos), study));
        }
    }
    Ok((out, more))
}

/// Up to `want` studies of `hospital` after `after`, newest first: one
/// Query of `gsi1` per 1 MB or `want` items.
async fn query_hospital(
    ctx: &Context,
    hospital: &HospitalId,
    filter: &StudyFilter,
    after: Option<&Position>,
    want: usize,
) -> ApiResult<Vec<Candidate>> {
    // The date range and the resume point are bounds on gsi1sk, which
    // starts with studyDate and studyTime. `~` sorts after every digit,
    // `.` and `#`, so `{to}~` bounds the whole last day.
    let lower = filter.from.clone();
    let mut upper = filter.to.as_ref().map(|t| format!("{t}~"));
    if let Some(pos) = after {
        if upper.as_ref().is_none_or(|u| pos.k < *u) {
            upper = Some(pos.k.clone());
        }
    }
    let key_condition = match (&lower, &upper) {
        (Some(lo), Some(hi)) if lo > hi => return Ok(Vec::new()),
        (Some(_), Some(_)) => "gsi1pk = :h AND gsi1sk BETWEEN :lo AND :hi",
        (Some(_), None) => "gsi1pk = :h AND gsi1sk >= :lo",
        (None, Some(_)) => "gsi1pk = :h AND gsi1sk <= :hi",
        (None, None) => "gsi1pk = :h",
    };
    let mut values: HashMap<String, AttributeValue> =
        HashMap::from([(":h".into(), s(hospital.as_str()))]);
    if let Some(lo) = lower {
        values.insert(":lo".into(), s(lo));
    }
    if let Some(hi) = upper {
        values.insert(":hi".into(), s(hi));
    }
    let filter_expr = filter_expression(filter, &mut values);

    let mut out = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let page_limit = if filter.has_server_filter() {
            None
        } else {
            Some((want + 1 - out.len()) as i32)
        };
        let resp = ctx
            .clients
            .dynamodb
            .query()
            .table_name(&ctx.settings.archive_table)
            .index_name("gsi1")
            .key_condition_expression(key_condition)
            .set_filter_expression(filter_expr.clone())
            .set_expression_attribute_values(Some(values.clone()))
            .scan_index_forward(false)
            .set_limit(page_limit)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| store_error("query studies", e))?;
        for item in resp.items.unwrap_or_default() {
            let Some(sort_key) = get_string(&item, "gsi1sk") else {
                continue;
            };
            let c = Candidate {
                sort_key,
                hospital: hospital.to_string(),
                item,
                full: false,
            };
            if after.is_some_and(|p| !c.after(p)) || !filter.matches(&c.item, &c.sort_key) {
                continue;
            }
            out.push(c);
        }
        start = resp.last_evaluated_key.filter(|k| !k.is_empty());
        if out.len() >= want || start.is_none() {
            break;
        }
    }
    out.truncate(want);
    Ok(out)
}

/// The Query filter expression for the filters the index can test.
fn filter_expression(
    filter: &StudyFilter,
    values: &mut HashMap<String, AttributeValue>,
) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(v) = &filter.patient_id {
        values.insert(":pid".into(), s(v));
        parts.push("patientId = :pid".to_owned());
    }
    if let Some(v) = filter.name_prefix() {
        values.insert(":pn".into(), s(v));
        parts.push("begins_with(patientNameLower, :pn)".to_owned());
    }
    if let Some(v) = &filter.modality {
        values.insert(":mod".into(), s(v));
        parts.push("contains(modalities, :mod)".to_owned());
    }
    if let Some(v) = &filter.accession_number {
        values.insert(":acc".into(), s(v));
        parts.push("accessionNumber = :acc".to_owned());
    }
    if !filter.study_uids.is_empty() {
        let names: Vec<String> = filter
            .study_uids
            .iter()
            .enumerate()
            .map(|(i, uid)| {
                let name = format!(":u{i}");
                values.insert(name.clone(), s(uid));
                name
            })
            .collect();
        parts.push(format!("studyInstanceUid IN ({})", names.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join(" AND "))
}

/// Studies shared with the caller one by one, from hospitals it does not
/// already read as a whole, that match `filter` and come after `after`.
async fn shared_candidates(
    ctx: &Context,
    caller: &HospitalPrincipal,
    readable: &[HospitalId],
    filter: &StudyFilter,
    after: Option<&Position>,
) -> ApiResult<Vec<Candidate>> {
    let shares = shares::list_shared_with(ctx, &caller.hospital_id).await?;
    let keys: Vec<Item> = shares
        .iter()
        .filter(|sh| !readable.contains(&sh.owner))
        .filter(|sh| filter.hospital.as_ref().is_none_or(|h| *h == sh.owner))
        .map(|sh| key(study_pk(&sh.owner, &sh.study_uid), STUDY_SK))
        .collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for item in dynamo::batch_get(ctx, &ctx.settings.archive_table, keys).await? {
        let (Some(sort_key), Some(hospital)) =
            (get_string(&item, "gsi1sk"), get_string(&item, "hospitalId"))
        else {
            continue;
        };
        let c = Candidate {
            sort_key,
            hospital,
            item,
            full: true,
        };
        if after.is_some_and(|p| !c.after(p)) || !filter.matches(&c.item, &c.sort_key) {
            continue;
        }
        out.push(c);
    }
    Ok(out)
}

/// How the caller reaches a study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// The caller's own hospital holds it.
    Own,
    /// Its hospital granted the caller's user access to all its studies.
    Granted,
    /// Its hospital shared this one study with the caller's hospital.
    Shared,
}

/// A study the caller may read, with the full study item.
#[derive(Debug, Clone)]
pub struct ReadableStudy {
    /// The hospital that holds the study.
    pub hospital: HospitalId,
    /// Its Study Instance UID.
    pub study_uid: String,
    /// How the caller reaches it.
    pub access: Access,
    /// The whole study item.
    pub item: Item,
}

impl ReadableStudy {
    /// The study as `caller` may see it.
    pub fn study(&self, caller: &HospitalId) -> Option<Study> {
        let mut study = Study::from_item(&self.item)?;
        study.redact_for(caller);
        Some(study)
    }
}

/// Finds the study `study_uid` among those `caller` may read: in
/// `hospital` when given, else its own first, then the granted and shared
/// ones. 404 when it reads none (another tenant's study included); 409 when
/// several hospitals it reads hold the UID and none was named.
pub async fn resolve_study(
    ctx: &Context,
    caller: &HospitalPrincipal,
    study_uid: &str,
    hospital: Option<&HospitalId>,
) -> ApiResult<ReadableStudy> {
    let not_found = || ApiError::not_found(format!("study {study_uid}"));
    let readable = readable_hospitals(caller);
    let access_of = |h: &HospitalId| {
        if *h == caller.hospital_id {
            Access::Own
        } else {
            Access::Granted
        }
    };

    if let Some(h) = hospital {
        let access = if readable.contains(h) {
            access_of(h)
        } else if shares::share_active(ctx, &caller.hospital_id, h, study_uid).await? {
            Access::Shared
        } else {
            return Err(not_found());
        };
        let item = get_study_item(ctx, h, study_uid)
            .await?
            .ok_or_else(not_found)?;
        return Ok(ReadableStudy {
            hospital: h.clone(),
            study_uid: study_uid.into(),
            access,
            item,
        });
    }

    if let Some(item) = get_study_item(ctx, &caller.hospital_id, study_uid).await? {
        return Ok(ReadableStudy {
            hospital: caller.hospital_id.clone(),
            study_uid: study_uid.into(),
            access: Access::Own,
            item,
        });
    }

    let mut wanted: Vec<(HospitalId, Access)> = readable
        .iter()
        .skip(1)
        .map(|h| (h.clone(), Access::Granted))
        .collect();
    for sh in shares::list_shared_with(ctx, &caller.hospital_id).await? {
        if sh.study_uid == study_uid && !wanted.iter().any(|(h, _)| *h == sh.owner) {
            wanted.push((sh.owner, Access::Shared));
        }
    }
    if wanted.is_empty() {
        return Err(not_found());
    }
    let keys = wanted
        .iter()
        .map(|(h, _)| key(study_pk(h, study_uid), STUDY_SK))
        .collect();
    let mut found: Vec<ReadableStudy> = Vec::new();
    for item in dynamo::batch_get(ctx, &ctx.settings.archive_table, keys).await? {
        let Some(h) = get_string(&item, "hospitalId").and_then(|h| h.parse::<HospitalId>().ok())
        else {
            continue;
        };
        let Some((_, access)) = wanted.iter().find(|(w, _)| *w == h) else {
            continue;
        };
        found.push(ReadableStudy {
            hospital: h,
            study_uid: study_uid.into(),
            access: *access,
            item,
        });
    }
    match found.len() {
        0 => Err(not_found()),
        1 => Ok(found.remove(0)),
        _ => {
            let mut ids: Vec<String> = found.iter().map(|f| f.hospital.to_string()).collect();
            ids.sort();
            Err(ApiError::conflict(format!(
                "study {study_uid} is held by several hospitals you can read ({}); \
                 name one with ?hospitalId=",
                ids.join(", ")
            )))
        }
    }
}

/// The study item of `hospital`, if any.
pub async fn get_study_item(
    ctx: &Context,
    hospital: &HospitalId,
    study_uid: &str,
) -> ApiResult<Option<Item>> {
    get_item(ctx, study_pk(hospital, study_uid), STUDY_SK.into()).await
}

async fn get_item(ctx: &Context, pk: String, sk: String) -> ApiResult<Option<Item>> {
    let out = ctx
        .clients
        .dynamodb
        .get_item()
        .table_name(&ctx.settings.archive_table)
        .set_key(Some(key(pk, sk)))
        .send()
        .await
        .map_err(|e| store_error("get item", e))?;
    Ok(out.item)
}

/// Every item of a study's partition whose sort key starts with `prefix`,
/// in sort-key order, from after `start_after` (a sort key), at most
/// `limit` when given. Returns the items and the last sort key read when
/// more remain.
pub async fn query_study_items(
    ctx: &Context,
    hospital: &HospitalId,
    study_uid: &str,
    prefix: &str,
    start_after: Option<String>,
    limit: Option<usize>,
) -> ApiResult<(Vec<Item>, Option<String>)> {
    let pk = study_pk(hospital, study_uid);
    let mut out: Vec<Item> = Vec::new();
    let mut start = start_after.map(|sk| key(pk.clone(), sk));
    loop {
        let page_limit = limit.map(|l| (l - out.len()) as i32);
        let resp = ctx
            .clients
            .dynamodb
            .query()
            .table_name(&ctx.settings.archive_table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":prefix", s(prefix))
            .set_limit(page_limit)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| store_error("query study items", e))?;
        out.extend(resp.items.unwrap_or_default());
        start = resp.last_evaluated_key.filter(|k| !k.is_empty());
        let full = limit.is_some_and(|l| out.len() >= l);
        if start.is_none() || full {
            let last = start.and_then(|k| k.get("sk").and_then(|v| v.as_s().ok()).cloned());
            return Ok((out, last));
        }
    }
}

/// The series of a study, by series number then UID.
pub async fn list_series(
    ctx: &Context,
    hospital: &HospitalId,
    study_uid: &str,
) -> ApiResult<Vec<Series>> {
    let (items, _) = query_study_items(ctx, hospital, study_uid, "SERIES#", None, None).await?;
    let mut series: Vec<Series> = items.iter().filter_map(Series::from_item).collect();
    series.sort_by(|a, b| {
        (a.series_number.unwrap_or(i64::MAX), &a.series_instance_uid)
            .cmp(&(b.series_number.unwrap_or(i64::MAX), &b.series_instance_uid))
    });
    Ok(series)
}

/// The instance items of a study, or of one of its series.
pub async fn list_instance_items(
    ctx: &Context,
    hospital: &HospitalId,
    study_uid: &str,
    series_uid: Option<&str>,
) -> ApiResult<Vec<Item>> {
    let prefix = match series_uid {
        Some(se) => format!("INSTANCE#{se}#"),
        None => "INSTANCE#".to_owned(),
    };
    let (items, _) = query_study_items(ctx, hospital, study_uid, &prefix, None, None).await?;
    Ok(items)
}

/// One instance item.
pub async fn get_instance_item(
    ctx: &Context,
    hospital: &HospitalId,
    study_uid: &str,
    series_uid: &str,
    sop_uid: &str,
) -> ApiResult<Option<Item>> {
    get_item(
        ctx,
        study_pk(hospital, study_uid),
        format!("INSTANCE#{series_uid}#{sop_uid}"),
    )
    .await
}

/// Checks that `s3_key` lies under `hospital`'s own prefix: nothing is
/// ever presigned or read under another hospital's.
fn own_object(hospital: &HospitalId, s3_key: &str) -> ApiResult<()> {
    if s3_key.starts_with(&format!("dicom/{hospital}/")) {
        Ok(())
    } else {
        Err(ApiError::internal(format!(
            "instance object outside {hospital}'s prefix"
        )))
    }
}

/// A presigned GET of an instance's object, valid for the configured
/// lifetime (at most 15 minutes), with its expiry time.
pub async fn presign_download(
    ctx: &Context,
    hospital: &HospitalId,
    s3_key: &str,
) -> ApiResult<(String, time::OffsetDateTime)> {
    own_object(hospital, s3_key)?;
    let ttl = ctx
        .settings
        .presign_ttl
        .min(std::time::Duration::from_secs(900));
    let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(ttl)
        .map_err(|e| ApiError::internal(format!("presign config: {e}")))?;
    let expires_at = crate::time::now() + ttl;
    let req = ctx
        .clients
        .s3
        .get_object()
        .bucket(&ctx.settings.bucket)
        .key(s3_key)
        .presigned(config)
        .await
        .map_err(|e| ApiError::internal(format!("presign get: {e}")))?;
    Ok((req.uri().to_owned(), expires_at))
}

/// The bytes of an instance's object.
pub async fn read_object(ctx: &Context, hospital: &HospitalId, s3_key: &str) -> ApiResult<Vec<u8>> {
    own_object(hospital, s3_key)?;
    let out = ctx
        .clients
        .s3
        .get_object()
        .bucket(&ctx.settings.bucket)
        .key(s3_key)
        .send()
        .await
        .map_err(|e| ApiError::internal(format!("get object: {e:?}")))?;
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| ApiError::internal(format!("read object: {e}")))?;
    Ok(bytes.into_bytes().to_vec())
}

/// Validates a `YYYYMMDD` date, naming `param` when it is wrong.
pub fn parse_dicom_date(param: &str, value: &str) -> ApiResult<String> {
    let format = time::macros::format_description!("[year][month][day]");
    let ok = value.len() == 8 && time::Date::parse(value, &format).is_ok();
    if ok {
        Ok(value.to_owned())
    } else {
        Err(ApiError::validation(format!(
            "{param} must be a date written YYYYMMDD, such as 20240131"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_dicom() {
        assert!(wildcard_match("doe*", "doe^john"));
        assert!(wildcard_match("*john", "doe^john"));
        assert!(wildcard_match("d?e^*", "doe^john"));
        assert!(!wildcard_match("d?e", "doe^john"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("smith*", "doe^john"));
    }

    #[test]
    fn dates_and_uids_are_checked() {
        assert!(parse_dicom_date("from", "20240131").is_ok());
        for bad in ["2024013", "20241301", "2024-01-31", "abcdefgh"] {
            let err = parse_dicom_date("from", bad).unwrap_err();
            assert!(err.message.contains("from"), "{bad}");
        }
        assert!(validate_uid("studyUid", "1.2.840.10008.1").is_ok());
        assert!(validate_uid("studyUid", "1.2.x").is_err());
        assert!(validate_uid("studyUid", &"1".repeat(65)).is_err());
    }

    #[test]
    fn merged_order_is_date_then_hospital_descending() {
        let c = |k: &str, h: &str| Candidate {
            sort_key: k.into(),
            hospital: h.into(),
            item: Item::new(),
            full: false,
        };
        let mut v = vec![
            c("2023", "b"),
            c("2024", "a"),
            c("2024", "b"),
            c("2022", "a"),
        ];
        v.sort_by(Candidate::order);
        let got: Vec<(String, String)> = v
            .iter()
            .map(|c| (c.sort_key.clone(), c.hospital.clone()))
            .collect();
        assert_eq!(got[0], ("2024".into(), "b".into()));
        assert_eq!(got[1], ("2024".into(), "a".into()));
        let pos = Position {
            k: "2024".into(),
            h: "b".into(),
        };
        assert!(v[1].after(&pos));
        assert!(!v[0].after(&pos));
    }
}
