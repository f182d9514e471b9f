//! `vigie events`: look at what is on Vigie's topics, and replay a features file as
//! prediction events.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use vigie_core::inference::{Model, Prediction};
use vigie_core::schema::Schema;
use vigie_core::spec::{FeatureSpec, code_tokens};
use vigie_registry::ModelRef;
use vigie_stream::event::{EstimateRef, Features, OutcomeRef, PredictionEventRef, Value};
use vigie_stream::{EventProducer, ProducerConfig, Source};

use crate::Cli;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Count the messages on a topic, per partition, by reading it to its end.
    Count {
        #[arg(long, env = "KAFKA_BROKERS")]
        kafka_brokers: String,
        #[arg(long, default_value = vigie_stream::PREDICTIONS_TOPIC)]
        topic: String,
        /// Give up (with an error) when the read takes longer, in seconds.
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
        limit_secs: u64,
    },
    /// Read a prediction topic from the start until it goes quiet and count its events: records,
    /// distinct event ids, duplicates and unreadable payloads.
    Audit {
        #[arg(long, env = "KAFKA_BROKERS")]
        kafka_brokers: String,
        #[arg(long, default_value = vigie_stream::PREDICTIONS_TOPIC)]
        topic: String,
        /// Stop after this many seconds without a message.
        #[arg(long, default_value_t = 10)]
        idle_secs: u64,
    },
    /// Publish the rows of a features file as prediction events of a registered model, as the
    /// prediction service would (real predictions, source `replay`), without the HTTP path:
    /// traffic for the drift service, load for benchmarks.
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[arg(long, env = "KAFKA_BROKERS")]
    kafka_brokers: String,
    #[arg(long, default_value = vigie_stream::PREDICTIONS_TOPIC)]
    topic: String,
    /// The model: NAME (its production version) or NAME@VERSION.
    #[arg(long)]
    model: String,
    /// A features file with the spec's columns (as X_test.csv); its rows are cycled through.
    #[arg(long)]
    features: PathBuf,
    /// Events to publish (default: each row once).
    #[arg(long)]
    count: Option<u64>,
    /// Events per second (default: as fast as the producer takes them).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
    /// Most events in one producer batch (librdkafka's default, 10,000, when not given). One
    /// makes every offset the start of a stored batch: tansu's memory storage serves a fetch
    /// that starts inside a batch from the next batch on.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    batch_events: Option<u32>,
}

pub async fn run(cli: &Cli, command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Replay(args) => replay(cli, args).await?,
        Command::Count {
            kafka_brokers,
            topic,
            limit_secs,
        } => {
            let (brokers, t, limit) = (
                kafka_brokers.clone(),
                topic.clone(),
                Duration::from_secs(*limit_secs),
            );
            let partitions =
                tokio::task::spawn_blocking(move || vigie_stream::read::count(&brokers, &t, limit))
                    .await??;
            let total: u64 = partitions.values().sum();
            for (p, n) in &partitions {
                println!("{topic}[{p}] {n}");
            }
            println!("{topic} {total}");
        }
        Command::Audit {
            kafka_brokers,
            topic,
            idle_secs,
        } => {
            let (brokers, t, idle) = (
                kafka_brokers.clone(),
                topic.clone(),
                Duration::from_secs(*idle_secs),
            );
            let a =
                tokio::task::spawn_blocking(move || vigie_stream::read::audit(&brokers, &t, idle))
                    .await??;
            println!(
                "{topic}: {} records, {} distinct event ids, {} duplicates, {} unreadable",
                a.records, a.distinct, a.duplicates, a.unreadable
            );
        }
    }
    Ok(())
}

/// A features file's unseen codes (`LoadReport::unseen_cells`) per row, as `(feature, text)`.
pub fn unseen_by_row(
    report: &vigie_core::dataset::LoadReport,
    rows: usize,
) -> Vec<Vec<(usize, String)>> {
    let mut by_row = vec![Vec::new(); rows];
    for (row, feature, text) in &report.unseen_cells {
        if let Some(cells) = by_row.get_mut(*row) {
            cells.push((*feature, text.clone()));
        }
    }
    by_row
}

/// An event value as a request would carry it: text codes as their token.
fn value<'a>(v: f64, tokens: Option<&'a [String]>) -> Value<'a> {
    if v.is_nan() {
        return Value::Missing;
    }
    match tokens.and_then(|t| t.get(v as usize)) {
        Some(token) => Value::Text(token),
        None => Value::Number(v),
    }
}

/// Builds the prediction events of a model's rows, as the prediction service publishes them
/// (source `replay`): for `vigie events replay` and `vigie backtest`.
pub struct EventBuilder<'a> {
    model: &'a Model,
    name: &'a str,
    version: u32,
    /// Per feature (model order), the tokens of text codes.
    tokens: Vec<Option<Vec<String>>>,
    schema: Schema,
}

