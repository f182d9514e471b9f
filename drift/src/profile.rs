//! Reference profiles: how each feature is binned, and the reference counts in those bins.

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
    /// `mean` and `std` are the reference's present values' (noise is scaled by the std).
    Numerical {
        name: String,
        edges: Vec<f64>,
        counts: Vec<u64>,
        #[serde(default)]
        mean: f64,
        #[serde(default)]
        std: f64,
    },
}

/// The profile format written by this version; version 1 profiles (no moments) and version 2
/// profiles (no null distributions) still load.
pub const PROFILE_VERSION: u32 = 3;

/// Most bins of one feature (window slots hold bin numbers as `u16`).
pub const MAX_BINS: usize = u16::MAX as usize;

fn version_1() -> u32 {
    1
}

/// The reference distribution of every input of a model, built when the model is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Format version ([`PROFILE_VERSION`] when built here).
    #[serde(default = "version_1")]
    pub version: u32,
    /// Rows behind the counts: training rows plus synthetic rows.
    pub rows: u64,
    pub real_rows: u64,
    pub synthetic_rows: u64,
    pub features: Vec<FeatureProfile>,
    /// Each feature's statistic when nothing drifted, by window size (format 3 on; absent
    /// from older profiles, which decide on the rules' thresholds alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null: Option<crate::null::NullModel>,
}

