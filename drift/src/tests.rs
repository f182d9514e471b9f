use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;
use vigie_model::Matrix;

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

fn numerical(values: &[f64]) -> FeatureProfile {
    FeatureProfile::build("x", &Kind::Numerical, values, &ProfileParams::default())
}

#[test]
fn categorical_bins_have_other_and_missing_buckets() {
    let kind = Kind::Categorical {
        codes: Some(vec![1.0, 2.0, 3.0]),
    };
    let p = FeatureProfile::build(
        "c",
        &kind,
        &[1.0, 1.0, 2.0, 9.0, f64::NAN],
        &ProfileParams::default(),
    );
    assert_eq!(p.bins(), 5);
    assert_eq!(
        p.counts(),
        &[2, 1, 0, 1, 1],
        "declared code 3 keeps its (empty) bin"
    );
    assert_eq!(p.bin(3.0), 2);
    assert_eq!(p.bin(42.0), 3, "unseen codes share the other bucket");
    assert_eq!(p.bin(f64::NAN), 4);
}

#[test]
fn open_vocabularies_keep_the_most_frequent_codes() {
    let params = ProfileParams {
        max_categories: 2,
        ..Default::default()
    };
    let values = [5.0, 5.0, 5.0, 7.0, 7.0, 9.0];
    let p = FeatureProfile::build("c", &Kind::Categorical { codes: None }, &values, &params);
    let FeatureProfile::Categorical { codes, counts, .. } = &p else {
        panic!("categorical")
    };
    assert_eq!(codes, &vec![5.0, 7.0]);
    assert_eq!(counts, &vec![3, 2, 1, 0]);
}

#[test]
fn numerical_bins_cover_the_central_range_with_tails_and_missing() {
    let values: Vec<f64> = (0..=1000).map(|i| i as f64 / 10.0).collect(); // 0.0 ..= 100.0
    let p = numerical(&values);
    let FeatureProfile::Numerical { edges, counts, .. } = &p else {
        panic!("numerical")
    };
    assert_eq!(edges.len(), 21);
    close(edges[0], 1.0);
    close(edges[20], 99.0);
    assert_eq!(counts.len(), 23, "underflow, 20 bins, overflow, missing");
    assert_eq!(counts.iter().sum::<u64>(), 1001);
    assert_eq!(counts[0], 10, "0.0 ..= 0.9 under the 1st percentile");
    assert_eq!(counts[21], 10, "99.1 ..= 100.0 over the 99th");
    assert_eq!(p.bin(f64::NAN), 22);
    assert_eq!(p.bin(1.0), 1);
    assert_eq!(p.bin(99.0), 20, "the last edge is inclusive");
    assert_eq!(p.bin(-5.0), 0);
    assert_eq!(p.bin(500.0), 21);
}

#[test]
fn short_whole_number_ranges_get_one_bin_per_value() {
    let hours: Vec<f64> = (0..240).map(|i| (i % 24) as f64).collect();
    let p = numerical(&hours);
    // 0..=23 is 24 whole numbers, more than the 20 bins: equal-width bins plus 3 special ones.
    assert_eq!(p.bins(), 23);
    let victims: Vec<f64> = (0..100).map(|i| (1 + i % 4) as f64).collect();
    let p = numerical(&victims);
    let FeatureProfile::Numerical { edges, counts, .. } = &p else {
        panic!("numerical")
    };
    assert_eq!(edges, &vec![0.5, 1.5, 2.5, 3.5, 4.5]);
    assert_eq!(counts, &vec![0, 25, 25, 25, 25, 0, 0]);
    let constant = numerical(&[2021.0; 10]);
    assert_eq!(constant.counts(), &[0, 10, 0, 0]);
}

#[test]
fn distances_of_identical_and_disjoint_histograms() {
    let a = [10, 20, 30, 0];
    close(total_variation(&a, &[1, 2, 3, 0]), 0.0);
    close(total_variation(&[1, 0], &[0, 1]), 1.0);
    close(total_variation(&[3, 1], &[1, 1]), 0.25);
    close(histogram_correlation(&a, &[1, 2, 3, 0]), 1.0);
    close(histogram_correlation(&[1, 2, 3], &[3, 2, 1]), -1.0);
    close(histogram_correlation(&[5, 5], &[1, 1]), 1.0);
    close(histogram_correlation(&[5, 5], &[1, 2]), 0.0);
}

