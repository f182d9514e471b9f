//! Probability calibration: how far a classifier's probabilities are from the frequencies they
//! claim (reliability curve, expected calibration error), and the maps that bring them closer
//! (Platt's logistic map, isotonic regression), fitted on rows the model was not fitted on.
//!
//! Both maps are strictly increasing, so a calibrated model ranks rows exactly as the raw one
//! does: ROC AUC and average precision do not move. Platt's map is strictly increasing when its
//! slope is positive (a negative slope is refused). Isotonic regression is a step function;
//! here the steps are joined by straight lines through the blocks' centres and a millionth of
//! the raw probability is added, which makes it strictly increasing while it stays within
//! 10^-6 of the interpolated steps.
//!
//! Which map, if any, is chosen by cross-fitting on the calibration rows: each map is fitted on
//! four fifths and scored on the fifth left out, in turn, and the one with the lowest expected
//! calibration error wins (the figure that label-free quality estimation rests on); no map at
//! all wins unless a map lowers it by more than [`MIN_GAIN`] of the raw probabilities' (less
//! is within the noise of ten bins over a validation slice: a map that only fits noise is not
//! worth carrying). Log loss is reported beside it.

use serde::{Deserialize, Serialize};

use crate::metrics::log_loss;

/// Equal-width bins of the reliability curve and the expected calibration error.
pub const CALIBRATION_BINS: usize = 10;

/// Folds of the cross-fitting that chooses the map.
const FOLDS: usize = 5;

/// The least relative gain in cross-fitted expected calibration error for which a map is
/// chosen.
pub const MIN_GAIN: f64 = 0.1;

/// The share of the raw probability added to the isotonic map (see the module).
const ISOTONIC_SLOPE: f64 = 1e-6;

/// A map from a model's raw probability to a calibrated one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Calibrator {
    /// `1 / (1 + exp(-(a * logit(p) + b)))`, `a > 0`.
    Platt { a: f64, b: f64 },
    /// Linear between the points `(x[i], y[i])`, `x` strictly and `y` weakly increasing,
    /// constant outside them, plus `ISOTONIC_SLOPE * p`.
    Isotonic { x: Vec<f64>, y: Vec<f64> },
}

/// A calibration method, as specs and reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    None,
    Platt,
    Isotonic,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::None, Method::Platt, Method::Isotonic];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::None => "none",
            Method::Platt => "platt",
            Method::Isotonic => "isotonic",
        }
    }

    /// Fits this method on `(y, p)`; `None` for [`Method::None`] and for data a map cannot be
    /// fitted on (one class only, a non-increasing Platt map).
    pub fn fit(self, y: &[f64], p: &[f64]) -> Option<Calibrator> {
        match self {
            Method::None => None,
            Method::Platt => Calibrator::fit_platt(y, p),
            Method::Isotonic => Calibrator::fit_isotonic(y, p),
        }
    }
}

impl Calibrator {
    pub fn method(&self) -> Method {
        match self {
            Calibrator::Platt { .. } => Method::Platt,
            Calibrator::Isotonic { .. } => Method::Isotonic,
        }
    }

    /// The calibrated probability of a raw one.
    pub fn apply(&self, p: f64) -> f64 {
        if p.is_nan() {
            return p;
        }
        match self {
            Calibrator::Platt { a, b } => sigmoid(a * logit(p) + b),
            Calibrator::Isotonic { x, y } => {
                let stepped = interpolate(x, y, p);
                ((1.0 - ISOTONIC_SLOPE) * stepped + ISOTONIC_SLOPE * p).clamp(0.0, 1.0)
            }
        }
    }

    /// Every probability of `p` calibrated.
    pub fn apply_all(&self, p: &[f64]) -> Vec<f64> {
        p.iter().map(|&q| self.apply(q)).collect()
    }