impl FeatureProfile {
    /// Learns the bins of one column from the reference values (`NaN` = missing) and counts them.
    pub fn build(name: &str, kind: &Kind, values: &[f64], params: &ProfileParams) -> Self {
        let present = || -> Vec<f64> { values.iter().copied().filter(|v| !v.is_nan()).collect() };
        let mut profile = match kind {
            Kind::Categorical { codes } => FeatureProfile::Categorical {
                name: name.to_string(),
                codes: vocabulary(codes.as_deref(), present, params.max_categories),
                counts: Vec::new(),
            },
            Kind::Numerical => {
                let mut present = present();
                let (mean, std) = moments(&present);
                FeatureProfile::Numerical {
                    name: name.to_string(),
                    edges: edges(&mut present, params),
                    counts: Vec::new(),
                    mean,
                    std,
                }
            }
        };
        // The compiled binning (equal to `bin`, tested in `binner`), for speed.
        let binner = crate::binner::FeatureBinner::new(&profile);
        let mut counts = vec![0; profile.bins()];
        for &v in values {
            counts[binner.bin(v) as usize] += 1;
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

impl FeatureProfile {
    pub fn is_numerical(&self) -> bool {
        matches!(self, FeatureProfile::Numerical { .. })
    }

    /// "categorical" or "numerical".
    pub fn kind_name(&self) -> &'static str {
        if self.is_numerical() {
            "numerical"
        } else {
            "categorical"
        }
    }

    /// The `q` quantile (0 to 1) of the present values counted in `counts` (this profile's
    /// bins), interpolated inside the bin it falls in; values under or over the edges count
    /// as the outer edge. `None` for a categorical feature or no present value.
    pub fn quantile(&self, counts: &[u64], q: f64) -> Option<f64> {
        let FeatureProfile::Numerical { edges, .. } = self else {
            return None;
        };
        let n = edges.len() - 1;
        let present = counts.get(..n + 2)?;
        let total: u64 = present.iter().sum();
        if total == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total as f64;
        let mut below = 0.0;
        for (bin, &count) in present.iter().enumerate() {
            let count = count as f64;
            if count > 0.0 && below + count >= rank {
                return Some(match bin {
                    0 => edges[0],
                    b if b == n + 1 => edges[n],
                    b => {
                        let (lo, hi) = (edges[b - 1], edges[b]);
                        lo + (hi - lo) * ((rank - below) / count).clamp(0.0, 1.0)
                    }
                });
            }
            below += count;
        }
        Some(edges[n])
    }

    /// Where each present-value bin sits on the feature's axis (every bin but "missing"), for
    /// the Wasserstein distance: a numerical bin's midpoint, with the underflow and overflow
    /// bins half a bin width beyond the outer edges; `None` for a categorical feature, whose
    /// codes have no distance between them.
    pub fn positions(&self) -> Option<Vec<f64>> {
        let FeatureProfile::Numerical { edges, .. } = self else {
            return None;
        };
        let n = edges.len() - 1;
        let width = if n > 0 && edges[n] > edges[0] {
            (edges[n] - edges[0]) / n as f64
        } else {
            1.0
        };
        let mut positions = Vec::with_capacity(n + 2);
        positions.push(edges[0] - width / 2.0);
        positions.extend(edges.windows(2).map(|w| (w[0] + w[1]) / 2.0));
        positions.push(edges[n] + width / 2.0);
        Some(positions)
    }

    /// A short label per bin, for reports: the code, "[a, b)" for a numerical bin, then the
    /// special bins.
    pub fn labels(&self) -> Vec<String> {
        match self {
            FeatureProfile::Categorical { codes, .. } => codes
                .iter()
                .map(|c| format!("{c}"))
                .chain(["other".to_string(), "missing".to_string()])
                .collect(),
            FeatureProfile::Numerical { edges, .. } => {
                let n = edges.len() - 1;
                let mut labels = vec![format!("< {}", short(edges[0]))];
                for (i, w) in edges.windows(2).enumerate() {
                    let close = if i + 1 == n { "]" } else { ")" };
                    labels.push(format!("[{}, {}{close}", short(w[0]), short(w[1])));
                }
                labels.push(format!("> {}", short(edges[n])));
                labels.push("missing".to_string());
                labels
            }
        }
    }
}

/// A number with at most 4 significant decimals, for labels.
fn short(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Declared codes when they fit; otherwise the most frequent codes of the reference.
fn vocabulary(
    declared: Option<&[f64]>,
    present: impl FnOnce() -> Vec<f64>,
    max: usize,
) -> Vec<f64> {
    if let Some(codes) = declared.filter(|c| c.len() <= max) {
        return codes.to_vec();
    }
    let mut present = present();
    present.sort_by(f64::total_cmp);
    let sorted: &[f64] = &present;
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

/// Mean and population standard deviation; zeros for no value.
fn moments(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// The value at rank round((n - 1) q) of the values, as if they were sorted (a selection,
/// linear time; the values are reordered).
fn quantile(values: &mut [f64], q: f64) -> f64 {
    let i = ((values.len() - 1) as f64 * q).round() as usize;
    *values.select_nth_unstable_by(i, f64::total_cmp).1
}

fn edges(present: &mut [f64], params: &ProfileParams) -> Vec<f64> {
    if present.is_empty() {
        return vec![0.0, 0.0];
    }
    let tail = (1.0 - params.central_share.clamp(0.0, 1.0)) / 2.0;
    let (lo, hi) = (quantile(present, tail), quantile(present, 1.0 - tail));
    let whole = present.iter().all(|v| v.fract() == 0.0);
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
        if self.bins() > MAX_BINS {
            return bad("more bins than a window can index");
        }
        Ok(())
    }
}

impl Profile {
    /// Checks every feature's binning (see [`FeatureProfile::validate`]).
    pub fn validate(&self) -> Result<(), MalformedProfile> {
        if self.version > PROFILE_VERSION {
            return Err(MalformedProfile(format!(
                "format version {} is newer than this build's {PROFILE_VERSION}",
                self.version
            )));
        }
        if let Some(null) = &self.null
            && (null.features.len() != self.features.len()
                || null
                    .features
                    .iter()
                    .zip(&self.features)
                    .any(|(n, f)| n.name != f.name()))
        {
            return Err(MalformedProfile(
                "the null distributions are not the features'".into(),
            ));
        }
        self.features.iter().try_for_each(FeatureProfile::validate)
    }

    /// Builds the profile of real rows given column by column (`NaN` = missing), no synthetic
    /// row; `names` and `kinds` follow the columns.
    pub fn from_columns(
        names: &[&str],
        kinds: &[Kind],
        columns: &[Vec<f64>],
        params: &ProfileParams,
    ) -> Self {
        use rayon::prelude::*;
        assert_eq!(names.len(), columns.len(), "one name per column");
        assert_eq!(kinds.len(), columns.len(), "one kind per column");
        let rows = columns.first().map_or(0, Vec::len);
        // Features are independent: one task each on rayon's pool.
        let features = columns
            .par_iter()
            .enumerate()
            .map(|(c, values)| FeatureProfile::build(names[c], &kinds[c], values, params))
            .collect();
        Profile {
            version: PROFILE_VERSION,
            rows: rows as u64,
            real_rows: rows as u64,
            synthetic_rows: 0,
            features,
            null: None,
        }
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
        use rayon::prelude::*;
        let columns: Vec<Vec<f64>> = (0..real.cols())
            .into_par_iter()
            .map(|c| {
                real.iter_rows()
                    .chain(synthetic.iter_rows())
                    .map(|row| row[c])
                    .collect()
            })
            .collect();
        Profile {
            rows: (real.rows() + synthetic.rows()) as u64,
            real_rows: real.rows() as u64,
            synthetic_rows: synthetic.rows() as u64,
            ..Profile::from_columns(names, kinds, &columns, params)
        }
    }
}
