//! Lambda entry point of the stable-study sweep, run on a schedule:
//! logging, settings and clients once, then one sweep per invocation.

use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    pacs_shared::logging::init();
    let ctx = pacs_shared::Context::from_env().await?;
    let ctx = &ctx;
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move {
            on_object_created::sweep_open_studies(ctx).await
        },
    ))
    .await
}
