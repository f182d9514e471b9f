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

/// Calls a router without a socket, and holds every answer to the router's OpenAPI document:
/// a status the document does not list for the route fails the test (see
/// [`undocumented`]).
#[derive(Debug, Clone)]
pub struct Client {
    pub app: Router,
    /// The router's `/openapi.json`, read at the first call (`Null` when it has none).
    document: std::sync::Arc<tokio::sync::OnceCell<Value>>,
}

impl Client {
    pub fn new(app: Router) -> Self {
        Client {
            app,
            document: Default::default(),
        }
    }

    pub async fn call(&self, request: Request<Body>) -> Answer {
        let method = request.method().as_str().to_ascii_lowercase();
        let path = request.uri().path().to_string();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let document = self
            .document
            .get_or_init(|| async {
                let request = Request::get("/openapi.json").body(Body::empty()).unwrap();
                let response = self.app.clone().oneshot(request).await.unwrap();
                let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap();
                serde_json::from_slice(&body).unwrap_or(Value::Null)
            })
            .await;
        if let Some(problem) = undocumented(document, &method, &path, status) {
            panic!("{problem}");
        }
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

    /// Signs `name` in to the pages (password `NAME-password`): the `Cookie` header value
    /// its session sends.
    pub async fn sign_in(&self, name: &str) -> String {
        let answer = self
            .post(
                "/sign-in",
                None,
                "application/x-www-form-urlencoded",
                format!("username={name}&password={name}-password&next=/"),
            )
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text());
        let cookie = answer
            .headers
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .unwrap();
        cookie.split(';').next().unwrap().to_string()
    }

    /// `GET uri` as a browser with `cookie` (a `Cookie` header value) asks for a page.
    pub async fn page(&self, uri: &str, cookie: Option<&str>) -> Answer {
        let mut request = Request::get(uri).header(header::ACCEPT, "text/html");
        if let Some(c) = cookie {
            request = request.header(header::COOKIE, c);
        }
        self.call(request.body(Body::empty()).unwrap()).await
    }

    /// A page's form posted as a browser of the same origin sends it (`origin` replaces the
    /// service's own `Origin`).
    pub async fn form(&self, uri: &str, cookie: &str, body: &str, origin: Option<&str>) -> Answer {
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, cookie)
            .header(header::HOST, "vigie.test")
            .header(header::ORIGIN, origin.unwrap_or("http://vigie.test"))
            .body(Body::from(body.to_string()))
            .unwrap();
        self.call(request).await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.get("/metrics", None).await.text()
    }
}

/// Why `status` answered to `method path` breaks `document`, if it does: the route is in the
/// document with that method but does not list the status (nor `default`). Paths and methods
/// the document does not hold (the fallback's 404, a 405) are not judged here.
pub fn undocumented(
    document: &Value,
    method: &str,
    path: &str,
    status: StatusCode,
) -> Option<String> {
    let paths = document.get("paths")?.as_object()?;
    let matches = |template: &str| {
        let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
        t.len() == p.len()
            && t.iter()
                .zip(&p)
                .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}') && !p.is_empty()))
    };
    // A literal path wins over a template (`/v1/users/me` before `/v1/users/{name}`).
    let (template, item) = paths
        .iter()
        .filter(|(template, _)| matches(template))
        .min_by_key(|(template, _)| template.matches('{').count())?;
    let responses = item.get(method)?.get("responses")?.as_object()?;
    let code = status.as_str();
    (!responses.contains_key(code) && !responses.contains_key("default")).then(|| {
        format!(
            "{} {path} answered {status}, which the OpenAPI document does not list for {template} (it lists {})",
            method.to_uppercase(),
            responses.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })
}

/// The form token a page's forms carry (the first `form_token` field of `html`).
pub fn form_token(html: &str) -> String {
    let at = html
        .find("name=\"form_token\" value=\"")
        .unwrap_or_else(|| panic!("no form token in the page: {html}"));
    let rest = &html[at + "name=\"form_token\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_judged_against_the_route_it_answers() {
        let doc = serde_json::json!({"paths": {
            "/v1/models/{name}/promote": {"post": {"responses": {"200": {}, "404": {}}}},
            "/v1/users/me": {"get": {"responses": {"200": {}}}},
            "/v1/users/{name}": {"get": {"responses": {"200": {}, "404": {}}}},
            "/metrics": {"get": {"responses": {"default": {}}}}
        }});
        let judge =
            |m: &str, p: &str, s: u16| undocumented(&doc, m, p, StatusCode::from_u16(s).unwrap());
        assert_eq!(judge("post", "/v1/models/toy/promote", 404), None);
        let problem = judge("post", "/v1/models/toy/promote", 403).unwrap();
        assert!(
            problem.contains("403 Forbidden") && problem.contains("it lists 200, 404"),
            "{problem}"
        );
        assert!(
            judge("get", "/v1/users/me", 404).is_some(),
            "the literal path is the route"
        );
        assert_eq!(judge("get", "/v1/users/amy", 404), None);
        assert_eq!(judge("get", "/metrics", 500), None);
        assert_eq!(
            judge("delete", "/v1/users/amy", 405),
            None,
            "a method the route lacks"
        );
        assert_eq!(
            judge("get", "/nope", 404),
            None,
            "a path the document lacks"
        );
        assert_eq!(judge("get", "/v1/models//promote", 404), None);
        assert_eq!(
            undocumented(&Value::Null, "get", "/x", StatusCode::OK),
            None
        );
    }
}
