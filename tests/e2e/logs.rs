//! What `pacs-hub up` writes to its log over a full run holds no key
//! material, no presigned URL and no patient data.

use std::process::Stdio;

use pacs_testkit::RuntimeApi;
use pacs_testkit::dicom::DicomFixture;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::GUARD;

const PATIENT_NAME: &str = "LOGCHECK^WILHELMINA";
const PATIENT_ID: &str = "PID-7731-LOGCHECK";

#[tokio::test]
async fn a_full_run_logs_no_keys_urls_or_patient_data() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("up.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let binary = RuntimeApi::binary_path("pacs-hub").expect("pacs-hub is built");
    let mut child = tokio::process::Command::new(binary)
        .args(["up", "--port", "0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let api = tokio::time::timeout(GUARD, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.trim().strip_prefix("API:") {
                return url.trim().to_owned();
            }
        }
        panic!("pacs-hub exited before printing its API URL");
    })
    .await
    .expect("pacs-hub starts");
    // Logs go to standard output: keep reading it so the process never
    // blocks on a full pipe, and keep what it wrote.
    let captured = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = captured.clone();
    let drain = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut all = sink.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
    let platform = std::fs::read_to_string(dir.path().join("data/platform-admin.key")).unwrap();
    let platform = platform.trim().to_owned();

    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, key: &str, body: Option<Value>| {
        let mut req = http
            .request(method, format!("{api}{path}"))
            .header("x-api-key", key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    let (s, reg) = call(
        reqwest::Method::POST,
        "/api/hospitals/register",
        &platform,
        Some(json!({
            "name": "Log Check", "contactEmail": "it@example.org",
            "contactPhone": "+1 555 0100", "address": "1 Log Lane", "plan": "basic"
        })),
    )
    .await;
    assert_eq!(s, 201, "{reg}");
    let id = reg["data"]["hospitalId"].as_str().unwrap().to_owned();
    let agent = reg["data"]["apiKey"].as_str().unwrap().to_owned();
    let (_, admin) = call(
        reqwest::Method::POST,
        &format!("/api/hospitals/{id}/keys"),
        &platform,
        Some(json!({"role": "admin"})),
    )
    .await;
    let admin = admin["data"]["apiKey"].as_str().unwrap().to_owned();
    let (_, user) = call(
        reqwest::Method::POST,
        &format!("/api/hospitals/{id}/users"),
        &admin,
        Some(json!({"username": "reader1", "email": "r@example.org", "roles": ["reader"]})),
    )
    .await;
    let user_key = user["data"]["apiKey"].as_str().unwrap().to_owned();

    // An upload of a file that carries the patient's name and id.
    let bytes = DicomFixture::ct()
        .patient(PATIENT_ID, PATIENT_NAME, "19700101", "F")
        .to_bytes();
    let sha = hex::encode(Sha256::digest(&bytes));
    let (s, up) = call(
        reqwest::Method::POST,
        "/api/uploads",
        &agent,
        Some(json!({"files": [{"size": bytes.len(), "sha256": sha}]})),
    )
    .await;
    assert_eq!(s, 201, "{up}");
    let upload = &up["data"]["uploads"][0];
    let url = upload["url"].as_str().unwrap().to_owned();
    let mut put = http.put(&url);
    for (k, v) in upload["headers"].as_object().unwrap() {
        put = put.header(k, v.as_str().unwrap());
    }
    assert!(put.body(bytes).send().await.unwrap().status().is_success());
    let upload_id = upload["uploadId"].as_str().unwrap();
    let status = tokio::time::timeout(GUARD, async {
        loop {
            let (_, st) = call(
                reqwest::Method::GET,
                &format!("/api/uploads/{upload_id}"),
                &agent,
                None,
            )
            .await;
            if st["data"]["status"] != "pending" {
                return st;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the upload settles");
    assert_eq!(status["data"]["status"], "indexed", "{status}");

    // Refusals log too: a bad key, a bad body.
    let _ = call(reqwest::Method::GET, "/api/usage", "phk_bad", None).await;
    let _ = call(
        reqwest::Method::POST,
        "/api/uploads",
        &agent,
        Some(json!({"files": 3})),
    )
    .await;
    let _ = call(reqwest::Method::GET, "/api/usage", &user_key, None).await;

    child.start_kill().unwrap();
    let _ = child.wait().await;
    let _ = drain.await;
    let text = std::fs::read_to_string(&log_path).unwrap() + &captured.lock().unwrap();
    assert!(text.lines().count() > 10, "the run logged: {text}");

    // The secret is everything after the key's fixed fields: it may hold
    // `_` itself (base64url), so split from the front.
    let secret = |k: &str| {
        let fields = if k.starts_with("pha_") { 2 } else { 4 };
        k.splitn(fields, '_').last().unwrap().to_owned()
    };
    for k in [&platform, &agent, &admin, &user_key] {
        assert!(secret(k).len() >= 40, "the whole secret is looked for");
    }
    for (what, needle) in [
        ("platform key", secret(&platform)),
        ("agent key", secret(&agent)),
        ("admin key", secret(&admin)),
        ("user key", secret(&user_key)),
        ("patient name", PATIENT_NAME.to_owned()),
        ("patient name part", "WILHELMINA".to_owned()),
        ("patient id", PATIENT_ID.to_owned()),
        ("presigned URL", "X-Amz-Signature".to_owned()),
        ("presigned URL", "X-Amz-Credential".to_owned()),
    ] {
        if let Some(line) = text.lines().find(|l| l.contains(&needle)) {
            panic!("the log holds the {what}: {line}");
        }
    }
}
