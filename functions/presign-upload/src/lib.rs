//! `POST /api/uploads` hands out presigned S3 PUT URLs, one per file, each
//! bound to the file's size and SHA-256 so S3 refuses any other bytes;
//! `GET /api/uploads/{uploadId}` tells how an upload went.
//!
//! The server chooses every key (`dicom/{hosp}/{uploadId}.dcm`); nothing
//! the client sends ends up in it. Declared sizes count against the plan's
//! storage while the URLs live (see `pacs_shared::usage`).
//!
//! Files over `MAX_FILE_BYTES` (at most 5 GiB) are refused with 413: one
//! presigned PUT carries at most 5 GiB, and multipart uploads are not
//! presigned.

use aws_sdk_s3::presigning::PresigningConfig;
use base64::Engine;
use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use pacs_shared::auth::HospitalPrincipal;
use pacs_shared::http::{MAX_JSON_BODY, error_response, json_body, ok, path_param};
use pacs_shared::uploads::{self, DeclaredUids, Upload, UploadId, UploadStatus};
use pacs_shared::{ApiError, ApiResult, Context, usage};
use serde::Serialize;
use serde_json::Value;

/// Most files one request may presign.
pub const MAX_FILES_PER_REQUEST: usize = 100;

/// Handles one request that the authorizer already let through.
pub async fn handle(ctx: &Context, req: Request) -> Response<Body> {
    let outcome = match (req.method().clone(), upload_id_in_path(&req)) {
        (Method::POST, None) => create_uploads(ctx, &req)
            .await
            .map(|d| (StatusCode::CREATED, d)),
        (Method::GET, Some(id)) => get_upload(ctx, &req, &id)
            .await
            .map(|d| (StatusCode::OK, d)),
        (method, _) => Err(ApiError::method_not_allowed(
            method.as_str(),
            req.uri().path(),
        )),
    };
    match outcome {
        Ok((status, data)) => ok(status, &data),
        Err(err) => error_response(&err),
    }
}

/// The `{uploadId}` of `/api/uploads/{uploadId}`, from the route's path
/// parameters or else from the path itself.
fn upload_id_in_path(req: &Request) -> Option<String> {
    if let Ok(id) = path_param(req, "uploadId") {
        return Some(id);
    }
    let path = req.uri().path().trim_end_matches('/');
    let rest = path.rsplit_once("/uploads/").map(|(_, r)| r)?;
    (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_owned())
}

/// The caller, if it is a hospital key allowed to upload.
fn uploader(req: &Request) -> ApiResult<HospitalPrincipal> {
    let principal = pacs_shared::http::principal(req)?;
    match principal.hospital() {
        Some(p) if p.role.can_upload() => Ok(p.clone()),
        _ => Err(ApiError::role_required(
            "upload DICOM (agent or admin keys only)",
        )),
    }
}

/// One file as the request declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileRequest {
    size: u64,
    sha256: String,
    declared: DeclaredUids,
}

/// One presigned upload as the response shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PresignedUpload {
    upload_id: String,
    url: String,
    method: String,
    headers: serde_json::Map<String, Value>,
    expires_at: String,
}

