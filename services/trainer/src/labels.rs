//! Labelled traffic: the ground truth on `vigie.labels` joined to the predictions on
//! `vigie.predictions` by request id and row, as rows the model can be fitted on.
//!
//! Values are checked by the spec as requests are (`Origin::Request`); a prediction whose
//! features no longer fit the spec is counted and left out. A labelled row identical to a row
//! of the holdout is left out too: the holdout is never trained on, or the comparison that
//! decides a promotion would flatter the candidate.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;
use vigie_core::schema::{Cell, Origin, Schema};
use vigie_model::Matrix;
use vigie_stream::read::{Scan, scan_to_end};
use vigie_stream::{LabelEvent, PredictionEvent};

/// Rows gathered from the traffic, before imputation (`NaN` = missing).
#[derive(Debug, Clone)]
pub struct Labelled {
    pub x: Matrix,
    pub y: Vec<f64>,
    pub summary: Summary,
}

/// What the join found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Label events read, all models.
    pub labels_read: u64,
    /// Labels of this model (distinct request id and row).
    pub labels: u64,
    /// Labels given again for the same prediction (the last one counts).
    pub relabelled: u64,
    pub unreadable_labels: u64,
    /// Labels joined to a prediction and kept as training rows.
    pub joined: u64,
    /// Labels whose prediction was not found on the topic.
    pub unmatched: u64,
    /// Joined rows identical to a holdout row, left out.
    pub in_holdout: u64,
    /// Joined predictions whose values the spec refuses now, left out.
    pub invalid_values: u64,
    /// Prediction events read.
    pub predictions_read: u64,
}

/// A row's identity for the holdout check: its values' bits (`NaN` as one pattern).
fn row_key(row: &[f64]) -> Vec<u64> {
    row.iter()
        .map(|v| if v.is_nan() { u64::MAX } else { v.to_bits() })
        .collect()
}

/// Parses a prediction's features into the model's row; None when a value does not fit.
fn parse_row(schema: &Schema, event: &PredictionEvent) -> Option<Vec<f64>> {
    let mut row = vec![f64::NAN; schema.len()];
    for (slot, feature) in row.iter_mut().zip(schema.features()) {
        let cell = match event.features.get(feature.name()) {
            None | Some(serde_json::Value::Null) => Ok(Cell::Missing),
            Some(serde_json::Value::Number(n)) => {
                feature.parse_number(n.as_f64()?, Origin::Request)
            }
            Some(serde_json::Value::String(s)) => feature.parse(Some(s), Origin::Request),
            Some(_) => return None,
        };
        match cell.ok()? {
            Cell::Value(v) => *slot = v,
            Cell::Missing | Cell::OutOfRangeAsMissing | Cell::Unseen => {}
        }
    }
    Some(row)
}

/// Where and how long to read.
#[derive(Debug, Clone)]
pub struct Source {
    pub brokers: String,
    pub predictions_topic: String,
    pub labels_topic: String,
    /// Longest time reading a topic (to the end it had when the read started) may take.
    pub limit: Duration,
}

