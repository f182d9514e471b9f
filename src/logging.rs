//! The logs of every `vigie` command: JSON lines on stdout (the services' default, what log
//! collectors read) or text on stderr (the CLI's default, for people), filtered by RUST_LOG,
//! and shipped to Loki as well when LOKI_URL is set, labelled with the service and the level.

use std::time::Duration;

use anyhow::Context;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line on stdout: timestamp, level, target, message and fields.
    Json,
    /// Human-readable lines on stderr.
    Text,
}

const DEFAULT_FILTER: &str =
    "warn,vigie=info,vigie_predict=info,vigie_drift_service=info,vigie_trainer=info,vigie_api=info";

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// Ships log lines to Loki from a background task; started inside the runtime, flushed
/// before the process exits.
pub struct LokiShipper {
    controller: tracing_loki::BackgroundTaskController,
    task: Option<tracing_loki::BackgroundTask>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for LokiShipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LokiShipper")
            .field("started", &self.handle.is_some())
            .finish_non_exhaustive()
    }
}

impl LokiShipper {
    /// Starts sending (lines logged before wait in the channel).
    pub fn start(&mut self) {
        if let Some(task) = self.task.take() {
            self.handle = Some(tokio::spawn(task));
        }
    }

    /// Sends what is still queued and stops, waiting at most `patience` for Loki.
    pub async fn flush(self, patience: Duration) {
        self.controller.shutdown().await;
        if let Some(handle) = self.handle
            && tokio::time::timeout(patience, handle).await.is_err()
        {
            eprintln!("warning: Loki did not take the last log lines within {patience:?}");
        }
    }
}

/// Installs the process's subscriber. `service` becomes the Loki label `service` (Loki adds
/// `level`). Returns the Loki shipper when `loki_url` is set.
pub fn init(
    format: LogFormat,
    service: &str,
    loki_url: Option<&str>,
) -> anyhow::Result<Option<LokiShipper>> {
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    layers.push(match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stdout)
            .with_filter(filter())
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed(),
    });
    let shipper = match loki_url.map(str::trim).filter(|u| !u.is_empty()) {
        None => None,
        Some(url) => {
            let url = tracing_loki::url::Url::parse(url)
                .with_context(|| format!("LOKI_URL: {url:?} is not a URL"))?;
            anyhow::ensure!(
                matches!(url.scheme(), "http" | "https"),
                "LOKI_URL: {url} must be http:// or https://"
            );
            let (layer, controller, task) = tracing_loki::builder()
                .label("service", service)
                .and_then(|b| b.extra_field("pid", std::process::id().to_string()))
                .and_then(|b| b.build_controller_url(url))
                .context("LOKI_URL: cannot set up the Loki layer")?;
            layers.push(layer.with_filter(filter()).boxed());
            Some(LokiShipper {
                controller,
                task: Some(task),
                handle: None,
            })
        }
    };
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .context("cannot install the log subscriber")?;
    Ok(shipper)
}
