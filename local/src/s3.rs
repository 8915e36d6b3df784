//! The embedded S3 server: s3s-fs on `<data>/s3/`, behind SigV4 checks with
//! the data dir's access key, wrapped so that it behaves as the deployed
//! bucket does for our purposes:
//!
//! - a PUT carrying `x-amz-checksum-sha256` is verified before anything is
//!   written (s3s-fs would write first and refuse after, leaving the bad
//!   bytes in place): the body goes to a spool file under the data dir
//!   while it is hashed, so memory stays bounded whatever its size;
//! - every successful PutObject or CompleteMultipartUpload under `dicom/`
//!   delivers a real S3 event to `on-object-created`, asynchronously, with
//!   Lambda's retries and a dead-letter file when they are spent.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::s3::S3Event;
use axum::error_handling::HandleError;
use axum::extract::ConnectInfo;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::FutureExt;
use pacs_shared::Context;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{HttpError, S3, S3Request, S3Response, S3Result, s3_error};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::secrets::S3Credentials;
use crate::{DICOM_BUCKET, REGION, StartError};

/// Keys that notify the indexer: the template's notification filter.
const NOTIFY_PREFIX: &str = "dicom/";

/// Attempts of one asynchronous invocation, as Lambda makes them.
const ATTEMPTS: u32 = 3;

/// Largest body buffered for checksum verification: one presigned PUT's
/// limit.
const MAX_VERIFIED_BODY: u64 = 5 * 1024 * 1024 * 1024;

/// Largest body verified in memory; longer ones go through a spool file.
/// Most DICOM files (a CT or MR slice) are under it.
const MAX_BUFFERED_BODY: i64 = 1024 * 1024;

/// Reads a body of at most [`MAX_BUFFERED_BODY`] bytes into memory and
/// hands it back only when its SHA-256 is `expected` (base64).
async fn buffer_verified(mut blob: StreamingBlob, expected: &str) -> S3Result<bytes::Bytes> {
    use futures::StreamExt;
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = blob.next().await {
        let chunk = chunk.map_err(|e| s3_error!(IncompleteBody, "reading the body failed: {e}"))?;
        if body.len() + chunk.len() > MAX_BUFFERED_BODY as usize {
            return Err(s3_error!(
                IncompleteBody,
                "the body is longer than its Content-Length"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    check_digest(&Sha256::digest(&body), expected)?;
    Ok(body.freeze())
}

/// Refuses a body whose SHA-256 is not `expected` (base64), as S3 does.
fn check_digest(digest: &[u8], expected: &str) -> S3Result<()> {
    if BASE64.encode(digest) != expected {
        return Err(s3_error!(
            BadDigest,
            "the body's SHA-256 does not match x-amz-checksum-sha256"
        ));
    }
    Ok(())
}

/// A file's bytes as a stream of chunks of up to 256 KiB.
fn read_chunks(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Sync + 'static {
    futures::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0; 256 * 1024];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((bytes::Bytes::from(buf), file)))
    })
}

/// One attempt to deliver an S3 event to `on-object-created`.
#[derive(Debug, Clone)]
pub struct S3Delivery {
    /// The event as the handler received it.
    pub event: S3Event,
    /// 1 for the first attempt, up to 3.
    pub attempt: u32,
    /// The handler's outcome: `Err` holds its error as text.
    pub outcome: Result<(), String>,
}

impl S3Delivery {
    /// Key of the (first) record's object, URL-encoded as S3 sends it.
    pub fn key(&self) -> Option<&str> {
        self.event.records.first()?.s3.object.key.as_deref()
    }
}

/// Turns successful writes into S3 events for the indexer.
pub struct Notifier {
    pub context: Arc<Context>,
    pub data_dir: PathBuf,
    pub deliveries: broadcast::Sender<S3Delivery>,
    pub backoff: Vec<Duration>,
    pub pending: Arc<Mutex<tokio::task::JoinSet<()>>>,
    pub sequence: AtomicU64,
}

