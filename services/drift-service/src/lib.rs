//! Vigie's drift service: watches the prediction stream and tells, per model and feature,
//! whether the traffic still looks like the data the model was trained on.
//!
//! - [`service`]: the service's start, run and ordered shutdown.
//! - [`state`]: settings and shared state, and the service contract (`vigie_api::Service`):
//!   the references followed from the registry, the broker check, readiness.
//! - [`http`]: the routes, with `/config/noise` ([`noise`]) for testers; [`pages`]: the
//!   pages people open in a browser (the overview, a feature's page, the noise forms), with
//!   each model's drift over time ([`history`]).
//! - [`metrics`]: what `/metrics` exports beside the shell's metrics.
//! - [`consumer`]: one thread reading every partition of `vigie.predictions`; each event is
//!   decoded ([`decode`]) and counted into its model's windows ([`watch`]), codes the spec
//!   does not list counted by value ([`unseen`]); the state is saved
//!   with the offsets it stops at ([`checkpoint`]), and only then are those offsets committed.
//! - [`backtest`]: the same windows, scorings and alert run offline over a stream of events,
//!   on the events' clock.
//! - [`score`]: every period, each model's sliding window is compared with the production
//!   version's reference profile (vigie-drift); `ml_data_drift_score` and the per-feature
//!   scores go to `/metrics`, the details to `/v1/drift`.
//! - [`openapi`]: the OpenAPI document.

pub mod backtest;
pub mod checkpoint;
pub mod consumer;
pub mod decode;
pub mod history;
pub mod http;
pub mod metrics;
pub mod noise;
pub mod openapi;
pub mod pages;
pub mod partials;
pub mod quality;
pub mod score;
pub mod service;
pub mod state;
pub mod unseen;
pub mod watch;

pub use http::router;
pub use metrics::Metrics;
pub use service::DriftService;
pub use state::{AppState, Config, Inner};
pub use watch::{Reference, State, WindowConfig, auto_pane_ms};
