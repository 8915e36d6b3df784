//! The hub's public API as the agent uses it: heartbeat, batched presign,
//! the PUT to a presigned URL, and the upload's outcome. Errors are sorted
//! into those worth retrying and those that are the hub's final word.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The most files the hub presigns in one call.
pub const MAX_BATCH: usize = 100;

/// A failed call to the hub.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// No answer: connection refused, timeout, DNS. Worth retrying.
    #[error("hub unreachable during {step}: {}", error_chain(.source))]
    Unreachable {
        step: &'static str,
        source: reqwest::Error,
    },
    /// The hub or S3 answered with a status worth retrying (5xx, 429).
    #[error("hub busy or failing during {step}: HTTP {status} {code}")]
    Unavailable {
        step: &'static str,
        status: u16,
        code: String,
    },
    /// The key, the hospital or its plan stops every upload (401, 403):
    /// retrying soon will not help, but nothing is wrong with the files.
    #[error("hub refused the agent during {step}: {code}: {message}")]
    Refused {
        step: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// The request itself was refused (other 4xx): the file is at fault.
    #[error("hub refused the file during {step}: HTTP {status} {code}: {message}")]
    Rejected {
        step: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// The hub answered 2xx with a body the agent does not understand.
    #[error("unexpected answer from the hub during {step}: {reason}")]
    BadAnswer { step: &'static str, reason: String },
}

/// An error with its causes, for messages ("error sending request" alone
/// does not say that the connection was refused).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// Where a JSON answer went wrong, without quoting it: an answer may
/// hold patient data, which never goes to the logs.
pub fn json_problem(error: &serde_json::Error) -> String {
    format!(
        "{:?} JSON error at line {} column {}",
        error.classify(),
        error.line(),
        error.column()
    )
}

impl HubError {
    /// Whether waiting and trying again may succeed without any change.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HubError::Unreachable { .. } | HubError::Unavailable { .. }
        )
    }
}

/// One file to presign.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileToUpload {
    pub size: u64,
    pub sha256: String,
}

/// One presigned upload, in the order of the request.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresignedUpload {
    pub upload_id: String,
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_method() -> String {
    "PUT".to_owned()
}

/// What the hub says about an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadStatus {
    Pending,
    Indexed {
        replaced: bool,
    },
    Rejected {
        reason: String,
    },
    /// The hub does not know this upload (expired before its PUT).
    Unknown,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct Uploads {
    uploads: Vec<PresignedUpload>,
}

#[derive(Deserialize)]
struct StatusBody {
    status: String,
    reason: Option<String>,
    #[serde(default)]
    replaced: serde_json::Value,
}

/// The hub's client. The API key goes in a header marked sensitive so that
/// no debug output of a request shows it.
#[derive(Clone)]
pub struct Hub {
    base: String,
    api_key: reqwest::header::HeaderValue,
    http: reqwest::Client,
}

impl Hub {
    pub fn new(base: &str, api_key: &str) -> Hub {
        let mut api_key = reqwest::header::HeaderValue::from_str(api_key)
            .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("invalid"));
        api_key.set_sensitive(true);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .user_agent(concat!("pacs-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds with static settings");
        Hub {
            base: base.trim_end_matches('/').to_owned(),
            api_key,
            http,
        }
    }

    /// `POST /api/agents/register`: tells the hub the agent is alive.
    /// Returns the `data` object of the answer.
    pub async fn heartbeat(
        &self,
        hospital_name: &str,
        capabilities: &[&str],
        status: &str,
    ) -> Result<serde_json::Value, HubError> {
        let body = serde_json::json!({
            "hospitalName": hospital_name,
            "version": env!("CARGO_PKG_VERSION"),
            "capabilities": capabilities,
            "status": status,
        });
        let request = self
            .http
            .post(format!("{}/api/agents/register", self.base))
            .json(&body);
        let answer: Envelope<serde_json::Value> = self.call("heartbeat", request).await?;
        Ok(answer.data)
    }

    /// `POST /api/uploads` for up to [`MAX_BATCH`] files.
    pub async fn presign(&self, files: &[FileToUpload]) -> Result<Vec<PresignedUpload>, HubError> {
        debug_assert!(files.len() <= MAX_BATCH);
        let body = serde_json::json!({ "files": files });
        let request = self
            .http
            .post(format!("{}/api/uploads", self.base))
            .json(&body);
        let answer: Envelope<Uploads> = self.call("presign", request).await?;
        if answer.data.uploads.len() != files.len() {
            return Err(HubError::BadAnswer {
                step: "presign",
                reason: format!(
                    "asked for {} uploads, got {}",
                    files.len(),
                    answer.data.uploads.len()
                ),
            });
        }
        Ok(answer.data.uploads)
    }

