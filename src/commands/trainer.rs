//! `vigie trainer`: the retraining service, and its settings (shared with `vigie up`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use vigie_api::Auth;
use vigie_registry::Registry;
use vigie_stream::{EventProducer, ProducerConfig};
use vigie_trainer::metrics::Metrics;
use vigie_trainer::{AppState, Config, TrainerService};

use crate::Cli;
use crate::commands::required;

/// Settings of the trainer (flags, or the environment variables named).
#[derive(Debug, Clone, clap::Args)]
pub struct TrainerArgs {
    /// Address the trainer listens on.
    #[arg(
        long = "trainer-listen",
        env = "VIGIE_TRAINER_LISTEN",
        default_value = "127.0.0.1:8002"
    )]
    pub trainer_listen: String,
    /// The bearer token Alertmanager's webhook sends (alertmanager.yml: http_config); at least
    /// 16 characters.
    #[arg(long, env = "VIGIE_WEBHOOK_TOKEN", hide_env_values = true)]
    pub webhook_token: Option<String>,
    /// Where the model specs are: a retraining uses its model's spec file.
    #[arg(
        long = "trainer-models-dir",
        env = "VIGIE_MODELS_DIR",
        default_value = "models"
    )]
    pub trainer_models_dir: PathBuf,
    /// After a run of a model starts, alerts start no other run of it for this long (seconds).
    #[arg(long, env = "VIGIE_RETRAIN_COOLDOWN_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(0..=30 * 24 * 3600))]
    pub cooldown_secs: u64,
    /// Alert names that start a retraining (comma-separated).
    #[arg(
        long,
        env = "VIGIE_RETRAIN_ALERTS",
        value_delimiter = ',',
        default_value = "VigieDataDrift"
    )]
    pub retrain_alerts: Vec<String>,
}

impl TrainerArgs {
    /// Opens the listener and reads the registry.
    pub async fn start(
        &self,
        registry: Registry,
        brokers: &str,
        secret: &[u8],
        token_ttl: Duration,
        poll: Duration,
    ) -> anyhow::Result<TrainerService> {
        let token = required(
            self.webhook_token.as_deref(),
            "VIGIE_WEBHOOK_TOKEN (or --webhook-token) is not set: Alertmanager authenticates to the trainer with it",
        )?;
        if token.trim().len() < 16 {
            anyhow::bail!("VIGIE_WEBHOOK_TOKEN must be at least 16 characters");
        }
        let metrics = Metrics::new().context("cannot register the metrics")?;
        let producer = EventProducer::new(&ProducerConfig::new(brokers), metrics.producer.clone())
            .context("cannot create the Kafka producer")?;
        let auth = Auth::new(secret, token_ttl, registry.clone())
            .await
            .map_err(anyhow::Error::msg)?;
        let config = Config {
            models_dir: self.trainer_models_dir.clone(),
            webhook_token: token.trim().to_string(),
            cooldown: Duration::from_secs(self.cooldown_secs),
            retrain_alerts: self
                .retrain_alerts
                .iter()
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect(),
            poll_interval: poll,
            ..Config::default()
        };
        let state = AppState::new(config, registry, auth, metrics, Arc::new(producer), brokers);
        let listener = tokio::net::TcpListener::bind(&self.trainer_listen)
            .await
            .with_context(|| format!("cannot listen on {}", self.trainer_listen))?;
        TrainerService::start(state, listener)
            .await
            .context("cannot read the registry")
    }
}

/// `vigie trainer` on its own.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub trainer: TrainerArgs,
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
    /// How often the registry is read, in milliseconds.
    #[arg(long, env = "VIGIE_POLL_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub poll_ms: u64,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let brokers = required(
        args.kafka_brokers.as_deref(),
        "KAFKA_BROKERS (or --kafka-brokers) is not set: the trainer reads labelled traffic and publishes model events",
    )?;
    let secret = required(
        args.jwt_secret.as_deref(),
        "VIGIE_JWT_SECRET (or --jwt-secret) is not set: the trainer checks the prediction service's tokens with the same secret",
    )?;
    let registry = Registry::open(&cli.database_url(), &cli.artifacts_dir())
        .await
        .context("Failed to open the model registry")?;
    let service = args
        .trainer
        .start(
            registry,
            brokers,
            secret.as_bytes(),
            Duration::from_secs(args.token_ttl_secs),
            Duration::from_millis(args.poll_ms),
        )
        .await?;
    println!(
        "vigie trainer: listening on {} (webhook: {}/v1/alerts; retrains on {}; cooldown {} s; specs in {})",
        service.url(),
        service.url(),
        args.trainer.retrain_alerts.join(", "),
        args.trainer.cooldown_secs,
        args.trainer.trainer_models_dir.display()
    );
    service
        .run(vigie_api::shutdown::signal())
        .await
        .context("the HTTP server failed")
}
