//! The embedded servers through the SDK clients: DynamoDB items and
//! indexes, presigned uploads with their S3 events, checksum refusal, and
//! persistence across a restart.

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use pacs_testkit::TestStack;
use sha2::{Digest, Sha256};

use crate::next_delivery;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

#[tokio::test]
async fn items_are_put_and_queried_on_the_table_and_its_index() {
    let stack = TestStack::start().await;
    let ddb = stack.dynamodb().await;
    let table = &stack.context().settings.tenants_table;

    for (hosp, created) in [
        ("hosp_00000000000000a1", "2025-01-01"),
        ("hosp_00000000000000a2", "2025-02-01"),
    ] {
        for sk in [
            "HOSPITAL",
            "KEY#key_0000000000000001",
            "KEY#key_0000000000000002",
        ] {
            let mut put = ddb
                .put_item()
                .table_name(table)
                .item("pk", s(hosp))
                .item("sk", s(sk))
                .item("hospitalId", s(hosp));
            if sk == "HOSPITAL" {
                put = put
                    .item("gsi1pk", s("HOSPITALS"))
                    .item("gsi1sk", s(&format!("{created}#{hosp}")));
            }
            put.send().await.expect("PutItem");
        }
    }

    let keys = ddb
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
        .expression_attribute_values(":pk", s("hosp_00000000000000a1"))
        .expression_attribute_values(":prefix", s("KEY#"))
        .send()
        .await
        .expect("Query");
    assert_eq!(keys.count, 2);

    let hospitals = ddb
        .query()
        .table_name(table)
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :pk")
        .expression_attribute_values(":pk", s("HOSPITALS"))
        .scan_index_forward(false)
        .send()
        .await
        .expect("Query on gsi1");
    let ids: Vec<&str> = hospitals
        .items()
        .iter()
        .map(|i| i["hospitalId"].as_s().unwrap().as_str())
        .collect();
    assert_eq!(ids, ["hosp_00000000000000a2", "hosp_00000000000000a1"]);

    stack.shutdown().await;
}

/// A presigned PUT as presign-upload makes it: length and SHA-256 signed.
async fn presign_put(stack: &TestStack, key: &str, body: &[u8]) -> (String, Vec<(String, String)>) {
    let s3 = stack.s3().await;
    let checksum = BASE64.encode(Sha256::digest(body));
    let config =
        aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(900))
            .unwrap();
    let presigned = s3
        .put_object()
        .bucket(&stack.context().settings.bucket)
        .key(key)
        .content_length(body.len() as i64)
        .checksum_sha256(checksum)
        .presigned(config)
        .await
        .expect("presign");
    let headers = presigned
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (presigned.uri().to_owned(), headers)
}