#[test]
fn two_samples_of_one_distribution_correlate_and_a_shifted_one_does_not() {
    // With equal-width bins, sampling noise barely moves the correlation; a shift of one
    // standard deviation moves it and the total variation a lot.
    let mut rng = StdRng::seed_from_u64(3);
    let mut normal = |shift: f64, n: usize| -> Vec<f64> {
        (0..n)
            .map(|_| {
                let s: f64 = (0..12).map(|_| rng.r#gen::<f64>()).sum::<f64>() - 6.0;
                50.0 + 10.0 * (s + shift)
            })
            .collect()
    };
    let reference = numerical(&normal(0.0, 20_000));
    let same = reference.histogram(normal(0.0, 2_000));
    let shifted = reference.histogram(normal(1.0, 2_000));
    let (r_same, r_shift) = (
        histogram_correlation(reference.counts(), &same),
        histogram_correlation(reference.counts(), &shifted),
    );
    assert!(r_same > 0.95, "same distribution: {r_same}");
    assert!(r_shift < 0.6, "shifted: {r_shift}");
    assert!(total_variation(reference.counts(), &same) < 0.1);
    assert!(total_variation(reference.counts(), &shifted) > 0.3);
}

#[test]
fn histograms_of_partial_windows_add_up() {
    let reference = numerical(&(0..500).map(|i| (i % 97) as f64).collect::<Vec<_>>());
    let values: Vec<f64> = (0..300).map(|i| (i * 7 % 120) as f64).collect();
    let whole = reference.histogram(values.iter().copied());
    let a = reference.histogram(values[..100].iter().copied());
    let b = reference.histogram(values[100..].iter().copied());
    let sum: Vec<u64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_eq!(whole, sum);
}

#[test]
fn profiles_mix_real_and_synthetic_rows() {
    let real = Matrix::from_row_major(vec![1.0, 10.0, 2.0, 20.0], 2, 2).unwrap();
    let synthetic = Matrix::from_row_major(vec![1.0, f64::NAN], 1, 2).unwrap();
    let kinds = [
        Kind::Categorical {
            codes: Some(vec![1.0, 2.0]),
        },
        Kind::Numerical,
    ];
    let p = Profile::build(
        &["c", "x"],
        &kinds,
        &real,
        &synthetic,
        &ProfileParams::default(),
    );
    assert_eq!((p.rows, p.real_rows, p.synthetic_rows), (3, 2, 1));
    assert_eq!(p.features[0].counts(), &[2, 1, 0, 0]);
    assert_eq!(
        *p.features[1].counts().last().unwrap(),
        1,
        "the synthetic row's missing value"
    );
    assert!(
        p.features
            .iter()
            .all(|f| f.counts().iter().sum::<u64>() == 3)
    );
}

#[test]
fn malformed_profiles_are_refused() {
    let good = numerical(&[1.0, 2.5, 7.0]);
    good.validate().unwrap();
    for broken in [
        FeatureProfile::Numerical {
            name: "x".into(),
            edges: vec![],
            counts: vec![0, 0],
            mean: 0.0,
            std: 0.0,
        },
        FeatureProfile::Numerical {
            name: "x".into(),
            edges: vec![2.0, 1.0],
            counts: vec![0; 4],
            mean: 0.0,
            std: 0.0,
        },
        FeatureProfile::Numerical {
            name: "x".into(),
            edges: vec![1.0, 2.0],
            counts: vec![0; 3],
            mean: 0.0,
            std: 0.0,
        },
        FeatureProfile::Categorical {
            name: "c".into(),
            codes: vec![1.0],
            counts: vec![0; 2],
        },
    ] {
        assert!(broken.validate().is_err(), "{broken:?}");
    }
}

#[test]
fn profiles_record_their_version_and_moments_and_old_ones_still_load() {
    let p = numerical(&[1.0, 2.0, 3.0, f64::NAN]);
    let FeatureProfile::Numerical { mean, std, .. } = &p else {
        panic!("numerical")
    };
    close(*mean, 2.0);
    close(*std, (2.0f64 / 3.0).sqrt());
    let version_1 = r#"{"rows": 1, "real_rows": 1, "synthetic_rows": 0, "features": [
        {"kind": "numerical", "name": "x", "edges": [0.0, 1.0], "counts": [0, 1, 0, 0]}]}"#;
    let old: Profile = serde_json::from_str(version_1).unwrap();
    assert_eq!(old.version, 1);
    old.validate().unwrap();
    let future = Profile {
        version: PROFILE_VERSION + 1,
        ..old
    };
    assert!(future.validate().unwrap_err().to_string().contains("newer"));
}

