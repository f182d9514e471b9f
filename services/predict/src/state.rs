//! The prediction service's state (its settings, the served models, the producer, its metrics)
//! and how it keeps the service contract: it follows the production models, checks the
//! predictions topic, and is ready once a model is loaded.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use vigie_api::{Base, Readiness, Service, Shared};
use vigie_stream::EventProducer;

use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::models::ModelSet;

/// Limits and settings of the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest JSON body, in bytes (413 beyond): room for `max_batch_rows` rows.
    pub max_body_bytes: usize,
    /// Most rows in a JSON batch (413 beyond).
    pub max_batch_rows: usize,
    /// Most data rows in a CSV upload; the answer ends with an error line beyond.
    pub max_csv_rows: usize,
    /// Longest CSV line, in bytes.
    pub max_csv_line_bytes: usize,
    /// Longest time a JSON request may take (503 `timeout` beyond). CSV uploads stream and
    /// are not bounded by it.
    pub request_timeout: Duration,
    /// Serve only these model names (all production models when empty).
    pub models: Vec<String>,
    /// The topic predictions go to.
    pub topic: String,
    /// The topic feedback (ground truth) goes to.
    pub labels_topic: String,
    /// Most events held in memory while the broker is away.
    pub queue_max_events: u32,
    /// How long the producer waits to fill a batch of events.
    pub linger: Duration,
    /// How long shutdown waits for queued events to reach the broker.
    pub flush_timeout: Duration,
    /// Requests remembered for checking feedback (see `crate::ledger`).
    pub feedback_ledger: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_body_bytes: 8 * 1024 * 1024,
            max_batch_rows: 10_000,
            max_csv_rows: 1_000_000,
            max_csv_line_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            models: Vec::new(),
            topic: vigie_stream::PREDICTIONS_TOPIC.to_string(),
            labels_topic: vigie_stream::LABELS_TOPIC.to_string(),
            queue_max_events: 2_000_000,
            linger: Duration::from_millis(5),
            flush_timeout: Duration::from_secs(30),
            feedback_ledger: 500_000,
        }
    }
}

/// The service's own state; [`AppState`] adds the accounts, the registry and the shell's
/// metrics.
#[derive(Debug)]
pub struct Inner {
    pub config: Config,
    pub models: ModelSet,
    pub producer: Arc<EventProducer>,
    pub metrics: Metrics,
    /// The requests answered lately: what feedback is checked against.
    pub ledger: Ledger,
}

/// The service's shared state: cheap to clone.
pub type AppState = Shared<Inner>;

impl Inner {
    /// The state, with the production models loaded (a service with none starts, and is not
    /// ready until one is registered).
    pub async fn start(
        base: Base,
        config: Config,
        producer: Arc<EventProducer>,
        metrics: Metrics,
    ) -> AppState {
        // The topics' series exist at 0 from the start.
        metrics
            .producer
            .expect_topics(&[&config.topic, &config.labels_topic]);
        let config_ledger = config.feedback_ledger;
        let state = Shared::new(
            base,
            Inner {
                config,
                models: ModelSet::default(),
                producer,
                metrics,
                ledger: Ledger::new(config_ledger),
            },
        );
        if let Err(e) = Inner::sync(&state).await {
            tracing::warn!(error = %e, "cannot read the registry yet; retrying on every poll");
        }
        state
    }
}

#[derive(Debug, Serialize)]
struct ServedView {
    name: String,
    version: u32,
    serving_since: chrono::DateTime<chrono::Utc>,
}

impl Service for Inner {
    /// Loads the production version of each served model when it changed.
    async fn sync(state: &AppState) -> Result<(), vigie_registry::Error> {
        state
            .models
            .sync(state.registry(), &state.config.models, &state.metrics)
            .await
    }

    async fn check_broker(state: &AppState) -> Result<(), String> {
        state
            .producer
            .clone()
            .check_topic(&state.config.topic)
            .await
    }

    /// Ready when at least one model is loaded: predictions work even while the broker or the
    /// database is away (events queue, accounts are cached), so only the models decide; the
    /// dependencies are reported beside.
    async fn readiness(state: &AppState) -> Readiness {
        let models: Vec<ServedView> = state
            .models
            .all()
            .iter()
            .map(|s| ServedView {
                name: s.version.name.clone(),
                version: s.version.version,
                serving_since: s.since,
            })
            .collect();
        let reason = models
            .is_empty()
            .then(|| "no production model is loaded; train or promote one".to_string());
        Readiness::new(
            reason,
            json!({"models": models, "events_queued": state.producer.in_flight()}),
        )
    }

    fn openapi(state: &AppState) -> Value {
        crate::openapi::build(&state.models.all())
    }

    fn before_scrape(state: &AppState) {
        state.producer.update_gauges();
    }
}