    /// Platt scaling: a logistic regression of the truth on the logit of the probability
    /// (Newton's method, each step halved until the log loss falls). `None` with one class only
    /// or when the fitted slope is not positive.
    pub fn fit_platt(y: &[f64], p: &[f64]) -> Option<Calibrator> {
        if !both_classes(y) {
            return None;
        }
        let z: Vec<f64> = p.iter().map(|&q| logit(q)).collect();
        let loss = |a: f64, b: f64| -> f64 {
            z.iter()
                .zip(y)
                .map(|(&zi, &yi)| {
                    // log(1 + e^t) - y t, computed without overflow.
                    let t = a * zi + b;
                    t.max(0.0) + (-t.abs()).exp().ln_1p() - yi * t
                })
                .sum()
        };
        let (mut a, mut b) = (1.0, 0.0);
        let mut current = loss(a, b);
        for _ in 0..100 {
            // Gradient and Hessian of the mean log loss in (a, b), a little ridge on the
            // Hessian so that separable data stays finite.
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
            for (&zi, &yi) in z.iter().zip(y) {
                let q = sigmoid(a * zi + b);
                let r = q - yi;
                let w = (q * (1.0 - q)).max(1e-12);
                ga += r * zi;
                gb += r;
                haa += w * zi * zi;
                hab += w * zi;
                hbb += w;
            }
            let det = haa * hbb - hab * hab;
            if !det.is_finite() || det.abs() < 1e-300 {
                break;
            }
            let (mut da, mut db) = ((hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det);
            let mut next = loss(a - da, b - db);
            let mut halvings = 0;
            while (next.is_nan() || next > current) && halvings < 40 {
                da /= 2.0;
                db /= 2.0;
                next = loss(a - da, b - db);
                halvings += 1;
            }
            if next.is_nan() || next > current {
                break;
            }
            a -= da;
            b -= db;
            current = next;
            if !(a.is_finite() && b.is_finite()) {
                return None;
            }
            if da.abs() < 1e-10 && db.abs() < 1e-10 {
                break;
            }
        }
        (a > 0.0 && a.is_finite() && b.is_finite()).then_some(Calibrator::Platt { a, b })
    }

    /// Isotonic regression by pool-adjacent-violators on the rows sorted by probability; ties
    /// of the probability form one block first. `None` with one class only.
    pub fn fit_isotonic(y: &[f64], p: &[f64]) -> Option<Calibrator> {
        if !both_classes(y) {
            return None;
        }
        let mut order: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_finite()).collect();
        order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
        // Blocks: (sum of p, sum of y, rows).
        let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
        let mut last: Option<f64> = None;
        for &i in &order {
            let tied = last == Some(p[i]);
            last = Some(p[i]);
            match blocks.last_mut() {
                Some(block) if tied => {
                    block.0 += p[i];
                    block.1 += y[i];
                    block.2 += 1.0;
                }
                _ => blocks.push((p[i], y[i], 1.0)),
            }
            // Pool while the last block's mean is not above the one before.
            while blocks.len() > 1 {
                let n = blocks.len();
                let (prev, cur) = (blocks[n - 2], blocks[n - 1]);
                if prev.1 / prev.2 < cur.1 / cur.2 {
                    break;
                }
                blocks.pop();
                let merged = &mut blocks[n - 2];
                merged.0 += cur.0;
                merged.1 += cur.1;
                merged.2 += cur.2;
            }
        }
        let x = blocks.iter().map(|b| b.0 / b.2).collect();
        let y = blocks.iter().map(|b| b.1 / b.2).collect();
        Some(Calibrator::Isotonic { x, y })
    }
}

fn both_classes(y: &[f64]) -> bool {
    y.contains(&1.0) && y.iter().any(|&t| t != 1.0)
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-7, 1.0 - 1e-7);
    (p / (1.0 - p)).ln()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Linear interpolation through `(x, y)` (`x` increasing), constant outside.
fn interpolate(x: &[f64], y: &[f64], p: f64) -> f64 {
    match x.len() {
        0 => return p,
        1 => return y[0],
        _ => {}
    }
    if p <= x[0] {
        return y[0];
    }
    let last = x.len() - 1;
    if p >= x[last] {
        return y[last];
    }
    // The first point above p: p lies between it and the one before.
    let hi = x.partition_point(|&xi| xi <= p);
    let lo = hi - 1;
    let t = (p - x[lo]) / (x[hi] - x[lo]);
    y[lo] + t * (y[hi] - y[lo])
}

/// One bin of a reliability curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub rows: u64,
    /// The mean probability of the bin's rows (`NaN` when it has none; serialised as null).
    pub mean_probability: Option<f64>,
    /// The share of positives among them.
    pub frequency: Option<f64>,
}

