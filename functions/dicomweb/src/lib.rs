//! DICOMweb under `/dicomweb` for viewers and scripts, with the same keys
//! and tenant rules as the API: QIDO-RS search of studies, series and
//! instances (`application/dicom+json`, PS3.18), WADO-RS metadata from the
//! DICOM JSON the indexer stored, and instance retrieve.
//!
//! Instance retrieve answers `multipart/related; type="application/dicom"`
//! with the object inline when it is at most [`INLINE_LIMIT`] bytes (a
//! Lambda response carries at most 6 MB, and binary bodies grow by a third
//! in base64 on the way out). Larger objects, and clients that ask for a
//! bare `application/dicom`, get `303 See Other` to a presigned GET of the
//! object (valid at most 15 minutes); a client that follows redirects then
//! receives the object itself. Study and series retrieve are not offered:
//! fetch the instances one by one. Every response carries the CORS headers
//! a browser viewer needs, and a preflight is answered without a key.

use futures::{StreamExt, TryStreamExt};
use http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use pacs_shared::audit::{AuditOutcome, AuditTrail};
use pacs_shared::auth::HospitalPrincipal;
use pacs_shared::domain::HospitalId;
use pacs_shared::http::{error_response, path_param, principal};
use pacs_shared::item::{Item, get_string};
use pacs_shared::studies::{self, Instance, ReadableStudy, Series, Study, StudyFilter};
use pacs_shared::{ApiError, ApiResult, Context};
use serde_json::{Map, Value, json};

/// Largest instance served inline in a multipart response; larger ones
/// are redirected to a presigned URL.
pub const INLINE_LIMIT: u64 = 4 * 1024 * 1024;
/// Results per search when no `limit` is given.
const DEFAULT_LIMIT: usize = 100;
/// Largest `limit`, and largest `offset`, of a search.
const MAX_LIMIT: usize = 1000;
const MAX_OFFSET: usize = 10_000;

const DICOM_JSON: &str = "application/dicom+json";

/// Handles one request; OPTIONS preflights arrive without a principal.
pub async fn handle(ctx: &Context, req: Request) -> Response<Body> {
    let mut response = if req.method() == http::Method::OPTIONS {
        let mut r = Response::new(Body::Empty);
        *r.status_mut() = StatusCode::NO_CONTENT;
        r
    } else {
        serve(ctx, &req).await
    };
    add_cors(response.headers_mut());
    response
}

/// The CORS headers OHIF and other browser viewers need.
fn add_cors(headers: &mut http::HeaderMap) {
    let set = |h: &mut http::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(headers, "access-control-allow-origin", "*");
    set(headers, "access-control-allow-methods", "GET, OPTIONS");
    set(
        headers,
        "access-control-allow-headers",
        "x-api-key, authorization, accept, content-type, cache-control",
    );
    set(
        headers,
        "access-control-expose-headers",
        "content-type, content-length, location, warning",
    );
    set(headers, "access-control-max-age", "600");
}

async fn serve(ctx: &Context, req: &Request) -> Response<Body> {
    let principal = match principal(req) {
        Ok(p) => p,
        Err(err) => return error_response(&err),
    };
    let caller = match studies::reader(&principal) {
        Ok(c) => c.clone(),
        Err(err) => {
            pacs_shared::audit::record_refused(ctx, &principal, "dicomweb.request", &err).await;
            return error_response(&err);
        }
    };
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return error_response(&ApiError::method_not_allowed(
            req.method().as_str(),
            req.uri().path(),
        ));
    }
    let proxy = path_param(req, "proxy").unwrap_or_default();
    let parts: Vec<&str> = proxy.split('/').filter(|p| !p.is_empty()).collect();

    let mut trail = AuditTrail::new(&caller);
    let outcome = dispatch(ctx, req, &caller, &parts, &mut trail).await;
    let response = match outcome {
        Ok(r) => r,
        Err(err) => {
            let resource = parts
                .get(1)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "studies".into());
            let outcome = AuditOutcome::from_status(err.status);
            trail.record(&caller.hospital_id, "dicomweb.request", resource, outcome);
            error_response(&err)
        }
    };
    trail.flush(ctx).await;
    response
}

