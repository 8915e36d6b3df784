//! Ingest end to end on the local stack: presign, plain HTTP PUT of
//! generated DICOM, the S3 event, the indexer, and what lands in the
//! tables; then the replay, duplicate, replace, quarantine, tampering and
//! bad-request cases.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use pacs_local::{Stack, StackOptions};
use pacs_testkit::dicom::{self as fixture, DicomFixture, Layout, Modality, TransferSyntax};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

type Item = HashMap<String, AttributeValue>;

/// A stack on a temporary data dir, with an HTTP client.
pub(crate) struct Harness {
    pub(crate) stack: Stack,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// A registered hospital and its agent key.
pub(crate) struct Hospital {
    pub(crate) id: String,
    pub(crate) key: String,
}

/// A presigned upload as the API returned it.
#[derive(Clone)]
pub(crate) struct Upload {
    pub(crate) id: String,
    url: String,
    headers: serde_json::Map<String, Value>,
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Harness {
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let stack = Stack::start(StackOptions::new(dir.path()))
            .await
            .expect("stack starts");
        Harness {
            stack,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub(crate) async fn register(&self, name: &str) -> Hospital {
        let resp = self
            .http
            .post(format!("{}/api/hospitals/register", self.stack.api_url()))
            .header("x-api-key", self.stack.platform_admin_key())
            .json(&json!({
                "name": name,
                "contactEmail": "it@example.org",
                "contactPhone": "+1 555 0100",
                "address": "1 Main St",
                "plan": "basic",
                "settings": {}
            }))
            .send()
            .await
            .expect("register");
        let status = resp.status();
        let body: Value = resp.json().await.expect("json");
        assert_eq!(status, 201, "{body}");
        Hospital {
            id: body["data"]["hospitalId"].as_str().expect("id").to_owned(),
            key: body["data"]["apiKey"].as_str().expect("key").to_owned(),
        }
    }

    async fn post_uploads(&self, key: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/api/uploads", self.stack.api_url()))
            .header("x-api-key", key)
            .json(&body)
            .send()
            .await
            .expect("presign");
        (resp.status().as_u16(), resp.json().await.expect("json"))
    }

    pub(crate) async fn get_upload(&self, key: &str, id: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}/api/uploads/{id}", self.stack.api_url()))
            .header("x-api-key", key)
            .send()
            .await
            .expect("get upload");
        (resp.status().as_u16(), resp.json().await.expect("json"))
    }

    /// Presigns one file, declaring `uids` (study, series, sop) if given.
    pub(crate) async fn presign(
        &self,
        h: &Hospital,
        bytes: &[u8],
        uids: Option<[&str; 3]>,
    ) -> Upload {
        let mut file = json!({ "size": bytes.len(), "sha256": sha256_hex(bytes) });
        if let Some([study, series, sop]) = uids {
            file["studyInstanceUid"] = json!(study);
            file["seriesInstanceUid"] = json!(series);
            file["sopInstanceUid"] = json!(sop);
        }
        let (status, body) = self.post_uploads(&h.key, json!({ "files": [file] })).await;
        assert_eq!(status, 201, "{body}");
        let u = &body["data"]["uploads"][0];
        assert_eq!(u["method"], "PUT");
        Upload {
            id: u["uploadId"].as_str().expect("id").to_owned(),
            url: u["url"].as_str().expect("url").to_owned(),
            headers: u["headers"].as_object().expect("headers").clone(),
        }
    }

    /// PUTs `bytes` with exactly the headers the API returned.
    async fn put(&self, upload: &Upload, bytes: Vec<u8>) -> u16 {
        let mut req = self.http.put(&upload.url);
        for (name, value) in &upload.headers {
            req = req.header(name, value.as_str().expect("header value"));
        }
        req.body(bytes).send().await.expect("put").status().as_u16()
    }

    /// Polls the upload until it leaves `pending`.
    pub(crate) async fn settled(&self, h: &Hospital, id: &str) -> Value {
        for _ in 0..300 {
            let (status, body) = self.get_upload(&h.key, id).await;
            assert_eq!(status, 200, "{body}");
            if body["data"]["status"] != "pending" {
                return body["data"].clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("upload {id} stayed pending");
    }

    /// Presign, PUT and wait: the whole path for one file.
    async fn ingest(&self, h: &Hospital, bytes: Vec<u8>) -> Value {
        self.ingest_upload(h, bytes).await.1
    }

    /// As [`Harness::ingest`], keeping the upload.
    async fn ingest_upload(&self, h: &Hospital, bytes: Vec<u8>) -> (Upload, Value) {
        let upload = self.presign(h, &bytes, None).await;
        assert_eq!(self.put(&upload, bytes).await, 200);
        let status = self.settled(h, &upload.id).await;
        (upload, status)
    }

    async fn item(&self, table: &str, pk: &str, sk: &str) -> Option<Item> {
        let ctx = self.stack.context();
        ctx.clients
            .dynamodb
            .get_item()
            .table_name(table)
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::S(sk.into()))
            .consistent_read(true)
            .send()
            .await
            .expect("get item")
            .item
    }

    async fn archive(&self, pk: &str, sk: &str) -> Option<Item> {
        let table = self.stack.context().settings.archive_table.clone();
        self.item(&table, pk, sk).await
    }

    pub(crate) async fn object_exists(&self, key: &str) -> bool {
        let ctx = self.stack.context();
        ctx.clients
            .s3
            .head_object()
            .bucket(&ctx.settings.bucket)
            .key(key)
            .send()
            .await
            .is_ok()
    }

    /// Writes an object straight to the bucket, as a writer with bucket
    /// access (not a presigned URL) would; the stack still notifies.
    async fn put_direct(&self, key: &str, bytes: Vec<u8>) {
        let ctx = self.stack.context();
        ctx.clients
            .s3
            .put_object()
            .bucket(&ctx.settings.bucket)
            .key(key)
            .body(bytes.into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("direct put of {key}: {e}"));
    }

    /// The user metadata of an object (panics when it is missing).
    async fn object_metadata(&self, key: &str) -> HashMap<String, String> {
        let ctx = self.stack.context();
        let head = ctx
            .clients
            .s3
            .head_object()
            .bucket(&ctx.settings.bucket)
            .key(key)
            .send();
        let head = head.await.unwrap_or_else(|e| panic!("{key}: {e}"));
        head.metadata.unwrap_or_default()
    }

    /// One run of the scheduled sweep, as the stack's timer runs it:
    /// counts every open study.
    pub(crate) async fn sweep(&self) -> on_object_created::Sweep {
        self.stack.sweep_now().await.expect("sweep")
    }

    /// Sum of the hospital's stored-bytes shards.
    async fn stored(&self, h: &Hospital) -> (i64, i64) {
        let table = self.stack.context().settings.tenants_table.clone();
        let (mut bytes, mut count) = (0, 0);
        for shard in 0..16 {
            if let Some(item) = self
                .item(&table, &format!("{}#USAGE#{shard}", h.id), "USAGE")
                .await
            {
                bytes += num(&item, "storedBytes");
                count += num(&item, "instances");
            }
        }
        (bytes, count)
    }
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn num(item: &Item, name: &str) -> i64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not a number in {item:?}"))
}

fn study_pk(h: &Hospital, f: &DicomFixture) -> String {
    format!("{}#{}", h.id, f.study_instance_uid)
}

fn instance_sk(f: &DicomFixture) -> String {
    format!("INSTANCE#{}#{}", f.series_instance_uid, f.sop_instance_uid)
}

#[tokio::test]
async fn indexes_every_encoding_field_by_field() {
    let harness = Harness::start().await;
    let h = harness.register("General Hospital").await;

    let ct = DicomFixture::ct();
    let variants = vec![
        ct.clone(),
        ct.next_instance()
            .transfer_syntax(TransferSyntax::ImplicitVrLittleEndian),
        ct.next_instance()
            .next_instance()
            .transfer_syntax(TransferSyntax::ExplicitVrBigEndian),
        DicomFixture::new(Modality::Mr)
            .transfer_syntax(TransferSyntax::DeflatedExplicitVrLittleEndian),
        DicomFixture::new(Modality::Mr).frames(4),
        DicomFixture::ct().layout(Layout::NoPreamble),
    ];

    for f in &variants {
        let bytes = f.to_bytes();
        let size = bytes.len() as i64;
        let status = harness.ingest(&h, bytes.clone()).await;
        assert_eq!(status["status"], "indexed", "{status}");
        assert_eq!(status["sopInstanceUid"], f.sop_instance_uid.as_str());
        assert_eq!(status["studyInstanceUid"], f.study_instance_uid.as_str());
        assert_eq!(status["seriesInstanceUid"], f.series_instance_uid.as_str());
        assert_eq!(status["replaced"], false);

        let inst = harness
            .archive(&study_pk(&h, f), &instance_sk(f))
            .await
            .expect("instance");
        assert_eq!(text(&inst, "hospitalId"), Some(h.id.as_str()));
        assert_eq!(text(&inst, "sopClassUid"), Some(f.sop_class_uid.as_str()));
        assert_eq!(
            text(&inst, "transferSyntaxUid"),
            Some(f.options.transfer_syntax.uid())
        );
        assert_eq!(text(&inst, "sha256"), Some(sha256_hex(&bytes).as_str()));
        assert_eq!(num(&inst, "sizeBytes"), size);
        assert_eq!(num(&inst, "rows"), f.rows as i64);
        assert_eq!(num(&inst, "columns"), f.columns as i64);
        if let Some(n) = f.instance_number {
            assert_eq!(num(&inst, "instanceNumber"), n as i64);
        }
        if f.number_of_frames > 1 {
            assert_eq!(num(&inst, "numberOfFrames"), f.number_of_frames as i64);
        }
        let key = text(&inst, "s3Key").expect("s3Key");
        assert!(key.starts_with(&format!("dicom/{}/upl_", h.id)), "{key}");
        assert!(harness.object_exists(key).await);
        assert!(num(&inst, "headerBytes") > 0);
        assert!(
            !inst.contains_key("metadata"),
            "the header stays in the object"
        );
        assert_eq!(text(&inst, "modality"), Some(f.modality.code()));

        let series = harness
            .archive(
                &study_pk(&h, f),
                &format!("SERIES#{}", f.series_instance_uid),
            )
            .await
            .expect("series");
        assert_eq!(text(&series, "modality"), Some(f.modality.code()));
        assert_eq!(
            text(&series, "seriesDescription"),
            f.series_description.as_deref()
        );
        assert_eq!(
            text(&series, "bodyPartExamined"),
            f.body_part_examined.as_deref()
        );
        if let Some(n) = f.series_number {
            assert_eq!(num(&series, "seriesNumber"), n as i64);
        }

        let study = harness
            .archive(&study_pk(&h, f), "STUDY")
            .await
            .expect("study");
        assert_eq!(text(&study, "patientId"), f.patient_id.as_deref());
        assert_eq!(text(&study, "patientName"), f.patient_name.as_deref());
        let lower = f.patient_name.as_deref().map(str::to_lowercase);
        assert_eq!(text(&study, "patientNameLower"), lower.as_deref());
        assert_eq!(
            text(&study, "patientBirthDate"),
            f.patient_birth_date.as_deref()
        );
        assert_eq!(text(&study, "patientSex"), f.patient_sex.as_deref());
        assert_eq!(text(&study, "studyDate"), f.study_date.as_deref());
        assert_eq!(text(&study, "studyTime"), f.study_time.as_deref());
        assert_eq!(
            text(&study, "accessionNumber"),
            f.accession_number.as_deref()
        );
        assert_eq!(
            text(&study, "studyDescription"),
            f.study_description.as_deref()
        );
        assert_eq!(text(&study, "gsi1pk"), Some(h.id.as_str()));
        let gsi1sk = format!(
            "{}{}#{}",
            f.study_date.as_deref().unwrap_or(""),
            f.study_time.as_deref().unwrap_or(""),
            f.study_instance_uid
        );
        assert_eq!(text(&study, "gsi1sk"), Some(gsi1sk.as_str()));
        let modalities = study
            .get("modalities")
            .and_then(|m| m.as_ss().ok())
            .expect("modalities");
        assert!(modalities.contains(&f.modality.code().to_owned()));
        for field in ["createdAt", "updatedAt", "lastInstanceAt"] {
            assert!(text(&study, field).is_some(), "{field}");
        }
    }

    // Counted by the sweep: the three CT instances share a study and a
    // series.
    let swept = harness.sweep().await;
    assert!(swept.swept >= 1, "{swept:?}");
    let study = harness
        .archive(&study_pk(&h, &ct), "STUDY")
        .await
        .expect("study");
    assert_eq!(num(&study, "numberOfInstances"), 3);
    assert_eq!(num(&study, "numberOfSeries"), 1);
    let ct_bytes: i64 = variants[..3]
        .iter()
        .map(|f| f.to_bytes().len() as i64)
        .sum();
    assert_eq!(num(&study, "sizeBytes"), ct_bytes);
    let series = harness
        .archive(
            &study_pk(&h, &ct),
            &format!("SERIES#{}", ct.series_instance_uid),
        )
        .await
        .expect("series");
    assert_eq!(num(&series, "numberOfInstances"), 3);

    let total: i64 = variants.iter().map(|f| f.to_bytes().len() as i64).sum();
    assert_eq!(harness.stored(&h).await, (total, variants.len() as i64));
    // A second sweep finds nothing new to count.
    harness.sweep().await;
    assert_eq!(harness.stored(&h).await, (total, variants.len() as i64));
    harness.stack.shutdown().await;
}

#[tokio::test]
async fn replayed_events_and_duplicate_files_count_once() {
    let harness = Harness::start().await;
    let h = harness.register("Replay Hospital").await;
    let mut deliveries = harness.stack.subscribe_s3_deliveries();

    let f = DicomFixture::ct();
    let bytes = f.to_bytes();
    let status = harness.ingest(&h, bytes.clone()).await;
    assert_eq!(status["status"], "indexed");
    let captured = loop {
        let d = deliveries.recv().await.expect("delivery");
        if d.outcome.is_ok() {
            break d.event;
        }
    };

    // The same event three more times.
    let ctx = harness.stack.context();
    for _ in 0..3 {
        on_object_created::handle(&ctx, captured.clone())
            .await
            .expect("replay succeeds");
    }
    let pk = study_pk(&h, &f);
    harness.sweep().await;
    let study = harness.archive(&pk, "STUDY").await.expect("study");
    assert_eq!(num(&study, "numberOfInstances"), 1);
    assert_eq!(num(&study, "sizeBytes"), bytes.len() as i64);
    assert_eq!(harness.stored(&h).await, (bytes.len() as i64, 1));

    // The same file through a second upload: one instance, same counts,
    // the second copy is not kept.
    let second = harness.presign(&h, &bytes, None).await;
    assert_eq!(harness.put(&second, bytes.clone()).await, 200);
    let status = harness.settled(&h, &second.id).await;
    assert_eq!(status["status"], "indexed", "{status}");
    assert_eq!(status["duplicate"], true);
    assert_eq!(status["replaced"], false);
    harness.sweep().await;
    harness.sweep().await;
    let study = harness.archive(&pk, "STUDY").await.expect("study");
    assert_eq!(num(&study, "numberOfInstances"), 1);
    assert_eq!(num(&study, "sizeBytes"), bytes.len() as i64);
    let series = harness
        .archive(&pk, &format!("SERIES#{}", f.series_instance_uid))
        .await
        .expect("series");
    assert_eq!(num(&series, "numberOfInstances"), 1);
    assert_eq!(harness.stored(&h).await, (bytes.len() as i64, 1));
    assert!(
        !harness
            .object_exists(&format!("dicom/{}/{}.dcm", h.id, second.id))
            .await
    );
    let inst = harness
        .archive(&pk, &instance_sk(&f))
        .await
        .expect("instance");
    assert!(harness.object_exists(text(&inst, "s3Key").unwrap()).await);
    harness.stack.shutdown().await;
}

#[tokio::test]
async fn a_different_file_replaces_the_instance_once() {
    let harness = Harness::start().await;
    let h = harness.register("Replace Hospital").await;

    let first = DicomFixture::ct();
    let first_bytes = first.to_bytes();
    let status = harness.ingest(&h, first_bytes.clone()).await;
    assert_eq!(status["status"], "indexed");
    harness.sweep().await;
    assert_eq!(harness.stored(&h).await, (first_bytes.len() as i64, 1));
    let pk = study_pk(&h, &first);
    let old_key = text(
        &harness.archive(&pk, &instance_sk(&first)).await.unwrap(),
        "s3Key",
    )
    .unwrap()
    .to_owned();

    // Same instance, different content and size.
    let mut second = first.clone();
    second.options.pixel_data_len = Some(first.rows as usize * first.columns as usize * 2 + 512);
    second.series_description = Some("AXIAL 2.5MM CORRECTED".into());
    let second_bytes = second.to_bytes();
    assert_ne!(first_bytes, second_bytes);
    let status = harness.ingest(&h, second_bytes.clone()).await;
    assert_eq!(status["status"], "indexed", "{status}");
    assert_eq!(status["replaced"], true);

    let inst = harness
        .archive(&pk, &instance_sk(&first))
        .await
        .expect("instance");
    assert_eq!(
        text(&inst, "sha256"),
        Some(sha256_hex(&second_bytes).as_str())
    );
    assert_eq!(num(&inst, "sizeBytes"), second_bytes.len() as i64);
    harness.sweep().await;
    let study = harness.archive(&pk, "STUDY").await.expect("study");
    assert_eq!(num(&study, "numberOfInstances"), 1);
    assert_eq!(num(&study, "sizeBytes"), second_bytes.len() as i64);
    assert_eq!(harness.stored(&h).await, (second_bytes.len() as i64, 1));
    assert!(
        !harness.object_exists(&old_key).await,
        "the superseded object is deleted"
    );
    assert!(harness.object_exists(text(&inst, "s3Key").unwrap()).await);
    harness.stack.shutdown().await;
}

#[tokio::test]
async fn bad_files_are_quarantined_with_their_reason() {
    let harness = Harness::start().await;
    let h = harness.register("Quarantine Hospital").await;

    let good = DicomFixture::ct();
    let cases: Vec<(&str, Vec<u8>, Option<[String; 3]>)> = vec![
        ("not dicom", fixture::hostile::not_dicom(), None),
        ("truncated", fixture::hostile::truncated(300), None),
        (
            "wrong uids",
            good.to_bytes(),
            Some([
                good.study_instance_uid.clone(),
                good.series_instance_uid.clone(),
                fixture::new_uid(),
            ]),
        ),
    ];
    for (name, bytes, uids) in cases {
        let declared = uids
            .as_ref()
            .map(|u| [u[0].as_str(), u[1].as_str(), u[2].as_str()]);
        let upload = harness.presign(&h, &bytes, declared).await;
        assert_eq!(harness.put(&upload, bytes).await, 200, "{name}");
        let status = harness.settled(&h, &upload.id).await;
        assert_eq!(status["status"], "rejected", "{name}: {status}");
        let reason = status["reason"].as_str().expect("reason");
        assert!(!reason.is_empty(), "{name}");
        assert!(
            !reason.contains("DOE"),
            "{name}: the reason holds no patient data"
        );
        let quarantined = format!("quarantine/{}/{}.dcm", h.id, upload.id);
        let metadata = harness.object_metadata(&quarantined).await;
        let recorded = metadata.get("quarantine-reason").map(String::as_str);
        assert_eq!(recorded, Some(reason), "{name}");
        assert!(
            !harness
                .object_exists(&format!("dicom/{}/{}.dcm", h.id, upload.id))
                .await
        );
    }
    assert_eq!(harness.stored(&h).await.1, 0);
    assert!(
        harness
            .archive(&study_pk(&h, &good), "STUDY")
            .await
            .is_none()
    );
    harness.stack.shutdown().await;
}

#[tokio::test]
async fn an_object_under_another_hospitals_prefix_is_quarantined() {
    let harness = Harness::start().await;
    let a = harness.register("Hospital A").await;
    let b = harness.register("Hospital B").await;

    // A's upload id written (with the stack's own credentials) under B's
    // prefix: no upload of B has that id.
    let f = DicomFixture::ct();
    let bytes = f.to_bytes();
    let upload = harness.presign(&a, &bytes, None).await;
    let mut deliveries = harness.stack.subscribe_s3_deliveries();
    let key = format!("dicom/{}/{}.dcm", b.id, upload.id);
    harness.put_direct(&key, bytes).await;
    let delivered = deliveries.recv().await.expect("delivery");
    assert!(delivered.outcome.is_ok(), "{:?}", delivered.outcome);

    assert!(!harness.object_exists(&key).await);
    assert!(
        harness
            .object_exists(&format!("quarantine/{}/{}.dcm", b.id, upload.id))
            .await
    );
    assert!(
        harness
            .archive(&format!("{}#{}", b.id, f.study_instance_uid), "STUDY")
            .await
            .is_none()
    );
    assert!(
        harness
            .archive(&format!("{}#{}", a.id, f.study_instance_uid), "STUDY")
            .await
            .is_none()
    );
    let (_, status) = harness.get_upload(&a.key, &upload.id).await;
    assert_eq!(status["data"]["status"], "pending");
    harness.stack.shutdown().await;
}

#[tokio::test]
async fn tampered_puts_are_refused_and_the_upload_stays_pending() {
    let harness = Harness::start().await;
    let h = harness.register("Tamper Hospital").await;
    let bytes = DicomFixture::ct().to_bytes();
    let upload = harness.presign(&h, &bytes, None).await;

    // Same length, other bytes: the signed checksum does not match.
    let mut other = bytes.clone();
    let last = other.len() - 1;
    other[last] ^= 0xff;
    assert!(harness.put(&upload, other).await >= 400);
    // Another length, with its true Content-Length: not the signed one.
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"xx");
    let mut wrong_length = Upload {
        headers: upload.headers.clone(),
        ..upload.clone()
    };
    wrong_length.headers.remove("content-length");
    assert!(harness.put(&wrong_length, longer).await >= 400);
    // No checksum header at all.
    let mut unsigned = Upload {
        headers: upload.headers.clone(),
        ..upload.clone()
    };
    unsigned.headers.remove("x-amz-checksum-sha256");
    assert!(harness.put(&unsigned, bytes.clone()).await >= 400);

    let (status, body) = harness.get_upload(&h.key, &upload.id).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["status"], "pending");
    assert!(
        !harness
            .object_exists(&format!("dicom/{}/{}.dcm", h.id, upload.id))
            .await
    );

