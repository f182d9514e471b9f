//! Speed of the drift engine on a seeded data set shaped like BAAC's 28 features (22 coded, 6
//! continuous): building a reference profile, the per-event window update, and a full
//! comparison with every statistic.
//! Run: `cargo bench -p vigie-drift`.

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use rand::{Rng, SeedableRng, rngs::StdRng};
use vigie_drift::{
    Binner, DriftRules, Histograms, Kind, NullModel, Panes, Profile, ProfileParams, compare,
};
use vigie_model::Matrix;

/// A seeded source of 28 columns: 22 coded ones (2 to 100 codes) and 6 continuous ones.
fn source(rows: usize) -> (Matrix, Vec<Kind>) {
    let mut rng = StdRng::seed_from_u64(42);
    let mut data = Vec::with_capacity(rows * 28);
    for _ in 0..rows {
        for c in 0..28 {
            data.push(if c < 22 {
                rng.gen_range(0..(2 + c * 4)) as f64
            } else {
                rng.r#gen::<f64>() * 100.0
            });
        }
    }
    let kinds = (0..28)
        .map(|c| {
            if c < 22 {
                Kind::Categorical {
                    codes: Some((0..(2 + c * 4)).map(|v| v as f64).collect()),
                }
            } else {
                Kind::Numerical
            }
        })
        .collect();
    (
        Matrix::from_row_major(data, rows, 28).expect("rows x 28"),
        kinds,
    )
}

fn drift(c: &mut Criterion) {
    let (real, kinds) = source(76_576);
    let names: Vec<String> = (0..28).map(|i| format!("f{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let empty = Matrix::from_row_major(vec![], 0, 28).expect("0 x 28");
    let params = ProfileParams::default();

    c.bench_function("profile/build_76k_rows", |b| {
        b.iter(|| black_box(Profile::build(&names, &kinds, &real, &empty, &params)))
    });

    let profile = Profile::build(&names, &kinds, &real, &empty, &params);
    let binner = Binner::new(&profile);
    let (events, _) = source(10_000);
    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(events.rows() as u64));
    group.bench_function("panes_add_10k_events", |b| {
        // 10,000 events a second in 5 s panes: a new pane every 50,000 events.
        let mut panes = Panes::new(&binner, 5_000, 10_000);
        let mut bins = vec![0u16; binner.features()];
        let mut time = 0i64;
        b.iter(|| {
            for row in events.iter_rows() {
                binner.bin_row(black_box(row), &mut bins);
                panes.add(time / 10, &bins);
                time += 1;
            }
            panes.forget_before(time / 10 - 60_000);
        })
    });
    group.bench_function("histograms_add_10k_events", |b| {
        let mut h = Histograms::new(&binner);
        b.iter(|| {
            for row in events.iter_rows() {
                h.add_row(&binner, black_box(row));
            }
        })
    });
    group.finish();

    let mut current = Histograms::new(&binner);
    for row in events.iter_rows() {
        current.add_row(&binner, row);
    }
    let rules = DriftRules::default();
    c.bench_function("compare/28_features_all_statistics", |b| {
        b.iter(|| black_box(compare(&profile, black_box(&current), &rules)))
    });
    // The same comparison with noise thresholds: a lookup per feature and the features' level.
    let mut with_null = profile.clone();
    with_null.null = Some(NullModel::simulate(&profile, &rules, &rules.null));
    c.bench_function("compare/28_features_with_noise_thresholds", |b| {
        b.iter(|| black_box(compare(&with_null, black_box(&current), &rules)))
    });
    // What the noise thresholds add to a comparison, alone: the features' level (Newton's
    // method, once per scoring) and the 28 thresholds for a window's size.
    let null = with_null.null.clone().expect("simulated above");
    c.bench_function("null/level_and_28_thresholds", |b| {
        b.iter(|| {
            let level = vigie_drift::null::feature_level(black_box(1.0 / 518_400.0), 28, 7);
            let total: f64 = (0..28)
                .filter_map(|f| {
                    let statistic = rules.rule(&profile.features[f]).statistic;
                    null.threshold(f, statistic, black_box(5_000), level)
                })
                .sum();
            black_box(total)
        })
    });
    c.bench_function("null/level", |b| {
        b.iter(|| vigie_drift::null::feature_level(black_box(1.0 / 518_400.0), 28, 7))
    });
    // Estimating them, as `vigie train` does once per reference (both cores, rayon).
    c.bench_function("null/simulate_28_features_default_grid", |b| {
        b.iter(|| black_box(NullModel::simulate(&profile, &rules, &rules.null)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = drift
}
criterion_main!(benches);
