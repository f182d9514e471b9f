use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;
use crate::MarginalSampler;

/// Column 0: a code in 0..4; column 1: equals column 0 nine times in ten; column 2: a number
/// around 10 x column 0; column 3: independent noise. The target is 1 mostly when column 0 >= 2.
fn source(rows: usize) -> (Matrix, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(11);
    let mut data = Vec::with_capacity(rows * 4);
    let mut y = Vec::with_capacity(rows);
    for _ in 0..rows {
        let a = rng.gen_range(0..4) as f64;
        let b = if rng.gen_bool(0.9) {
            a
        } else {
            rng.gen_range(0..4) as f64
        };
        let x = 10.0 * a + rng.r#gen::<f64>() * 3.0;
        let noise = if rng.gen_bool(0.05) {
            f64::NAN
        } else {
            rng.gen_range(0..7) as f64
        };
        data.extend([a, b, x, noise]);
        y.push(if rng.gen_bool(if a >= 2.0 { 0.8 } else { 0.1 }) {
            1.0
        } else {
            0.0
        });
    }
    (Matrix::from_row_major(data, rows, 4).unwrap(), y)
}

const KINDS: [ColumnKind; 4] = [
    ColumnKind::Categorical,
    ColumnKind::Categorical,
    ColumnKind::Numerical,
    ColumnKind::Categorical,
];

fn share(x: &Matrix, keep: impl Fn(&[f64]) -> bool) -> f64 {
    x.iter_rows().filter(|r| keep(r)).count() as f64 / x.rows() as f64
}

#[test]
fn the_same_seed_gives_the_same_rows() {
    let (x, y) = source(2_000);
    let g = Generator::fit(&x, &KINDS, Some(&y), &GeneratorParams::default()).unwrap();
    let (a, b) = (g.sample(500, 7), g.sample(500, 7));
    assert_eq!(
        format!("{:?}", a.x),
        format!("{:?}", b.x),
        "NaN-aware comparison"
    );
    assert_eq!(a.y, b.y);
    assert_ne!(format!("{:?}", a.x), format!("{:?}", g.sample(500, 8).x));
}

#[test]
fn the_tree_links_the_dependent_columns() {
    let (x, y) = source(5_000);
    let g = Generator::fit(&x, &KINDS, Some(&y), &GeneratorParams::default()).unwrap();
    let parents = g.parents();
    let linked = |i: usize, j: usize| parents[i] == Some(j) || parents[j] == Some(i);
    assert!(linked(0, 1), "{parents:?}");
    assert!(linked(0, 2) || linked(1, 2), "{parents:?}");
}

#[test]
fn samples_keep_dependencies_that_independent_resampling_destroys() {
    let (x, y) = source(20_000);
    let g = Generator::fit(&x, &KINDS, Some(&y), &GeneratorParams::default()).unwrap();
    let s = g.sample(20_000, 3);
    let sy = s.y.expect("fitted with a target");

    let same = |m: &Matrix| share(m, |r| r[0] == r[1]);
    let real = same(&x);
    assert!((same(&s.x) - real).abs() < 0.02, "{} vs {real}", same(&s.x));
    let independent = MarginalSampler::fit(&x).unwrap().sample(20_000, 3);
    assert!(
        same(&independent) < 0.4,
        "independent columns agree 1 time in 4"
    );

    // The numerical column follows the code: its mean per code within 0.5.
    for code in 0..4 {
        let mean = |m: &Matrix| {
            let v: Vec<f64> = m
                .iter_rows()
                .filter(|r| r[0] == code as f64)
                .map(|r| r[2])
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        assert!((mean(&s.x) - mean(&x)).abs() < 0.5, "code {code}");
    }

    // The target follows the code.
    let positive_rate = |m: &Matrix, y: &[f64], high: bool| {
        let rows: Vec<usize> = (0..m.rows())
            .filter(|&i| (m.row(i)[0] >= 2.0) == high)
            .collect();
        rows.iter().filter(|&&i| y[i] == 1.0).count() as f64 / rows.len() as f64
    };
    for high in [false, true] {
        let (r, q) = (positive_rate(&x, &y, high), positive_rate(&s.x, &sy, high));
        assert!((r - q).abs() < 0.02, "{r} vs {q}");
    }

    // Values are real ones and missing values keep their share.
    assert!(s.x.iter_rows().all(|r| (0.0..4.0).contains(&r[0])));
    let missing = |m: &Matrix| share(m, |r| r[3].is_nan());
    assert!((missing(&s.x) - missing(&x)).abs() < 0.01);
}

#[test]
fn without_a_target_the_tree_still_holds_the_columns_together() {
    let (x, _) = source(10_000);
    let g = Generator::fit(&x, &KINDS, None, &GeneratorParams::default()).unwrap();
    let s = g.sample(10_000, 5);
    assert!(s.y.is_none());
    let same = share(&s.x, |r| r[0] == r[1]);
    assert!((same - share(&x, |r| r[0] == r[1])).abs() < 0.03);
}

#[test]
fn bad_inputs_are_refused_with_a_reason() {
    let (x, y) = source(10);
    let p = GeneratorParams::default();
    let empty = Matrix::from_row_major(vec![], 0, 4).unwrap();
    assert_eq!(
        Generator::fit(&empty, &KINDS, None, &p).unwrap_err(),
        FitError::NoRows
    );
    assert!(matches!(
        Generator::fit(&x, &KINDS[..3], None, &p),
        Err(FitError::Shape(_))
    ));
    assert!(matches!(
        Generator::fit(&x, &KINDS, Some(&y[..5]), &p),
        Err(FitError::Shape(_))
    ));
    let mut nan_y = y.clone();
    nan_y[0] = f64::NAN;
    assert!(matches!(
        Generator::fit(&x, &KINDS, Some(&nan_y), &p),
        Err(FitError::Target(_))
    ));
}

#[test]
fn conditional_mutual_information_of_copies_and_independent_columns() {
    let a: Vec<u16> = (0..1000).map(|i| (i % 4) as u16).collect();
    let independent: Vec<u16> = (0..1000).map(|i| ((i / 4) % 2) as u16).collect();
    let c = vec![0usize; 1000];
    let copy = conditional_mutual_information(&a, 4, &a, 4, &c, 1);
    assert!((copy - 4f64.ln()).abs() < 1e-9, "I(A; A) = H(A) = ln 4");
    let none = conditional_mutual_information(&a, 4, &independent, 2, &c, 1);
    assert!(none.abs() < 1e-9, "{none}");
}
