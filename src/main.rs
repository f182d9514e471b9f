//! `vigie`: the one binary of the platform. Each subcommand is a module of `commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

/// Serve emergency-dispatch models and watch them drift.
#[derive(Debug, Parser)]
#[command(name = "vigie", version, about)]
struct Cli {
    /// Folder for local state: the SQLite registry and the model artifacts.
    #[arg(long, env = "VIGIE_HOME", default_value = "var", global = true)]
    home: PathBuf,
    /// Registry database: `sqlite://FILE` or `postgres://...`; default `sqlite://HOME/registry.db`.
    #[arg(long, env = "DATABASE_URL", global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a model from its spec, evaluate it on the fixed holdout and register it.
    Train(commands::train::Args),
    /// Train several algorithms on one spec's data and print their holdout figures side by side.
    Compare(commands::compare::Args),
    /// List, inspect and promote registered model versions.
    #[command(subcommand)]
    Models(commands::models::Command),
    /// Run the prediction service (needs KAFKA_BROKERS and VIGIE_JWT_SECRET).
    Predict(commands::serve::PredictArgs),
    /// Run the drift service: consumes the predictions topic, scores each model's traffic
    /// against its reference (needs KAFKA_BROKERS and VIGIE_JWT_SECRET).
    Drift(commands::drift::Args),
    /// Run the trainer: Alertmanager's webhook starts a retraining; the candidate is promoted
    /// only when it beats production on the fixed holdout (needs KAFKA_BROKERS,
    /// VIGIE_JWT_SECRET and VIGIE_WEBHOOK_TOKEN).
    Trainer(commands::trainer::Args),
    /// Run the platform on embedded defaults: SQLite, an in-process broker, a model trained
    /// from models/ if the registry has none, a first admin account.
    Up(Box<commands::up::Args>),
    /// Manage the accounts of the HTTP services.
    #[command(subcommand)]
    Users(commands::users::Command),
    /// Compare a current features file with a reference one: per-feature drift statistics and
    /// decisions, written as an HTML page and JSON.
    DriftReport(commands::drift_report::Args),
    /// Draw synthetic rows from a generator fitted on a spec's training data and measure their
    /// fidelity.
    Synthetic(commands::synthetic::Args),
    /// Look at Vigie's Kafka topics.
    #[command(subcommand)]
    Events(commands::events::Command),
}

impl Cli {
    fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.home.join("registry.db").display()))
    }

    fn artifacts_dir(&self) -> PathBuf {
        self.home.join("artifacts")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "warn,vigie=info,vigie_predict=info,vigie_drift_service=info,vigie_trainer=info,vigie_api=info".into()
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Train(args) => commands::train::run(&cli, args).await,
            Command::Compare(args) => commands::compare::run(args),
            Command::Models(cmd) => commands::models::run(&cli, cmd).await,
            Command::Predict(args) => commands::predict::run(&cli, args).await,
            Command::Drift(args) => commands::drift::run(&cli, args).await,
            Command::Trainer(args) => commands::trainer::run(&cli, args).await,
            Command::Up(args) => commands::up::run(&cli, args).await,
            Command::Users(cmd) => commands::users::run(&cli, cmd).await,
            Command::Events(cmd) => commands::events::run(&cli, cmd).await,
            Command::DriftReport(args) => {
                tokio::task::block_in_place(|| commands::drift_report::run(args))
            }
            Command::Synthetic(args) => {
                tokio::task::block_in_place(|| commands::synthetic::run(args))
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
