//! Statistics between a reference histogram and a current one over the same bins.
//!
//! Every function takes plain counts (shares are computed inside) and returns a finite number:
//! - an empty histogram (no event, or no present value for the distances on an axis) carries no
//!   evidence of drift: distances are 0, the correlation is 1 and p-values are 1;
//! - a flat histogram (every bin the same share) has no shape: two flat ones correlate at 1,
//!   a flat one and a shaped one at 0;
//! - a constant reference (one bin) has a zero standard deviation: the Wasserstein distance is
//!   then expressed in bin widths instead.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};

use crate::profile::FeatureProfile;

/// Share given to an empty bin by [`psi`] (as Evidently does), so that its logarithm exists.
pub const PSI_EMPTY_SHARE: f64 = 1e-4;

/// Shares of each bin; `None` for an empty histogram.
pub(crate) fn shares(counts: &[u64]) -> Option<Vec<f64>> {
    let total: u64 = counts.iter().sum();
    (total > 0).then(|| counts.iter().map(|&c| c as f64 / total as f64).collect())
}

fn same_bins(reference: &[u64], current: &[u64]) {
    assert_eq!(
        reference.len(),
        current.len(),
        "histograms over the same bins"
    );
}

/// Total-variation distance: half the sum of the absolute differences of the shares, from 0
/// (same shares) to 1 (disjoint).
pub fn total_variation(reference: &[u64], current: &[u64]) -> f64 {
    same_bins(reference, current);
    let (Some(p), Some(q)) = (shares(reference), shares(current)) else {
        return 0.0;
    };
    tvd_of_shares(&p, &q)
}

fn tvd_of_shares(p: &[f64], q: &[f64]) -> f64 {
    (0.5 * p.iter().zip(q).map(|(a, b)| (a - b).abs()).sum::<f64>()).clamp(0.0, 1.0)
}

/// Pearson correlation of the two histograms' shares (OpenCV's HISTCMP_CORREL): 1 for the same
/// shape, down to -1.
pub fn histogram_correlation(reference: &[u64], current: &[u64]) -> f64 {
    same_bins(reference, current);
    let (Some(p), Some(q)) = (shares(reference), shares(current)) else {
        return 1.0;
    };
    correlation_of_shares(&p, &q)
}

fn correlation_of_shares(p: &[f64], q: &[f64]) -> f64 {
    let n = p.len() as f64;
    let (mp, mq) = (p.iter().sum::<f64>() / n, q.iter().sum::<f64>() / n);
    let (mut cov, mut vp, mut vq) = (0.0, 0.0, 0.0);
    for (a, b) in p.iter().zip(q) {
        cov += (a - mp) * (b - mq);
        vp += (a - mp).powi(2);
        vq += (b - mq).powi(2);
    }
    // Shares that differ by rounding only are flat.
    let flat = |v: f64| v <= 1e-24;
    match (flat(vp), flat(vq)) {
        (false, false) => (cov / (vp * vq).sqrt()).clamp(-1.0, 1.0),
        (true, true) => 1.0,
        _ => 0.0,
    }
}

/// Population stability index: sum of (q - p) ln(q / p) over the bins, an empty bin's share
/// taken as [`PSI_EMPTY_SHARE`]. 0 for the same shares; 0.1 and 0.25 are the usual "some" and
/// "major" shift marks.
pub fn psi(reference: &[u64], current: &[u64]) -> f64 {
    same_bins(reference, current);
    let (Some(p), Some(q)) = (shares(reference), shares(current)) else {
        return 0.0;
    };
    psi_of_shares(&p, &q)
}

fn psi_of_shares(p: &[f64], q: &[f64]) -> f64 {
    let floor = |s: f64| if s == 0.0 { PSI_EMPTY_SHARE } else { s };
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (a, b) = (floor(a), floor(b));
            (b - a) * (b / a).ln()
        })
        .sum::<f64>()
        .max(0.0)
}

/// Jensen-Shannon distance, base 2: the square root of the Jensen-Shannon divergence, from 0
/// (same shares) to 1 (disjoint); scipy's `jensenshannon(p, q, base=2)`.
pub fn jensen_shannon(reference: &[u64], current: &[u64]) -> f64 {
    same_bins(reference, current);
    let (Some(p), Some(q)) = (shares(reference), shares(current)) else {
        return 0.0;
    };
    js_of_shares(&p, &q)
}

