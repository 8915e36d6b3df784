//! Orthanc sync without the hub: studies Orthanc holds (back-fill) and
//! studies stored later (change log) are recorded once each, across
//! restarts; Orthanc down or refusing the credentials is reported and
//! retried.

use std::collections::HashSet;

use pacs_agent::queue::Source;
use pacs_agent::sources::CURSOR_KEY;

use crate::support::*;

fn orthanc_settings(orthanc: &OrthancServer) -> serde_json::Value {
    serde_json::json!({
        "orthancUrl": orthanc.url,
        "orthancUsername": ORTHANC_USER,
        "orthancPassword": ORTHANC_PASSWORD,
        "features": { "autoSync": true, "folderWatch": false, "webhooks": false },
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn orthanc_studies_are_recorded_once_across_restarts() {
    let orthanc = OrthancServer::start(OrthancOptions::default()).await;
    let old = StudySpec::new(1);
    for n in 1..=3 {
        orthanc.store(&old.instance(n)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), orthanc_settings(&orthanc));
    let state = dir.path().join("state");
    let log = dir.path().join("agent.log");

    // First start: back-fill finds the study already there.
    let agent = Agent::start(&config, &log);
    wait_for("back-fill", || {
        (open_queue(&state).all().ok()?.len() == 3).then_some(())
    })
    .await;

    // A study stored while running arrives through the change log.
    let new = StudySpec::new(2);
    for n in 1..=2 {
        orthanc.store(&new.instance(n)).await;
    }
    wait_for("change log", || {
        (open_queue(&state).all().ok()?.len() == 5).then_some(())
    })
    .await;
    agent.stop();

    // A restart records nothing again, and follows on from its cursor.
    let queue = open_queue(&state);
    let cursor: i64 = queue.meta(CURSOR_KEY).unwrap().unwrap().parse().unwrap();
    assert!(cursor > 0);
    let agent = Agent::start(&config, &log);
    let third = StudySpec::new(3);
    orthanc.store(&third.instance(1)).await;
    wait_for("third study", || {
        (open_queue(&state).all().ok()?.len() == 6).then_some(())
    })
    .await;
    agent.stop();

    let entries = open_queue(&state).all().unwrap();
    let locators: HashSet<_> = entries.iter().map(|e| e.locator.clone()).collect();
    let hashes: HashSet<_> = entries.iter().map(|e| e.sha256.clone()).collect();
    assert_eq!(locators.len(), 6);
    assert_eq!(hashes.len(), 6);
    assert!(entries.iter().all(|e| e.source == Source::Orthanc));

    // Each instance was spooled: it can be sent even if Orthanc drops it.
    for entry in &entries {
        assert!(state.join("spool").join(&entry.sha256).exists());
    }
    assert_logs_clean(
        &std::fs::read_to_string(&log).unwrap(),
        &[&old, &new, &third],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn orthanc_refusing_credentials_is_reported_and_retried() {
    let orthanc = OrthancServer::start(OrthancOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = orthanc_settings(&orthanc);
    settings["orthancPassword"] = serde_json::json!("wrong-password-1234");
    let config = write_config(dir.path(), settings);

    let agent = Agent::start(&config, &dir.path().join("agent.log"));
    wait_for("two reports", || {
        let logs = agent.logs();
        (logs.matches("refused the credentials").count() >= 2).then_some(())
    })
    .await;

    let logs = agent.logs();
    assert!(logs.contains("orthancPassword"), "{logs}");
    assert!(!logs.contains("wrong-password-1234"));
    agent.stop();

    let status = agent_command(&config).arg("status").output().unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(stdout.contains("refused the credentials"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn orthanc_unreachable_is_reported_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let config = write_config(
        dir.path(),
        serde_json::json!({
            "orthancUrl": url,
            "features": { "autoSync": true },
        }),
    );

    let agent = Agent::start(&config, &dir.path().join("agent.log"));
    wait_for("two reports", || {
        (agent.logs().matches("Orthanc unreachable at").count() >= 2).then_some(())
    })
    .await;
    agent.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn backfill_since_skips_older_studies_only_at_first_start() {
    let orthanc = OrthancServer::start(OrthancOptions::default()).await;
    // Test studies are dated 2024-01-15.
    let old = StudySpec::new(60);
    orthanc.store(&old.instance(1)).await;
    // Stable before the agent starts, or its change would be followed.
    orthanc.wait_all_stable().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), orthanc_settings(&orthanc));
    let state = dir.path().join("state");

    let output = agent_command(&config)
        .args(["run", "--backfill-since", "2024-13-01"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--backfill-since"));

    let log = dir.path().join("agent.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = agent_command(&config)
        .args(["run", "--backfill-since", "2024-02-01"])
        .stderr(file)
        .spawn()
        .unwrap();
    wait_for("the back-fill", || {
        open_queue(&state).meta(CURSOR_KEY).ok()?
    })
    .await;
    assert!(open_queue(&state).all().unwrap().is_empty());

    // Later studies come through the change log whatever their date.
    let later = StudySpec::new(61);
    orthanc.store(&later.instance(1)).await;
    wait_for("the later study", || {
        (open_queue(&state).all().ok()?.len() == 1).then_some(())
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
}
