//! The agent against the hub's local stack and a real Orthanc: studies
//! arrive with the right counts, restarts and `kill -9` send nothing twice
//! and lose nothing, a hub outage only delays, and `push` reports the
//! hub's verdicts.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use pacs_agent::queue::{Entry, State};

use crate::hub_stack::HubStack;
use crate::support::*;

fn hub_settings(hub: &HubStack, hospital_id: &str, key: &str) -> serde_json::Value {
    serde_json::json!({
        "hospitalId": hospital_id,
        "awsApiUrl": hub.url(),
        "apiKey": key,
        "concurrency": 3,
    })
}

fn merge(mut base: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    for (key, value) in extra.as_object().unwrap() {
        base[key] = value.clone();
    }
    base
}

fn orthanc_settings(orthanc: &OrthancServer) -> serde_json::Value {
    serde_json::json!({
        "orthancUrl": orthanc.url,
        "orthancUsername": ORTHANC_USER,
        "orthancPassword": ORTHANC_PASSWORD,
        "features": { "autoSync": true, "folderWatch": false, "webhooks": false },
    })
}

/// The queue once it holds `count` entries, all indexed.
async fn all_indexed(state: &Path, count: usize) -> Vec<Entry> {
    wait_for("every instance indexed", || {
        let entries = open_queue(state).all().ok()?;
        let done = entries.len() == count && entries.iter().all(|e| e.state == State::Indexed);
        done.then_some(entries)
    })
    .await
}

