//! Regression: the figures of an estimate against the truth, the prediction interval calibrated
//! on held-out residuals (split conformal), and the groups whose residuals show the model
//! underestimates them.
//!
//! Residuals are `truth - estimate` throughout: a positive residual is an underestimate.
//! Definitions of MAE, RMSE, R-squared and median absolute error follow scikit-learn.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::bootstrap::percentile;

/// Every figure Vigie reports for a regression on one data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegressionMetrics {
    pub rows: u64,
    /// Mean of the targets.
    pub mean_target: f64,
    pub mae: f64,
    pub rmse: f64,
    /// 1 - (sum of squared residuals / total sum of squares); 0 when the targets are constant.
    pub r2: f64,
    pub median_absolute_error: f64,
    /// Mean of `truth - estimate`: positive when the model underestimates on average.
    pub mean_residual: f64,
    /// How far under the truth an estimate must be to count as a costly underestimate.
    pub underestimate_margin: f64,
    /// Share of rows whose estimate is more than `underestimate_margin` under the truth.
    pub share_underestimated: f64,
    /// Share of rows whose truth lies inside the prediction interval; absent when the model
    /// has no interval (figures computed before it is calibrated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_coverage: Option<f64>,
    /// Mean width of the prediction interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_mean_width: Option<f64>,
}

impl RegressionMetrics {
    /// The figures of estimates `p` against targets `y`. Panics when the lengths differ.
    pub fn compute(y: &[f64], p: &[f64], underestimate_margin: f64) -> Self {
        assert_eq!(y.len(), p.len(), "one estimate per target");
        let n = y.len() as f64;
        if y.is_empty() {
            return RegressionMetrics {
                rows: 0,
                mean_target: 0.0,
                mae: 0.0,
                rmse: 0.0,
                r2: 0.0,
                median_absolute_error: 0.0,
                mean_residual: 0.0,
                underestimate_margin,
                share_underestimated: 0.0,
                interval_coverage: None,
                interval_mean_width: None,
            };
        }
        let mean_target = y.iter().sum::<f64>() / n;
        let residuals: Vec<f64> = y.iter().zip(p).map(|(t, e)| t - e).collect();
        let mae = residuals.iter().map(|r| r.abs()).sum::<f64>() / n;
        let sse: f64 = residuals.iter().map(|r| r * r).sum();
        let sst: f64 = y.iter().map(|t| (t - mean_target).powi(2)).sum();
        let mut absolute: Vec<f64> = residuals.iter().map(|r| r.abs()).collect();
        absolute.sort_by(f64::total_cmp);
        RegressionMetrics {
            rows: y.len() as u64,
            mean_target,
            mae,
            rmse: (sse / n).sqrt(),
            r2: if sst > 0.0 { 1.0 - sse / sst } else { 0.0 },
            median_absolute_error: median_of_sorted(&absolute),
            mean_residual: residuals.iter().sum::<f64>() / n,
            underestimate_margin,
            share_underestimated: residuals
                .iter()
                .filter(|&&r| r > underestimate_margin)
                .count() as f64
                / n,
            interval_coverage: None,
            interval_mean_width: None,
        }
    }

    /// The same figures with the coverage and width of `interval` on these rows.
    pub fn with_interval(mut self, y: &[f64], p: &[f64], interval: &Interval) -> Self {
        assert_eq!(y.len(), p.len(), "one estimate per target");
        if y.is_empty() {
            return self;
        }
        let (mut inside, mut width) = (0usize, 0.0);
        for (&t, &e) in y.iter().zip(p) {
            let [lo, hi] = interval.around(e);
            inside += usize::from(lo <= t && t <= hi);
            width += hi - lo;
        }
        self.interval_coverage = Some(inside as f64 / y.len() as f64);
        self.interval_mean_width = Some(width / y.len() as f64);
        self
    }
}

fn median_of_sorted(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// A prediction interval: the estimate plus two offsets taken from held-out residuals, kept
/// inside the target's valid range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interval {
    /// The share of truths the interval is meant to hold, e.g. 0.9.
    pub coverage: f64,
    /// Added to the estimate for the lower end (a residual quantile: usually negative).
    pub lower_offset: f64,
    /// Added to the estimate for the upper end.
    pub upper_offset: f64,
    /// The target's valid range: the ends never leave it.
    pub min: f64,
    pub max: f64,
    /// How many residuals the offsets were calibrated on.
    pub calibration_rows: u64,
}

