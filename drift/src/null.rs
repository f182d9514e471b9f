//! Null distributions: what a feature's statistic looks like when nothing drifted, for a window
//! of n events drawn from the reference itself. A decision is only worth taking beyond it.
//!
//! At small windows the fixed rules flag noise: the total-variation distance of 500 i.i.d. rows
//! of a 100-code feature against its own reference is well above 0.1. The null distribution of
//! each feature's statistic is estimated once per reference, at training time, by drawing
//! windows from the reference's bin shares (a multinomial: the reference, far larger than a
//! window, stands for the population), for a grid of window sizes. What is kept per size is
//! small: the 50th, 80th and 90th percentiles of the statistic's deviation from "no
//! difference", and the mean excess over the 90th percentile, which gives the tail beyond it as
//! an exponential, `P(D > q90 + x) = 0.1 exp(-x / excess)`. The deviations of these statistics
//! are sums of many small squared or absolute terms, lighter-tailed than an exponential, so the
//! threshold this gives at a small level is, if anything, high: fewer false alarms than asked.
//!
//! Between two sizes of the grid the threshold is interpolated on log n; beyond the grid it is
//! scaled by `(n_edge / n)^exponent`, the exponent measured on the grid's two outer sizes
//! (about 1/2 for distances, 1 for the correlation's deficit and the PSI, as sampling noise
//! shrinks). P-values need no simulation: under no drift they are close to uniform, so the
//! threshold at level `a` is `a` itself.
//!
//! Draws come from a seeded generator: the same reference gives the same thresholds.

use serde::{Deserialize, Serialize};

use crate::compare::{DriftRules, Rule, Statistic};
use crate::profile::{FeatureProfile, Profile};
use crate::stats::Statistics;

/// How null distributions are estimated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NullParams {
    /// Window sizes simulated (ascending).
    pub sizes: Vec<u64>,
    /// Windows drawn per size.
    pub resamples: usize,
    pub seed: u64,
}

impl Default for NullParams {
    fn default() -> Self {
        NullParams {
            sizes: vec![100, 200, 500, 1_000, 2_000],
            resamples: 1_000,
            seed: 20_261_130,
        }
    }
}

impl NullParams {
    /// Checks the grid: 1 to 20 ascending sizes from 10 to 1,000,000 events, 200 to 100,000
    /// resamples (the tail needs about 20 draws past the 90th percentile).
    pub fn check(&self) -> Result<(), String> {
        if self.sizes.is_empty() || self.sizes.len() > 20 {
            return Err(format!(
                "drift.null.sizes must list 1 to 20 window sizes, got {}",
                self.sizes.len()
            ));
        }
        if let Some(bad) = self.sizes.iter().find(|&&s| !(10..=1_000_000).contains(&s)) {
            return Err(format!(
                "drift.null.sizes: {bad} is not a window size from 10 to 1,000,000 events"
            ));
        }
        if self.sizes.windows(2).any(|w| w[0] >= w[1]) {
            return Err("drift.null.sizes must be strictly ascending".into());
        }
        if !(200..=100_000).contains(&self.resamples) {
            return Err(format!(
                "drift.null.resamples must be from 200 to 100,000, got {}",
                self.resamples
            ));
        }
        Ok(())
    }
}

/// The level under which the tail is an exponential instead of the draws themselves.
const TAIL_LEVEL: f64 = 0.1;

/// One size's summary of a feature's null deviations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NullSummary {
    pub size: u64,
    pub q50: f64,
    pub q80: f64,
    pub q90: f64,
    /// Mean excess of the deviations over `q90`.
    pub excess: f64,
}

impl NullSummary {
    /// The deviation exceeded with probability `level` (0 to 1).
    fn deviation(&self, level: f64) -> f64 {
        // Between the kept percentiles, linear in the level; beyond the 90th, the exponential.
        let points = [(0.5, self.q50), (0.2, self.q80), (TAIL_LEVEL, self.q90)];
        if level >= 0.5 {
            return self.q50;
        }
        if level < TAIL_LEVEL {
            return self.q90 + self.excess * (TAIL_LEVEL / level).ln();
        }
        points
            .windows(2)
            .find(|w| level <= w[0].0 && level >= w[1].0)
            .map_or(self.q90, |w| {
                let ((l0, d0), (l1, d1)) = (w[0], w[1]);
                d0 + (d1 - d0) * (l0 - level) / (l0 - l1)
            })
    }
}

/// A feature's null distribution, for its rule's statistic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureNull {
    pub name: String,
    pub statistic: Statistic,
    /// Per size of the grid, ascending; empty for a p-value (its threshold is its level).
    pub sizes: Vec<NullSummary>,
    /// How the deviation shrinks past the grid's ends: `d(n) = d(edge) (edge / n)^exponent`.
    pub exponent: f64,
}

/// Every feature's null distribution, in the profile's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NullModel {
    pub params: NullParams,
    /// The real rows behind the reference: its own sampling noise adds to a window's (see
    /// [`NullModel::effective_size`]).
    #[serde(default)]
    pub reference_rows: u64,
    pub features: Vec<FeatureNull>,
}

