//! A classifier's quality estimated without labels (confidence-based performance estimation,
//! after NannyML's CBPE) and measured with them, over counts that merge.
//!
//! When the probabilities a model answers are calibrated, an answer of probability `p` is
//! positive with probability `p`. Over a window of answers, the expected confusion matrix at the
//! version's threshold follows: an answer of class 1 adds `p` true positives and `1 - p` false
//! positives, one of class 0 adds `p` false negatives and `1 - p` true negatives. Accuracy,
//! precision, recall and F1 are taken from the expected matrix; ROC AUC from the expected true
//! and false positive rates swept over the probabilities from the highest down, ties counted
//! half, as the realised AUC counts them.
//!
//! Each estimate carries a band: the range in which the realised figure of a window this size
//! falls 95 times in 100 if the probabilities are right, from the variance of the labels
//! (independent Bernoulli draws of the answered probabilities; the delta method for the
//! ratios, Hanley and McNeil's formula for ROC AUC).
//!
//! Counts are kept in [`BINS`] equal-width bins of the probability per answered class (a
//! [`Sketch`]), so that windows and partitions merge by adding counts, exactly. A probability
//! stands for its bin's centre: at most 1/2000 off, a negligible error next to the band.

use serde::{Deserialize, Serialize};

use crate::metrics::ConfusionMatrix;

/// Equal-width bins of the probability.
pub const BINS: usize = 1000;

/// The normal quantile of the two-sided 95% band.
const Z95: f64 = 1.959_964;

/// The bin of a probability (a NaN falls in the first).
pub fn bin(p: f64) -> usize {
    if p.is_nan() {
        return 0;
    }
    ((p * BINS as f64) as usize).min(BINS - 1)
}

/// The probability a bin stands for: its centre.
pub fn centre(bin: usize) -> f64 {
    (bin as f64 + 0.5) / BINS as f64
}

/// Answers counted by probability bin and class answered: what estimation needs. Counts are
/// 32-bit (4 billion answers of one bin in one window) to keep a window's sketch at 8 KB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Vec<(u32, u32)>", from = "Vec<(u32, u32)>")]
pub struct Sketch {
    /// `counts[2 * bin + class]`.
    counts: Vec<u32>,
    rows: u64,
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch {
            counts: vec![0; 2 * BINS],
            rows: 0,
        }
    }
}

impl From<Sketch> for Vec<(u32, u32)> {
    fn from(s: Sketch) -> Self {
        s.counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (i as u32, *n))
            .collect()
    }
}

impl From<Vec<(u32, u32)>> for Sketch {
    fn from(pairs: Vec<(u32, u32)>) -> Self {
        let mut s = Sketch::default();
        for (i, n) in pairs {
            if let Some(c) = s.counts.get_mut(i as usize) {
                *c += n;
                s.rows += u64::from(n);
            }
        }
        s
    }
}

impl Sketch {
    /// The slot of an answer: its bin and class (what a window of answers remembers to take it
    /// out again).
    pub fn slot(p: f64, class: u8) -> u16 {
        (2 * bin(p) + usize::from(class.min(1))) as u16
    }

    pub fn add(&mut self, slot: u16) {
        let c = &mut self.counts[slot as usize];
        *c = c.saturating_add(1);
        self.rows += 1;
    }

    /// Takes out an answer added before.
    pub fn remove(&mut self, slot: u16) {
        let c = &mut self.counts[slot as usize];
        if *c > 0 {
            *c -= 1;
            self.rows -= 1;
        }
    }

