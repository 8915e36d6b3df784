//! `GET /api/studies` (the merged, paged study list), `GET
//! /api/studies/{studyUid}` (one study with its series) and `GET
//! /api/studies/{studyUid}/download` (a presigned GET per instance), for
//! reader and admin keys, over the caller's own studies, those of
//! hospitals that granted it access, and those shared with it. Every read
//! is recorded in the owning hospital's audit trail.

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use pacs_shared::audit::{AuditOutcome, AuditTrail};
use pacs_shared::auth::HospitalPrincipal;
use pacs_shared::cursor::CursorSigner;
use pacs_shared::domain::HospitalId;
use pacs_shared::http::{error_response, ok, path_param, principal, query_names, query_param};
use pacs_shared::studies::{self, Access, Series, Study, StudyFilter, StudyPage};
use pacs_shared::{ApiError, ApiResult, Context};
use serde::{Deserialize, Serialize};

/// Query parameters `GET /api/studies` understands; any other is refused.
const LIST_PARAMS: [&str; 9] = [
    "patientId",
    "patientName",
    "modality",
    "from",
    "to",
    "accessionNumber",
    "hospitalId",
    "limit",
    "cursor",
];

/// Instances per download page: keeps the response far below the 6 MB a
/// Lambda may answer with.
const DOWNLOAD_PAGE: usize = 1000;

/// Handles one request that the authorizer already let through.
pub async fn handle(ctx: &Context, req: Request) -> Response<Body> {
    let principal = match principal(&req) {
        Ok(p) => p,
        Err(err) => return error_response(&err),
    };
    let caller = match studies::reader(&principal) {
        Ok(c) => c.clone(),
        Err(err) => {
            pacs_shared::audit::record_refused(ctx, &principal, "studies.request", &err).await;
            return error_response(&err);
        }
    };
    let mut trail = AuditTrail::new(&caller);
    let outcome = route(ctx, &req, &caller, &mut trail).await;
    let response = match outcome {
        Ok(resp) => resp,
        Err((action, resource, err)) => {
            trail.record(
                &caller.hospital_id,
                action,
                resource,
                AuditOutcome::from_status(err.status),
            );
            error_response(&err)
        }
    };
    trail.flush(ctx).await;
    response
}

type RouteResult = Result<Response<Body>, (&'static str, String, ApiError)>;

async fn route(
    ctx: &Context,
    req: &Request,
    caller: &HospitalPrincipal,
    trail: &mut AuditTrail,
) -> RouteResult {
    if req.method() != http::Method::GET {
        let err = ApiError::method_not_allowed(req.method().as_str(), req.uri().path());
        return Err(("studies.request", "studies".into(), err));
    }
    let study_uid = path_param(req, "studyUid").ok();
    match study_uid {
        None => list(ctx, req, caller, trail)
            .await
            .map(|page| ok(StatusCode::OK, &page))
            .map_err(|e| ("studies.query", "studies".into(), e)),
        Some(uid)
            if req
                .uri()
                .path()
                .trim_end_matches('/')
                .ends_with("/download") =>
        {
            download(ctx, req, caller, &uid, trail)
                .await
                .map(|d| ok(StatusCode::OK, &d))
                .map_err(|e| ("study.download", uid, e))
        }
        Some(uid) => detail(ctx, req, caller, &uid, trail)
            .await
            .map(|d| ok(StatusCode::OK, &d))
            .map_err(|e| ("study.read", uid, e)),
    }
}

/// Refuses query parameters outside `allowed`, naming them.
fn refuse_unknown(req: &Request, allowed: &[&str]) -> ApiResult<()> {
    let mut unknown: Vec<String> = query_names(req)
        .into_iter()
        .filter(|n| !allowed.contains(&n.as_str()))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    Err(ApiError::validation(format!(
        "unknown query parameter {}: this route accepts {}",
        unknown.join(", "),
        allowed.join(", ")
    )))
}

/// Reads the list's filters from the query string, naming whichever is
/// malformed.
fn list_filter(req: &Request) -> ApiResult<(StudyFilter, usize, Option<String>)> {
    refuse_unknown(req, &LIST_PARAMS)?;
    let q = |name: &str| {
        query_param(req, name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };

    let from = q("from")
        .map(|v| studies::parse_dicom_date("from", &v))
        .transpose()?;
    let to = q("to")
        .map(|v| studies::parse_dicom_date("to", &v))
        .transpose()?;
    if let (Some(f), Some(t)) = (&from, &to) {
        if f > t {
            return Err(ApiError::validation("from must not be after to"));
        }
    }
    let limit = match q("limit") {
        None => studies::DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=studies::MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::validation(format!(
                    "limit must be a whole number from 1 to {}",
                    studies::MAX_LIMIT
                )));
            }
        },
    };
    let hospital = q("hospitalId")
        .map(|v| v.parse::<HospitalId>())
        .transpose()?;
    for (name, max) in [
        ("patientId", 64),
        ("patientName", 324),
        ("accessionNumber", 64),
        ("modality", 16),
    ] {
        if q(name).is_some_and(|v| v.len() > max) {
            return Err(ApiError::validation(format!(
                "{name} is longer than {max} characters"
            )));
        }
    }

    let filter = StudyFilter {
        patient_id: q("patientId"),
        patient_name_prefix: q("patientName").map(|v| v.to_lowercase()),
        patient_name_pattern: None,
        modality: q("modality").map(|v| v.to_uppercase()),
        from,
        to,
        accession_number: q("accessionNumber"),
        study_uids: Vec::new(),
        hospital,
    };
    Ok((filter, limit, q("cursor")))
}

