//! The service's life: started (listener, accounts, models, producer, model events), run until
//! shutdown, then drained and flushed.

use std::sync::Arc;

use vigie_api::service::Common;
use vigie_stream::{EventProducer, ProducerConfig};

use crate::metrics::Metrics;
use crate::state::{AppState, Config, Inner};

/// A started prediction service, ready to `run`.
#[derive(Debug)]
pub struct PredictService {
    pub listener: tokio::net::TcpListener,
    pub state: AppState,
    /// Follows `vigie.models`: a promotion wakes the registry poll at once.
    model_events: vigie_stream::follow::Follower,
}

impl PredictService {
    /// Opens the listener, loads the accounts and models, connects the producer and checks the
    /// dependencies once, so `/ready` is accurate from the first request.
    pub async fn start(common: &Common, config: Config, listen: &str) -> Result<Self, String> {
        let base = common.base().await?;
        let metrics = Metrics::register(&base.metrics.registry)
            .map_err(|e| format!("cannot register the metrics: {e}"))?;
        let mut producer_config = ProducerConfig::new(&common.brokers);
        producer_config.queue_max_messages = config.queue_max_events;
        producer_config.linger = config.linger;
        let producer = EventProducer::new(&producer_config, metrics.producer.clone())
            .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
        let listener = vigie_api::service::bind(listen).await?;
        let state = Inner::start(base, config, Arc::new(producer), metrics).await;
        state.poll().await;
        let model_events = vigie_stream::follow::wake_on_model_events(
            &common.brokers,
            vigie_stream::MODELS_TOPIC,
            {
                let waker = state.waker();
                move || waker.notify_one()
            },
        )
        .map_err(|e| format!("cannot follow the model events: {e}"))?;
        Ok(PredictService {
            listener,
            state,
            model_events,
        })
    }

    /// The versions being served, as `NAME@VERSION`.
    pub fn model_ids(&self) -> Vec<String> {
        self.state
            .models
            .all()
            .iter()
            .map(|s| s.version.id())
            .collect()
    }

    pub fn url(&self) -> String {
        vigie_api::service::url(&self.listener)
    }

    /// Serves until `shutdown` resolves, then drains the requests in flight and flushes the
    /// producer for up to the flush timeout. Fails when events were still queued at the end
    /// (the broker stayed away through the flush): they are lost with the process.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let _model_events = self.model_events;
        let state = self.state;
        let routes = crate::http::routes(&state.config);
        let served =
            vigie_api::service::serve(self.listener, state.clone(), routes, shutdown).await;
        let left = state
            .producer
            .clone()
            .drain(state.config.flush_timeout)
            .await;
        served.map_err(|e| format!("the HTTP server failed: {e}"))?;
        if left > 0 {
            return Err(format!(
                "{left} events could not be delivered before the flush timeout"
            ));
        }
        Ok(())
    }
}
