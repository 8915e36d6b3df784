//! `pacs-hub up` as a process: it prints where everything is, answers
//! /health, stops cleanly on SIGTERM, and refuses a port in use.

use std::process::Stdio;

use pacs_testkit::RuntimeApi;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::GUARD;

fn pacs_hub() -> tokio::process::Command {
    let binary = RuntimeApi::binary_path("pacs-hub").expect("pacs-hub is built");
    let mut cmd = tokio::process::Command::new(binary);
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn up_prints_its_urls_and_serves_health_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = pacs_hub()
        .args(["up", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let api = tokio::time::timeout(GUARD, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push(line.clone());
            if let Some(url) = line.trim().strip_prefix("API:") {
                return url.trim().to_owned();
            }
        }
        panic!("pacs-hub exited without printing its API URL: {printed:?}");
    })
    .await
    .expect("pacs-hub prints its URLs");

    // The rest of the banner follows the API line.
    let mut banner = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        banner.push(line.clone());
        if line.contains("platform-admin key") {
            break;
        }
    }
    let banner = banner.join("\n");
    assert!(
        banner.contains("S3:") && banner.contains("DynamoDB:"),
        "{banner}"
    );
    assert!(banner.contains("platform-admin.key"), "{banner}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let health: serde_json::Value = reqwest::get(format!("{api}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["data"]["status"], "ok");

    let key = std::fs::read_to_string(dir.path().join("platform-admin.key")).unwrap();
    assert!(key.starts_with("pha_"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("platform-admin.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(GUARD, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "a clean stop exits 0: {status:?}");
}

#[tokio::test]
async fn up_refuses_a_port_in_use_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();

    let out = tokio::time::timeout(
        GUARD,
        pacs_hub()
            .args(["up", "--port", &port, "--data-dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&port), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
}
