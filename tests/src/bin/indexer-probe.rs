//! `on-object-created` as a process of its own, wired exactly as its Lambda
//! `main` is, so tests can run it under a Lambda Runtime API and measure
//! the memory of the indexer alone.

use aws_lambda_events::s3::S3Event;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    pacs_shared::logging::init();
    let ctx = pacs_shared::Context::from_env().await?;
    let ctx = &ctx;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<S3Event>| async move {
        on_object_created::handle(ctx, event.payload).await
    }))
    .await
}
