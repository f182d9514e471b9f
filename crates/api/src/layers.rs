//! Middleware every service stacks: request ids, timeouts, HTTP metrics, JSON errors.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::error::ApiError;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request's id (the caller's `x-request-id` when it is a sensible one, a new UUID v7
/// otherwise) and when the request arrived. Every response carries the id back.
#[derive(Debug, Clone)]
pub struct RequestId {
    pub id: String,
    pub arrived: Instant,
}

/// This process's tag (20 bits, drawn once): the ids it issues carry it, so that it can tell
/// an id it issued from another process's or a caller's.
fn process_tag() -> u32 {
    static TAG: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *TAG.get_or_init(|| rand::random::<u32>() & 0xF_FFFF)
}

/// A new request id: a UUID version 7 (milliseconds since the epoch first, so ids sort by
/// time) whose first 20 random bits are this process's tag; 54 bits stay random.
pub fn issue_request_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    request_id_of(ms, process_tag(), rand::random::<u64>()).to_string()
}

fn request_id_of(ms: u64, tag: u32, random: u64) -> uuid::Uuid {
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70 | ((tag >> 16) & 0x0F) as u8;
    b[7] = (tag >> 8) as u8;
    b[8] = 0x80 | ((tag >> 2) & 0x3F) as u8;
    b[9] = (((tag & 0x03) << 6) as u8) | ((random >> 48) & 0x3F) as u8;
    b[10..].copy_from_slice(&random.to_be_bytes()[2..]);
    uuid::Uuid::from_bytes(b)
}

/// When this process issued `id` (ms since the epoch), if it did: `None` for another
/// process's id or a caller's.
pub fn issued_here(id: &str) -> Option<i64> {
    let uuid = uuid::Uuid::parse_str(id).ok()?;
    let b = uuid.as_bytes();
    if uuid.get_version_num() != 7 || id.len() != 36 {
        return None;
    }
    let tag = (u32::from(b[6] & 0x0F) << 16)
        | (u32::from(b[7]) << 8)
        | (u32::from(b[8] & 0x3F) << 2)
        | u32::from(b[9] >> 6);
    if tag != process_tag() {
        return None;
    }
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(&b[..6]);
    Some(u64::from_be_bytes(ms) as i64)
}

fn acceptable_request_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Attaches a [`RequestId`] to the request and its id to the response, and logs every server
/// error (5xx) with its request.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let arrived = Instant::now();
    // Cheap to keep (no allocation for the usual methods; the URI shares its bytes).
    let method = request.method().clone();
    let uri = request.uri().clone();
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable_request_id(v))
        .map(str::to_string)
        .unwrap_or_else(issue_request_id);
    request.extensions_mut().insert(RequestId {
        id: id.clone(),
        arrived,
    });
    let mut response = next.run(request).await;
    let status = response.status();
    if status.is_server_error() {
        tracing::warn!(
            status = status.as_u16(),
            %method,
            path = uri.path(),
            request_id = id,
            "answered with a server error"
        );
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Answers 503 `timeout` when the handler takes longer than `limit`.
pub async fn timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(
            "timeout",
            format!("the request took more than {} ms", limit.as_millis()),
        )
        .into_response(),
    }
}

/// Largest error body kept when an error answered as text is turned into JSON.
const ERROR_TEXT_BYTES: usize = 16 * 1024;

/// Every error leaves as the JSON error body, with its reason: errors axum answers itself
/// (a method the route does not take, a body past its limit or of the wrong type) come as
/// text or empty, and are rewritten ([`request_id`] logs the server errors).
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_answer = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    // A page's error (a refused sign-in, a form's mistake) is a page: it stays one.
    if is_answer {
        response
    } else {
        let (mut parts, body) = response.into_parts();
        let text = axum::body::to_bytes(body, ERROR_TEXT_BYTES)
            .await
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .unwrap_or_default();
        let text = if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            text
        };
        let error = ApiError::from_rejection(status, text);
        let mut answer = error.into_response();
        parts.headers.remove(header::CONTENT_TYPE);
        parts.headers.remove(header::CONTENT_LENGTH);
        for (name, value) in parts.headers.iter() {
            answer.headers_mut().insert(name, value.clone());
        }
        answer
    }
}

/// HTTP request counts and latencies by route (the route's pattern, not the raw path),
/// method and status.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

/// Latency buckets, in seconds: 50 µs to 10 s.
const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

impl HttpMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered"),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from a request's arrival to its response's headers",
            )
            .buckets(BUCKETS.to_vec()),
            &["route", "method", "status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(HttpMetrics { requests, duration })
    }

    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        let labels = [route, method, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.duration
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

/// Records every request: the route is the matched pattern, or `unmatched`.
pub async fn track(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().clone();
    let response = next.run(request).await;
    metrics.observe(
        &route,
        method.as_str(),
        response.status().as_u16(),
        start.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_ids_are_uuid_v7_that_carry_their_time_and_this_processs_tag() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let id = issue_request_id();
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        let at = issued_here(&id).expect("issued here");
        assert!((before..before + 1_000).contains(&at), "{at} {before}");
        assert_ne!(issue_request_id(), id);
        // Another tag, a version 4, a caller's id: not issued here.
        let other = request_id_of(at as u64, process_tag() ^ 1, 7).to_string();
        assert_eq!(issued_here(&other), None);
        assert_eq!(issued_here(&uuid::Uuid::new_v4().to_string()), None);
        assert_eq!(issued_here("cad:2026-11-22.42"), None);
        // Every bit of the tag is kept.
        for tag in [0, 1, 0xF_FFFF, 0xA_5A5A] {
            let u = request_id_of(1, tag, u64::MAX);
            let b = u.as_bytes();
            let back = (u32::from(b[6] & 0x0F) << 16)
                | (u32::from(b[7]) << 8)
                | (u32::from(b[8] & 0x3F) << 2)
                | u32::from(b[9] >> 6);
            assert_eq!(back, tag);
            assert_eq!(u.get_version_num(), 7);
        }
    }

    #[test]
    fn request_ids_from_callers_are_checked() {
        assert!(acceptable_request_id(
            "0190c8a2-7b1e-7cc0-9d1a-3f2e1b0a9c8d"
        ));
        assert!(acceptable_request_id("cad:2026-11-22.42"));
        assert!(!acceptable_request_id(""));
        assert!(!acceptable_request_id("a b"));
        assert!(!acceptable_request_id("<script>"));
        assert!(!acceptable_request_id(&"x".repeat(129)));
    }
}

#[cfg(test)]
mod timeout_tests {
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::middleware::from_fn_with_state;
    use axum::routing::get;
    use tower::ServiceExt;

    // Paused time: tokio advances the clock when every task waits, so this is exact and
    // instantaneous, never a race against the machine's speed.
    #[tokio::test(start_paused = true)]
    async fn slow_handlers_answer_a_json_503() {
        let app = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    "late"
                }),
            )
            .route("/fast", get(|| async { "ok" }))
            .route_layer(from_fn_with_state(Duration::from_secs(1), super::timeout));
        let slow = app
            .clone()
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(slow.into_body(), 1024).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "timeout");
        let fast = app
            .oneshot(Request::get("/fast").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(fast.status(), StatusCode::OK);
    }
}