    pub fn merge(&mut self, other: &Sketch) {
        for (c, o) in self.counts.iter_mut().zip(&other.counts) {
            *c = c.saturating_add(*o);
        }
        self.rows += other.rows;
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The estimated quality of the answers counted; `None` when there are none.
    pub fn estimate(&self) -> Option<Estimated> {
        if self.rows == 0 {
            return None;
        }
        let n = self.rows as f64;
        // Expected counts and the variances of the two label sums.
        let (mut tp, mut fp, mut fn_, mut tn) = (0.0, 0.0, 0.0, 0.0);
        let (mut var_tp, mut var_fn) = (0.0, 0.0);
        for b in 0..BINS {
            let p = centre(b);
            let (neg, pos) = (
                f64::from(self.counts[2 * b]),
                f64::from(self.counts[2 * b + 1]),
            );
            tp += pos * p;
            fp += pos * (1.0 - p);
            fn_ += neg * p;
            tn += neg * (1.0 - p);
            var_tp += pos * p * (1.0 - p);
            var_fn += neg * p * (1.0 - p);
        }
        let answered_positive = tp + fp;
        let positives = tp + fn_;
        let accuracy = (tp + tn) / n;
        let sd_accuracy = (var_tp + var_fn).sqrt() / n;
        let precision = ratio(tp, answered_positive);
        let sd_precision = ratio(var_tp.sqrt(), answered_positive);
        let recall = ratio(tp, positives);
        // d recall / d tp = fn / (tp + fn)^2, d recall / d fn = -tp / (tp + fn)^2.
        let sd_recall = ratio(
            (fn_ * fn_ * var_tp + tp * tp * var_fn).sqrt(),
            positives * positives,
        );
        // F1 = 2 tp / (tp + answered_positive + fn).
        let d = tp + answered_positive + fn_;
        let f1 = ratio(2.0 * tp, d);
        let sd_f1 = ratio(
            2.0 * ((answered_positive + fn_).powi(2) * var_tp + tp * tp * var_fn).sqrt(),
            d * d,
        );
        // ROC AUC: bins from the highest probability down, expected positives and negatives.
        let negatives = n - positives;
        let (mut pairs, mut above) = (0.0, 0.0);
        for b in (0..BINS).rev() {
            let rows = f64::from(self.counts[2 * b]) + f64::from(self.counts[2 * b + 1]);
            let (pos, neg) = (rows * centre(b), rows * (1.0 - centre(b)));
            pairs += neg * (above + pos / 2.0);
            above += pos;
        }
        let auc = ratio(pairs, positives * negatives);
        let sd_auc = hanley_mcneil(auc, positives, negatives);
        Some(Estimated {
            rows: self.rows,
            expected_positives: positives,
            accuracy: Band::around(accuracy, sd_accuracy),
            precision: Band::around(precision, sd_precision),
            recall: Band::around(recall, sd_recall),
            f1: Band::around(f1, sd_f1),
            roc_auc: Band::around(auc, sd_auc),
        })
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// The standard error of an AUC of `a` over `positives` and `negatives` (Hanley & McNeil,
/// 1982).
fn hanley_mcneil(a: f64, positives: f64, negatives: f64) -> f64 {
    if positives < 1.0 || negatives < 1.0 {
        return 0.0;
    }
    let q1 = a / (2.0 - a);
    let q2 = 2.0 * a * a / (1.0 + a);
    let v = (a * (1.0 - a) + (positives - 1.0) * (q1 - a * a) + (negatives - 1.0) * (q2 - a * a))
        / (positives * negatives);
    v.max(0.0).sqrt()
}

/// A figure with the 95% band of the realised figure around it, kept inside [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Band {
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
}

impl Band {
    fn around(value: f64, sd: f64) -> Band {
        Band {
            value,
            lower: (value - Z95 * sd).clamp(0.0, 1.0),
            upper: (value + Z95 * sd).clamp(0.0, 1.0),
        }
    }
}

/// A window's estimated quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimated {
    pub rows: u64,
    /// The expected number of positives among the answers.
    pub expected_positives: f64,
    pub accuracy: Band,
    pub precision: Band,
    pub recall: Band,
    pub f1: Band,
    pub roc_auc: Band,
}

impl Estimated {
    /// The names of the figures, as metrics give them.
    pub const NAMES: [&'static str; 5] = ["accuracy", "precision", "recall", "f1", "roc_auc"];

    /// The figure of that name (one of [`Estimated::NAMES`]).
    pub fn figure(&self, name: &str) -> Option<Band> {
        match name {
            "accuracy" => Some(self.accuracy),
            "precision" => Some(self.precision),
            "recall" => Some(self.recall),
            "f1" => Some(self.f1),
            "roc_auc" => Some(self.roc_auc),
            _ => None,
        }
    }
}

/// Labelled answers counted by probability bin, class answered and truth, with the sum of
/// squared errors of the exact probabilities: a window's realised quality, mergeable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "LabelledForm", from = "LabelledForm")]
pub struct Labelled {
    /// `counts[4 * bin + 2 * class + truth]`.
    counts: Vec<u32>,
    rows: u64,
    squared_error: f64,
}

#[derive(Serialize, Deserialize)]
struct LabelledForm {
    counts: Vec<(u32, u32)>,
    squared_error: f64,
}

impl From<Labelled> for LabelledForm {
    fn from(l: Labelled) -> Self {
        LabelledForm {
            counts: l
                .counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| (i as u32, *n))
                .collect(),
            squared_error: l.squared_error,
        }
    }
}

impl From<LabelledForm> for Labelled {
    fn from(form: LabelledForm) -> Self {
        let mut l = Labelled::default();
        for (i, n) in form.counts {
            if let Some(c) = l.counts.get_mut(i as usize) {
                *c += n;
                l.rows += u64::from(n);
            }
        }
        l.squared_error = form.squared_error;
        l
    }
}

impl Default for Labelled {
    fn default() -> Self {
        Labelled {
            counts: vec![0; 4 * BINS],
            rows: 0,
            squared_error: 0.0,
        }
    }
}

impl Labelled {
    pub fn add(&mut self, p: f64, class: u8, truth: bool) {
        let at = 4 * bin(p) + 2 * usize::from(class.min(1)) + usize::from(truth);
        self.counts[at] = self.counts[at].saturating_add(1);
        self.rows += 1;
        if p.is_finite() {
            self.squared_error += (p - f64::from(u8::from(truth))).powi(2);
        }
    }

