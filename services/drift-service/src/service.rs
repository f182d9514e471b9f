//! The service: configuration, shared state, the registry follower, the scoring schedule, the
//! consumer thread and the HTTP server, and their shutdown in order.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use rdkafka::consumer::Consumer;
use serde::Serialize;
use vigie_api::{Auth, HasAuth};
use vigie_registry::Registry;

use crate::checkpoint::{Checkpoint, Restored};
use crate::consumer::{ConsumerConfig, DriftConsumer, Runner};
use crate::metrics::Metrics;
use crate::score::{lock, score_all, unpublish};
use crate::watch::{Reference, State, WindowConfig};

/// Settings of the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// The consumer group (one per deployment of the drift service).
    pub group: String,
    pub topic: String,
    pub windows: WindowConfig,
    /// How often the windows are scored.
    pub score_interval: Duration,
    /// How often the registry (production versions, accounts) and the broker are checked.
    pub poll_interval: Duration,
    /// How often the state is saved and the offsets committed.
    pub checkpoint_interval: Duration,
    /// Watch only these models (every production model when empty).
    pub models: Vec<String>,
    /// Longest time to live of a noise injection.
    pub max_noise_ttl: Duration,
    /// Time to live of a noise injection that does not give one.
    pub default_noise_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            group: "vigie-drift".into(),
            topic: vigie_stream::PREDICTIONS_TOPIC.into(),
            windows: WindowConfig::default(),
            score_interval: Duration::from_secs(5),
            poll_interval: Duration::from_secs(2),
            checkpoint_interval: Duration::from_secs(2),
            models: Vec::new(),
            max_noise_ttl: Duration::from_secs(7 * 24 * 3600),
            default_noise_ttl: Duration::from_secs(600),
        }
    }
}

/// What the last dependency check found.
#[derive(Debug, Clone, Serialize)]
pub struct Dependencies {
    pub database: String,
    pub broker: String,
    pub checked_at: Option<DateTime<Utc>>,
}

/// The service's shared state: cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub state: Arc<Mutex<State>>,
    pub metrics: Metrics,
    pub auth: Auth,
    pub registry: Registry,
    /// The consumer, once started (absent in router tests).
    pub consumer: Option<Arc<DriftConsumer>>,
    pub dependencies: ArcSwap<Dependencies>,
    /// Wakes the registry follower before its next tick (a model event arrived).
    pub wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .field("consumer", &self.consumer.is_some())
            .finish_non_exhaustive()
    }
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

impl AppState {
    /// Builds the state and loads the production references. `consumer` is the group member
    /// (none in tests that feed the state directly).
    pub async fn new(
        config: Config,
        registry: Registry,
        auth: Auth,
        metrics: Metrics,
        consumer: Option<Arc<DriftConsumer>>,
    ) -> Self {
        let state = Arc::new(Mutex::new(State::new(config.windows, metrics.clone())));
        let app = AppState(Arc::new(Inner {
            config,
            state,
            metrics,
            auth,
            registry,
            consumer,
            dependencies: ArcSwap::from_pointee(Dependencies {
                database: "not checked yet".into(),
                broker: "not checked yet".into(),
                checked_at: None,
            }),
            wake: tokio::sync::Notify::new(),
        }));
        if let Err(e) = app.sync_references().await {
            tracing::warn!(error = %e, "cannot read the registry yet; retrying on every poll");
        }
        app
    }

    fn watched(&self, model: &str) -> bool {
        self.config.models.is_empty() || self.config.models.iter().any(|m| m == model)
    }

    /// Loads the reference of each production version that differs from the one watched. A
    /// version whose artifact cannot be loaded is logged, and the old reference stays.
    pub async fn sync_references(&self) -> Result<(), vigie_registry::Error> {
        let production = self.registry.production().await?;
        for version in production {
            if !self.watched(&version.name) {
                continue;
            }
            let current = lock(&self.state)
                .models
                .get(&version.name)
                .map(|w| w.reference.clone());
            if current
                .as_ref()
                .is_some_and(|r| r.version == version.version)
            {
                continue;
            }
            let (registry, v) = (self.registry.clone(), version.clone());
            let loaded = tokio::task::spawn_blocking(move || {
                registry.load(&v).map(|a| Reference::of_artifact(&a))
            })
            .await;
            let reference = match loaded {
                Ok(Ok(r)) => Arc::new(r),
                Ok(Err(e)) => {
                    tracing::error!(model = %version.id(), error = %e, "cannot load the production version's reference; the current one stays");
                    continue;
                }
                Err(e) => {
                    tracing::error!(model = %version.id(), error = %e, "reference loading panicked");
                    continue;
                }
            };
            let model = reference.model.clone();
            if let Some(old) = &current {
                unpublish(&self.metrics, old);
                let _ = self
                    .metrics
                    .reference_info
                    .remove_label_values(&[&model, &old.version.to_string()]);
                self.metrics
                    .reference_switches
                    .with_label_values(&[&model])
                    .inc();
                tracing::info!(%model, from = old.version, to = reference.version, "switching reference: the windows start over");
            } else {
                tracing::info!(model = %version.id(), "watching model");
                // 0 from the start, not "no data", on dashboards.
                self.metrics.reference_switches.with_label_values(&[&model]);
            }
            self.metrics
                .reference_info
                .with_label_values(&[&model, &reference.version.to_string()])
                .set(1);
            self.metrics
                .threshold
                .with_label_values(&[&model])
                .set(reference.rules.dataset_share);
            lock(&self.state).set_reference(reference);
        }
        Ok(())
    }