/// What S3 knows about a write when it notifies.
struct ObjectCreated {
    event_name: &'static str,
    bucket: String,
    key: String,
    size: u64,
    e_tag: String,
    principal: String,
    source_ip: String,
}

impl Notifier {
    fn object_created(&self, object: ObjectCreated) {
        if !object.key.starts_with(NOTIFY_PREFIX) {
            return;
        }
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let event = match build_event(&object, sequence) {
            Ok(event) => event,
            Err(e) => {
                tracing::error!(error = %e, "s3 event could not be built");
                return;
            }
        };

        let delivery = deliver(
            self.context.clone(),
            event,
            self.backoff.clone(),
            self.data_dir.join("dead-letter"),
            self.deliveries.clone(),
            sequence,
        );
        let mut pending = self.pending.lock().expect("delivery set");
        while pending.try_join_next().is_some() {}
        pending.spawn(delivery);
    }
}

fn build_event(object: &ObjectCreated, sequence: u64) -> Result<S3Event, serde_json::Error> {
    let now = time::OffsetDateTime::now_utc();
    let event_time = now
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .expect("event time formats");
    let sequencer = format!(
        "{:016X}{:04X}",
        now.unix_timestamp_nanos() as u64,
        sequence & 0xffff
    );
    let request_id = hex::encode_upper(rand::random::<[u8; 8]>());

    serde_json::from_value(json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": REGION,
            "eventTime": event_time,
            "eventName": object.event_name,
            "userIdentity": { "principalId": object.principal },
            "requestParameters": { "sourceIPAddress": object.source_ip },
            "responseElements": {
                "x-amz-request-id": request_id,
                "x-amz-id-2": BASE64.encode(rand::random::<[u8; 48]>()),
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "dicom-object-created",
                "bucket": {
                    "name": object.bucket,
                    "ownerIdentity": { "principalId": "PACSHUBLOCAL" },
                    "arn": format!("arn:aws:s3:::{}", object.bucket),
                },
                "object": {
                    "key": encode_key(&object.key),
                    "size": object.size,
                    "eTag": object.e_tag,
                    "sequencer": sequencer,
                },
            },
        }],
    }))
}

/// Keys in S3 events are form-encoded (a space is `+`), slashes kept.
pub fn encode_key(key: &str) -> String {
    key.split('/')
        .map(|segment| url::form_urlencoded::byte_serialize(segment.as_bytes()).collect::<String>())
        .collect::<Vec<_>>()
        .join("/")
}

/// Lambda's asynchronous invoke: up to three attempts, then the event and
/// the last error go to the dead-letter dir.
async fn deliver(
    context: Arc<Context>,
    event: S3Event,
    backoff: Vec<Duration>,
    dead_letter_dir: PathBuf,
    deliveries: broadcast::Sender<S3Delivery>,
    sequence: u64,
) {
    let mut last_error = String::new();
    for attempt in 1..=ATTEMPTS {
        let run = on_object_created::handle(&context, event.clone());
        let outcome = match std::panic::AssertUnwindSafe(run).catch_unwind().await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err("the handler panicked".to_owned()),
        };
        let _ = deliveries.send(S3Delivery {
            event: event.clone(),
            attempt,
            outcome: outcome.clone(),
        });

        match outcome {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(attempt, error = %error, "s3 event delivery failed");
                last_error = error;
            }
        }
        if attempt < ATTEMPTS {
            let wait = backoff
                .get(attempt as usize - 1)
                .or(backoff.last())
                .copied()
                .unwrap_or(Duration::from_secs(1));
            tokio::time::sleep(wait).await;
        }
    }

    match write_dead_letter(&dead_letter_dir, &event, &last_error, sequence).await {
        Ok(path) => tracing::error!(
            path = %path.display(), attempts = ATTEMPTS,
            "s3 event sent to the dead-letter queue"
        ),
        Err(e) => tracing::error!(error = %e, "s3 event lost: dead letter not written"),
    }
}

