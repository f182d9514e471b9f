//! `vigie predict`: the prediction service, against a Kafka broker and the registry.

use anyhow::Context;
use vigie_registry::Registry;

use crate::Cli;
use crate::commands::required;
use crate::commands::serve::{PredictArgs, PredictService};

pub async fn run(cli: &Cli, args: &PredictArgs) -> anyhow::Result<()> {
    let brokers = required(
        args.kafka_brokers.as_deref(),
        "KAFKA_BROKERS (or --kafka-brokers) is not set: `vigie predict` publishes every prediction to Kafka; `vigie up` runs an embedded broker for local use",
    )?;
    let secret = required(
        args.jwt_secret.as_deref(),
        "VIGIE_JWT_SECRET (or --jwt-secret) is not set: tokens need a secret of at least 32 bytes, e.g. `openssl rand -hex 32`; only `vigie up` makes a throwaway one",
    )?;
    let registry = Registry::open(&cli.database_url(), &cli.artifacts_dir())
        .await
        .context("Failed to open the model registry")?;
    let service = PredictService::start(args, registry, brokers, secret.as_bytes()).await?;
    let models = service.model_ids();
    if models.is_empty() {
        tracing::warn!(
            "no production model in the registry: /ready answers 503 until one is registered"
        );
    }
    println!(
        "vigie predict: listening on {} (models: {}; kafka: {brokers})",
        service.url(),
        if models.is_empty() {
            "none yet".to_string()
        } else {
            models.join(", ")
        }
    );
    service.run().await
}