    // The true bytes still go through the same URL, and no refused body
    // is left behind in the local server's spool.
    assert_eq!(harness.put(&upload, bytes).await, 200);
    assert_eq!(harness.settled(&h, &upload.id).await["status"], "indexed");
    let spool = harness._dir.path().join("s3-spool");
    assert_eq!(std::fs::read_dir(&spool).expect("spool dir").count(), 0);
    harness.stack.shutdown().await;
}

#[tokio::test]
async fn bad_requests_other_tenants_and_quota_are_refused() {
    let harness = Harness::start().await;
    let a = harness.register("Strict A").await;
    let b = harness.register("Strict B").await;
    let sha = "ab".repeat(32);

    for (body, needle) in [
        (
            json!({"files": [{"size": 10, "sha256": "abc"}]}),
            "files[0].sha256",
        ),
        (
            json!({"files": [{"size": 0, "sha256": sha}]}),
            "files[0].size",
        ),
        (
            json!({"files": [{"size": -4, "sha256": sha}]}),
            "files[0].size",
        ),
        (
            json!({"files": vec![json!({"size": 1, "sha256": sha}); 101]}),
            "101",
        ),
    ] {
        let (status, resp) = harness.post_uploads(&a.key, body).await;
        assert_eq!(status, 400, "{resp}");
        assert!(resp["message"].as_str().unwrap().contains(needle), "{resp}");
    }
    let (status, resp) = harness
        .post_uploads(
            &a.key,
            json!({"files": [{"size": 6_000_000_000u64, "sha256": sha}]}),
        )
        .await;
    assert_eq!(status, 413, "{resp}");

    // Another hospital's upload id answers 404, like an unknown one.
    let bytes = DicomFixture::ct().to_bytes();
    let upload = harness.presign(&a, &bytes, None).await;
    let (status, _) = harness.get_upload(&b.key, &upload.id).await;
    assert_eq!(status, 404);
    let (status, _) = harness
        .get_upload(&a.key, "upl_000000000000000000000000")
        .await;
    assert_eq!(status, 404);

    // A basic plan holds 100 GB: 100 files of 2 GB pass it.
    let big = json!({"size": 2_000_000_000u64, "sha256": sha});
    let (status, resp) = harness
        .post_uploads(&a.key, json!({"files": vec![big; 100]}))
        .await;
    assert_eq!(status, 403, "{resp}");
    assert_eq!(resp["code"], "QuotaExceeded");
    assert!(
        resp["message"].as_str().unwrap().contains("100000000000"),
        "{resp}"
    );

    // Pending reservations count: 40 GB twice fits, a third does not.
    let forty = json!({"size": 2_000_000_000u64, "sha256": sha});
    for _ in 0..2 {
        let (status, resp) = harness
            .post_uploads(&b.key, json!({"files": vec![forty.clone(); 20]}))
            .await;
        assert_eq!(status, 201, "{resp}");
    }
    let (status, resp) = harness
        .post_uploads(&b.key, json!({"files": vec![forty.clone(); 20]}))
        .await;
    assert_eq!(status, 403, "{resp}");
    assert_eq!(resp["code"], "QuotaExceeded");
    harness.stack.shutdown().await;
}

#[tokio::test]
async fn indexing_and_quiet_studies_are_announced_without_patient_data() {
    let harness = Harness::start().await;
    let h = harness.register("Events Hospital").await;
    let mut bus = harness.stack.subscribe_bus_events();

    let f = DicomFixture::ct();
    let status = harness.ingest(&h, f.to_bytes()).await;
    assert_eq!(status["status"], "indexed");
    let indexed = loop {
        let event = bus.recv().await.expect("bus event");
        if event.to_string().contains("InstanceIndexed") {
            break event;
        }
    };
    let text = indexed.to_string();
    assert!(text.contains(&f.sop_instance_uid), "{text}");
    assert!(
        !text.contains("DOE") && !text.contains("MRN00412345"),
        "{text}"
    );

    // A sweep with a zero quiet time counts the study, closes it and
    // announces it once.
    let stack_ctx = harness.stack.context();
    let mut settings = stack_ctx.settings.clone();
    settings.stable_study_after = Duration::ZERO;
    let ctx = pacs_shared::Context::new(settings, stack_ctx.clients.clone());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let sweep = |ctx| async move {
        on_object_created::sweep_open_studies(ctx)
            .await
            .expect("sweep")
    };
    let first = sweep(&ctx).await;
    assert_eq!((first.swept, first.announced), (1, 1), "{first:?}");
    let second = sweep(&ctx).await;
    assert_eq!((second.swept, second.announced), (0, 0), "{second:?}");
    let stable = loop {
        let event = bus.recv().await.expect("bus event");
        if event.to_string().contains("StudyStable") {
            break event.to_string();
        }
    };
    assert!(stable.contains(&f.study_instance_uid), "{stable}");
    assert!(!stable.contains("DOE"), "{stable}");
    let study = harness
        .archive(&study_pk(&h, &f), "STUDY")
        .await
        .expect("study");
    assert!(study.get("stableAt").is_some());
    assert_eq!(study.get("open"), Some(&AttributeValue::Bool(false)));
    assert!(!study.contains_key("gsi2pk"), "out of the open-study index");
    assert_eq!(num(&study, "numberOfInstances"), 1);

    // A late instance reopens the study; it is counted and announced again
    // after its next quiet spell.
    let late = f.next_instance();
    let status = harness.ingest(&h, late.to_bytes()).await;
    assert_eq!(status["status"], "indexed");
    let study = harness
        .archive(&study_pk(&h, &f), "STUDY")
        .await
        .expect("study");
    assert_eq!(study.get("open"), Some(&AttributeValue::Bool(true)));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let third = sweep(&ctx).await;
    assert_eq!((third.swept, third.announced), (1, 1), "{third:?}");
    let study = harness
        .archive(&study_pk(&h, &f), "STUDY")
        .await
        .expect("study");
    assert_eq!(num(&study, "numberOfInstances"), 2);
    let total = (f.to_bytes().len() + late.to_bytes().len()) as i64;
    assert_eq!(harness.stored(&h).await, (total, 2));

    // A sweep that closed a study and stopped before publishing (here:
    // closed by hand, still in the open index) announces it next time.
    let key = HashMap::from([
        ("pk".to_owned(), AttributeValue::S(study_pk(&h, &f))),
        ("sk".to_owned(), AttributeValue::S("STUDY".into())),
    ]);
    let stamp = "2026-01-01T00:00:00Z";
    ctx.clients
        .dynamodb
        .update_item()
        .table_name(&ctx.settings.archive_table)
        .set_key(Some(key))
        .update_expression("SET #o = :f, stableAt = :at, gsi2pk = :h, gsi2sk = :s")
        .expression_attribute_names("#o", "open")
        .expression_attribute_values(":f", AttributeValue::Bool(false))
        .expression_attribute_values(":at", AttributeValue::S(stamp.into()))
        .expression_attribute_values(":h", AttributeValue::S(h.id.clone()))
        .expression_attribute_values(":s", AttributeValue::S(f.study_instance_uid.clone()))
        .send()
        .await
        .expect("close by hand");
    let fourth = sweep(&ctx).await;
    assert_eq!((fourth.swept, fourth.announced), (1, 1), "{fourth:?}");
    let study = harness
        .archive(&study_pk(&h, &f), "STUDY")
        .await
        .expect("study");
    assert!(!study.contains_key("gsi2pk"), "out of the open-study index");
    assert_eq!(self::text(&study, "stableAt"), Some(stamp));
    harness.stack.shutdown().await;
}

#[tokio::test]
async fn overlapping_sweeps_count_each_file_once() {
    let harness = Harness::start().await;
    let h = harness.register("Sweep Hospital").await;

    let first = DicomFixture::ct();
    let files = [
        first.clone(),
        first.next_instance(),
        first.next_instance().next_instance(),
    ];
    let mut total = 0;
    for (i, f) in files.iter().enumerate() {
        let bytes = f.to_bytes();
        total += bytes.len() as i64;
        assert_eq!(harness.ingest(&h, bytes).await["status"], "indexed");
        // Three sweeps at once after every file: each file still counts once.
        let _ = tokio::join!(harness.sweep(), harness.sweep(), harness.sweep());
        assert_eq!(harness.stored(&h).await, (total, i as i64 + 1));
    }
    let study = harness
        .archive(&study_pk(&h, &first), "STUDY")
        .await
        .expect("study");
    assert_eq!(num(&study, "numberOfInstances"), 3);
    assert_eq!(num(&study, "countedInstances"), 3);
    assert_eq!(num(&study, "sizeBytes"), total);
    harness.stack.shutdown().await;
}

#[tokio::test]
async fn a_large_file_is_stored_intact_and_read_only_as_far_as_its_header() {
    let harness = Harness::start().await;
    let h = harness.register("Large File Hospital").await;
    let f = DicomFixture::new(Modality::Mr).frames(24).size(512, 512);
    let bytes = f.to_bytes();
    assert!(bytes.len() > 12 << 20, "{} bytes", bytes.len());

    let status = harness.ingest(&h, bytes.clone()).await;
    assert_eq!(status["status"], "indexed", "{status}");
    let inst = harness
        .archive(&study_pk(&h, &f), &instance_sk(&f))
        .await
        .expect("instance");
    assert_eq!(num(&inst, "numberOfFrames"), 24);
    assert!(num(&inst, "headerBytes") < 64 * 1024);

    let ctx = harness.stack.context();
    let stored = ctx
        .clients
        .s3
        .get_object()
        .bucket(&ctx.settings.bucket)
        .key(text(&inst, "s3Key").unwrap())
        .send()
        .await
        .expect("get")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(sha256_hex(&stored), sha256_hex(&bytes));
    harness.stack.shutdown().await;
}

#[tokio::test]
async fn a_study_counted_per_instance_before_is_not_counted_again() {
    let harness = Harness::start().await;
    let h = harness.register("Legacy Hospital").await;
    let ctx = harness.stack.context();
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: i64| AttributeValue::N(v.to_string());
    let put = |table: String, item: Item| {
        let ctx = ctx.clone();
        async move {
            ctx.clients
                .dynamodb
                .put_item()
                .table_name(table)
                .set_item(Some(item))
                .send()
                .await
                .expect("put");
        }
    };
    let (archive, tenants) = (
        ctx.settings.archive_table.clone(),
        ctx.settings.tenants_table.clone(),
    );

    // As the per-instance indexer left it: one 1,000-byte instance, its
    // study counters, and the stored bytes already added.
    let pk = format!("{}#2.25.7", h.id);
    put(
        archive.clone(),
        Item::from([
            ("pk".into(), s(&pk)),
            ("sk".into(), s("STUDY")),
            ("hospitalId".into(), s(&h.id)),
            ("studyInstanceUid".into(), s("2.25.7")),
            ("numberOfSeries".into(), n(1)),
            ("numberOfInstances".into(), n(1)),
            ("sizeBytes".into(), n(1000)),
            ("open".into(), AttributeValue::Bool(true)),
            ("gsi2pk".into(), s(&h.id)),
            ("gsi2sk".into(), s("2.25.7")),
        ]),
    )
    .await;
    for (sop, size) in [("2.25.8", 1000), ("2.25.9", 500)] {
        put(
            archive.clone(),
            Item::from([
                ("pk".into(), s(&pk)),
                ("sk".into(), s(&format!("INSTANCE#2.25.1#{sop}"))),
                ("seriesInstanceUid".into(), s("2.25.1")),
                ("sizeBytes".into(), n(size)),
                ("sha256".into(), s(sop)),
                ("indexedAt".into(), s("2026-01-01T00:00:00Z")),
            ]),
        )
        .await;
    }
    put(
        tenants,
        Item::from([
            ("pk".into(), s(&format!("{}#USAGE#0", h.id))),
            ("sk".into(), s("USAGE")),
            ("storedBytes".into(), n(1000)),
            ("instances".into(), n(1)),
        ]),
    )
    .await;

    // The second instance (500 bytes) is new to the count; the first is not.
    harness.sweep().await;
    harness.sweep().await;
    assert_eq!(harness.stored(&h).await, (1500, 2));
    let study = harness.archive(&pk, "STUDY").await.expect("study");
    assert_eq!(num(&study, "numberOfInstances"), 2);
    assert_eq!(num(&study, "countedBytes"), 1500);
    harness.stack.shutdown().await;
}

#[tokio::test]
async fn a_late_redelivery_never_takes_back_a_replaced_instance() {
    let harness = Harness::start().await;
    let h = harness.register("Late Delivery Hospital").await;
    let ctx = harness.stack.context();
    let mut deliveries = harness.stack.subscribe_s3_deliveries();

    let first = DicomFixture::ct();
    let first_bytes = first.to_bytes();
    let (upload, status) = harness.ingest_upload(&h, first_bytes.clone()).await;
    assert_eq!(status["status"], "indexed");
    let first_event = loop {
        let d = deliveries.recv().await.expect("delivery");
        if d.outcome.is_ok() {
            break d.event;
        }
    };

    let mut second = first.clone();
    second.series_description = Some("AXIAL CORRECTED".into());
    let status = harness.ingest(&h, second.to_bytes()).await;
    assert_eq!(status["replaced"], true, "{status}");
    let pk = study_pk(&h, &first);
    let holder = |item: Item| text(&item, "s3Key").unwrap().to_owned();
    let second_key = holder(harness.archive(&pk, &instance_sk(&first)).await.unwrap());

    // As if the first upload's delivery had stopped before its commit.
    let set_pending = || async {
        ctx.clients
            .dynamodb
            .update_item()
            .table_name(&ctx.settings.tenants_table)
            .key(
                "pk",
                AttributeValue::S(format!("{}#UPLOAD#{}", h.id, upload.id)),
            )
            .key("sk", AttributeValue::S("UPLOAD".into()))
            .update_expression("SET #s = :p")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":p", AttributeValue::S("pending".into()))
            .send()
            .await
            .expect("reset upload");
    };

