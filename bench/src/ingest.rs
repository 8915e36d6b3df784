//! Ingest on the local stack: what one instance costs in S3 and DynamoDB
//! requests and bytes read, what that comes to per million instances, how
//! a one-hospital burst spreads its writes over partition keys, and how
//! many instances per second go end to end (presign, PUT, indexed) beside
//! Orthanc's REST ingest of the same files.
//!
//! Requests are counted by interceptors on SDK clients built like the
//! functions' own; the authorizer, `presign-upload` and `on-object-created`
//! run in-process with them. The agent's PUT is one request per file by
//! construction (the bench stores the bytes through an uncounted client
//! so that only the counted indexer sees the object).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use pacs_local::{Stack, StackOptions};
use pacs_shared::Context;
use pacs_testkit::dicom::DicomFixture;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::corpus::Corpus;
use crate::counting::{self, Counts, Tally};
use crate::report::{Row, bytes, per_second, thousands};

/// On-demand us-east-1 prices used for the cost row.
pub mod price {
    /// S3 PUT, COPY, POST, LIST per request ($0.005 per 1,000).
    pub const S3_PUT: f64 = 0.005 / 1000.0;
    /// S3 GET and other requests ($0.0004 per 1,000).
    pub const S3_GET: f64 = 0.0004 / 1000.0;
    /// DynamoDB on-demand write request unit ($0.625 per million).
    pub const WRU: f64 = 0.625 / 1e6;
    /// DynamoDB on-demand read request unit ($0.125 per million).
    pub const RRU: f64 = 0.125 / 1e6;
    /// Lambda arm64, per GB-second.
    pub const LAMBDA_GB_S: f64 = 0.000_013_333_4;
    /// Lambda, per request ($0.20 per million).
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    /// EventBridge custom events ($1.00 per million).
    pub const EVENT: f64 = 1.0 / 1e6;
}

/// Memory the indexer is priced at, in GB.
const INDEXER_GB: f64 = 0.25;
/// Memory the API functions are priced at, in GB.
const API_GB: f64 = 0.128;
/// Files presigned per API call, as an agent batches them.
const BATCH: usize = 100;
/// Target cost per million instances, in dollars.
const TARGET_COST: f64 = 10.0;

/// Settings of this section.
pub struct Options {
    /// Files in the burst and in the end-to-end comparison.
    pub files: usize,
    /// Studies the burst's files are spread over.
    pub studies: usize,
    /// Concurrent clients (and concurrent indexer invocations).
    pub workers: usize,
    /// Orthanc executable, or none to skip the comparison.
    pub orthanc: Option<PathBuf>,
}

/// One presigned upload.
struct Presigned {
    id: String,
    url: String,
    headers: Vec<(String, String)>,
}

/// Files of a one-hospital burst: `files` CT instances of about 40 KB over
/// `studies` studies.
pub fn burst(files: usize, studies: usize) -> Vec<Vec<u8>> {
    let per_study = files.div_ceil(studies.max(1));
    let mut fixture = DicomFixture::ct().size(140, 140);
    (0..files)
        .map(|i| {
            if i % per_study == 0 {
                fixture = DicomFixture::ct().size(140, 140);
            }
            fixture = fixture.next_instance();
            fixture.to_bytes()
        })
        .collect()
}

