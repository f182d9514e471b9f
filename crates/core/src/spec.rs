//! Model specs: a model described as data (features, target, data files, algorithm).
//!
//! A spec is a TOML file. [`ModelSpec::from_file`] reads it, checks everything that can be
//! checked without the data, and resolves the data paths against the spec's folder. Nothing
//! here knows any particular data set: the BAAC severity model is `models/baac-severity.toml`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vigie_model::AlgorithmParams;
use vigie_model::bootstrap::{BootstrapParams, Metric};

use crate::{Error, Result};

/// What a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    BinaryClassification,
    /// A number (a time, a cost) with its unit and valid range.
    Regression,
}

impl Task {
    pub const ALL: [Task; 2] = [Task::BinaryClassification, Task::Regression];

    pub fn as_str(&self) -> &'static str {
        match self {
            Task::BinaryClassification => "binary_classification",
            Task::Regression => "regression",
        }
    }

    /// The retraining metric when the spec names none: ROC AUC for a classification, MAE for a
    /// regression.
    pub fn default_metric(&self) -> Metric {
        match self {
            Task::BinaryClassification => Metric::RocAuc,
            Task::Regression => Metric::Mae,
        }
    }
}

/// A model spec as written in its TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Registry name: lowercase letters, digits and `-`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub task: Task,
    /// How a file's columns and a request's fields are matched to the features and the target:
    /// by their exact names (the default), or ignoring case (exports that change the case of
    /// their header between versions). Aliases (`[[feature]] aliases`) match the same way.
    #[serde(default, skip_serializing_if = "ColumnNames::is_exact")]
    pub column_names: ColumnNames,
    pub target: TargetSpec,
    pub data: DataSpec,
    #[serde(default)]
    pub training: TrainingSpec,
    /// How the drift reference is built when the model is trained.
    #[serde(default)]
    pub reference: ReferenceSpec,
    /// Drift decisions: the statistic and threshold per kind of feature or per feature, the
    /// fewest events worth scoring (defaults: TVD > 0.1, correlation < 0.95, 500 events).
    /// Left out of the serialised spec when default, so specs written before it hash the same.
    #[serde(default, skip_serializing_if = "is_default_drift")]
    pub drift: vigie_drift::DriftRules,
    /// How the trainer retrains the model and judges a candidate against production (defaults:
    /// ROC AUC for a classification and MAE for a regression, a paired bootstrap of 1,000
    /// resamples, 95% one-sided, no synthetic rows).
    /// Left out of the serialised spec when default, so specs written before it hash the same.
    #[serde(default, skip_serializing_if = "is_default_retraining")]
    pub retraining: RetrainingSpec,
    /// When the quality alerts fire: per metric, how far the estimated or realised figure may
    /// fall short of the version's holdout figure; how many labels the realised one needs.
    /// Left out of the serialised spec when default, so specs written before it hash the same.
    #[serde(default, skip_serializing_if = "QualitySpec::is_default")]
    pub quality: QualitySpec,
    /// What a regression answers beside its estimate: the interval, the costly error's
    /// margin, the underestimated groups. Only for `task = "regression"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<RegressionSpec>,
    pub algorithm: AlgorithmParams,
    /// The features, in the order the model sees them.
    #[serde(rename = "feature")]
    pub features: Vec<FeatureSpec>,
}

fn is_default_drift(rules: &vigie_drift::DriftRules) -> bool {
    *rules == vigie_drift::DriftRules::default()
}

fn is_default_retraining(retraining: &RetrainingSpec) -> bool {
    *retraining == RetrainingSpec::default()
}

/// How names in data and requests are matched to the spec's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnNames {
    #[default]
    Exact,
    CaseInsensitive,
}

impl ColumnNames {
    fn is_exact(&self) -> bool {
        *self == ColumnNames::Exact
    }

    /// The form of `name` that matching compares: the name itself, or its lower case.
    pub fn key(&self, name: &str) -> String {
        match self {
            ColumnNames::Exact => name.to_string(),
            ColumnNames::CaseInsensitive => name.to_lowercase(),
        }
    }

