//! Hostile files against the indexer as a process of its own: the built
//! `on-object-created` binary, served S3 events one after another by the
//! testkit's Lambda Runtime API, as a warm sandbox is. Every file that lies
//! about its lengths, nests sequences too deep, inflates without end or
//! hides an executable is quarantined, and the process's peak resident
//! memory stays within 64 MiB of what it held idle.

use std::time::Duration;

use pacs_testkit::dicom::{DicomFixture, TransferSyntax, hostile};
use pacs_testkit::{Invocation, RuntimeApi};
use serde_json::{Value, json};

use crate::ingest::{Harness, Hospital};

/// How far above its idle resident set the indexer may go.
const MEMORY_BUDGET: u64 = 64 * 1024 * 1024;

/// An `ObjectCreated:Put` event for one object, every field as S3 fills it.
fn s3_event(bucket: &str, key: &str, size: usize) -> Value {
    json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": "2025-01-01T00:00:00.000Z",
            "eventName": "ObjectCreated:Put",
            "userIdentity": { "principalId": "PACSHUBTEST" },
            "requestParameters": { "sourceIPAddress": "127.0.0.1" },
            "responseElements": {
                "x-amz-request-id": "0000000000000000",
                "x-amz-id-2": "AAAA",
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "dicom-object-created",
                "bucket": {
                    "name": bucket,
                    "ownerIdentity": { "principalId": "PACSHUBTEST" },
                    "arn": format!("arn:aws:s3:::{bucket}"),
                },
                "object": { "key": key, "size": size, "eTag": "0", "sequencer": "00" },
            },
        }],
    })
}

/// VmRSS and VmHWM of a process, in bytes.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).expect(name);
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect(name);
        kb * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Presigns `bytes` for `h` and stores them at the upload's key without
/// the stack's own notification (a copy from a staging key notifies no
/// one locally), so that only the process under test indexes them.
async fn stage(harness: &Harness, h: &Hospital, bytes: &[u8]) -> (String, String) {
    let upload = harness.presign(h, bytes, None).await;
    let ctx = harness.stack.context();
    let bucket = ctx.settings.bucket.clone();
    let staging = format!("staging/{}.dcm", upload.id);
    let key = format!("dicom/{}/{}.dcm", h.id, upload.id);
    let put = ctx.clients.s3.put_object().bucket(&bucket).key(&staging);
    put.body(bytes.to_vec().into())
        .send()
        .await
        .expect("staging put");
    let copy = ctx.clients.s3.copy_object().bucket(&bucket).key(&key);
    copy.copy_source(format!("{bucket}/{staging}"))
        .send()
        .await
        .expect("copy to upload key");
    (upload.id, key)
}

#[tokio::test]
async fn hostile_files_are_quarantined_within_a_bounded_memory() {
    let harness = Harness::start().await;
    let h = harness.register("Hostile Hospital").await;
    let bucket = harness.stack.context().settings.bucket.clone();
    let mut deliveries = harness.stack.subscribe_s3_deliveries();

    let warm_up = DicomFixture::ct().to_bytes();
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "1 GiB text value, explicit VR",
            hostile::declared_length(1 << 30, TransferSyntax::ExplicitVrLittleEndian),
        ),
        (
            "2 GiB text value, implicit VR",
            hostile::declared_length(1 << 31, TransferSyntax::ImplicitVrLittleEndian),
        ),
        (
            "1 GiB text value, big endian",
            hostile::declared_length(1 << 30, TransferSyntax::ExplicitVrBigEndian),
        ),
        ("1 GiB sequence", hostile::gigabyte_sequence()),
        ("8 MiB private element", hostile::oversized_element(8 << 20)),
        (
            "sequences 500 deep, explicit VR",
            hostile::deep_sequences(500, TransferSyntax::ExplicitVrLittleEndian),
        ),
        (
            "sequences 500 deep, implicit VR",
            hostile::deep_sequences(500, TransferSyntax::ImplicitVrLittleEndian),
        ),
        ("undelimited sequence", hostile::undelimited_sequence()),
        (
            "MZ preamble",
            hostile::executable_preamble(hostile::Executable::Mz),
        ),
        (
            "ELF preamble",
            hostile::executable_preamble(hostile::Executable::Elf),
        ),
        ("deflate bomb of 128 MiB", hostile::deflate_bomb(128 << 20)),
    ];
    let (warm_id, warm_key) = stage(&harness, &h, &warm_up).await;
    let mut staged = Vec::new();
    for (name, bytes) in &files {
        let (id, key) = stage(&harness, &h, bytes).await;
        staged.push((*name, id, key, bytes.len()));
    }
    assert!(
        deliveries.try_recv().is_err(),
        "the local stack notified a copy; stage() relies on it not doing so"
    );

    // The indexer, as Lambda would start it.
    let mut indexer = RuntimeApi::new("on-object-created")
        .env(harness.stack.function_env())
        .env([
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
            ("RUST_LOG", "warn"),
        ])
        .start()
        .await
        .expect("on-object-created starts");
    let pid = indexer.pid();

    // A good file first, so clients, pools and the allocator are warm.
    let answer = indexer
        .invoke(s3_event(&bucket, &warm_key, warm_up.len()))
        .await
        .expect("the warm-up event is answered");
    assert!(matches!(answer, Invocation::Response(_)), "{answer:?}");
    assert_eq!(harness.settled(&h, &warm_id).await["status"], "indexed");

    // Idle: between invocations, blocked on the next one. Resetting the
    // high-water mark makes VmHWM the peak from here on.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (idle, _) = memory_of(pid);
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the peak");

    for (name, id, key, size) in &staged {
        let answer = indexer
            .invoke(s3_event(&bucket, key, *size))
            .await
            .unwrap_or_else(|e| panic!("{name}: the indexer stopped: {e:#}"));
        assert!(
            matches!(answer, Invocation::Response(_)),
            "{name}: the event must succeed: {answer:?}"
        );
        let status = harness.settled(&h, id).await;
        assert_eq!(status["status"], "rejected", "{name}: {status}");
        assert!(
            status["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{name}"
        );
        let quarantined = format!("quarantine/{}/{id}.dcm", h.id);
        assert!(harness.object_exists(&quarantined).await, "{name}");
        assert!(!harness.object_exists(key).await, "{name}");
    }

    let (rss, peak) = memory_of(pid);
    eprintln!(
        "indexer memory: idle {} KiB, peak {} KiB, after {} KiB",
        idle / 1024,
        peak / 1024,
        rss / 1024
    );
    assert!(
        peak.saturating_sub(idle) < MEMORY_BUDGET,
        "peak {peak} bytes is more than 64 MiB above idle {idle} bytes"
    );

    indexer.shutdown().await;
    harness.stack.shutdown().await;
}
