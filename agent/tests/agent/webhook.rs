//! The webhook path, driven by Orthanc's own Lua callback: with the change
//! log follower off, a stable study still reaches the hub.

use pacs_agent::queue::State;

use crate::hub_stack::HubStack;
use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn orthanc_lua_callback_sends_the_study() {
    let hub = HubStack::start().await;
    let (hospital_id, key) = hub.register_hospital("Callback General").await;
    let listen = format!("127.0.0.1:{}", free_port());
    let orthanc = OrthancServer::start(OrthancOptions {
        webhook: Some(format!("http://{listen}/orthanc/stable-study")),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        serde_json::json!({
            "orthancUrl": orthanc.url,
            "orthancUsername": ORTHANC_USER,
            "orthancPassword": ORTHANC_PASSWORD,
            "webhookListen": listen,
            "hospitalId": hospital_id,
            "awsApiUrl": hub.url(),
            "apiKey": key,
            "features": { "autoSync": false, "folderWatch": false, "webhooks": true },
        }),
    );
    let state = dir.path().join("state");
    let agent = Agent::start(&config, &dir.path().join("agent.log"));
    wait_for("the listener", || {
        agent
            .logs()
            .contains("webhook listener ready")
            .then_some(())
    })
    .await;

    let study = StudySpec::new(40);
    for n in 1..=3 {
        orthanc.store(&study.instance(n)).await;
    }

    wait_for("the study indexed", || {
        let entries = open_queue(&state).all().ok()?;
        let done = entries.len() == 3 && entries.iter().all(|e| e.state == State::Indexed);
        done.then_some(())
    })
    .await;
    for entry in open_queue(&state).all().unwrap() {
        let upload = hub.upload(&key, entry.upload_id.as_deref().unwrap()).await;
        assert_eq!(upload["studyInstanceUid"], study.study_uid.as_str());
    }
    let logs = agent.logs();
    assert!(logs.contains("stable study announced"), "{logs}");
    // The change log was never read: the webhook did it.
    assert!(
        open_queue(&state)
            .meta(pacs_agent::sources::CURSOR_KEY)
            .unwrap()
            .is_none()
    );
    assert_logs_clean(&logs, &[&study]);
    assert!(!logs.contains(&key));
    agent.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_refuses_bad_callbacks() {
    let listen = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        serde_json::json!({
            "orthancUrl": format!("http://127.0.0.1:{}", free_port()),
            "webhookListen": listen,
            "features": { "autoSync": false, "webhooks": true },
        }),
    );
    let agent = Agent::start(&config, &dir.path().join("agent.log"));
    wait_for("the listener", || {
        agent
            .logs()
            .contains("webhook listener ready")
            .then_some(())
    })
    .await;

    let client = reqwest::Client::new();
    let url = format!("http://{listen}/orthanc/stable-study");
    for body in [
        "not json",
        r#"{"Type": "NewInstance", "ID": "abc"}"#,
        r#"{"Type": "StableStudy", "ID": "../../system"}"#,
    ] {
        let response = client.post(&url).body(body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
    }
    agent.stop();
}
