//! `vigie trainer`: the retraining service, and its settings (shared with `vigie up`).

use std::path::PathBuf;
use std::time::Duration;

use vigie_trainer::{Config, TrainerService};

use crate::Cli;
use crate::commands::required;
use crate::commands::service::ServiceArgs;

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
        default_value = "VigieDataDrift,VigieQualityEstimatedDrop,VigieQualityRealisedDrop"
    )]
    pub retrain_alerts: Vec<String>,
}

impl TrainerArgs {
    /// The trainer's settings, reading labelled traffic from `topic`.
    pub fn config(&self, topic: &str) -> anyhow::Result<Config> {
        let token = required(
            self.webhook_token.as_deref(),
            "VIGIE_WEBHOOK_TOKEN (or --webhook-token) is not set: Alertmanager authenticates to the trainer with it",
        )?;
        if token.trim().len() < 16 {
            anyhow::bail!("VIGIE_WEBHOOK_TOKEN must be at least 16 characters");
        }
        Ok(Config {
            models_dir: self.trainer_models_dir.clone(),
            webhook_token: token.trim().to_string(),
            cooldown: Duration::from_secs(self.cooldown_secs),
            retrain_alerts: self
                .retrain_alerts
                .iter()
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect(),
            predictions_topic: topic.to_string(),
            ..Config::default()
        })
    }
}

/// `vigie trainer` on its own.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub trainer: TrainerArgs,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let config = args.trainer.config(&args.service.topic)?;
    let common = args
        .service
        .connect(
            cli,
            "vigie trainer",
            "reads labelled traffic and publishes model events",
        )
        .await?;
    let service = TrainerService::start(&common, config, &args.trainer.trainer_listen)
        .await
        .map_err(anyhow::Error::msg)?;
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
        .map_err(anyhow::Error::msg)
}