impl Interval {
    /// Split conformal with one quantile per tail: of `n` held-out residuals (`truth -
    /// estimate`), the lower offset is the `floor((n + 1) a/2)`-th smallest and the upper one the
    /// `ceil((n + 1) (1 - a/2))`-th smallest, `a = 1 - coverage`. For a new row exchangeable
    /// with the calibration rows, each tail is missed with probability at most `a/2`, so the
    /// interval holds the truth with probability at least `coverage`; when `n` is too small for
    /// a tail, that end is the range's bound. Tails are taken apart because errors of a skewed
    /// target (a time, a cost) are not symmetric.
    pub fn calibrate(residuals: &[f64], coverage: f64, min: f64, max: f64) -> Interval {
        assert!(coverage > 0.0 && coverage < 1.0, "coverage in (0, 1)");
        let mut sorted: Vec<f64> = residuals
            .iter()
            .copied()
            .filter(|r| r.is_finite())
            .collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let tail = (1.0 - coverage) / 2.0;
        // A hair of slack: (1 - 0.9) / 2 is 0.0499999..., and 100 times it must floor to 5.
        let low_rank = ((n + 1) as f64 * tail + 1e-9).floor() as usize;
        let high_rank = ((n + 1) as f64 * (1.0 - tail) - 1e-9).ceil() as usize;
        let lower_offset = match low_rank {
            0 => f64::NEG_INFINITY,
            k => sorted[k - 1],
        };
        let upper_offset = if high_rank >= 1 && high_rank <= n {
            sorted[high_rank - 1]
        } else {
            f64::INFINITY
        };
        Interval {
            coverage,
            // Infinite offsets are stored as the whole range: JSON has no infinity.
            lower_offset: lower_offset.max(min - max),
            upper_offset: upper_offset.min(max - min),
            min,
            max,
            calibration_rows: n as u64,
        }
    }

    /// `[lower, upper]` around an estimate, inside `[min, max]`.
    pub fn around(&self, estimate: f64) -> [f64; 2] {
        let lo = (estimate + self.lower_offset).clamp(self.min, self.max);
        let hi = (estimate + self.upper_offset).clamp(self.min, self.max);
        [lo, hi.max(lo)]
    }

    /// Whether the stored values can be used (an interval read from a file).
    pub fn validate(&self) -> Result<(), String> {
        let finite = [
            self.coverage,
            self.lower_offset,
            self.upper_offset,
            self.min,
            self.max,
        ]
        .iter()
        .all(|v| v.is_finite());
        if !(finite && self.coverage > 0.0 && self.coverage < 1.0) || self.min > self.max {
            return Err(format!("unusable prediction interval {self:?}"));
        }
        if self.lower_offset > self.upper_offset {
            return Err("the interval's lower offset is above its upper offset".into());
        }
        Ok(())
    }
}

/// A mean with its bootstrap interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeanEstimate {
    pub rows: u64,
    pub mean: f64,
    /// Percentile bootstrap interval of the mean, at the confidence it was asked for (two-sided).
    pub lower: f64,
    pub upper: f64,
}

/// One group's residuals on the slice the groups were judged on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupResiduals {
    /// The group's value (the model's number for it).
    pub value: f64,
    pub rows: u64,
    /// Mean of `truth - estimate`.
    pub mean_residual: f64,
    /// One-sided lower confidence bound of that mean (percentile bootstrap), at the per-group
    /// confidence of [`judge_groups`]; `None` for a group with too few rows to be judged.
    pub lower_bound: Option<f64>,
    /// Whether the group has enough rows and a lower bound above zero.
    pub flagged: bool,
}

/// How groups are judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupRule {
    /// Fewest rows a group needs to be judged at all.
    pub min_rows: usize,
    /// Family-wise confidence, e.g. 0.95: the chance that no group with an unbiased model is
    /// flagged, whatever the number of groups judged.
    pub confidence: f64,
    /// Fewest bootstrap resamples per group (more are drawn when the per-group level is
    /// extreme, so the bound is not read off the last few resamples).
    pub resamples: usize,
    pub seed: u64,
}

