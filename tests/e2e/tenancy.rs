//! The tenant boundary: registration, keys, users, grants and the
//! authorizer, and the isolation matrix every route must pass.
//!
//! The matrix is one table, [`ROUTES`]: adding a route to it is one line,
//! and every route then gets every denial case.

use pacs_testkit::{TestHospital, TestStack};
use reqwest::Method;
use serde_json::{Value, json};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// Only the platform operator.
    Platform,
    /// A hospital admin (and, where noted in the route, the operator).
    Admin,
    /// Readers and admins.
    Reader,
    /// Agents and admins.
    Agent,
}

/// One route of the API. `{hosp}` in the path stands for the hospital the
/// call is about; `{key}` for one of its key ids.
struct Route {
    method: Method,
    path: &'static str,
    who: Who,
    body: fn() -> Option<Value>,
}

macro_rules! route {
    ($method:ident $path:literal, $who:ident) => {
        Route {
            method: Method::$method,
            path: $path,
            who: Who::$who,
            body: || None,
        }
    };
    ($method:ident $path:literal, $who:ident, $body:expr) => {
        Route {
            method: Method::$method,
            path: $path,
            who: Who::$who,
            body: || Some($body),
        }
    };
}

/// Every route that exists. One line each.
const ROUTES: &[Route] = &[
    route!(GET "/api/hospitals", Platform),
    route!(POST "/api/hospitals/register", Platform, registration("Matrix")),
    route!(GET "/api/hospitals/{hosp}", Admin),
    route!(PATCH "/api/hospitals/{hosp}", Admin, json!({"settings": {"requireMFA": true}})),
    route!(POST "/api/hospitals/{hosp}/keys", Admin, json!({"role": "reader"})),
    route!(GET "/api/hospitals/{hosp}/keys", Admin),
    route!(DELETE "/api/hospitals/{hosp}/keys/{key}", Admin),
    route!(POST "/api/hospitals/{hosp}/users", Admin, user("matrix", &[])),
    route!(GET "/api/hospitals/{hosp}/users", Admin),
    route!(POST "/api/hospitals/{hosp}/grants", Admin, json!({"hospitalId": "{other}"})),
    route!(GET "/api/hospitals/{hosp}/grants", Admin),
    route!(DELETE "/api/hospitals/{hosp}/grants/{other}", Admin),
    route!(GET "/api/usage", Admin),
    route!(POST "/api/agents/register", Agent, heartbeat()),
    route!(POST "/api/uploads", Agent, json!({"files": [{"size": 10, "sha256": "0".repeat(64)}]})),
    route!(GET "/api/uploads/upl_000000000000000000000000", Agent),
];

fn registration(name: &str) -> Value {
    json!({
        "name": name,
        "contactEmail": "it@example.org",
        "contactPhone": "+41 44 123 45 67",
        "address": "1 Main Street",
        "plan": "basic",
        "settings": {},
    })
}

fn user(name: &str, accessible: &[&str]) -> Value {
    json!({
        "username": name,
        "email": format!("{name}@example.org"),
        "roles": ["reader"],
        "accessibleHospitals": accessible,
    })
}

fn heartbeat() -> Value {
    json!({"hospitalName": "Matrix", "version": "1.0.0", "capabilities": ["orthanc"], "status": "running"})
}

/// A hospital with one key of each role.
struct Tenant {
    id: String,
    agent: String,
    reader: String,
    admin: String,
}

async fn tenant(stack: &TestStack, name: &str) -> Tenant {
    let TestHospital { id, agent_key } = stack.register_hospital(name).await.unwrap();
    let platform = stack.platform_key();
    let admin = stack.create_key(&id, "admin", &platform).await.unwrap();
    let reader = stack.create_key(&id, "reader", &admin).await.unwrap();
    Tenant {
        id,
        agent: agent_key,
        reader,
        admin,
    }
}

