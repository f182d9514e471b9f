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
            m.add(t == 1.0, prob >= threshold, 1);
        }
        m
    }

    /// Counts `n` decisions of `positive` against a `truth`.
    pub fn add(&mut self, truth: bool, positive: bool, n: u64) {
        match (truth, positive) {
            (false, false) => self.true_negative += n,
            (false, true) => self.false_positive += n,
            (true, false) => self.false_negative += n,
            (true, true) => self.true_positive += n,
        }
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
    /// Expected calibration error (ten equal-width bins); absent from figures measured before
    /// it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ece: Option<f64>,
    pub confusion: ConfusionMatrix,
}

impl BinaryMetrics {
    pub fn compute(y: &[f64], p: &[f64], threshold: f64) -> Self {
        assert_eq!(y.len(), p.len(), "one probability per target");
        let confusion = ConfusionMatrix::at(y, p, threshold);
        BinaryMetrics {
            rows: y.len() as u64,
            positives: positives(y) as u64,
            threshold,
            roc_auc: roc_auc(y, p),
            pr_auc: average_precision(y, p),
            f1: confusion.f1(),
            precision: confusion.precision(),
            recall: confusion.recall(),
            accuracy: confusion.accuracy(),
            brier: brier(y, p),
            log_loss: log_loss(y, p),
            ece: Some(crate::calibration::expected_calibration_error(
                y,
                p,
                crate::calibration::CALIBRATION_BINS,
            )),
            confusion,
        }
    }
}

/// Groups of tied probabilities, from the highest down: (the probability, positives in the group,
/// negatives in the group). Every rank statistic below walks these.
fn tied_groups<'a>(y: &'a [f64], p: &'a [f64]) -> impl Iterator<Item = (f64, f64, f64)> + 'a {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let mut i = 0;
    std::iter::from_fn(move || {
        let first = *order.get(i)?;
        let (mut positives, mut negatives) = (0.0, 0.0);
        // `total_cmp`, not `==`: a NaN probability forms its own group instead of stalling.
        while let Some(&row) = order
            .get(i)
            .filter(|&&row| p[row].total_cmp(&p[first]).is_eq())
        {
            if y[row] == 1.0 {
                positives += 1.0
            } else {
                negatives += 1.0
            }
            i += 1;
        }
        Some((p[first], positives, negatives))
    })
}

fn positives(y: &[f64]) -> f64 {
    y.iter().filter(|&&t| t == 1.0).count() as f64
}

/// Area under the ROC curve (Mann-Whitney U with tied scores counted half); 0.5 when one class
/// is absent.
pub fn roc_auc(y: &[f64], p: &[f64]) -> f64 {
    let positives = positives(y);
    let negatives = y.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return 0.5;
    }
    // Every negative counts the positives ranked above it, plus half of those tied with it: the
    // correctly ordered pairs.
    let (mut pairs, mut above) = (0.0, 0.0);
    for (_, pos, neg) in tied_groups(y, p) {
        pairs += neg * (above + pos / 2.0);
        above += pos;
    }
    pairs / (positives * negatives)
}

/// Average precision: the sum over thresholds of precision times the recall gained.
pub fn average_precision(y: &[f64], p: &[f64]) -> f64 {
    let positives = positives(y);
    if positives == 0.0 {
        return 0.0;
    }
    let (mut tp, mut seen, mut ap) = (0.0, 0.0, 0.0);
    for (_, pos, neg) in tied_groups(y, p) {
        tp += pos;
        seen += pos + neg;
        ap += (tp / seen) * (pos / positives);
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
    let positives = positives(y);
    let (mut tp, mut fp) = (0.0, 0.0);
    let (mut best_f1, mut best) = (-1.0, 0.5);
    for (probability, pos, neg) in tied_groups(y, p) {
        tp += pos;
        fp += neg;
        let f1 = 2.0 * tp / (2.0 * tp + fp + (positives - tp));
        if f1 > best_f1 {
            best_f1 = f1;
            best = probability;
        }
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
    fn nan_probabilities_do_not_stall_rank_statistics() {
        let y = [1.0, 0.0, 1.0];
        let p = [f64::NAN, 0.2, 0.9];
        assert!(roc_auc(&y, &p).is_finite());
        assert!(average_precision(&y, &p).is_finite());
        let _ = best_f1_threshold(&y, &p);
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
