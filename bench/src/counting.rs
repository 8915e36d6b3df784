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
    /// Writes per `table/partition key`.
    pub partition_writes: BTreeMap<String, u64>,
}

impl Counts {
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

/// The S3 operation of a request, from the SDK's `x-id` query parameter
/// or else the method.
fn s3_operation(method: &str, uri: &str) -> String {
    uri.split_once("x-id=")
        .map(|(_, rest)| rest.split('&').next().unwrap_or(rest).to_owned())
        .unwrap_or_else(|| method.to_owned())
}

/// Capacity units as DynamoDB on-demand bills them: a write unit per KiB
/// of item written (two in a transaction), a read unit per strongly
/// consistent item read up to 4 KiB. Updates and deletes are taken as one
/// KiB items; item sizes are those of the request's JSON.
fn bill_dynamodb(operation: &str, body: &Value, counts: &mut Counts) {
    let kib = |item: &Value| (item.to_string().len() as u64).div_ceil(1024).max(1);
    let pk = |table: &Value, key: &Value| {
        format!(
            "{}/{}",
            table.as_str().unwrap_or("?"),
            key["pk"]["S"].as_str().unwrap_or("?")
        )
    };
    let write = |counts: &mut Counts, units: u64, partition: String| {
        counts.write_units += units;
        *counts.partition_writes.entry(partition).or_default() += 1;
    };
    match operation {
        "TransactWriteItems" => {
            for item in body["TransactItems"].as_array().into_iter().flatten() {
                if let Some(put) = item.get("Put") {
                    write(
                        counts,
                        2 * kib(&put["Item"]),
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
                    let units = if item.is_null() { 1 } else { kib(item) };
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
            kib(&body["Item"]),
            pk(&body["TableName"], &body["Item"]),
        ),
        "UpdateItem" | "DeleteItem" => write(counts, 1, pk(&body["TableName"], &body["Key"])),
        "GetItem" | "Query" => counts.read_units += 1,
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