#[test]
fn degenerate_inputs_give_defined_answers() {
    let empty = [0u64; 4];
    let some = [3u64, 1, 0, 2];
    for (a, b) in [(&empty, &some), (&some, &empty), (&empty, &empty)] {
        close(total_variation(a, b), 0.0);
        close(histogram_correlation(a, b), 1.0);
        close(psi(a, b), 0.0);
        close(jensen_shannon(a, b), 0.0);
        close(chi_square_p(a, b), 1.0);
        close(ks_p(a, b), 1.0);
        close(wasserstein_normed(&[0.0, 1.0, 2.0, 3.0], a, b), 0.0);
    }
    // A constant feature (one bin), the same in both: no drift by any measure.
    let constant = [0u64, 50, 0];
    let current = [0u64, 7, 0];
    close(total_variation(&constant, &current), 0.0);
    close(histogram_correlation(&constant, &current), 1.0);
    close(chi_square_p(&constant, &current), 1.0);
    close(
        wasserstein_normed(&[0.5, 1.0, 1.5], &constant, &current),
        0.0,
    );
    // A constant reference and a moved current: the Wasserstein distance in bin widths.
    close(
        wasserstein_normed(&[0.5, 1.0, 1.5], &constant, &[0, 0, 4]),
        1.0,
    );
    // All missing, on both sides and on one.
    let all_missing = [0u64, 0, 0, 9];
    close(total_variation(&all_missing, &all_missing), 0.0);
    close(total_variation(&all_missing, &some), 1.0 - 2.0 / 6.0);
    let profile = numerical(&[f64::NAN; 10]);
    let s = Statistics::compute(&profile, profile.counts());
    assert!(s.wasserstein.is_some_and(f64::is_finite));
}

fn histogram_pair() -> impl Strategy<Value = (Vec<u64>, Vec<u64>)> {
    (1usize..30).prop_flat_map(|n| {
        (
            prop::collection::vec(0u64..1000, n),
            prop::collection::vec(0u64..1000, n),
        )
    })
}

fn positions(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64 * 1.5 - 3.0).collect()
}

