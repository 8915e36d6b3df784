//! Lambda entry point: logging, settings and clients once, then the handler.

use lambda_http::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    pacs_shared::logging::init();
    let ctx = pacs_shared::Context::from_env().await?;
    let ctx = &ctx;
    lambda_http::run(service_fn(move |req| async move {
        Ok::<_, std::convert::Infallible>(agent_heartbeat::handle(ctx, req).await)
    }))
    .await
}