async fn dispatch(
    ctx: &Context,
    req: &Request,
    caller: &HospitalPrincipal,
    parts: &[&str],
    trail: &mut AuditTrail,
) -> ApiResult<Response<Body>> {
    let q = Query::new(req);
    match parts {
        ["studies"] => search_studies(ctx, caller, &q, trail).await,
        ["studies", s, rest @ ..] => {
            studies::validate_uid("StudyInstanceUID", s)?;
            let study = studies::resolve_study(ctx, caller, s, q.hospital()?.as_ref()).await?;
            match rest {
                ["metadata"] => metadata(ctx, &study, None, None, trail).await,
                ["series"] => search_series(ctx, &study, &q, trail).await,
                ["instances"] => search_instances(ctx, &study, None, &q, trail).await,
                ["series", se, rest @ ..] => {
                    studies::validate_uid("SeriesInstanceUID", se)?;
                    match rest {
                        ["metadata"] => metadata(ctx, &study, Some(se), None, trail).await,
                        ["instances"] => search_instances(ctx, &study, Some(se), &q, trail).await,
                        ["instances", i] => {
                            studies::validate_uid("SOPInstanceUID", i)?;
                            retrieve(ctx, req, &study, se, i, trail).await
                        }
                        ["instances", i, "metadata"] => {
                            studies::validate_uid("SOPInstanceUID", i)?;
                            metadata(ctx, &study, Some(se), Some(i), trail).await
                        }
                        [] => Err(not_offered()),
                        _ => Err(unknown_resource(parts)),
                    }
                }
                [] => Err(not_offered()),
                _ => Err(unknown_resource(parts)),
            }
        }
        _ => Err(unknown_resource(parts)),
    }
}

fn not_offered() -> ApiError {
    ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "NotAcceptable",
        "study and series retrieve are not offered: search the instances and retrieve each one",
    )
}

fn unknown_resource(parts: &[&str]) -> ApiError {
    ApiError::not_found(format!("DICOMweb resource /{}", parts.join("/")))
}