/// The deviation of a statistic from "no difference": itself for a distance, `1 - r` for the
/// correlation.
fn deviation(statistic: Statistic, value: f64) -> f64 {
    match statistic {
        Statistic::Correlation => 1.0 - value,
        _ => value,
    }
}

/// The statistic whose deviation is `d`.
fn from_deviation(statistic: Statistic, d: f64) -> f64 {
    match statistic {
        Statistic::Correlation => 1.0 - d,
        _ => d,
    }
}

/// splitmix64: a small, fast, seeded generator (the drift crate draws nothing else).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The statistic of a rule, for `current` counts against `feature`'s reference.
fn statistic_of(feature: &FeatureProfile, rule: &Rule, current: &[u64]) -> f64 {
    let reference = feature.counts();
    match rule.statistic {
        Statistic::Tvd => crate::stats::total_variation(reference, current),
        Statistic::Correlation => crate::stats::histogram_correlation(reference, current),
        Statistic::Psi => crate::stats::psi(reference, current),
        Statistic::JsDistance => crate::stats::jensen_shannon(reference, current),
        _ => {
            let all = Statistics::compute(feature, current);
            rule.statistic.of(&all).unwrap_or(all.tvd)
        }
    }
}

impl FeatureNull {
    /// Simulates the null distribution of `rule`'s statistic for `feature`.
    pub fn simulate(feature: &FeatureProfile, rule: &Rule, params: &NullParams) -> Self {
        let name = feature.name().to_string();
        if matches!(rule.statistic, Statistic::ChiSquareP | Statistic::KsP) {
            return FeatureNull {
                name,
                statistic: rule.statistic,
                sizes: Vec::new(),
                exponent: 0.0,
            };
        }
        let counts = feature.counts();
        let total: u64 = counts.iter().sum();
        // Cumulative shares, for inverse-CDF draws.
        let mut cumulative = Vec::with_capacity(counts.len());
        let mut running = 0u64;
        for &c in counts {
            running += c;
            cumulative.push(running as f64 / total.max(1) as f64);
        }
        let seed = params.seed.wrapping_add(
            name.bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31) + u64::from(b)),
        );
        let mut rng = SplitMix(seed);
        let mut window = vec![0u64; counts.len()];
        let mut deviations = Vec::with_capacity(params.resamples);
        let sizes: Vec<NullSummary> = params
            .sizes
            .iter()
            .map(|&size| {
                deviations.clear();
                for _ in 0..params.resamples {
                    window.iter_mut().for_each(|c| *c = 0);
                    for _ in 0..size {
                        let u = rng.uniform();
                        let bin = cumulative
                            .partition_point(|&c| c <= u)
                            .min(counts.len() - 1);
                        window[bin] += 1;
                    }
                    let value = statistic_of(feature, rule, &window);
                    deviations.push(deviation(rule.statistic, value));
                }
                deviations.sort_by(f64::total_cmp);
                let at = |q: f64| {
                    let i =
                        ((q * deviations.len() as f64).ceil() as usize).clamp(1, deviations.len());
                    deviations[i - 1]
                };
                let q90 = at(0.9);
                let beyond: Vec<f64> = deviations
                    .iter()
                    .filter(|&&d| d > q90)
                    .map(|d| d - q90)
                    .collect();
                let excess = if beyond.is_empty() {
                    0.0
                } else {
                    beyond.iter().sum::<f64>() / beyond.len() as f64
                };
                NullSummary {
                    size,
                    q50: at(0.5),
                    q80: at(0.8),
                    q90,
                    excess,
                }
            })
            .collect();
        let exponent = match sizes.as_slice() {
            [.., a, b] if a.q90 > 0.0 && b.q90 > 0.0 => {
                ((a.q90 / b.q90).ln() / (b.size as f64 / a.size as f64).ln()).clamp(0.25, 1.5)
            }
            _ => 0.5,
        };
        FeatureNull {
            name,
            statistic: rule.statistic,
            sizes,
            exponent,
        }
    }

    /// The statistic a window of `n` events (an effective size: see
    /// [`NullModel::effective_size`]) passes with probability `level` when nothing drifted:
    /// its noise threshold.
    pub fn threshold(&self, n: f64, level: f64) -> f64 {
        let level = level.clamp(1e-12, 1.0);
        if self.sizes.is_empty() {
            // A p-value: uniform under no drift.
            return level;
        }
        let n = n.max(1.0);
        let (first, last) = (self.sizes[0], self.sizes[self.sizes.len() - 1]);
        let d = if n <= first.size as f64 {
            first.deviation(level) * (first.size as f64 / n).powf(self.exponent)
        } else if n >= last.size as f64 {
            last.deviation(level) * (last.size as f64 / n).powf(self.exponent)
        } else {
            let at = self.sizes.partition_point(|s| (s.size as f64) < n);
            let (a, b) = (self.sizes[at - 1], self.sizes[at]);
            let t = (n.ln() - (a.size as f64).ln()) / ((b.size as f64).ln() - (a.size as f64).ln());
            // Interpolated on log n, between log deviations (both shrink like a power of n).
            let (da, db) = (a.deviation(level), b.deviation(level));
            if da > 0.0 && db > 0.0 {
                (da.ln() + t * (db.ln() - da.ln())).exp()
            } else {
                da + t * (db - da)
            }
        };
        from_deviation(self.statistic, d)
    }
}

