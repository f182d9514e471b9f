//! The service's life: started (references, checkpoint, consumer, listener), run (the consumer
//! thread, the scoring schedule, the model events, the HTTP server), and stopped in order: the
//! server first, then the consumer, which writes its last checkpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vigie_api::service::Common;

use crate::checkpoint::Restored;
use crate::consumer::{ConsumerConfig, Runner};
use crate::metrics::Metrics;
use crate::state::{AppState, Config, Inner, restore};

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
    /// Loads the references and the checkpoint, creates the consumer and opens the listener.
    /// Consumption starts with [`DriftService::run`].
    pub async fn start(common: &Common, config: Config, listen: &str) -> Result<Self, String> {
        config.windows.check()?;
        let base = common.base().await?;
        let metrics = Metrics::register(&base.metrics.registry)
            .map_err(|e| format!("cannot register the metrics: {e}"))?;
        let consumer_config = ConsumerConfig {
            brokers: common.brokers.clone(),
            group: config.group.clone(),
            topic: config.topic.clone(),
            labels_topic: config.labels_topic.clone(),
            checkpoint_interval: config.checkpoint_interval,
        };
        let consumer = crate::consumer::create(&consumer_config, &metrics)
            .map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
        let listener = vigie_api::service::bind(listen).await?;
        let state = Inner::start(base, config, metrics, Some(Arc::new(consumer))).await;
        for restored in restore(&state).await? {
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
        vigie_api::service::url(&self.listener)
    }

    /// The models watched, as `NAME@VERSION`.
    pub fn model_ids(&self) -> Vec<String> {
        self.state.model_ids()
    }

    /// Consumes, scores and serves until `shutdown` resolves; then stops the HTTP server,
    /// lets the consumer write its last checkpoint, and returns.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let state = self.state;
        let stop = Arc::new(AtomicBool::new(false));
        let consumer_thread = match state.consumer.clone() {
            Some(consumer) => {
                let runner = Runner {
                    consumer,
                    state: state.state.clone(),
                    registry: state.registry().clone(),
                    runtime: tokio::runtime::Handle::current(),
                    config: self.consumer_config.clone(),
                    metrics: state.metrics.clone(),
                    database_up: state.service_metrics().database_up.clone(),
                };
                let stop = stop.clone();
                Some(
                    std::thread::Builder::new()
                        .name("drift-consumer".into())
                        .spawn(move || runner.run(&stop))
                        .map_err(|e| format!("cannot start the consumer thread: {e}"))?,
                )
            }
            None => None,
        };
        // A promotion's model event wakes the follower at once; the poll is the fallback.
        let model_events = match &state.consumer {
            Some(_) => vigie_stream::follow::wake_on_model_events(
                &self.consumer_config.brokers,
                vigie_stream::MODELS_TOPIC,
                {
                    let waker = state.waker();
                    move || waker.notify_one()
                },
            )
            .map_err(|e| tracing::warn!(error = %e, "cannot follow the model events; polling only"))
            .ok(),
            None => None,
        };
        let scorer = {
            let state = state.clone();
            tokio::spawn(async move {
                let interval = state.config.score_interval;
                vigie_api::service::every(interval, None, || async { state.score() }).await;
            })
        };
        let served = vigie_api::service::serve(
            self.listener,
            state.clone(),
            crate::http::routes(),
            shutdown,
        )
        .await;
        scorer.abort();
        drop(model_events);
        stop.store(true, Ordering::Relaxed);
        if let Some(thread) = consumer_thread {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("the consumer thread panicked");
            }
        }
        served.map_err(|e| format!("the HTTP server failed: {e}"))
    }
}