async fn write_dead_letter(
    dir: &Path,
    event: &S3Event,
    error: &str,
    sequence: u64,
) -> std::io::Result<PathBuf> {
    tokio::fs::create_dir_all(dir).await?;
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let path = dir.join(format!("{stamp}-{sequence}.json"));
    let letter = json!({
        "functionName": "on-object-created",
        "attempts": ATTEMPTS,
        "error": error,
        "event": event,
    });
    tokio::fs::write(&path, serde_json::to_vec_pretty(&letter)?).await?;
    Ok(path)
}

/// s3s-fs behind the checks and notifications described above.
struct NotifyingS3 {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
    /// Where PUT bodies wait while their checksum is verified.
    spool: PathBuf,
    notifier: Arc<Notifier>,
}

impl NotifyingS3 {
    /// Writes a PUT body to a spool file while hashing it, in bounded
    /// memory whatever its size, and hands back the file, open for reading,
    /// only when its SHA-256 is `expected` (base64). The spool file is
    /// unlinked either way; the open handle keeps the bytes readable.
    async fn spool_verified(
        &self,
        mut blob: StreamingBlob,
        expected: &str,
    ) -> S3Result<tokio::fs::File> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;

        let path = self
            .spool
            .join(format!("{:016x}.part", rand::random::<u64>()));
        let io = |e: std::io::Error| s3_error!(InternalError, "spooling the body: {e}");
        let mut file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(io)?;
        let _ = tokio::fs::remove_file(&path).await;
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        while let Some(chunk) = blob.next().await {
            let chunk =
                chunk.map_err(|e| s3_error!(IncompleteBody, "reading the body failed: {e}"))?;
            total += chunk.len() as u64;
            if total > MAX_VERIFIED_BODY {
                return Err(s3_error!(EntityTooLarge));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io)?;
        }
        check_digest(&hasher.finalize(), expected)?;
        file.flush().await.map_err(io)?;
        use tokio::io::AsyncSeekExt;
        file.seek(std::io::SeekFrom::Start(0)).await.map_err(io)?;
        Ok(file)
    }

    async fn put_object_checked(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        if let Some(expected) = req.input.checksum_sha256.clone() {
            let Some(blob) = req.input.body.take() else {
                return Err(s3_error!(IncompleteBody));
            };
            let small = req
                .input
                .content_length
                .is_some_and(|n| (0..=MAX_BUFFERED_BODY).contains(&n));
            req.input.body = Some(if small {
                StreamingBlob::from(s3s::Body::from(buffer_verified(blob, &expected).await?))
            } else {
                let verified = self.spool_verified(blob, &expected).await?;
                StreamingBlob::wrap(read_chunks(verified))
            });
        }

        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let (principal, source_ip) = caller(&req);
        let resp = self.fs.put_object(req).await?;

        let e_tag = resp.output.e_tag.as_ref().map(|e| e.value().to_owned());
        self.notify(
            "ObjectCreated:Put",
            bucket,
            key,
            e_tag,
            principal,
            source_ip,
        )
        .await;
        Ok(resp)
    }

    async fn complete_multipart_upload_notified(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let (principal, source_ip) = caller(&req);
        let resp = self.fs.complete_multipart_upload(req).await?;

        let e_tag = resp.output.e_tag.as_ref().map(|e| e.value().to_owned());
        let name = "ObjectCreated:CompleteMultipartUpload";
        self.notify(name, bucket, key, e_tag, principal, source_ip)
            .await;
        Ok(resp)
    }

    async fn notify(
        &self,
        event_name: &'static str,
        bucket: String,
        key: String,
        e_tag: Option<String>,
        principal: String,
        source_ip: String,
    ) {
        let size = match tokio::fs::metadata(self.root.join(&bucket).join(&key)).await {
            Ok(meta) => meta.len(),
            Err(e) => {
                tracing::error!(error = %e, "written object not found; no event");
                return;
            }
        };
        let e_tag = e_tag.unwrap_or_default();
        let object = ObjectCreated {
            event_name,
            bucket,
            key,
            size,
            e_tag,
            principal,
            source_ip,
        };
        self.notifier.object_created(object);
    }
}