/// Reads both topics and joins them for `model`. Blocks: call from a blocking thread.
pub fn gather(
    source: &Source,
    model: &str,
    schema: &Schema,
    holdout: &Matrix,
) -> Result<Labelled, vigie_stream::Error> {
    let mut summary = Summary::default();
    // The truth of each labelled prediction: a class (1.0 / 0.0) or a regression's number.
    let mut wanted: HashMap<(String, Option<u64>), f64> = HashMap::new();
    scan_to_end(
        &source.brokers,
        &source.labels_topic,
        source.limit,
        |record| {
            summary.labels_read += 1;
            match serde_json::from_slice::<LabelEvent>(&record.payload) {
                Ok(label) if label.model == model => {
                    let truth = label
                        .target()
                        .filter(|_| label.class.is_none_or(|c| c <= 1));
                    match truth {
                        Some(truth) => {
                            if wanted
                                .insert((label.request_id, label.row), truth)
                                .is_some()
                            {
                                summary.relabelled += 1;
                            }
                        }
                        None => summary.unreadable_labels += 1,
                    }
                }
                Ok(_) => {}
                Err(_) => summary.unreadable_labels += 1,
            }
            Scan::Continue
        },
    )?;
    summary.labels = wanted.len() as u64;
    let cols = schema.len();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    if !wanted.is_empty() {
        // Events are keyed by `event_key`; events published before it was (a batch row keyed
        // by its request id alone) still match their request id.
        let keys: HashSet<String> = wanted
            .keys()
            .flat_map(|(r, row)| [r.clone(), vigie_stream::event_key(r, *row).into_owned()])
            .collect();
        let holdout_rows: HashSet<Vec<u64>> = holdout.iter_rows().map(row_key).collect();
        let mut joined: HashSet<(String, Option<u64>)> = HashSet::new();
        scan_to_end(
            &source.brokers,
            &source.predictions_topic,
            source.limit,
            |record| {
                summary.predictions_read += 1;
                // The key names the request (and row): most events are skipped unparsed.
                let Some(key) = record
                    .key
                    .as_deref()
                    .and_then(|k| std::str::from_utf8(k).ok())
                else {
                    return Scan::Continue;
                };
                if !keys.contains(key) {
                    return Scan::Continue;
                }
                let Ok(event) = serde_json::from_slice::<PredictionEvent>(&record.payload) else {
                    return Scan::Continue;
                };
                let id = (event.request_id.clone(), event.row);
                if event.model != model || joined.contains(&id) {
                    // Another model's, or a redelivered event (at-least-once).
                    return Scan::Continue;
                }
                let Some(&truth) = wanted.get(&id) else {
                    return Scan::Continue;
                };
                joined.insert(id);
                match parse_row(schema, &event) {
                    None => summary.invalid_values += 1,
                    Some(row) if holdout_rows.contains(&row_key(&row)) => summary.in_holdout += 1,
                    Some(row) => {
                        x.extend_from_slice(&row);
                        y.push(truth);
                        summary.joined += 1;
                    }
                }
                if joined.len() == wanted.len() {
                    Scan::Stop
                } else {
                    Scan::Continue
                }
            },
        )?;
        summary.unmatched = summary.labels - joined.len() as u64;
    }
    let rows = y.len();
    let x = Matrix::from_row_major(x, rows, cols)
        .map_err(|e| vigie_stream::Error::Config(format!("labelled rows: {e}")))?;
    Ok(Labelled { x, y, summary })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use vigie_stream::producer::{ProducerConfig, ProducerMetrics};
    use vigie_stream::{EmbeddedBroker, EventProducer, LABELS_TOPIC, PREDICTIONS_TOPIC};

    fn event(
        request_id: &str,
        row: Option<u64>,
        model: &str,
        colour: f64,
        speed: Option<f64>,
    ) -> PredictionEvent {
        let mut features = serde_json::Map::new();
        features.insert("colour".into(), colour.into());
        features.insert(
            "speed".into(),
            speed.map_or(serde_json::Value::Null, Into::into),
        );
        PredictionEvent {
            event_id: format!("{request_id}-{row:?}"),
            request_id: request_id.into(),
            ts: chrono::Utc::now(),
            model: model.into(),
            model_version: 1,
            schema_hash: "h".into(),
            features,
            schema_version: 1,
            prediction: vigie_stream::event::Outcome::Class(vigie_stream::event::ClassOutcome {
                class: 0,
                label: "no".into(),
                probability: 0.2,
                threshold: 0.5,
            }),
            latency_us: 10,
            source: vigie_stream::Source::Api,
            row,
        }
    }

    fn label(request_id: &str, row: Option<u64>, model: &str, class: u8) -> LabelEvent {
        LabelEvent {
            request_id: request_id.into(),
            row,
            model: model.into(),
            class: Some(class),
            label: Some(String::new()),
            value: None,
            ts: chrono::Utc::now(),
            by: "test".into(),
        }
    }

    #[test]
    fn labels_join_predictions_by_request_and_row_and_holdout_rows_stay_out() {
        let spec = vigie_core::spec::ModelSpec::from_toml(vigie_core::testing::TOY_SPEC)
            .expect("toy spec");
        let schema = Schema::new(&spec);
        let broker = EmbeddedBroker::start().expect("broker");
        let brokers = broker.bootstrap_servers();
        let producer = EventProducer::new(
            &ProducerConfig::new(brokers.clone()),
            ProducerMetrics::register(&prometheus::Registry::new()).expect("metrics"),
        )
        .expect("producer");
        let send = |topic: &str, key: &str, json: Vec<u8>| {
            producer.publish(topic, key, &json, &[]).expect("queued");
        };
        let predictions = [
            event("r1", None, "toy", 1.0, Some(15.0)),
            event("r2", Some(0), "toy", 2.0, Some(25.0)),
            event("r2", Some(1), "toy", 1.0, None),
            // Redelivered: counted once.
            event("r2", Some(1), "toy", 1.0, None),
            // Identical to the holdout row below.
            event("r3", None, "toy", 2.0, Some(90.0)),
            // A code the spec does not know.
            event("r4", None, "toy", 7.0, Some(15.0)),
            // Another model's, same request id.
            event("r1", None, "other", 2.0, Some(99.0)),
            // Not labelled.
            event("r5", None, "toy", 1.0, Some(45.0)),
        ];
        for (i, e) in predictions.iter().enumerate() {
            // Keyed by request and row; the first batch row as events were keyed before.
            let key = match i {
                1 => e.request_id.clone(),
                _ => vigie_stream::event_key(&e.request_id, e.row).into_owned(),
            };
            send(
                PREDICTIONS_TOPIC,
                &key,
                serde_json::to_vec(e).expect("json"),
            );
        }
        let labels = [
            label("r1", None, "toy", 1),
            label("r2", Some(0), "toy", 0),
            label("r2", Some(1), "toy", 0),
            label("r2", Some(1), "toy", 1), // relabelled: the last counts
            label("r3", None, "toy", 1),
            label("r4", None, "toy", 1),
            label("r9", None, "toy", 1), // no such prediction
            label("r1", None, "other", 0),
        ];
        for l in &labels {
            send(
                LABELS_TOPIC,
                &vigie_stream::event_key(&l.request_id, l.row),
                serde_json::to_vec(l).expect("json"),
            );
        }
        send(LABELS_TOPIC, "junk", b"not json".to_vec());
        assert_eq!(producer.flush(Duration::from_secs(10)), 0);

        let holdout = Matrix::from_row_major(vec![1.0, 50.0, 2.0, 90.0], 2, 2).expect("matrix");
        let source = Source {
            brokers,
            predictions_topic: PREDICTIONS_TOPIC.into(),
            labels_topic: LABELS_TOPIC.into(),
            limit: Duration::from_secs(60),
        };
        let got = gather(&source, "toy", &schema, &holdout).expect("gather");
        assert_eq!(
            got.summary,
            Summary {
                labels_read: 9,
                labels: 6,
                relabelled: 1,
                unreadable_labels: 1,
                joined: 3,
                unmatched: 1,
                in_holdout: 1,
                invalid_values: 1,
                predictions_read: got.summary.predictions_read,
            }
        );
        assert_eq!(got.x.rows(), 3);
        let mut rows: Vec<(f64, f64, f64)> = got
            .x
            .iter_rows()
            .zip(&got.y)
            .map(|(r, &y)| (r[0], if r[1].is_nan() { -1.0 } else { r[1] }, y))
            .collect();
        rows.sort_by(|a, b| a.1.total_cmp(&b.1));
        assert_eq!(rows, [(1.0, -1.0, 1.0), (1.0, 15.0, 1.0), (2.0, 25.0, 0.0)]);
    }
}