proptest! {
    #[test]
    fn identical_shares_show_no_drift((a, _) in histogram_pair(), k in 1u64..5) {
        let scaled: Vec<u64> = a.iter().map(|c| c * k).collect();
        prop_assert!(total_variation(&a, &scaled).abs() < 1e-12);
        prop_assert!(psi(&a, &scaled).abs() < 1e-12);
        prop_assert!(jensen_shannon(&a, &scaled) < 1e-6);
        prop_assert!(wasserstein_normed(&positions(a.len()), &a, &scaled) < 1e-9);
        prop_assert!((histogram_correlation(&a, &scaled) - 1.0).abs() < 1e-9);
        prop_assert!(ks_p(&a, &scaled) > 0.999_999);
        prop_assert!(chi_square_p(&a, &scaled) > 0.999_999);
    }

    #[test]
    fn statistics_stay_in_their_bounds_and_are_symmetric((a, b) in histogram_pair()) {
        let x = positions(a.len());
        for (value, low, high) in [
            (total_variation(&a, &b), 0.0, 1.0),
            (histogram_correlation(&a, &b), -1.0, 1.0),
            (jensen_shannon(&a, &b), 0.0, 1.0),
            (chi_square_p(&a, &b), 0.0, 1.0),
            (ks_p(&a, &b), 0.0, 1.0),
            (psi(&a, &b), 0.0, f64::MAX),
            (wasserstein_normed(&x, &a, &b), 0.0, f64::MAX),
        ] {
            prop_assert!(value.is_finite() && (low..=high).contains(&value), "{value}");
        }
        let same = |f: fn(&[u64], &[u64]) -> f64| (f(&a, &b) - f(&b, &a)).abs() < 1e-9;
        prop_assert!(same(total_variation));
        prop_assert!(same(histogram_correlation));
        prop_assert!(same(jensen_shannon));
        prop_assert!(same(psi));
        prop_assert!(same(chi_square_p));
        prop_assert!(same(ks_p));
    }

    #[test]
    fn tvd_is_at_least_the_ks_distance_and_js_bounds_hold((a, b) in histogram_pair()) {
        // On ordered bins, |F_p - F_q| <= the mass that moved, so KS D <= TVD.
        prop_assert!(stats::ks_statistic(&a, &b) <= total_variation(&a, &b) + 1e-12);
        // JS divergence <= TVD (base 2), so JS distance <= sqrt(TVD).
        prop_assert!(jensen_shannon(&a, &b) <= total_variation(&a, &b).sqrt() + 1e-9);
    }
}

#[test]
fn the_ks_p_value_matches_statrs_on_the_binned_samples() {
    use statrs::stats_tests::NaNPolicy;
    use statrs::stats_tests::ks_test::{KSTwoSampleAlternativeMethod, ks_twosample};
    let a = [40u64, 25, 12, 9, 4, 0, 1];
    let b = [22u64, 30, 18, 10, 9, 5, 2];
    let expand = |counts: &[u64]| -> Vec<f64> {
        counts
            .iter()
            .enumerate()
            .flat_map(|(bin, &c)| std::iter::repeat_n(bin as f64, c as usize))
            .collect()
    };
    let (d, p) = ks_twosample(
        expand(&a),
        expand(&b),
        KSTwoSampleAlternativeMethod::TwoSidedAsymptotic,
        NaNPolicy::Error,
    )
    .unwrap();
    close(stats::ks_statistic(&a, &b), d);
    assert!(
        (ks_p(&a, &b) - p).abs() < 1e-6,
        "{} vs statrs {p}",
        ks_p(&a, &b)
    );
}

#[test]
fn profiles_from_columns_equal_profiles_from_rows() {
    let rows = Matrix::from_row_major(
        (0..300)
            .flat_map(|i| {
                [
                    (i % 4) as f64,
                    i as f64 * 0.7,
                    if i % 9 == 0 { f64::NAN } else { 1.0 },
                ]
            })
            .collect(),
        300,
        3,
    )
    .unwrap();
    let columns: Vec<Vec<f64>> = (0..3)
        .map(|c| rows.iter_rows().map(|r| r[c]).collect())
        .collect();
    let kinds = [
        Kind::Categorical { codes: None },
        Kind::Numerical,
        Kind::Categorical {
            codes: Some(vec![1.0]),
        },
    ];
    let empty = Matrix::from_row_major(vec![], 0, 3).unwrap();
    let params = ProfileParams::default();
    assert_eq!(
        Profile::from_columns(&["a", "b", "c"], &kinds, &columns, &params),
        Profile::build(&["a", "b", "c"], &kinds, &rows, &empty, &params)
    );
}