/// The query string, with DICOM keywords and their tag numbers as equals.
struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    fn new(req: &Request) -> Self {
        let mut pairs = Vec::new();
        if let Some(q) = req.query_string_parameters_ref() {
            for (k, _) in q.iter() {
                for v in q.all(k).unwrap_or_default() {
                    pairs.push((k.to_owned(), v.to_owned()));
                }
            }
        }
        pairs.dedup();
        Query { pairs }
    }

    /// The value of a matching key given by keyword or tag, if not empty.
    fn get(&self, keyword: &str, tag: &str) -> Option<String> {
        self.pairs
            .iter()
            .find(|(k, _)| k == keyword || k.eq_ignore_ascii_case(tag))
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn number(&self, name: &str, default: usize, max: usize) -> ApiResult<usize> {
        match self.get(name, name) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| {
                    ApiError::validation(format!("{name} must be a whole number from 0 to {max}"))
                }),
        }
    }

    fn limit(&self) -> ApiResult<usize> {
        Ok(self.number("limit", DEFAULT_LIMIT, MAX_LIMIT)?.max(1))
    }

    fn offset(&self) -> ApiResult<usize> {
        self.number("offset", 0, MAX_OFFSET)
    }

    fn hospital(&self) -> ApiResult<Option<HospitalId>> {
        self.get("hospitalId", "hospitalId")
            .map(|h| h.parse())
            .transpose()
    }

    /// Values of a multi-valued key: `a,b` or `a\b`.
    fn list(&self, keyword: &str, tag: &str) -> Vec<String> {
        self.get(keyword, tag)
            .map(|v| {
                v.split([',', '\\'])
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A DICOM date or range (`a`, `a-b`, `a-`, `-b`) as inclusive bounds.
fn date_range(value: &str) -> ApiResult<(Option<String>, Option<String>)> {
    let check = |v: &str| -> ApiResult<Option<String>> {
        if v.is_empty() {
            Ok(None)
        } else {
            studies::parse_dicom_date("StudyDate", v).map(Some)
        }
    };
    match value.split_once('-') {
        Some((a, b)) => {
            let (from, to) = (check(a.trim())?, check(b.trim())?);
            if from.is_none() && to.is_none() {
                return Err(ApiError::validation(
                    "StudyDate range needs at least one date",
                ));
            }
            if let (Some(f), Some(t)) = (&from, &to) {
                if f > t {
                    return Err(ApiError::validation(
                        "StudyDate range ends before it starts",
                    ));
                }
            }
            Ok((from, to))
        }
        None => {
            let d = check(value.trim())?;
            Ok((d.clone(), d))
        }
    }
}

fn study_filter(q: &Query) -> ApiResult<StudyFilter> {
    let (from, to) = match q.get("StudyDate", "00080020") {
        Some(v) => date_range(&v)?,
        None => (None, None),
    };
    let uids = q.list("StudyInstanceUID", "0020000D");
    if uids.len() > 100 {
        return Err(ApiError::validation(
            "StudyInstanceUID lists at most 100 UIDs",
        ));
    }
    for uid in &uids {
        studies::validate_uid("StudyInstanceUID", uid)?;
    }
    Ok(StudyFilter {
        patient_id: q.get("PatientID", "00100020"),
        patient_name_prefix: None,
        // Without wildcards a name matches as a whole, case-insensitively.
        patient_name_pattern: q.get("PatientName", "00100010").map(|v| v.to_lowercase()),
        modality: q
            .list("ModalitiesInStudy", "00080061")
            .into_iter()
            .next()
            .map(|m| m.to_uppercase()),
        from,
        to,
        accession_number: q.get("AccessionNumber", "00080050"),
        study_uids: uids,
        hospital: q.hospital()?,
    })
}

fn dicom_json(body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"[]".to_vec());
    let mut r = Response::new(Body::Binary(bytes));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(DICOM_JSON));
    r
}

/// Adds one attribute; no values gives the attribute with its VR only.
fn put(obj: &mut Map<String, Value>, tag: &str, vr: &str, values: Vec<Value>) {
    let mut attr = Map::new();
    attr.insert("vr".into(), Value::String(vr.into()));
    if !values.is_empty() {
        attr.insert("Value".into(), Value::Array(values));
    }
    obj.insert(tag.into(), Value::Object(attr));
}

fn text(v: &Option<String>) -> Vec<Value> {
    v.iter()
        .filter(|s| !s.is_empty())
        .map(|s| Value::String(s.clone()))
        .collect()
}

fn number(v: Option<i64>) -> Vec<Value> {
    v.map(|n| vec![json!(n)]).unwrap_or_default()
}

fn study_json(s: &Study) -> Value {
    let mut o = Map::new();
    put(&mut o, "00080005", "CS", vec![json!("ISO_IR 192")]);
    put(&mut o, "00080020", "DA", text(&s.study_date));
    put(&mut o, "00080030", "TM", text(&s.study_time));
    put(&mut o, "00080050", "SH", text(&s.accession_number));
    put(
        &mut o,
        "00080061",
        "CS",
        s.modalities.iter().map(|m| json!(m)).collect(),
    );
    put(&mut o, "00081030", "LO", text(&s.study_description));
    let name = s
        .patient_name
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| json!({ "Alphabetic": n }));
    put(&mut o, "00100010", "PN", name.collect());
    put(&mut o, "00100020", "LO", text(&s.patient_id));
    put(&mut o, "00100030", "DA", text(&s.patient_birth_date));
    put(&mut o, "00100040", "CS", text(&s.patient_sex));
    put(&mut o, "0020000D", "UI", vec![json!(s.study_instance_uid)]);
    put(&mut o, "00201206", "IS", vec![json!(s.number_of_series)]);
    put(&mut o, "00201208", "IS", vec![json!(s.number_of_instances)]);
    Value::Object(o)
}

