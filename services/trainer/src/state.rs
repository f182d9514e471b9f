//! The trainer's state (its settings, metrics, the producer of model events) and how it keeps
//! the service contract: it follows the production versions (their gauges), checks the model
//! events topic, and is ready while the registry database answers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use vigie_api::{Readiness, Service, Shared};
use vigie_model::bootstrap::Evaluation as Figures;
use vigie_stream::{EventProducer, ModelAction, ModelEvent};

use crate::labels;
use crate::metrics::Metrics;

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Settings of the trainer.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the model specs are (a retraining uses the spec file of its model).
    pub models_dir: PathBuf,
    /// The bearer token Alertmanager sends (alertmanager.yml's http_config).
    pub webhook_token: String,
    /// After a run of a model starts, alerts start no other run of it for this long (manual
    /// runs are not held back).
    pub cooldown: Duration,
    /// Alert names that start a retraining; other alerts are recorded and ignored.
    pub retrain_alerts: Vec<String>,
    pub predictions_topic: String,
    pub labels_topic: String,
    pub models_topic: String,
    /// Labelled traffic: the longest time reading a topic may take.
    pub read_limit: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            models_dir: PathBuf::from("models"),
            webhook_token: String::new(),
            cooldown: Duration::from_secs(3600),
            retrain_alerts: [
                "VigieDataDrift",
                "VigieQualityEstimatedDrop",
                "VigieQualityRealisedDrop",
            ]
            .map(String::from)
            .to_vec(),
            predictions_topic: vigie_stream::PREDICTIONS_TOPIC.into(),
            labels_topic: vigie_stream::LABELS_TOPIC.into(),
            models_topic: vigie_stream::MODELS_TOPIC.into(),
            read_limit: Duration::from_secs(120),
        }
    }
}

/// The service's own state; [`AppState`] adds the accounts, the registry and the shell's
/// metrics.
#[derive(Debug)]
pub struct Inner {
    pub config: Config,
    pub metrics: Metrics,
    pub producer: Arc<EventProducer>,
    /// Where labelled traffic is read.
    pub brokers: String,
}

/// The service's shared state: cheap to clone.
pub type AppState = Shared<Inner>;

impl Inner {
    /// The trainer's state; its alerts' and topic's series exist at 0 from now on.
    pub fn new(
        config: Config,
        metrics: Metrics,
        producer: Arc<EventProducer>,
        brokers: &str,
    ) -> Self {
        metrics.producer.expect_topics(&[&config.models_topic]);
        metrics.expect_alerts(&config.retrain_alerts);
        Inner {
            config,
            metrics,
            producer,
            brokers: brokers.to_string(),
        }
    }

    /// Where labelled traffic is read.
    pub fn labels_source(&self) -> labels::Source {
        labels::Source {
            brokers: self.brokers.clone(),
            predictions_topic: self.config.predictions_topic.clone(),
            labels_topic: self.config.labels_topic.clone(),
            limit: self.config.read_limit,
        }
    }

    /// Publishes a model event so that every prediction replica and drift service reloads at
    /// once (they also poll the registry, so a lost event only delays the switch).
    pub fn announce(&self, model: &str, version: u32, action: ModelAction, by: &str) {
        let event = ModelEvent {
            model: model.to_string(),
            version,
            action,
            ts: Utc::now(),
            by: by.to_string(),
        };
        let action_name = match action {
            ModelAction::Promoted => "promoted",
            ModelAction::RolledBack => "rolled_back",
        };
        let by_kind = if by == "trainer" { "trainer" } else { "admin" };
        self.metrics
            .promotions
            .with_label_values(&[model, action_name, by_kind])
            .inc();
        match serde_json::to_vec(&event) {
            Ok(json) => {
                let version = version.to_string();
                let headers = [("model", model), ("model_version", version.as_str())];
                if let Err(e) =
                    self.producer
                        .publish(&self.config.models_topic, model, &json, &headers)
                {
                    tracing::error!(error = %e, %model, "model event not queued; replicas switch on their next poll");
                }
            }
            Err(e) => tracing::error!(error = %e, "model event"),
        }
    }
}

/// Refreshes the production gauges from the registry now (after a promotion), logging a
/// failure: the next poll tries again.
pub async fn refresh_models(state: &AppState) {
    if let Err(e) = Inner::sync(state).await {
        tracing::warn!(error = %e, "cannot read the production versions");
    }
}

impl Service for Inner {
    /// Sets the production gauges: each model's production version and its holdout figures.
    async fn sync(state: &AppState) -> Result<(), vigie_registry::Error> {
        for v in state.registry().production().await? {
            state.metrics.expect_model(&v.name);
            state
                .metrics
                .production_version
                .with_label_values(&[&v.name])
                .set(i64::from(v.version));
            let figures: Vec<(&str, f64)> = match &v.metrics.holdout {
                Figures::Binary(h) => vec![
                    ("roc_auc", h.roc_auc),
                    ("pr_auc", h.pr_auc),
                    ("f1", h.f1),
                    ("precision", h.precision),
                    ("recall", h.recall),
                    ("brier", h.brier),
                    ("log_loss", h.log_loss),
                ],
                Figures::Regression(h) => {
                    let mut f = vec![
                        ("mae", h.mae),
                        ("rmse", h.rmse),
                        ("r2", h.r2),
                        ("median_absolute_error", h.median_absolute_error),
                        ("share_underestimated", h.share_underestimated),
                    ];
                    f.extend(h.interval_coverage.map(|c| ("interval_coverage", c)));
                    f
                }
            };
            for (metric, value) in figures {
                state
                    .metrics
                    .holdout_quality
                    .with_label_values(&[&v.name, metric])
                    .set(value);
            }
        }
        Ok(())
    }

    /// The model events topic: promotions reach the other services through it.
    async fn check_broker(state: &AppState) -> Result<(), String> {
        state
            .producer
            .clone()
            .check_topic(&state.config.models_topic)
            .await
    }

    /// Ready while the registry database answers: runs are recorded there.
    async fn readiness(state: &AppState) -> Readiness {
        let database = state.registry().ping().await;
        let production: Vec<Value> = state
            .registry()
            .production()
            .await
            .unwrap_or_default()
            .iter()
            .map(|v| json!({"model": v.name, "version": v.version}))
            .collect();
        Readiness::new(
            database
                .err()
                .map(|e| format!("the registry database does not answer: {e}")),
            json!({
                "production": production,
                "retrain_alerts": state.config.retrain_alerts,
                "cooldown_seconds": state.config.cooldown.as_secs(),
            }),
        )
    }

    fn openapi(_state: &AppState) -> Value {
        crate::openapi::build()
    }

    fn before_scrape(state: &AppState) {
        state.producer.update_gauges();
    }
}
