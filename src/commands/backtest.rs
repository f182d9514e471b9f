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
use vigie_drift_service::backtest::{AlertState, Backtest, BacktestConfig, Summary, WindowRecord};
use vigie_drift_service::noise::NoiseRequest;
use vigie_drift_service::quality::{PeriodView, QualityConfig};
use vigie_drift_service::watch::Reference;
use vigie_drift_service::{WindowConfig, auto_pane_ms};
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
    /// Width of the sliding window, in seconds of event time (the drift service's
    /// --window-secs).
    #[arg(long, default_value_t = (WindowConfig::default().sliding_ms / 1000) as u64,
          value_parser = clap::value_parser!(u64).range(1..=30 * 24 * 3600))]
    window_secs: u64,
    /// Width of the panes, in milliseconds (the drift service's --pane-ms).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=30 * 24 * 3600 * 1000))]
    pane_ms: Option<u64>,
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
    /// Inject the noise into what the model sees, before it answers (its answers and quality
    /// change with it), instead of into the events the drift service counts. Needs a file.
    #[arg(long, requires_all = ["noise", "features"])]
    noise_before_model: bool,
    /// The features file's target file (the spec's target column, one row per features row):
    /// each row's label is given `--label-delay-secs` after its event, as feedback would be,
    /// and joined to its answer; the realised quality per period is set beside the estimate.
    #[arg(long, requires = "features")]
    labels: Option<PathBuf>,
    /// How long after its event each label comes, in seconds.
    #[arg(long, default_value_t = 60, requires = "labels")]
    label_delay_secs: u64,
    /// Periods a quality figure is compared on need at least this many labels.
    #[arg(long, default_value_t = 100, requires = "labels")]
    min_period_labels: u64,
    /// Folder for windows.jsonl (every scored window), decisions.csv (one line per window and
    /// feature), quality.jsonl (every period's estimated and realised quality) and
    /// summary.json.
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
    // Noise before the model is the file's business; the drift service sees its events.
    let (noise, model_noise) = if args.noise_before_model {
        let injector = match &noise {
            Some((spec, after)) => Some((
                vigie_synthetic::Injector::new(spec.clone(), &artifact.reference)
                    .map_err(|e| anyhow::anyhow!("--noise: {e}"))?,
                *after,
            )),
            None => None,
        };
        (None, injector)
    } else {
        (noise, None)
    };
    let sliding_ms = args.window_secs as i64 * 1000;
    let tumbling_ms = args.tumbling_secs as i64 * 1000;
    let config = BacktestConfig {
        windows: WindowConfig {
            sliding_ms,
            pane_ms: args
                .pane_ms
                .map_or_else(|| auto_pane_ms(sliding_ms, tumbling_ms), |p| p as i64),
            tumbling_ms,
            lateness_ms: args.lateness_secs as i64 * 1000,
            // Every window that can close between two scorings (or at the end) is kept
            // until scored.
            retain: ((args.score_ms + args.lateness_secs * 1000) / (args.tumbling_secs * 1000))
                as usize
                + 3,
            quality: QualityConfig {
                // A replay keeps every period (a file's are at most its rows).
                periods: 1_000_000,
                ..QualityConfig::default()
            },
            ..WindowConfig::default()
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
        let replay = tokio::task::block_in_place(|| {
            file_events(args, features, &model, &version, model_noise)
        })?;
        output = Output::create(&args.out)?;
        if !replay.answers.is_empty() {
            write_answers(args, &replay.times, &replay.answers)?;
        }
        let mut labels = replay.labels.into_iter().enumerate().peekable();
        for (i, payload) in replay.events.enumerate() {
            let at = replay.times[i];
            while let Some((j, (due, label))) = labels.next_if(|(_, (due, _))| *due <= at) {
                backtest.label(j as i64, due, &label, &mut output.records);
            }
            backtest.event(0, i as i64, &payload, &mut output.records);
            if output.records.len() >= 64 {
                output.flush()?;
            }
        }
        for (j, (due, label)) in labels {
            backtest.label(j as i64, due, &label, &mut output.records);
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
    let periods = backtest.periods();
    let summary = backtest.finish(&mut output.records);
    let windows = output.finish()?;
    let quality_path = args.out.join("quality.jsonl");
    let mut quality = std::io::BufWriter::new(
        std::fs::File::create(&quality_path)
            .with_context(|| format!("cannot create {}", quality_path.display()))?,
    );
    for p in &periods {
        serde_json::to_writer(&mut quality, p)?;
        quality.write_all(b"\n")?;
    }
    quality.flush()?;
    let summary_path = args.out.join("summary.json");
    std::fs::write(&summary_path, serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("cannot write {}", summary_path.display()))?;
    print_summary(&summary, &rules, &source, args.floor_only);
    if args.labels.is_some() {
        let noise_from = if args.noise_before_model {
            Some(args.noise_after_events)
        } else {
            summary.noise_from_event
        };
        print_quality(&summary, &periods, args.min_period_labels, noise_from);
    }
    println!(
        "Backtested in {:.2} s; wrote {windows} windows to {} (and decisions.csv, summary.json)",
        started.elapsed().as_secs_f64(),
        args.out.join("windows.jsonl").display()
    );
    Ok(())
}

/// A file replayed: its events in order, their times, and the labels (when a target file is
/// given) with the time each is due, in that order.
struct Replay<I> {
    events: I,
    times: Vec<i64>,
    labels: Vec<(i64, Vec<u8>)>,
    /// A classification's answers with their truth: probability, class, label.
    answers: Vec<(f64, u8, f64)>,
}

/// The events of a features file's rows, each answered by the model (after the noise, when it
/// is injected before the model), in the file's order, and their labels; the files and the
/// times checked first.
fn file_events<'a>(
    args: &Args,
    path: &std::path::Path,
    model: &'a Model,
    version: &'a vigie_registry::ModelVersion,
    noise: Option<(vigie_synthetic::Injector, u64)>,
) -> anyhow::Result<Replay<impl Iterator<Item = Vec<u8>> + 'a>> {
    let spec = &model.artifact().spec;
    let schema = Schema::new(spec);
    let (mut x, report, y) = match &args.labels {
        Some(target) => {
            let data = vigie_core::dataset::load(spec, &schema, path, target)?;
            (data.x, data.report, Some(data.y))
        }
        None => {
            let (x, report) = vigie_core::dataset::load_features(spec, &schema, path)?;
            (x, report, None)
        }
    };
    if let Some((mut injector, after)) = noise {
        for (i, row) in x.iter_rows_mut().enumerate() {
            if i as u64 >= after {
                injector.apply(row);
            }
        }
    }
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
    let delay_ms = args.label_delay_secs.saturating_mul(1000) as i64;
    let labels = y
        .iter()
        .flatten()
        .zip(&times)
        .enumerate()
        .map(|(i, (&truth, &t))| {
            let due = t.saturating_add(delay_ms);
            let (class, value) = match spec.task {
                vigie_core::spec::Task::BinaryClassification => (Some(truth as u8), None),
                vigie_core::spec::Task::Regression => (None, Some(truth)),
            };
            let label = vigie_stream::LabelEvent {
                request_id: request_id.clone(),
                row: Some(i as u64),
                model: version.name.clone(),
                class,
                label: None,
                value,
                ts: chrono::DateTime::from_timestamp_millis(due).unwrap_or_default(),
                by: "backtest".into(),
            };
            (due, serde_json::to_vec(&label).expect("a label serialises"))
        })
        .collect();
    let answers = y
        .iter()
        .flatten()
        .zip(&predictions)
        .filter_map(|(&truth, p)| p.as_class().map(|c| (c.probability, c.class, truth)))
        .collect();
    let event_times = times.clone();
    let events = times.into_iter().enumerate().map(move |(i, t)| {
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
    });
    Ok(Replay {
        events,
        times: event_times,
        labels,
        answers,
    })
}

