//! Paired bootstrap comparison of two models on the same rows: is the candidate really better
//! than the production model, or did it win by the luck of the holdout?
//!
//! Each resample draws the holdout's rows with replacement (the same rows for both models, so
//! the comparison is paired) and computes the metric of both; the distribution of the
//! difference gives a one-sided confidence bound. A resample is a weight per row (how many
//! times it was drawn): every rank statistic walks rows sorted once by probability, so a
//! resample costs O(rows), not a sort.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::metrics::BinaryMetrics;
use crate::regression::RegressionMetrics;

/// The full evaluation of a model on one data set, for either task. Serialised as the inner
/// figures alone, so binary evaluations read and write as they always have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Evaluation {
    Binary(BinaryMetrics),
    Regression(RegressionMetrics),
}

impl Evaluation {
    pub fn rows(&self) -> u64 {
        match self {
            Evaluation::Binary(m) => m.rows,
            Evaluation::Regression(m) => m.rows,
        }
    }

    pub fn as_binary(&self) -> Option<&BinaryMetrics> {
        match self {
            Evaluation::Binary(m) => Some(m),
            Evaluation::Regression(_) => None,
        }
    }

    pub fn as_regression(&self) -> Option<&RegressionMetrics> {
        match self {
            Evaluation::Regression(m) => Some(m),
            Evaluation::Binary(_) => None,
        }
    }
}

/// A figure two models are compared on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    RocAuc,
    PrAuc,
    F1,
    Brier,
    LogLoss,
    /// Mean absolute error of a regression.
    Mae,
    /// Root mean squared error of a regression.
    Rmse,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::RocAuc,
        Metric::PrAuc,
        Metric::F1,
        Metric::Brier,
        Metric::LogLoss,
        Metric::Mae,
        Metric::Rmse,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Metric::RocAuc => "roc_auc",
            Metric::PrAuc => "pr_auc",
            Metric::F1 => "f1",
            Metric::Brier => "brier",
            Metric::LogLoss => "log_loss",
            Metric::Mae => "mae",
            Metric::Rmse => "rmse",
        }
    }

    /// Whether the metric judges a regression (estimates against numbers) rather than a binary
    /// classification (probabilities against classes).
    pub fn is_regression(&self) -> bool {
        matches!(self, Metric::Mae | Metric::Rmse)
    }

    /// Whether a larger value is better (AUCs, F1) or worse (Brier score, log loss).
    pub fn higher_is_better(&self) -> bool {
        matches!(self, Metric::RocAuc | Metric::PrAuc | Metric::F1)
    }

    /// The metric's value in a full evaluation; `None` when it belongs to the other task.
    pub fn of(&self, m: &Evaluation) -> Option<f64> {
        match (self, m) {
            (Metric::RocAuc, Evaluation::Binary(m)) => Some(m.roc_auc),
            (Metric::PrAuc, Evaluation::Binary(m)) => Some(m.pr_auc),
            (Metric::F1, Evaluation::Binary(m)) => Some(m.f1),
            (Metric::Brier, Evaluation::Binary(m)) => Some(m.brier),
            (Metric::LogLoss, Evaluation::Binary(m)) => Some(m.log_loss),
            (Metric::Mae, Evaluation::Regression(m)) => Some(m.mae),
            (Metric::Rmse, Evaluation::Regression(m)) => Some(m.rmse),
            _ => None,
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Metric::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown metric {s:?} (roc_auc, pr_auc, f1, brier or log_loss for a classification; mae or rmse for a regression)"
                )
            })
    }
}

/// One model's answers on the compared rows.
#[derive(Debug, Clone, Copy)]
pub struct Scored<'a> {
    /// Probability of the positive class (classification) or the estimate (regression), one
    /// per row.
    pub probabilities: &'a [f64],
    /// The model's decision threshold (F1 is measured at it); unused by a regression.
    pub threshold: f64,
}

/// Settings of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapParams {
    pub metric: Metric,
    pub samples: usize,
    /// One-sided confidence of the lower bound on the improvement (0.95: the 5th percentile).
    pub confidence: f64,
    /// The improvement the lower bound must exceed, in the metric's units (oriented so that a
    /// positive improvement is better, also for Brier score and log loss).
    pub min_improvement: f64,
    pub seed: u64,
}