pub async fn run(corpus: &Corpus, options: &Options) -> anyhow::Result<Vec<(String, Vec<Row>)>> {
    let dir = tempfile::tempdir()?;
    // The sweep runs when the bench says, so that it is counted.
    let mut stack_options = StackOptions::new(dir.path());
    stack_options.sweep_every = None;
    let stack = Stack::start(stack_options).await?;
    let http = reqwest::Client::new();

    let tally = Arc::new(Tally::default());
    let sdk = stack.sdk_config().await;
    let settings = stack.context().settings.clone();
    let ctx = Arc::new(Context::new(
        settings.clone(),
        counting::clients(&sdk, &settings, &tally),
    ));

    // A one-hospital burst, counted request by request.
    eprintln!("ingest: counting a burst of {} files", options.files);
    let key = register(&stack, &http, "Bench Burst").await?;
    let files = burst(options.files, options.studies);
    let started = Instant::now();
    let (api, index, busy) = counted_ingest(&stack, &ctx, &tally, &key, &files, options).await?;
    let burst_secs = started.elapsed().as_secs_f64();
    let n = files.len() as f64;

    // The scheduled sweep's part: one pass over the burst's studies, with
    // no quiet time, counts and closes each (as the minute after a study's
    // last instance does in AWS).
    eprintln!(
        "ingest: counting the sweep over {} studies",
        options.studies
    );
    let mut quiet_now = settings.clone();
    quiet_now.stable_study_after = Duration::ZERO;
    let sweep_ctx = Context::new(quiet_now, ctx.clients.clone());
    let started = Instant::now();
    let swept = on_object_created::sweep_open_studies(&sweep_ctx).await?;
    let sweep_busy = started.elapsed().as_secs_f64();
    let sweep = tally.take();
    let mut with_sweep = index.clone();
    with_sweep.add(&sweep);

    let mut sections = Vec::new();
    sections.push(("Ingest requests and cost".to_string(), {
        let mut rows = request_rows(&api, &with_sweep, n, busy + sweep_busy);
        rows.insert(0, sweep_row(&sweep, swept.swept, swept.announced));
        let small = files.iter().map(Vec::len).sum::<usize>() as f64 / n;
        rows.insert(
            0,
            Row::new("S3 bytes read per instance, ~40 KB files")
                .ours(bytes((index.s3_bytes_read as f64 / n) as u64))
                .reference(format!("{} file", bytes(small as u64)))
                .target(
                    "<= 64 KiB + header",
                    Some(index.s3_bytes_read as f64 / n <= small),
                ),
        );
        rows
    }));
    sections.push(("Writes per partition key, one-hospital burst".into(), {
        let mut all = api.partition_writes.clone();
        for (k, v) in &index.partition_writes {
            *all.entry(k.clone()).or_default() += v;
        }
        partition_rows(&all, files.len(), options.studies, burst_secs)
    }));

    // Bytes read from big files.
    eprintln!("ingest: bytes read from big files");
    let mut big_rows = Vec::new();
    for (label, path, size) in &corpus.big {
        let file = std::fs::read(path)?;
        let (header, _) = crate::headers::index_file(path, &Default::default())?;
        let (_, index, _) = counted_ingest(&stack, &ctx, &tally, &key, &[file], options).await?;
        let read = index.s3_bytes_read;
        let budget = header.header_len + 64 * 1024;
        big_rows.push(
            Row::new(format!("S3 bytes read, {label}"))
                .ours(bytes(read))
                .reference(format!("{} file", bytes(*size)))
                .target(
                    format!("<= {} (64 KiB + header)", bytes(budget)),
                    Some(read <= budget),
                ),
        );
    }
    sections.push(("S3 bytes read per instance, big files".into(), big_rows));

    // End to end over HTTP, beside Orthanc.
    eprintln!(
        "ingest: end to end, {} files, {} workers",
        options.files, options.workers
    );
    let key = register(&stack, &http, "Bench Throughput").await?;
    let files = Arc::new(burst(options.files, options.studies));
    let ours = end_to_end(&stack, &http, &key, &files, options.workers).await?;
    let reference = match &options.orthanc {
        Some(orthanc) => Some(crate::orthanc::ingest_rate(orthanc, &files, options.workers).await?),
        None => None,
    };
    let row = Row::new(format!(
        "instances/s end to end, {} files, {} workers",
        files.len(),
        options.workers
    ))
    .ours(per_second(ours));
    let row = match reference {
        Some(r) => row
            .reference(format!("{} (Orthanc POST /instances)", per_second(r)))
            .target(format!(">= 2x ({:.1}x)", ours / r), Some(ours >= 2.0 * r)),
        None => row
            .reference("n/a (no Orthanc)")
            .target(">= 2x Orthanc", None),
    };
    // What bounds the figure above on one machine: the local DynamoDB
    // server keeps one SQLite connection behind one lock, so its requests
    // run one at a time, whatever the concurrency.
    let ddb_rate = dynamodb_ceiling(&stack, options.workers).await?;
    let ddb_per_instance =
        (with_sweep.sum("dynamodb", |_| true) + api.sum("dynamodb", |_| true)) as f64 / n;
    let ceiling = Row::new(format!(
        "local DynamoDB requests/s, {} clients (PutItem then GetItem)",
        options.workers
    ))
    .ours(per_second(ddb_rate))
    .reference(format!(
        "/ {ddb_per_instance:.2} requests per instance = {} at most end to end",
        per_second(ddb_rate / ddb_per_instance)
    ));
    sections.push(("End to end".into(), vec![row, ceiling]));

    stack.shutdown().await;
    Ok(sections)
}