async fn plain_put(
    stack: &TestStack,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> u16 {
    let mut req = stack.http().put(url);
    for (name, value) in headers {
        req = req.header(name, value);
    }
    req.body(body).send().await.expect("PUT").status().as_u16()
}

#[tokio::test]
async fn a_presigned_upload_delivers_the_s3_event() {
    let stack = TestStack::start().await;
    let mut deliveries = stack.subscribe_s3_deliveries();
    let key = "dicom/hosp_0123456789abcdef/upl_0000000000000001.dcm";
    let body = b"DICM not really, but bytes all the same".repeat(10);

    let (url, headers) = presign_put(&stack, key, &body).await;
    assert!(
        headers.iter().any(|(k, _)| k == "x-amz-checksum-sha256"),
        "{headers:?}"
    );
    assert_eq!(plain_put(&stack, &url, &headers, body.clone()).await, 200);

    let delivery = next_delivery(&mut deliveries).await;
    let record = &delivery.event.records[0];
    assert_eq!(record.event_name.as_deref(), Some("ObjectCreated:Put"));
    assert_eq!(record.event_source.as_deref(), Some("aws:s3"));
    assert_eq!(record.s3.bucket.name.as_deref(), Some("pacs-hub-dicom"));
    assert_eq!(
        record.s3.bucket.arn.as_deref(),
        Some("arn:aws:s3:::pacs-hub-dicom")
    );
    assert_eq!(record.s3.object.key.as_deref(), Some(key));
    assert_eq!(record.s3.object.size, Some(body.len() as i64));
    assert!(
        record
            .s3
            .object
            .e_tag
            .as_deref()
            .is_some_and(|t| !t.is_empty())
    );
    assert!(record.event_time.timestamp() > 1_700_000_000);

    stack.shutdown().await;
}

#[tokio::test]
async fn a_tampered_body_is_refused_and_leaves_no_object_and_no_event() {
    let stack = TestStack::start().await;
    let mut deliveries = stack.subscribe_s3_deliveries();
    let s3 = stack.s3().await;
    let bad_key = "dicom/hosp_0123456789abcdef/upl_00000000000000aa.dcm";
    let body = b"the bytes the agent declared".to_vec();

    let (url, headers) = presign_put(&stack, bad_key, &body).await;
    let mut tampered = body.clone();
    tampered[0] ^= 0xff;
    let status = plain_put(&stack, &url, &headers, tampered).await;
    assert_eq!(status, 400, "BadDigest expected");
    let head = s3
        .head_object()
        .bucket("pacs-hub-dicom")
        .key(bad_key)
        .send()
        .await;
    assert!(head.is_err(), "the refused body must not be stored");

    // A good upload after it is the first event to arrive: the refused
    // one raised none.
    let good_key = "dicom/hosp_0123456789abcdef/upl_00000000000000bb.dcm";
    let (url, headers) = presign_put(&stack, good_key, &body).await;
    assert_eq!(plain_put(&stack, &url, &headers, body).await, 200);
    assert_eq!(next_delivery(&mut deliveries).await.key(), Some(good_key));

    stack.shutdown().await;
}

#[tokio::test]
async fn data_survives_a_restart() {
    let mut stack = TestStack::start().await;
    let key_before = stack.platform_key();
    let table = stack.context().settings.archive_table.clone();
    stack
        .dynamodb()
        .await
        .put_item()
        .table_name(&table)
        .item("pk", s("hosp_0123456789abcdef#1.2.3"))
        .item("sk", s("STUDY"))
        .send()
        .await
        .expect("PutItem");
    stack
        .s3()
        .await
        .put_object()
        .bucket("pacs-hub-dicom")
        .key("quarantine/hosp_0123456789abcdef/x.dcm")
        .body(b"kept".to_vec().into())
        .send()
        .await
        .expect("PutObject");

    stack.restart().await;

    assert_eq!(stack.platform_key(), key_before);
    let item = stack
        .dynamodb()
        .await
        .get_item()
        .table_name(&table)
        .key("pk", s("hosp_0123456789abcdef#1.2.3"))
        .key("sk", s("STUDY"))
        .send()
        .await
        .expect("GetItem");
    assert!(item.item.is_some(), "item kept");
    let object = stack
        .s3()
        .await
        .get_object()
        .bucket("pacs-hub-dicom")
        .key("quarantine/hosp_0123456789abcdef/x.dcm")
        .send()
        .await
        .expect("object kept");
    assert_eq!(
        object.body.collect().await.unwrap().into_bytes().as_ref(),
        b"kept"
    );
    let key_file = std::fs::read_to_string(stack.platform_admin_key_path()).unwrap();
    assert_eq!(key_file.trim(), key_before);

    stack.shutdown().await;
}

#[tokio::test]
async fn functions_publish_to_the_local_event_bus_with_the_sdk() {
    let stack = TestStack::start().await;
    let mut bus = stack.subscribe_bus_events();
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .source("pacs-hub.ingest")
        .detail_type("InstanceIndexed")
        .detail(r#"{"hospitalId":"hosp_0123456789abcdef"}"#)
        .event_bus_name(stack.context().settings.event_bus.clone().unwrap())
        .build();
    let out = stack
        .context()
        .clients
        .events
        .put_events()
        .entries(entry)
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_entry_count, 0);

    let event = tokio::time::timeout(crate::GUARD, bus.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event["detail-type"], "InstanceIndexed");
    assert_eq!(event["detail"]["hospitalId"], "hosp_0123456789abcdef");
    let log = std::fs::read_to_string(stack.data_dir().join("events.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1);
    stack.shutdown().await;
}

#[tokio::test]
async fn functions_read_the_data_dir_secrets() {
    let stack = TestStack::start().await;
    let context = stack.context();
    let secrets = context.secrets().await.expect("secrets file loads");
    assert_eq!(secrets.platform_admin_key, stack.platform_key());
    assert!(secrets.pepper.len() >= 32);
    stack.shutdown().await;
}