/// The reliability curve: rows in `bins` equal-width probability bins, each bin's mean
/// probability beside its share of positives.
pub fn reliability(y: &[f64], p: &[f64], bins: usize) -> Vec<ReliabilityBin> {
    let bins = bins.max(1);
    let mut sums = vec![(0.0, 0.0, 0u64); bins];
    for (&t, &q) in y.iter().zip(p) {
        if !q.is_finite() {
            continue;
        }
        let at = ((q * bins as f64) as usize).min(bins - 1);
        sums[at].0 += q;
        sums[at].1 += t;
        sums[at].2 += 1;
    }
    sums.iter()
        .enumerate()
        .map(|(i, &(sp, sy, n))| ReliabilityBin {
            lower: i as f64 / bins as f64,
            upper: (i + 1) as f64 / bins as f64,
            rows: n,
            mean_probability: (n > 0).then(|| sp / n as f64),
            frequency: (n > 0).then(|| sy / n as f64),
        })
        .collect()
}

/// Expected calibration error: the mean over rows of `|mean probability - frequency|` of the
/// row's bin (equal-width bins).
pub fn expected_calibration_error(y: &[f64], p: &[f64], bins: usize) -> f64 {
    let curve = reliability(y, p, bins);
    let rows: u64 = curve.iter().map(|b| b.rows).sum();
    if rows == 0 {
        return 0.0;
    }
    curve
        .iter()
        .filter_map(|b| Some(b.rows as f64 * (b.mean_probability? - b.frequency?).abs()))
        .sum::<f64>()
        / rows as f64
}

/// A method's cross-fitted score on the calibration rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossFitted {
    pub method: Method,
    pub log_loss: f64,
    pub ece: f64,
}

/// What the cross-fitting found, and the map chosen (fitted on every calibration row).
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub calibrator: Option<Calibrator>,
    pub scores: Vec<CrossFitted>,
}

impl Choice {
    pub fn method(&self) -> Method {
        self.calibrator
            .as_ref()
            .map_or(Method::None, Calibrator::method)
    }
}

/// Chooses among `methods` by cross-fitted expected calibration error on `(y, p)` (see the
/// module); the rows are dealt into folds by a hash of `seed` and their index.
pub fn choose(y: &[f64], p: &[f64], methods: &[Method], seed: u64) -> Choice {
    assert_eq!(y.len(), p.len(), "one probability per target");
    let fold_of: Vec<usize> = (0..y.len())
        .map(|i| (splitmix(seed ^ splitmix(i as u64)) % FOLDS as u64) as usize)
        .collect();
    let mut scores = Vec::new();
    for &method in methods {
        let mut out = vec![f64::NAN; y.len()];
        for fold in 0..FOLDS {
            let (mut fy, mut fp) = (Vec::new(), Vec::new());
            for i in (0..y.len()).filter(|&i| fold_of[i] != fold) {
                fy.push(y[i]);
                fp.push(p[i]);
            }
            let map = method.fit(&fy, &fp);
            for i in (0..y.len()).filter(|&i| fold_of[i] == fold) {
                out[i] = map.as_ref().map_or(p[i], |m| m.apply(p[i]));
            }
        }
        scores.push(CrossFitted {
            method,
            log_loss: log_loss(y, &out),
            ece: expected_calibration_error(y, &out, CALIBRATION_BINS),
        });
    }
    let none = scores
        .iter()
        .find(|s| s.method == Method::None)
        .map_or_else(
            || expected_calibration_error(y, p, CALIBRATION_BINS),
            |s| s.ece,
        );
    let best = scores
        .iter()
        .filter(|s| s.method != Method::None && s.ece < none * (1.0 - MIN_GAIN))
        .min_by(|a, b| a.ece.total_cmp(&b.ece))
        .map(|s| s.method);
    Choice {
        calibrator: best.and_then(|m| m.fit(y, p)),
        scores,
    }
}

