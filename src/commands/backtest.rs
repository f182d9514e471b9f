//! `vigie backtest`: run the drift service's windows, decisions and alert offline over a stream
//! of events (a features file in time order, or a predictions topic read to its end), for a
//! model's current rules or rules given here: what-if before changing a spec.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use vigie_core::inference::Model;
use vigie_core::schema::Schema;
use vigie_drift::DriftRules;
use vigie_drift_service::WindowConfig;
use vigie_drift_service::backtest::{AlertState, Backtest, BacktestConfig, Summary, WindowRecord};
use vigie_drift_service::noise::NoiseRequest;
use vigie_drift_service::quality::QualityConfig;
use vigie_drift_service::watch::Reference;
use vigie_registry::ModelRef;

use crate::Cli;
use crate::commands::events::{EventBuilder, unseen_by_row};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model whose reference and rules are backtested: NAME (its production version) or
    /// NAME@VERSION.
    #[arg(long)]
    model: String,
    /// A features file with the spec's columns, one event per row in time order; the model
    /// answers each row as the prediction service would.
    #[arg(long, conflicts_with = "topic", required_unless_present = "topic")]
    features: Option<PathBuf>,
    /// The column of the features file that holds each event's time (RFC 3339, or a UTC date
    /// and time); without it the rows are `--events-per-second` apart.
    #[arg(long, requires = "features")]
    time_column: Option<String>,
    /// Without a time column: the events' rate.
    #[arg(long, default_value_t = 1.0)]
    events_per_second: f64,
    /// Without a time column: the first event's time (RFC 3339).
    #[arg(long, default_value = "2026-01-01T00:00:00Z")]
    start: chrono::DateTime<chrono::Utc>,
    /// A predictions topic to read to its end instead of a file.
    #[arg(long)]
    topic: Option<String>,
    #[arg(long, env = "KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Give up reading the topic (with an error) after this many seconds.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    limit_secs: u64,
    /// Drift rules replacing the spec's: a TOML file written as the spec's `[drift]` table.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Expected data-set alerts per 30 days when nothing drifted (replaces the rules').
    #[arg(long)]
    false_alarms_per_30_days: Option<f64>,
    /// The share of drifted features that makes the data set drifted (replaces the rules').
    #[arg(long)]
    dataset_share: Option<f64>,
    /// The fewest events a window is scored with (replaces the rules').
    #[arg(long)]
    min_rows: Option<u64>,
    /// The share of the thresholds a drifted feature must fall back below to leave drift, in
    /// (0, 1] (replaces the rules'; 1: no hysteresis).
    #[arg(long)]
    hysteresis: Option<f64>,
    /// Decide on the rules' thresholds alone, without the noise thresholds (the engine before
    /// them): what the fixed rules would have said.
    #[arg(long)]
    floor_only: bool,
    /// Events in the sliding window.
    #[arg(long, default_value_t = WindowConfig::default().sliding_events as u64,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    window_events: u64,
    /// Width of the tumbling event-time windows, in seconds.
    #[arg(long, default_value_t = (WindowConfig::default().tumbling_ms / 1000) as u64,
          value_parser = clap::value_parser!(u64).range(1..=7 * 24 * 3600))]
    tumbling_secs: u64,
    /// How late an event may arrive for its tumbling window, in seconds.
    #[arg(long, default_value_t = (WindowConfig::default().lateness_ms / 1000) as u64,
          value_parser = clap::value_parser!(u64).range(0..=24 * 3600))]
    lateness_secs: u64,
    /// The scoring period, in milliseconds of event time (the drift service's --score-ms).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..))]
    score_ms: u64,
    /// How long the data set must stay drifted before the alert fires, in seconds (the shipped
    /// rule VigieDataDrift says 2 minutes).
    #[arg(long, default_value_t = 120)]
    alert_for_secs: u64,
    /// Noise to inject, as the body of `POST /config/noise` (e.g.
    /// '{"mode":"gaussian","rate":0.5,"scale":2}'): what the alert's delay would be.
    #[arg(long)]
    noise: Option<String>,
    /// The counted event the noise starts at.
    #[arg(long, default_value_t = 0)]
    noise_after_events: u64,
    /// Folder for windows.jsonl (every scored window), decisions.csv (one line per window and
    /// feature) and summary.json.
    #[arg(long, default_value = "backtest")]
    out: PathBuf,
}

/// The rules to backtest: the spec's, or a file's, with the flags' replacements; checked.
fn rules(args: &Args, reference: &Reference) -> anyhow::Result<DriftRules> {
    let mut rules = match &args.rules {
        None => reference.rules.clone(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let rules: DriftRules =
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            if rules.null != reference.rules.null {
                anyhow::bail!(
                    "{}: drift.null differs from the model's: the null distributions are computed when the model is trained; train a version with these settings to backtest them",
                    path.display()
                );
            }
            rules
        }
    };
    if let Some(target) = args.false_alarms_per_30_days {
        rules.false_alarms_per_30_days = target;
    }
    if let Some(share) = args.dataset_share {
        rules.dataset_share = share;
    }
    if let Some(min_rows) = args.min_rows {
        rules.min_rows = min_rows;
    }
    if let Some(hysteresis) = args.hysteresis {
        rules.hysteresis = hysteresis;
    }
    rules
        .check(&reference.profile)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(rules)
}