fn series_json(s: &Series) -> Value {
    let mut o = Map::new();
    put(&mut o, "00080060", "CS", text(&s.modality));
    put(&mut o, "0008103E", "LO", text(&s.series_description));
    put(&mut o, "00180015", "CS", text(&s.body_part_examined));
    put(&mut o, "0020000D", "UI", vec![json!(s.study_instance_uid)]);
    put(&mut o, "0020000E", "UI", vec![json!(s.series_instance_uid)]);
    put(&mut o, "00200011", "IS", number(s.series_number));
    put(&mut o, "00201209", "IS", vec![json!(s.number_of_instances)]);
    Value::Object(o)
}

fn instance_json(i: &Instance) -> Value {
    let mut o = Map::new();
    put(&mut o, "00080016", "UI", text(&i.sop_class_uid));
    put(&mut o, "00080018", "UI", vec![json!(i.sop_instance_uid)]);
    put(&mut o, "00083002", "UI", text(&i.transfer_syntax_uid));
    put(&mut o, "0020000D", "UI", vec![json!(i.study_instance_uid)]);
    put(&mut o, "0020000E", "UI", vec![json!(i.series_instance_uid)]);
    put(&mut o, "00200013", "IS", number(i.instance_number));
    put(&mut o, "00280008", "IS", number(i.number_of_frames));
    put(&mut o, "00280010", "US", number(i.rows));
    put(&mut o, "00280011", "US", number(i.columns));
    Value::Object(o)
}

async fn search_studies(
    ctx: &Context,
    caller: &HospitalPrincipal,
    q: &Query,
    trail: &mut AuditTrail,
) -> ApiResult<Response<Body>> {
    let filter = study_filter(q)?;
    let (offset, limit) = (q.offset()?, q.limit()?);
    let found = studies::search_studies(ctx, caller, &filter, offset, limit).await?;
    trail.record_list(
        "dicomweb.searchStudies",
        &filter.names(),
        AuditOutcome::Success,
        found
            .iter()
            .map(|s| (s.hospital_id.as_str(), s.study_instance_uid.as_str())),
    );
    Ok(dicom_json(&Value::Array(
        found.iter().map(study_json).collect(),
    )))
}

fn page<T>(items: Vec<T>, q: &Query) -> ApiResult<Vec<T>> {
    let (offset, limit) = (q.offset()?, q.limit()?);
    Ok(items.into_iter().skip(offset).take(limit).collect())
}

async fn search_series(
    ctx: &Context,
    study: &ReadableStudy,
    q: &Query,
    trail: &mut AuditTrail,
) -> ApiResult<Response<Body>> {
    let modality = q.get("Modality", "00080060").map(|m| m.to_uppercase());
    let uids = q.list("SeriesInstanceUID", "0020000E");
    let number = q
        .get("SeriesNumber", "00200011")
        .and_then(|n| n.parse::<i64>().ok());
    let series = studies::list_series(ctx, &study.hospital, &study.study_uid).await?;
    let matching: Vec<Series> = series
        .into_iter()
        .filter(|s| {
            modality
                .as_ref()
                .is_none_or(|m| s.modality.as_ref() == Some(m))
        })
        .filter(|s| uids.is_empty() || uids.contains(&s.series_instance_uid))
        .filter(|s| number.is_none_or(|n| s.series_number == Some(n)))
        .collect();
    trail.record(
        &study.hospital,
        "dicomweb.searchSeries",
        &study.study_uid,
        AuditOutcome::Success,
    );
    Ok(dicom_json(&Value::Array(
        page(matching, q)?.iter().map(series_json).collect(),
    )))
}