fn js_of_shares(p: &[f64], q: &[f64]) -> f64 {
    let kl_to_mid = |a: f64, m: f64| if a > 0.0 { a * (a / m).log2() } else { 0.0 };
    let divergence: f64 = p
        .iter()
        .zip(q)
        .map(|(&a, &b)| {
            let m = (a + b) / 2.0;
            0.5 * kl_to_mid(a, m) + 0.5 * kl_to_mid(b, m)
        })
        .sum();
    divergence.clamp(0.0, 1.0).sqrt()
}

/// Wasserstein (earth mover's) distance between two histograms whose bins sit at `positions`
/// (ascending), divided by the reference's standard deviation over those positions (Evidently's
/// "normed" Wasserstein); when that deviation is 0, divided by the spacing of the first two
/// positions (one bin width) instead.
pub fn wasserstein_normed(positions: &[f64], reference: &[u64], current: &[u64]) -> f64 {
    same_bins(reference, current);
    assert_eq!(positions.len(), reference.len(), "one position per bin");
    let (Some(p), Some(q)) = (shares(reference), shares(current)) else {
        return 0.0;
    };
    wasserstein_of_shares(positions, &p, &q)
}

fn wasserstein_of_shares(positions: &[f64], p: &[f64], q: &[f64]) -> f64 {
    let (mut cp, mut cq, mut distance) = (0.0, 0.0, 0.0);
    for i in 0..positions.len().saturating_sub(1) {
        cp += p[i];
        cq += q[i];
        distance += (cp - cq).abs() * (positions[i + 1] - positions[i]);
    }
    let mean: f64 = p.iter().zip(positions).map(|(s, x)| s * x).sum();
    let var: f64 = p
        .iter()
        .zip(positions)
        .map(|(s, x)| s * (x - mean).powi(2))
        .sum();
    let scale = if var > 0.0 {
        var.sqrt()
    } else if positions.len() > 1 && positions[1] > positions[0] {
        positions[1] - positions[0]
    } else {
        1.0
    };
    (distance / scale).max(0.0)
}

/// p-value of Pearson's chi-square test of homogeneity of the two histograms (a 2 x k
/// contingency table over the bins that hold any event; no continuity correction): small when
/// the two samples are unlikely to come from one distribution. The survival function is statrs'.
pub fn chi_square_p(reference: &[u64], current: &[u64]) -> f64 {
    same_bins(reference, current);
    let (r, c): (u64, u64) = (reference.iter().sum(), current.iter().sum());
    if r == 0 || c == 0 {
        return 1.0;
    }
    let n = (r + c) as f64;
    let (mut statistic, mut used) = (0.0, 0usize);
    for (&a, &b) in reference.iter().zip(current) {
        let column = (a + b) as f64;
        if column == 0.0 {
            continue;
        }
        used += 1;
        let (ea, eb) = (r as f64 * column / n, c as f64 * column / n);
        statistic += (a as f64 - ea).powi(2) / ea + (b as f64 - eb).powi(2) / eb;
    }
    if used < 2 {
        return 1.0;
    }
    match ChiSquared::new((used - 1) as f64) {
        Ok(chi2) => chi2.sf(statistic).clamp(0.0, 1.0),
        Err(_) => 1.0,
    }
}

/// The two-sample Kolmogorov-Smirnov statistic over ordered bins: the largest gap between the
/// two cumulative shares.
pub fn ks_statistic(reference: &[u64], current: &[u64]) -> f64 {
    same_bins(reference, current);
    let (Some(p), Some(q)) = (shares(reference), shares(current)) else {
        return 0.0;
    };
    ks_of_shares(&p, &q)
}

fn ks_of_shares(p: &[f64], q: &[f64]) -> f64 {
    let (mut cp, mut cq, mut d) = (0.0f64, 0.0f64, 0.0f64);
    for (a, b) in p.iter().zip(q) {
        cp += a;
        cq += b;
        d = d.max((cp - cq).abs());
    }
    d.min(1.0)
}