async fn create_uploads(ctx: &Context, req: &Request) -> ApiResult<Value> {
    let caller = uploader(req)?;
    if caller.subscription_expired {
        return Err(ApiError::forbidden(
            "SubscriptionExpired",
            "the hospital's subscription has ended; renew it to upload again",
        ));
    }
    let hospital = &caller.hospital_id;

    let body: Value = json_body(req, MAX_JSON_BODY)?;
    let files = parse_files(&body, ctx.settings.max_file_bytes)?;
    let declared_bytes: u64 = files.iter().map(|f| f.size).sum();

    // Quota: what is stored, what live URLs may still add, and this request.
    let now = pacs_shared::time::now();
    let snapshot = usage::storage_snapshot(ctx, hospital, now.unix_timestamp())
        .await
        .map_err(ApiError::unavailable)?;
    let Some(limit) = snapshot.max_storage_bytes else {
        return Err(ApiError::internal(format!(
            "hospital {hospital} has no storage limit"
        )));
    };
    let wanted = snapshot
        .stored_bytes
        .saturating_add(snapshot.pending_bytes)
        .saturating_add(declared_bytes);
    if wanted > limit {
        return Err(ApiError::forbidden(
            "QuotaExceeded",
            format!(
                "this upload would pass the plan's storage limit of {limit} bytes: \
                 {} bytes are stored, {} are reserved by pending uploads and {declared_bytes} \
                 are requested; delete studies, wait for pending URLs to expire, or upgrade \
                 the plan",
                snapshot.stored_bytes, snapshot.pending_bytes
            ),
        ));
    }

    // Reserve first, so that a failure further on errs toward refusing.
    let ttl = ctx.settings.presign_ttl;
    let url_expires = now + ttl;
    usage::reserve_pending(
        ctx,
        hospital,
        declared_bytes,
        (url_expires + usage::RESERVATION_GRACE).unix_timestamp(),
        &snapshot.expired_minutes,
    )
    .await
    .map_err(ApiError::unavailable)?;

    let presigning = PresigningConfig::expires_in(ttl).map_err(ApiError::internal)?;
    let created_at = pacs_shared::time::rfc3339(now);
    let expires_at = pacs_shared::time::rfc3339(url_expires);
    let record_ttl = url_expires.unix_timestamp() + uploads::RECORD_GRACE.as_secs() as i64;
    let sha_b64 = base64::engine::general_purpose::STANDARD;

    let mut records = Vec::with_capacity(files.len());
    let mut presigned = Vec::with_capacity(files.len());
    for file in files {
        let upload_id = UploadId::generate();
        let key = uploads::object_key(hospital, &upload_id);
        let digest = hex::decode(&file.sha256).map_err(ApiError::internal)?;
        let request = ctx
            .clients
            .s3
            .put_object()
            .bucket(&ctx.settings.bucket)
            .key(&key)
            .content_length(file.size as i64)
            .checksum_sha256(sha_b64.encode(digest))
            .presigned(presigning.clone())
            .await
            .map_err(ApiError::internal)?;
        let headers = request
            .headers()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("host"))
            .map(|(name, value)| (name.to_ascii_lowercase(), Value::from(value)))
            .collect();
        presigned.push(PresignedUpload {
            upload_id: upload_id.to_string(),
            url: request.uri().to_owned(),
            method: request.method().to_owned(),
            headers,
            expires_at: expires_at.clone(),
        });
        records.push(Upload {
            hospital_id: hospital.clone(),
            upload_id,
            status: UploadStatus::Pending,
            s3_key: key,
            size: file.size,
            sha256: file.sha256,
            declared: file.declared,
            key_id: caller.key_id.to_string(),
            created_at: created_at.clone(),
            url_expires_at: expires_at.clone(),
            ttl: record_ttl,
            indexed_at: None,
            indexed: None,
            replaced: false,
            duplicate: false,
            superseded_key: None,
            reason: None,
            quarantine_key: None,
        });
    }

    uploads::put_uploads(ctx, &records)
        .await
        .map_err(ApiError::unavailable)?;
    tracing::info!(
        hospital_id = %hospital,
        files = records.len(),
        bytes = declared_bytes,
        ttl_secs = ttl.as_secs(),
        "uploads presigned"
    );
    Ok(serde_json::json!({ "uploads": presigned }))
}

/// Reads and checks the `files` array, naming the first entry and field
/// that is wrong.
fn parse_files(body: &Value, max_file_bytes: u64) -> ApiResult<Vec<FileRequest>> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::validation(
            "the request body must be a JSON object with files[]",
        ));
    };
    if let Some(unknown) = obj.keys().find(|k| k.as_str() != "files") {
        return Err(ApiError::validation(format!(
            "unknown field {unknown:?}: the body holds only files[]"
        )));
    }
    let Some(files) = obj.get("files").and_then(Value::as_array) else {
        return Err(ApiError::validation(
            "files must be an array of 1 to 100 entries of size and sha256",
        ));
    };
    if files.is_empty() || files.len() > MAX_FILES_PER_REQUEST {
        return Err(ApiError::validation(format!(
            "files holds {} entries; send between 1 and {MAX_FILES_PER_REQUEST} per request",
            files.len()
        )));
    }
    files
        .iter()
        .enumerate()
        .map(|(i, f)| parse_file(i, f, max_file_bytes))
        .collect()
}

