use vigie_drift::{Binner, DriftRules, Histograms, Kind, ProfileParams, compare};
use vigie_model::Matrix;

use super::*;

/// "zone": codes 1, 2, 3 (3 is rare); "speed": numbers around 50 (std about 10).
fn data(rows: usize, seed: u64) -> Matrix {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = (0..rows)
        .flat_map(|_| {
            let zone = [1.0, 1.0, 1.0, 2.0, 2.0, 3.0][rng.gen_range(0..6)];
            let speed = 50.0 + 10.0 * standard_normal(&mut rng);
            [zone, speed]
        })
        .collect();
    Matrix::from_row_major(data, rows, 2).unwrap()
}

fn profile() -> Profile {
    let kinds = [
        Kind::Categorical {
            codes: Some(vec![1.0, 2.0, 3.0]),
        },
        Kind::Numerical,
    ];
    let empty = Matrix::from_row_major(vec![], 0, 2).unwrap();
    Profile::build(
        &["zone", "speed"],
        &kinds,
        &data(20_000, 1),
        &empty,
        &ProfileParams::default(),
    )
}

fn spec(mode: NoiseMode, features: &[&str], rate: f64) -> NoiseSpec {
    NoiseSpec {
        mode,
        features: features.iter().map(|f| f.to_string()).collect(),
        rate,
        seed: 9,
        scale: None,
        code: None,
    }
}

/// The drifted features of 5,000 fresh events passed through `injector`.
fn drifted(profile: &Profile, injector: Option<&mut Injector>) -> Vec<String> {
    let binner = Binner::new(profile);
    let mut h = Histograms::new(&binner);
    let mut rows = data(5_000, 2);
    if let Some(injector) = injector {
        for row in rows.iter_rows_mut() {
            injector.apply(row);
        }
    }
    for row in rows.iter_rows() {
        h.add_row(&binner, row);
    }
    compare(profile, &h, &DriftRules::default())
        .features
        .into_iter()
        .filter(|f| f.drifted)
        .map(|f| f.name)
        .collect()
}

#[test]
fn clean_events_do_not_drift_and_each_mode_moves_its_feature_only() {
    let p = profile();
    assert!(drifted(&p, None).is_empty());
    for (mode, feature) in [
        (NoiseMode::Gaussian, "speed"),
        (NoiseMode::CategorySwap, "zone"),
        (NoiseMode::PriorShift, "zone"),
        (NoiseMode::NewCategory, "zone"),
        (NoiseMode::Missing, "speed"),
        (NoiseMode::Missing, "zone"),
    ] {
        let mut s = spec(mode, &[feature], 0.5);
        if mode == NoiseMode::Gaussian {
            s.scale = Some(2.0);
        }
        let mut injector = Injector::new(s, &p).unwrap();
        assert_eq!(drifted(&p, Some(&mut injector)), [feature], "{mode:?}");
    }
}

#[test]
fn the_rate_is_the_share_of_events_changed_and_the_seed_repeats_them() {
    let p = profile();
    let mut a = Injector::new(spec(NoiseMode::Missing, &["zone"], 0.3), &p).unwrap();
    let mut b = Injector::new(spec(NoiseMode::Missing, &["zone"], 0.3), &p).unwrap();
    let mut changed = 0;
    for i in 0..10_000 {
        let mut row = [1.0, i as f64];
        let hit = a.apply(&mut row);
        assert_eq!(hit, b.apply(&mut [1.0, i as f64]));
        assert_eq!(hit, row[0].is_nan());
        assert_eq!(row[1], i as f64, "speed untouched");
        changed += hit as usize;
    }
    assert!((2_800..3_200).contains(&changed), "{changed}");
}

#[test]
fn modes_change_values_as_documented() {
    let p = profile();
    // Swap: a permutation of the codes with no fixed point; others untouched.
    let mut swap = Injector::new(spec(NoiseMode::CategorySwap, &[], 1.0), &p).unwrap();
    assert_eq!(swap.features(), [0], "every categorical feature, here one");
    let mut images = Vec::new();
    for code in [1.0, 2.0, 3.0] {
        let mut row = [code, 50.0];
        swap.apply(&mut row);
        assert_ne!(row[0], code);
        images.push(row[0]);
    }
    images.sort_by(f64::total_cmp);
    assert_eq!(images, [1.0, 2.0, 3.0]);
    let mut row = [7.0, 50.0];
    swap.apply(&mut row);
    assert_eq!(row[0], 7.0);

    // Prior shift to the rarest code by default, new category beyond the largest.
    let mut shift = Injector::new(spec(NoiseMode::PriorShift, &["zone"], 1.0), &p).unwrap();
    let mut row = [1.0, 50.0];
    shift.apply(&mut row);
    assert_eq!(row[0], 3.0);
    let mut new = Injector::new(spec(NoiseMode::NewCategory, &["zone"], 1.0), &p).unwrap();
    new.apply(&mut row);
    assert_eq!(row[0], 4.0);

    // Gaussian noise in units of the reference's std (about 10 here).
    let mut s = spec(NoiseMode::Gaussian, &["speed"], 1.0);
    s.scale = Some(3.0);
    let mut gaussian = Injector::new(s, &p).unwrap();
    let deltas: Vec<f64> = (0..20_000)
        .map(|_| {
            let mut row = [1.0, 50.0];
            gaussian.apply(&mut row);
            row[1] - 50.0
        })
        .collect();
    let sd = (deltas.iter().map(|d| d * d).sum::<f64>() / deltas.len() as f64).sqrt();
    assert!((sd - 30.0).abs() < 1.5, "{sd}");
}

#[test]
fn bad_specs_name_their_field() {
    let p = profile();
    let field = |s: NoiseSpec| Injector::new(s, &p).unwrap_err().field;
    assert_eq!(field(spec(NoiseMode::Missing, &[], 0.0)), "rate");
    assert_eq!(field(spec(NoiseMode::Missing, &[], 1.5)), "rate");
    assert_eq!(field(spec(NoiseMode::Missing, &["nope"], 0.5)), "features");
    assert_eq!(field(spec(NoiseMode::Gaussian, &["zone"], 0.5)), "features");
    assert_eq!(
        field(spec(NoiseMode::CategorySwap, &["speed"], 0.5)),
        "features"
    );
    let mut s = spec(NoiseMode::Gaussian, &["speed"], 0.5);
    s.scale = Some(-1.0);
    assert_eq!(field(s), "scale");
    let mut s = spec(NoiseMode::Missing, &[], 0.5);
    s.scale = Some(1.0);
    assert_eq!(field(s), "scale");
    let mut s = spec(NoiseMode::NewCategory, &["zone"], 0.5);
    s.code = Some(2.0);
    assert_eq!(field(s), "code");
    let mut s = spec(NoiseMode::PriorShift, &["zone"], 0.5);
    s.code = Some(9.0);
    assert_eq!(field(s), "code");
    let json = r#"{"mode": "gaussian", "rate": 0.5, "sigma": 2}"#;
    assert!(
        serde_json::from_str::<NoiseSpec>(json).is_err(),
        "unknown fields"
    );
    let json = r#"{"mode": "gaussian", "features": ["speed"], "rate": 0.5, "scale": 2}"#;
    let s: NoiseSpec = serde_json::from_str(json).unwrap();
    assert!(Injector::new(s, &p).is_ok());
}
