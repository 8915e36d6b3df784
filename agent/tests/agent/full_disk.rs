//! A full disk stops the agent with a message, and what it had recorded
//! is still there to continue from once space is freed. The disk is a
//! small tmpfs; mounting one needs root (as on the CI machines).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// A tmpfs mounted for the test, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .ok()?;
        status.success().then(|| SmallDisk(path.to_owned()))
    }

    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn full_disk_stops_the_agent_without_losing_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let Some(disk) = SmallDisk::mount(&state, "400k") else {
        panic!("this test mounts a tmpfs and must run as root");
    };

    let orthanc = OrthancServer::start(OrthancOptions::default()).await;
    let study = StudySpec::new(500);
    for n in 1..=24 {
        orthanc.store(&dicom_file(&study, n, 40 * 1024)).await;
    }
    let config = write_config(
        dir.path(),
        serde_json::json!({
            "orthancUrl": orthanc.url,
            "orthancUsername": ORTHANC_USER,
            "orthancPassword": ORTHANC_PASSWORD,
            "features": { "autoSync": true },
        }),
    );
    let log = dir.path().join("agent.log");

    let agent = Agent::start(&config, &log);
    let logs_path = agent.log.clone();
    let status = agent.wait_exit().await;
    assert_eq!(status.code(), Some(1));
    let logs = std::fs::read_to_string(&logs_path).unwrap();
    assert!(logs.contains("disk full or read-only"), "{logs}");

    // With space again, it continues from what it had recorded.
    disk.grow("8m");
    let recorded = open_queue(&state).all().unwrap().len();
    assert!(recorded < 24, "the disk filled too late to prove anything");
    let agent = Agent::start(&config, &log);
    wait_for("every instance recorded", || {
        (open_queue(&state).all().ok()?.len() == 24).then_some(())
    })
    .await;
    agent.stop();
    for entry in open_queue(&state).all().unwrap() {
        assert!(state.join("spool").join(&entry.sha256).exists());
    }
    assert_logs_clean(&std::fs::read_to_string(&log).unwrap(), &[&study]);
}