async fn search_instances(
    ctx: &Context,
    study: &ReadableStudy,
    series: Option<&str>,
    q: &Query,
    trail: &mut AuditTrail,
) -> ApiResult<Response<Body>> {
    let sops = q.list("SOPInstanceUID", "00080018");
    let class = q.get("SOPClassUID", "00080016");
    let number = q
        .get("InstanceNumber", "00200013")
        .and_then(|n| n.parse::<i64>().ok());
    let items =
        studies::list_instance_items(ctx, &study.hospital, &study.study_uid, series).await?;
    let mut matching: Vec<Instance> = items
        .iter()
        .filter_map(Instance::from_item)
        .filter(|i| sops.is_empty() || sops.contains(&i.sop_instance_uid))
        .filter(|i| {
            class
                .as_ref()
                .is_none_or(|c| i.sop_class_uid.as_ref() == Some(c))
        })
        .filter(|i| number.is_none_or(|n| i.instance_number == Some(n)))
        .collect();
    matching.sort_by(|a, b| {
        (
            &a.series_instance_uid,
            a.instance_number.unwrap_or(i64::MAX),
            &a.sop_instance_uid,
        )
            .cmp(&(
                &b.series_instance_uid,
                b.instance_number.unwrap_or(i64::MAX),
                &b.sop_instance_uid,
            ))
    });
    trail.record(
        &study.hospital,
        "dicomweb.searchInstances",
        &study.study_uid,
        AuditOutcome::Success,
    );
    Ok(dicom_json(&Value::Array(
        page(matching, q)?.iter().map(instance_json).collect(),
    )))
}

/// Instance headers read from S3 at once for one WADO-RS metadata answer.
const METADATA_READS_AT_ONCE: usize = 32;

async fn metadata(
    ctx: &Context,
    study: &ReadableStudy,
    series: Option<&str>,
    sop: Option<&str>,
    trail: &mut AuditTrail,
) -> ApiResult<Response<Body>> {
    let items: Vec<Item> = match (series, sop) {
        (Some(se), Some(i)) => {
            let item = studies::get_instance_item(ctx, &study.hospital, &study.study_uid, se, i)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("instance {i}")))?;
            vec![item]
        }
        _ => studies::list_instance_items(ctx, &study.hospital, &study.study_uid, series).await?,
    };
    if items.is_empty() {
        return Err(ApiError::not_found(format!(
            "series {}",
            series.unwrap_or("of this study")
        )));
    }
    // One ranged GET per instance, a bounded number at a time.
    let reads: Vec<_> = items
        .iter()
        .map(|item| Box::pin(studies::load_instance_metadata(ctx, &study.hospital, item)))
        .collect();
    let found: Vec<Option<Value>> = futures::stream::iter(reads)
        .buffered(METADATA_READS_AT_ONCE)
        .try_collect()
        .await?;
    let out: Vec<Value> = found
        .into_iter()
        .map(|json| json.unwrap_or_else(|| Value::Object(Map::new())))
        .collect();
    trail.record(
        &study.hospital,
        "dicomweb.metadata",
        &study.study_uid,
        AuditOutcome::Success,
    );
    Ok(dicom_json(&Value::Array(out)))
}

/// How the client wants an instance.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    /// `multipart/related; type="application/dicom"` (or anything).
    Multipart,
    /// A bare `application/dicom`: always redirected.
    Bare,
}

fn wanted(req: &Request) -> ApiResult<Wanted> {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*")
        .to_ascii_lowercase();
    let ranges: Vec<&str> = accept.split(',').map(str::trim).collect();
    let any = |prefix: &str| ranges.iter().any(|r| r.starts_with(prefix));
    if any("multipart/related") || any("multipart/*") || any("*/*") {
        return Ok(Wanted::Multipart);
    }
    let bare = ranges.iter().any(|r| {
        let media = r.split(';').next().unwrap_or("").trim();
        media == "application/dicom" || media == "application/*"
    });
    if bare {
        return Ok(Wanted::Bare);
    }
    Err(ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "NotAcceptable",
        "instances are served as multipart/related; type=\"application/dicom\" or application/dicom",
    ))
}