/// The groups judged and the per-group level: what [`judge_groups`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub groups: Vec<GroupResiduals>,
    /// How many groups had `min_rows` rows or more.
    pub judged: usize,
    /// The one-sided confidence of each group's lower bound: `1 - (1 - confidence) / judged`
    /// (Bonferroni).
    pub per_group_confidence: f64,
}

/// Judges each group: its residuals' mean and the one-sided lower bound of that mean. A group is
/// flagged when it has at least `min_rows` rows and the bound is above zero: the model
/// underestimates it beyond what sampling explains. With many groups, some unbiased one would
/// cross a 95% bound by chance (one in twenty), so each bound is taken at the Bonferroni level
/// `1 - (1 - confidence) / judged`: the chance of flagging any unbiased group stays under
/// `1 - confidence`. Groups come out ordered by value.
pub fn judge_groups(groups: &[f64], residuals: &[f64], rule: &GroupRule) -> Judged {
    assert_eq!(groups.len(), residuals.len(), "one group per residual");
    let mut by_group: BTreeMap<u64, (f64, Vec<f64>)> = BTreeMap::new();
    for (&g, &r) in groups.iter().zip(residuals) {
        if g.is_nan() || !r.is_finite() {
            continue;
        }
        by_group
            .entry(g.to_bits())
            .or_insert_with(|| (g, Vec::new()))
            .1
            .push(r);
    }
    let min_rows = rule.min_rows.max(2);
    let judged = by_group
        .values()
        .filter(|(_, rs)| rs.len() >= min_rows)
        .count();
    let alpha = (1.0 - rule.confidence) / judged.max(1) as f64;
    // At least 20 resamples beyond the bound's rank.
    let resamples = rule.resamples.max((20.0 / alpha).ceil() as usize);
    let mut rng = StdRng::seed_from_u64(rule.seed);
    let mut groups: Vec<GroupResiduals> = by_group
        .into_values()
        .map(|(value, rs)| {
            let mean = rs.iter().sum::<f64>() / rs.len() as f64;
            let enough = rs.len() >= min_rows;
            let lower_bound =
                enough.then(|| bootstrap_means(&rs, resamples, &mut rng, alpha, 0.5).0);
            GroupResiduals {
                value,
                rows: rs.len() as u64,
                mean_residual: mean,
                flagged: lower_bound.is_some_and(|b| b > 0.0),
                lower_bound,
            }
        })
        .collect();
    groups.sort_by(|a, b| a.value.total_cmp(&b.value));
    Judged {
        groups,
        judged,
        per_group_confidence: 1.0 - alpha,
    }
}

/// The `lower` and `upper` percentiles of the means of `resamples` bootstrap resamples.
fn bootstrap_means(
    values: &[f64],
    resamples: usize,
    rng: &mut StdRng,
    lower: f64,
    upper: f64,
) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| resample_mean(values, rng))
        .collect();
    means.sort_by(f64::total_cmp);
    (percentile(&means, lower), percentile(&means, upper))
}

/// The mean of `values` with its two-sided percentile bootstrap interval at `confidence`.
pub fn mean_with_interval(
    values: &[f64],
    confidence: f64,
    resamples: usize,
    seed: u64,
) -> MeanEstimate {
    let mut rng = StdRng::seed_from_u64(seed);
    let alpha = (1.0 - confidence) / 2.0;
    let (lower, upper) = bootstrap_means(values, resamples, &mut rng, alpha, 1.0 - alpha);
    MeanEstimate {
        rows: values.len() as u64,
        mean: if values.is_empty() {
            0.0
        } else {
            values.iter().sum::<f64>() / values.len() as f64
        },
        lower,
        upper,
    }
}

/// Flagged against unflagged rows on a slice the flags were not chosen on: does the flag mean
/// something there?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagCheck {
    pub flagged: MeanEstimate,
    pub unflagged: MeanEstimate,
    /// Flagged minus unflagged mean residual, with its bootstrap interval (each side resampled
    /// on its own); absent when one side has no row.
    pub difference: Option<MeanEstimate>,
    pub confidence: f64,
}