    // Its retry after the replacement deleted its object: the upload ends
    // rejected with the reason instead of failing for ever.
    set_pending().await;
    on_object_created::handle(&ctx, first_event.clone())
        .await
        .expect("a retry of a vanished object succeeds");
    let (_, body) = harness.get_upload(&h.key, &upload.id).await;
    assert_eq!(body["data"]["status"], "rejected", "{body}");
    assert!(body["data"]["reason"].as_str().unwrap().contains("gone"));

    // Its retry while its object still exists: the newer file keeps the
    // instance and its object.
    set_pending().await;
    let first_key = format!("dicom/{}/{}.dcm", h.id, upload.id);
    harness.put_direct(&first_key, first_bytes).await;
    let status = harness.settled(&h, &upload.id).await;
    assert_eq!(status["status"], "indexed", "{status}");
    let inst = harness.archive(&pk, &instance_sk(&first)).await.unwrap();
    assert_eq!(holder(inst), second_key);
    assert!(harness.object_exists(&second_key).await);
    harness.stack.shutdown().await;
}

#[tokio::test]
async fn a_study_date_first_seen_on_a_later_instance_sets_the_list_order() {
    let harness = Harness::start().await;
    let h = harness.register("Undated Hospital").await;

    let mut undated = DicomFixture::ct();
    undated.study_date = None;
    undated.study_time = None;
    assert_eq!(
        harness.ingest(&h, undated.to_bytes()).await["status"],
        "indexed"
    );
    let pk = study_pk(&h, &undated);
    let study = harness.archive(&pk, "STUDY").await.expect("study");
    assert_eq!(
        text(&study, "gsi1sk"),
        Some(format!("#{}", undated.study_instance_uid).as_str())
    );

    let mut dated = undated.clone();
    dated.sop_instance_uid = format!("{}.9", undated.sop_instance_uid);
    dated.study_date = Some("20240315".into());
    dated.study_time = Some("101500".into());
    assert_eq!(
        harness.ingest(&h, dated.to_bytes()).await["status"],
        "indexed"
    );
    let study = harness.archive(&pk, "STUDY").await.expect("study");
    assert_eq!(text(&study, "studyDate"), Some("20240315"));
    assert_eq!(
        text(&study, "gsi1sk"),
        Some(format!("20240315101500#{}", undated.study_instance_uid).as_str())
    );
    harness.stack.shutdown().await;
}

