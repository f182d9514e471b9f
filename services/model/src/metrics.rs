//! Binary classification metrics, computed from targets (0.0 / 1.0) and probabilities, and the
//! choice of a decision threshold.
//!
//! Definitions follow scikit-learn so figures compare: ROC AUC by the rank statistic with ties
//! averaged, PR AUC as average precision (a step function, no interpolation), Brier score as the
//! mean squared error of the probability.

use serde::{Deserialize, Serialize};

/// Counts of a binary decision against the truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConfusionMatrix {
    pub true_negative: u64,
    pub false_positive: u64,
    pub false_negative: u64,
    pub true_positive: u64,
}

impl ConfusionMatrix {
    /// Decides positive when `probability >= threshold`.
    pub fn at(y: &[f64], p: &[f64], threshold: f64) -> Self {
        let mut m = ConfusionMatrix::default();
        for (&t, &prob) in y.iter().zip(p) {
            match (t == 1.0, prob >= threshold) {
                (false, false) => m.true_negative += 1,
                (false, true) => m.false_positive += 1,
                (true, false) => m.false_negative += 1,
                (true, true) => m.true_positive += 1,
            }
        }
        m
    }

    fn ratio(num: u64, den: u64) -> f64 {
        if den == 0 {
            0.0
        } else {
            num as f64 / den as f64
        }
    }

    pub fn precision(&self) -> f64 {
        Self::ratio(self.true_positive, self.true_positive + self.false_positive)
    }

    pub fn recall(&self) -> f64 {
        Self::ratio(self.true_positive, self.true_positive + self.false_negative)
    }

    pub fn f1(&self) -> f64 {
        Self::ratio(
            2 * self.true_positive,
            2 * self.true_positive + self.false_positive + self.false_negative,
        )
    }

    pub fn accuracy(&self) -> f64 {
        Self::ratio(
            self.true_positive + self.true_negative,
            self.true_positive + self.true_negative + self.false_positive + self.false_negative,
        )
    }
}

/// Every figure Vigie reports for a binary classifier on one data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryMetrics {
    pub rows: u64,
    pub positives: u64,
    pub threshold: f64,
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub f1: f64,
    pub precision: f64,
    pub recall: f64,
    pub accuracy: f64,
    pub brier: f64,
    pub log_loss: f64,
    pub confusion: ConfusionMatrix,
}

impl BinaryMetrics {
    pub fn compute(y: &[f64], p: &[f64], threshold: f64) -> Self {
        assert_eq!(y.len(), p.len(), "one probability per target");
        let confusion = ConfusionMatrix::at(y, p, threshold);
        BinaryMetrics {
            rows: y.len() as u64,
            positives: y.iter().filter(|&&t| t == 1.0).count() as u64,
            threshold,
            roc_auc: roc_auc(y, p),
            pr_auc: average_precision(y, p),
            f1: confusion.f1(),
            precision: confusion.precision(),
            recall: confusion.recall(),
            accuracy: confusion.accuracy(),
            brier: brier(y, p),
            log_loss: log_loss(y, p),
            confusion,
        }
    }
}

/// Indices of `p` sorted by decreasing probability.
fn descending(p: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    order
}

/// Area under the ROC curve (Mann-Whitney U with tied scores counted half); 0.5 when one class
/// is absent.
pub fn roc_auc(y: &[f64], p: &[f64]) -> f64 {
    let order = descending(p);
    let positives = y.iter().filter(|&&t| t == 1.0).count() as f64;
    let negatives = y.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return 0.5;
    }
    // Walk groups of tied scores from the top; every negative in a group counts the positives
    // ranked above it, plus half of the positives tied with it: the correctly ordered pairs.
    let mut area = 0.0;
    let mut positives_above = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        let (mut pos, mut neg) = (0.0, 0.0);
        while j < order.len() && p[order[j]] == p[order[i]] {
            if y[order[j]] == 1.0 {
                pos += 1.0
            } else {
                neg += 1.0
            }
            j += 1;
        }
        area += neg * (positives_above + pos / 2.0);
        positives_above += pos;
        i = j;
    }
    area / (positives * negatives)
}