fn parse_file(i: usize, file: &Value, max_file_bytes: u64) -> ApiResult<FileRequest> {
    let Some(obj) = file.as_object() else {
        return Err(ApiError::validation(format!(
            "files[{i}] must be an object with size and sha256"
        )));
    };
    const KNOWN: [&str; 5] = [
        "size",
        "sha256",
        "studyInstanceUid",
        "seriesInstanceUid",
        "sopInstanceUid",
    ];
    if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::validation(format!(
            "files[{i}] has an unknown field {unknown:?}; known fields are {}",
            KNOWN.join(", ")
        )));
    }

    let size = match obj.get("size") {
        Some(Value::Number(num)) => num.as_u64().filter(|s| *s > 0),
        _ => None,
    };
    let Some(size) = size else {
        return Err(ApiError::validation(format!(
            "files[{i}].size must be the file's length in bytes, a whole number greater than 0"
        )));
    };
    if size > max_file_bytes {
        return Err(ApiError::too_large(format!(
            "files[{i}].size is {size} bytes; files may be at most {max_file_bytes} bytes, \
             because one presigned PUT carries at most 5 GiB and multipart uploads are not \
             offered"
        )));
    }

    let sha256 = obj.get("sha256").and_then(Value::as_str).unwrap_or("");
    let hex_ok = sha256
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if sha256.len() != 64 || !hex_ok {
        return Err(ApiError::validation(format!(
            "files[{i}].sha256 must be the file's SHA-256 as 64 lowercase hex digits \
             (got {} characters{})",
            sha256.len(),
            if hex_ok {
                ""
            } else {
                ", not all lowercase hex"
            }
        )));
    }

    let uid = |name: &str| -> ApiResult<Option<String>> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(v)) if uploads::is_valid_uid(v) => Ok(Some(v.clone())),
            Some(_) => Err(ApiError::validation(format!(
                "files[{i}].{name} must be a DICOM UID: 1 to 64 characters of digits and \
                 dots, no empty component, no component with a leading zero"
            ))),
        }
    };
    Ok(FileRequest {
        size,
        sha256: sha256.to_owned(),
        declared: DeclaredUids {
            study_instance_uid: uid("studyInstanceUid")?,
            series_instance_uid: uid("seriesInstanceUid")?,
            sop_instance_uid: uid("sopInstanceUid")?,
        },
    })
}

async fn get_upload(ctx: &Context, req: &Request, id: &str) -> ApiResult<Value> {
    let caller = uploader(req)?;
    // A malformed id cannot name any upload: same answer as another
    // hospital's.
    let Some(upload_id) = UploadId::parse(id) else {
        return Err(ApiError::not_found(format!("upload {id:?}")));
    };
    let upload = uploads::get_upload(ctx, &caller.hospital_id, &upload_id)
        .await
        .map_err(ApiError::unavailable)?
        .ok_or_else(|| ApiError::not_found(format!("upload {upload_id}")))?;
    Ok(upload.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn message(body: Value) -> (u16, String) {
        let err = parse_files(&body, 1000).unwrap_err();
        (err.status.as_u16(), err.message)
    }

    #[test]
    fn accepts_well_formed_files() {
        let files = parse_files(
            &json!({"files": [{"size": 10, "sha256": SHA, "sopInstanceUid": "1.2.3"}]}),
            1000,
        )
        .unwrap();
        assert_eq!(files[0].size, 10);
        assert_eq!(files[0].declared.sop_instance_uid.as_deref(), Some("1.2.3"));
    }

    #[test]
    fn refuses_counts_outside_one_to_a_hundred() {
        let file = json!({"size": 1, "sha256": SHA});
        let (status, msg) = message(json!({"files": vec![file; 101]}));
        assert_eq!(status, 400);
        assert!(msg.contains("101"), "{msg}");
        assert_eq!(message(json!({"files": []})).0, 400);
    }

    #[test]
    fn names_the_bad_file_and_field() {
        let (status, msg) = message(json!({"files": [
            {"size": 1, "sha256": SHA},
            {"size": 1, "sha256": "abc"}
        ]}));
        assert_eq!(status, 400);
        assert!(msg.contains("files[1].sha256"), "{msg}");
        for size in [json!(0), json!(-5), json!(1.5), json!("12")] {
            let (status, msg) = message(json!({"files": [{"size": size, "sha256": SHA}]}));
            assert_eq!(status, 400);
            assert!(msg.contains("files[0].size"), "{msg}");
        }
        let (_, msg) = message(json!({"files": [{"size": 1, "sha256": SHA.to_uppercase()}]}));
        assert!(msg.contains("lowercase"), "{msg}");
        let (_, msg) =
            message(json!({"files": [{"size": 1, "sha256": SHA, "studyInstanceUid": "1.a"}]}));
        assert!(msg.contains("files[0].studyInstanceUid"), "{msg}");
    }

    #[test]
    fn too_large_is_413_with_the_limit() {
        let (status, msg) = message(json!({"files": [{"size": 1001, "sha256": SHA}]}));
        assert_eq!(status, 413);
        assert!(msg.contains("1000"), "{msg}");
    }
}
