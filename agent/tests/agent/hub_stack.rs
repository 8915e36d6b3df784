//! The hub for the agent's tests: the real local stack (`pacs-hub up`'s
//! in-process form) that can be stopped and started again on the same
//! port and data dir, with a registered hospital and its agent key.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pacs_local::{Stack, StackOptions};

use crate::support::free_port;

pub struct HubStack {
    stack: Option<Stack>,
    pub data: tempfile::TempDir,
    pub port: u16,
    /// First-attempt S3 deliveries seen: one per object PUT.
    pub puts: Arc<AtomicU64>,
}

impl HubStack {
    pub async fn start() -> HubStack {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut hub = HubStack {
            stack: None,
            data,
            port,
            puts: Arc::new(AtomicU64::new(0)),
        };
        hub.resume().await;
        hub
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the stack (again) on the same port and data dir.
    pub async fn resume(&mut self) {
        let mut options = StackOptions::new(self.data.path());
        options.api_port = self.port;
        let stack = Stack::start(options).await.expect("the local stack starts");
        let mut deliveries = stack.subscribe_s3_deliveries();
        let puts = self.puts.clone();
        tokio::spawn(async move {
            while let Ok(delivery) = deliveries.recv().await {
                if delivery.attempt == 1 {
                    puts.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        self.stack = Some(stack);
    }

    /// Stops the stack: the hub is down until [`HubStack::resume`].
    pub async fn stop(&mut self) {
        if let Some(stack) = self.stack.take() {
            stack.shutdown().await;
        }
    }

    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::SeqCst)
    }

    /// Registers a hospital; returns its id and agent key.
    pub async fn register_hospital(&self, name: &str) -> (String, String) {
        let admin = self.stack.as_ref().unwrap().platform_admin_key().to_owned();
        let body = serde_json::json!({
            "name": name,
            "contactEmail": "it@example.org",
            "contactPhone": "+41 44 123 45 67",
            "address": "1 Main St",
            "plan": "basic",
        });
        let response = reqwest::Client::new()
            .post(format!("{}/api/hospitals/register", self.url()))
            .header("x-api-key", admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap();
        assert!(status.is_success(), "register: {status} {answer}");
        let data = &answer["data"];
        (
            data["hospitalId"].as_str().unwrap().to_owned(),
            data["apiKey"].as_str().unwrap().to_owned(),
        )
    }

    /// A new `reader` key of `hospital_id`, made with the platform key.
    pub async fn reader_key(&self, hospital_id: &str) -> String {
        let admin = self.stack.as_ref().unwrap().platform_admin_key().to_owned();
        let response = reqwest::Client::new()
            .post(format!("{}/api/hospitals/{hospital_id}/keys", self.url()))
            .header("x-api-key", admin)
            .json(&serde_json::json!({ "role": "reader", "label": "agent tests" }))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap();
        assert!(status.is_success(), "create key: {status} {answer}");
        answer["data"]["apiKey"].as_str().unwrap().to_owned()
    }

    /// The study as `GET /api/studies/{uid}` shows it, once the sweep has
    /// counted what was indexed.
    pub async fn study(&self, reader_key: &str, study_uid: &str) -> serde_json::Value {
        self.stack
            .as_ref()
            .unwrap()
            .sweep_now()
            .await
            .expect("sweep");
        self.get(reader_key, &format!("/api/studies/{study_uid}"))
            .await
    }

    /// `GET /api/uploads/{id}`'s `data`.
    pub async fn upload(&self, key: &str, upload_id: &str) -> serde_json::Value {
        self.get(key, &format!("/api/uploads/{upload_id}")).await
    }

    pub async fn get(&self, key: &str, path: &str) -> serde_json::Value {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.url()))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        let answer: serde_json::Value = response.json().await.unwrap();
        answer["data"].clone()
    }
}