/// Average precision: the sum over thresholds of precision times the recall gained.
pub fn average_precision(y: &[f64], p: &[f64]) -> f64 {
    let order = descending(p);
    let positives = y.iter().filter(|&&t| t == 1.0).count() as f64;
    if positives == 0.0 {
        return 0.0;
    }
    let (mut tp, mut seen, mut ap) = (0.0, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        let mut group_tp = 0.0;
        while j < order.len() && p[order[j]] == p[order[i]] {
            group_tp += y[order[j]];
            j += 1;
        }
        seen += (j - i) as f64;
        tp += group_tp;
        ap += (tp / seen) * (group_tp / positives);
        i = j;
    }
    ap
}

pub fn brier(y: &[f64], p: &[f64]) -> f64 {
    if y.is_empty() {
        return 0.0;
    }
    y.iter().zip(p).map(|(t, q)| (t - q).powi(2)).sum::<f64>() / y.len() as f64
}

pub fn log_loss(y: &[f64], p: &[f64]) -> f64 {
    if y.is_empty() {
        return 0.0;
    }
    let eps = 1e-15;
    let sum: f64 = y
        .iter()
        .zip(p)
        .map(|(&t, &q)| {
            let q = q.clamp(eps, 1.0 - eps);
            -(t * q.ln() + (1.0 - t) * (1.0 - q).ln())
        })
        .sum();
    sum / y.len() as f64
}

/// The threshold that maximises F1 on (`y`, `p`): one of the probabilities, so that deciding
/// `p >= threshold` reproduces the best cut. Meant for a validation slice, never the holdout.
pub fn best_f1_threshold(y: &[f64], p: &[f64]) -> f64 {
    let order = descending(p);
    let positives = y.iter().filter(|&&t| t == 1.0).count() as f64;
    let (mut tp, mut fp) = (0.0, 0.0);
    let (mut best_f1, mut best) = (-1.0, 0.5);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && p[order[j]] == p[order[i]] {
            if y[order[j]] == 1.0 {
                tp += 1.0
            } else {
                fp += 1.0
            }
            j += 1;
        }
        let f1 = 2.0 * tp / (2.0 * tp + fp + (positives - tp));
        if f1 > best_f1 {
            best_f1 = f1;
            best = p[order[i]];
        }
        i = j;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn roc_auc_matches_hand_computed_values() {
        // Perfect, inverted, and a case worked by hand (scikit-learn gives 0.75).
        close(roc_auc(&[0.0, 0.0, 1.0, 1.0], &[0.1, 0.2, 0.8, 0.9]), 1.0);
        close(roc_auc(&[1.0, 1.0, 0.0, 0.0], &[0.1, 0.2, 0.8, 0.9]), 0.0);
        close(roc_auc(&[0.0, 0.0, 1.0, 1.0], &[0.1, 0.4, 0.35, 0.8]), 0.75);
        // Ties count half.
        close(roc_auc(&[0.0, 1.0], &[0.5, 0.5]), 0.5);
    }

    #[test]
    fn average_precision_matches_scikit_learn() {
        // sklearn.metrics.average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.8333...
        close(
            average_precision(&[0.0, 0.0, 1.0, 1.0], &[0.1, 0.4, 0.35, 0.8]),
            5.0 / 6.0,
        );
    }

    #[test]
    fn confusion_and_derived_scores() {
        let y = [1.0, 1.0, 0.0, 0.0, 1.0];
        let p = [0.9, 0.4, 0.6, 0.1, 0.7];
        let m = BinaryMetrics::compute(&y, &p, 0.5);
        assert_eq!(
            m.confusion,
            ConfusionMatrix {
                true_negative: 1,
                false_positive: 1,
                false_negative: 1,
                true_positive: 2
            }
        );
        close(m.precision, 2.0 / 3.0);
        close(m.recall, 2.0 / 3.0);
        close(m.f1, 2.0 / 3.0);
        close(m.accuracy, 0.6);
        close(m.brier, (0.01 + 0.36 + 0.36 + 0.01 + 0.09) / 5.0);
    }

    #[test]
    fn best_threshold_maximises_f1() {
        let y = [0.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        let p = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
        let t = best_f1_threshold(&y, &p);
        let best = ConfusionMatrix::at(&y, &p, t).f1();
        for &candidate in &p {
            assert!(ConfusionMatrix::at(&y, &p, candidate).f1() <= best + 1e-12);
        }
        close(t, 0.3);
    }
}