#[test]
fn quantiles_are_read_off_the_bins() {
    let p = FeatureProfile::Numerical {
        name: "x".into(),
        edges: vec![0.0, 10.0, 20.0, 40.0],
        counts: vec![0; 6],
        mean: 0.0,
        std: 0.0,
    };
    // Underflow 0, bins [0,10) 2, [10,20) 6, [20,40] 2, overflow 0, missing 5 (left out).
    let counts = [0, 2, 6, 2, 0, 5];
    close(p.quantile(&counts, 0.5).unwrap(), 15.0);
    close(p.quantile(&counts, 0.1).unwrap(), 5.0);
    close(p.quantile(&counts, 0.9).unwrap(), 30.0);
    close(p.quantile(&counts, 1.0).unwrap(), 40.0);
    // Values beyond the edges count as the edge.
    close(p.quantile(&[4, 0, 0, 0, 1, 0], 0.5).unwrap(), 0.0);
    close(p.quantile(&[0, 0, 0, 0, 3, 0], 0.5).unwrap(), 40.0);
    assert_eq!(
        p.quantile(&[0, 0, 0, 0, 0, 9], 0.5),
        None,
        "nothing present"
    );
    assert_eq!(p.quantile(&counts, 1.5), None);
    let c = FeatureProfile::build(
        "c",
        &Kind::Categorical { codes: None },
        &[1.0],
        &ProfileParams::default(),
    );
    assert_eq!(c.quantile(&[1, 0, 0], 0.5), None);
}

/// A categorical feature of 100 codes with skewed shares, and a peaked numerical one, as
/// columns of `n` rows drawn with `seed`.
fn two_features(n: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut code = Vec::with_capacity(n);
    let mut speed = Vec::with_capacity(n);
    for _ in 0..n {
        // Code k with a share falling with k (a Zipf-like vocabulary, as départements).
        let u: f64 = rng.r#gen();
        code.push((u * u * 100.0).floor());
        speed.push((0..3).map(|_| rng.gen_range(0.0..20.0)).sum::<f64>() + 20.0);
    }
    vec![code, speed]
}

fn two_feature_profile(rules: &DriftRules) -> Profile {
    let kinds = [
        Kind::Categorical {
            codes: Some((0..100).map(f64::from).collect()),
        },
        Kind::Numerical,
    ];
    let mut profile = Profile::from_columns(
        &["code", "speed"],
        &kinds,
        &two_features(50_000, 1),
        &ProfileParams::default(),
    );
    profile.null = Some(NullModel::simulate(&profile, rules, &rules.null));
    profile
}

/// The share of windows of `n` rows, drawn from the reference's own distribution (not from
/// its counts), whose statistic passes the noise threshold at each of `levels`: per level,
/// per feature.
fn false_alarm_rates(
    profile: &Profile,
    rules: &DriftRules,
    n: usize,
    levels: &[f64],
) -> Vec<Vec<f64>> {
    let binner = Binner::new(profile);
    let null = profile.null.as_ref().unwrap();
    let windows = 1_000;
    let mut alarms = vec![vec![0usize; 2]; levels.len()];
    for w in 0..windows {
        let columns = two_features(n, 1_000 + w as u64);
        let mut current = Histograms::new(&binner);
        current.add_columns(&binner, &columns);
        for (f, feature) in profile.features.iter().enumerate() {
            let rule = rules.rule(feature);
            let stats = Statistics::compute(feature, current.feature(f));
            let score = rule.statistic.of(&stats).unwrap();
            for (l, &level) in levels.iter().enumerate() {
                let beyond = Rule {
                    statistic: rule.statistic,
                    threshold: null.threshold(f, rule.statistic, n as u64, level).unwrap(),
                }
                .drifted(score);
                alarms[l][f] += usize::from(beyond);
            }
        }
    }
    alarms
        .iter()
        .map(|a| a.iter().map(|&a| a as f64 / windows as f64).collect())
        .collect()
}

#[test]
fn noise_thresholds_pass_windows_of_undrifted_rows_at_their_level() {
    let rules = DriftRules::default();
    let profile = two_feature_profile(&rules);
    // On the grid (500), between sizes (300, 1,500) and past it (4,000); at the 90th
    // percentile kept and in the exponential tail.
    for n in [300, 500, 1_500, 4_000] {
        let rates = false_alarm_rates(&profile, &rules, n, &[0.1, 0.01]);
        let (at_10, at_1) = (&rates[0], &rates[1]);
        for f in 0..2 {
            assert!(
                (0.06..=0.14).contains(&at_10[f]),
                "n {n}, feature {f}: {} of windows past the 10% threshold",
                at_10[f]
            );
            assert!(
                at_1[f] <= 0.02,
                "n {n}, feature {f}: {} of windows past the 1% threshold",
                at_1[f]
            );
        }
    }
}