    pub fn merge(&mut self, other: &Labelled) {
        for (c, o) in self.counts.iter_mut().zip(&other.counts) {
            *c = c.saturating_add(*o);
        }
        self.rows += other.rows;
        self.squared_error += other.squared_error;
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The realised quality of the labelled answers; `None` when there are none. ROC AUC
    /// counts answers in the same bin as tied.
    pub fn realised(&self) -> Option<RealisedClass> {
        if self.rows == 0 {
            return None;
        }
        let at = |b: usize, class: usize, truth: usize| {
            u64::from(self.counts[4 * b + 2 * class + truth])
        };
        let mut confusion = ConfusionMatrix::default();
        let (mut pairs, mut above) = (0.0, 0.0);
        for b in (0..BINS).rev() {
            for (class, truth) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                confusion.add(truth == 1, class == 1, at(b, class, truth));
            }
            let pos = (at(b, 0, 1) + at(b, 1, 1)) as f64;
            let neg = (at(b, 0, 0) + at(b, 1, 0)) as f64;
            pairs += neg * (above + pos / 2.0);
            above += pos;
        }
        let positives = confusion.true_positive + confusion.false_negative;
        let negatives = confusion.true_negative + confusion.false_positive;
        Some(RealisedClass {
            rows: self.rows,
            positives,
            accuracy: confusion.accuracy(),
            precision: confusion.precision(),
            recall: confusion.recall(),
            f1: confusion.f1(),
            roc_auc: (positives > 0 && negatives > 0)
                .then(|| pairs / (positives as f64 * negatives as f64)),
            brier: self.squared_error / self.rows as f64,
        })
    }
}

/// A window's realised classification quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealisedClass {
    pub rows: u64,
    pub positives: u64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Absent when the labels hold one class only.
    pub roc_auc: Option<f64>,
    pub brier: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ConfusionMatrix, roc_auc};

    /// A deterministic stream of numbers in [0, 1).
    fn uniform(seed: u64) -> impl Iterator<Item = f64> {
        let mut s = seed;
        std::iter::from_fn(move || {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            Some((s >> 11) as f64 / (1u64 << 53) as f64)
        })
    }

    /// Answers of a calibrated model and labels drawn from their probabilities.
    fn calibrated(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut u = uniform(seed);
        let mut p = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            // Skewed towards low probabilities, as a severity model's are.
            let q = u.next().unwrap().powi(2);
            p.push(q);
            y.push(f64::from(u8::from(u.next().unwrap() < q)));
        }
        (p, y)
    }

    #[test]
    fn the_estimate_of_a_calibrated_model_falls_near_the_realised_figures() {
        let threshold = 0.3;
        let (mut inside_f1, mut inside_auc, mut err_f1, mut err_auc) = (0, 0, 0.0, 0.0);
        let windows = 200;
        for w in 0..windows {
            let (p, y) = calibrated(1_000, w);
            let mut sketch = Sketch::default();
            let mut labelled = Labelled::default();
            for (&q, &t) in p.iter().zip(&y) {
                let class = u8::from(q >= threshold);
                sketch.add(Sketch::slot(q, class));
                labelled.add(q, class, t == 1.0);
            }
            let est = sketch.estimate().unwrap();
            let real = labelled.realised().unwrap();
            let confusion = ConfusionMatrix::at(&y, &p, threshold);
            assert!((real.f1 - confusion.f1()).abs() < 1e-12);
            assert!((real.roc_auc.unwrap() - roc_auc(&y, &p)).abs() < 2e-3);
            err_f1 += (est.f1.value - real.f1).abs();
            err_auc += (est.roc_auc.value - real.roc_auc.unwrap()).abs();
            let within = |b: Band, v: f64| b.lower <= v && v <= b.upper;
            inside_f1 += usize::from(within(est.f1, real.f1));
            inside_auc += usize::from(within(est.roc_auc, real.roc_auc.unwrap()));
        }
        let n = windows as f64;
        assert!(err_f1 / n < 0.03, "F1 off by {} on average", err_f1 / n);
        assert!(err_auc / n < 0.02, "AUC off by {} on average", err_auc / n);
        // A 95% band holds the realised figure about 95 times in 100.
        for (name, inside) in [("f1", inside_f1), ("roc_auc", inside_auc)] {
            let share = inside as f64 / n;
            assert!((0.88..=0.995).contains(&share), "{name}: {share}");
        }
    }

    #[test]
    fn an_overconfident_model_is_estimated_too_well() {
        // The truth is half as extreme as the answers: the estimate is optimistic, which is
        // why the probabilities must be calibrated first.
        let mut u = uniform(3);
        let mut sketch = Sketch::default();
        let mut labelled = Labelled::default();
        for _ in 0..5_000 {
            let q = u.next().unwrap();
            let truth = u.next().unwrap() < 0.25 + q / 2.0;
            let class = u8::from(q >= 0.5);
            sketch.add(Sketch::slot(q, class));
            labelled.add(q, class, truth);
        }
        let est = sketch.estimate().unwrap();
        let real = labelled.realised().unwrap();
        assert!(est.accuracy.value > real.accuracy + 0.1);
        assert!(est.roc_auc.value > real.roc_auc.unwrap() + 0.05);
    }

    #[test]
    fn sketches_merge_add_and_remove_exactly() {
        let (p, y) = calibrated(3_000, 9);
        let mut whole = Sketch::default();
        let mut parts = [Sketch::default(), Sketch::default()];
        let mut whole_l = Labelled::default();
        let mut parts_l = [Labelled::default(), Labelled::default()];
        for (i, (&q, &t)) in p.iter().zip(&y).enumerate() {
            let class = u8::from(q >= 0.5);
            whole.add(Sketch::slot(q, class));
            parts[i % 2].add(Sketch::slot(q, class));
            whole_l.add(q, class, t == 1.0);
            parts_l[i % 2].add(q, class, t == 1.0);
        }
        let [mut a, b] = parts;
        a.merge(&b);
        assert_eq!(a, whole);
        let [mut a_l, b_l] = parts_l;
        a_l.merge(&b_l);
        // Counts merge exactly; the sum of squared errors up to its order of addition.
        let (merged, whole_r) = (a_l.realised().unwrap(), whole_l.realised().unwrap());
        assert!((merged.brier - whole_r.brier).abs() < 1e-12);
        assert_eq!(
            RealisedClass {
                brier: 0.0,
                ..merged
            },
            RealisedClass {
                brier: 0.0,
                ..whole_r
            }
        );
        // Added then removed: as before.
        let before = whole.clone();
        whole.add(Sketch::slot(0.42, 0));
        whole.remove(Sketch::slot(0.42, 0));
        assert_eq!(whole, before);
        // Saved and read back.
        let text = serde_json::to_string(&whole).unwrap();
        assert_eq!(serde_json::from_str::<Sketch>(&text).unwrap(), whole);
        let text = serde_json::to_string(&whole_l).unwrap();
        assert_eq!(
            serde_json::from_str::<Labelled>(&text).unwrap().realised(),
            whole_l.realised()
        );
        assert_eq!(Sketch::default().estimate(), None);
    }
}
