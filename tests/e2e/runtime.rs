//! The real function binaries under an emulated Lambda Runtime API, with
//! the sample events of `events/`: their `main` wiring, not only their
//! handlers.

use pacs_testkit::{Invocation, RuntimeApi, TestStack, sample_event};
use serde_json::Value;

#[tokio::test]
async fn register_hospital_binary_answers_an_api_gateway_proxy_response() {
    let stack = TestStack::start().await;
    let outcome = RuntimeApi::new("register-hospital")
        .env(stack.function_env())
        .invoke(sample_event("register-hospital.json"))
        .await
        .unwrap();

    let Invocation::Response(response) = outcome else {
        panic!("expected a proxy response, got {outcome:?}");
    };
    let status = response["statusCode"].as_u64().expect("statusCode");
    assert!((200..600).contains(&status), "{response}");
    let body: Value =
        serde_json::from_str(response["body"].as_str().expect("a body")).expect("a JSON body");
    match body["success"].as_bool().expect("success flag") {
        true => assert!(body.get("data").is_some(), "{body}"),
        false => {
            assert!(
                body["code"].as_str().is_some_and(|c| !c.is_empty()),
                "{body}"
            );
            assert!(
                body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{body}"
            );
        }
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn on_object_created_binary_reports_through_the_runtime_api() {
    let stack = TestStack::start().await;
    let outcome = RuntimeApi::new("on-object-created")
        .env(stack.function_env())
        .invoke(sample_event("s3-object-created.json"))
        .await
        .unwrap();

    match outcome {
        // Success of an S3-event function is an empty (null) response.
        Invocation::Response(_) => {}
        Invocation::Error(error) => {
            assert!(
                error["errorType"].as_str().is_some_and(|t| !t.is_empty()),
                "{error}"
            );
            assert!(error["errorMessage"].as_str().is_some(), "{error}");
        }
        Invocation::InitError(error) => panic!("the function failed to start: {error}"),
    }
    stack.shutdown().await;
}