/// Requests per second the stack's DynamoDB server answers with `workers`
/// clients: instance-sized PutItems, each followed by a consistent GetItem
/// of the same item, as the indexer's writes and reads.
async fn dynamodb_ceiling(stack: &Stack, workers: usize) -> anyhow::Result<f64> {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    const ROUNDS: usize = 2000;
    let ctx = stack.context();
    let table = ctx.settings.archive_table.clone();
    let start = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..ROUNDS)
        .map(|i| {
            let (ctx, table) = (ctx.clone(), table.clone());
            async move {
                let pk = A::S(format!("hosp_0000000000000000#2.25.{}", i % 50));
                let sk = A::S(format!("INSTANCE#2.25.1#2.25.{i}"));
                ctx.clients
                    .dynamodb
                    .put_item()
                    .table_name(&table)
                    .item("pk", pk.clone())
                    .item("sk", sk.clone())
                    .item(
                        "s3Key",
                        A::S(format!("dicom/hosp_0000000000000000/upl_{i:032}.dcm")),
                    )
                    .item("sha256", A::S("0".repeat(64)))
                    .item("sizeBytes", A::N("40960".into()))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
                    .await?;
                ctx.clients
                    .dynamodb
                    .get_item()
                    .table_name(&table)
                    .key("pk", pk)
                    .key("sk", sk)
                    .consistent_read(true)
                    .send()
                    .await?;
                Ok(())
            }
        })
        .buffer_unordered(workers)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok((2 * ROUNDS) as f64 / start.elapsed().as_secs_f64())
}

/// Registers a hospital through the API and returns its agent key.
async fn register(stack: &Stack, http: &reqwest::Client, name: &str) -> anyhow::Result<String> {
    let body: Value = http
        .post(format!("{}/api/hospitals/register", stack.api_url()))
        .header("x-api-key", stack.platform_admin_key())
        .json(&json!({
            "name": name,
            "contactEmail": "it@example.org",
            "contactPhone": "+1 555 0100",
            "address": "1 Main St",
            "plan": "enterprise",
            "settings": {}
        }))
        .send()
        .await?
        .json()
        .await?;
    body["data"]["apiKey"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("register {name}: {body}"))
}

/// Presigns, stores and indexes `files` with the counting clients; returns
/// the API's counts, the indexer's counts and the indexer's busy seconds.
async fn counted_ingest(
    stack: &Stack,
    ctx: &Arc<Context>,
    tally: &Tally,
    key: &str,
    files: &[Vec<u8>],
    options: &Options,
) -> anyhow::Result<(Counts, Counts, f64)> {
    tally.take();
    let mut staged = Vec::new();
    for chunk in files.chunks(BATCH) {
        let uploads = presign_in_process(ctx, key, chunk).await?;
        for (upload, bytes) in uploads.into_iter().zip(chunk) {
            let object_key = stage(stack, &upload, bytes).await?;
            staged.push((object_key, bytes.len()));
        }
    }
    let api = tally.take();

    let bucket = ctx.settings.bucket.clone();
    let outcomes: Vec<anyhow::Result<Duration>> = futures::stream::iter(staged)
        .map(|(object_key, size)| {
            let (ctx, bucket) = (ctx.clone(), bucket.clone());
            async move {
                let event = serde_json::from_value(s3_event(&bucket, &object_key, size))?;
                let start = Instant::now();
                on_object_created::handle(&ctx, event).await?;
                Ok(start.elapsed())
            }
        })
        .buffer_unordered(options.workers)
        .collect()
        .await;
    let mut busy = 0.0;
    for outcome in outcomes {
        busy += outcome?.as_secs_f64();
    }
    Ok((api, tally.take(), busy))
}