fn caller<T>(req: &S3Request<T>) -> (String, String) {
    let principal = req
        .credentials
        .as_ref()
        .map(|c| format!("AWS:{}", c.access_key))
        .unwrap_or_else(|| "anonymous".to_owned());
    let source_ip = req
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    (principal, source_ip)
}

/// Emits the `S3` impl: the listed operations go straight to s3s-fs, the
/// two that create objects go through the checks and notifications.
macro_rules! forward_to_fs {
    ($($op:ident: $input:ident => $output:ident),* $(,)?) => {
        #[async_trait::async_trait]
        impl S3 for NotifyingS3 {
            $(
                async fn $op(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.fs.$op(req).await
                }
            )*

            async fn put_object(
                &self,
                req: S3Request<PutObjectInput>,
            ) -> S3Result<S3Response<PutObjectOutput>> {
                self.put_object_checked(req).await
            }

            async fn complete_multipart_upload(
                &self,
                req: S3Request<CompleteMultipartUploadInput>,
            ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
                self.complete_multipart_upload_notified(req).await
            }
        }
    };
}

forward_to_fs! {
    create_bucket: CreateBucketInput => CreateBucketOutput,
    copy_object: CopyObjectInput => CopyObjectOutput,
    delete_bucket: DeleteBucketInput => DeleteBucketOutput,
    delete_object: DeleteObjectInput => DeleteObjectOutput,
    delete_objects: DeleteObjectsInput => DeleteObjectsOutput,
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
    get_object: GetObjectInput => GetObjectOutput,
    head_bucket: HeadBucketInput => HeadBucketOutput,
    head_object: HeadObjectInput => HeadObjectOutput,
    list_buckets: ListBucketsInput => ListBucketsOutput,
    list_objects: ListObjectsInput => ListObjectsOutput,
    list_objects_v2: ListObjectsV2Input => ListObjectsV2Output,
    create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
    upload_part: UploadPartInput => UploadPartOutput,
    upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput,
    list_parts: ListPartsInput => ListPartsOutput,
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput,
}