/// answers.csv: each event's answer and truth, with its period, for tools that estimate
/// quality from them (benchmarks/nannyml_cbpe.py).
fn write_answers(args: &Args, times: &[i64], answers: &[(f64, u8, f64)]) -> anyhow::Result<()> {
    let path = args.out.join("answers.csv");
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?,
    );
    writeln!(out, "event,period_start,probability,class,label")?;
    let width = (args.tumbling_secs * 1000) as i64;
    for (i, (&t, &(p, class, truth))) in times.iter().zip(answers).enumerate() {
        let start = vigie_drift::window::window_start(t, width);
        let start = chrono::DateTime::from_timestamp_millis(start).unwrap_or_default();
        writeln!(
            out,
            "{i},{},{p},{class},{truth}",
            start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )?;
    }
    out.flush()?;
    Ok(())
}

/// The estimated quality beside the realised, period by period: the mean absolute error of
/// the estimate over the periods with enough labels, and the quality alerts.
fn print_quality(
    summary: &Summary,
    periods: &[PeriodView],
    min_labels: u64,
    noise_from: Option<u64>,
) {
    let labels: Vec<String> = summary
        .labels
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    println!("Labels: {}", labels.join(", "));
    let compared: Vec<&PeriodView> = periods
        .iter()
        .filter(|p| p.labelled >= min_labels && p.estimated.is_some() && p.realised.is_some())
        .collect();
    if !compared.is_empty() {
        let n = compared.len() as f64;
        let mean_error = |f: &dyn Fn(&PeriodView) -> Option<(f64, f64)>| {
            let errors: Vec<f64> = compared
                .iter()
                .filter_map(|p| f(p))
                .map(|(e, r)| (e - r).abs())
                .collect();
            errors.iter().sum::<f64>() / errors.len().max(1) as f64
        };
        let auc = mean_error(&|p| {
            Some((
                p.estimated.as_ref()?.roc_auc.value,
                p.realised.as_ref()?.roc_auc?,
            ))
        });
        let f1 = mean_error(&|p| Some((p.estimated.as_ref()?.f1.value, p.realised.as_ref()?.f1)));
        let inside = compared
            .iter()
            .filter(|p| match (&p.estimated, &p.realised) {
                (Some(e), Some(r)) => e.f1.lower <= r.f1 && r.f1 <= e.f1.upper,
                _ => false,
            })
            .count();
        println!(
            "Quality on {} periods with at least {min_labels} labels: estimate off the realised figure by {auc:.4} (ROC AUC) and {f1:.4} (F1) on average; realised F1 inside the estimate's 95% band in {:.0}% of them",
            compared.len(),
            100.0 * inside as f64 / n
        );
    }
    if summary.quality_alerts.is_empty() {
        println!("No quality alert would have fired");
    }
    for a in &summary.quality_alerts {
        println!(
            "The {} {} alert would have fired at {} (event {}; short since event {}): {:.4} against a bound of {:.4}{}",
            a.source,
            a.metric,
            a.fired_at,
            a.fired_events,
            a.pending_events,
            a.value,
            a.bound,
            noise_from
                .map(|n| format!(
                    "; {} events after the noise started",
                    a.fired_events.saturating_sub(n)
                ))
                .unwrap_or_default()
        );
    }
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
