//! `vigie drift`: the drift service, and its settings (shared with `vigie up`).

use std::time::Duration;

use vigie_drift_service::quality::QualityConfig;
use vigie_drift_service::{Config, DriftService, WindowConfig, auto_pane_ms};

use crate::Cli;
use crate::commands::listed;
use crate::commands::service::ServiceArgs;

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
    /// The consumer group: instances of one group share the partitions (one group per
    /// deployment).
    #[arg(long, env = "VIGIE_DRIFT_GROUP", default_value = "vigie-drift")]
    pub group: String,
    /// The compacted topic the group's instances share their partitions' counts on.
    #[arg(long, env = "VIGIE_DRIFT_PARTIALS_TOPIC", default_value = vigie_stream::PARTIALS_TOPIC)]
    pub partials_topic: String,
    /// This instance's name in its group (default: the host's name and the process id).
    #[arg(long, env = "VIGIE_DRIFT_INSTANCE")]
    pub instance: Option<String>,
    /// How long the group waits for a silent instance before moving its partitions to the
    /// others, in milliseconds.
    #[arg(long, env = "VIGIE_DRIFT_SESSION_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1_000..=300_000))]
    pub session_timeout_ms: u64,
    /// How long the broker may hold a fetch of the predictions that finds nothing new, in
    /// milliseconds. Kafka answers a fetch as soon as events come, whatever the wait; tansu
    /// holds it the whole wait, so the default (10) keeps its throughput, and a larger one
    /// spares a busy broker the fetches of idle instances.
    #[arg(long, env = "VIGIE_DRIFT_FETCH_WAIT_MS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub fetch_wait_ms: u64,
    /// Width of each model's sliding window: the last this many seconds of event time.
    #[arg(long, env = "VIGIE_DRIFT_WINDOW_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=30 * 24 * 3600))]
    pub window_secs: u64,
    /// Width of the panes windows are made of, in milliseconds: it divides the sliding and the
    /// tumbling windows' widths (default: the widest that does, up to 5 s, or a twelfth of
    /// windows wider than a minute).
    #[arg(long, env = "VIGIE_DRIFT_PANE_MS",
          value_parser = clap::value_parser!(u64).range(1..=30 * 24 * 3600 * 1000))]
    pub pane_ms: Option<u64>,
    /// Width of the tumbling event-time windows, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=7 * 24 * 3600))]
    pub tumbling_secs: u64,
    /// How late an event may arrive for its tumbling window, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=24 * 3600))]
    pub lateness_secs: u64,
    /// Closed tumbling windows kept (and shown in /v1/drift).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub retain_windows: u64,
    /// The pages' history of each model's drift: at most one point per this many seconds
    /// (default: every scoring, --score-ms).
    #[arg(long, env = "VIGIE_DRIFT_HISTORY_STEP_SECS",
          value_parser = clap::value_parser!(u64).range(1..=24 * 3600))]
    pub history_step_secs: Option<u64>,
    /// Most points kept in each model's history (the default: three hours at the default
    /// scoring period); each takes about 16 bytes per feature in memory and 30 in the saved
    /// history.
    #[arg(long, env = "VIGIE_DRIFT_HISTORY_POINTS", default_value_t = 2_160,
          value_parser = clap::value_parser!(u64).range(2..=100_000))]
    pub history_points: u64,
    /// The trainer's URL as a browser reaches it: the overview links its runs' pages there.
    #[arg(long, env = "VIGIE_TRAINER_URL")]
    pub trainer_url: Option<String>,
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
    /// Longest wait of an answer for its label (and of a label for its answer), in seconds.
    #[arg(long, env = "VIGIE_LABEL_WAIT_SECS", default_value_t = 72 * 3600,
          value_parser = clap::value_parser!(u64).range(1..=365 * 24 * 3600))]
    pub label_wait_secs: u64,
    /// Most answers waiting for a label per model (the oldest leave first, counted); each
    /// takes about 90 bytes of every checkpoint.
    #[arg(long, env = "VIGIE_LABEL_CAPACITY", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub label_capacity: u64,
    /// Labelled answers a model's realised quality is measured on (the last ones).
    #[arg(long, env = "VIGIE_QUALITY_WINDOW", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub quality_window: u64,
    /// Periods (tumbling windows' width, event time) whose answers and labels are kept, each
    /// with its estimated and realised quality (the newest; about 24 KB each for a
    /// classification).
    #[arg(long, env = "VIGIE_QUALITY_PERIODS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub quality_periods: u64,
}

impl DriftArgs {
    /// The service's settings, reading `topic`.
    pub fn config(&self, topic: &str) -> Config {
        let sliding_ms = self.window_secs as i64 * 1000;
        let tumbling_ms = self.tumbling_secs as i64 * 1000;
        Config {
            group: self.group.clone(),
            topic: topic.to_string(),
            windows: WindowConfig {
                sliding_ms,
                pane_ms: self
                    .pane_ms
                    .map_or_else(|| auto_pane_ms(sliding_ms, tumbling_ms), |p| p as i64),
                tumbling_ms,
                lateness_ms: self.lateness_secs as i64 * 1000,
                retain: self.retain_windows as usize,
                quality: QualityConfig {
                    wait_ms: self.label_wait_secs as i64 * 1000,
                    capacity: self.label_capacity as usize,
                    window: self.quality_window as usize,
                    periods: self.quality_periods as usize,
                    // The watch sets the periods' width from the tumbling windows'.
                    ..QualityConfig::default()
                },
                history_step_ms: self
                    .history_step_secs
                    .map_or(self.score_ms as i64, |s| s as i64 * 1000),
                history_points: self.history_points as usize,
            },
            score_interval: Duration::from_millis(self.score_ms),
            checkpoint_interval: Duration::from_millis(self.checkpoint_ms),
            models: self.drift_models.clone(),
            max_noise_ttl: Duration::from_secs(self.max_noise_ttl_secs),
            partials_topic: self.partials_topic.clone(),
            instance: self
                .instance
                .clone()
                .unwrap_or_else(vigie_drift_service::state::default_instance),
            session_timeout: Duration::from_millis(self.session_timeout_ms),
            fetch_wait: Duration::from_millis(self.fetch_wait_ms),
            trainer_url: self.trainer_url.clone(),
            ..Config::default()
        }
    }
}

/// `vigie drift` on its own.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub drift: DriftArgs,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let common = args
        .service
        .connect(cli, "vigie drift", "consumes the predictions topic")
        .await?;
    let config = args.drift.config(&args.service.topic);
    let service = DriftService::start(&common, config, &args.drift.drift_listen)
        .await
        .map_err(anyhow::Error::msg)?;
    let models = service.model_ids();
    println!(
        "vigie drift: listening on {} (models: {}; kafka: {}; group: {})",
        service.url(),
        listed(&models, "none yet"),
        common.brokers,
        args.drift.group
    );
    service
        .run(vigie_api::shutdown::signal())
        .await
        .map_err(anyhow::Error::msg)
}
