//! `vigie`: the one binary of the platform. Each subcommand is a module of `commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod logging;

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
    /// Log format: json (on stdout; the default of predict, drift and trainer) or text (on
    /// stderr; the default of the other commands). RUST_LOG filters.
    #[arg(long, env = "VIGIE_LOG_FORMAT", global = true, value_enum)]
    log_format: Option<logging::LogFormat>,
    /// Also ship the logs to this Loki server (http://HOST:3100), labelled service and level.
    #[arg(long, env = "LOKI_URL", global = true)]
    loki_url: Option<String>,
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
    Predict(commands::predict::Args),
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
    /// Prepare a registry for the services, idempotently: train the specs of models/ that have
    /// no production version, create the first admin when there is no account.
    Bootstrap(commands::bootstrap::Args),
    /// Manage the accounts of the HTTP services.
    #[command(subcommand)]
    Users(commands::users::Command),
    /// Compare a current features file with a reference one: per-feature drift statistics and
    /// decisions, written as an HTML page and JSON.
    DriftReport(commands::drift_report::Args),
    /// Run the drift service's windows, decisions and alert offline over a features file in
    /// time order or a predictions topic read to its end: per window, each feature's decision
    /// and when the data-set alert would have fired, for the model's rules or rules given here.
    Backtest(commands::backtest::Args),
    /// Draw synthetic rows from a generator fitted on a spec's training data and measure their
    /// fidelity.
    Synthetic(commands::synthetic::Args),
    /// Look at Vigie's Kafka topics.
    #[command(subcommand)]
    Events(commands::events::Command),
}

impl Command {
    /// The `service` label of the logs.
    fn service(&self) -> &'static str {
        match self {
            Command::Predict(_) => "vigie-predict",
            Command::Drift(_) => "vigie-drift",
            Command::Trainer(_) => "vigie-trainer",
            Command::Up(_) => "vigie-up",
            _ => "vigie-cli",
        }
    }

    fn is_service(&self) -> bool {
        matches!(
            self,
            Command::Predict(_) | Command::Drift(_) | Command::Trainer(_) | Command::Up(_)
        )
    }

    /// The long-running services log JSON to stdout unless told otherwise; the rest, whose
    /// stdout is for people, log text to stderr.
    fn default_log_format(&self) -> logging::LogFormat {
        match self {
            Command::Predict(_) | Command::Drift(_) | Command::Trainer(_) => {
                logging::LogFormat::Json
            }
            _ => logging::LogFormat::Text,
        }
    }
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

    /// Opens the registry the global flags name (and creates it, for SQLite).
    async fn registry(&self) -> anyhow::Result<vigie_registry::Registry> {
        use anyhow::Context;
        vigie_registry::Registry::open(&self.database_url(), &self.artifacts_dir())
            .await
            .context("Failed to open the model registry")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli
        .log_format
        .unwrap_or_else(|| cli.command.default_log_format());
    let loki = match logging::init(format, cli.command.service(), cli.loki_url.as_deref()) {
        Ok(loki) => loki,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
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
        let mut loki = loki;
        if let Some(shipper) = &mut loki {
            shipper.start();
        }
        let result = match &cli.command {
            Command::Train(args) => commands::train::run(&cli, args).await,
            Command::Compare(args) => commands::compare::run(args),
            Command::Models(cmd) => commands::models::run(&cli, cmd).await,
            Command::Predict(args) => commands::predict::run(&cli, args).await,
            Command::Drift(args) => commands::drift::run(&cli, args).await,
            Command::Trainer(args) => commands::trainer::run(&cli, args).await,
            Command::Up(args) => commands::up::run(&cli, args).await,
            Command::Users(cmd) => commands::users::run(&cli, cmd).await,
            Command::Bootstrap(args) => commands::bootstrap::run(&cli, args).await,
            Command::Events(cmd) => commands::events::run(&cli, cmd).await,
            Command::Backtest(args) => commands::backtest::run(&cli, args).await,
            Command::DriftReport(args) => {
                tokio::task::block_in_place(|| commands::drift_report::run(args))
            }
            Command::Synthetic(args) => {
                tokio::task::block_in_place(|| commands::synthetic::run(args))
            }
        };
        // In text the error is printed below; JSON and Loki readers get it as a line of theirs.
        if let Err(e) = &result
            && (format == logging::LogFormat::Json || loki.is_some())
        {
            tracing::error!(error = format!("{e:#}"), "vigie failed");
        } else if result.is_ok() && cli.command.is_service() {
            tracing::info!(service = cli.command.service(), "stopped");
        }
        if let Some(shipper) = loki {
            shipper.flush(std::time::Duration::from_secs(5)).await;
        }
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
