//! The watched folder: a file written slowly is taken only once complete,
//! a file that is not DICOM is reported and skipped, and files are
//! recognized by content whatever their name.

use std::io::Write;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn folder_takes_complete_dicom_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(inbox.join("sub")).unwrap();
    let study = StudySpec::new(20);

    // Present at start: a file without extension in a sub-folder, and a
    // text file.
    let plain = study.instance(1);
    std::fs::write(inbox.join("sub").join("IM000001"), &plain).unwrap();
    std::fs::write(inbox.join("notes.txt"), b"ward round notes, not an image\n").unwrap();

    let config = write_config(
        dir.path(),
        serde_json::json!({
            "watchFolder": inbox,
            "features": { "autoSync": false, "folderWatch": true, "webhooks": false },
        }),
    );
    let state = dir.path().join("state");
    let agent = Agent::start(&config, &dir.path().join("agent.log"));

    // Written in pieces, each pause shorter than a scan interval.
    let slow = dicom_file(&study, 2, 64 * 1024);
    let mut file = std::fs::File::create(inbox.join("slow.dcm")).unwrap();
    for chunk in slow.chunks(slow.len() / 12 + 1) {
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    drop(file);

    let entries = wait_for("both files", || {
        open_queue(&state).all().ok().filter(|e| e.len() >= 2)
    })
    .await;
    // Some scans after, still nothing else was taken.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let entries_after = open_queue(&state).all().unwrap();
    assert_eq!(entries_after.len(), entries.len());

    let mut hashes: Vec<_> = entries_after.iter().map(|e| e.sha256.clone()).collect();
    hashes.sort();
    let mut expected = vec![
        hex::encode(Sha256::digest(&plain)),
        hex::encode(Sha256::digest(&slow)),
    ];
    expected.sort();
    assert_eq!(hashes, expected, "only complete files are queued");

    let skipped = open_queue(&state).skipped().unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].0.ends_with("notes.txt") && skipped[0].1 == "not DICOM");
    let logs = agent.logs();
    assert_eq!(
        logs.matches("file is not DICOM, skipped").count(),
        1,
        "reported once"
    );
    assert_logs_clean(&logs, &[&study]);
    agent.stop();
}
