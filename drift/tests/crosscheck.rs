//! Every statistic against scipy and numpy on the same histograms (values produced by
//! `drift/tests/crosscheck.py`, stored in `crosscheck.json`).

use serde::Deserialize;
use vigie_drift::{
    chi_square_p, histogram_correlation, jensen_shannon, ks_p, psi, stats::ks_statistic,
    total_variation, wasserstein_normed,
};

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    reference: Vec<u64>,
    current: Vec<u64>,
    positions: Vec<f64>,
    expected: Expected,
}

#[derive(Deserialize)]
struct Expected {
    tvd: f64,
    correlation: f64,
    psi: f64,
    js_distance: f64,
    wasserstein: f64,
    chi_square_p: f64,
    ks_statistic: f64,
    ks_p: f64,
}

/// Equal within `abs` or, for large values, within `rel` of their size.
fn near(what: &str, case: usize, ours: f64, theirs: f64, abs: f64, rel: f64) {
    let ok = (ours - theirs).abs() <= abs.max(rel * theirs.abs());
    assert!(ok, "case {case}, {what}: vigie {ours} vs scipy {theirs}");
}

#[test]
fn statistics_match_scipy() {
    let cases: Cases =
        serde_json::from_str(include_str!("crosscheck.json")).expect("crosscheck.json parses");
    assert!(cases.cases.len() >= 10);
    for (i, c) in cases.cases.iter().enumerate() {
        let (r, q, e) = (&c.reference, &c.current, &c.expected);
        near("tvd", i, total_variation(r, q), e.tvd, 1e-12, 0.0);
        near(
            "correlation",
            i,
            histogram_correlation(r, q),
            e.correlation,
            1e-12,
            0.0,
        );
        near("psi", i, psi(r, q), e.psi, 1e-12, 1e-10);
        near("js", i, jensen_shannon(r, q), e.js_distance, 1e-9, 0.0);
        near(
            "wasserstein",
            i,
            wasserstein_normed(&c.positions, r, q),
            e.wasserstein,
            1e-10,
            1e-9,
        );
        near("chi2 p", i, chi_square_p(r, q), e.chi_square_p, 1e-12, 1e-8);
        near("ks D", i, ks_statistic(r, q), e.ks_statistic, 1e-12, 0.0);
        near("ks p", i, ks_p(r, q), e.ks_p, 1e-12, 1e-8);
    }
}