impl NullModel {
    /// Simulates every feature's null distribution for its rule in `rules`.
    pub fn simulate(profile: &Profile, rules: &DriftRules, params: &NullParams) -> Self {
        use rayon::prelude::*;
        let features = profile
            .features
            .par_iter()
            .map(|f| FeatureNull::simulate(f, &rules.rule(f), params))
            .collect();
        NullModel {
            params: params.clone(),
            reference_rows: profile.real_rows,
            features,
        }
    }

    /// The size of a window drawn against the population that differs from it as much as a
    /// window of `n` events differs from this reference: the reference is a sample too, and
    /// its shares carry their own noise (variance `p(1 - p) / N`), so `1/n_eff = 1/n + 1/N`.
    /// Without it, windows a tenth of the reference's size would pass the thresholds a third
    /// more often than their level.
    pub fn effective_size(&self, n: u64) -> f64 {
        let n = n.max(1) as f64;
        if self.reference_rows == 0 {
            return n;
        }
        1.0 / (1.0 / n + 1.0 / self.reference_rows as f64)
    }

    /// Feature `f`'s noise threshold for its `statistic`, for a window of `n` events at
    /// `level`; `None` when its null was simulated for another statistic.
    pub fn threshold(&self, f: usize, statistic: Statistic, n: u64, level: f64) -> Option<f64> {
        self.feature(f, statistic)
            .map(|null| null.threshold(self.effective_size(n), level))
    }

    /// The null of feature `f`, when it was simulated for `statistic`.
    pub fn feature(&self, f: usize, statistic: Statistic) -> Option<&FeatureNull> {
        self.features.get(f).filter(|n| n.statistic == statistic)
    }
}

/// The level each feature is tested at, so that the data-set alert (at least `needed` of
/// `features` features drifted) fires by chance with probability `window_level` per window,
/// were the features independent: the `a` for which `P(Binomial(features, a) >= needed)` is
/// `window_level`. Solved by Newton's method on the logarithms (the tail's derivative in `a`
/// is `features` times the binomial probability of `needed - 1` of `features - 1`), from the
/// first term's solution: a few steps, about a microsecond, once per scoring. Correlated
/// features make the data-set alert by chance more likely than this says; the effect floor
/// and the rarity of many features moving together by chance are what keep it in hand.
pub fn feature_level(window_level: f64, features: usize, needed: usize) -> f64 {
    let target = window_level.clamp(1e-300, 1.0);
    if features == 0 || needed == 0 || target >= 1.0 {
        return target.min(1.0);
    }
    let (n, m) = (features, needed.min(features));
    // ln C(n, m), and ln C(n - 1, m - 1) = ln C(n, m) + ln(m / n).
    let ln_choose_nm: f64 = (1..=m).map(|i| ((n - m + i) as f64 / i as f64).ln()).sum();
    let ln_choose_n1m1 = ln_choose_nm + (m as f64 / n as f64).ln();
    // ln P(X >= m) at `a`: the first term, times the sum of the terms relative to it (each the
    // last times (n - k) / (k + 1) x a / (1 - a): no logarithm or exponential per term, this
    // runs at every scoring), rescaled before it could overflow.
    let ln_tail = |a: f64| -> f64 {
        let first = ln_choose_nm + m as f64 * a.ln() + (n - m) as f64 * (-a).ln_1p();
        let odds = a / (1.0 - a);
        let (mut term, mut sum, mut scale) = (1.0_f64, 1.0_f64, 0.0_f64);
        for k in m..n {
            term *= (n - k) as f64 / (k + 1) as f64 * odds;
            sum += term;
            if sum > 1e200 {
                term *= 1e-200;
                sum *= 1e-200;
                scale += 200.0 * std::f64::consts::LN_10;
            }
        }
        first + sum.ln() + scale
    };
    // ln of the tail's derivative: n times the probability of m - 1 of n - 1.
    let ln_derivative = |a: f64| -> f64 {
        (n as f64).ln() + ln_choose_n1m1 + (m - 1) as f64 * a.ln() + (n - m) as f64 * (-a).ln_1p()
    };
    let goal = target.ln();
    // The first term alone: C(n, m) a^m = target.
    let mut a = ((goal - ln_choose_nm) / m as f64).exp().clamp(1e-300, 0.5);
    for _ in 0..50 {
        let tail = ln_tail(a);
        let f = tail - goal;
        if f.abs() < 1e-10 {
            break;
        }
        // d ln(tail) / d ln(a) = a tail'(a) / tail(a).
        let slope = (a.ln() + ln_derivative(a) - tail).exp();
        let next = (a.ln() - f / slope.max(1e-12)).exp();
        a = next.clamp(a / 10.0, (a * 10.0).min(1.0 - 1e-12));
    }
    a
}
