//! Orthanc's REST API as the agent reads it: the change log, studies,
//! their instances and each instance's file.

use std::time::Duration;

use serde::Deserialize;

use crate::spool::{Incoming, Spool, SpoolError};

/// A failed call to Orthanc, with a message an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum OrthancError {
    #[error("Orthanc unreachable at {url} during {step}: {}", crate::hub::error_chain(.source))]
    Unreachable {
        url: String,
        step: &'static str,
        source: reqwest::Error,
    },
    #[error(
        "Orthanc at {url} refused the credentials during {step} (HTTP 401): \
         check orthancUsername and orthancPassword"
    )]
    Unauthorized { url: String, step: &'static str },
    #[error("Orthanc at {url} answered HTTP {status} during {step}")]
    Status {
        url: String,
        step: &'static str,
        status: u16,
    },
    #[error("unexpected answer from Orthanc during {step}: {reason}")]
    BadAnswer { step: &'static str, reason: String },
}

/// A failed download into the spool: Orthanc's fault (retried) or the
/// spool's (fatal).
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(transparent)]
    Orthanc(#[from] OrthancError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// One entry of `/changes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Change {
    pub change_type: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub seq: i64,
}

/// A page of `/changes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Changes {
    pub changes: Vec<Change>,
    pub done: bool,
    pub last: i64,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(rename = "ID")]
    id: String,
}

/// Orthanc's client.
#[derive(Clone)]
pub struct Orthanc {
    base: String,
    credentials: Option<(String, String)>,
    http: reqwest::Client,
}

/// Whether `id` has the shape of an Orthanc identifier (hex groups joined
/// by dashes), so it is safe to put in a URL path.
pub fn is_orthanc_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

impl Orthanc {
    pub fn new(base: &str, username: Option<&str>, password: Option<&str>) -> Orthanc {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .expect("the HTTP client builds with static settings");
        let credentials = username
            .zip(password)
            .map(|(u, p)| (u.to_owned(), p.to_owned()));
        Orthanc {
            base: base.trim_end_matches('/').to_owned(),
            credentials,
            http,
        }
    }

    /// The base URL (no credentials in it), for messages.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `GET /system`: reachability and credentials.
    pub async fn system(&self) -> Result<serde_json::Value, OrthancError> {
        self.get_json("system", "/system").await
    }

    /// `GET /changes?since=&limit=`.
    pub async fn changes(&self, since: i64, limit: u32) -> Result<Changes, OrthancError> {
        self.get_json("changes", &format!("/changes?since={since}&limit={limit}"))
            .await
    }

    /// The sequence number of the newest change.
    pub async fn last_change(&self) -> Result<i64, OrthancError> {
        let changes: Changes = self.get_json("changes", "/changes?last").await?;
        Ok(changes.last)
    }

    /// Every study id Orthanc holds.
    pub async fn studies(&self) -> Result<Vec<String>, OrthancError> {
        self.get_json("studies", "/studies").await
    }

    /// The study's date (DICOM `YYYYMMDD`), used only to filter back-fill.
    pub async fn study_date(&self, study: &str) -> Result<Option<String>, OrthancError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Study {
            main_dicom_tags: std::collections::HashMap<String, serde_json::Value>,
        }
        let study: Study = self.get_json("study", &format!("/studies/{study}")).await?;
        Ok(study
            .main_dicom_tags
            .get("StudyDate")
            .and_then(|v| v.as_str())
            .map(str::to_owned))
    }

    /// The instance ids of a study.
    pub async fn study_instances(&self, study: &str) -> Result<Vec<String>, OrthancError> {
        let list: Vec<Resource> = self
            .get_json("study instances", &format!("/studies/{study}/instances"))
            .await?;
        Ok(list.into_iter().map(|r| r.id).collect())
    }

    /// Downloads the DICOM file of an instance into the spool, chunk by
    /// chunk, hashing it on the way.
    pub async fn download_instance(
        &self,
        instance: &str,
        spool: &Spool,
    ) -> Result<Incoming, DownloadError> {
        let mut response = self
            .get("instance file", &format!("/instances/{instance}/file"))
            .await?;
        let mut incoming = spool.incoming().await?;
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|e| OrthancError::Unreachable {
                    url: self.base.clone(),
                    step: "instance file",
                    source: e.without_url(),
                });
            match chunk {
                Ok(Some(chunk)) => incoming.write(&chunk).await?,
                Ok(None) => return Ok(incoming),
                Err(error) => {
                    incoming.discard().await;
                    return Err(error.into());
                }
            }
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        step: &'static str,
        path: &str,
    ) -> Result<T, OrthancError> {
        let response = self.get(step, path).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| OrthancError::Unreachable {
                url: self.base.clone(),
                step,
                source: e.without_url(),
            })?;
        serde_json::from_slice(&bytes).map_err(|e| OrthancError::BadAnswer {
            step,
            reason: crate::hub::json_problem(&e),
        })
    }

    async fn get(&self, step: &'static str, path: &str) -> Result<reqwest::Response, OrthancError> {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request
            .send()
            .await
            .map_err(|e| OrthancError::Unreachable {
                url: self.base.clone(),
                step,
                source: e.without_url(),
            })?;
        match response.status().as_u16() {
            200..=299 => Ok(response),
            401 | 403 => Err(OrthancError::Unauthorized {
                url: self.base.clone(),
                step,
            }),
            status => Err(OrthancError::Status {
                url: self.base.clone(),
                step,
                status,
            }),
        }
    }
}
