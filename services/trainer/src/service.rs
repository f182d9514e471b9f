//! The trainer's configuration, shared state, run starter and registry poll, and the service
//! that serves them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::Serialize;
use vigie_api::{Auth, HasAuth};
use vigie_registry::{Registry, Run, Started};
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
    /// How often the registry is read (production versions, accounts).
    pub poll_interval: Duration,
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
            retrain_alerts: vec!["VigieDataDrift".into()],
            poll_interval: Duration::from_secs(5),
            predictions_topic: vigie_stream::PREDICTIONS_TOPIC.into(),
            labels_topic: vigie_stream::LABELS_TOPIC.into(),
            models_topic: vigie_stream::MODELS_TOPIC.into(),
            read_limit: Duration::from_secs(120),
        }
    }
}

/// What the last dependency check found.
#[derive(Debug, Clone, Serialize)]
pub struct Dependencies {
    pub database: String,
    pub checked_at: Option<DateTime<Utc>>,
}

/// The service's shared state: cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub config: Config,
    pub registry: Registry,
    pub auth: Auth,
    pub metrics: Metrics,
    pub producer: Arc<EventProducer>,
    pub brokers: String,
    pub dependencies: ArcSwap<Dependencies>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl HasAuth for AppState {
    fn auth(&self) -> &Auth {
        &self.0.auth
    }
}

/// What asking for a run gave.
#[derive(Debug, Clone)]
pub enum Asked {
    Started(Run),
    /// A run of the model is not finished.
    Busy(Run),
    /// The model's last run started less than the cooldown ago.
    Cooldown {
        last: Run,
        until: DateTime<Utc>,
    },
    UnknownModel,
}

impl AppState {
    pub fn new(
        config: Config,
        registry: Registry,
        auth: Auth,
        metrics: Metrics,
        producer: Arc<EventProducer>,
        brokers: &str,
    ) -> Self {
        AppState(Arc::new(Inner {
            config,
            registry,
            auth,
            metrics,
            producer,
            brokers: brokers.to_string(),
            dependencies: ArcSwap::from_pointee(Dependencies {
                database: "not checked yet".into(),
                checked_at: None,
            }),
        }))
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

    /// Starts a run of `model` unless one is running (or, with `cooldown`, one started less
    /// than the cooldown ago). The run goes on in the background.
    pub async fn ask(
        &self,
        model: &str,
        trigger: &str,
        by: &str,
        cooldown: bool,
    ) -> Result<Asked, vigie_registry::Error> {
        let Some(production) = self.registry.production_of(model).await? else {
            return Ok(Asked::UnknownModel);
        };
        if let Some(active) = self.registry.active_run(model).await? {
            return Ok(Asked::Busy(active));
        }
        if cooldown && let Some(last) = self.registry.runs(Some(model), 1).await?.into_iter().next()
        {
            let until = last.created_at
                + i64::try_from(self.config.cooldown.as_millis()).unwrap_or(i64::MAX / 2);
            if now_ms() < until {
                let until = DateTime::from_timestamp_millis(until).unwrap_or_default();
                return Ok(Asked::Cooldown { last, until });
            }
        }
        let id = uuid::Uuid::now_v7().to_string();
        match self
            .registry
            .start_run(&id, model, trigger, by, Some(production.version), now_ms())
            .await?
        {
            Started::Busy(run) => Ok(Asked::Busy(run)),
            Started::Started(run) => {
                self.metrics
                    .runs_started
                    .with_label_values(&[model, trigger])
                    .inc();
                tracing::info!(run = %run.id, %model, %trigger, %by, "retraining started");
                tokio::spawn(crate::pipeline::execute(self.clone(), run.clone()));
                Ok(Asked::Started(run))
            }
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

    /// Refreshes the production gauges from the registry.
    pub async fn refresh_models(&self) {
        match self.registry.production().await {
            Ok(production) => {
                for v in production {
                    self.metrics
                        .production_version
                        .with_label_values(&[&v.name])
                        .set(i64::from(v.version));
                    let h = &v.metrics.holdout;
                    for (metric, value) in [
                        ("roc_auc", h.roc_auc),
                        ("pr_auc", h.pr_auc),
                        ("f1", h.f1),
                        ("precision", h.precision),
                        ("recall", h.recall),
                        ("brier", h.brier),
                        ("log_loss", h.log_loss),
                    ] {
                        self.metrics
                            .holdout_quality
                            .with_label_values(&[&v.name, metric])
                            .set(value);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the production versions"),
        }
    }

    /// One round of the poll: production versions, accounts, database.
    pub async fn poll(&self) {
        self.refresh_models().await;
        let database = match self.auth.refresh().await {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("unreachable: {e}"),
        };
        self.metrics.database_up.set(i64::from(database == "ok"));
        self.dependencies.store(Arc::new(Dependencies {
            database,
            checked_at: Some(Utc::now()),
        }));
    }
}

/// A started trainer, ready to `run`.
#[derive(Debug)]
pub struct TrainerService {
    pub listener: tokio::net::TcpListener,
    pub state: AppState,
}

impl TrainerService {
    /// Marks the runs a previous process left unfinished as failed, reads the registry and
    /// opens the listener.
    pub async fn start(
        state: AppState,
        listener: tokio::net::TcpListener,
    ) -> Result<Self, vigie_registry::Error> {
        let failed = state
            .registry
            .fail_unfinished_runs(
                "interrupted: the trainer stopped during the run (production unchanged)",
                now_ms(),
            )
            .await?;
        if failed > 0 {
            tracing::warn!(
                failed,
                "runs left unfinished by a previous trainer marked failed"
            );
        }
        state.poll().await;
        Ok(TrainerService { listener, state })
    }

    pub fn url(&self) -> String {
        match self.listener.local_addr() {
            Ok(addr) => format!("http://{addr}"),
            Err(_) => "http://?".into(),
        }
    }

    /// Serves until `shutdown` resolves, then flushes the model events.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state;
        let poller = {
            let state = state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(state.config.poll_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    state.poll().await;
                }
            })
        };
        let served = axum::serve(self.listener, crate::http::router(state.clone()))
            .with_graceful_shutdown(shutdown)
            .await;
        poller.abort();
        let producer = state.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
        served
    }
}
