//! The shell every service answers with, on a minimal service: tokens and their refusals,
//! roles, the account routes, the operations routes and the JSON 404. The services' own tests
//! cover their routes; what is here holds for all three.

#![allow(clippy::unwrap_used)] // Test code: a failed setup should panic loudly.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use vigie_api::openapi::{Document, token_required};
use vigie_api::testing::{self, Client};
use vigie_api::{CurrentUser, Readiness, Service, Shared};
use vigie_registry::Registry;

/// A service with one route that needs a token (`POST /v1/echo`), ready once `ready` is set.
#[derive(Debug, Default)]
struct Echo {
    ready: std::sync::atomic::AtomicBool,
}

const ECHO: &str = "/v1/echo";

impl Service for Echo {
    async fn sync(_state: &Shared<Self>) -> Result<(), vigie_registry::Error> {
        Ok(())
    }

    async fn check_broker(_state: &Shared<Self>) -> Result<(), String> {
        Err("no broker here".into())
    }

    async fn readiness(state: &Shared<Self>) -> Readiness {
        let ready = state.ready.load(std::sync::atomic::Ordering::Relaxed);
        Readiness::new(
            (!ready).then(|| "not told to be ready".to_string()),
            json!({"echo": true}),
        )
    }

    fn openapi(_state: &Shared<Self>) -> Value {
        let mut paths = serde_json::Map::new();
        paths.insert(
            ECHO.into(),
            json!({"post": {"summary": "Echo", "security": token_required(), "responses": {"200": {"description": "ok"}}}}),
        );
        Document {
            title: "Echo".into(),
            ready: "Told to be ready".into(),
            paths,
            ..Document::default()
        }
        .build()
    }
}

async fn echo(CurrentUser(user): CurrentUser) -> Json<Value> {
    Json(json!({"user": user.name}))
}

struct Harness {
    _dir: tempfile::TempDir,
    registry: Registry,
    state: Shared<Echo>,
    client: Client,
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = testing::registry(dir.path()).await;
        let state = Shared::new(testing::base(&registry).await, Echo::default());
        let own = Router::new().route(ECHO, post(echo));
        Harness {
            _dir: dir,
            registry,
            client: Client::new(vigie_api::service::router(state.clone(), own)),
            state,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_roles_and_accounts() {
    let h = Harness::new().await;
    let body = json!({"anything": 1});

    // No token, a malformed header, a forged token.
    let a = h
        .client
        .post(ECHO, None, "application/json", body.to_string())
        .await;
    a.error(StatusCode::UNAUTHORIZED, "missing_token");
    assert_eq!(a.headers[header::WWW_AUTHENTICATE], "Bearer");
    let a = h
        .client
        .call(
            Request::post(ECHO)
                .header(header::AUTHORIZATION, "Basic abc")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    a.error(StatusCode::UNAUTHORIZED, "invalid_token");
    h.client
        .post_json(ECHO, "not.a.jwt", &body)
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_token");
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "root", "role": "admin", "iat": 2_000_000_000i64, "exp": 4_000_000_000i64, "iss": "vigie"}),
        &jsonwebtoken::EncodingKey::from_secret(b"another secret, also long enough......"),
    )
    .unwrap();
    h.client
        .post_json(ECHO, &forged, &body)
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_token");

    // Wrong passwords and unknown users look the same; bad forms say what is wrong.
    h.client
        .token("amy", "wrong-password")
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    h.client
        .token("nobody", "whatever-pass")
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let a = h
        .client
        .post(
            "/auth/token",
            None,
            "application/x-www-form-urlencoded",
            "username=amy",
        )
        .await;
    assert_eq!(
        a.error(StatusCode::UNPROCESSABLE_ENTITY, "missing_field")["field"],
        "password"
    );
    let a = h
        .client
        .post(
            "/auth/token",
            None,
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials&username=amy&password=x",
        )
        .await;
    a.error(StatusCode::BAD_REQUEST, "unsupported_grant_type");