impl FlagCheck {
    /// Compares the residuals of flagged and unflagged rows.
    pub fn compute(
        residuals: &[f64],
        flagged: &[bool],
        confidence: f64,
        resamples: usize,
        seed: u64,
    ) -> FlagCheck {
        assert_eq!(residuals.len(), flagged.len(), "one flag per residual");
        let (mut yes, mut no) = (Vec::new(), Vec::new());
        for (&r, &f) in residuals.iter().zip(flagged) {
            if f { yes.push(r) } else { no.push(r) }
        }
        let a = mean_with_interval(&yes, confidence, resamples, seed);
        let b = mean_with_interval(&no, confidence, resamples, seed.wrapping_add(1));
        let difference = (!yes.is_empty() && !no.is_empty()).then(|| {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(2));
            let mut diffs: Vec<f64> = (0..resamples.max(1))
                .map(|_| resample_mean(&yes, &mut rng) - resample_mean(&no, &mut rng))
                .collect();
            diffs.sort_by(f64::total_cmp);
            let alpha = (1.0 - confidence) / 2.0;
            MeanEstimate {
                rows: residuals.len() as u64,
                mean: a.mean - b.mean,
                lower: percentile(&diffs, alpha),
                upper: percentile(&diffs, 1.0 - alpha),
            }
        });
        FlagCheck {
            difference,
            flagged: a,
            unflagged: b,
            confidence,
        }
    }

    /// Whether flagged rows are underestimated more than the others, beyond sampling noise.
    pub fn is_meaningful(&self) -> bool {
        self.difference.as_ref().is_some_and(|d| d.lower > 0.0)
    }
}