/// Where the backtest writes, as it goes.
struct Output {
    windows: std::io::BufWriter<std::fs::File>,
    decisions: std::io::BufWriter<std::fs::File>,
    records: Vec<WindowRecord>,
    written: u64,
}

impl Output {
    fn create(dir: &std::path::Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let file = |name: &str| {
            let path = dir.join(name);
            std::fs::File::create(&path)
                .map(std::io::BufWriter::new)
                .with_context(|| format!("cannot create {}", path.display()))
        };
        let mut decisions = file("decisions.csv")?;
        writeln!(
            decisions,
            "window,at,start,events,rows,scored,feature,statistic,score,noise_threshold,floor,drifted,held,dataset_drifted,alert"
        )?;
        Ok(Output {
            windows: file("windows.jsonl")?,
            decisions,
            records: Vec::new(),
            written: 0,
        })
    }

    /// Writes the records gathered so far.
    fn flush(&mut self) -> anyhow::Result<()> {
        for r in self.records.drain(..) {
            serde_json::to_writer(&mut self.windows, &r)?;
            self.windows.write_all(b"\n")?;
            let start = r.start.map(|s| s.to_rfc3339()).unwrap_or_default();
            let alert = r.alert.map_or("", AlertState::as_str);
            for f in &r.features {
                writeln!(
                    self.decisions,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    r.window,
                    r.at.to_rfc3339(),
                    start,
                    r.events,
                    r.rows,
                    r.scored,
                    f.name,
                    f.statistic,
                    f.score,
                    f.noise_threshold.map(|t| t.to_string()).unwrap_or_default(),
                    f.floor,
                    f.drifted,
                    f.held,
                    r.dataset_drifted,
                    alert
                )?;
            }
            self.written += 1;
        }
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<u64> {
        self.flush()?;
        self.windows.flush()?;
        self.decisions.flush()?;
        Ok(self.written)
    }
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let registry = cli.registry().await?;
    let wanted: ModelRef = args.model.parse()?;
    let version = registry.resolve(&wanted).await?;
    let r = registry.clone();
    let v = version.clone();
    let artifact = tokio::task::spawn_blocking(move || r.load(&v)).await??;
    let mut reference = Reference::of_artifact(&artifact);
    reference.rules = rules(args, &reference)?;
    if args.floor_only {
        reference.profile.null = None;
    }
    let noise = match &args.noise {
        Some(body) => {
            let request = NoiseRequest::parse(body.as_bytes())
                .map_err(|e| anyhow::anyhow!("--noise: {}", e.message))?;
            Some((request.spec, args.noise_after_events))
        }
        None => None,
    };
    let config = BacktestConfig {
        windows: WindowConfig {
            sliding_events: args.window_events as usize,
            tumbling_ms: args.tumbling_secs as i64 * 1000,
            lateness_ms: args.lateness_secs as i64 * 1000,
            // Every window that can close between two scorings (or at the end) is kept
            // until scored.
            retain: ((args.score_ms + args.lateness_secs * 1000) / (args.tumbling_secs * 1000))
                as usize
                + 3,
            quality: QualityConfig::default(),
        },
        score_ms: args.score_ms as i64,
        alert_for_ms: args.alert_for_secs as i64 * 1000,
        noise,
    };
    let rules = reference.rules.clone();
    let mut backtest =
        Backtest::new(reference, config).map_err(|e| anyhow::anyhow!("--noise: {e}"))?;
    let source;
    let mut output;
    if let Some(features) = &args.features {
        source = features.display().to_string();
        let model = Model::new(artifact);
        // The file is read and checked before anything is written.
        let events = tokio::task::block_in_place(|| file_events(args, features, &model, &version))?;
        output = Output::create(&args.out)?;
        for (i, payload) in events.enumerate() {
            backtest.event(0, i as i64, &payload, &mut output.records);
            if output.records.len() >= 64 {
                output.flush()?;
            }
        }
    } else {
        let topic = args.topic.clone().unwrap_or_default();
        let brokers = args
            .kafka_brokers
            .clone()
            .context("--kafka-brokers (or KAFKA_BROKERS) is needed to read a topic")?;
        source = topic.clone();
        output = Output::create(&args.out)?;
        let limit = Duration::from_secs(args.limit_secs);
        tokio::task::block_in_place(|| {
            let mut failed = None;
            vigie_stream::read::scan_to_end(&brokers, &topic, limit, |record| {
                backtest.event(
                    record.partition,
                    record.offset,
                    &record.payload,
                    &mut output.records,
                );
                match output.flush() {
                    Ok(()) => vigie_stream::read::Scan::Continue,
                    Err(e) => {
                        failed = Some(e);
                        vigie_stream::read::Scan::Stop
                    }
                }
            })?;
            failed.map_or(Ok(()), Err)
        })?;
    }
    let summary = backtest.finish(&mut output.records);
    let windows = output.finish()?;
    let summary_path = args.out.join("summary.json");
    std::fs::write(&summary_path, serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("cannot write {}", summary_path.display()))?;
    print_summary(&summary, &rules, &source, args.floor_only);
    println!(
        "Backtested in {:.2} s; wrote {windows} windows to {} (and decisions.csv, summary.json)",
        started.elapsed().as_secs_f64(),
        args.out.join("windows.jsonl").display()
    );
    Ok(())
}

/// The events of a features file's rows, each answered by the model, in the file's order;
/// the file and its times checked first.
fn file_events<'a>(
    args: &Args,
    path: &std::path::Path,
    model: &'a Model,
    version: &'a vigie_registry::ModelVersion,
) -> anyhow::Result<impl Iterator<Item = Vec<u8>> + 'a> {
    let spec = &model.artifact().spec;
    let schema = Schema::new(spec);
    let (x, report) = vigie_core::dataset::load_features(spec, &schema, path)?;
    let unseen = unseen_by_row(&report, x.rows());
    anyhow::ensure!(x.rows() > 0, "{} has no rows", path.display());
    let times: Vec<i64> = match &args.time_column {
        Some(column) => vigie_core::dataset::load_times(spec, path, column)?,
        None => {
            anyhow::ensure!(
                args.events_per_second.is_finite() && args.events_per_second > 0.0,
                "--events-per-second must be above 0, got {}",
                args.events_per_second
            );
            let start = args.start.timestamp_millis();
            (0..x.rows())
                .map(|i| start + (i as f64 * 1000.0 / args.events_per_second) as i64)
                .collect()
        }
    };
    let predictions = model.predict_batch(&x);
    let events = EventBuilder::new(model, &version.name, version.version);
    let request_id = format!("backtest-{}", path.display());
    Ok(times.into_iter().enumerate().map(move |(i, t)| {
        let ts = chrono::DateTime::from_timestamp_millis(t).unwrap_or_default();
        events.payload(
            x.row(i),
            &unseen[i],
            &predictions[i],
            &format!("backtest-{i}"),
            &request_id,
            &ts,
            i as u64,
        )
    }))
}

