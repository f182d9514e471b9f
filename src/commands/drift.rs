//! `vigie drift`: the drift service, and its settings (shared with `vigie up`).

use std::time::Duration;

use anyhow::Context;
use vigie_api::Auth;
use vigie_drift_service::{Config, DriftService, WindowConfig};
use vigie_registry::Registry;

use crate::Cli;
use crate::commands::required;

/// Settings of the drift service (flags, or the environment variables named).
#[derive(Debug, Clone, clap::Args)]
pub struct DriftArgs {
    /// Address the drift service listens on.
    #[arg(
        long = "drift-listen",
        env = "VIGIE_DRIFT_LISTEN",
        default_value = "127.0.0.1:8001"
    )]
    pub drift_listen: String,
    /// The consumer group (one per deployment).
    #[arg(long, env = "VIGIE_DRIFT_GROUP", default_value = "vigie-drift")]
    pub group: String,
    /// Events in each model's sliding window.
    #[arg(long, env = "VIGIE_DRIFT_WINDOW_EVENTS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub window_events: u64,
    /// Width of the tumbling event-time windows, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=7 * 24 * 3600))]
    pub tumbling_secs: u64,
    /// How late an event may arrive for its tumbling window, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=24 * 3600))]
    pub lateness_secs: u64,
    /// Closed tumbling windows kept (and shown in /v1/drift).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub retain_windows: u64,
    /// How often the windows are scored, in milliseconds.
    #[arg(long, env = "VIGIE_DRIFT_SCORE_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub score_ms: u64,
    /// How often the state is saved and the offsets committed, in milliseconds.
    #[arg(long, env = "VIGIE_DRIFT_CHECKPOINT_MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub checkpoint_ms: u64,
    /// Watch only these models (comma-separated names); default: every production model.
    #[arg(
        long = "drift-model",
        env = "VIGIE_DRIFT_MODELS",
        value_delimiter = ','
    )]
    pub drift_models: Vec<String>,
    /// Longest time to live a noise injection may ask for, in seconds.
    #[arg(long, default_value_t = 7 * 24 * 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_noise_ttl_secs: u64,
}

impl DriftArgs {
    pub fn config(&self, topic: &str, poll: Duration) -> Config {
        Config {
            group: self.group.clone(),
            topic: topic.to_string(),
            windows: WindowConfig {
                sliding_events: self.window_events as usize,
                tumbling_ms: self.tumbling_secs as i64 * 1000,
                lateness_ms: self.lateness_secs as i64 * 1000,
                retain: self.retain_windows as usize,
            },
            score_interval: Duration::from_millis(self.score_ms),
            poll_interval: poll,
            checkpoint_interval: Duration::from_millis(self.checkpoint_ms),
            models: self.drift_models.clone(),
            max_noise_ttl: Duration::from_secs(self.max_noise_ttl_secs),
            ..Config::default()
        }
    }

    /// Opens the listener, loads references and the checkpoint, joins the group.
    pub async fn start(
        &self,
        registry: Registry,
        brokers: &str,
        secret: &[u8],
        token_ttl: Duration,
        topic: &str,
        poll: Duration,
    ) -> anyhow::Result<DriftService> {
        let auth = Auth::new(secret, token_ttl, registry.clone())
            .await
            .map_err(anyhow::Error::msg)?;
        let listener = tokio::net::TcpListener::bind(&self.drift_listen)
            .await
            .with_context(|| format!("cannot listen on {}", self.drift_listen))?;
        DriftService::start(self.config(topic, poll), registry, auth, brokers, listener)
            .await
            .map_err(anyhow::Error::msg)
    }
}

/// `vigie drift` on its own.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub drift: DriftArgs,
    /// Kafka bootstrap servers (host:port,...).
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Secret that verifies tokens (the prediction service's): at least 32 bytes.
    #[arg(long, env = "VIGIE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Lifetime of tokens issued here, in seconds.
    #[arg(long, env = "VIGIE_TOKEN_TTL_SECS", default_value_t = 8 * 3600,
          value_parser = clap::value_parser!(u64).range(60..=7 * 24 * 3600))]
    pub token_ttl_secs: u64,
    /// The topic predictions are read from.
    #[arg(long, env = "VIGIE_PREDICTIONS_TOPIC", default_value = vigie_stream::PREDICTIONS_TOPIC)]
    pub topic: String,
    /// How often the registry and the broker are checked, in milliseconds.
    #[arg(long, env = "VIGIE_POLL_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub poll_ms: u64,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let brokers = required(
        args.kafka_brokers.as_deref(),
        "KAFKA_BROKERS (or --kafka-brokers) is not set: `vigie drift` consumes the predictions topic; `vigie up` runs an embedded broker for local use",
    )?;
    let secret = required(
        args.jwt_secret.as_deref(),
        "VIGIE_JWT_SECRET (or --jwt-secret) is not set: the drift service checks the prediction service's tokens with the same secret",
    )?;
    let registry = Registry::open(&cli.database_url(), &cli.artifacts_dir())
        .await
        .context("Failed to open the model registry")?;
    let service = args
        .drift
        .start(
            registry,
            brokers,
            secret.as_bytes(),
            Duration::from_secs(args.token_ttl_secs),
            &args.topic,
            Duration::from_millis(args.poll_ms),
        )
        .await?;
    let models = service.model_ids();
    println!(
        "vigie drift: listening on {} (models: {}; kafka: {brokers}; group: {})",
        service.url(),
        if models.is_empty() {
            "none yet".to_string()
        } else {
            models.join(", ")
        },
        args.drift.group
    );
    service
        .run(vigie_api::shutdown::signal())
        .await
        .context("the HTTP server failed")
}