/// Serves the bucket on `listener` until `stop`.
pub fn serve(
    data_dir: &Path,
    listener: std::net::TcpListener,
    credentials: &S3Credentials,
    notifier: Notifier,
    mut stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, StartError> {
    let root = data_dir.join("s3");
    let bucket_dir = root.join(DICOM_BUCKET);
    std::fs::create_dir_all(&bucket_dir).map_err(|source| StartError::DataDir {
        path: bucket_dir,
        source,
    })?;
    let fs = s3s_fs::FileSystem::new(&root).map_err(|e| StartError::S3(format!("{e:?}")))?;
    let spool = data_dir.join("s3-spool");
    std::fs::create_dir_all(&spool).map_err(|source| StartError::DataDir {
        path: spool.clone(),
        source,
    })?;

    let wrapper = NotifyingS3 {
        fs,
        root,
        spool,
        notifier: Arc::new(notifier),
    };
    let mut builder = S3ServiceBuilder::new(wrapper);
    builder.set_auth(SimpleAuth::from_single(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.clone(),
    ));
    let service = HandleError::new(builder.build(), |err: HttpError| async move {
        tracing::error!(error = ?err, "s3 request failed");
        http::Response::builder()
            .status(http::StatusCode::INTERNAL_SERVER_ERROR)
            .body(s3s::Body::from("internal error".to_owned()))
            .expect("static response")
    });
    let app = axum::Router::new().fallback_service(service);

    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(|e| StartError::S3(e.to_string()))?;
    Ok(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "s3 server failed");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A context whose DynamoDB and S3 refuse every connection: whatever
    /// the indexer does, it meets an unexpected failure.
    async fn unreachable_context(dir: &Path) -> Arc<Context> {
        let settings = pacs_shared::Settings::from_lookup(|name| {
            Some(match name {
                "TENANTS_TABLE" => "t".to_owned(),
                "ARCHIVE_TABLE" => "a".to_owned(),
                "DICOM_BUCKET" => DICOM_BUCKET.to_owned(),
                "SECRETS_FILE" => dir.join("absent.json").display().to_string(),
                "DYNAMODB_ENDPOINT" | "S3_ENDPOINT" | "EVENTS_ENDPOINT" => {
                    "http://127.0.0.1:1".to_owned()
                }
                _ => return None,
            })
        })
        .unwrap();
        let creds = S3Credentials {
            access_key_id: "PACSLOCALTEST".into(),
            secret_access_key: "secret".into(),
        };
        let config = crate::sdk_config(&creds).await;
        let clients = pacs_shared::Clients::from_config(&config, &settings);
        Arc::new(Context::new(settings, clients))
    }

    #[tokio::test]
    async fn a_failing_event_is_tried_three_times_then_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = broadcast::channel(8);
        let object = ObjectCreated {
            event_name: "ObjectCreated:Put",
            bucket: DICOM_BUCKET.into(),
            key: "dicom/hosp_0123456789abcdef/upl_0123456789abcdef0123456789abcdef.dcm".into(),
            size: 10,
            e_tag: "e".into(),
            principal: "AWS:PACSLOCALTEST".into(),
            source_ip: "127.0.0.1".into(),
        };
        let event = build_event(&object, 7).unwrap();
        let context = unreachable_context(dir.path()).await;
        let letters = dir.path().join("dead-letter");

        deliver(
            context,
            event.clone(),
            vec![Duration::ZERO],
            letters.clone(),
            tx,
            7,
        )
        .await;

        for attempt in 1..=3 {
            let delivery = rx.try_recv().expect("one report per attempt");
            assert_eq!(delivery.attempt, attempt);
            assert!(delivery.outcome.is_err());
        }
        let files: Vec<_> = std::fs::read_dir(&letters).unwrap().collect();
        assert_eq!(files.len(), 1);
        let letter: serde_json::Value =
            serde_json::from_slice(&std::fs::read(files[0].as_ref().unwrap().path()).unwrap())
                .unwrap();
        assert_eq!(letter["attempts"], 3);
        assert_eq!(letter["event"], serde_json::to_value(&event).unwrap());
        assert!(letter["error"].as_str().is_some_and(|e| !e.is_empty()));
    }

    #[test]
    fn events_carry_every_field_s3_fills_in() {
        let object = ObjectCreated {
            event_name: "ObjectCreated:Put",
            bucket: DICOM_BUCKET.into(),
            key: "dicom/h/a b.dcm".into(),
            size: 42,
            e_tag: "abc".into(),
            principal: "AWS:K".into(),
            source_ip: "127.0.0.1".into(),
        };
        let event = build_event(&object, 1).unwrap();
        let json = serde_json::to_value(&event).unwrap();
        let record = &json["Records"][0];
        assert_eq!(record["eventVersion"], "2.1");
        assert_eq!(record["awsRegion"], REGION);
        assert_eq!(record["requestParameters"]["sourceIPAddress"], "127.0.0.1");
        assert_eq!(record["s3"]["object"]["key"], "dicom/h/a+b.dcm");
        assert_eq!(record["s3"]["object"]["size"], 42);
        assert!(
            record["s3"]["object"]["sequencer"]
                .as_str()
                .is_some_and(|s| s.len() >= 16)
        );
        assert!(record["responseElements"]["x-amz-request-id"].is_string());
    }

    #[test]
    fn keys_are_encoded_as_s3_events_carry_them() {
        assert_eq!(
            encode_key("dicom/hosp_1/a b+c.dcm"),
            "dicom/hosp_1/a+b%2Bc.dcm"
        );
    }
}