#[test]
fn the_fixed_rules_flag_noise_at_small_windows_and_the_noise_thresholds_do_not() {
    let rules = DriftRules {
        min_rows: 100,
        ..DriftRules::default()
    };
    let profile = two_feature_profile(&rules);
    let binner = Binner::new(&profile);
    let mut current = Histograms::new(&binner);
    current.add_columns(&binner, &two_features(500, 77));
    let report = compare(&profile, &current, &rules);
    let code = &report.features[0];
    assert!(code.beyond_floor, "TVD {} over 0.1 by chance", code.score);
    assert!(!code.beyond_noise && !code.drifted, "{code:?}");
    assert!(code.noise_threshold.unwrap() > code.score);
    // A real shift (every code moved by 10) is beyond both.
    let mut shifted = two_features(500, 78);
    shifted[0].iter_mut().for_each(|c| *c = (*c + 10.0) % 100.0);
    let mut current = Histograms::new(&binner);
    current.add_columns(&binner, &shifted);
    let report = compare(&profile, &current, &rules);
    assert!(report.features[0].drifted, "{:?}", report.features[0]);
    // Without null distributions (an older profile) the floor decides alone, as before.
    let old = Profile {
        null: None,
        ..profile.clone()
    };
    let mut current = Histograms::new(&binner);
    current.add_columns(&binner, &two_features(500, 77));
    let report = compare(&old, &current, &rules);
    assert!(report.features[0].drifted && report.feature_level.is_none());
}

#[test]
fn feature_levels_spread_the_data_set_target_over_the_features() {
    use crate::null::feature_level;
    // One feature needed of ten: about the window's level over ten (Sidak).
    let a = feature_level(0.01, 10, 1);
    assert!((a - 0.01 / 10.0).abs() < 0.0001, "{a}");
    // Seven of 28 needed: each feature may be tested far more loosely.
    let b = feature_level(1e-6, 28, 7);
    assert!(b > 0.01 && b < 0.05, "{b}");
    // A stricter target, a stricter level.
    assert!(feature_level(1e-8, 28, 7) < b);
    // The level found gives the target back: P(Binomial(28, b) >= 7) = 1e-6.
    let tail: f64 = (7..=28)
        .map(|k| {
            let choose = (0..k).fold(1.0, |c, i| c * (28 - i) as f64 / (i + 1) as f64);
            choose * b.powi(k) * (1.0 - b).powi(28 - k)
        })
        .sum();
    assert!((tail / 1e-6 - 1.0).abs() < 1e-6, "{tail}");
    // A loose target: a loose level, below 1.
    let loose = feature_level(0.5, 11, 3);
    assert!(loose > 0.1 && loose < 0.5, "{loose}");
    // Thousands of features: the tail's terms are rescaled, not overflowed. Half of 2,000
    // needed by chance once in a thousand windows: each feature's level just under one half,
    // where the binomial's tail past its mean is 1e-3 (the mean 1,000 less about 3.1 standard
    // deviations of sqrt(500)).
    let many = feature_level(1e-3, 2_000, 1_000);
    let expected = (1_000.0 - 3.09 * 500f64.sqrt()) / 2_000.0;
    assert!((many - expected).abs() < 0.005, "{many} against {expected}");
}

#[test]
fn null_grids_and_targets_out_of_range_are_refused() {
    let rules = DriftRules {
        false_alarms_per_30_days: 0.0,
        ..DriftRules::default()
    };
    let profile = Profile::from_columns(
        &["code", "speed"],
        &[Kind::Categorical { codes: None }, Kind::Numerical],
        &two_features(100, 2),
        &ProfileParams::default(),
    );
    let err = rules.check(&profile).unwrap_err().to_string();
    assert!(err.contains("drift.false_alarms_per_30_days"), "{err}");
    let mut rules = DriftRules::default();
    rules.null.sizes = Vec::new();
    assert!(
        rules
            .check(&profile)
            .unwrap_err()
            .to_string()
            .contains("drift.null.sizes")
    );
    rules.null.sizes = vec![500, 100];
    assert!(
        rules
            .check(&profile)
            .unwrap_err()
            .to_string()
            .contains("ascending")
    );
    rules.null.sizes = vec![5];
    assert!(rules.check(&profile).is_err());
    rules.null.sizes = vec![100];
    rules.null.resamples = 10;
    assert!(
        rules
            .check(&profile)
            .unwrap_err()
            .to_string()
            .contains("resamples")
    );
}