    /// Where `name` is in `header`: the column spelled exactly so, else the first that matches.
    pub fn find(&self, header: &[String], name: &str) -> Option<usize> {
        let key = self.key(name);
        header
            .iter()
            .position(|h| h == name)
            .or_else(|| header.iter().position(|h| self.key(h.trim()) == key))
    }
}

/// The `[retraining]` section: what a retraining adds to the training rows, and the rule that
/// promotes a candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrainingSpec {
    /// The primary metric, measured on the fixed holdout for candidate and production alike;
    /// when absent, the task's default ([`Task::default_metric`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<Metric>,
    /// What the bootstrap's lower bound on the improvement must exceed (metric units, oriented
    /// so that positive is better).
    pub min_improvement: f64,
    pub bootstrap_samples: usize,
    /// One-sided confidence of that lower bound.
    pub confidence: f64,
    pub seed: u64,
    /// Whether labelled traffic (vigie.labels joined to vigie.predictions) joins the fit rows.
    pub labelled_traffic: bool,
    /// Synthetic rows added to the fit rows, as a share of them (0 = none).
    pub synthetic_share: f64,
}

impl Default for RetrainingSpec {
    fn default() -> Self {
        RetrainingSpec {
            metric: None,
            min_improvement: 0.0,
            bootstrap_samples: 1000,
            confidence: 0.95,
            seed: 0,
            labelled_traffic: true,
            synthetic_share: 0.0,
        }
    }
}

impl RetrainingSpec {
    /// The primary metric of a model of this task.
    pub fn metric(&self, task: Task) -> Metric {
        self.metric.unwrap_or(task.default_metric())
    }

    pub fn bootstrap(&self, task: Task) -> BootstrapParams {
        BootstrapParams {
            metric: self.metric(task),
            samples: self.bootstrap_samples,
            confidence: self.confidence,
            min_improvement: self.min_improvement,
            seed: self.seed,
        }
    }

    fn check(&self, task: Task) -> std::result::Result<(), String> {
        let metric = self.metric(task);
        if metric.is_regression() != (task == Task::Regression) {
            return Err(format!(
                "retraining.metric {:?} does not judge a {} model (use {})",
                metric.as_str(),
                task.as_str(),
                match task {
                    Task::BinaryClassification => "roc_auc, pr_auc, f1, brier or log_loss",
                    Task::Regression => "mae or rmse",
                }
            ));
        }
        if !(100..=100_000).contains(&self.bootstrap_samples) {
            return Err(format!(
                "retraining.bootstrap_samples must be between 100 and 100000, not {}",
                self.bootstrap_samples
            ));
        }
        if !(self.confidence > 0.5 && self.confidence < 1.0) {
            return Err(format!(
                "retraining.confidence must be above 0.5 and below 1, not {}",
                self.confidence
            ));
        }
        if !(self.min_improvement.is_finite() && self.min_improvement >= 0.0) {
            return Err(format!(
                "retraining.min_improvement must be 0 or more, not {}",
                self.min_improvement
            ));
        }
        if !(0.0..=10.0).contains(&self.synthetic_share) {
            return Err(format!(
                "retraining.synthetic_share must be between 0 and 10, not {}",
                self.synthetic_share
            ));
        }
        Ok(())
    }
}