impl Default for BootstrapParams {
    fn default() -> Self {
        BootstrapParams {
            metric: Metric::RocAuc,
            samples: 1000,
            confidence: 0.95,
            min_improvement: 0.0,
            seed: 0,
        }
    }
}

/// The outcome of a paired bootstrap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub metric: Metric,
    pub rows: usize,
    pub samples: usize,
    pub confidence: f64,
    pub min_improvement: f64,
    /// The metric of each model on all rows.
    pub production: f64,
    pub candidate: f64,
    /// Candidate minus production, oriented so that positive is better.
    pub improvement: f64,
    /// The one-sided lower confidence bound of the improvement over the resamples.
    pub improvement_lower: f64,
    /// The matching upper percentile (two-sided view, for reports).
    pub improvement_upper: f64,
    /// Share of resamples where the candidate did not beat production by `min_improvement`.
    pub share_not_better: f64,
    /// Whether the bound clears the margin: the candidate is better, and not by luck.
    pub better: bool,
}

/// Compares `candidate` with `production` on the same rows and targets `y` (1.0 / 0.0 for a
/// classification metric, numbers for a regression one).
/// Panics when the slices differ in length.
pub fn compare(
    y: &[f64],
    production: Scored<'_>,
    candidate: Scored<'_>,
    params: &BootstrapParams,
) -> Comparison {
    assert_eq!(
        y.len(),
        production.probabilities.len(),
        "one probability per row"
    );
    assert_eq!(
        y.len(),
        candidate.probabilities.len(),
        "one probability per row"
    );
    let a = Prepared::new(production);
    let b = Prepared::new(candidate);
    let sign = if params.metric.higher_is_better() {
        1.0
    } else {
        -1.0
    };
    let ones = vec![1.0; y.len()];
    let value_a = a.metric(params.metric, y, &ones);
    let value_b = b.metric(params.metric, y, &ones);
    let improvement = sign * (value_b - value_a);

    let mut rng = StdRng::seed_from_u64(params.seed);
    let mut weights = vec![0.0; y.len()];
    let mut diffs = Vec::with_capacity(params.samples);
    for _ in 0..params.samples {
        weights.iter_mut().for_each(|w| *w = 0.0);
        if !y.is_empty() {
            for _ in 0..y.len() {
                weights[rng.gen_range(0..y.len())] += 1.0;
            }
        }
        let d = b.metric(params.metric, y, &weights) - a.metric(params.metric, y, &weights);
        diffs.push(sign * d);
    }
    diffs.sort_by(f64::total_cmp);
    let alpha = (1.0 - params.confidence).clamp(0.0, 1.0);
    let lower = percentile(&diffs, alpha);
    let upper = percentile(&diffs, 1.0 - alpha);
    let not_better = diffs
        .iter()
        .filter(|&&d| d <= params.min_improvement)
        .count();
    let share_not_better = if diffs.is_empty() {
        1.0
    } else {
        not_better as f64 / diffs.len() as f64
    };
    Comparison {
        metric: params.metric,
        rows: y.len(),
        samples: params.samples,
        confidence: params.confidence,
        min_improvement: params.min_improvement,
        production: value_a,
        candidate: value_b,
        improvement,
        improvement_lower: lower,
        improvement_upper: upper,
        share_not_better,
        better: !diffs.is_empty()
            && improvement > params.min_improvement
            && lower > params.min_improvement,
    }
}

/// The `q` quantile of sorted values (nearest rank); 0 when there are none.
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A model's probabilities with the rows sorted once, from the highest probability down, and
/// the boundaries of groups of tied probabilities.
struct Prepared<'a> {
    p: &'a [f64],
    threshold: f64,
    order: Vec<usize>,
    /// `order[groups[k]..groups[k + 1]]` is the k-th group of tied probabilities.
    groups: Vec<usize>,
}

impl<'a> Prepared<'a> {
    fn new(scored: Scored<'a>) -> Self {
        let p = scored.probabilities;
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        let mut groups = vec![0];
        for i in 1..order.len() {
            if p[order[i]].total_cmp(&p[order[i - 1]]).is_ne() {
                groups.push(i);
            }
        }
        groups.push(order.len());
        Prepared {
            p,
            threshold: scored.threshold,
            order,
            groups,
        }
    }

