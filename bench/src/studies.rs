//! The study list under load: latency of the first page of 100 studies for
//! one hospital holding many studies on the local stack, over HTTP through
//! the authorizer, and how many DynamoDB requests one page costs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use pacs_local::{Stack, StackOptions};
use pacs_shared::auth::{HospitalPrincipal, KeyId};
use pacs_shared::domain::Role;
use pacs_shared::studies::{self, StudyFilter};
use pacs_shared::{Clients, Context};
use serde_json::{Value, json};

use crate::report::{Row, thousands};

/// At most this many DynamoDB requests for a page of one hospital: one
/// Query of the index, one Query of shared studies, one BatchGetItem.
const TARGET_REQUESTS: u64 = 3;

/// Settings of this section.
pub struct Options {
    /// Studies the hospital holds.
    pub studies: usize,
    /// Timed first-page requests.
    pub pages: usize,
}

pub fn run(options: &Options) -> anyhow::Result<Vec<Row>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(measure(options))
}

async fn measure(options: &Options) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let stack = Stack::start(StackOptions::new(dir.path())).await?;
    let http = reqwest::Client::new();
    let base = stack.api_url();
    let (hospital, reader) = register(&http, &base, stack.platform_admin_key()).await?;

    let started = Instant::now();
    seed(&stack, &hospital, options.studies).await?;
    eprintln!(
        "seeded {} studies in {:.1} s",
        options.studies,
        started.elapsed().as_secs_f64()
    );

    // First pages over HTTP, as a client sees them.
    let url = format!("{base}/api/studies?limit=100");
    for _ in 0..5 {
        first_page(&http, &url, &reader).await?;
    }
    let mut times = Vec::with_capacity(options.pages);
    for _ in 0..options.pages {
        let t = Instant::now();
        let n = first_page(&http, &url, &reader).await?;
        times.push(t.elapsed());
        if n != 100 {
            bail!("first page held {n} studies, not 100");
        }
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).saturating_sub(1)];

    // DynamoDB requests of one page, counted on the SDK client.
    let (count, ctx) = counting_context(&stack);
    let caller = HospitalPrincipal {
        hospital_id: hospital.parse().context("hospital id")?,
        role: Role::Reader,
        key_id: KeyId::generate(),
        username: None,
        readable_hospitals: Vec::new(),
        subscription_expired: false,
    };
    let filter = StudyFilter::default();
    let page = studies::list_studies(&ctx, &caller, &filter, 100, None).await?;
    let first = count.swap(0, Ordering::SeqCst);
    let cursor = page.next_cursor.context("a second page")?;
    studies::list_studies(&ctx, &caller, &filter, 100, Some(&cursor)).await?;
    let second = count.swap(0, Ordering::SeqCst);

    stack.shutdown().await;
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let held = thousands(options.studies as u64);
    Ok(vec![
        Row::new(format!("first page of 100 of {held} studies, p50")).ours(ms(pct(0.50))),
        Row::new(format!("first page of 100 of {held} studies, p99")).ours(ms(pct(0.99))),
        Row::new("DynamoDB requests, first page")
            .ours(first.to_string())
            .target(
                format!("<= {TARGET_REQUESTS}"),
                Some(first <= TARGET_REQUESTS),
            ),
        Row::new("DynamoDB requests, next page")
            .ours(second.to_string())
            .target(
                format!("<= {TARGET_REQUESTS}"),
                Some(second <= TARGET_REQUESTS),
            ),
    ])
}