/// The target column: its two classes (a classification) or its unit and valid range (a
/// regression). What the task does not use must not be given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub column: String,
    #[serde(default)]
    pub description: String,
    /// Classification: the value that marks the positive class, e.g. "1".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive: Option<String>,
    /// Classification: the value that marks the negative class, e.g. "0".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative: Option<String>,
    /// Classification: what the positive and negative classes mean, for people reading
    /// predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_label: Option<String>,
    /// Regression: the unit of the number, e.g. "s".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
    /// Regression: the valid range; a target outside it is refused, and estimates and
    /// intervals are kept inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl TargetSpec {
    /// The positive class's value (empty for a regression: a checked spec of a classification
    /// always has one).
    pub fn positive(&self) -> &str {
        self.positive.as_deref().unwrap_or_default()
    }

    pub fn negative(&self) -> &str {
        self.negative.as_deref().unwrap_or_default()
    }

    pub fn positive_label(&self) -> &str {
        self.positive_label.as_deref().unwrap_or_default()
    }

    pub fn negative_label(&self) -> &str {
        self.negative_label.as_deref().unwrap_or_default()
    }

    /// A regression target's valid range (unbounded when not given: a checked regression spec
    /// always gives it).
    pub fn range(&self) -> (f64, f64) {
        (
            self.min.unwrap_or(f64::NEG_INFINITY),
            self.max.unwrap_or(f64::INFINITY),
        )
    }

    fn check(&self, task: Task) -> std::result::Result<(), String> {
        let classes = [
            ("positive", &self.positive),
            ("negative", &self.negative),
            ("positive_label", &self.positive_label),
            ("negative_label", &self.negative_label),
        ];
        match task {
            Task::BinaryClassification => {
                for (name, value) in classes {
                    if value.is_none() {
                        return Err(format!(
                            "target.{name} is required for a binary_classification"
                        ));
                    }
                }
                if let Some(name) = [
                    ("unit", !self.unit.is_empty()),
                    ("min", self.min.is_some()),
                    ("max", self.max.is_some()),
                ]
                .into_iter()
                .find_map(|(name, given)| given.then_some(name))
                {
                    return Err(format!(
                        "target.{name} belongs to a regression, not to a binary_classification"
                    ));
                }
                if normalise_token(self.positive()) == normalise_token(self.negative()) {
                    return Err("target.positive and target.negative must differ".into());
                }
            }
            Task::Regression => {
                if let Some((name, _)) = classes.iter().find(|(_, v)| v.is_some()) {
                    return Err(format!(
                        "target.{name} belongs to a binary_classification, not to a regression"
                    ));
                }
                let (Some(min), Some(max)) = (self.min, self.max) else {
                    return Err(
                        "target.min and target.max are required for a regression: the valid range of the number"
                            .into(),
                    );
                };
                if !(min.is_finite() && max.is_finite() && min < max) {
                    return Err(format!(
                        "target range [{min}, {max}] is not a finite range with min below max"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The `[regression]` section: what a regression answers beside its estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegressionSpec {
    /// The share of truths the answer's interval is meant to hold, in (0, 1).
    #[serde(default = "default_interval_coverage")]
    pub interval_coverage: f64,
    /// An estimate more than this far under the truth (target units) counts as a costly
    /// underestimate; the share of them is one of the model's figures.
    #[serde(default)]
    pub underestimate_margin: f64,
    /// The groups the model tends to underestimate, flagged in every answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underestimation: Option<UnderestimationSpec>,
}

fn default_interval_coverage() -> f64 {
    0.9
}

impl Default for RegressionSpec {
    fn default() -> Self {
        RegressionSpec {
            interval_coverage: default_interval_coverage(),
            underestimate_margin: 0.0,
            underestimation: None,
        }
    }
}

/// `[regression.underestimation]`: a group (a categorical feature's value) is flagged when its
/// residuals on the validation slice have at least `min_rows` rows and a one-sided lower
/// confidence bound of their mean above zero. `confidence` holds for all judged groups together:
/// each group's bound is taken at `1 - (1 - confidence) / judged` (Bonferroni), so an unbiased
/// model gets no flag with probability `confidence` however many groups there are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnderestimationSpec {
    /// The categorical feature whose values are the groups.
    pub group: String,
    #[serde(default = "default_min_rows")]
    pub min_rows: usize,
    #[serde(default = "default_group_confidence")]
    pub confidence: f64,
}

fn default_min_rows() -> usize {
    30
}

fn default_group_confidence() -> f64 {
    0.95
}

impl RegressionSpec {
    fn check(&self, features: &[FeatureSpec]) -> std::result::Result<(), String> {
        let c = self.interval_coverage;
        if !(c > 0.0 && c < 1.0) {
            return Err(format!(
                "regression.interval_coverage must be above 0 and below 1, not {c}"
            ));
        }
        let m = self.underestimate_margin;
        if !(m.is_finite() && m >= 0.0) {
            return Err(format!(
                "regression.underestimate_margin must be 0 or more, not {m}"
            ));
        }
        if let Some(u) = &self.underestimation {
            match features.iter().find(|f| f.name() == u.group) {
                None => {
                    return Err(format!(
                        "regression.underestimation.group {:?} is not a feature of the spec",
                        u.group
                    ));
                }
                Some(f) if !f.is_categorical() => {
                    return Err(format!(
                        "regression.underestimation.group {:?} must be a categorical feature: its values are the groups",
                        u.group
                    ));
                }
                Some(_) => {}
            }
            if u.min_rows < 2 {
                return Err(format!(
                    "regression.underestimation.min_rows must be at least 2, not {}",
                    u.min_rows
                ));
            }
            if !(u.confidence > 0.5 && u.confidence < 1.0) {
                return Err(format!(
                    "regression.underestimation.confidence must be above 0.5 and below 1, not {}",
                    u.confidence
                ));
            }
        }
        Ok(())
    }
}

/// Where the training and holdout data are, relative to the spec file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    pub train_features: PathBuf,
    pub train_target: PathBuf,
    /// The fixed holdout: never trained on, never used to choose anything.
    pub holdout_features: PathBuf,
    pub holdout_target: PathBuf,
    #[serde(default = "default_separator")]
    pub separator: char,
}

fn default_separator() -> char {
    ','
}

/// How the training rows are split and the decision threshold chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingSpec {
    /// Share of the training rows held out (stratified) to choose the threshold.
    pub validation_fraction: f64,
    pub seed: u64,
    /// Once the threshold is chosen, fit the final model again on every training row (fit and
    /// validation slices), with the same hyperparameters and the threshold kept. The holdout
    /// still plays no part.
    pub refit_on_all_rows: bool,
    /// How a classification's probabilities are calibrated on the validation slice: `auto`
    /// (the map, if any, that lowers the cross-fitted calibration error), `none`, `platt` or
    /// `isotonic` (that map, unless it cannot be fitted). Left out of the hash at `auto`.
    #[serde(skip_serializing_if = "Calibration::is_auto")]
    pub calibration: Calibration,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        TrainingSpec {
            validation_fraction: 0.2,
            seed: 42,
            refit_on_all_rows: true,
            calibration: Calibration::Auto,
        }
    }
}

/// When the quality alerts fire (`alerting/vigie.rules.yml`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualitySpec {
    /// Per metric, in its own units: how far below the version's holdout figure the estimated
    /// or realised figure may fall (`mae`: how far above) before an alert. Defaults: ROC AUC
    /// and F1 0.05 for a classification, interval coverage 0.05 for a regression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<BTreeMap<String, f64>>,
    /// Labelled answers in the realised window before the realised alert may fire (default
    /// 200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_labels: Option<u32>,
}

impl QualitySpec {
    /// Metrics a classification's alerts may watch (estimated and realised alike).
    pub const CLASSIFICATION: [&'static str; 5] =
        ["roc_auc", "f1", "precision", "recall", "accuracy"];
    /// Metrics a regression's realised alert may watch.
    pub const REGRESSION: [&'static str; 2] = ["mae", "interval_coverage"];

    fn is_default(&self) -> bool {
        *self == QualitySpec::default()
    }

    /// The tolerances in force, by metric.
    pub fn tolerances(&self, task: Task) -> BTreeMap<String, f64> {
        match (&self.tolerance, task) {
            (Some(t), _) => t.clone(),
            (None, Task::BinaryClassification) => {
                [("roc_auc".to_string(), 0.05), ("f1".to_string(), 0.05)].into()
            }
            (None, Task::Regression) => [("interval_coverage".to_string(), 0.05)].into(),
        }
    }

    pub fn min_labels(&self) -> u32 {
        self.min_labels.unwrap_or(200)
    }

    /// Whether a higher figure of `metric` is a better one.
    pub fn higher_is_better(metric: &str) -> bool {
        metric != "mae"
    }

    fn check(&self, task: Task) -> std::result::Result<(), String> {
        let known: &[&str] = match task {
            Task::BinaryClassification => &Self::CLASSIFICATION,
            Task::Regression => &Self::REGRESSION,
        };
        for (metric, &tolerance) in self.tolerance.iter().flatten() {
            if !known.contains(&metric.as_str()) {
                return Err(format!(
                    "quality.tolerance.{metric}: not a metric of a {} (one of {})",
                    task.as_str(),
                    known.join(", ")
                ));
            }
            if !(tolerance.is_finite() && tolerance >= 0.0) {
                return Err(format!(
                    "quality.tolerance.{metric} = {tolerance}: a tolerance is a number >= 0"
                ));
            }
        }
        if self.min_labels == Some(0) {
            return Err("quality.min_labels must be at least 1".into());
        }
        Ok(())
    }
}

/// A classification's calibration, as the spec asks for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Calibration {
    #[default]
    Auto,
    None,
    Platt,
    Isotonic,
}

impl Calibration {
    fn is_auto(&self) -> bool {
        *self == Calibration::Auto
    }
}

/// The drift reference: the training rows mixed with synthetic rows drawn from a generator
/// fitted on them (`vigie-synthetic`: dependencies between features kept), binned as
/// `vigie-drift` describes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReferenceSpec {
    /// Share of synthetic rows in the reference, in [0, 0.9]: 0.5 mixes as many synthetic rows
    /// as training rows.
    pub synthetic_share: f64,
    pub seed: u64,
    /// Equal-width bins of a numerical feature.
    pub bins: usize,
    /// Share of the training values the equal-width bins span (centred).
    pub central_share: f64,
    /// Most codes kept per categorical feature; rarer ones share an "other" bucket.
    pub max_categories: usize,
}

impl Default for ReferenceSpec {
    fn default() -> Self {
        let binning = vigie_drift::ProfileParams::default();
        ReferenceSpec {
            synthetic_share: 0.5,
            seed: 1,
            bins: binning.bins,
            central_share: binning.central_share,
            max_categories: binning.max_categories,
        }
    }
}

impl ReferenceSpec {
    pub fn binning(&self) -> vigie_drift::ProfileParams {
        vigie_drift::ProfileParams {
            bins: self.bins,
            central_share: self.central_share,
            max_categories: self.max_categories,
        }
    }
}

/// What happens to an empty value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingPolicy {
    /// A missing value is an error, in training data and in requests.
    Reject,
    /// A missing value is replaced by the training slice's mode (categorical) or median
    /// (numerical), computed at training time and stored in the model artifact.
    Impute,
    /// A missing value reaches the model as missing: gradient boosting learns where it goes
    /// at each split (a column mostly empty, where "not given" means something, keeps that
    /// meaning). Only for `gradient_boosting`.
    Keep,
}

