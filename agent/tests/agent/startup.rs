//! Start-up checks: a wrong setting or an unusable state dir stops the
//! agent with a message naming it, and the key is never printed.

use crate::support::*;

#[tokio::test]
async fn missing_setting_is_named_and_key_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), serde_json::json!({ "awsApiUrl": "" }));

    let output = agent_command(&config).arg("run").output().unwrap();

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("awsApiUrl") && stderr.contains("AWS_API_URL"),
        "{stderr}"
    );
    assert!(!stderr.contains(FAKE_API_KEY));
}

#[tokio::test]
async fn wrong_setting_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        serde_json::json!({ "syncInterval": "often", "features": { "autoSync": true } }),
    );

    let output = agent_command(&config).arg("run").output().unwrap();

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("syncInterval"), "{stderr}");
}

#[tokio::test]
async fn environment_fills_missing_settings() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), serde_json::json!({ "apiKey": null }));

    // Without the key the agent refuses; with API_KEY it gets to `status`.
    let refused = agent_command(&config).arg("status").output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("apiKey"));

    let output = agent_command(&config)
        .arg("status")
        .env("API_KEY", FAKE_API_KEY)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("queue: queued 0"), "{stdout}");
    assert!(stdout.contains("hub unreachable"), "{stdout}");
    assert!(!stdout.contains(FAKE_API_KEY));
}

#[tokio::test]
async fn unwritable_state_dir_stops_with_message() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where a folder should be: no one can write there,
    // root included.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let config = write_config(
        dir.path(),
        serde_json::json!({ "stateDir": blocker.join("state"), "features": { "autoSync": false } }),
    );

    let output = agent_command(&config).arg("run").output().unwrap();

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("state dir"), "{stderr}");
}
