//! Lambda entry point: logging, settings and clients once, then the handler.
#![recursion_limit = "256"]

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    pacs_shared::logging::init();
    let ctx = pacs_shared::Context::from_env().await?;
    let ctx = &ctx;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>| async move {
            authorizer::handle(ctx, event.payload).await
        },
    ))
    .await
}