    /// Reads the group's checkpoint back into the state. Call before consuming.
    pub async fn restore(&self) -> Result<Vec<Restored>, String> {
        let Some(saved) = self
            .registry
            .checkpoint(&self.config.group)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(Vec::new());
        };
        let checkpoint: Checkpoint = serde_json::from_str(&saved.state)
            .map_err(|e| format!("unreadable checkpoint: {e}"))?;
        if checkpoint.topic != self.config.topic {
            return Err(format!(
                "the checkpoint of group {} is for topic {}, not {}",
                self.config.group, checkpoint.topic, self.config.topic
            ));
        }
        lock(&self.state).restore(checkpoint)
    }

    /// Scores every model's windows now.
    pub fn score(&self) {
        score_all(&self.state, &self.metrics);
    }

    /// One round of the follower: references, accounts, database and broker.
    pub async fn poll(&self) {
        let database = match self.sync_references().await {
            Ok(()) => match self.auth.refresh().await {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("unreachable: {e}"),
            },
            Err(e) => format!("unreachable: {e}"),
        };
        self.metrics.database_up.set(i64::from(database == "ok"));
        let broker = match self.consumer.clone() {
            None => "no consumer".to_string(),
            Some(consumer) => {
                let topic = self.config.topic.clone();
                let found = tokio::task::spawn_blocking(move || {
                    consumer
                        .fetch_metadata(Some(&topic), Duration::from_secs(2))
                        .map(|m| {
                            m.topics()
                                .iter()
                                .any(|t| t.name() == topic && t.error().is_none())
                        })
                })
                .await;
                match found {
                    Ok(Ok(true)) => "ok".to_string(),
                    Ok(Ok(false)) => format!("no topic {}", self.config.topic),
                    Ok(Err(e)) => format!("unreachable: {e}"),
                    Err(e) => format!("check failed: {e}"),
                }
            }
        };
        self.metrics.broker_up.set(i64::from(broker == "ok"));
        self.dependencies.store(Arc::new(Dependencies {
            database,
            broker,
            checked_at: Some(Utc::now()),
        }));
    }
}

/// A started drift service, ready to `run`.
pub struct DriftService {
    pub listener: tokio::net::TcpListener,
    pub state: AppState,
    pub consumer_config: ConsumerConfig,
}

impl std::fmt::Debug for DriftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriftService")
            .field("listener", &self.listener)
            .field("consumer", &self.consumer_config)
            .finish_non_exhaustive()
    }
}

impl DriftService {
    /// Loads the references and the checkpoint, joins the consumer group and opens the
    /// listener. Consumption starts with [`DriftService::run`].
    pub async fn start(
        config: Config,
        registry: Registry,
        auth: Auth,
        brokers: &str,
        listener: tokio::net::TcpListener,
    ) -> Result<Self, String> {
        let metrics = Metrics::new().map_err(|e| format!("cannot register the metrics: {e}"))?;
        let consumer_config = ConsumerConfig {
            brokers: brokers.to_string(),
            group: config.group.clone(),
            topic: config.topic.clone(),
            checkpoint_interval: config.checkpoint_interval,
        };
        let consumer = crate::consumer::create(&consumer_config, &metrics)
            .map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
        let state = AppState::new(config, registry, auth, metrics, Some(Arc::new(consumer))).await;
        for restored in state.restore().await? {
            match restored {
                Restored::Windows { model, events } => {
                    tracing::info!(%model, events, "windows restored from the checkpoint")
                }
                Restored::Discarded { model, reason } => {
                    tracing::warn!(%model, %reason, "checkpointed windows discarded")
                }
            }
        }
        state.poll().await;
        Ok(DriftService {
            listener,
            state,
            consumer_config,
        })
    }

    pub fn url(&self) -> String {
        match self.listener.local_addr() {
            Ok(addr) => format!("http://{addr}"),
            Err(_) => "http://?".into(),
        }
    }

    /// The models watched, as `NAME@VERSION`.
    pub fn model_ids(&self) -> Vec<String> {
        lock(&self.state.state)
            .models
            .values()
            .map(|w| format!("{}@{}", w.reference.model, w.reference.version))
            .collect()
    }

    /// Consumes, scores and serves until `shutdown` resolves; then stops the HTTP server,
    /// lets the consumer write its last checkpoint, and returns.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state;
        let brokers = self.consumer_config.brokers.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let consumer_thread = match state.consumer.clone() {
            Some(consumer) => {
                let runner = Runner {
                    consumer,
                    state: state.state.clone(),
                    registry: state.registry.clone(),
                    runtime: tokio::runtime::Handle::current(),
                    config: self.consumer_config,
                    metrics: state.metrics.clone(),
                };
                let stop = stop.clone();
                Some(
                    std::thread::Builder::new()
                        .name("drift-consumer".into())
                        .spawn(move || runner.run(&stop))?,
                )
            }
            None => None,
        };
        // A promotion's model event wakes the follower at once; the poll is the fallback.
        let model_events = match &state.consumer {
            Some(_) => {
                let state = state.clone();
                vigie_stream::follow::follow(&brokers, vigie_stream::MODELS_TOPIC, move |event| {
                    tracing::info!(model = %event.model, version = event.version, "model event");
                    state.wake.notify_one();
                })
                .map_err(
                    |e| tracing::warn!(error = %e, "cannot follow the model events; polling only"),
                )
                .ok()
            }
            None => None,
        };
        let follower = {
            let state = state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(state.config.poll_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = state.wake.notified() => {}
                    }
                    state.poll().await;
                }
            })
        };
        let scorer = {
            let state = state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(state.config.score_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    state.score();
                }
            })
        };
        let app = crate::http::router(state.clone());
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        follower.abort();
        scorer.abort();
        drop(model_events);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = consumer_thread {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("the consumer thread panicked");
            }
        }
        served
    }
}