fn print_summary(summary: &Summary, rules: &DriftRules, source: &str, floor_only: bool) {
    println!(
        "Backtest of {}@{} on {source}: {} events read, {} counted{}",
        summary.model,
        summary.version,
        summary.read,
        summary.counted,
        if summary.skipped.is_empty() {
            String::new()
        } else {
            format!(
                " ({} skipped: {})",
                summary.skipped.values().sum::<u64>(),
                summary
                    .skipped
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    if let (Some(first), Some(last)) = (summary.first_event, summary.last_event) {
        println!("Events from {first} to {last}");
    }
    if floor_only {
        println!(
            "Rules: {} / {}, alone (no noise thresholds); data set drifted at {} of the features; at least {} events",
            rules.categorical, rules.numerical, rules.dataset_share, rules.min_rows
        );
    } else {
        println!(
            "Rules: {} / {}, effect floors; {} expected false alarms per 30 days; data set drifted at {} of the features; at least {} events",
            rules.categorical,
            rules.numerical,
            rules.false_alarms_per_30_days,
            rules.dataset_share,
            rules.min_rows
        );
    }
    if rules.hysteresis < 1.0 {
        println!(
            "Hysteresis: a drifted feature stays so until under {} of its thresholds",
            rules.hysteresis
        );
    }
    println!(
        "Sliding window: {} scorings, {} with enough events, data set drifted in {}",
        summary.scorings, summary.scored, summary.dataset_drifted
    );
    println!(
        "Tumbling windows: {} closed, {} with enough events, data set drifted in {}",
        summary.tumbling, summary.tumbling_scored, summary.tumbling_drifted
    );
    let drifted: Vec<String> = summary
        .feature_drifted
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(f, n)| format!("{f} {n}"))
        .collect();
    println!(
        "Features drifted (scorings): {}",
        if drifted.is_empty() {
            "none".to_string()
        } else {
            drifted.join(", ")
        }
    );
    if let Some(from) = summary.noise_from_event {
        println!("Noise injected from event {from}");
    }
    if summary.alerts.is_empty() {
        println!("The data-set alert would not have fired");
    }
    for a in &summary.alerts {
        let delay = summary
            .noise_from_event
            .map(|n| {
                format!(
                    "; {} events after the noise started",
                    a.fired_events.saturating_sub(n)
                )
            })
            .unwrap_or_default();
        println!(
            "The data-set alert would have fired at {} (event {}; drifted since {}, event {}){delay}{}",
            a.fired_at,
            a.fired_events,
            a.pending_at,
            a.pending_events,
            a.resolved_at
                .map(|r| format!("; resolved at {r}"))
                .unwrap_or_default()
        );
    }
}