/// p-value of the two-sample Kolmogorov-Smirnov test over ordered bins, from the asymptotic
/// Kolmogorov distribution at sqrt(n m / (n + m)) D (statrs' `TwoSidedAsymptotic`, scipy's
/// `kstwobign`). Binning ties values within a bin, which makes the test conservative.
pub fn ks_p(reference: &[u64], current: &[u64]) -> f64 {
    let (n, m) = (
        reference.iter().sum::<u64>() as f64,
        current.iter().sum::<u64>() as f64,
    );
    if n == 0.0 || m == 0.0 {
        return 1.0;
    }
    let d = ks_statistic(reference, current);
    kolmogorov_sf((n * m / (n + m)).sqrt() * d)
}

/// Survival function of the Kolmogorov distribution, P(K > x).
pub fn kolmogorov_sf(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return 1.0;
    }
    if x < 1.18 {
        // P(K <= x) = sqrt(2 pi) / x * sum exp(-(2k - 1)^2 pi^2 / (8 x^2)), fast for small x.
        let f = -std::f64::consts::PI.powi(2) / (8.0 * x * x);
        let cdf: f64 = (1..=20)
            .map(|k: i32| ((2 * k - 1) as f64).powi(2) * f)
            .map(f64::exp)
            .sum::<f64>()
            * (2.0 * std::f64::consts::PI).sqrt()
            / x;
        (1.0 - cdf).clamp(0.0, 1.0)
    } else {
        // P(K > x) = 2 sum (-1)^(k - 1) exp(-2 k^2 x^2).
        let sf: f64 = (1..=20)
            .map(|k: i32| {
                let sign = if k % 2 == 1 { 1.0 } else { -1.0 };
                sign * (-2.0 * (k * k) as f64 * x * x).exp()
            })
            .sum::<f64>()
            * 2.0;
        sf.clamp(0.0, 1.0)
    }
}

/// Every statistic of one feature, current against reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statistics {
    /// Total-variation distance, every bin (missing and other included).
    pub tvd: f64,
    /// Histogram correlation, every bin.
    pub correlation: f64,
    pub psi: f64,
    pub js_distance: f64,
    /// Normed Wasserstein distance over present values; numerical features only.
    pub wasserstein: Option<f64>,
    /// Chi-square homogeneity p-value, every bin.
    pub chi_square_p: f64,
    /// Kolmogorov-Smirnov p-value over present values; numerical features only.
    pub ks_p: Option<f64>,
}

impl Statistics {
    /// The statistics of `current` counts (binned with `profile`'s bins) against the profile's.
    pub fn compute(profile: &FeatureProfile, current: &[u64]) -> Self {
        let reference = profile.counts();
        let present = reference.len() - 1;
        let (wasserstein, ks_p) = match profile.positions() {
            Some(positions) => {
                // Over the present values: their shares once for both.
                let (r, c) = (&reference[..present], &current[..present]);
                same_bins(r, c);
                assert_eq!(positions.len(), r.len(), "one position per bin");
                match (shares(r), shares(c)) {
                    (Some(p), Some(q)) => {
                        let (n, m) = (r.iter().sum::<u64>() as f64, c.iter().sum::<u64>() as f64);
                        let d = ks_of_shares(&p, &q);
                        (
                            Some(wasserstein_of_shares(&positions, &p, &q)),
                            Some(kolmogorov_sf((n * m / (n + m)).sqrt() * d)),
                        )
                    }
                    _ => (Some(0.0), Some(1.0)),
                }
            }
            None => (None, None),
        };
        same_bins(reference, current);
        // The shares once for the four statistics over every bin (an empty side: no drift).
        let (tvd, correlation, psi, js_distance) = match (shares(reference), shares(current)) {
            (Some(p), Some(q)) => (
                tvd_of_shares(&p, &q),
                correlation_of_shares(&p, &q),
                psi_of_shares(&p, &q),
                js_of_shares(&p, &q),
            ),
            _ => (0.0, 1.0, 0.0, 0.0),
        };
        Statistics {
            tvd,
            correlation,
            psi,
            js_distance,
            wasserstein,
            chi_square_p: chi_square_p(reference, current),
            ks_p,
        }
    }
}
