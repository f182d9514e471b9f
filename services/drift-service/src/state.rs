//! The drift service's state (its settings, every model's windows, its metrics, the consumer)
//! and how it keeps the service contract: it follows the production versions' references,
//! checks the predictions topic, and is ready once a reference is loaded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use serde_json::{Value, json};
use vigie_api::{Base, Readiness, Service, Shared};

use crate::checkpoint::{Checkpoint, FORMAT, partition_key};
use crate::consumer::DriftConsumer;
use crate::metrics::Metrics;
use crate::score::{score_all, unpublish};
use crate::watch::{Reference, State, UNCOUNTED_STREAK, WindowConfig, lock};

/// Settings of the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// The consumer group (one per deployment of the drift service).
    pub group: String,
    pub topic: String,
    /// The labels topic, joined to the predictions (`None`: no realised quality).
    pub labels_topic: Option<String>,
    pub windows: WindowConfig,
    /// How often the windows are scored.
    pub score_interval: Duration,
    /// How often the state is saved and the offsets committed.
    pub checkpoint_interval: Duration,
    /// Watch only these models (every production model when empty).
    pub models: Vec<String>,
    /// Longest time to live of a noise injection.
    pub max_noise_ttl: Duration,
    /// Time to live of a noise injection that does not give one.
    pub default_noise_ttl: Duration,
    /// The compacted topic the group's instances share their partitions' counts on.
    pub partials_topic: String,
    /// This instance's name in the group (its partials, its logs).
    pub instance: String,
    /// How long the group waits for a silent instance before moving its partitions.
    pub session_timeout: Duration,
    /// Whether the partials topic must be found compacted at start (the embedded broker
    /// cannot say).
    pub check_compaction: bool,
    /// How long the broker may hold a fetch of the predictions that finds nothing new.
    pub fetch_wait: Duration,
    /// The trainer's URL as a browser reaches it (the pages link its runs there).
    pub trainer_url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            group: "vigie-drift".into(),
            topic: vigie_stream::PREDICTIONS_TOPIC.into(),
            labels_topic: Some(vigie_stream::LABELS_TOPIC.into()),
            windows: WindowConfig::default(),
            score_interval: Duration::from_secs(5),
            checkpoint_interval: Duration::from_secs(2),
            models: Vec::new(),
            max_noise_ttl: Duration::from_secs(7 * 24 * 3600),
            default_noise_ttl: Duration::from_secs(600),
            partials_topic: vigie_stream::PARTIALS_TOPIC.into(),
            instance: default_instance(),
            session_timeout: Duration::from_secs(10),
            check_compaction: true,
            fetch_wait: Duration::from_millis(10),
            trainer_url: None,
        }
    }
}

/// This process's default name in its group: the host's name and the process id.
pub fn default_instance() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "drift".into());
    format!("{host}-{}", std::process::id())
}

/// The service's own state; [`AppState`] adds the accounts, the registry and the shell's
/// metrics.
pub struct Inner {
    pub config: Config,
    /// Every model's windows and the consumer's position (see [`crate::watch`]).
    pub state: Arc<Mutex<State>>,
    pub metrics: Metrics,
    /// The consumer, once started (absent in router tests).
    pub consumer: Option<Arc<DriftConsumer>>,
    /// Shares noise injections with the group on the partials topic (absent in router tests:
    /// an injection is then this instance's alone).
    pub producer: Option<Arc<vigie_stream::EventProducer>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .field("consumer", &self.consumer.is_some())
            .finish_non_exhaustive()
    }
}

/// The service's shared state: cheap to clone.
pub type AppState = Shared<Inner>;

impl Inner {
    /// The state, with the production references loaded. `consumer` is the partition reader
    /// (none in tests that feed the state directly).
    pub async fn start(
        base: Base,
        config: Config,
        metrics: Metrics,
        consumer: Option<Arc<DriftConsumer>>,
        producer: Option<Arc<vigie_stream::EventProducer>>,
    ) -> AppState {
        let state = Arc::new(Mutex::new(State::new(config.windows, metrics.clone())));
        let app = Shared::new(
            base,
            Inner {
                config,
                state,
                metrics,
                consumer,
                producer,
            },
        );
        if let Err(e) = Inner::sync(&app).await {
            tracing::warn!(error = %e, "cannot read the registry yet; retrying on every poll");
        }
        crate::history::load(&app).await;
        app
    }

    fn watched(&self, model: &str) -> bool {
        self.config.models.is_empty() || self.config.models.iter().any(|m| m == model)
    }

    /// Shares a noise injection (or its end: `spec` `None`) with the other instances of the
    /// group; nothing without a producer.
    pub fn share_noise(
        &self,
        model: &str,
        spec: Option<vigie_synthetic::NoiseSpec>,
        started_at: chrono::DateTime<chrono::Utc>,
        expires_at: chrono::DateTime<chrono::Utc>,
        by: &str,
    ) {
        let Some(producer) = &self.producer else {
            return;
        };
        let shared = crate::partials::SharedNoise {
            format: crate::partials::FORMAT,
            group: self.config.group.clone(),
            model: model.to_string(),
            spec,
            started_at,
            expires_at,
            by: by.to_string(),
            instance: self.config.instance.clone(),
        };
        match serde_json::to_vec(&shared) {
            Ok(payload) => {
                let _ = producer.publish(
                    &self.config.partials_topic,
                    &crate::partials::noise_key(model),
                    &payload,
                    &[],
                );
            }
            Err(e) => tracing::error!(error = %e, "cannot serialise a shared noise injection"),
        }
    }

    /// Scores every model's windows now.
    pub fn score(&self) {
        score_all(
            &self.state,
            &self.metrics,
            self.config.score_interval.as_secs_f64(),
        );
    }