async fn send(
    stack: &TestStack,
    route: &Route,
    hosp: &str,
    other: &str,
    key: Option<&str>,
) -> (u16, Value) {
    let path = route
        .path
        .replace("{hosp}", hosp)
        .replace("{other}", other)
        .replace("{key}", "key_0000000000000000");
    let body = (route.body)()
        .map(|b| serde_json::from_str(&b.to_string().replace("{other}", other)).unwrap());
    stack
        .call(route.method.clone(), &path, key, body.as_ref())
        .await
        .unwrap()
}

fn assert_denied(what: &str, route: &Route, got: (u16, Value), status: u16, code: &str) {
    let (s, body) = got;
    assert_eq!(
        s, status,
        "{what}: {} {} answered {s} {body}",
        route.method, route.path
    );
    assert_eq!(
        body["success"], false,
        "{what}: {} {}",
        route.method, route.path
    );
    assert_eq!(
        body["code"], code,
        "{what}: {} {} {body}",
        route.method, route.path
    );
}

#[tokio::test]
async fn every_route_refuses_every_intruder() {
    let stack = TestStack::start().await;
    let platform = stack.platform_key();
    let a = tenant(&stack, "Alpha").await;
    let b = tenant(&stack, "Beta").await;
    let suspended = tenant(&stack, "Suspended").await;
    let fenced = tenant(&stack, "Fenced").await;

    // A revoked admin key of A.
    let revoked = stack.create_key(&a.id, "admin", &a.admin).await.unwrap();
    let revoked_id = key_id_of(&stack, &a, &revoked).await;
    let (s, _) = stack
        .call(
            Method::DELETE,
            &format!("/api/hospitals/{}/keys/{revoked_id}", a.id),
            Some(&a.admin),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200);

    let (s, body) = stack
        .call(
            Method::PATCH,
            &format!("/api/hospitals/{}", suspended.id),
            Some(&platform),
            Some(&json!({"status": "suspended"})),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{body}");
    let (s, body) = stack
        .call(
            Method::PATCH,
            &format!("/api/hospitals/{}", fenced.id),
            Some(&fenced.admin),
            Some(&json!({"settings": {"allowedIPs": ["10.0.0.0/8"]}})),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{body}");

    for route in ROUTES {
        let calls_before = stack.route_calls("manage-hospital");

        assert_denied(
            "no key",
            route,
            send(&stack, route, &a.id, &b.id, None).await,
            401,
            "Unauthorized",
        );
        assert_denied(
            "malformed key",
            route,
            send(&stack, route, &a.id, &b.id, Some("phk_nonsense")).await,
            401,
            "Unauthorized",
        );
        assert_denied(
            "revoked key",
            route,
            send(&stack, route, &a.id, &b.id, Some(&revoked)).await,
            401,
            "Unauthorized",
        );
        assert_denied(
            "suspended hospital",
            route,
            send(&stack, route, &suspended.id, &b.id, Some(&suspended.admin)).await,
            403,
            "HospitalInactive",
        );
        assert_denied(
            "outside allowedIPs",
            route,
            send(&stack, route, &fenced.id, &b.id, Some(&fenced.admin)).await,
            403,
            "IpNotAllowed",
        );
        if route.path.starts_with("/api/hospitals/{hosp}") {
            assert_eq!(
                stack.route_calls("manage-hospital"),
                calls_before,
                "denials reached the route"
            );
        }

        // Keys of the wrong role.
        let wrong: Vec<(&str, &str)> = match route.who {
            Who::Platform => vec![
                ("admin", &a.admin),
                ("reader", &a.reader),
                ("agent", &a.agent),
            ],
            Who::Admin => vec![("reader", &a.reader), ("agent", &a.agent)],
            Who::Reader => vec![("agent", &a.agent)],
            Who::Agent => vec![("reader", &a.reader)],
        };
        for (role, key) in wrong {
            let got = send(&stack, route, &a.id, &b.id, Some(key)).await;
            assert_denied(&format!("{role} key"), route, got, 403, "Forbidden");
        }

        // Another hospital's id in the path: as if it did not exist.
        if route.path.contains("{hosp}") {
            let got = send(&stack, route, &b.id, &a.id, Some(&a.admin)).await;
            assert_denied("another hospital's id", route, got, 404, "NotFound");
        }
    }
}

async fn key_id_of(stack: &TestStack, t: &Tenant, key: &str) -> String {
    let (_, body) = stack
        .call(
            Method::GET,
            &format!("/api/hospitals/{}/keys", t.id),
            Some(&t.admin),
            None,
        )
        .await
        .unwrap();
    let hex = key.split('_').nth(2).unwrap();
    body["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["keyId"].as_str().unwrap().to_owned())
        .find(|id| id.ends_with(hex))
        .expect("the key is listed")
}

#[tokio::test]
async fn registration_issues_one_agent_key_and_validates_every_field() {
    let stack = TestStack::start().await;
    let platform = stack.platform_key();
    let post = |body: Value| {
        let stack = &stack;
        let platform = platform.clone();
        async move {
            stack
                .call(
                    Method::POST,
                    "/api/hospitals/register",
                    Some(&platform),
                    Some(&body),
                )
                .await
                .unwrap()
        }
    };

    let (s, body) = post(registration("St. Example")).await;
    assert_eq!(s, 201, "{body}");
    let data = &body["data"];
    assert!(data["hospitalId"].as_str().unwrap().starts_with("hosp_"));
    assert_eq!(data["status"], "active");
    assert_eq!(data["maxUsers"], 10);
    assert_eq!(data["maxStorageBytes"], 100_000_000_000u64);
    let agent = data["apiKey"].as_str().unwrap().to_owned();

    // The agent key works for an agent route, and only once shown.
    let (s, _) = stack
        .call(
            Method::POST,
            "/api/agents/register",
            Some(&agent),
            Some(&heartbeat()),
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    let id = data["hospitalId"].as_str().unwrap();
    let (s, shown) = stack
        .call(
            Method::GET,
            &format!("/api/hospitals/{id}"),
            Some(&platform),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert!(!shown.to_string().contains(&agent));
    assert!(shown.to_string().contains("keyHash") == false);
    assert_eq!(shown["data"]["agents"][0]["version"], "1.0.0");

    for (field, value, names) in [
        ("name", json!(""), "name"),
        ("name", json!(42), "name"),
        ("contactEmail", json!("not-an-email"), "contactEmail"),
        ("contactPhone", json!("call me"), "contactPhone"),
        ("plan", json!("platinum"), "plan"),
        (
            "settings",
            json!({"allowedIPs": ["999.0.0.0/8"]}),
            "allowedIPs",
        ),
        ("settings", json!({"requireMFA": "yes"}), "requireMFA"),
        ("colour", json!("red"), "colour"),
    ] {
        let mut body = registration("Bad");
        body[field] = value;
        let (s, resp) = post(body).await;
        assert_eq!(s, 400, "{field}: {resp}");
        assert!(
            resp["message"].as_str().unwrap().contains(names),
            "{field}: {resp}"
        );
    }

    // Not JSON, and too large.
    let resp = stack
        .http()
        .post(stack.url("/api/hospitals/register"))
        .header("x-api-key", &platform)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let mut big = registration("Big");
    big["address"] = json!("x".repeat(70 * 1024));
    let (s, resp) = post(big).await;
    assert_eq!(s, 413, "{resp}");
}

#[tokio::test]
async fn keys_are_shown_once_stored_hashed_and_revocable() {
    let stack = TestStack::start().await;
    let a = tenant(&stack, "Alpha").await;

    let (s, body) = stack
        .call(
            Method::POST,
            &format!("/api/hospitals/{}/keys", a.id),
            Some(&a.admin),
            Some(&json!({"role": "reader", "label": "viewer"})),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{body}");
    let key = body["data"]["apiKey"].as_str().unwrap().to_owned();
    let key_id = body["data"]["keyId"].as_str().unwrap().to_owned();
    let secret = key.splitn(4, '_').last().unwrap().to_owned();

    // Listings carry no secret and no hash.
    let (_, listed) = stack
        .call(
            Method::GET,
            &format!("/api/hospitals/{}/keys", a.id),
            Some(&a.admin),
            None,
        )
        .await
        .unwrap();
    let text = listed.to_string();
    assert!(text.contains(&key_id));
    assert!(!text.contains(&secret) && !text.contains("keyHash") && !text.contains("apiKey"));

    // The table holds only the keyed hash.
    let items = stack
        .dynamodb()
        .await
        .query()
        .table_name(&stack.context().settings.tenants_table)
        .key_condition_expression("pk = :p")
        .expression_attribute_values(
            ":p",
            aws_sdk_dynamodb::types::AttributeValue::S(a.id.clone()),
        )
        .send()
        .await
        .unwrap();
    let dump = format!("{:?}", items.items());
    for k in [&key, &a.admin, &a.reader, &a.agent] {
        let secret = k.splitn(4, '_').last().unwrap();
        assert!(!dump.contains(secret), "a key secret is in the table");
    }

    // Bearer works like x-api-key; after revocation the key fails.
    let bearer = |k: String| {
        let stack = &stack;
        let id = a.id.clone();
        async move {
            stack
                .http()
                .get(stack.url(&format!("/api/hospitals/{id}/keys")))
                .header("authorization", format!("Bearer {k}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(bearer(a.admin.clone()).await, 200);
    let (s, _) = stack
        .call(
            Method::DELETE,
            &format!("/api/hospitals/{}/keys/{key_id}", a.id),
            Some(&a.admin),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    let (s, _) = stack
        .call(
            Method::POST,
            "/api/uploads",
            Some(&key),
            Some(&json!({"files": []})),
        )
        .await
        .unwrap();
    assert_eq!(s, 401);

    // A bad role is named.
    let (s, body) = stack
        .call(
            Method::POST,
            &format!("/api/hospitals/{}/keys", a.id),
            Some(&a.admin),
            Some(&json!({"role": "owner"})),
        )
        .await
        .unwrap();
    assert_eq!(s, 400);
    assert!(body["message"].as_str().unwrap().contains("role"));
}

#[tokio::test]
async fn the_plan_bounds_users_and_nothing_is_created_past_it() {
    let stack = TestStack::start().await;
    let a = tenant(&stack, "Alpha").await;
    let users = format!("/api/hospitals/{}/users", a.id);

    for i in 0..10 {
        let (s, body) = stack
            .call(
                Method::POST,
                &users,
                Some(&a.admin),
                Some(&user(&format!("u{i}"), &[])),
            )
            .await
            .unwrap();
        assert_eq!(s, 201, "{body}");
        assert!(body["data"]["apiKey"].as_str().unwrap().starts_with("phk_"));
    }
    let (s, body) = stack
        .call(
            Method::POST,
            &users,
            Some(&a.admin),
            Some(&user("eleventh", &[])),
        )
        .await
        .unwrap();
    assert_eq!(s, 403, "{body}");
    assert_eq!(body["code"], "UserLimitReached");

    let (_, listed) = stack
        .call(Method::GET, &users, Some(&a.admin), None)
        .await
        .unwrap();
    assert_eq!(listed["data"]["users"].as_array().unwrap().len(), 10);
    let (_, keys) = stack
        .call(
            Method::GET,
            &format!("/api/hospitals/{}/keys", a.id),
            Some(&a.admin),
            None,
        )
        .await
        .unwrap();
    // agent, admin, reader and ten users' keys: none for the eleventh.
    assert_eq!(keys["data"]["keys"].as_array().unwrap().len(), 13);
    let (_, usage) = stack
        .call(Method::GET, "/api/usage", Some(&a.admin), None)
        .await
        .unwrap();
    assert_eq!(usage["data"]["users"]["count"], 10);

    // Duplicate usernames conflict without counting.
    let (s, _) = stack
        .call(Method::POST, &users, Some(&a.admin), Some(&user("u1", &[])))
        .await
        .unwrap();
    assert!(s == 409 || s == 403, "{s}");
}

#[tokio::test]
async fn subscription_end_stops_writes_not_reads() {
    let stack = TestStack::start().await;
    let platform = stack.platform_key();
    let a = tenant(&stack, "Alpha").await;
    let (s, body) = stack
        .call(
            Method::PATCH,
            &format!("/api/hospitals/{}", a.id),
            Some(&platform),
            Some(&json!({"subscriptionEnd": "2020-01-01T00:00:00Z"})),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{body}");

    let (s, body) = stack
        .call(
            Method::POST,
            "/api/agents/register",
            Some(&a.agent),
            Some(&heartbeat()),
        )
        .await
        .unwrap();
    assert_eq!(
        (s, body["code"].as_str()),
        (403, Some("SubscriptionExpired"))
    );
    let (s, _) = stack
        .call(
            Method::GET,
            &format!("/api/hospitals/{}", a.id),
            Some(&a.admin),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200);

    // A hospital admin cannot extend its own subscription.
    let (s, body) = stack
        .call(
            Method::PATCH,
            &format!("/api/hospitals/{}", a.id),
            Some(&a.admin),
            Some(&json!({"plan": "enterprise"})),
        )
        .await
        .unwrap();
    assert_eq!(s, 403, "{body}");
}

/// Grants and `accessibleHospitals`, seen through the principal the
/// authorizer hands the routes.
#[tokio::test]
async fn accessible_hospitals_count_only_while_granted() {
    use pacs_shared::auth::Principal;

    let stack = TestStack::start().await;
    let a = tenant(&stack, "Alpha").await;
    let b = tenant(&stack, "Beta").await;

    // A user of B who would like to read A.
    let (s, body) = stack
        .call(
            Method::POST,
            &format!("/api/hospitals/{}/users", b.id),
            Some(&b.admin),
            Some(&user("radiologist", &[&a.id])),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{body}");
    let user_key = body["data"]["apiKey"].as_str().unwrap().to_owned();

    let readable = |key: String| {
        let ctx = stack.context();
        async move {
            let mut event =
                aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest::default();
            event.headers.insert("x-api-key", key.parse().unwrap());
            match authorizer::decide(&ctx, &event).await.unwrap() {
                authorizer::Decision::Allow(Principal::Hospital(p)) => p
                    .readable_hospitals
                    .iter()
                    .map(|h| h.to_string())
                    .collect::<Vec<_>>(),
                other => panic!("{other:?}"),
            }
        }
    };
    assert!(readable(user_key.clone()).await.is_empty(), "no grant yet");

    let grants = format!("/api/hospitals/{}/grants", a.id);
    let (s, body) = stack
        .call(
            Method::POST,
            &grants,
            Some(&a.admin),
            Some(&json!({"hospitalId": b.id})),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{body}");
    assert_eq!(readable(user_key.clone()).await, vec![a.id.clone()]);
    // B's other keys, not users with A listed, gain nothing.
    assert!(readable(b.reader.clone()).await.is_empty());

    let (s, _) = stack
        .call(
            Method::DELETE,
            &format!("{grants}/{}", b.id),
            Some(&a.admin),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert!(readable(user_key).await.is_empty(), "grant revoked");

    // Granting is the hospital's own decision, not another's.
    let (s, _) = stack
        .call(
            Method::POST,
            &grants,
            Some(&b.admin),
            Some(&json!({"hospitalId": b.id})),
        )
        .await
        .unwrap();
    assert_eq!(s, 404);
}
