//! The reference for end-to-end ingest: a throwaway Orthanc on loopback with
//! a temporary storage dir, fed the same files through `POST /instances`.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use serde_json::json;

/// Instances per second Orthanc stores from `files` with `workers`
/// concurrent clients.
pub async fn ingest_rate(
    orthanc: &Path,
    files: &Arc<Vec<Vec<u8>>>,
    workers: usize,
) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = json!({
        "Name": "pacs-bench",
        "StorageDirectory": dir.path().join("storage"),
        "IndexDirectory": dir.path().join("index"),
        "HttpPort": port,
        "DicomServerEnabled": false,
        "RemoteAccessAllowed": false,
        "AuthenticationEnabled": false,
        "HttpServerEnabled": true,
        "Plugins": [],
        "ConcurrentJobs": 2,
    });
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, config.to_string())?;
    let mut child = tokio::process::Command::new(orthanc)
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", orthanc.display()))?;

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/system")).send().await {
            if r.status().is_success() {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !ready {
        bail!("Orthanc did not answer on port {port}");
    }

    let start = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..files.len())
        .map(|i| {
            let (http, files, base) = (http.clone(), files.clone(), base.clone());
            async move {
                let status = http
                    .post(format!("{base}/instances"))
                    .header("content-type", "application/dicom")
                    .body(files[i].clone())
                    .send()
                    .await?
                    .status();
                if !status.is_success() {
                    bail!("Orthanc answered {status} to file {i}");
                }
                Ok(())
            }
        })
        .buffer_unordered(workers)
        .collect()
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    for r in results {
        r?;
    }
    let _ = child.kill().await;
    Ok(files.len() as f64 / elapsed)
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
