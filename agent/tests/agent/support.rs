//! What the agent's tests share: a real Orthanc started on loopback with
//! authentication on, tiny DICOM files written by code, and the real
//! `pacs-agent` binary run as a process with its logs captured.

#![allow(dead_code)]

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pacs_agent::queue::Queue;

pub const ORTHANC_USER: &str = "agent";
pub const ORTHANC_PASSWORD: &str = "orthanc-test-pw-7f3a";
/// A key the logs must never show.
pub const FAKE_API_KEY: &str = "pk_test_never_in_logs_5c1d9e";
pub const HOSPITAL_ID: &str = "hosp_00112233aabbccdd";

/// A port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` until it holds; the deadline only guards against a hang.
pub async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A running Orthanc, stopped on drop.
pub struct OrthancServer {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

/// Settings of a test Orthanc.
#[derive(Default)]
pub struct OrthancOptions {
    /// Where the Lua script posts stable studies; no script when `None`.
    pub webhook: Option<String>,
}

impl OrthancServer {
    pub async fn start(options: OrthancOptions) -> OrthancServer {
        let dir = tempfile::tempdir().unwrap();
        let http_port = free_port();
        let mut config = serde_json::json!({
            "Name": "pacs-agent-test",
            "StorageDirectory": dir.path().join("storage"),
            "IndexDirectory": dir.path().join("index"),
            "HttpPort": http_port,
            "DicomPort": free_port(),
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": true,
            "RegisteredUsers": { ORTHANC_USER: ORTHANC_PASSWORD },
            "StableAge": 2,
            "Plugins": [],
        });
        if let Some(webhook) = options.webhook {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/agent/orthanc-webhook.lua");
            config["LuaScripts"] = serde_json::json!([script]);
            config["PacsAgentWebhook"] = serde_json::json!(webhook);
        }
        let config_path = dir.path().join("orthanc.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();

        let log = std::fs::File::create(dir.path().join("orthanc.log")).unwrap();
        let child = Command::new("Orthanc")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("Orthanc is installed (Debian package orthanc)");
        let server = OrthancServer {
            child,
            url: format!("http://127.0.0.1:{http_port}"),
            dir,
        };

        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = server.get("/system").await
                && response.status().is_success()
            {
                return server;
            }
            assert!(Instant::now() < deadline, "orthanc did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        Self::client()
            .get(format!("{}{path}", self.url))
            .basic_auth(ORTHANC_USER, Some(ORTHANC_PASSWORD))
            .send()
            .await
    }

    /// Waits until Orthanc calls every study it holds stable.
    pub async fn wait_all_stable(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let studies: serde_json::Value = self
                .get("/studies?expand")
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let stable = studies
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["IsStable"] == true);
            if stable {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "orthanc studies never became stable"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stores a DICOM file with `POST /instances`; returns its instance id.
    pub async fn store(&self, bytes: &[u8]) -> String {
        let response = Self::client()
            .post(format!("{}/instances", self.url))
            .basic_auth(ORTHANC_USER, Some(ORTHANC_PASSWORD))
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "orthanc store: {}",
            response.status()
        );
        let body: serde_json::Value = response.json().await.unwrap();
        body["ID"].as_str().unwrap().to_owned()
    }
}

impl Drop for OrthancServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small study: `instances` CT images in one series, with patient data
/// the logs must never show.
pub struct StudySpec {
    pub patient_name: String,
    pub patient_id: String,
    pub study_uid: String,
    pub series_uid: String,
}

impl StudySpec {
    /// A study with UIDs unique to this `seed`.
    pub fn new(seed: u32) -> StudySpec {
        let salt = std::process::id();
        StudySpec {
            patient_name: format!("TESTPATIENT{seed}^SECRET"),
            patient_id: format!("PID-SECRET-{seed}"),
            study_uid: format!("1.2.826.0.1.3680043.9.7433.{salt}.{seed}"),
            series_uid: format!("1.2.826.0.1.3680043.9.7433.{salt}.{seed}.1"),
        }
    }

    pub fn instance(&self, number: u32) -> Vec<u8> {
        dicom_file(self, number, 256)
    }
}

fn element(out: &mut Vec<u8>, group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) {
    let mut value = value.to_vec();
    if value.len() % 2 == 1 {
        value.push(if vr == b"UI" || vr == b"OB" { 0 } else { b' ' });
    }
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&elem.to_le_bytes());
    out.extend_from_slice(vr);
    if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(&value);
}

/// A Part 10 file, explicit VR little endian, with `pixels` bytes of
/// pixel data so files have some weight.
pub fn dicom_file(spec: &StudySpec, number: u32, pixels: usize) -> Vec<u8> {
    const CT: &[u8] = b"1.2.840.10008.5.1.4.1.1.2";
    let sop_uid = format!("{}.{number}", spec.series_uid);

    let mut meta = Vec::new();
    element(&mut meta, 0x0002, 0x0001, b"OB", &[0, 1]);
    element(&mut meta, 0x0002, 0x0002, b"UI", CT);
    element(&mut meta, 0x0002, 0x0003, b"UI", sop_uid.as_bytes());
    element(&mut meta, 0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1");
    element(
        &mut meta,
        0x0002,
        0x0012,
        b"UI",
        b"1.2.826.0.1.3680043.9.7433.1",
    );

    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    element(
        &mut out,
        0x0002,
        0x0000,
        b"UL",
        &(meta.len() as u32).to_le_bytes(),
    );
    out.extend_from_slice(&meta);

    element(&mut out, 0x0008, 0x0016, b"UI", CT);
    element(&mut out, 0x0008, 0x0018, b"UI", sop_uid.as_bytes());
    element(&mut out, 0x0008, 0x0020, b"DA", b"20240115");
    element(&mut out, 0x0008, 0x0060, b"CS", b"CT");
    element(
        &mut out,
        0x0010,
        0x0010,
        b"PN",
        spec.patient_name.as_bytes(),
    );
    element(&mut out, 0x0010, 0x0020, b"LO", spec.patient_id.as_bytes());
    element(&mut out, 0x0020, 0x000D, b"UI", spec.study_uid.as_bytes());
    element(&mut out, 0x0020, 0x000E, b"UI", spec.series_uid.as_bytes());
    element(
        &mut out,
        0x0020,
        0x0013,
        b"IS",
        number.to_string().as_bytes(),
    );
    let noise: Vec<u8> = (0..pixels)
        .map(|i| (i as u32 * 31 + number) as u8)
        .collect();
    element(&mut out, 0x7FE0, 0x0010, b"OB", &noise);
    out
}

/// Writes an agent configuration; `extra` keys are merged over the base.
pub fn write_config(dir: &Path, extra: serde_json::Value) -> PathBuf {
    let mut config = serde_json::json!({
        "hospitalId": HOSPITAL_ID,
        "hospitalName": "Test General",
        // Nothing listens here unless a test says otherwise.
        "awsApiUrl": format!("http://127.0.0.1:{}", free_port()),
        "apiKey": FAKE_API_KEY,
        "syncInterval": 500,
        "folderInterval": 300,
        "stateDir": dir.join("state"),
        "features": { "autoSync": false, "folderWatch": false, "webhooks": false },
    });
    for (key, value) in extra.as_object().unwrap() {
        config[key] = value.clone();
    }
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    path
}

/// The real agent binary running `run`, logs appended to one file.
pub struct Agent {
    child: Child,
    pub log: PathBuf,
}

pub fn agent_command(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pacs-agent"));
    command.arg("--config").arg(config).env("RUST_LOG", "debug");
    command
}

impl Agent {
    pub fn start(config: &Path, log: &Path) -> Agent {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = agent_command(config)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Agent {
            child,
            log: log.to_owned(),
        }
    }

    /// SIGTERM and wait: a normal stop.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The exit status, once the process has stopped by itself.
    pub async fn wait_exit(mut self) -> std::process::ExitStatus {
        wait_for("the agent to exit", || self.child.try_wait().unwrap()).await
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens the agent's queue (WAL lets a reader in while the agent runs).
pub fn open_queue(state_dir: &Path) -> Queue {
    Queue::open(state_dir).unwrap()
}

/// Asserts that captured logs (taken at debug level, dependencies
/// included) hold no key, password, presigned URL or patient data.
pub fn assert_logs_clean(logs: &str, specs: &[&StudySpec]) {
    assert!(!logs.contains(FAKE_API_KEY), "API key in logs");
    assert!(!logs.contains(ORTHANC_PASSWORD), "Orthanc password in logs");
    let lower = logs.to_lowercase();
    assert!(!lower.contains("x-amz-signature"), "presigned URL in logs");
    assert!(!lower.contains("x-amz-credential"), "presigned URL in logs");
    for spec in specs {
        assert!(!logs.contains(&spec.patient_name), "patient name in logs");
        assert!(!logs.contains("SECRET"), "patient data in logs");
        assert!(!logs.contains(&spec.patient_id), "patient id in logs");
    }
}
