//! What `vigie predict` and `vigie up` share: the service's settings and its start.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use vigie_api::Auth;
use vigie_predict::{AppState, Config, Metrics};
use vigie_registry::Registry;
use vigie_stream::{EventProducer, ProducerConfig};

/// Settings of the prediction service (flags, or the environment variables named).
#[derive(Debug, Clone, clap::Args)]
pub struct PredictArgs {
    /// Address to listen on.
    #[arg(long, env = "VIGIE_PREDICT_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: String,
    /// Kafka bootstrap servers (host:port,...).
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Secret that signs the tokens: at least 32 bytes. Required by `vigie predict`.
    #[arg(long, env = "VIGIE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Lifetime of issued tokens, in seconds.
    #[arg(long, env = "VIGIE_TOKEN_TTL_SECS", default_value_t = 8 * 3600,
          value_parser = clap::value_parser!(u64).range(60..=7 * 24 * 3600))]
    pub token_ttl_secs: u64,
    /// Serve only these models (comma-separated names); default: every production model.
    #[arg(long = "model", env = "VIGIE_MODELS", value_delimiter = ',')]
    pub models: Vec<String>,
    /// Largest JSON body, in bytes.
    #[arg(long, default_value_t = 2 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=1024 * 1024 * 1024))]
    pub max_body_bytes: u64,
    /// Most rows in a JSON batch.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_batch_rows: u64,
    /// Most data rows in one CSV upload.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_csv_rows: u64,
    /// Longest time a JSON request may take, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,
    /// How often the registry and the broker are checked, in milliseconds.
    #[arg(long, env = "VIGIE_POLL_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub poll_ms: u64,
    /// How long shutdown waits for queued events to reach the broker, in seconds.
    #[arg(long, default_value_t = 30)]
    pub flush_timeout_secs: u64,
    /// Most events held in memory while the broker is away.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub queue_max_events: u32,
    /// How long the producer waits to fill a batch of events before sending it, in
    /// milliseconds: longer means fewer, larger requests to the broker, never a slower answer.
    #[arg(long, env = "VIGIE_LINGER_MS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=900_000))]
    pub linger_ms: u64,
    /// The topic predictions are published to.
    #[arg(long, env = "VIGIE_PREDICTIONS_TOPIC", default_value = vigie_stream::PREDICTIONS_TOPIC)]
    pub topic: String,
}

impl PredictArgs {
    fn config(&self) -> Config {
        Config {
            max_body_bytes: self.max_body_bytes as usize,
            max_batch_rows: self.max_batch_rows as usize,
            max_csv_rows: self.max_csv_rows as usize,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            poll_interval: Duration::from_millis(self.poll_ms),
            models: self.models.clone(),
            topic: self.topic.clone(),
            ..Config::default()
        }
    }
}

/// A started prediction service, ready to `run`.
pub struct PredictService {
    pub listener: tokio::net::TcpListener,
    pub state: AppState,
    pub flush_timeout: Duration,
    /// Follows `vigie.models`: a promotion wakes the registry poll at once.
    pub model_events: vigie_stream::follow::Follower,
}

impl PredictService {
    /// Opens the listener, loads the accounts and models, and connects the producer.
    pub async fn start(
        args: &PredictArgs,
        registry: Registry,
        brokers: &str,
        secret: &[u8],
    ) -> anyhow::Result<Self> {
        let metrics = Metrics::new().context("cannot register the metrics")?;
        let mut producer_config = ProducerConfig::new(brokers);
        producer_config.queue_max_messages = args.queue_max_events;
        producer_config.linger = Duration::from_millis(args.linger_ms);
        let producer = EventProducer::new(&producer_config, metrics.producer.clone())
            .context("cannot create the Kafka producer")?;
        let auth = Auth::new(
            secret,
            Duration::from_secs(args.token_ttl_secs),
            registry.clone(),
        )
        .await
        .map_err(anyhow::Error::msg)?;
        let state = AppState::new(args.config(), registry, auth, Arc::new(producer), metrics).await;
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        // One check before answering, so /ready is accurate from the first request.
        state.poll().await;
        let model_events = {
            let state = state.clone();
            vigie_stream::follow::follow(brokers, vigie_stream::MODELS_TOPIC, move |event| {
                tracing::info!(model = %event.model, version = event.version, action = ?event.action, by = %event.by, "model event");
                state.wake.notify_one();
            })
            .context("cannot follow the model events")?
        };
        Ok(PredictService {
            listener,
            state,
            flush_timeout: Duration::from_secs(args.flush_timeout_secs),
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
        match self.listener.local_addr() {
            Ok(addr) => format!("http://{addr}"),
            Err(_) => "http://?".into(),
        }
    }

    /// Serves until Ctrl-C or SIGTERM; then drains and flushes.
    pub async fn run(self) -> anyhow::Result<()> {
        let _model_events = self.model_events;
        let left = vigie_predict::serve(
            self.listener,
            self.state,
            vigie_api::shutdown::signal(),
            self.flush_timeout,
        )
        .await
        .context("the HTTP server failed")?;
        if left > 0 {
            anyhow::bail!("{left} events could not be delivered before the flush timeout");
        }
        Ok(())
    }
}