async fn register(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
) -> anyhow::Result<(String, String)> {
    let body = json!({
        "name": "Bench General", "contactEmail": "it@example.org",
        "contactPhone": "+41 44 123 45 67", "address": "1 Main St", "plan": "enterprise"
    });
    let v: Value = http
        .post(format!("{base}/api/hospitals/register"))
        .header("x-api-key", admin)
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    let id = v["data"]["hospitalId"]
        .as_str()
        .context("hospitalId")?
        .to_owned();
    let v: Value = http
        .post(format!("{base}/api/hospitals/{id}/keys"))
        .header("x-api-key", admin)
        .json(&json!({"role": "reader", "label": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let key = v["data"]["apiKey"].as_str().context("apiKey")?.to_owned();
    Ok((id, key))
}

async fn first_page(http: &reqwest::Client, url: &str, key: &str) -> anyhow::Result<usize> {
    let resp = http.get(url).header("x-api-key", key).send().await?;
    if !resp.status().is_success() {
        bail!("study list answered {}", resp.status());
    }
    let v: Value = resp.json().await?;
    Ok(v["data"]["studies"].as_array().map_or(0, Vec::len))
}

/// Writes `count` study items in the layout of docs/data-model.md, 25 per
/// BatchWriteItem, four batches at a time.
async fn seed(stack: &Stack, hospital: &str, count: usize) -> anyhow::Result<()> {
    let ctx = stack.context();
    let batches: Vec<Vec<usize>> = (0..count)
        .collect::<Vec<_>>()
        .chunks(25)
        .map(<[usize]>::to_vec)
        .collect();
    for group in batches.chunks(4) {
        let writes = group.iter().map(|batch| {
            let ctx = ctx.clone();
            let requests: Vec<WriteRequest> = batch
                .iter()
                .map(|i| {
                    let put = PutRequest::builder()
                        .set_item(Some(study(hospital, *i)))
                        .build();
                    WriteRequest::builder()
                        .put_request(put.expect("item set"))
                        .build()
                })
                .collect();
            async move {
                let mut pending = requests;
                while !pending.is_empty() {
                    let table = &ctx.settings.archive_table;
                    let out = ctx
                        .clients
                        .dynamodb
                        .batch_write_item()
                        .request_items(table, pending)
                        .send()
                        .await?;
                    pending = out
                        .unprocessed_items
                        .and_then(|mut u| u.remove(table))
                        .unwrap_or_default();
                }
                anyhow::Ok(())
            }
        });
        for r in futures::future::join_all(writes).await {
            r?;
        }
    }
    Ok(())
}

fn study(hospital: &str, i: usize) -> HashMap<String, AttributeValue> {
    let s = |v: String| AttributeValue::S(v);
    let uid = format!("1.2.826.0.1.3680043.10.99.{i}");
    let date = format!("{:04}{:02}{:02}", 2000 + i % 25, 1 + i % 12, 1 + i % 28);
    let time = format!("{:02}{:02}{:02}", i % 24, i % 60, (i / 60) % 60);
    HashMap::from([
        ("pk".to_owned(), s(format!("{hospital}#{uid}"))),
        ("sk".to_owned(), s("STUDY".into())),
        ("gsi1pk".to_owned(), s(hospital.to_owned())),
        ("gsi1sk".to_owned(), s(format!("{date}{time}#{uid}"))),
        ("hospitalId".to_owned(), s(hospital.to_owned())),
        ("studyInstanceUid".to_owned(), s(uid)),
        ("patientId".to_owned(), s(format!("P{:06}", i % 40_000))),
        (
            "patientName".to_owned(),
            s(format!("PATIENT^{:05}", i % 40_000)),
        ),
        (
            "patientNameLower".to_owned(),
            s(format!("patient^{:05}", i % 40_000)),
        ),
        ("studyDate".to_owned(), s(date)),
        ("studyTime".to_owned(), s(time)),
        ("accessionNumber".to_owned(), s(format!("ACC{i}"))),
        (
            "modalities".to_owned(),
            AttributeValue::Ss(vec!["CT".into()]),
        ),
        ("numberOfSeries".to_owned(), AttributeValue::N("2".into())),
        (
            "numberOfInstances".to_owned(),
            AttributeValue::N("300".into()),
        ),
        (
            "sizeBytes".to_owned(),
            AttributeValue::N("157286400".into()),
        ),
        ("createdAt".to_owned(), s("2024-01-01T00:00:00Z".into())),
        ("updatedAt".to_owned(), s("2024-01-01T00:00:00Z".into())),
    ])
}

/// Counts every request the DynamoDB client sends.
#[derive(Debug)]
struct CountRequests(Arc<AtomicU64>);

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    fn read_before_transmit(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// The stack's context with a DynamoDB client that counts its requests.
fn counting_context(stack: &Stack) -> (Arc<AtomicU64>, Context) {
    let base = stack.context();
    let count = Arc::new(AtomicU64::new(0));
    let config = base
        .clients
        .dynamodb
        .config()
        .to_builder()
        .interceptor(CountRequests(count.clone()))
        .build();
    let clients = Clients {
        dynamodb: aws_sdk_dynamodb::Client::from_conf(config),
        ..base.clients.clone()
    };
    (count, Context::new(base.settings.clone(), clients))
}