    /// The models watched, as `NAME@VERSION`.
    pub fn model_ids(&self) -> Vec<String> {
        lock(&self.state)
            .models
            .values()
            .map(|w| format!("{}@{}", w.reference.model, w.reference.version))
            .collect()
    }
}

/// Cuts the group's one-row checkpoint (written before partitions were saved apart), if there
/// is one, into a row per partition, and deletes it; partitions that have a row already keep
/// theirs. Returns the partitions written. Call before consuming: each partition's row is read
/// when the group assigns it.
pub async fn migrate(state: &AppState) -> Result<Vec<i32>, String> {
    let group = &state.config.group;
    let registry = state.registry();
    let Some(saved) = registry
        .checkpoint(group)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(Vec::new());
    };
    let checkpoint: Checkpoint = serde_json::from_str(&saved.state)
        .map_err(|e| format!("unreadable checkpoint of group {group}: {e}"))?;
    if checkpoint.format != FORMAT && checkpoint.format != 1 {
        return Err(format!(
            "the checkpoint of group {group} is of format {} (this build reads 1 and {FORMAT})",
            checkpoint.format
        ));
    }
    if checkpoint.topic != state.config.topic {
        return Err(format!(
            "the checkpoint of group {group} is for topic {}, not {}",
            checkpoint.topic, state.config.topic
        ));
    }
    if checkpoint.format == 1 {
        tracing::warn!(%group, "a checkpoint of format 1: its positions are kept; its windows and answers waiting for labels cannot be cut into partitions and start empty");
    }
    let existing: Vec<String> = registry
        .checkpoints_with_prefix(&format!("{group}/"))
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let mut written = Vec::new();
    for partition in checkpoint.split() {
        let key = partition_key(group, partition.partition);
        if existing.contains(&key) {
            continue;
        }
        let text = serde_json::to_string(&partition).map_err(|e| e.to_string())?;
        registry
            .save_checkpoint(&key, &text, saved.updated_at)
            .await
            .map_err(|e| e.to_string())?;
        written.push(partition.partition);
    }
    registry
        .delete_checkpoint(group)
        .await
        .map_err(|e| e.to_string())?;
    Ok(written)
}

impl Service for Inner {
    /// Loads the reference of each production version that differs from the one watched. A
    /// version whose artifact cannot be loaded is logged, and the old reference stays.
    async fn sync(state: &AppState) -> Result<(), vigie_registry::Error> {
        let registry = state.registry();
        let production = registry.production().await?;
        for version in production {
            if !state.watched(&version.name) {
                continue;
            }
            let current = lock(&state.state)
                .models
                .get(&version.name)
                .map(|w| w.reference.clone());
            if current
                .as_ref()
                .is_some_and(|r| r.version == version.version)
            {
                continue;
            }
            let (registry, v) = (registry.clone(), version.clone());
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
            let metrics = &state.metrics;
            if let Some(old) = &current {
                unpublish(metrics, old);
                let _ = metrics
                    .reference_info
                    .remove_label_values(&[&model, &old.version.to_string()]);
                metrics
                    .reference_switches
                    .with_label_values(&[&model])
                    .inc();
                tracing::info!(%model, from = old.version, to = reference.version, "switching reference: the windows start over");
            } else {
                tracing::info!(model = %version.id(), "watching model");
                // 0 from the start, not "no data", on dashboards.
                metrics.reference_switches.with_label_values(&[&model]);
            }
            metrics
                .reference_info
                .with_label_values(&[&model, &reference.version.to_string()])
                .set(1);
            metrics
                .threshold
                .with_label_values(&[&model])
                .set(reference.rules.dataset_share);
            lock(&state.state).set_reference(reference);
        }
        Ok(())
    }

    async fn check_broker(state: &AppState) -> Result<(), String> {
        let Some(consumer) = state.consumer.clone() else {
            return Err("no consumer".into());
        };
        let topic = state.config.topic.clone();
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
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(format!("no topic {}", state.config.topic)),
            Ok(Err(e)) => Err(format!("unreachable: {e}")),
            Err(e) => Err(format!("check failed: {e}")),
        }
    }

    /// Ready once a reference is loaded (events of models without one are not scored), and
    /// while the events read are counted: past [`UNCOUNTED_STREAK`] events in a row skipped
    /// (events of models this instance does not watch aside), the service is blind and says
    /// why. The consumer's assignment is reported beside.
    async fn readiness(state: &AppState) -> Readiness {
        let (models, uncounted) = {
            let watch = lock(&state.state);
            let models: Vec<Value> = watch
                .models
                .values()
                .map(|w| {
                    json!({
                        "model": w.reference.model,
                        "reference_version": w.reference.version,
                        "since": w.since,
                    })
                })
                .collect();
            (models, watch.uncounted.clone())
        };
        let partitions: Vec<i32> = state
            .consumer
            .as_ref()
            .and_then(|c| c.assignment().ok())
            .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        let reason = if models.is_empty() {
            Some("no production model has a reference loaded; train or promote one".to_string())
        } else if uncounted.events >= UNCOUNTED_STREAK {
            let reasons: Vec<String> = uncounted
                .reasons
                .iter()
                .map(|(reason, n)| format!("{reason}: {n}"))
                .collect();
            Some(format!(
                "the last {} events read were not counted ({}); vigie_drift_events_skipped_total has the reasons",
                uncounted.events,
                reasons.join(", ")
            ))
        } else {
            None
        };
        Readiness::new(
            reason,
            json!({
                "models": models,
                "uncounted_in_a_row": uncounted,
                "consumer": {
                    "group": state.config.group,
                    "topic": state.config.topic,
                    "assigned_partitions": partitions,
                },
            }),
        )
    }

    fn openapi(_state: &AppState) -> Value {
        crate::openapi::build()
    }
}