/// The authorizer and `presign-upload`, in-process, as API Gateway would
/// call them for `POST /api/uploads`.
async fn presign_in_process(
    ctx: &Context,
    key: &str,
    files: &[Vec<u8>],
) -> anyhow::Result<Vec<Presigned>> {
    let method_arn = "arn:aws:execute-api:us-east-1:000000000000:local/local/POST/api/uploads";
    let identity = json!({ "sourceIp": "127.0.0.1" });
    let event = serde_json::from_value(json!({
        "type": "REQUEST",
        "methodArn": method_arn,
        "resource": "/api/uploads",
        "path": "/api/uploads",
        "httpMethod": "POST",
        "headers": { "x-api-key": key },
        "requestContext": {
            "resourcePath": "/api/uploads", "httpMethod": "POST", "stage": "local",
            "accountId": "000000000000", "identity": identity,
        },
    }))?;
    let policy = authorizer::handle(ctx, event)
        .await
        .map_err(|e| anyhow::anyhow!("authorizer: {e}"))?;
    let authorizer_context = serde_json::to_value(&policy)?["context"].clone();

    let body = json!({ "files": files.iter().map(|f| json!({
        "size": f.len(),
        "sha256": hex::encode(Sha256::digest(f)),
    })).collect::<Vec<_>>() });
    let proxy: aws_lambda_events::apigw::ApiGatewayProxyRequest = serde_json::from_value(json!({
        "resource": "/api/uploads",
        "path": "/api/uploads",
        "httpMethod": "POST",
        "headers": { "content-type": "application/json" },
        "multiValueHeaders": { "content-type": ["application/json"] },
        "requestContext": {
            "resourcePath": "/api/uploads", "httpMethod": "POST", "stage": "local",
            "accountId": "000000000000", "requestId": "bench", "identity": identity,
            "authorizer": authorizer_context,
        },
        "body": body.to_string(),
        "isBase64Encoded": false,
    }))?;
    let request = http::Request::from(lambda_http::request::LambdaRequest::ApiGatewayV1(proxy));
    let response = presign_upload::handle(ctx, request).await;
    let text = match response.body() {
        lambda_http::Body::Text(t) => t.clone(),
        lambda_http::Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        lambda_http::Body::Empty => String::new(),
        _ => String::new(),
    };
    if response.status() != 201 {
        bail!("presign answered {}: {text}", response.status());
    }
    uploads_of(&serde_json::from_str(&text)?)
}

fn uploads_of(body: &Value) -> anyhow::Result<Vec<Presigned>> {
    let list = body["data"]["uploads"].as_array().context("data.uploads")?;
    list.iter()
        .map(|u| {
            let headers = u["headers"]
                .as_object()
                .context("headers")?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            Ok(Presigned {
                id: u["uploadId"].as_str().context("uploadId")?.to_owned(),
                url: u["url"].as_str().context("url")?.to_owned(),
                headers,
            })
        })
        .collect()
}

/// Stores a file at its upload's key through the stack's own (uncounted)
/// client, by way of a staging key, so the local S3 server raises no event
/// and only the counted indexer reads it. Returns the object key.
async fn stage(stack: &Stack, upload: &Presigned, bytes: &[u8]) -> anyhow::Result<String> {
    let ctx = stack.context();
    let bucket = &ctx.settings.bucket;
    let path = upload.url.split('?').next().unwrap_or_default();
    let object_key = path
        .split_once(&format!("/{bucket}/"))
        .map(|(_, k)| k.to_owned())
        .context("object key in the URL")?;
    let staging = format!("staging/{}", upload.id);
    let put = ctx.clients.s3.put_object().bucket(bucket).key(&staging);
    put.body(bytes.to_vec().into()).send().await?;
    let copy = ctx.clients.s3.copy_object().bucket(bucket).key(&object_key);
    copy.copy_source(format!("{bucket}/{staging}"))
        .send()
        .await?;
    let delete = ctx.clients.s3.delete_object().bucket(bucket).key(&staging);
    delete.send().await?;
    Ok(object_key)
}

/// An `ObjectCreated:Put` event for one object.
fn s3_event(bucket: &str, key: &str, size: usize) -> Value {
    json!({ "Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2025-01-01T00:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": { "principalId": "BENCH" },
        "requestParameters": { "sourceIPAddress": "127.0.0.1" },
        "responseElements": { "x-amz-request-id": "0", "x-amz-id-2": "0" },
        "s3": {
            "s3SchemaVersion": "1.0", "configurationId": "dicom-object-created",
            "bucket": { "name": bucket, "ownerIdentity": { "principalId": "BENCH" },
                        "arn": format!("arn:aws:s3:::{bucket}") },
            "object": { "key": key, "size": size, "eTag": "0", "sequencer": "00" },
        },
    }]})
}

