//! SDK clients that tally every request they send: the operation, the
//! capacity units DynamoDB would bill for it, the partition keys it writes,
//! and the body bytes S3 returns.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use pacs_shared::{Clients, Settings};
use serde_json::Value;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the clients sent since the last [`Tally::take`].
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Requests by `service:operation`, e.g. `s3:GetObject`.
    pub requests: BTreeMap<String, u64>,
    /// Write request units DynamoDB on-demand would bill.
    pub write_units: u64,
    /// Read request units DynamoDB on-demand would bill.
    pub read_units: u64,
    /// Body bytes of S3 GetObject responses.
    pub s3_bytes_read: u64,
    /// Write units per `table/partition key`.
    pub partition_writes: BTreeMap<String, u64>,
}

impl Counts {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Counts) {
        for (k, v) in &other.requests {
            *self.requests.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.partition_writes {
            *self.partition_writes.entry(k.clone()).or_default() += v;
        }
        self.write_units += other.write_units;
        self.read_units += other.read_units;
        self.s3_bytes_read += other.s3_bytes_read;
    }

    /// Requests of `service` whose operation satisfies `pick`.
    pub fn sum(&self, service: &str, pick: impl Fn(&str) -> bool) -> u64 {
        self.requests
            .iter()
            .filter_map(|(k, n)| {
                let (s, op) = k.split_once(':')?;
                (s == service && pick(op)).then_some(*n)
            })
            .sum()
    }
}

/// Shared by the interceptors of one set of clients.
#[derive(Debug, Default)]
pub struct Tally(Mutex<Counts>);

impl Tally {
    /// Returns the counts so far and starts again from zero.
    pub fn take(&self) -> Counts {
        std::mem::take(&mut *self.0.lock().expect("tally"))
    }
}

#[derive(Debug)]
struct Counter {
    service: &'static str,
    tally: Arc<Tally>,
}

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "bench-request-counter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let operation = match self.service {
            "dynamodb" | "events" => request
                .headers()
                .get("x-amz-target")
                .and_then(|t| t.rsplit('.').next())
                .unwrap_or("?")
                .to_owned(),
            _ => s3_operation(request.method(), request.uri()),
        };
        let mut counts = self.tally.0.lock().expect("tally");
        *counts
            .requests
            .entry(format!("{}:{operation}", self.service))
            .or_default() += 1;
        if self.service == "dynamodb" {
            let body = request.body().bytes().unwrap_or_default();
            if let Ok(body) = serde_json::from_slice::<Value>(body) {
                bill_dynamodb(&operation, &body, &mut counts);
            }
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::AfterDeserializationInterceptorContextRef<
            '_,
        >,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Ok(output) = context.output_or_error() {
            if let Some(query) =
                output.downcast_ref::<aws_sdk_dynamodb::operation::query::QueryOutput>()
            {
                self.bill_query(query);
            }
        }
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        let is_get = response.headers().get("content-range").is_some();
        if self.service == "s3" && is_get && response.status().is_success() {
            let length = response
                .headers()
                .get("content-length")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            self.tally.0.lock().expect("tally").s3_bytes_read += length;
        }
        Ok(())
    }
}

impl Counter {
    /// Bills a Query by the items it returned.
    fn bill_query(&self, output: &aws_sdk_dynamodb::operation::query::QueryOutput) {
        let bytes: u64 = output
            .items()
            .iter()
            .map(|item| item_size(&attribute_map_json(item)))
            .sum();
        self.tally.0.lock().expect("tally").read_units += bytes.div_ceil(4096).max(1);
    }
}

/// An item as DynamoDB's JSON wire form, for [`item_size`].
fn attribute_map_json(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> Value {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    use base64::Engine as _;
    fn value(v: &A) -> Value {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        match v {
            A::S(s) => serde_json::json!({ "S": s }),
            A::N(n) => serde_json::json!({ "N": n }),
            A::B(b) => serde_json::json!({ "B": b64(b.as_ref()) }),
            A::Bool(b) => serde_json::json!({ "BOOL": b }),
            A::Null(_) => serde_json::json!({ "NULL": true }),
            A::Ss(s) => serde_json::json!({ "SS": s }),
            A::Ns(n) => serde_json::json!({ "NS": n }),
            A::Bs(b) => {
                serde_json::json!({ "BS": b.iter().map(|b| b64(b.as_ref())).collect::<Vec<_>>() })
            }
            A::L(l) => serde_json::json!({ "L": l.iter().map(value).collect::<Vec<_>>() }),
            A::M(m) => serde_json::json!({ "M": attribute_map_json(m) }),
            _ => Value::Null,
        }
    }
    Value::Object(item.iter().map(|(k, v)| (k.clone(), value(v))).collect())
}

/// The S3 operation of a request, from the SDK's `x-id` query parameter
/// or else the method.
fn s3_operation(method: &str, uri: &str) -> String {
    uri.split_once("x-id=")
        .map(|(_, rest)| rest.split('&').next().unwrap_or(rest).to_owned())
        .unwrap_or_else(|| method.to_owned())
}

/// The size DynamoDB bills for an item in its JSON wire form: attribute
/// names plus values (strings and binaries by their bytes, numbers by
/// their significant digits, containers with their per-element overhead).
pub fn item_size(item: &Value) -> u64 {
    item.as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| name.len() as u64 + value_size(value))
        .sum()
}

