//! The API as API Gateway serves it: the authorizer in front of every
//! route, the contract's error shape for what no route serves, the body
//! limit, CORS preflights and health.

use pacs_testkit::TestStack;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_request_with_a_bad_key_never_reaches_a_route() {
    let stack = TestStack::start().await;
    let forged =
        "phk_0123456789abcdef_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    for key in [Some("not-a-key"), Some(forged), None] {
        let (status, body) = stack
            .call(Method::GET, "/api/studies", key, None)
            .await
            .unwrap();
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["success"], false);
        assert_eq!(body["code"], "Unauthorized");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let body = json!({"name": "x"});
    let (status, _) = stack
        .call(Method::POST, "/api/hospitals/register", None, Some(&body))
        .await
        .unwrap();
    assert_eq!(status, 401);

    assert_eq!(stack.route_calls("query-studies"), 0);
    assert_eq!(stack.route_calls("register-hospital"), 0);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_suspended_hospital_is_denied_with_its_code_before_the_route() {
    let stack = TestStack::start().await;
    let admin = stack.platform_key();
    let hospital = stack.register_hospital("Suspended General").await.unwrap();
    let reader = stack
        .create_key(&hospital.id, "reader", &admin)
        .await
        .unwrap();
    let patch = json!({"status": "suspended"});
    let path = format!("/api/hospitals/{}", hospital.id);
    let (status, body) = stack
        .call(Method::PATCH, &path, Some(&admin), Some(&patch))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    let before = stack.route_calls("query-studies");
    let (status, body) = stack
        .call(Method::GET, "/api/studies", Some(&reader), None)
        .await
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(body["code"], "HospitalInactive");
    assert_eq!(stack.route_calls("query-studies"), before);
    stack.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_contract_shape() {
    let stack = TestStack::start().await;

    let (status, body) = stack
        .call(Method::GET, "/api/nothing-here", None, None)
        .await
        .unwrap();
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"success": false, "code": "NotFound", "message": "no route for GET /api/nothing-here"})
    );

    let (status, body) = stack
        .call(Method::PUT, "/api/usage", None, None)
        .await
        .unwrap();
    assert_eq!(status, 405);
    assert_eq!(body["success"], false);
    assert_eq!(body["code"], "MethodNotAllowed");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_body_over_ten_megabytes_is_refused_with_413() {
    let stack = TestStack::start().await;
    let resp = stack
        .http()
        .post(stack.url("/api/uploads"))
        .header("content-type", "application/json")
        .body(vec![b' '; 10 * 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["code"], "PayloadTooLarge");
    assert_eq!(stack.route_calls("presign-upload"), 0);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_cors_preflight_goes_to_the_route_without_a_key() {
    let stack = TestStack::start().await;
    let resp = stack
        .http()
        .request(Method::OPTIONS, stack.url("/dicomweb/studies"))
        .header("origin", "http://viewer.example.org")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status().as_u16(), 401);
    assert_eq!(stack.route_calls("dicomweb"), 1);
    stack.shutdown().await;
}

#[tokio::test]
async fn health_answers_once_every_part_is_up() {
    let stack = TestStack::start().await;
    let (status, body) = stack
        .call(Method::GET, "/health", None, None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["data"]["status"], "ok");
    stack.shutdown().await;
}