impl MissingPolicy {
    /// Whether a value may be missing.
    pub fn allows_missing(self) -> bool {
        self != MissingPolicy::Reject
    }
}

/// What happens to a numerical value outside `[min, max]` in the training or holdout data.
/// (A prediction request with such a value is always refused.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutOfRangePolicy {
    /// The data is refused, every such value reported.
    #[default]
    Reject,
    /// The value is counted, reported, and treated as missing (then imputed).
    Missing,
}

/// What happens to a code the spec does not list, in a prediction request (training data must
/// hold listed codes only: the spec is written from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnseenPolicy {
    /// The request is refused (422 naming the feature and the value).
    #[default]
    Reject,
    /// The value is treated as missing (then imputed) and the request answered; the event keeps
    /// the value as sent, and the drift service counts it by value.
    Missing,
}

impl UnseenPolicy {
    fn is_reject(&self) -> bool {
        *self == UnseenPolicy::Reject
    }
}

/// Allowed codes of a categorical feature: a table of code -> meaning, or a plain list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Codes {
    Named(BTreeMap<String, String>),
    Listed(Vec<CodeToken>),
}

/// One code in a list: written as a number or a string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CodeToken {
    Integer(i64),
    Text(String),
}

/// One feature, with its type and domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeatureSpec {
    /// A code from a fixed set (`codes`), or any integer code in `code_range` (for open
    /// vocabularies such as commune numbers).
    Categorical {
        name: String,
        #[serde(default)]
        description: String,
        #[serde(default)]
        codes: Option<Codes>,
        #[serde(default)]
        code_range: Option<[i64; 2]>,
        missing: MissingPolicy,
        /// A code outside `codes` in a request: refused, or treated as missing.
        #[serde(default, skip_serializing_if = "UnseenPolicy::is_reject")]
        unseen: UnseenPolicy,
        /// Other names of the column, matched as `column_names` says.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        aliases: Vec<String>,
    },
    /// A number in `[min, max]`; `integer` requires whole numbers.
    Numerical {
        name: String,
        #[serde(default)]
        description: String,
        min: f64,
        max: f64,
        #[serde(default)]
        integer: bool,
        #[serde(default)]
        unit: String,
        #[serde(default)]
        out_of_range: OutOfRangePolicy,
        missing: MissingPolicy,
        /// Numbers that mean "not known" in the data and in requests (a portal that writes 0
        /// for a position it could not find): read as missing. Needs `missing = "impute"`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        missing_values: Vec<f64>,
        /// Other names of the column, matched as `column_names` says.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        aliases: Vec<String>,
    },
}

