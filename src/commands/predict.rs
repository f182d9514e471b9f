//! `vigie predict`: the prediction service, against a Kafka broker and the registry, and its
//! settings (shared with `vigie up`).

use std::time::Duration;

use vigie_predict::{Config, PredictService};

use crate::Cli;
use crate::commands::listed;
use crate::commands::service::ServiceArgs;

/// Settings of the prediction service (flags, or the environment variables named).
#[derive(Debug, Clone, clap::Args)]
pub struct PredictArgs {
    /// Address to listen on.
    #[arg(long, env = "VIGIE_PREDICT_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: String,
    /// Serve only these models (comma-separated names); default: every production model.
    #[arg(long = "model", env = "VIGIE_MODELS", value_delimiter = ',')]
    pub models: Vec<String>,
    /// Largest JSON body, in bytes: the default holds a batch of --max-batch-rows rows of the
    /// BAAC model's 28 features written out in full (about 3.4 MiB for 10,000).
    #[arg(long, default_value_t = 8 * 1024 * 1024,
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
    /// Requests remembered for checking feedback (the newest; about 60 bytes each): a label
    /// for a request this service refused or never received, for a row it did not answer or
    /// for an answer labelled already is refused. Older requests' labels are published
    /// unchecked, and counted.
    #[arg(long, env = "VIGIE_FEEDBACK_LEDGER", default_value_t = 500_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub feedback_ledger: u64,
}

impl PredictArgs {
    /// The service's settings, publishing to `topic`.
    pub fn config(&self, topic: &str) -> Config {
        Config {
            max_body_bytes: self.max_body_bytes as usize,
            max_batch_rows: self.max_batch_rows as usize,
            max_csv_rows: self.max_csv_rows as usize,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            models: self.models.clone(),
            topic: topic.to_string(),
            queue_max_events: self.queue_max_events,
            linger: Duration::from_millis(self.linger_ms),
            flush_timeout: Duration::from_secs(self.flush_timeout_secs),
            feedback_ledger: self.feedback_ledger as usize,
            ..Config::default()
        }
    }
}

/// `vigie predict` on its own.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub predict: PredictArgs,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let common = args
        .service
        .connect(cli, "vigie predict", "publishes every prediction to Kafka")
        .await?;
    let config = args.predict.config(&args.service.topic);
    let service = PredictService::start(&common, config, &args.predict.listen)
        .await
        .map_err(anyhow::Error::msg)?;
    let models = service.model_ids();
    if models.is_empty() {
        tracing::warn!(
            "no production model in the registry: /ready answers 503 until one is registered"
        );
    }
    println!(
        "vigie predict: listening on {} (models: {}; kafka: {})",
        service.url(),
        listed(&models, "none yet"),
        common.brokers
    );
    service
        .run(vigie_api::shutdown::signal())
        .await
        .map_err(anyhow::Error::msg)
}