async fn list(
    ctx: &Context,
    req: &Request,
    caller: &HospitalPrincipal,
    trail: &mut AuditTrail,
) -> ApiResult<StudyPage> {
    let (filter, limit, cursor) = list_filter(req)?;
    let page = studies::list_studies(ctx, caller, &filter, limit, cursor.as_deref()).await?;
    trail.record_list(
        "studies.query",
        &filter.names(),
        AuditOutcome::Success,
        page.studies
            .iter()
            .map(|s| (s.hospital_id.as_str(), s.study_instance_uid.as_str())),
    );
    tracing::info!(hospital_id = %caller.hospital_id, studies = page.studies.len(), "studies listed");
    Ok(page)
}

/// A study with its series.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StudyDetail {
    #[serde(flatten)]
    study: Study,
    /// How the caller reaches the study: own, granted or shared.
    access: Access,
    series: Vec<Series>,
}

fn hospital_param(req: &Request) -> ApiResult<Option<HospitalId>> {
    query_param(req, "hospitalId")
        .map(|v| v.trim().parse())
        .transpose()
}

async fn detail(
    ctx: &Context,
    req: &Request,
    caller: &HospitalPrincipal,
    uid: &str,
    trail: &mut AuditTrail,
) -> ApiResult<StudyDetail> {
    refuse_unknown(req, &["hospitalId"])?;
    studies::validate_uid("studyUid", uid)?;
    let hospital = hospital_param(req)?;

    let found = studies::resolve_study(ctx, caller, uid, hospital.as_ref()).await?;
    let study = found
        .study(&caller.hospital_id)
        .ok_or_else(|| ApiError::internal("study item without identity"))?;
    let series = studies::list_series(ctx, &found.hospital, uid).await?;

    trail.record(&found.hospital, "study.read", uid, AuditOutcome::Success);
    Ok(StudyDetail {
        study,
        access: found.access,
        series,
    })
}

/// One instance's download.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InstanceDownload {
    sop_instance_uid: String,
    series_instance_uid: String,
    url: String,
    expires_at: String,
    size_bytes: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Download {
    study_instance_uid: String,
    hospital_id: String,
    instances: Vec<InstanceDownload>,
    /// Pass back as `cursor` for the next instances; `None` at the end.
    next_cursor: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct DownloadPosition {
    sk: String,
}

async fn download(
    ctx: &Context,
    req: &Request,
    caller: &HospitalPrincipal,
    uid: &str,
    trail: &mut AuditTrail,
) -> ApiResult<Download> {
    refuse_unknown(req, &["hospitalId", "cursor"])?;
    studies::validate_uid("studyUid", uid)?;
    let hospital = hospital_param(req)?;
    let found = studies::resolve_study(ctx, caller, uid, hospital.as_ref()).await?;

    // The cursor is bound to the caller and the study it pages.
    let secrets = ctx.secrets_for_route().await?;
    let signer = CursorSigner::new(&secrets.pepper, "download");
    let binding = format!("{}|{}|{uid}", caller.hospital_id, found.hospital);
    let start = match query_param(req, "cursor") {
        Some(c) => Some(signer.open::<DownloadPosition>("cursor", &binding, &c)?.sk),
        None => None,
    };
    let (items, last) = studies::query_study_items(
        ctx,
        &found.hospital,
        uid,
        "INSTANCE#",
        start,
        Some(DOWNLOAD_PAGE),
    )
    .await?;

    let mut instances = Vec::with_capacity(items.len());
    for item in &items {
        let Some(inst) = studies::Instance::from_item(item) else {
            continue;
        };
        let (url, expires_at) =
            studies::presign_download(ctx, &found.hospital, &inst.s3_key).await?;
        instances.push(InstanceDownload {
            sop_instance_uid: inst.sop_instance_uid,
            series_instance_uid: inst.series_instance_uid,
            url,
            expires_at: pacs_shared::time::rfc3339(expires_at),
            size_bytes: inst.size_bytes,
        });
    }

    trail.record(
        &found.hospital,
        "study.download",
        uid,
        AuditOutcome::Success,
    );
    tracing::info!(hospital_id = %caller.hospital_id, instances = instances.len(), "download links issued");
    Ok(Download {
        study_instance_uid: uid.into(),
        hospital_id: found.hospital.to_string(),
        instances,
        next_cursor: last.map(|sk| signer.seal(&binding, &DownloadPosition { sk })),
    })
}