    // A user calls the service but cannot manage accounts.
    let amy = h.client.login("amy").await;
    let t = h.client.token("amy", "amy-password").await.json();
    assert_eq!(
        (
            t["token_type"].as_str(),
            t["role"].as_str(),
            t["expires_in"].as_u64()
        ),
        (Some("bearer"), Some("user"), Some(600))
    );
    assert_eq!(
        h.client.post_json(ECHO, &amy, &body).await.status,
        StatusCode::OK
    );
    h.client
        .get("/v1/users", Some(&amy))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");

    // An admin creates, lists and deletes accounts.
    let root = h.client.login("root").await;
    let new = |name: &str, password: &str, role: &str| json!({"name": name, "password": password, "role": role});
    let a = h
        .client
        .post_json("/v1/users", &root, &new("bob", "bob-password", "user"))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    assert_eq!(a.json()["created_by"], "root");
    assert_eq!(
        h.client
            .post_json("/v1/users", &root, &new("ops", "ops-password", "admin"))
            .await
            .status,
        StatusCode::CREATED
    );
    h.client
        .post_json("/v1/users", &root, &new("bob", "bob-password", "user"))
        .await
        .error(StatusCode::CONFLICT, "user_exists");
    let a = h
        .client
        .post_json("/v1/users", &root, &new("carl", "short", "user"))
        .await;
    assert_eq!(
        a.error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value")["field"],
        "password"
    );
    let a = h
        .client
        .post_json(
            "/v1/users",
            &root,
            &new("carl smith", "long-enough", "user"),
        )
        .await;
    assert_eq!(
        a.error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value")["field"],
        "name"
    );
    h.client
        .post_json("/v1/users", &root, &new("carl", "long-enough", "king"))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    h.client
        .post_json("/v1/users", &amy, &new("eve", "long-enough", "admin"))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    let names: Vec<String> = h
        .client
        .get("/v1/users", Some(&root))
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["amy", "bob", "ops", "root"]);
    let bob = h.client.login("bob").await;
    assert_eq!(
        h.client.post_json(ECHO, &bob, &body).await.status,
        StatusCode::OK
    );

    let delete = |name: &str, token: &str| {
        Request::delete(format!("/v1/users/{name}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        h.client.call(delete("bob", &root)).await.status,
        StatusCode::NO_CONTENT
    );
    // A deleted account's token stops working at once on the instance that deleted it.
    h.client
        .post_json(ECHO, &bob, &body)
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_token");
    h.client
        .call(delete("bob", &root))
        .await
        .error(StatusCode::NOT_FOUND, "unknown_user");
    assert_eq!(
        h.client.call(delete("ops", &root)).await.status,
        StatusCode::NO_CONTENT
    );
    // An admin cannot delete their own account, so the last admin cannot go either (the
    // registry refuses that too, whoever asks: its own tests).
    h.client
        .call(delete("root", &root))
        .await
        .error(StatusCode::CONFLICT, "own_account");

    // An account deleted behind this instance's back (another replica, the CLI) is noticed
    // on the next poll.
    h.registry.delete_user("amy").await.unwrap();
    assert_eq!(
        h.client.post_json(ECHO, &amy, &body).await.status,
        StatusCode::OK
    );
    h.state.poll().await;
    h.client
        .post_json(ECHO, &amy, &body)
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_routes_answer_for_every_service() {
    let h = Harness::new().await;
    assert_eq!(
        h.client.get("/health", None).await.json(),
        json!({"status": "ok"})
    );

    // Not ready until the service says so; the dependencies of the last poll are beside.
    let ready = h.client.get("/ready", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = ready.json();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["reason"], "not told to be ready");
    assert_eq!(body["echo"], true);
    assert_eq!(body["dependencies"]["database"], "not checked yet");
    h.state.poll().await;
    h.state
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let ready = h.client.get("/ready", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    let body = ready.json();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["reason"], Value::Null);
    assert_eq!(body["dependencies"]["database"], "ok");
    assert_eq!(body["dependencies"]["broker"], "no broker here");

    // The document has the service's paths and the shell's.
    let doc = h.client.get("/openapi.json", None).await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        ECHO,
        "/auth/token",
        "/v1/users",
        "/v1/users/{name}",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} undocumented");
    }
    assert_eq!(
        doc["paths"]["/ready"]["get"]["responses"]["200"]["description"],
        "Told to be ready"
    );

    h.client
        .get("/nowhere", None)
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    let answer = h.client.get("/health", None).await;
    assert!(answer.headers.contains_key("x-request-id"));
    let metrics = h.client.metrics().await;
    for line in [
        "http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 2",
        "vigie_database_up 1",
        "vigie_broker_up 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    assert!(
        h.client
            .get("/docs/", None)
            .await
            .text()
            .contains("swagger")
    );
}