/// What the hub says about each entry's upload, by study UID.
async fn indexed_by_study(
    hub: &HubStack,
    key: &str,
    entries: &[Entry],
) -> (HashMap<String, usize>, HashSet<String>) {
    let mut studies = HashMap::new();
    let mut instances = HashSet::new();
    for entry in entries {
        let upload = hub.upload(key, entry.upload_id.as_deref().unwrap()).await;
        assert_eq!(upload["status"], "indexed", "{upload}");
        *studies
            .entry(upload["studyInstanceUid"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
        instances.insert(upload["sopInstanceUid"].as_str().unwrap().to_owned());
    }
    (studies, instances)
}

#[tokio::test(flavor = "multi_thread")]
async fn orthanc_studies_arrive_once_across_restarts() {
    let hub = HubStack::start().await;
    let (hospital_id, key) = hub.register_hospital("Orthanc General").await;
    let orthanc = OrthancServer::start(OrthancOptions::default()).await;
    let (a, b) = (StudySpec::new(101), StudySpec::new(102));
    for n in 1..=3 {
        orthanc.store(&a.instance(n)).await;
    }
    for n in 1..=2 {
        orthanc.store(&b.instance(n)).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let settings = merge(
        hub_settings(&hub, &hospital_id, &key),
        orthanc_settings(&orthanc),
    );
    let config = write_config(dir.path(), settings);
    let state = dir.path().join("state");
    let log = dir.path().join("agent.log");

    let agent = Agent::start(&config, &log);
    let entries = all_indexed(&state, 5).await;
    let (studies, instances) = indexed_by_study(&hub, &key, &entries).await;
    assert_eq!(studies[&a.study_uid], 3);
    assert_eq!(studies[&b.study_uid], 2);
    assert_eq!(instances.len(), 5);
    let reader = hub.reader_key(&hospital_id).await;
    assert_eq!(
        hub.study(&reader, &a.study_uid).await["numberOfInstances"],
        3
    );
    assert_eq!(
        hub.study(&reader, &b.study_uid).await["numberOfInstances"],
        2
    );
    assert_eq!(hub.puts(), 5);
    agent.stop();

    // After a restart and a full pass over Orthanc, nothing was sent again.
    let before = open_queue(&state).meta("last_sync").unwrap().unwrap();
    let agent = Agent::start(&config, &log);
    wait_for("a sync pass after restart", || {
        let last = open_queue(&state).meta("last_sync").ok()??;
        (last != before).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(hub.puts(), 5);

    // A new study still goes.
    let c = StudySpec::new(103);
    orthanc.store(&c.instance(1)).await;
    all_indexed(&state, 6).await;
    assert_eq!(hub.puts(), 6);
    agent.stop();

    assert_logs_clean(&std::fs::read_to_string(&log).unwrap(), &[&a, &b, &c]);
    assert!(
        !std::fs::read_to_string(&log).unwrap().contains(&key),
        "agent key in logs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_during_sync_then_restart_indexes_each_instance_once() {
    const INSTANCES: u32 = 120;
    let hub = HubStack::start().await;
    let (hospital_id, key) = hub.register_hospital("Crash General").await;
    let orthanc = OrthancServer::start(OrthancOptions::default()).await;
    let study = StudySpec::new(200);
    for n in 1..=INSTANCES {
        orthanc.store(&dicom_file(&study, n, 16 * 1024)).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let settings = merge(
        hub_settings(&hub, &hospital_id, &key),
        orthanc_settings(&orthanc),
    );
    let config = write_config(dir.path(), settings);
    let state = dir.path().join("state");
    let log = dir.path().join("agent.log");

    // Killed as soon as the first instance is indexed.
    let agent = Agent::start(&config, &log);
    wait_for("the first indexed instance", || {
        let entries = open_queue(&state).all().ok()?;
        entries
            .iter()
            .any(|e| e.state == State::Indexed)
            .then_some(())
    })
    .await;
    agent.kill9();
    let at_kill = open_queue(&state).all().unwrap();
    let indexed_at_kill = at_kill.iter().filter(|e| e.state == State::Indexed).count();
    assert!(
        indexed_at_kill < INSTANCES as usize,
        "the kill came too late to prove anything"
    );

    let agent = Agent::start(&config, &log);
    let entries = all_indexed(&state, INSTANCES as usize).await;
    agent.stop();

    let (studies, instances) = indexed_by_study(&hub, &key, &entries).await;
    assert_eq!(studies[&study.study_uid], INSTANCES as usize);
    assert_eq!(instances.len(), INSTANCES as usize);
    let reader = hub.reader_key(&hospital_id).await;
    let indexed = hub.study(&reader, &study.study_uid).await;
    assert_eq!(indexed["numberOfInstances"], INSTANCES, "{indexed}");
    assert_eq!(indexed["numberOfSeries"], 1);
    // At most the uploads cut off by the kill went twice.
    assert!(hub.puts() >= INSTANCES as u64);
    assert!(hub.puts() <= INSTANCES as u64 + 100, "{} puts", hub.puts());
    assert_logs_clean(&std::fs::read_to_string(&log).unwrap(), &[&study]);
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_outage_keeps_the_queue_and_drains_it() {
    let mut hub = HubStack::start().await;
    let (hospital_id, key) = hub.register_hospital("Outage General").await;
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let settings = merge(
        hub_settings(&hub, &hospital_id, &key),
        serde_json::json!({
            "watchFolder": inbox,
            "features": { "autoSync": false, "folderWatch": true, "webhooks": false },
        }),
    );
    let config = write_config(dir.path(), settings);
    let state = dir.path().join("state");
    let agent = Agent::start(&config, &dir.path().join("agent.log"));

    hub.stop().await;
    let study = StudySpec::new(300);
    for n in 1..=4 {
        std::fs::write(inbox.join(format!("img{n}")), study.instance(n)).unwrap();
    }
    wait_for("the outage to be noticed", || {
        let queued = open_queue(&state).all().ok()?.len() == 4;
        (queued && agent.logs().contains("hub not available")).then_some(())
    })
    .await;
    let held = open_queue(&state).all().unwrap();
    assert!(held.iter().all(|e| !e.state.is_final()), "{held:?}");

    hub.resume().await;
    all_indexed(&state, 4).await;
    assert_eq!(hub.puts(), 4);
    assert_logs_clean(&agent.logs(), &[&study]);
    agent.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn push_reports_verdicts_and_exit_status() {
    let hub = HubStack::start().await;
    let (hospital_id, key) = hub.register_hospital("Push General").await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), hub_settings(&hub, &hospital_id, &key));
    let files = dir.path().join("cd");
    std::fs::create_dir_all(&files).unwrap();
    let study = StudySpec::new(400);
    std::fs::write(files.join("IM1"), study.instance(1)).unwrap();
    std::fs::write(files.join("im2.dcm"), study.instance(2)).unwrap();
    std::fs::write(files.join("README.txt"), b"CD viewer instructions\n").unwrap();
    // Large enough to be sent in many chunks.
    std::fs::write(files.join("large"), dicom_file(&study, 3, 12 * 1024 * 1024)).unwrap();

    let output = agent_command(&config)
        .arg("push")
        .arg(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("indexed 3, already sent 0, rejected 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("not DICOM, skipped:") && stdout.contains("README.txt"),
        "{stdout}"
    );

    // Again: nothing is sent twice.
    let output = agent_command(&config)
        .arg("push")
        .arg(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("indexed 0, already sent 3"), "{stdout}");
    assert_eq!(hub.puts(), 3);

    // A file that looks like DICOM but is not gets the hub's reason and a
    // failing exit status.
    let mut broken = vec![0u8; 128];
    broken.extend_from_slice(b"DICM");
    broken.extend_from_slice(&[0xff; 64]);
    let bad = dir.path().join("broken.dcm");
    std::fs::write(&bad, &broken).unwrap();
    let output = agent_command(&config)
        .arg("push")
        .arg(&bad)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("rejected: ") && stdout.contains("broken.dcm"),
        "{stdout}"
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains(&key));
}

#[tokio::test(flavor = "multi_thread")]
async fn status_tells_whether_the_hub_accepts_the_key() {
    let hub = HubStack::start().await;
    let (hospital_id, key) = hub.register_hospital("Status General").await;
    let dir = tempfile::tempdir().unwrap();

    let config = write_config(dir.path(), hub_settings(&hub, &hospital_id, &key));
    let output = agent_command(&config).arg("status").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("key accepted"), "{stdout}");

    let mut settings = hub_settings(&hub, &hospital_id, &key);
    settings["apiKey"] = serde_json::json!("pk_not_a_real_key_000000");
    let config = write_config(dir.path(), settings);
    let output = agent_command(&config).arg("status").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("hub refused the agent"), "{stdout}");
    assert!(!stdout.contains("pk_not_a_real_key_000000"));
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_file_keeps_the_hubs_reason_and_is_not_sent_again() {
    let hub = HubStack::start().await;
    let (hospital_id, key) = hub.register_hospital("Reject General").await;
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let mut broken = vec![0u8; 128];
    broken.extend_from_slice(b"DICM");
    broken.extend_from_slice(&[0xff; 64]);
    std::fs::write(inbox.join("broken"), &broken).unwrap();
    let settings = merge(
        hub_settings(&hub, &hospital_id, &key),
        serde_json::json!({
            "watchFolder": inbox,
            "features": { "autoSync": false, "folderWatch": true, "webhooks": false },
        }),
    );
    let config = write_config(dir.path(), settings);
    let state = dir.path().join("state");
    let log = dir.path().join("agent.log");

    let agent = Agent::start(&config, &log);
    let entry = wait_for("the hub's verdict", || {
        let entries = open_queue(&state).all().ok()?;
        entries.into_iter().find(|e| e.state == State::Rejected)
    })
    .await;
    assert!(
        entry.reason.as_deref().is_some_and(|r| !r.is_empty()),
        "{entry:?}"
    );
    agent.stop();

    // A restart and more scans later, it was still sent only once.
    let agent = Agent::start(&config, &log);
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.stop();
    assert_eq!(hub.puts(), 1);
    assert_eq!(open_queue(&state).all().unwrap().len(), 1);
    let status = agent_command(&config).arg("status").output().unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(
        stdout.contains("rejected 1") && stdout.contains("last error"),
        "{stdout}"
    );
}