    /// The metric with row `i` counted `w[i]` times.
    fn metric(&self, metric: Metric, y: &[f64], w: &[f64]) -> f64 {
        match metric {
            Metric::RocAuc | Metric::PrAuc => self.ranked(metric, y, w),
            Metric::F1 => {
                let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
                for ((&t, &q), &w) in y.iter().zip(self.p).zip(w) {
                    match (t == 1.0, q >= self.threshold) {
                        (true, true) => tp += w,
                        (false, true) => fp += w,
                        (true, false) => fn_ += w,
                        (false, false) => {}
                    }
                }
                let den = 2.0 * tp + fp + fn_;
                if den == 0.0 { 0.0 } else { 2.0 * tp / den }
            }
            Metric::Mae | Metric::Rmse => {
                let (mut sum, mut total) = (0.0, 0.0);
                for ((&t, &e), &w) in y.iter().zip(self.p).zip(w) {
                    let r = t - e;
                    sum += w * if metric == Metric::Mae {
                        r.abs()
                    } else {
                        r * r
                    };
                    total += w;
                }
                match (total == 0.0, metric) {
                    (true, _) => 0.0,
                    (false, Metric::Mae) => sum / total,
                    (false, _) => (sum / total).sqrt(),
                }
            }
            Metric::Brier | Metric::LogLoss => {
                let (mut sum, mut total) = (0.0, 0.0);
                for ((&t, &q), &w) in y.iter().zip(self.p).zip(w) {
                    let loss = if metric == Metric::Brier {
                        (t - q).powi(2)
                    } else {
                        let q = q.clamp(1e-15, 1.0 - 1e-15);
                        -(t * q.ln() + (1.0 - t) * (1.0 - q).ln())
                    };
                    sum += w * loss;
                    total += w;
                }
                if total == 0.0 { 0.0 } else { sum / total }
            }
        }
    }