/// The mean of one bootstrap resample of `values` (not empty).
fn resample_mean(values: &[f64], rng: &mut StdRng) -> f64 {
    (0..values.len())
        .map(|_| values[rng.gen_range(0..values.len())])
        .sum::<f64>()
        / values.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn metrics_match_scikit_learn() {
        // sklearn: mean_absolute_error = 0.5, mean_squared_error = 0.375, r2_score = 0.948608...,
        // median_absolute_error = 0.5 for these.
        let y = [3.0, -0.5, 2.0, 7.0];
        let p = [2.5, 0.0, 2.0, 8.0];
        let m = RegressionMetrics::compute(&y, &p, 0.4);
        close(m.mae, 0.5);
        close(m.rmse, 0.375f64.sqrt());
        close(m.r2, 0.948_608_137_044_967_9);
        close(m.median_absolute_error, 0.5);
        close(m.mean_residual, (0.5 - 0.5 + 0.0 - 1.0) / 4.0);
        // Only the first row is more than 0.4 under the truth.
        close(m.share_underestimated, 0.25);
        assert_eq!(RegressionMetrics::compute(&[], &[], 60.0).rows, 0);
        assert_eq!(
            RegressionMetrics::compute(&[5.0, 5.0], &[5.0, 4.0], 0.0).r2,
            0.0
        );
    }

    #[test]
    fn split_conformal_takes_the_finite_sample_ranks_per_tail() {
        // Residuals 1..=99: n + 1 = 100, a = 0.1: ranks floor(5) = 5 and ceil(95) = 95.
        let residuals: Vec<f64> = (1..=99).map(f64::from).collect();
        let i = Interval::calibrate(&residuals, 0.9, 0.0, 10_000.0);
        close(i.lower_offset, 5.0);
        close(i.upper_offset, 95.0);
        assert_eq!(i.around(100.0), [105.0, 195.0]);
        // Ends stay in the valid range.
        assert_eq!(i.around(9_950.0), [9_955.0, 10_000.0]);
        // Too few residuals for a tail: that end is the range's bound.
        let small = Interval::calibrate(&[1.0, 2.0, 3.0], 0.9, 0.0, 100.0);
        assert_eq!(small.around(50.0), [0.0, 100.0]);
        small.validate().unwrap();
    }

    #[test]
    fn conformal_intervals_hold_their_coverage_on_exchangeable_rows() {
        let mut rng = StdRng::seed_from_u64(3);
        // Skewed errors: exponential minus its mean.
        let mut draw = || -(1.0 - rng.r#gen::<f64>()).ln() * 60.0 - 60.0;
        let calibration: Vec<f64> = (0..2_000).map(|_| draw()).collect();
        let i = Interval::calibrate(&calibration, 0.9, -1e6, 1e6);
        let test: Vec<f64> = (0..20_000).map(|_| draw()).collect();
        let y: Vec<f64> = test.iter().map(|r| 300.0 + r).collect();
        let p = vec![300.0; y.len()];
        let m = RegressionMetrics::compute(&y, &p, 60.0).with_interval(&y, &p, &i);
        let coverage = m.interval_coverage.unwrap();
        assert!((0.88..=0.92).contains(&coverage), "coverage {coverage}");
        // Asymmetric: the upper tail of an exponential is longer.
        assert!(i.upper_offset > -i.lower_offset);
    }

    #[test]
    fn only_groups_with_enough_rows_and_a_positive_bound_are_flagged() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut groups = Vec::new();
        let mut residuals = Vec::new();
        // Group 1: underestimated by 50 on average. Group 2: unbiased. Group 3: biased but
        // only 5 rows.
        for (g, bias, n) in [(1.0, 50.0, 80), (2.0, 0.0, 80), (3.0, 200.0, 5)] {
            for _ in 0..n {
                groups.push(g);
                residuals.push(bias + rng.gen_range(-60.0..60.0));
            }
        }
        let rule = GroupRule {
            min_rows: 20,
            confidence: 0.95,
            resamples: 2_000,
            seed: 1,
        };
        let judged = judge_groups(&groups, &residuals, &rule);
        // Two groups judged: each bound at 97.5%.
        assert_eq!(judged.judged, 2);
        assert!((judged.per_group_confidence - 0.975).abs() < 1e-12);
        let g = &judged.groups;
        let flags: Vec<(f64, bool)> = g.iter().map(|g| (g.value, g.flagged)).collect();
        assert_eq!(flags, [(1.0, true), (2.0, false), (3.0, false)]);
        let bound = g[0].lower_bound.unwrap();
        assert!(bound > 0.0 && bound < g[0].mean_residual);
        assert_eq!(g[2].lower_bound, None, "too few rows: not judged");
        assert_eq!(g[2].rows, 5);
        // Seeded: the same answer twice.
        assert_eq!(judge_groups(&groups, &residuals, &rule), judged);
    }

    #[test]
    fn many_unbiased_groups_flag_none_where_a_bound_per_group_would_flag_some() {
        let mut rng = StdRng::seed_from_u64(11);
        let (mut groups, mut residuals) = (Vec::new(), Vec::new());
        for g in 0..100 {
            for _ in 0..40 {
                groups.push(f64::from(g));
                residuals.push(rng.gen_range(-100.0..100.0));
            }
        }
        let rule = GroupRule {
            min_rows: 20,
            confidence: 0.95,
            resamples: 1_000,
            seed: 2,
        };
        let judged = judge_groups(&groups, &residuals, &rule);
        assert_eq!(judged.judged, 100);
        assert!(judged.groups.iter().all(|g| !g.flagged));
        // Without the correction, about five of a hundred unbiased groups would be flagged.
        let naive = judged.groups.iter().filter(|g| {
            let rs: Vec<f64> = groups
                .iter()
                .zip(&residuals)
                .filter(|(v, _)| **v == g.value)
                .map(|(_, r)| *r)
                .collect();
            let mut rng = StdRng::seed_from_u64(3);
            bootstrap_means(&rs, 1_000, &mut rng, 0.05, 0.5).0 > 0.0
        });
        assert!(naive.count() >= 1);
    }

    #[test]
    fn a_flag_check_sees_a_real_difference_and_not_a_null_one() {
        let mut rng = StdRng::seed_from_u64(4);
        let residuals: Vec<f64> = (0..1_000).map(|_| rng.gen_range(-100.0..100.0)).collect();
        let flagged: Vec<bool> = (0..1_000).map(|i| i % 5 == 0).collect();
        let null = FlagCheck::compute(&residuals, &flagged, 0.95, 2_000, 1);
        assert!(!null.is_meaningful(), "{null:?}");
        let d = null.difference.as_ref().unwrap();
        assert!(d.lower < 0.0 && d.upper > 0.0);
        let shifted: Vec<f64> = residuals
            .iter()
            .zip(&flagged)
            .map(|(r, &f)| if f { r + 40.0 } else { *r })
            .collect();
        let real = FlagCheck::compute(&shifted, &flagged, 0.95, 2_000, 1);
        assert!(real.is_meaningful(), "{real:?}");
        assert_eq!(real.flagged.rows, 200);
        let nobody = FlagCheck::compute(&residuals, &[false; 1_000], 0.95, 100, 1);
        assert!(!nobody.is_meaningful() && nobody.difference.is_none());
        assert_eq!((nobody.flagged.rows, nobody.unflagged.rows), (0, 1_000));
    }
}