fn splitmix(mut h: u64) -> u64 {
    h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::roc_auc;

    /// Rows whose truth is drawn with probability `truth(score)`, scored by `score`: a fixed
    /// pseudo-random sequence, so every run draws the same rows.
    fn rows(n: usize, truth: impl Fn(f64) -> f64) -> (Vec<f64>, Vec<f64>) {
        let uniform = |i: u64| (splitmix(i) >> 11) as f64 / (1u64 << 53) as f64;
        let (mut y, mut p) = (Vec::new(), Vec::new());
        for i in 0..n as u64 {
            let score = uniform(2 * i);
            y.push(f64::from(u8::from(uniform(2 * i + 1) < truth(score))));
            p.push(score);
        }
        (y, p)
    }

    #[test]
    fn a_calibrated_model_has_a_small_error_and_an_overconfident_one_a_large_one() {
        let (y, p) = rows(20_000, |s| s);
        assert!(expected_calibration_error(&y, &p, 10) < 0.01);
        // The truth is much less extreme than the scores claim.
        let (y, p) = rows(20_000, |s| 0.3 + 0.4 * s);
        let ece = expected_calibration_error(&y, &p, 10);
        assert!((ece - 0.15).abs() < 0.01, "{ece}");
        let curve = reliability(&y, &p, 10);
        assert_eq!(curve.len(), 10);
        let top = curve[9].frequency.unwrap();
        assert!((top - 0.68).abs() < 0.02, "{top}");
    }

    #[test]
    fn both_maps_repair_an_overconfident_model_and_keep_its_ranking() {
        let (y, p) = rows(20_000, |s| 0.3 + 0.4 * s);
        let before = expected_calibration_error(&y, &p, 10);
        for method in [Method::Platt, Method::Isotonic] {
            let map = method.fit(&y, &p).expect("fitted");
            let q = map.apply_all(&p);
            let after = expected_calibration_error(&y, &q, 10);
            assert!(after < before / 5.0, "{method:?}: {before} -> {after}");
            assert_eq!(roc_auc(&y, &q), roc_auc(&y, &p), "{method:?}");
            // Strictly increasing: no two distinct scores tie.
            let mut pairs: Vec<(f64, f64)> = p.iter().copied().zip(q).collect();
            pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
            for w in pairs.windows(2) {
                if w[0].0 < w[1].0 {
                    assert!(w[0].1 < w[1].1, "{method:?}: {w:?}");
                }
            }
        }
    }

    #[test]
    fn isotonic_blocks_are_the_pooled_means() {
        // Scores 0.1..0.4, truths 0 1 0 1: the middle pair is pooled.
        let map = Calibrator::fit_isotonic(&[0.0, 1.0, 0.0, 1.0], &[0.1, 0.2, 0.3, 0.4]).unwrap();
        let Calibrator::Isotonic { x, y } = &map else {
            panic!("isotonic")
        };
        assert_eq!(y, &vec![0.0, 0.5, 1.0]);
        assert!((x[1] - 0.25).abs() < 1e-12);
        assert!((map.apply(0.25) - 0.5).abs() < 1e-5);
        assert!(map.apply(0.05) < map.apply(0.06));
    }

    #[test]
    fn platt_refuses_one_class_and_a_decreasing_map() {
        assert_eq!(Calibrator::fit_platt(&[1.0, 1.0], &[0.2, 0.8]), None);
        assert_eq!(Calibrator::fit_isotonic(&[0.0, 0.0], &[0.2, 0.8]), None);
        let (y, p) = rows(2_000, |s| 1.0 - s);
        assert_eq!(Calibrator::fit_platt(&y, &p), None);
    }

    #[test]
    fn the_choice_leaves_a_calibrated_model_nearly_as_it_is_and_repairs_a_bad_one() {
        // Calibrated: whatever map the noise of the sample earns leaves the probabilities
        // close to where they were.
        let (y, p) = rows(10_000, |s| s);
        let choice = choose(&y, &p, &Method::ALL, 7);
        if let Some(map) = &choice.calibrator {
            for i in 1..20 {
                let q = f64::from(i) / 20.0;
                assert!((map.apply(q) - q).abs() < 0.05, "{q}: {:?}", choice.scores);
            }
        }
        let (y, p) = rows(10_000, |s| 0.3 + 0.4 * s);
        let choice = choose(&y, &p, &Method::ALL, 7);
        assert_ne!(choice.method(), Method::None);
        assert_eq!(choice.scores.len(), 3);
        // A choice limited to one method fits that one or none.
        let platt = choose(&y, &p, &[Method::None, Method::Platt], 7);
        assert_eq!(platt.method(), Method::Platt);
    }
}