impl FeatureSpec {
    pub fn name(&self) -> &str {
        match self {
            FeatureSpec::Categorical { name, .. } | FeatureSpec::Numerical { name, .. } => name,
        }
    }

    pub fn missing(&self) -> MissingPolicy {
        match self {
            FeatureSpec::Categorical { missing, .. } | FeatureSpec::Numerical { missing, .. } => {
                *missing
            }
        }
    }

    pub fn is_categorical(&self) -> bool {
        matches!(self, FeatureSpec::Categorical { .. })
    }

    /// Other names of the feature's column.
    pub fn aliases(&self) -> &[String] {
        match self {
            FeatureSpec::Categorical { aliases, .. } | FeatureSpec::Numerical { aliases, .. } => {
                aliases
            }
        }
    }

    /// The name, then the aliases.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name()).chain(self.aliases().iter().map(String::as_str))
    }
}

fn spec_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Spec {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl ModelSpec {
    /// Reads, checks and resolves a spec file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut spec = Self::from_toml(&text).map_err(|e| match e {
            Error::Spec { message, .. } => spec_error(path, message),
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut spec.data.train_features,
            &mut spec.data.train_target,
            &mut spec.data.holdout_features,
            &mut spec.data.holdout_target,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(spec)
    }

    /// Parses and checks a spec from TOML text; data paths stay as written.
    pub fn from_toml(text: &str) -> Result<Self> {
        let spec: ModelSpec =
            toml::from_str(text).map_err(|e| spec_error(Path::new("<spec>"), e.to_string()))?;
        spec.check()
            .map_err(|message| spec_error(Path::new("<spec>"), message))?;
        Ok(spec)
    }

    /// Everything that can be wrong in a spec without looking at the data.
    fn check(&self) -> std::result::Result<(), String> {
        let valid_name = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !self.name.starts_with('-');
        if !valid_name {
            return Err(format!(
                "name {:?}: use 1 to 64 lowercase letters, digits and '-', not starting with '-'",
                self.name
            ));
        }
        if self.features.is_empty() {
            return Err("no [[feature]] declared".into());
        }
        let mut seen = BTreeSet::new();
        for f in &self.features {
            if !seen.insert(f.name()) {
                return Err(format!("feature {:?} is declared twice", f.name()));
            }
            check_feature(f).map_err(|m| format!("feature {:?}: {m}", f.name()))?;
        }
        // Every name and alias, as matching compares them, names one column only.
        let mut keys: HashMap<String, &str> = HashMap::new();
        for f in &self.features {
            for name in f.names() {
                if name.trim().is_empty() {
                    return Err(format!("feature {:?}: an alias is empty", f.name()));
                }
                if let Some(other) = keys.insert(self.column_names.key(name), f.name())
                    && other != f.name()
                {
                    return Err(format!(
                        "feature {:?}: the name {name:?} also names feature {other:?}{}",
                        f.name(),
                        if self.column_names.is_exact() {
                            ""
                        } else {
                            " (names are matched ignoring case)"
                        }
                    ));
                }
            }
        }
        if let Some(feature) = keys.get(&self.column_names.key(&self.target.column)) {
            return Err(format!(
                "the target column {:?} is also feature {feature:?}",
                self.target.column
            ));
        }
        self.target.check(self.task)?;
        match (self.task, &self.regression) {
            (Task::Regression, Some(r)) => r.check(&self.features)?,
            (Task::Regression, None) => {}
            (Task::BinaryClassification, Some(_)) => {
                return Err(
                    "[regression] belongs to a regression, not to a binary_classification".into(),
                );
            }
            (Task::BinaryClassification, None) => {}
        }
        if self.task == Task::Regression {
            let fits = self
                .algorithm
                .clone()
                .check()
                .is_ok_and(|p| p.fits_regression());
            if !fits {
                return Err(format!(
                    "algorithm {:?} cannot fit a regression: use gradient_boosting",
                    self.algorithm.kind()
                ));
            }
        }
        let v = self.training.validation_fraction;
        if !(v > 0.0 && v < 0.9) {
            return Err(format!(
                "training.validation_fraction must be in (0, 0.9), got {v}"
            ));
        }
        let routes_missing = matches!(self.algorithm, AlgorithmParams::GradientBoosting(_));
        if let Some(f) = self
            .features
            .iter()
            .find(|f| f.missing() == MissingPolicy::Keep)
            .filter(|_| !routes_missing)
        {
            return Err(format!(
                "feature {:?}: missing = \"keep\" needs algorithm gradient_boosting (the {} cannot route a missing value; use \"impute\")",
                f.name(),
                self.algorithm.kind()
            ));
        }
        self.check_reference()?;
        self.retraining.check(self.task)?;
        self.quality.check(self.task)?;
        let features: Vec<(&str, bool)> = self
            .features
            .iter()
            .map(|f| (f.name(), !f.is_categorical()))
            .collect();
        self.drift
            .check_features(&features)
            .map_err(|e| e.to_string())?;
        self.algorithm
            .clone()
            .check()
            .map_err(|e| format!("algorithm ({}): {e}", self.algorithm.kind()))?;
        Ok(())
    }

    fn check_reference(&self) -> std::result::Result<(), String> {
        let r = &self.reference;
        if !(0.0..=0.9).contains(&r.synthetic_share) {
            return Err(format!(
                "reference.synthetic_share must be in [0, 0.9], got {}",
                r.synthetic_share
            ));
        }
        if !(r.central_share > 0.0 && r.central_share <= 1.0) {
            return Err(format!(
                "reference.central_share must be in (0, 1], got {}",
                r.central_share
            ));
        }
        for (name, value) in [("bins", r.bins), ("max_categories", r.max_categories)] {
            if !(1..=10_000).contains(&value) {
                return Err(format!(
                    "reference.{name} must be in 1..=10000, got {value}"
                ));
            }
        }
        Ok(())
    }

    /// Checks a spec that was not read through [`ModelSpec::from_toml`] (one embedded in an
    /// artifact, say).
    pub fn validate(&self) -> Result<()> {
        self.check()
            .map_err(|message| spec_error(Path::new("<embedded spec>"), message))
    }

    /// A stable hash of what the spec means (not of its formatting): the sha256 of its JSON form,
    /// data paths as written relative to nothing but their file names.
    pub fn hash(&self) -> String {
        let mut canonical = self.clone();
        for p in [
            &mut canonical.data.train_features,
            &mut canonical.data.train_target,
            &mut canonical.data.holdout_features,
            &mut canonical.data.holdout_target,
        ] {
            if let Some(file) = p.file_name() {
                *p = PathBuf::from(file);
            }
        }
        let json = serde_json::to_vec(&canonical).expect("a spec always serialises");
        hex::encode(Sha256::digest(json))
    }

    /// Every hash this spec was given by a version of Vigie: [`ModelSpec::hash`], and the hash
    /// of the "noise fields" form of its drift rules (`vigie_drift::with_noise_fields_form`),
    /// which artifacts trained between the noise thresholds and hysteresis record.
    pub fn hashes(&self) -> [String; 2] {
        [
            self.hash(),
            vigie_drift::with_noise_fields_form(|| self.hash()),
        ]
    }

    /// The `[regression]` section, or its defaults (for a regression without one).
    pub fn regression(&self) -> RegressionSpec {
        self.regression.clone().unwrap_or_default()
    }

    pub fn feature_names(&self) -> Vec<&str> {
        self.features.iter().map(FeatureSpec::name).collect()
    }

    /// Where the target's column is in a header, matched as `column_names` says.
    pub fn target_position(&self, header: &[String]) -> Option<usize> {
        self.column_names.find(header, &self.target.column)
    }
}