#[tokio::test]
async fn a_replacement_also_clears_what_an_interrupted_one_left() {
    let harness = Harness::start().await;
    let h = harness.register("Third File Hospital").await;

    let first = DicomFixture::ct();
    let first_bytes = first.to_bytes();
    let (upload, _) = harness.ingest_upload(&h, first_bytes.clone()).await;
    let mut second = first.clone();
    second.series_description = Some("SECOND".into());
    assert_eq!(
        harness.ingest(&h, second.to_bytes()).await["replaced"],
        true
    );

    // As if the second file's delivery had stopped before deleting the
    // first object: it is back under dicom/.
    let first_key = format!("dicom/{}/{}.dcm", h.id, upload.id);
    let mut deliveries = harness.stack.subscribe_s3_deliveries();
    harness.put_direct(&first_key, first_bytes).await;
    while deliveries.recv().await.expect("delivery").outcome.is_err() {}
    assert!(harness.object_exists(&first_key).await);

    let mut third = first.clone();
    third.series_description = Some("THIRD".into());
    assert_eq!(harness.ingest(&h, third.to_bytes()).await["replaced"], true);
    assert!(
        !harness.object_exists(&first_key).await,
        "the object the interrupted replacement left is deleted"
    );
    let inst = harness
        .archive(&study_pk(&h, &first), &instance_sk(&first))
        .await
        .unwrap();
    assert!(harness.object_exists(text(&inst, "s3Key").unwrap()).await);
    harness.stack.shutdown().await;
}
