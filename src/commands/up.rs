//! `vigie up`: the platform on embedded defaults, in one process. SQLite under VIGIE_HOME,
//! an in-process Kafka-protocol broker unless KAFKA_BROKERS is set, a model trained from
//! models/ when the registry has none, a first admin account, a throwaway JWT secret unless
//! VIGIE_JWT_SECRET is set.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::Rng;
use rand::distributions::Alphanumeric;
use vigie_core::spec::ModelSpec;
use vigie_registry::{Registry, Role, User};
use vigie_stream::EmbeddedBroker;

use vigie_drift_service::DriftService;
use vigie_predict::PredictService;
use vigie_trainer::TrainerService;

use crate::Cli;
use crate::commands::drift::DriftArgs;
use crate::commands::listed;
use crate::commands::predict::PredictArgs;
use crate::commands::service::ServiceArgs;
use crate::commands::trainer::TrainerArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model specs to train when the registry has no production version of them.
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    predict: PredictArgs,
    #[command(flatten)]
    drift: DriftArgs,
    #[command(flatten)]
    trainer: TrainerArgs,
}

fn random_text(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn specs_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut specs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the model specs in {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    specs.sort();
    Ok(specs)
}

/// Trains every spec whose model has no production version yet.
/// An example request body for `model` in this folder's `benchmarks/`: `NAME-request.json`, or
/// the file named after the name's first word (`baac-request.json` for `baac-severity`).
fn example_request(model: &str) -> Option<String> {
    let first = model.split('-').next().unwrap_or(model);
    [model, first]
        .iter()
        .map(|stem| format!("benchmarks/{stem}-request.json"))
        .find(|file| Path::new(file).is_file())
}

pub async fn ensure_models(registry: &Registry, dir: &Path) -> anyhow::Result<()> {
    let production = registry.production().await?;
    for path in specs_in(dir)? {
        let spec = ModelSpec::from_file(&path)?;
        if production.iter().any(|v| v.name == spec.name) {
            continue;
        }
        println!(
            "Training {} from {} (first start; a few seconds)...",
            spec.name,
            path.display()
        );
        let trained =
            tokio::task::spawn_blocking(move || vigie_core::train::train(&spec, &mut |_| {}))
                .await
                .context("training panicked")??;
        let (version, _) = registry.register(trained, "vigie-up").await?;
        println!(
            "  registered {}: holdout {}",
            version.id(),
            super::models::headline(&version)
        );
    }
    Ok(())
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let database_url = cli.database_url();
    let registry = cli.registry().await?;
    ensure_models(&registry, &args.models_dir).await?;

    let mut admin_line = None;
    if registry.users().await?.is_empty() {
        let password = random_text(20);
        let hash = {
            let p = password.clone();
            tokio::task::spawn_blocking(move || vigie_api::auth::hash_password(&p))
                .await?
                .map_err(anyhow::Error::msg)?
        };
        registry
            .add_user(&User {
                name: "admin".into(),
                role: Role::Admin,
                password_hash: hash,
                created_at: chrono::Utc::now().timestamp(),
                created_by: "vigie-up".into(),
            })
            .await?;
        admin_line = Some(format!(
            "admin / {password} (created now, shown once; `vigie users add NAME` adds more)"
        ));
    }

    // The broker: the configured one, or an embedded one that lives as long as this process.
    let embedded;
    let (brokers, broker_line) = match args
        .service
        .kafka_brokers
        .as_deref()
        .filter(|b| !b.is_empty())
    {
        Some(b) => (b.to_string(), format!("{b} (KAFKA_BROKERS)")),
        None => {
            embedded = EmbeddedBroker::start().context("cannot start the embedded broker")?;
            let b = embedded.bootstrap_servers();
            let line = format!(
                "embedded broker at {b} (in memory, the last {} MiB of each partition; gone when vigie up stops)",
                vigie_stream::embedded::RETAINED_BYTES >> 20
            );
            (b, line)
        }
    };
    let (secret, secret_line) = match args.service.jwt_secret.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => (s.to_string(), "from VIGIE_JWT_SECRET".to_string()),
        None => (
            random_text(48),
            "generated for this run: tokens stop working when vigie up stops (set VIGIE_JWT_SECRET to keep them)".to_string(),
        ),
    };

    let common = args.service.common(registry, brokers, secret);
    let topic = &args.service.topic;
    let service = PredictService::start(&common, args.predict.config(topic), &args.predict.listen)
        .await
        .map_err(anyhow::Error::msg)?;
    let mut trainer_args = args.trainer.clone();
    // The trainer retrains from the specs vigie up trained from.
    trainer_args.trainer_models_dir = args.models_dir.clone();
    let webhook_line = match trainer_args
        .webhook_token
        .as_deref()
        .filter(|t| !t.is_empty())
    {
        Some(_) => "from VIGIE_WEBHOOK_TOKEN".to_string(),
        None => {
            let token = random_text(32);
            trainer_args.webhook_token = Some(token.clone());
            format!("{token} (generated for this run; set VIGIE_WEBHOOK_TOKEN to keep one)")
        }
    };
    let trainer = TrainerService::start(
        &common,
        trainer_args.config(topic)?,
        &trainer_args.trainer_listen,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let trainer_url = trainer.url();
    let mut drift_config = args.drift.config(topic);
    // The embedded broker cannot say whether a topic is compacted (its partials topic is
    // Vigie's own, and holds the last few MiB of each partition).
    drift_config.check_compaction = !broker_line.starts_with("embedded");
    // The overview links the runs' pages on this trainer.
    drift_config
        .trainer_url
        .get_or_insert_with(|| trainer_url.clone());
    let drift = DriftService::start(&common, drift_config, &args.drift.drift_listen)
        .await
        .map_err(anyhow::Error::msg)?;
    let drift_url = drift.url();
    let url = service.url();
    let models = service.model_ids();
    let example_model = models
        .first()
        .and_then(|id| id.split('@').next())
        .unwrap_or("MODEL");
    println!("Vigie is up. Open {drift_url}/ in a browser and sign in as admin:");
    println!("  the overview of every model, its drift over time, noise injection, the runs.");
    println!("  prediction service  {url}  (docs: {url}/docs, metrics: {url}/metrics)");
    println!(
        "  drift service       {drift_url}  (state: {drift_url}/v1/drift, report: {drift_url}/v1/drift/report, metrics: {drift_url}/metrics)"
    );
    println!(
        "  trainer             {trainer_url}  (models and runs: {trainer_url}/, API: {trainer_url}/v1/runs, Alertmanager webhook: {trainer_url}/v1/alerts)"
    );
    println!("  models              {}", listed(&models, "none"));
    println!("  registry            {database_url}");
    println!("  kafka               {broker_line}");
    println!("  jwt secret          {secret_line}");
    println!("  webhook token       {webhook_line}");
    if let Some(line) = &admin_line {
        println!("  admin account       {line}");
    }
    println!("Get a token:");
    println!(
        "  TOKEN=$(curl -s {url}/auth/token -d username=admin -d password=PASSWORD | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')"
    );
    println!("Predict (each model's request body is in its docs: {url}/docs):");
    for id in &models {
        let name = id.split('@').next().unwrap_or(id);
        match example_request(name) {
            Some(file) => println!(
                "  curl -s {url}/v1/models/{name}/predict -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d @{file}"
            ),
            None => println!(
                "  curl -s {url}/v1/models/{name}/predict -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{{\"features\": {{...}}}}'"
            ),
        }
    }
    println!("Watch drift, and inject noise (admin) to see it react:");
    println!(
        "  curl -s '{drift_url}/v1/drift?model={example_model}' -H \"Authorization: Bearer $TOKEN\""
    );
    println!(
        "  curl -s {drift_url}/config/noise -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{{\"model\": \"{example_model}\", \"mode\": \"category_swap\", \"rate\": 1.0, \"ttl_seconds\": 600}}'"
    );
    println!(
        "Retrain now (admin; without Prometheus and Alertmanager, drift alerts cannot call the trainer: scripts/alerting starts them beside vigie up):"
    );
    println!(
        "  curl -s -X POST {trainer_url}/v1/models/{example_model}/retrain -H \"Authorization: Bearer $TOKEN\""
    );
    println!("Stop with Ctrl-C.");
    let signal = vigie_api::shutdown::signal;
    tokio::try_join!(
        service.run(signal()),
        drift.run(signal()),
        trainer.run(signal())
    )
    .map(|_| ())
    .map_err(anyhow::Error::msg)
}