/// What one sweep pass cost per study.
fn sweep_row(sweep: &Counts, studies: usize, announced: usize) -> Row {
    let per = |x: u64| x as f64 / studies.max(1) as f64;
    let ops = sweep
        .requests
        .iter()
        .filter(|(k, _)| k.starts_with("dynamodb:"))
        .map(|(k, v)| {
            format!(
                "{} {:.1}",
                k.split_once(':').map_or(k.as_str(), |x| x.1),
                per(*v)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    Row::new(format!(
        "sweep per study ({studies} studies, {announced} closed): WRU / RRU"
    ))
    .ours(format!(
        "{:.1} / {:.1}",
        per(sweep.write_units),
        per(sweep.read_units)
    ))
    .reference(format!("{ops}; included below, once per study"))
}

fn request_rows(api: &Counts, index: &Counts, n: f64, indexer_busy: f64) -> Vec<Row> {
    let per = |x: u64| x as f64 / n;
    let s3_puts = |c: &Counts| {
        c.sum("s3", |op| {
            matches!(op, "PutObject" | "CopyObject" | "POST" | "ListObjectsV2")
        })
    };
    let s3_gets = |c: &Counts| {
        c.sum("s3", |op| {
            !matches!(
                op,
                "PutObject" | "CopyObject" | "POST" | "ListObjectsV2" | "DeleteObject"
            )
        })
    };
    // The agent's PUT through the presigned URL: one per file. Presigning
    // passes through the interceptors but sends nothing, so the API's S3
    // tallies are not requests.
    let agent_puts = n as u64;
    let s3_put = s3_puts(index) + agent_puts;
    let s3_get = s3_gets(index);
    let ddb = |c: &Counts| c.sum("dynamodb", |_| true);
    let events = index.sum("events", |_| true);
    let wru = api.write_units + index.write_units;
    let rru = api.read_units + index.read_units;
    let api_calls = (n / BATCH as f64).ceil();

    // Lambda: the indexer's measured busy time, and the API calls (two
    // functions per call) at 100 ms each.
    let lambda_gb_s = indexer_busy * INDEXER_GB + api_calls * 2.0 * 0.1 * API_GB;
    let lambda_requests = n + api_calls * 2.0;
    let million = 1e6 / n;
    let cost = |x: f64| x * million;
    let s3_cost = cost(s3_put as f64 * price::S3_PUT + s3_get as f64 * price::S3_GET);
    let ddb_cost = cost(wru as f64 * price::WRU + rru as f64 * price::RRU);
    let lambda_cost =
        cost(lambda_gb_s * price::LAMBDA_GB_S + lambda_requests * price::LAMBDA_REQUEST);
    let event_cost = cost(events as f64 * price::EVENT);
    let total = s3_cost + ddb_cost + lambda_cost + event_cost;

    let ops = |c: &Counts, service: &str| {
        c.requests
            .iter()
            .filter(|(k, _)| k.starts_with(service))
            .map(|(k, v)| {
                format!(
                    "{} {:.2}",
                    k.split_once(':').map_or(k.as_str(), |x| x.1),
                    per(*v)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        Row::new("S3 requests per instance (PUT-class / GET-class)")
            .ours(format!("{:.2} / {:.2}", per(s3_put), per(s3_get)))
            .reference(format!("indexer: {}", ops(index, "s3:"))),
        Row::new("DynamoDB requests per instance (indexer and sweep + presign)")
            .ours(format!("{:.2} + {:.2}", per(ddb(index)), per(ddb(api))))
            .reference(format!("indexer: {}", ops(index, "dynamodb:"))),
        Row::new("DynamoDB units per instance (WRU / RRU)")
            .ours(format!("{:.2} / {:.2}", per(wru), per(rru)))
            .reference(format!("presign: {}", ops(api, "dynamodb:"))),
        Row::new("EventBridge events per instance (indexed, stable)")
            .ours(format!("{:.2}", per(events))),
        Row::new("Lambda ms per instance, indexer and sweep (in-process, 8 at once)")
            .ours(format!("{:.1}", indexer_busy * 1000.0 / n))
            .reference(format!(
                "priced at {} MB arm64",
                (INDEXER_GB * 1024.0) as u32
            )),
        Row::new("cost per million instances (S3 + DDB + Lambda + events)")
            .ours(format!(
                "${total:.2} ({s3_cost:.2} + {ddb_cost:.2} + {lambda_cost:.2} + {event_cost:.2})"
            ))
            .reference(
                "S3 PUT $0.005/1k, GET $0.0004/1k; DDB $0.625/M WRU, $0.125/M RRU; \
                 Lambda arm64 $0.0000133334/GB-s + $0.20/M; events $1/M",
            )
            .target(format!("<= ${TARGET_COST:.0}"), Some(total <= TARGET_COST)),
    ]
}

/// DynamoDB's write capacity of one partition, in units per second.
const PARTITION_WCU: f64 = 1000.0;

fn partition_rows(
    writes: &BTreeMap<String, u64>,
    files: usize,
    studies: usize,
    seconds: f64,
) -> Vec<Row> {
    let mut counts: Vec<u64> = writes.values().copied().collect();
    counts.sort_unstable();
    let max = counts.last().copied().unwrap_or(0);
    let hottest = writes
        .iter()
        .max_by_key(|(_, v)| **v)
        .map(|(k, _)| k.split('/').next().unwrap_or("").to_owned() + " study partition")
        .unwrap_or_default();
    let quantile = |q: f64| {
        counts
            .get(((counts.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    let total: u64 = counts.iter().sum();
    vec![
        Row::new(format!(
            "partition keys written, {files} files in {studies} studies"
        ))
        .ours(thousands(counts.len() as u64))
        .reference(format!("{} write units in all", thousands(total))),
        Row::new("write units per key: p50 / p90 / p99 / max")
            .ours(format!(
                "{} / {} / {} / {max}",
                quantile(0.5),
                quantile(0.9),
                quantile(0.99)
            ))
            .reference(format!(
                "max on {hottest}: one instance write per instance ({} each), \
                 plus the study and series items once",
                files.div_ceil(studies)
            )),
        Row::new(format!(
            "hottest key during the burst ({seconds:.1} s), WCU/s"
        ))
        .ours(format!("{:.0}", max as f64 / seconds))
        .reference("write units as billed, over the burst's duration")
        .target(
            format!("<= {PARTITION_WCU:.0} (one partition)"),
            Some(max as f64 / seconds <= PARTITION_WCU),
        ),
    ]
}

/// Presign over HTTP, PUT with plain HTTP, until every upload is indexed:
/// instances per second.
async fn end_to_end(
    stack: &Stack,
    http: &reqwest::Client,
    key: &str,
    files: &Arc<Vec<Vec<u8>>>,
    workers: usize,
) -> anyhow::Result<f64> {
    let mut deliveries = stack.subscribe_s3_deliveries();
    let total = files.len();
    let watcher = tokio::spawn(async move {
        let mut ok = 0;
        while ok < total {
            match deliveries.recv().await {
                Ok(d) if d.outcome.is_ok() => ok += 1,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    eprintln!("delivery watcher lagged by {n}")
                }
                Err(_) => break,
            }
        }
    });

    let start = Instant::now();
    let chunk = 25;
    let jobs: Vec<std::ops::Range<usize>> = (0..total)
        .step_by(chunk)
        .map(|i| i..(i + chunk).min(total))
        .collect();
    let api = stack.api_url();
    let results: Vec<anyhow::Result<Vec<String>>> = futures::stream::iter(jobs)
        .map(|range| {
            let (http, files, api, key) =
                (http.clone(), files.clone(), api.clone(), key.to_owned());
            async move {
                let batch = &files[range];
                let body = json!({ "files": batch.iter().map(|f| json!({
                    "size": f.len(), "sha256": hex::encode(Sha256::digest(f)),
                })).collect::<Vec<_>>() });
                let resp: Value = http
                    .post(format!("{api}/api/uploads"))
                    .header("x-api-key", &key)
                    .json(&body)
                    .send()
                    .await?
                    .json()
                    .await?;
                let uploads = uploads_of(&resp)?;
                let mut ids = Vec::new();
                for (upload, bytes) in uploads.into_iter().zip(batch) {
                    let mut put = http.put(&upload.url);
                    for (name, value) in &upload.headers {
                        put = put.header(name, value);
                    }
                    let status = put.body(bytes.clone()).send().await?.status();
                    if !status.is_success() {
                        bail!("PUT answered {status}");
                    }
                    ids.push(upload.id);
                }
                Ok(ids)
            }
        })
        .buffer_unordered(workers)
        .collect()
        .await;
    let mut ids = Vec::new();
    for r in results {
        ids.extend(r?);
    }
    watcher.await?;
    let elapsed = start.elapsed().as_secs_f64();

    // Every upload must have ended indexed for the rate to count.
    let mut indexed = 0;
    for id in &ids {
        let body: Value = http
            .get(format!("{api}/api/uploads/{id}"))
            .header("x-api-key", key)
            .send()
            .await?
            .json()
            .await?;
        if body["data"]["status"] == "indexed" {
            indexed += 1;
        }
    }
    if indexed != total {
        bail!("only {indexed} of {total} uploads were indexed");
    }
    Ok(total as f64 / elapsed)
}