/// One categorical feature (codes 1 and 2, even in the reference) and a window of 1,000 events
/// with `ones` of code 1: its TVD is `|ones / 1000 - 0.5|`.
fn coin_window(binner: &Binner, ones: usize) -> Histograms {
    let mut h = Histograms::new(binner);
    for i in 0..1000 {
        h.add_row(binner, &[if i < ones { 1.0 } else { 2.0 }]);
    }
    h
}

#[test]
fn hysteresis_holds_a_drifted_feature_until_it_falls_below_the_lower_bound() {
    let codes: Vec<f64> = (0..10_000).map(|i| f64::from(i % 2 + 1)).collect();
    let profile = Profile::from_columns(
        &["coin"],
        &[Kind::Categorical {
            codes: Some(vec![1.0, 2.0]),
        }],
        &[codes],
        &ProfileParams::default(),
    );
    let binner = Binner::new(&profile);
    let held = DriftRules {
        min_rows: 1,
        hysteresis: 0.8,
        ..DriftRules::default()
    };
    let at = |rules: &DriftRules, ones: usize, previous: Option<&DriftReport>| {
        compare_after(
            &profile,
            &coin_window(&binner, ones),
            rules,
            Cadence::DAILY,
            previous,
        )
    };
    // TVD 0.12: beyond the floor (0.1), drifted.
    let first = at(&held, 620, None);
    assert!(first.features[0].drifted && !first.features[0].held);
    // TVD 0.09: under the floor, above its lower bound (0.08): held.
    let second = at(&held, 590, Some(&first));
    assert!(second.features[0].drifted && second.features[0].held);
    // The same window without the last score, or without hysteresis: not drifted.
    assert!(!at(&held, 590, None).features[0].drifted);
    let none = DriftRules {
        hysteresis: 1.0,
        ..held.clone()
    };
    assert!(!at(&none, 590, Some(&first)).features[0].drifted);
    // TVD 0.07: under the lower bound, it leaves.
    let third = at(&held, 570, Some(&second));
    assert!(!third.features[0].drifted && third.features[0].held);
    // Once out, the full floor again.
    assert!(!at(&held, 590, Some(&third)).features[0].drifted);
}

#[test]
fn lower_bounds_are_measured_from_no_difference() {
    use crate::compare::beyond;
    // Distances: a share of the threshold.
    assert!(beyond(Statistic::Tvd, 0.085, 0.1, 0.8));
    assert!(!beyond(Statistic::Tvd, 0.075, 0.1, 0.8));
    // The correlation: a share of 1 - r (0.95 held down to 0.96).
    assert!(beyond(Statistic::Correlation, 0.955, 0.95, 0.8));
    assert!(!beyond(Statistic::Correlation, 0.965, 0.95, 0.8));
    // A p-value: a share of -ln p (0.01 held up to 0.1 at one half).
    assert!(beyond(Statistic::KsP, 0.05, 0.01, 0.5));
    assert!(!beyond(Statistic::ChiSquareP, 0.2, 0.01, 0.5));
    // A share of 1 is the rule itself.
    assert!(!beyond(Statistic::Tvd, 0.1, 0.1, 1.0));
    assert!(beyond(Statistic::Correlation, 0.94, 0.95, 1.0));
    for bad in [0.0, -0.5, 1.5, f64::NAN] {
        let rules = DriftRules {
            hysteresis: bad,
            ..DriftRules::default()
        };
        let err = rules.check_features(&[]).unwrap_err().to_string();
        assert!(err.contains("drift.hysteresis"), "{err}");
    }
}
