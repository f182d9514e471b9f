//! Inference speed of the BAAC severity model: one row (already parsed, and from raw text as a
//! request gives it) and batches of holdout rows; and of the London Fire Brigade regression
//! (one row: trees, interval and group).
//!
//! The models are trained from `models/baac-severity.toml` and `models/lfb-response-time.toml`
//! on the real data during setup.
//! Run: `cargo bench -p vigie-core --bench inference`.

use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use vigie_core::artifact::Artifact;
use vigie_core::inference::Model;
use vigie_core::spec::ModelSpec;
use vigie_core::train::{self, PreparedData};
use vigie_model::Matrix;

/// `models/{name}.toml`'s model trained on its data, and the data.
fn trained(name: &str) -> (ModelSpec, Model, PreparedData) {
    let spec_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../models/{name}.toml"));
    let spec = ModelSpec::from_file(&spec_path).expect("the spec");
    let data = PreparedData::load(&spec, &mut |_| {}).expect("the data");
    let trained =
        train::fit_and_evaluate(&spec, &data, &spec.algorithm, &mut |_| {}).expect("training");
    let model = Model::new(Artifact::new(trained, 1, chrono::Utc::now()));
    (spec, model, data)
}

fn setup() -> (Model, PreparedData, Vec<Vec<String>>) {
    let (spec, model, data) = trained("baac-severity");
    // The holdout rows as the text a request would carry.
    let raw = std::fs::read_to_string(&spec.data.holdout_features).expect("holdout file");
    let header: Vec<&str> = raw
        .lines()
        .next()
        .expect("a header line")
        .split(',')
        .collect();
    let order: Vec<usize> = model
        .artifact()
        .feature_order
        .iter()
        .map(|f| {
            header
                .iter()
                .position(|h| h == f)
                .expect("every feature in the file")
        })
        .collect();
    let rows = raw
        .lines()
        .skip(1)
        .take(1000)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            order.iter().map(|&i| cells[i].to_string()).collect()
        })
        .collect();
    (model, data, rows)
}

/// One row already parsed (`Model::predict_parsed`: imputation + trees), the rows of `x` in
/// turn.
fn bench_parsed(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    model: &Model,
    x: &Matrix,
) {
    let mut i = 0;
    let mut row = vec![0.0; x.cols()];
    group.bench_function("parsed", |b| {
        b.iter(|| {
            row.copy_from_slice(x.row(i % x.rows()));
            i += 1;
            black_box(model.predict_parsed(black_box(&mut row)))
        })
    });
}

fn inference(c: &mut Criterion) {
    let (model, data, raw_rows) = setup();
    let x = &data.holdout.x;
    eprintln!(
        "model: {} trees, {} nodes",
        model.artifact().ensemble.n_trees(),
        model.artifact().ensemble.n_nodes()
    );

    let mut group = c.benchmark_group("single_row");
    group.throughput(Throughput::Elements(1));
    bench_parsed(&mut group, &model, x);
    let mut row = vec![0.0; x.cols()];
    let mut j = 0;
    group.bench_function("from_text", |b| {
        b.iter(|| {
            let values = raw_rows[j % raw_rows.len()]
                .iter()
                .map(|s| Some(s.as_str()));
            j += 1;
            model
                .schema()
                .parse_request_row(black_box(values), &mut row)
                .expect("valid holdout rows");
            black_box(model.predict_parsed(&mut row))
        })
    });
    group.finish();

    // The trees alone, on the two node layouts (4-byte compact nodes are what predictions use).
    let ensemble = &model.artifact().ensemble;
    assert!(ensemble.is_compact());
    let mut group = c.benchmark_group("trees");
    group.throughput(Throughput::Elements(1));
    for (name, wide) in [("compact", false), ("wide", true), ("compact again", false)] {
        let mut k = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                let row = x.row(k % x.rows());
                k += 1;
                if wide {
                    black_box(ensemble.predict_proba_wide(black_box(row)))
                } else {
                    black_box(ensemble.predict_proba(black_box(row)))
                }
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("batch");
    for n in [100usize, 1_000, 16_410] {
        let rows: Vec<usize> = (0..n).map(|r| r % x.rows()).collect();
        let batch: Matrix = x.select_rows(&rows);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("rows", n), &batch, |b, batch| {
            b.iter(|| black_box(model.predict_batch(batch)))
        });
    }
    group.finish();
}

/// The London Fire Brigade model on its holdout rows: one row, parsed, then from text.
fn regression(c: &mut Criterion) {
    let (_, model, data) = trained("lfb-response-time");
    eprintln!(
        "LFB model: {} trees, {} nodes",
        model.artifact().ensemble.n_trees(),
        model.artifact().ensemble.n_nodes()
    );
    let mut group = c.benchmark_group("lfb_single_row");
    group.throughput(Throughput::Elements(1));
    bench_parsed(&mut group, &model, &data.holdout_raw);
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = inference, regression
}
criterion_main!(benches);