async fn retrieve(
    ctx: &Context,
    req: &Request,
    study: &ReadableStudy,
    series: &str,
    sop: &str,
    trail: &mut AuditTrail,
) -> ApiResult<Response<Body>> {
    let wanted = wanted(req)?;
    let item = studies::get_instance_item(ctx, &study.hospital, &study.study_uid, series, sop)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("instance {sop}")))?;
    let inst = Instance::from_item(&item)
        .ok_or_else(|| ApiError::internal("instance item without object"))?;

    let response = if wanted == Wanted::Bare || inst.size_bytes > INLINE_LIMIT {
        let (url, _) = studies::presign_download(ctx, &study.hospital, &inst.s3_key).await?;
        let mut r = Response::new(Body::Empty);
        *r.status_mut() = StatusCode::SEE_OTHER;
        let location = HeaderValue::from_str(&url)
            .map_err(|_| ApiError::internal("presigned url is not a header"))?;
        r.headers_mut().insert(header::LOCATION, location);
        r
    } else {
        let bytes = studies::read_object(ctx, &study.hospital, &inst.s3_key).await?;
        multipart(
            &bytes,
            inst.transfer_syntax_uid
                .as_deref()
                .or(get_string(&item, "transferSyntaxUid").as_deref()),
        )
    };
    trail.record(
        &study.hospital,
        "dicomweb.retrieve",
        &study.study_uid,
        AuditOutcome::Success,
    );
    Ok(response)
}

/// One part of `multipart/related; type="application/dicom"`.
fn multipart(bytes: &[u8], transfer_syntax: Option<&str>) -> Response<Body> {
    let boundary = format!("pacs-hub-{}", hex::encode(rand::random::<[u8; 12]>()));
    let part_type = match transfer_syntax {
        Some(ts) => format!("application/dicom; transfer-syntax={ts}"),
        None => "application/dicom".to_owned(),
    };
    let mut body = Vec::with_capacity(bytes.len() + 256);
    body.extend_from_slice(format!("--{boundary}\r\nContent-Type: {part_type}\r\n\r\n").as_bytes());
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut r = Response::new(Body::Binary(body));
    let ct = format!("multipart/related; type=\"application/dicom\"; boundary={boundary}");
    if let Ok(v) = HeaderValue::from_str(&ct) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_ranges_parse() {
        assert_eq!(
            date_range("20240101").unwrap(),
            (Some("20240101".into()), Some("20240101".into()))
        );
        assert_eq!(
            date_range("20240101-20240131").unwrap().1,
            Some("20240131".into())
        );
        assert_eq!(date_range("-20240131").unwrap().0, None);
        assert_eq!(date_range("20240101-").unwrap().1, None);
        assert!(
            date_range("2024")
                .unwrap_err()
                .message
                .contains("StudyDate")
        );
        assert!(date_range("20240201-20240101").is_err());
    }

    #[test]
    fn accept_headers_choose_multipart_or_redirect() {
        let with = |accept: &str| {
            let req = http::Request::builder()
                .header("accept", accept)
                .body(Body::Empty)
                .unwrap();
            wanted(&req)
        };
        let multipart = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";
        assert_eq!(with(multipart).unwrap(), Wanted::Multipart);
        assert_eq!(with("*/*").unwrap(), Wanted::Multipart);
        assert_eq!(with("application/dicom").unwrap(), Wanted::Bare);
        assert_eq!(
            with("application/dicom; transfer-syntax=*").unwrap(),
            Wanted::Bare
        );
        assert_eq!(
            with("application/dicom+json").unwrap_err().status,
            StatusCode::NOT_ACCEPTABLE
        );
    }

    #[test]
    fn attributes_follow_dicom_json() {
        let mut o = Map::new();
        put(
            &mut o,
            "00100010",
            "PN",
            vec![json!({"Alphabetic": "DOE^JANE"})],
        );
        put(&mut o, "00080050", "SH", vec![]);
        assert_eq!(o["00100010"]["Value"][0]["Alphabetic"], "DOE^JANE");
        assert!(o["00080050"].get("Value").is_none());
    }
}
