//! The drift engine on the BAAC split: the holdout (X_test) against the reference built at
//! training (X_train mixed 50/50 with synthetic rows) must flag no feature with the default
//! rules, and real shifts must be flagged on the features that moved.

use std::path::{Path, PathBuf};

use vigie_core::dataset;
use vigie_core::schema::Schema;
use vigie_core::spec::ModelSpec;
use vigie_core::train::PreparedData;
use vigie_drift::{Binner, DriftReport, Histograms, Profile, compare};
use vigie_model::Matrix;
use vigie_synthetic::{Injector, NoiseMode, NoiseSpec};

fn spec() -> ModelSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/baac-severity.toml");
    ModelSpec::from_file(&path).expect("the BAAC spec loads")
}

fn holdout(spec: &ModelSpec) -> Matrix {
    let schema = Schema::new(spec);
    let path: &PathBuf = &spec.data.holdout_features;
    dataset::load_features(spec, &schema, path)
        .expect("X_test loads")
        .0
}

fn report(
    profile: &Profile,
    spec: &ModelSpec,
    rows: impl Iterator<Item = Vec<f64>>,
) -> DriftReport {
    let binner = Binner::new(profile);
    let mut h = Histograms::new(&binner);
    for row in rows {
        h.add_row(&binner, &row);
    }
    compare(profile, &h, &spec.drift)
}

fn drifted(r: &DriftReport) -> Vec<&str> {
    r.features
        .iter()
        .filter(|f| f.drifted)
        .map(|f| f.name.as_str())
        .collect()
}

fn column(spec: &ModelSpec, name: &str) -> usize {
    spec.features
        .iter()
        .position(|f| f.name() == name)
        .expect("a BAAC feature")
}

#[test]
fn the_holdout_does_not_drift_and_real_shifts_do() {
    let spec = spec();
    let data = PreparedData::load(&spec, &mut |_| {}).expect("the BAAC split loads");
    let profile = &data.reference;
    assert_eq!(
        profile.synthetic_rows, profile.real_rows,
        "50/50 by default"
    );
    let x_test = holdout(&spec);

    // Two samples of one distribution: nothing drifts.
    let same = report(profile, &spec, x_test.iter_rows().map(<[f64]>::to_vec));
    for f in &same.features {
        println!("{:<14} {} {:.4}", f.name, f.rule, f.score);
    }
    assert!(same.scored);
    assert_eq!(
        drifted(&same),
        Vec::<&str>::new(),
        "X_test against the reference"
    );
    assert_eq!(same.score, 0.0);

    // The report of the holdout rows that `keep` keeps.
    let subset = |keep: &dyn Fn(&[f64]) -> bool| {
        report(
            profile,
            &spec,
            x_test.iter_rows().filter(|r| keep(r)).map(<[f64]>::to_vec),
        )
    };

    // Night-time accidents only (lum 1 is daylight): lighting and hour moved.
    let lum = column(&spec, "lum");
    let night = subset(&|r| r[lum] != 1.0);
    let moved = drifted(&night);
    assert!(
        moved.contains(&"lum") && moved.contains(&"hour"),
        "{moved:?}"
    );

    // Outside built-up areas only (agg_ 1): the area and the speed limit moved.
    let agg = column(&spec, "agg_");
    let rural = subset(&|r| r[agg] == 1.0);
    let moved = drifted(&rural);
    assert!(
        moved.contains(&"agg_") && moved.contains(&"vma"),
        "{moved:?}"
    );

    // Noise on one feature: that feature only.
    let mut injector = Injector::new(
        NoiseSpec {
            mode: NoiseMode::Gaussian,
            features: vec!["victim_age".into()],
            rate: 1.0,
            seed: 3,
            scale: Some(1.0),
            code: None,
        },
        profile,
    )
    .expect("a valid noise spec");
    let noisy = report(
        profile,
        &spec,
        x_test.iter_rows().map(|r| {
            let mut r = r.to_vec();
            injector.apply(&mut r);
            r
        }),
    );
    assert_eq!(drifted(&noisy), ["victim_age"]);
}

#[test]
fn windows_of_the_holdout_the_size_the_drift_service_holds_stay_below_the_alert() {
    // The drift service scores the last N events (5,000 by default): consecutive slices of the
    // holdout of 1,000 to 5,000 rows must not raise the alert.
    let spec = spec();
    let data = PreparedData::load(&spec, &mut |_| {}).expect("the BAAC split loads");
    let x_test = holdout(&spec);
    let rows: Vec<Vec<f64>> = x_test.iter_rows().map(<[f64]>::to_vec).collect();
    for size in [1_000, 2_000, 5_000] {
        for (k, chunk) in rows.chunks(size).filter(|c| c.len() == size).enumerate() {
            let r = report(&data.reference, &spec, chunk.iter().cloned());
            println!(
                "{size} rows, chunk {k}: score {:.3}, drifted {:?}",
                r.score,
                drifted(&r)
            );
            assert!(
                !r.dataset_drifted,
                "{size} rows, chunk {k}: {:?}",
                drifted(&r)
            );
            if size >= 2_000 {
                // From 2,000 events no feature moves; below, the flattest one (jour, the day
                // of the month) sometimes crosses the correlation threshold on noise alone.
                assert_eq!(drifted(&r), Vec::<&str>::new(), "{size} rows, chunk {k}");
            }
        }
    }
}
