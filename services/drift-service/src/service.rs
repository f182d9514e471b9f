//! The service's life: started (references, checkpoint, consumer, listener), run (the consumer
//! thread, the scoring schedule, the model events, the HTTP server), and stopped in order: the
//! server first, then the consumer, which writes its last checkpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vigie_api::service::Common;

use vigie_stream::producer::ProducerMetrics;
use vigie_stream::{EventProducer, ProducerConfig};

use crate::consumer::{ConsumerConfig, Hooks, Runner};
use crate::metrics::Metrics;
use crate::state::{AppState, Config, Inner, migrate};

/// How often the drift history is saved (and once more at stop).
const HISTORY_SAVE: std::time::Duration = std::time::Duration::from_secs(60);

/// The partials' producer: compressed (a partial is JSON counts: lz4 takes it to a fraction),
/// and large messages allowed (a busy model's partial holds every kept period's sketches).
fn partials_producer(brokers: &str) -> ProducerConfig {
    let mut config = ProducerConfig::new(brokers);
    config.linger = std::time::Duration::from_millis(20);
    config.extra = vec![
        ("compression.type".into(), "lz4".into()),
        ("message.max.bytes".into(), (16 << 20).to_string()),
    ];
    config
}

/// A started drift service, ready to `run`.
pub struct DriftService {
    pub listener: tokio::net::TcpListener,
    pub state: AppState,
    pub consumer_config: ConsumerConfig,
    /// Publishes this instance's partials.
    producer: Arc<EventProducer>,
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
    /// Loads the references, checks the partials topic, cuts a one-row checkpoint into its
    /// partitions, creates the consumer and opens the listener. Consumption starts with
    /// [`DriftService::run`].
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
            partials_topic: config.partials_topic.clone(),
            instance: config.instance.clone(),
            checkpoint_interval: config.checkpoint_interval,
            session_timeout: config.session_timeout,
            fetch_wait: config.fetch_wait,
        };
        crate::partials::check_topic(
            &common.brokers,
            &config.partials_topic,
            config.check_compaction,
        )
        .await?;
        let producer_metrics = ProducerMetrics::register(&base.metrics.registry)
            .map_err(|e| format!("cannot register the producer's metrics: {e}"))?;
        let producer = EventProducer::new(&partials_producer(&common.brokers), producer_metrics)
            .map_err(|e| format!("cannot create the partials' producer: {e}"))?;
        let consumer = crate::consumer::create(&consumer_config, &metrics)
            .map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
        let listener = vigie_api::service::bind(listen).await?;
        let producer = Arc::new(producer);
        let state = Inner::start(
            base,
            config,
            metrics,
            Some(Arc::new(consumer)),
            Some(producer.clone()),
        )
        .await;
        let written = migrate(&state).await?;
        if !written.is_empty() {
            tracing::info!(partitions = ?written, "the group's checkpoint cut into one per partition");
        }
        state.poll().await;
        Ok(DriftService {
            listener,
            state,
            consumer_config,
            producer,
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
                let hooks = Hooks::new(
                    state.state.clone(),
                    state.registry().clone(),
                    tokio::runtime::Handle::current(),
                    self.consumer_config.clone(),
                    state.metrics.clone(),
                    state.service_metrics().database_up.clone(),
                    self.producer.clone(),
                )
                .map_err(|e| format!("cannot create the labels consumer: {e}"))?;
                let runner = Runner::new(consumer, Arc::new(hooks))?;
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
                let saved = Arc::new(std::sync::Mutex::new(std::time::Instant::now()));
                vigie_api::service::every(interval, None, || {
                    let (state, saved) = (state.clone(), saved.clone());
                    async move {
                        state.score();
                        let due = {
                            let mut saved = saved
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            let due = saved.elapsed() >= HISTORY_SAVE;
                            if due {
                                *saved = std::time::Instant::now();
                            }
                            due
                        };
                        if due {
                            crate::history::save(&state).await;
                        }
                    }
                })
                .await;
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
        crate::history::save(&state).await;
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
