//! Lambda entry point: logging, settings and clients once, then the handler.

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
