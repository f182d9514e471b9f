//! Drift statistics: the reference profile of a model's inputs, histograms of new data binned
//! the same way, and the distances between them. Pure functions: no IO, no async, no knowledge
//! of Kafka, HTTP or databases.
//!
//! # Binning
//! - A categorical feature keeps a vocabulary (its declared codes, or the most frequent codes of
//!   the reference when there are too many) plus an "other" bucket (unseen or rare codes) and a
//!   "missing" bucket.
//! - A numerical feature gets equal-width bins over the central range of the reference (by
//!   default from its 1st to its 99th percentile), plus underflow, overflow and missing bins; a
//!   whole-number feature with a short range gets one bin per value. Equal-width bins keep the
//!   reference's shape, so the histogram correlation of two samples of one distribution is close
//!   to 1 (with equal-mass bins every reference bin would hold the same share and the
//!   correlation would be noise).
//!
//! A current window is always binned with the reference's own edges ([`FeatureProfile::bin`]),
//! and histograms are plain counts: partial windows add up exactly.

use serde::{Deserialize, Serialize};
use vigie_model::Matrix;

/// What a feature is, for binning.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Codes as the model sees them; `None` for an open vocabulary (any code of a range).
    Categorical {
        codes: Option<Vec<f64>>,
    },
    Numerical,
}

/// Binning settings of a reference profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileParams {
    /// Equal-width bins of a numerical feature.
    pub bins: usize,
    /// Share of the reference spanned by the equal-width bins, centred (0.98: 1st to 99th
    /// percentile); the rest falls in the underflow and overflow bins.
    pub central_share: f64,
    /// Most codes kept for a categorical feature; rarer ones share the "other" bucket.
    pub max_categories: usize,
}

impl Default for ProfileParams {
    fn default() -> Self {
        ProfileParams {
            bins: 20,
            central_share: 0.98,
            max_categories: 50,
        }
    }
}

/// How one feature is binned, and the reference's counts in those bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureProfile {
    /// `counts`: one per code, then "other", then "missing".
    Categorical {
        name: String,
        codes: Vec<f64>,
        counts: Vec<u64>,
    },
    /// `edges` ascending (`bins + 1` values); `counts`: underflow, the bins, overflow, missing.
    Numerical {
        name: String,
        edges: Vec<f64>,
        counts: Vec<u64>,
    },
}

/// The reference distribution of every input of a model, built when the model is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Rows behind the counts: training rows plus synthetic rows.
    pub rows: u64,
    pub real_rows: u64,
    pub synthetic_rows: u64,
    pub features: Vec<FeatureProfile>,
}

impl FeatureProfile {
    /// Learns the bins of one column from the reference values (`NaN` = missing) and counts them.
    pub fn build(name: &str, kind: &Kind, values: &[f64], params: &ProfileParams) -> Self {
        let mut present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        present.sort_by(f64::total_cmp);
        let mut profile = match kind {
            Kind::Categorical { codes } => FeatureProfile::Categorical {
                name: name.to_string(),
                codes: vocabulary(codes.as_deref(), &present, params.max_categories),
                counts: Vec::new(),
            },
            Kind::Numerical => FeatureProfile::Numerical {
                name: name.to_string(),
                edges: edges(&present, params),
                counts: Vec::new(),
            },
        };
        let mut counts = vec![0; profile.bins()];
        for &v in values {
            counts[profile.bin(v)] += 1;
        }
        match &mut profile {
            FeatureProfile::Categorical { counts: c, .. }
            | FeatureProfile::Numerical { counts: c, .. } => *c = counts,
        }
        profile
    }

    pub fn name(&self) -> &str {
        match self {
            FeatureProfile::Categorical { name, .. } | FeatureProfile::Numerical { name, .. } => {
                name
            }
        }
    }

    /// The reference counts, one per bin.
    pub fn counts(&self) -> &[u64] {
        match self {
            FeatureProfile::Categorical { counts, .. }
            | FeatureProfile::Numerical { counts, .. } => counts,
        }
    }

    /// Number of bins, the special ones included.
    pub fn bins(&self) -> usize {
        match self {
            FeatureProfile::Categorical { codes, .. } => codes.len() + 2,
            FeatureProfile::Numerical { edges, .. } => edges.len() + 2,
        }
    }

    /// The bin of one value: the same function for the reference and every window.
    pub fn bin(&self, value: f64) -> usize {
        match self {
            FeatureProfile::Categorical { codes, .. } => {
                if value.is_nan() {
                    codes.len() + 1
                } else {
                    codes
                        .iter()
                        .position(|&c| c == value)
                        .unwrap_or(codes.len())
                }
            }
            FeatureProfile::Numerical { edges, .. } => {
                let n = edges.len() - 1;
                if value.is_nan() {
                    n + 2
                } else if value < edges[0] {
                    0
                } else if value > edges[n] {
                    n + 1
                } else {
                    // The first edge above the value closes its bin; the last edge is inclusive.
                    1 + edges[1..].partition_point(|&e| e <= value).min(n - 1)
                }
            }
        }
    }

    /// Counts `values` in this profile's bins.
    pub fn histogram(&self, values: impl IntoIterator<Item = f64>) -> Vec<u64> {
        let mut counts = vec![0; self.bins()];
        for v in values {
            counts[self.bin(v)] += 1;
        }
        counts
    }
}

