//! The prediction service (`vigie predict`).
//!
//! Dispatchers send the first facts of an accident and get the probability that someone is
//! hospitalised or killed, in well under a millisecond of service time. Every prediction, each
//! batch row too, is queued for `vigie.predictions` without waiting for the broker. The
//! service serves the production version of every model in the registry and follows it: a
//! promotion is picked up at once (a model event on `vigie.models` wakes the follower) or on
//! the next poll, and swapped in atomically, each request keeping the version it started with.
//!
//! - [`service`]: the service's start, run and shutdown (drain, then flush the events).
//! - [`state`]: settings and shared state, and the service contract (`vigie_api::Service`).
//! - [`http`]: the routes.
//! - [`metrics`]: what `/metrics` exports beside the shell's metrics.
//! - [`models`]: the served models and the registry follower.
//! - [`predict`]: single and JSON batch predictions, and request checking against the spec.
//! - [`csv`]: CSV uploads answered as CSV, streamed both ways.
//! - [`feedback`]: ground truth for served predictions, checked against the [`ledger`] of
//!   requests answered lately, published to `vigie.labels`.
//! - [`openapi`]: the OpenAPI document, with each model's features described from its spec.

pub mod csv;
pub mod feedback;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod predict;
pub mod service;
pub mod state;

pub use http::router;
pub use metrics::Metrics;
pub use service::PredictService;
pub use state::{AppState, Config, Inner};