    /// Sends a body to a presigned URL with exactly its headers.
    /// `size` is the body's length: a streamed body must announce it, as
    /// presigned PUTs take no chunked encoding.
    pub async fn put(
        &self,
        upload: &PresignedUpload,
        body: reqwest::Body,
        size: u64,
    ) -> Result<(), HubError> {
        let method =
            reqwest::Method::from_bytes(upload.method.as_bytes()).unwrap_or(reqwest::Method::PUT);
        let mut request = self.http.request(method, &upload.url).body(body);
        let mut has_length = false;
        for (name, value) in &upload.headers {
            has_length |= name.eq_ignore_ascii_case("content-length");
            request = request.header(name, value);
        }
        if !has_length {
            request = request.header(reqwest::header::CONTENT_LENGTH, size);
        }

        // The URL is a credential: errors are stripped of it.
        let response = request.send().await.map_err(|e| HubError::Unreachable {
            step: "upload",
            source: e.without_url(),
        })?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let code = xml_code(&text).unwrap_or_else(|| "S3Error".to_owned());
        Err(classify("upload", status, code, String::new()))
    }

    /// `GET /api/uploads/{uploadId}`.
    pub async fn upload_status(&self, upload_id: &str) -> Result<UploadStatus, HubError> {
        let id: String = url::form_urlencoded::byte_serialize(upload_id.as_bytes()).collect();
        let request = self
            .http
            .get(format!("{}/api/uploads/{id}", self.base))
            .timeout(Duration::from_secs(30));
        let answer: Result<Envelope<StatusBody>, HubError> = self.call("status", request).await;
        let body = match answer {
            Ok(answer) => answer.data,
            Err(HubError::Rejected { status: 404, .. }) => return Ok(UploadStatus::Unknown),
            Err(e) => return Err(e),
        };
        Ok(match body.status.as_str() {
            "indexed" => UploadStatus::Indexed {
                replaced: !matches!(body.replaced, serde_json::Value::Null)
                    && body.replaced != serde_json::Value::Bool(false),
            },
            "rejected" => UploadStatus::Rejected {
                reason: body.reason.unwrap_or_else(|| "no reason given".to_owned()),
            },
            _ => UploadStatus::Pending,
        })
    }

    /// Whether the hub answers and accepts the key, without side effects:
    /// asks for an upload that does not exist.
    pub async fn probe(&self) -> Result<(), HubError> {
        match self.upload_status("upl_probe").await {
            Ok(_) => Ok(()),
            Err(HubError::Rejected { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        step: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, HubError> {
        let response = request
            .header("x-api-key", self.api_key.clone())
            .send()
            .await
            .map_err(|e| HubError::Unreachable {
                step,
                source: e.without_url(),
            })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| HubError::Unreachable {
            step,
            source: e.without_url(),
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| HubError::BadAnswer {
                step,
                reason: json_problem(&e),
            });
        }

        let body: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        let (code, message) = match body {
            Some(body) => (
                body.code.unwrap_or_else(|| "Unknown".to_owned()),
                body.message.unwrap_or_default(),
            ),
            None => ("Unknown".to_owned(), String::new()),
        };
        Err(classify(step, status.as_u16(), code, message))
    }
}

fn classify(step: &'static str, status: u16, code: String, message: String) -> HubError {
    match status {
        408 | 429 | 500..=599 => HubError::Unavailable { step, status, code },
        401 | 403 if step != "upload" => HubError::Refused {
            step,
            status,
            code,
            message,
        },
        _ => HubError::Rejected {
            step,
            status,
            code,
            message,
        },
    }
}

/// The `<Code>` of an S3 error document.
fn xml_code(text: &str) -> Option<String> {
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")? + start;
    Some(text[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_sort_into_retry_or_not() {
        assert!(classify("presign", 503, "x".into(), String::new()).is_transient());
        assert!(classify("presign", 429, "x".into(), String::new()).is_transient());
        assert!(matches!(
            classify("presign", 403, "QuotaExceeded".into(), String::new()),
            HubError::Refused { .. }
        ));
        assert!(matches!(
            classify("presign", 413, "PayloadTooLarge".into(), String::new()),
            HubError::Rejected { .. }
        ));
        // S3 refusing a PUT (expired URL, bad digest) is about that upload.
        assert!(matches!(
            classify("upload", 403, "AccessDenied".into(), String::new()),
            HubError::Rejected { .. }
        ));
    }

    #[test]
    fn s3_error_code() {
        let doc = "<Error><Code>BadDigest</Code><Message>m</Message></Error>";
        assert_eq!(xml_code(doc).as_deref(), Some("BadDigest"));
        assert_eq!(xml_code("nope"), None);
    }
}
