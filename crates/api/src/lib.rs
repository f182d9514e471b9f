//! What Vigie's HTTP services (`predict`, `drift`, `trainer`) share.
//!
//! - [`service`]: the service contract as code: the shared state ([`Shared`]), the
//!   [`Service`] trait each service implements, the shell of routes and layers every service
//!   answers with, the registry follower, and `serve`.
//! - [`openapi`]: the shell's part of every service's OpenAPI document.
//! - [`server`]: the HTTP/1.1 server with header, idle and body timeouts and a connection cap.
//! - `testing` (feature `testing`): the services' router-test helpers.
//! - [`error`]: the JSON error every 4xx and 5xx carries: `{"error", "message", "field"}`.
//! - [`auth`]: accounts (argon2 password hashes in the registry database), `/auth/token`
//!   issuing JWTs with a role, the extractors that guard routes, and the account routes.
//! - [`console`]: the pages' shell: sign-in to a session cookie, sign-out, forms guarded
//!   against cross-site requests, the layout and style of every service's pages.
//! - [`layers`]: request ids, timeouts, and HTTP metrics per route and status.
//! - [`docs`]: the interactive API docs page, served from the binary (no CDN).
//! - [`shutdown`]: the signal that starts a graceful shutdown.

pub mod auth;
pub mod console;
pub mod docs;
pub mod error;
pub mod layers;
pub mod openapi;
pub mod server;
pub mod service;
pub mod shutdown;
#[cfg(feature = "testing")]
pub mod testing;

pub use auth::{AdminUser, Auth, CurrentUser, HasAuth};
pub use error::ApiError;
pub use layers::{HttpMetrics, RequestId, issue_request_id, issued_here};
pub use service::{Base, Dependencies, Readiness, Service, ServiceMetrics, Shared};

/// Encodes every metric of `registry` in Prometheus' text format.
pub fn encode_metrics(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    // Encoding plain counters and histograms into a Vec cannot fail.
    let _ = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// The `/metrics` answer of every service: `registry` in Prometheus' text format.
pub fn metrics_response(registry: &prometheus::Registry) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        encode_metrics(registry),
    )
        .into_response()
}
