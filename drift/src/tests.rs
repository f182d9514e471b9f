use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;

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
        },
        FeatureProfile::Numerical {
            name: "x".into(),
            edges: vec![2.0, 1.0],
            counts: vec![0; 4],
        },
        FeatureProfile::Numerical {
            name: "x".into(),
            edges: vec![1.0, 2.0],
            counts: vec![0; 3],
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