/// A login form from `address`, as the server records the client.
fn login_from(name: &str, password: &str, address: [u8; 4]) -> Request<Body> {
    let mut request = Request::post("/auth/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("username={name}&password={password}")))
        .unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            address, 40_000,
        ))));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_slow_down_the_account_and_the_address() {
    let h = Harness::new().await;
    let office = [10, 0, 0, 1];
    // Five failures are free; the sixth blocks the account for a second.
    for _ in 0..6 {
        h.client
            .call(login_from("amy", "wrong-password", office))
            .await
            .error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    let blocked = h
        .client
        .call(login_from("amy", "amy-password", office))
        .await;
    blocked.error(StatusCode::TOO_MANY_REQUESTS, "too_many_logins");
    assert_eq!(blocked.headers[header::RETRY_AFTER], "1");
    // In any case, from anywhere: the account is what is blocked.
    h.client
        .call(login_from("AMY", "amy-password", [10, 0, 0, 2]))
        .await
        .error(StatusCode::TOO_MANY_REQUESTS, "too_many_logins");
    // Another account is not.
    assert_eq!(
        h.client
            .call(login_from("root", "root-password", office))
            .await
            .status,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        h.client
            .call(login_from("amy", "amy-password", office))
            .await
            .status,
        StatusCode::OK
    );

    // One address guessing over many names: twenty failures are free, then it is blocked,
    // for every account; another address is not.
    let guesser = [192, 0, 2, 7];
    for i in 0..21 {
        h.client
            .call(login_from(
                &format!("guess{i}"),
                "a-wrong-password",
                guesser,
            ))
            .await
            .error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    h.client
        .call(login_from("root", "root-password", guesser))
        .await
        .error(StatusCode::TOO_MANY_REQUESTS, "too_many_logins");
    assert_eq!(
        h.client
            .call(login_from("root", "root-password", office))
            .await
            .status,
        StatusCode::OK
    );
    let metrics = h.client.metrics().await;
    for line in [
        "vigie_logins_total{outcome=\"throttled\"} 3",
        "vigie_logins_total{outcome=\"refused\"} 27",
        "vigie_logins_total{outcome=\"ok\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_one_account_in_any_case_and_weak_passwords_are_refused() {
    let h = Harness::new().await;
    // A login in another case is the account as it was created.
    let answer = h.client.token("AMY", "amy-password").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let token = answer.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        h.client
            .send("POST", ECHO, Some(&token), Some("{}"))
            .await
            .json()["user"],
        "amy"
    );
    let root = h.client.login("root").await;
    let new =
        |name: &str, password: &str| json!({"name": name, "password": password, "role": "user"});
    h.client
        .post_json("/v1/users", &root, &new("Amy", "another-long-one"))
        .await
        .error(StatusCode::CONFLICT, "user_exists");
    for (name, password, why) in [
        ("carl", "password123", "most common"),
        ("carl", "PassWord123", "most common"),
        ("dispatch-7", "Dispatch-7", "name"),
        ("carl", "          ", "white space"),
        ("carl", "short", "at least 8"),
    ] {
        let a = h
            .client
            .post_json("/v1/users", &root, &new(name, password))
            .await;
        let body = a.error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value");
        assert_eq!(body["field"], "password", "{body}");
        assert!(body["message"].as_str().unwrap().contains(why), "{body}");
    }
    assert_eq!(
        h.client
            .post_json("/v1/users", &root, &new("carl", "a long passphrase"))
            .await
            .status,
        StatusCode::CREATED
    );
    // A user deleted by another case of its name.
    assert_eq!(
        h.client
            .send("DELETE", "/v1/users/CARL", Some(&root), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}
