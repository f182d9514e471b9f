//! The drift service's per-event work on BAAC events (28 features): reading the envelope,
//! decoding the features into the model's row, binning and counting into the sliding window,
//! the tumbling windows and the totals; and one scoring of the window.
//!
//! `cargo bench -p vigie-drift-service --bench consume`

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vigie_core::schema::Schema;
use vigie_core::spec::ModelSpec;
use vigie_core::train::PreparedData;
use vigie_drift_service::score::score_all;
use vigie_drift_service::{Metrics, Reference, State, WindowConfig};
use vigie_stream::event::{Features, OutcomeRef, PredictionEventRef, Value};

fn baac() -> (ModelSpec, Arc<Reference>, Vec<Vec<u8>>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/baac-severity.toml");
    let spec = ModelSpec::from_file(&path).unwrap();
    let data = PreparedData::load(&spec, &mut |_| {}).unwrap();
    let hash = spec.hash();
    let reference = Arc::new(Reference::new(&spec, &hash, 1, data.reference.clone()));
    let schema = Schema::new(&spec);
    let names: Vec<String> = schema.names().iter().map(|s| s.to_string()).collect();
    let ts = chrono::Utc::now();
    // The holdout as requests send it: before imputation.
    let holdout = vigie_core::dataset::load_features(&spec, &schema, &spec.data.holdout_features)
        .unwrap()
        .0;
    let events = holdout
        .iter_rows()
        .map(|row| {
            let values: Vec<Value> = row
                .iter()
                .map(|&v| {
                    if v.is_nan() {
                        Value::Missing
                    } else {
                        Value::Number(v)
                    }
                })
                .collect();
            PredictionEventRef {
                event_id: "0193a3b4-5c6d-7e8f-9012-3456789abcde",
                request_id: "0193a3b4-5c6d-7e8f-9012-3456789abcdf",
                ts: &ts,
                model: &spec.name,
                model_version: 1,
                schema_hash: &hash,
                features: Features {
                    names: &names,
                    values: &values,
                },
                prediction: OutcomeRef {
                    class: 1,
                    label: "hospitalised_or_killed",
                    probability: 0.61,
                    threshold: 0.42,
                }
                .into(),
                latency_us: 180,
                source: vigie_stream::Source::Api,
                row: None,
            }
            .to_json()
        })
        .collect();
    (spec, reference, events)
}

fn bench(c: &mut Criterion) {
    let (_spec, reference, events) = baac();
    let bytes: usize = events.iter().map(Vec::len).sum();
    println!(
        "{} BAAC events, {:.0} bytes each on average",
        events.len(),
        bytes as f64 / events.len() as f64
    );
    let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
    let mut state = State::new(WindowConfig::default(), metrics.clone());
    state.set_reference(reference);
    let now = chrono::Utc::now().timestamp_millis();

    let mut group = c.benchmark_group("consume");
    group.throughput(Throughput::Elements(1));
    let mut offset = 0i64;
    group.bench_function(
        "apply one BAAC event (decode, noise check, 3 windows)",
        |b| {
            b.iter(|| {
                let payload = &events[offset as usize % events.len()];
                let applied = state.apply(0, offset, payload, now);
                offset += 1;
                applied
            })
        },
    );
    group.finish();

    let state = Mutex::new(state);
    c.bench_function(
        "score the sliding window (28 features, 5,000 events)",
        |b| b.iter(|| score_all(&state, &metrics, 5.0)),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