    /// ROC AUC or average precision, as `metrics::roc_auc` and `metrics::average_precision`
    /// define them, with weighted rows.
    fn ranked(&self, metric: Metric, y: &[f64], w: &[f64]) -> f64 {
        let (mut positives, mut negatives) = (0.0, 0.0);
        for (&t, &w) in y.iter().zip(w) {
            if t == 1.0 {
                positives += w
            } else {
                negatives += w
            }
        }
        let (mut pairs, mut above, mut tp, mut seen, mut ap) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for bounds in self.groups.windows(2) {
            let (mut pos, mut neg) = (0.0, 0.0);
            for &row in &self.order[bounds[0]..bounds[1]] {
                if y[row] == 1.0 {
                    pos += w[row]
                } else {
                    neg += w[row]
                }
            }
            pairs += neg * (above + pos / 2.0);
            above += pos;
            tp += pos;
            seen += pos + neg;
            if pos > 0.0 {
                ap += (tp / seen) * (pos / positives);
            }
        }
        match metric {
            Metric::RocAuc if positives > 0.0 && negatives > 0.0 => pairs / (positives * negatives),
            Metric::RocAuc => 0.5,
            _ if positives > 0.0 => ap,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{average_precision, roc_auc};

    fn data(n: usize, seed: u64, skill: f64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let y: Vec<f64> = (0..n).map(|_| f64::from(rng.gen_bool(0.3))).collect();
        let p = y
            .iter()
            .map(|&t| {
                let noise: f64 = rng.r#gen();
                // Rounded to 2 decimals: plenty of ties.
                ((skill * t + (1.0 - skill) * noise) * 100.0).round() / 100.0
            })
            .collect();
        (y, p)
    }

    fn s(p: &[f64]) -> Scored<'_> {
        Scored {
            probabilities: p,
            threshold: 0.5,
        }
    }

    /// Every metric's value in the full evaluations of (`y`, `p`), read as a classification and
    /// as a regression.
    fn full_metrics(y: &[f64], p: &[f64], threshold: f64) -> impl Fn(Metric) -> f64 {
        let binary = Evaluation::Binary(BinaryMetrics::compute(y, p, threshold));
        let regression = Evaluation::Regression(RegressionMetrics::compute(y, p, 0.0));
        move |metric| {
            metric
                .of(&binary)
                .or(metric.of(&regression))
                .expect("every metric belongs to a task")
        }
    }

    #[test]
    fn unit_weights_reproduce_the_full_metrics() {
        let (y, p) = data(2_000, 1, 0.4);
        let prepared = Prepared::new(Scored {
            probabilities: &p,
            threshold: 0.5,
        });
        let ones = vec![1.0; y.len()];
        let full = full_metrics(&y, &p, 0.5);
        for metric in Metric::ALL {
            let got = prepared.metric(metric, &y, &ones);
            let expected = full(metric);
            assert!(
                (got - expected).abs() < 1e-12,
                "{metric:?}: {got} vs {expected}"
            );
        }
        assert!((prepared.ranked(Metric::RocAuc, &y, &ones) - roc_auc(&y, &p)).abs() < 1e-12);
        assert!(
            (prepared.ranked(Metric::PrAuc, &y, &ones) - average_precision(&y, &p)).abs() < 1e-12
        );
    }

    #[test]
    fn integer_weights_equal_repeated_rows() {
        let (y, p) = data(300, 2, 0.3);
        let w: Vec<f64> = (0..y.len()).map(|i| (i % 4) as f64).collect();
        let (mut y2, mut p2) = (Vec::new(), Vec::new());
        for i in 0..y.len() {
            for _ in 0..w[i] as usize {
                y2.push(y[i]);
                p2.push(p[i]);
            }
        }
        let prepared = Prepared::new(Scored {
            probabilities: &p,
            threshold: 0.4,
        });
        let expanded = full_metrics(&y2, &p2, 0.4);
        for metric in Metric::ALL {
            let got = prepared.metric(metric, &y, &w);
            let expected = expanded(metric);
            assert!(
                (got - expected).abs() < 1e-9,
                "{metric:?}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn a_clearly_better_model_is_better_and_an_equal_one_is_not() {
        let (y, weak) = data(3_000, 3, 0.1);
        let mut rng = StdRng::seed_from_u64(9);
        let strong: Vec<f64> = y
            .iter()
            .map(|&t| 0.5 * t + 0.5 * rng.r#gen::<f64>())
            .collect();
        let params = BootstrapParams {
            samples: 200,
            ..BootstrapParams::default()
        };
        let better = compare(&y, s(&weak), s(&strong), &params);
        assert!(better.better, "{better:?}");
        assert!(better.improvement > 0.1 && better.improvement_lower > 0.05);
        assert_eq!(better.share_not_better, 0.0);

        let same = compare(&y, s(&weak), s(&weak), &params);
        assert!(!same.better);
        assert_eq!(same.improvement, 0.0);
        assert_eq!(same.share_not_better, 1.0);

        // Worse, on a metric where lower is better.
        let worse = compare(
            &y,
            s(&strong),
            s(&weak),
            &BootstrapParams {
                metric: Metric::Brier,
                ..params
            },
        );
        assert!(!worse.better && worse.improvement < 0.0, "{worse:?}");
    }

    #[test]
    fn a_margin_the_improvement_does_not_clear_rejects() {
        let (y, weak) = data(3_000, 4, 0.2);
        let (_, less_weak) = data(3_000, 4, 0.22);
        let params = BootstrapParams {
            samples: 200,
            min_improvement: 0.5,
            ..BootstrapParams::default()
        };
        let c = compare(&y, s(&weak), s(&less_weak), &params);
        assert!(!c.better, "{c:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_answer() {
        let (y, a) = data(500, 5, 0.2);
        let (_, b) = data(500, 6, 0.25);
        let params = BootstrapParams {
            samples: 100,
            seed: 7,
            ..BootstrapParams::default()
        };
        assert_eq!(
            compare(&y, s(&a), s(&b), &params),
            compare(&y, s(&a), s(&b), &params)
        );
    }

    #[test]
    fn metric_names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(m.as_str().parse::<Metric>(), Ok(m));
        }
        assert!(
            "accuracy"
                .parse::<Metric>()
                .unwrap_err()
                .contains("roc_auc")
        );
    }
}
