//! Helpers for the router tests of the services (feature `testing`): a registry with two
//! accounts, the shell's [`Base`] on it, and a [`Client`] that calls a router without a socket
//! (tower's `oneshot`) and reads its answers.

#![allow(clippy::unwrap_used)] // Test helpers: a failed setup should panic loudly.

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;
use vigie_registry::{Registry, Role, User};

use crate::auth::{Auth, hash_password};
use crate::service::{Base, ServiceMetrics};

/// The secret the test tokens are signed with.
pub const SECRET: &[u8] = b"a test secret that is long enough for HS256";

/// How long the test tokens live, in seconds.
pub const TOKEN_TTL_SECS: u64 = 600;

/// A SQLite registry in `dir` with the admin `root` and the user `amy`, created ten seconds
/// ago (their tokens are newer); each one's password is `NAME-password`.
pub async fn registry(dir: &Path) -> Registry {
    let registry = Registry::open(
        &format!("sqlite://{}", dir.join("registry.db").display()),
        &dir.join("artifacts"),
    )
    .await
    .unwrap();
    for (name, role) in [("root", Role::Admin), ("amy", Role::User)] {
        registry
            .add_user(&User {
                name: name.into(),
                role,
                password_hash: hash_password(&format!("{name}-password")).unwrap(),
                created_at: chrono::Utc::now().timestamp() - 10,
                created_by: "test".into(),
            })
            .await
            .unwrap();
    }
    registry
}

/// The shell's part of a service's state on `registry`: tokens signed with [`SECRET`] living
/// [`TOKEN_TTL_SECS`], a fresh metrics registry.
pub async fn base(registry: &Registry) -> Base {
    let auth = Auth::new(
        SECRET,
        Duration::from_secs(TOKEN_TTL_SECS),
        registry.clone(),
    )
    .await
    .unwrap();
    Base::new(
        auth,
        registry.clone(),
        ServiceMetrics::new().unwrap(),
        Duration::from_secs(2),
    )
}

/// An answer: status, headers and the whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    /// Asserts an error answer (its status, its code, a message) and returns its body.
    pub fn error(&self, status: StatusCode, code: &str) -> Value {
        let body = self.json();
        assert_eq!(self.status, status, "{body}");
        assert_eq!(body["error"], code, "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        body
    }
}

/// Calls a router without a socket.
#[derive(Debug, Clone)]
pub struct Client {
    pub app: Router,
}

impl Client {
    pub fn new(app: Router) -> Self {
        Client { app }
    }

    pub async fn call(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// A request with `method`, an optional bearer token and an optional JSON body.
    pub async fn send(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        json: Option<&str>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match json {
            Some(b) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        self.call(request.body(body).unwrap()).await
    }

    pub async fn get(&self, uri: &str, token: Option<&str>) -> Answer {
        self.send("GET", uri, token, None).await
    }

    pub async fn post(
        &self,
        uri: &str,
        token: Option<&str>,
        content_type: &str,
        body: impl Into<Body>,
    ) -> Answer {
        let mut request = Request::post(uri).header(header::CONTENT_TYPE, content_type);
        if let Some(t) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.call(request.body(body.into()).unwrap()).await
    }

    pub async fn post_json(&self, uri: &str, token: &str, body: &Value) -> Answer {
        self.send("POST", uri, Some(token), Some(&body.to_string()))
            .await
    }

    /// `/auth/token` with a name and a password.
    pub async fn token(&self, name: &str, password: &str) -> Answer {
        self.post(
            "/auth/token",
            None,
            "application/x-www-form-urlencoded",
            format!("grant_type=password&username={name}&password={password}"),
        )
        .await
    }

    /// A token of one of [`registry`]'s accounts (or of one made with the same password rule).
    pub async fn login(&self, name: &str) -> String {
        let answer = self.token(name, &format!("{name}-password")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        answer.json()["access_token"].as_str().unwrap().to_string()
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.get("/metrics", None).await.text()
    }
}