fn check_feature(f: &FeatureSpec) -> std::result::Result<(), String> {
    match f {
        FeatureSpec::Categorical {
            codes,
            code_range,
            unseen,
            missing,
            ..
        } => {
            if *unseen == UnseenPolicy::Missing {
                if codes.is_none() {
                    return Err(
                        "unseen = \"missing\" needs `codes`: a code_range has no unseen code"
                            .into(),
                    );
                }
                if *missing == MissingPolicy::Reject {
                    return Err(
                        "unseen = \"missing\" needs missing = \"impute\" or \"keep\": an unseen code is treated as missing"
                            .into(),
                    );
                }
            }
            match (codes, code_range) {
                (None, None) => return Err("give `codes` or `code_range`".into()),
                (Some(_), Some(_)) => return Err("give `codes` or `code_range`, not both".into()),
                (None, Some([lo, hi])) if lo > hi => {
                    return Err(format!("code_range [{lo}, {hi}] is empty"));
                }
                (Some(c), None) => {
                    let tokens = code_tokens(c);
                    if tokens.is_empty() {
                        return Err("`codes` is empty".into());
                    }
                    let mut distinct = BTreeSet::new();
                    for t in &tokens {
                        if t.is_empty() {
                            return Err("a code is empty (empty means missing)".into());
                        }
                        if !distinct.insert(normalise_token(t)) {
                            return Err(format!("code {t:?} is listed twice"));
                        }
                    }
                }
                _ => {}
            }
            Ok(())
        }
        FeatureSpec::Numerical {
            min,
            max,
            out_of_range,
            missing,
            missing_values,
            ..
        } => {
            if !missing_values.is_empty() && *missing == MissingPolicy::Reject {
                return Err(
                    "missing_values needs missing = \"impute\" or \"keep\": those values are read as missing"
                        .into(),
                );
            }
            if let Some(v) = missing_values.iter().find(|v| !v.is_finite()) {
                return Err(format!("missing_values: {v} is not a finite number"));
            }
            if *out_of_range == OutOfRangePolicy::Missing && *missing == MissingPolicy::Reject {
                return Err(
                    "out_of_range = \"missing\" needs missing = \"impute\": a value treated as missing must be imputed"
                        .into(),
                );
            }
            if !(min.is_finite() && max.is_finite() && min <= max) {
                return Err(format!(
                    "range [{min}, {max}] is not a finite, non-empty range"
                ));
            }
            Ok(())
        }
    }
}

/// The codes of a categorical feature as strings, in declaration order.
pub fn code_tokens(codes: &Codes) -> Vec<String> {
    match codes {
        Codes::Named(map) => map.keys().cloned().collect(),
        Codes::Listed(list) => list
            .iter()
            .map(|c| match c {
                CodeToken::Integer(i) => i.to_string(),
                CodeToken::Text(s) => s.clone(),
            })
            .collect(),
    }
}

/// Spells numeric codes one way: "2.0", "02" and "2" are the same code "2"; other text is
/// trimmed and kept as it is.
pub(crate) fn normalise_token(token: &str) -> String {
    let t = token.trim();
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        _ => t.to_string(),
    }
}

/// The meaning of each code of a categorical feature, for documentation and reports.
pub fn code_meanings(codes: &Codes) -> HashMap<String, String> {
    match codes {
        Codes::Named(map) => map
            .iter()
            .map(|(k, v)| (normalise_token(k), v.clone()))
            .collect(),
        Codes::Listed(_) => HashMap::new(),
    }
}

#[cfg(test)]
mod tests;
