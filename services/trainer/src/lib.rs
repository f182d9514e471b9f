//! The trainer (`vigie trainer`): closes the loop from drift to a better model.
//!
//! Alertmanager calls `/v1/alerts` (its webhook payload, version 4, with a bearer token) when
//! the drift alert fires. Each alert is recorded once per (fingerprint, startsAt), so
//! Alertmanager's repeats start nothing; a firing alert for a model starts a retraining unless
//! one is running (single flight, held by the database) or the model's cooldown holds. A run
//! is a state machine persisted in the registry: triggered -> training -> evaluated ->
//! promoted | rejected | failed.
//!
//! - [`alert`]: the webhook payload, read field by field (422 naming the field).
//! - [`labels`]: labelled traffic: `vigie.labels` joined to `vigie.predictions` by request id
//!   and row, values checked by the spec, holdout rows left out.
//! - [`pipeline`]: one run: data, fit, candidate registered, both models evaluated on the fixed
//!   holdout, paired bootstrap, promotion (artifact checked again first) and model event.
//!   [`pipeline::ask`] starts a run unless one runs or the cooldown holds.
//! - [`service`]: the trainer's start, run and shutdown.
//! - [`state`]: settings and shared state, model events, and the service contract
//!   (`vigie_api::Service`): production gauges, the broker check, readiness.
//! - [`http`]: the routes; [`pages`]: the pages people open in a browser (models, runs,
//!   and the admin's actions); [`metrics`]; [`openapi`].

pub mod alert;
pub mod http;
pub mod labels;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod pipeline;
pub mod service;
pub mod state;

pub use http::router;
pub use metrics::Metrics;
pub use service::TrainerService;
pub use state::{AppState, Config, Inner};
