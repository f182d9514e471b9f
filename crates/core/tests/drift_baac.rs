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

#[test]
fn i_i_d_windows_of_the_holdout_raise_no_more_false_alarms_than_the_target() {
    use rand::seq::SliceRandom;
    use rand::{SeedableRng, rngs::StdRng};
    use vigie_drift::{Cadence, DriftRules, compare_at};

    let spec = spec();
    let data = PreparedData::load(&spec, &mut |_| {}).expect("the BAAC split loads");
    let with_null = &data.reference;
    assert!(with_null.null.is_some(), "training estimates the null");
    let fixed = Profile {
        null: None,
        ..with_null.clone()
    };
    let rows: Vec<Vec<f64>> = holdout(&spec).iter_rows().map(<[f64]>::to_vec).collect();
    // Windows of 200 rows are scored too here (the default minimum is 500).
    let rules = DriftRules {
        min_rows: 100,
        ..spec.drift.clone()
    };
    // Every 5 s scoring sees a fresh window (the strictest level).
    let busy = Cadence::sliding(5.0, 5.0);
    let mut rng = StdRng::seed_from_u64(20);
    let windows = 100;
    println!("size  rules  feature alarms (rate)  data-set alerts  feature level");
    for size in [200, 500, 1_000, 5_000] {
        let (mut alarms, mut alerts) = ([0usize; 2], [0usize; 2]);
        let mut level = 0.0;
        for _ in 0..windows {
            let window: Vec<Vec<f64>> = rows.choose_multiple(&mut rng, size).cloned().collect();
            let binner = Binner::new(with_null);
            let mut h = Histograms::new(&binner);
            for row in &window {
                h.add_row(&binner, row);
            }
            for (k, profile) in [&fixed, with_null].into_iter().enumerate() {
                let r = compare_at(profile, &h, &rules, busy);
                alarms[k] += r.drifted_features;
                alerts[k] += usize::from(r.dataset_drifted);
                level = r.feature_level.unwrap_or(level);
            }
        }
        let decisions = (windows * with_null.features.len()) as f64;
        for (k, name) in ["fixed", "noise"].into_iter().enumerate() {
            println!(
                "{size:>5} {name:>6} {:>6} ({:.4}) {:>6} {level:.4}",
                alarms[k],
                alarms[k] as f64 / decisions,
                alerts[k]
            );
        }
        // The bar: at most the level per feature (three standard errors of slack) and no
        // data-set alert.
        let rate = alarms[1] as f64 / decisions;
        let slack = 3.0 * (level * (1.0 - level) / decisions).sqrt();
        assert!(rate <= level + slack, "{size} rows: {rate} against {level}");
        assert_eq!(alerts[1], 0, "{size} rows: data-set alerts");
    }
}

/// Real shifts between two parts of the real data: a reference profile (with its null
/// distributions, as training builds them) from the training rows `reference` keeps, against
/// the holdout rows `current` keeps.
fn split(
    spec: &ModelSpec,
    reference: &dyn Fn(&[f64]) -> bool,
    current: &dyn Fn(&[f64]) -> bool,
) -> DriftReport {
    let schema = Schema::new(spec);
    let train = dataset::load_features(spec, &schema, &spec.data.train_features)
        .expect("X_train loads")
        .0;
    let rows: Vec<&[f64]> = train.iter_rows().filter(|r| reference(r)).collect();
    let columns: Vec<Vec<f64>> = (0..train.cols())
        .map(|c| rows.iter().map(|r| r[c]).collect())
        .collect();
    let (names, kinds) = (schema.names(), schema.drift_kinds());
    let mut profile = Profile::from_columns(&names, &kinds, &columns, &spec.reference.binning());
    profile.null = Some(vigie_drift::NullModel::simulate(
        &profile,
        &spec.drift,
        &spec.drift.null,
    ));
    let x_test = holdout(spec);
    report(
        &profile,
        spec,
        x_test
            .iter_rows()
            .filter(|r| current(r))
            .map(<[f64]>::to_vec),
    )
}

#[test]
fn summer_against_winter_and_paris_against_the_rest_are_flagged_on_the_features_that_moved() {
    let spec = spec();
    let mois = column(&spec, "mois");
    let winter = |r: &[f64]| [12.0, 1.0, 2.0].contains(&r[mois]);
    let summer = |r: &[f64]| (6.0..=8.0).contains(&r[mois]);
    let r = split(&spec, &winter, &summer);
    let moved = drifted(&r);
    println!("summer against winter ({} rows): {moved:?}", r.current_rows);
    for feature in ["lum", "surf", "atm"] {
        assert!(moved.contains(&feature), "summer against winter: {moved:?}");
    }

    let dep = column(&spec, "dep");
    let paris = |r: &[f64]| [75.0, 92.0, 93.0, 94.0].contains(&r[dep]);
    let r = split(&spec, &|r| !paris(r), &paris);
    let moved = drifted(&r);
    println!(
        "Paris area against the rest ({} rows): {moved:?}",
        r.current_rows
    );
    for feature in ["catr", "agg_", "vma"] {
        assert!(
            moved.contains(&feature),
            "Paris area against the rest: {moved:?}"
        );
    }
}
