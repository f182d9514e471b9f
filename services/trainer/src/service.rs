//! The trainer's life: started (runs a stopped trainer left unfinished marked failed, the
//! registry read, the listener), run until shutdown, then the model events flushed.

use std::sync::Arc;
use std::time::Duration;

use vigie_api::service::Common;
use vigie_stream::{EventProducer, ProducerConfig};

use crate::metrics::Metrics;
use crate::state::{AppState, Config, Inner, now_ms};

/// A started trainer, ready to `run`.
#[derive(Debug)]
pub struct TrainerService {
    pub listener: tokio::net::TcpListener,
    pub state: AppState,
}

impl TrainerService {
    /// Marks the runs a previous process left unfinished as failed, reads the registry and
    /// opens the listener.
    pub async fn start(common: &Common, config: Config, listen: &str) -> Result<Self, String> {
        let base = common.base().await?;
        let metrics = Metrics::register(&base.metrics.registry)
            .map_err(|e| format!("cannot register the metrics: {e}"))?;
        let producer = EventProducer::new(
            &ProducerConfig::new(&common.brokers),
            metrics.producer.clone(),
        )
        .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
        let failed = base
            .registry
            .fail_unfinished_runs(
                "interrupted: the trainer stopped during the run (production unchanged)",
                now_ms(),
            )
            .await
            .map_err(|e| format!("cannot read the registry: {e}"))?;
        if failed > 0 {
            tracing::warn!(
                failed,
                "runs left unfinished by a previous trainer marked failed"
            );
        }
        let listener = vigie_api::service::bind(listen).await?;
        let state = AppState::new(
            base,
            Inner::new(config, metrics, Arc::new(producer), &common.brokers),
        );
        state.poll().await;
        Ok(TrainerService { listener, state })
    }

    pub fn url(&self) -> String {
        vigie_api::service::url(&self.listener)
    }

    /// Serves until `shutdown` resolves, then flushes the model events.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let state = self.state;
        let served = vigie_api::service::serve(
            self.listener,
            state.clone(),
            crate::http::routes(),
            shutdown,
        )
        .await;
        state.producer.clone().drain(Duration::from_secs(5)).await;
        served.map_err(|e| format!("the HTTP server failed: {e}"))
    }
}