/// Declared codes when they fit; otherwise the most frequent codes of the reference.
fn vocabulary(declared: Option<&[f64]>, sorted: &[f64], max: usize) -> Vec<f64> {
    if let Some(codes) = declared.filter(|c| c.len() <= max) {
        return codes.to_vec();
    }
    let mut runs: Vec<(usize, f64)> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let j = sorted[i..].partition_point(|&v| v == sorted[i]) + i;
        runs.push((j - i, sorted[i]));
        i = j;
    }
    runs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.total_cmp(&b.1)));
    let mut codes: Vec<f64> = runs.into_iter().take(max).map(|(_, c)| c).collect();
    codes.sort_by(f64::total_cmp);
    codes
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn edges(sorted: &[f64], params: &ProfileParams) -> Vec<f64> {
    if sorted.is_empty() {
        return vec![0.0, 0.0];
    }
    let tail = (1.0 - params.central_share.clamp(0.0, 1.0)) / 2.0;
    let (lo, hi) = (quantile(sorted, tail), quantile(sorted, 1.0 - tail));
    let whole = sorted.iter().all(|v| v.fract() == 0.0);
    if whole && hi - lo < params.bins as f64 {
        // One bin per whole number, edges half-way between them.
        return (0..=(hi - lo) as usize + 1)
            .map(|k| lo - 0.5 + k as f64)
            .collect();
    }
    if hi == lo {
        return vec![lo, hi];
    }
    let n = params.bins.max(1);
    (0..=n)
        .map(|k| lo + (hi - lo) * k as f64 / n as f64)
        .collect()
}

/// Why a profile read from outside is not usable.
#[derive(Debug, Clone, PartialEq)]
pub struct MalformedProfile(pub String);

impl std::fmt::Display for MalformedProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed drift profile: {}", self.0)
    }
}

impl std::error::Error for MalformedProfile {}

impl FeatureProfile {
    /// Checks what binning relies on: finite codes; at least two finite, ascending edges; one
    /// count per bin.
    pub fn validate(&self) -> Result<(), MalformedProfile> {
        let bad = |what: &str| Err(MalformedProfile(format!("feature {}: {what}", self.name())));
        match self {
            FeatureProfile::Categorical { codes, .. } => {
                if codes.iter().any(|c| !c.is_finite()) {
                    return bad("a code is not a finite number");
                }
            }
            FeatureProfile::Numerical { edges, .. } => {
                if edges.len() < 2
                    || edges.iter().any(|e| !e.is_finite())
                    || edges.windows(2).any(|w| w[0] > w[1])
                {
                    return bad("edges must be at least two finite numbers in ascending order");
                }
            }
        }
        if self.counts().len() != self.bins() {
            return bad("one count per bin expected");
        }
        Ok(())
    }
}

impl Profile {
    /// Checks every feature's binning (see [`FeatureProfile::validate`]).
    pub fn validate(&self) -> Result<(), MalformedProfile> {
        self.features.iter().try_for_each(FeatureProfile::validate)
    }

    /// Builds the profile of `real` rows mixed with `synthetic` rows (model order, `NaN` =
    /// missing); `names` and `kinds` follow the columns.
    pub fn build(
        names: &[&str],
        kinds: &[Kind],
        real: &Matrix,
        synthetic: &Matrix,
        params: &ProfileParams,
    ) -> Self {
        assert_eq!(names.len(), real.cols(), "one name per column");
        assert_eq!(kinds.len(), real.cols(), "one kind per column");
        let features = (0..real.cols())
            .map(|c| {
                let values: Vec<f64> = real
                    .iter_rows()
                    .chain(synthetic.iter_rows())
                    .map(|row| row[c])
                    .collect();
                FeatureProfile::build(names[c], &kinds[c], &values, params)
            })
            .collect();
        Profile {
            rows: (real.rows() + synthetic.rows()) as u64,
            real_rows: real.rows() as u64,
            synthetic_rows: synthetic.rows() as u64,
            features,
        }
    }
}

/// Shares of each bin.
fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&c| {
            if total == 0 {
                0.0
            } else {
                c as f64 / total as f64
            }
        })
        .collect()
}

/// Total-variation distance between two histograms over the same bins: half the sum of the
/// absolute differences of their shares, from 0 (same shares) to 1 (disjoint).
pub fn total_variation(reference: &[u64], current: &[u64]) -> f64 {
    assert_eq!(
        reference.len(),
        current.len(),
        "histograms over the same bins"
    );
    let (p, q) = (shares(reference), shares(current));
    0.5 * p.iter().zip(&q).map(|(a, b)| (a - b).abs()).sum::<f64>()
}

/// Pearson correlation of two histograms' shares over the same bins (OpenCV's HISTCMP_CORREL):
/// 1 for the same shape. When a histogram is flat its correlation is undefined: 1 is returned
/// when both are flat, 0 otherwise.
pub fn histogram_correlation(reference: &[u64], current: &[u64]) -> f64 {
    assert_eq!(
        reference.len(),
        current.len(),
        "histograms over the same bins"
    );
    let (p, q) = (shares(reference), shares(current));
    let n = p.len() as f64;
    let (mp, mq) = (p.iter().sum::<f64>() / n, q.iter().sum::<f64>() / n);
    let (mut cov, mut vp, mut vq) = (0.0, 0.0, 0.0);
    for (a, b) in p.iter().zip(&q) {
        cov += (a - mp) * (b - mq);
        vp += (a - mp).powi(2);
        vq += (b - mq).powi(2);
    }
    match (vp > 0.0, vq > 0.0) {
        (true, true) => cov / (vp * vq).sqrt(),
        (false, false) => 1.0,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests;