impl<'a> EventBuilder<'a> {
    pub fn new(model: &'a Model, name: &'a str, version: u32) -> Self {
        let spec = &model.artifact().spec;
        let schema = Schema::new(spec);
        let tokens = spec
            .features
            .iter()
            .zip(schema.features())
            .map(|(f, compiled)| match f {
                FeatureSpec::Categorical {
                    codes: Some(codes), ..
                } if compiled.has_text_codes() => Some(code_tokens(codes)),
                _ => None,
            })
            .collect();
        EventBuilder {
            model,
            name,
            version,
            tokens,
            schema,
        }
    }

    /// The event of one row (model order) and the model's answer to it, as JSON. `unseen`
    /// holds the row's codes the spec does not list, answered as missing, as
    /// `(feature, text)`: the event carries them as sent, as the prediction service does.
    #[allow(clippy::too_many_arguments)]
    pub fn payload(
        &self,
        row: &[f64],
        unseen: &[(usize, String)],
        prediction: &Prediction,
        event_id: &str,
        request_id: &str,
        ts: &chrono::DateTime<chrono::Utc>,
        row_index: u64,
    ) -> Vec<u8> {
        let model = self.model;
        let artifact = model.artifact();
        let mut values: Vec<Value<'_>> = row
            .iter()
            .zip(&self.tokens)
            .map(|(&v, t)| value(v, t.as_deref()))
            .collect();
        for (feature, text) in unseen {
            if let (Some(slot), Some(f)) = (
                values.get_mut(*feature),
                self.schema.features().get(*feature),
            ) {
                *slot = vigie_predict::predict::event_value(f, f64::NAN, Some(text));
            }
        }
        PredictionEventRef {
            event_id,
            request_id,
            ts,
            model: self.name,
            model_version: self.version,
            schema_hash: &artifact.spec_hash,
            features: Features {
                names: &artifact.feature_order,
                values: &values,
            },
            prediction: match prediction {
                Prediction::Class(p) => OutcomeRef {
                    class: p.class,
                    label: model.label(p.class),
                    probability: p.probability,
                    threshold: artifact.threshold,
                }
                .into(),
                Prediction::Estimate(e) => EstimateRef {
                    value: e.value,
                    lower: e.interval[0],
                    upper: e.interval[1],
                    underestimation_risk: e.underestimation_risk,
                    group: model.group_finding(e).map(|(_, g)| g.code.as_str()),
                }
                .into(),
            },
            latency_us: 0,
            source: Source::Replay,
            row: Some(row_index),
        }
        .to_json()
    }
}

async fn replay(cli: &Cli, args: &ReplayArgs) -> anyhow::Result<()> {
    let registry = cli.registry().await?;
    let reference: ModelRef = args.model.parse()?;
    let version = registry.resolve(&reference).await?;
    let r = registry.clone();
    let v = version.clone();
    let artifact = tokio::task::spawn_blocking(move || r.load(&v)).await??;
    let model = Model::new(artifact);
    let artifact = model.artifact();
    let spec = &artifact.spec;
    let schema = Schema::new(spec);
    let (x, report) = vigie_core::dataset::load_features(spec, &schema, &args.features)
        .with_context(|| format!("cannot read {}", args.features.display()))?;
    anyhow::ensure!(report.rows > 0, "{} has no rows", args.features.display());
    let predictions = model.predict_batch(&x);
    let unseen = unseen_by_row(&report, x.rows());
    let events = EventBuilder::new(&model, &version.name, version.version);
    let count = args.count.unwrap_or(x.rows() as u64);
    let producer = EventProducer::new(
        &{
            let mut config = ProducerConfig::new(args.kafka_brokers.clone());
            if let Some(n) = args.batch_events {
                config
                    .extra
                    .push(("batch.num.messages".into(), n.to_string()));
            }
            config
        },
        vigie_stream::producer::ProducerMetrics::register(&prometheus::Registry::new())?,
    )?;
    let version_label = version.version.to_string();
    let request_id = uuid::Uuid::now_v7().to_string();
    let started = Instant::now();
    for i in 0..count {
        let row = (i % x.rows() as u64) as usize;
        let event_id = uuid::Uuid::now_v7().to_string();
        let payload = events.payload(
            x.row(row),
            &unseen[row],
            &predictions[row],
            &event_id,
            &request_id,
            &chrono::Utc::now(),
            i,
        );
        let headers = [
            ("model", version.name.as_str()),
            ("model_version", &version_label),
        ];
        while producer
            .publish(
                &args.topic,
                &vigie_stream::event_key(&request_id, Some(i)),
                &payload,
                &headers,
            )
            .is_err()
        {
            // A full queue: let the producer deliver some.
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(rate) = args.rate
            && i % 100 == 99
        {
            let due = Duration::from_secs_f64((i + 1) as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    let queued = started.elapsed();
    let left =
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(120))).await?;
    let total = started.elapsed();
    println!(
        "replayed {count} events of {} on {} in {:.2} s ({:.0} events/s; queued in {:.2} s)",
        version.id(),
        args.topic,
        total.as_secs_f64(),
        count as f64 / total.as_secs_f64(),
        queued.as_secs_f64()
    );
    anyhow::ensure!(left == 0, "{left} events not delivered within 120 s");
    Ok(())
}
