//! Speed of drift binning and scoring: building a reference profile and binning a window of
//! events, on synthetic samples of a seeded data set.
//! Run: `cargo bench -p vigie-drift`.

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use rand::{Rng, SeedableRng, rngs::StdRng};
use vigie_drift::{Kind, Profile, ProfileParams, histogram_correlation, total_variation};
use vigie_model::Matrix;
use vigie_synthetic::MarginalSampler;

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
    let (real, kinds) = source(38_288);
    let names: Vec<String> = (0..28).map(|i| format!("f{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let sampler = MarginalSampler::fit(&real).expect("a non-empty source");
    let synthetic = sampler.sample(38_288, 1);
    let params = ProfileParams::default();

    c.bench_function("profile/build_38k_real_38k_synthetic", |b| {
        b.iter(|| black_box(Profile::build(&names, &kinds, &real, &synthetic, &params)))
    });

    let profile = Profile::build(&names, &kinds, &real, &synthetic, &params);
    let mut group = c.benchmark_group("window");
    for n in [1_000usize, 10_000] {
        let window = sampler.sample(n, 2);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(
            BenchmarkId::new("bin_and_score", n),
            &window,
            |b, window| {
                b.iter(|| {
                    let mut score = 0.0;
                    for (i, feature) in profile.features.iter().enumerate() {
                        let counts = feature.histogram(window.iter_rows().map(|r| r[i]));
                        score += match kinds[i] {
                            Kind::Categorical { .. } => total_variation(feature.counts(), &counts),
                            Kind::Numerical => histogram_correlation(feature.counts(), &counts),
                        };
                    }
                    black_box(score)
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = drift
}
criterion_main!(benches);