fn value_size(value: &Value) -> u64 {
    let Some((kind, v)) = value.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    let number = |n: &str| {
        let digits = n.trim_start_matches('-').replace('.', "");
        let significant = digits.trim_start_matches('0').trim_end_matches('0').len() as u64;
        significant.div_ceil(2) + 1
    };
    let binary = |b: &str| (b.len() as u64 * 3) / 4;
    let text = |v: &Value| v.as_str().map_or(0, |s| s.len() as u64);
    fn list(v: &Value) -> impl Iterator<Item = &Value> {
        v.as_array().into_iter().flatten()
    }
    match kind.as_str() {
        "S" => text(v),
        "N" => number(v.as_str().unwrap_or("0")),
        "B" => binary(v.as_str().unwrap_or("")),
        "BOOL" | "NULL" => 1,
        "SS" => list(v).map(text).sum(),
        "NS" => list(v).map(|n| number(n.as_str().unwrap_or("0"))).sum(),
        "BS" => list(v).map(|b| binary(b.as_str().unwrap_or(""))).sum(),
        "L" => 3 + list(v).map(|e| 1 + value_size(e)).sum::<u64>(),
        "M" => {
            3 + v
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, e)| 1 + k.len() as u64 + value_size(e))
                .sum::<u64>()
        }
        _ => 0,
    }
}

/// Write units for an item: one per KiB, at least one.
fn write_units(item: &Value) -> u64 {
    item_size(item).div_ceil(1024).max(1)
}

/// Capacity units as DynamoDB on-demand bills them: a write unit per KiB
/// of item written (two in a transaction), a read unit per strongly
/// consistent item read up to 4 KiB. Puts are sized by their item as
/// DynamoDB sizes it; updates, deletes and condition checks are taken as
/// items of at most one KiB (what this system updates: uploads, study and
/// series items, counters). A conditional write that fails is billed
/// like one that succeeds. Queries are billed from their responses.
fn bill_dynamodb(operation: &str, body: &Value, counts: &mut Counts) {
    let pk = |table: &Value, key: &Value| {
        format!(
            "{}/{}",
            table.as_str().unwrap_or("?"),
            key["pk"]["S"].as_str().unwrap_or("?")
        )
    };
    let write = |counts: &mut Counts, units: u64, partition: String| {
        counts.write_units += units;
        *counts.partition_writes.entry(partition).or_default() += units;
    };
    match operation {
        "TransactWriteItems" => {
            for item in body["TransactItems"].as_array().into_iter().flatten() {
                if let Some(put) = item.get("Put") {
                    write(
                        counts,
                        2 * write_units(&put["Item"]),
                        pk(&put["TableName"], &put["Item"]),
                    );
                } else if let Some((_, op)) = item.as_object().and_then(|o| o.iter().next()) {
                    write(counts, 2, pk(&op["TableName"], &op["Key"]));
                }
            }
        }
        "BatchWriteItem" => {
            let tables = body["RequestItems"].as_object().into_iter().flatten();
            for (table, requests) in tables {
                for r in requests.as_array().into_iter().flatten() {
                    let item = &r["PutRequest"]["Item"];
                    let units = if item.is_null() { 1 } else { write_units(item) };
                    let key = if item.is_null() {
                        &r["DeleteRequest"]["Key"]
                    } else {
                        item
                    };
                    write(counts, units, pk(&Value::from(table.as_str()), key));
                }
            }
        }
        "PutItem" => write(
            counts,
            write_units(&body["Item"]),
            pk(&body["TableName"], &body["Item"]),
        ),
        "UpdateItem" | "DeleteItem" => write(counts, 1, pk(&body["TableName"], &body["Key"])),
        "GetItem" => counts.read_units += 1,
        "BatchGetItem" => {
            let tables = body["RequestItems"].as_object().into_iter().flatten();
            for (_, request) in tables {
                counts.read_units += request["Keys"].as_array().map_or(0, |k| k.len() as u64);
            }
        }
        _ => {}
    }
}

/// Clients like the functions', with every request tallied in `tally`.
pub fn clients(config: &aws_config::SdkConfig, settings: &Settings, tally: &Arc<Tally>) -> Clients {
    let counter = |service| Counter {
        service,
        tally: tally.clone(),
    };
    let mut ddb = aws_sdk_dynamodb::config::Builder::from(config).interceptor(counter("dynamodb"));
    if let Some(url) = &settings.dynamodb_endpoint {
        ddb = ddb.endpoint_url(url);
    }
    let mut s3 = aws_sdk_s3::config::Builder::from(config).interceptor(counter("s3"));
    if let Some(url) = &settings.s3_endpoint {
        s3 = s3.endpoint_url(url).force_path_style(true);
    }
    let mut events =
        aws_sdk_eventbridge::config::Builder::from(config).interceptor(counter("events"));
    if let Some(url) = &settings.events_endpoint {
        events = events.endpoint_url(url);
    }
    Clients {
        dynamodb: aws_sdk_dynamodb::Client::from_conf(ddb.build()),
        s3: aws_sdk_s3::Client::from_conf(s3.build()),
        secrets: aws_sdk_secretsmanager::Client::new(config),
        events: aws_sdk_eventbridge::Client::from_conf(events.build()),
    }
}
