//! Vigie's drift service: watches the prediction stream and tells, per model and feature,
//! whether the traffic still looks like the data the model was trained on.
//!
//! - [`consumer`]: a Kafka consumer group on `vigie.predictions`; each event is decoded
//!   ([`decode`]) and counted into its model's windows ([`watch`]); the state is saved with
//!   the offsets it stops at ([`checkpoint`]), and only then are those offsets committed.
//! - [`score`]: every period, each model's sliding window is compared with the production
//!   version's reference profile (vigie-drift); `ml_data_drift_score` and the per-feature
//!   scores go to `/metrics` ([`metrics`]), the details to `/v1/drift`.
//! - [`http`]: the HTTP surface, with `/config/noise` ([`noise`]) for testers.
//! - [`service`]: the whole service: registry following, scoring schedule, consumer thread,
//!   HTTP server, shutdown.

pub mod checkpoint;
pub mod consumer;
pub mod decode;
pub mod http;
pub mod metrics;
pub mod noise;
pub mod openapi;
pub mod score;
pub mod service;
pub mod watch;

pub use metrics::Metrics;
pub use service::{AppState, Config, DriftService};
pub use watch::{Reference, State, WindowConfig};
