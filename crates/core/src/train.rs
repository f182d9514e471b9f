//! The training pipeline: load and check the data, split off a validation slice, impute, fit,
//! choose the decision threshold on the validation slice, evaluate on the fixed holdout.

use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use vigie_drift::{NullModel, Profile};
use vigie_model::bootstrap::Evaluation;
use vigie_model::calibration::{
    self, CALIBRATION_BINS as BINS, Calibrator, CrossFitted, Method, ReliabilityBin,
};
use vigie_model::metrics::{BinaryMetrics, best_f1_threshold, roc_auc};
use vigie_model::regression::{FlagCheck, GroupRule, Interval, RegressionMetrics, judge_groups};
use vigie_model::{AlgorithmParams, Matrix, TreeEnsemble};
use vigie_synthetic::{Generator, GeneratorParams};

use crate::Result;
use crate::dataset::{self, LabelledData, LoadReport};
use crate::schema::{Imputation, Schema};
use crate::spec::{Calibration, ModelSpec, Task};

/// A step of the pipeline, reported to a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    LoadTraining,
    LoadHoldout,
    Fit,
    ChooseThreshold,
    /// Regression: the interval and the underestimated groups, on the validation slice.
    Calibrate,
    Refit,
    Evaluate,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::LoadTraining,
        Stage::LoadHoldout,
        Stage::Fit,
        Stage::ChooseThreshold,
        Stage::Calibrate,
        Stage::Refit,
        Stage::Evaluate,
    ];

    pub fn describe(&self) -> &'static str {
        match self {
            Stage::LoadTraining => "reading and checking the training data",
            Stage::LoadHoldout => "reading and checking the holdout data",
            Stage::Fit => "fitting the model",
            Stage::ChooseThreshold => "choosing the threshold on the validation slice",
            Stage::Calibrate => {
                "calibrating the interval and judging the groups on the validation slice"
            }
            Stage::Refit => "refitting on every training row",
            Stage::Evaluate => "evaluating on the holdout",
        }
    }
}

/// The training data split and imputed, and the holdout: loaded once, fitted many times.
#[derive(Debug, Clone)]
pub struct PreparedData {
    pub schema: Schema,
    pub fit: LabelledData,
    pub validation: LabelledData,
    pub holdout: LabelledData,
    /// The holdout's features before imputation (`NaN` = missing): how requests reach a model,
    /// so any version, with its own imputation, can be evaluated on it.
    pub holdout_raw: Matrix,
    pub imputation: Imputation,
    /// The drift reference: every training row (before imputation) plus synthetic rows.
    pub reference: Profile,
    /// What loading the training file found (the holdout's is `holdout.report`).
    pub train_report: LoadReport,
}

/// Sizes, timings and data findings of one training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub fit_rows: usize,
    pub validation_rows: usize,
    pub holdout_rows: usize,
    /// Whether the final model was refitted on the fit and validation rows together.
    pub refit_on_all_rows: bool,
    /// Time spent fitting (both fits when the model was refitted).
    pub fit_seconds: f64,
    pub train_report: LoadReport,
    pub holdout_report: LoadReport,
}

/// A fitted model with its threshold (classification) or interval and flags (regression) and
/// its figures, not yet versioned.
#[derive(Debug, Clone)]
pub struct TrainedModel {
    pub spec: ModelSpec,
    pub algorithm: AlgorithmParams,
    pub imputation: Imputation,
    pub reference: Profile,
    pub ensemble: TreeEnsemble,
    /// The classification's decision threshold; 0 for a regression.
    pub threshold: f64,
    pub validation: Evaluation,
    pub holdout: Evaluation,
    /// What a regression answers beside its estimate; `None` for a classification.
    pub regression: Option<RegressionModel>,
    /// How a classification's probabilities are calibrated; `None` for a regression.
    pub calibration: Option<CalibrationReport>,
    /// The reference of the model's answers (probabilities or estimates): its answers on the
    /// validation slice, rows it was not fitted on, as production's are. The drift service
    /// compares the answers it sees with it (prediction drift).
    pub prediction_reference: Option<Profile>,
    pub summary: TrainingSummary,
}

/// The name of the one feature of a prediction reference.
pub const PREDICTION_FEATURE: &str = "prediction";

/// The profile of a model's answers on the validation slice, binned as the spec bins features.
fn prediction_profile(spec: &ModelSpec, answers: &[f64]) -> Result<Profile> {
    let x = Matrix::from_row_major(answers.to_vec(), answers.len(), 1)?;
    let none = Matrix::from_row_major(Vec::new(), 0, 1)?;
    let mut profile = Profile::build(
        &[PREDICTION_FEATURE],
        &[vigie_drift::Kind::Numerical],
        &x,
        &none,
        &spec.reference.binning(),
    );
    profile.null = Some(NullModel::simulate(&profile, &spec.drift, &spec.drift.null));
    Ok(profile)
}

/// What a regression model answers beside its estimate, chosen on the validation slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegressionModel {
    pub interval: Interval,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underestimation: Option<Underestimation>,
}

/// The groups of one feature the model underestimates: judged on the validation slice's
/// residuals, checked on the holdout's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Underestimation {
    /// The categorical feature whose values are the groups.
    pub feature: String,
    pub min_rows: u64,
    /// The family-wise confidence the spec asked for.
    pub confidence: f64,
    /// Groups with at least `min_rows` validation rows.
    pub judged: u64,
    /// The confidence of each group's bound: `1 - (1 - confidence) / judged` (Bonferroni).
    pub per_group_confidence: f64,
    /// Every group seen on the validation slice, flagged or not, by code.
    pub groups: Vec<GroupFinding>,
    /// Flagged against unflagged rows of the holdout (95% bootstrap intervals): whether the
    /// flag means something on rows it was not chosen on.
    pub holdout: FlagCheck,
}

impl Underestimation {
    /// The finding for the group a row belongs to (its value of the group feature).
    pub fn group(&self, value: f64) -> Option<&GroupFinding> {
        self.position(value).map(|i| &self.groups[i])
    }

    /// Where the group of a row's value is in `groups`.
    pub fn position(&self, value: f64) -> Option<usize> {
        find_group(&self.groups, value)
    }

    pub fn flagged(&self) -> impl Iterator<Item = &GroupFinding> {
        self.groups.iter().filter(|g| g.flagged)
    }
}

/// The group of `value` among groups ordered by value.
fn find_group(groups: &[GroupFinding], value: f64) -> Option<usize> {
    groups.binary_search_by(|g| g.value.total_cmp(&value)).ok()
}

/// One group on the validation slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupFinding {
    /// The code as the spec spells it.
    pub code: String,
    /// The number the model sees for it.
    pub value: f64,
    pub rows: u64,
    /// Mean of `truth - estimate` on the validation slice.
    pub mean_residual: f64,
    /// Its one-sided lower confidence bound; `None` when the group has fewer than `min_rows`
    /// validation rows (not judged).
    pub lower_bound: Option<f64>,
    pub flagged: bool,
}

impl PreparedData {
    /// Loads the spec's training and holdout files, checks them, splits a stratified
    /// validation slice off the training rows and fits the imputation on the rest.
    pub fn load(spec: &ModelSpec, progress: &mut dyn FnMut(Stage)) -> Result<Self> {
        let schema = Schema::new(spec);
        progress(Stage::LoadTraining);
        let train = dataset::load(
            spec,
            &schema,
            &spec.data.train_features,
            &spec.data.train_target,
        );
        progress(Stage::LoadHoldout);
        let holdout = dataset::load(
            spec,
            &schema,
            &spec.data.holdout_features,
            &spec.data.holdout_target,
        );
        // Report the problems of both files at once.
        let (train, mut holdout) = match (train, holdout) {
            (Ok(t), Ok(h)) => (t, h),
            (
                Err(crate::Error::Data { mut problems }),
                Err(crate::Error::Data { problems: more }),
            ) => {
                problems.extend(more);
                return Err(crate::Error::Data { problems });
            }
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };

        let reference = build_reference(spec, &schema, &train.x, &train.y)?;
        let (fit_rows, validation_rows) = match spec.task {
            Task::BinaryClassification => stratified_split(
                &train.y,
                spec.training.validation_fraction,
                spec.training.seed,
            ),
            Task::Regression => random_split(
                train.y.len(),
                spec.training.validation_fraction,
                spec.training.seed,
            ),
        };
        let mut fit = subset(&train, &fit_rows);
        let mut validation = subset(&train, &validation_rows);
        let imputation = Imputation::fit(&schema, &fit.x);
        let holdout_raw = holdout.x.clone();
        for data in [&mut fit, &mut validation, &mut holdout] {
            impute(&imputation, &mut data.x);
        }
        Ok(PreparedData {
            schema,
            fit,
            validation,
            train_report: train.report,
            holdout,
            holdout_raw,
            imputation,
            reference,
        })
    }

    /// Appends rows to the fit slice (model order, `NaN` = missing, imputed here with the fit
    /// slice's fills). The validation slice, the imputation, the holdout and the drift reference
    /// stay as they are.
    pub fn add_fit_rows(&mut self, x: &Matrix, y: &[f64]) -> Result<()> {
        if x.rows() == 0 {
            return Ok(());
        }
        let mut extra = x.clone();
        impute(&self.imputation, &mut extra);
        let rows = self.fit.x.rows() + extra.rows();
        let mut all = Vec::with_capacity(rows * self.fit.x.cols());
        all.extend_from_slice(self.fit.x.as_slice());
        all.extend_from_slice(extra.as_slice());
        self.fit.x = Matrix::from_row_major(all, rows, self.fit.x.cols())?;
        self.fit.y.extend_from_slice(y);
        self.fit.report.rows = rows;
        Ok(())
    }

    /// Appends `share` times as many synthetic rows as the fit slice holds, drawn with `seed`
    /// by a generator fitted on the fit slice and its targets. Returns how many.
    pub fn add_synthetic_fit_rows(&mut self, share: f64, seed: u64) -> Result<usize> {
        let n = (self.fit.x.rows() as f64 * share).round() as usize;
        if n == 0 {
            return Ok(0);
        }
        if self.fit.y.iter().any(|&t| t != 0.0 && t != 1.0) {
            return Err(crate::Error::Unsupported(
                "synthetic training rows need class targets: a regression draws none".into(),
            ));
        }
        let generator = Generator::fit(
            &self.fit.x,
            &self.schema.synthetic_kinds(),
            Some(&self.fit.y),
            &GeneratorParams::default(),
        )?;
        let sample = generator.sample(n, seed);
        let y = sample.y.unwrap_or_default();
        self.add_fit_rows(&sample.x, &y)?;
        Ok(n)
    }
}

/// The reference profile of the training rows mixed with synthetic rows, as the spec says:
/// the synthetic rows come from a generator fitted on the training rows and their targets.
fn build_reference(spec: &ModelSpec, schema: &Schema, x: &Matrix, y: &[f64]) -> Result<Profile> {
    let share = spec.reference.synthetic_share;
    let n_synthetic = (x.rows() as f64 * share / (1.0 - share)).round() as usize;
    let synthetic = if n_synthetic == 0 || x.rows() == 0 {
        Matrix::from_row_major(Vec::new(), 0, x.cols()).expect("an empty matrix")
    } else {
        // A class target conditions the generator; a regression's number is not a class.
        let target = (spec.task == Task::BinaryClassification).then_some(y);
        let generator = Generator::fit(
            x,
            &schema.synthetic_kinds(),
            target,
            &GeneratorParams::default(),
        )?;
        generator.sample(n_synthetic, spec.reference.seed).x
    };
    let (names, kinds) = (schema.names(), schema.drift_kinds());
    let mut profile = Profile::build(&names, &kinds, x, &synthetic, &spec.reference.binning());
    profile.null = Some(NullModel::simulate(&profile, &spec.drift, &spec.drift.null));
    Ok(profile)
}

fn subset(data: &LabelledData, rows: &[usize]) -> LabelledData {
    LabelledData {
        x: data.x.select_rows(rows),
        y: rows.iter().map(|&i| data.y[i]).collect(),
        report: LoadReport {
            rows: rows.len(),
            ..data.report.clone()
        },
    }
}

fn impute(imputation: &Imputation, x: &mut Matrix) {
    for row in x.iter_rows_mut() {
        imputation.apply(row);
    }
}

/// Splits row indices into (fit, validation), drawing `fraction` of each class for validation.
pub fn stratified_split(y: &[f64], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut fit, mut validation) = (Vec::new(), Vec::new());
    for class in [0.0, 1.0] {
        let mut rows: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        rows.shuffle(&mut rng);
        let n_validation = (rows.len() as f64 * fraction).round() as usize;
        validation.extend_from_slice(&rows[..n_validation]);
        fit.extend_from_slice(&rows[n_validation..]);
    }
    fit.sort_unstable();
    validation.sort_unstable();
    (fit, validation)
}

/// Splits row indices into (fit, validation) at random, `fraction` of them for validation.
pub fn random_split(rows: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..rows).collect();
    order.shuffle(&mut rng);
    let n_validation = (rows as f64 * fraction).round() as usize;
    let mut validation = order[..n_validation].to_vec();
    let mut fit = order[n_validation..].to_vec();
    fit.sort_unstable();
    validation.sort_unstable();
    (fit, validation)
}

/// Fits `algorithm` on prepared data, chooses the threshold (classification) or calibrates the
/// interval and judges the groups (regression) on the validation slice, and evaluates on the
/// holdout.
pub fn fit_and_evaluate(
    spec: &ModelSpec,
    data: &PreparedData,
    algorithm: &AlgorithmParams,
    progress: &mut dyn FnMut(Stage),
) -> Result<TrainedModel> {
    match spec.task {
        Task::BinaryClassification => fit_classifier(spec, data, algorithm, progress),
        Task::Regression => fit_regression(spec, data, algorithm, progress),
    }
}

/// The final model: `fit` again on every training row (fit and validation slices) when the spec
/// asks, what was chosen on the validation slice kept; otherwise `ensemble` as it is.
fn refit_if_asked(
    spec: &ModelSpec,
    data: &PreparedData,
    progress: &mut dyn FnMut(Stage),
    ensemble: TreeEnsemble,
    fit: impl Fn(&Matrix, &[f64]) -> vigie_model::Result<TreeEnsemble>,
) -> Result<TreeEnsemble> {
    if !spec.training.refit_on_all_rows {
        return Ok(ensemble);
    }
    progress(Stage::Refit);
    let (x, y) = all_training_rows(data)?;
    Ok(fit(&x, &y)?)
}

/// The fit and validation slices together: what the final model is refitted on.
fn all_training_rows(data: &PreparedData) -> Result<(Matrix, Vec<f64>)> {
    let rows = data.fit.x.rows() + data.validation.x.rows();
    let mut x = Vec::with_capacity(rows * data.fit.x.cols());
    x.extend_from_slice(data.fit.x.as_slice());
    x.extend_from_slice(data.validation.x.as_slice());
    let x = Matrix::from_row_major(x, rows, data.fit.x.cols())?;
    let y: Vec<f64> = data
        .fit
        .y
        .iter()
        .chain(&data.validation.y)
        .copied()
        .collect();
    Ok((x, y))
}

fn summary(data: &PreparedData, refit: bool, fit_seconds: f64) -> TrainingSummary {
    TrainingSummary {
        fit_rows: data.fit.x.rows(),
        validation_rows: data.validation.x.rows(),
        holdout_rows: data.holdout.x.rows(),
        refit_on_all_rows: refit,
        fit_seconds,
        train_report: data.train_report.clone(),
        holdout_report: data.holdout.report.clone(),
    }
}

/// Resamples of the bootstrap intervals a training run reports (groups, flag check).
const BOOTSTRAP_RESAMPLES: usize = 2_000;

fn fit_regression(
    spec: &ModelSpec,
    data: &PreparedData,
    algorithm: &AlgorithmParams,
    progress: &mut dyn FnMut(Stage),
) -> Result<TrainedModel> {
    let params = algorithm.clone().check()?;
    let settings = spec.regression();
    let (min, max) = spec.target.range();
    let estimate = |ensemble: &TreeEnsemble, x: &Matrix| -> Vec<f64> {
        x.iter_rows()
            .map(|row| ensemble.predict_value(row).clamp(min, max))
            .collect()
    };
    let residuals =
        |y: &[f64], p: &[f64]| -> Vec<f64> { y.iter().zip(p).map(|(t, e)| t - e).collect() };

    progress(Stage::Fit);
    let start = Instant::now();
    let mut ensemble = params.fit_regression(&data.fit.x, &data.fit.y)?;

    progress(Stage::Calibrate);
    let p_validation = estimate(&ensemble, &data.validation.x);
    let r_validation = residuals(&data.validation.y, &p_validation);
    let interval = Interval::calibrate(&r_validation, settings.interval_coverage, min, max);
    let margin = settings.underestimate_margin;
    let validation = RegressionMetrics::compute(&data.validation.y, &p_validation, margin)
        .with_interval(&data.validation.y, &p_validation, &interval);
    let judged = settings.underestimation.as_ref().map(|u| {
        let column = data
            .schema
            .position(&u.group)
            .expect("a checked spec's group is a feature");
        let groups: Vec<f64> = data
            .validation
            .x
            .iter_rows()
            .map(|row| row[column])
            .collect();
        let rule = GroupRule {
            min_rows: u.min_rows,
            confidence: u.confidence,
            resamples: BOOTSTRAP_RESAMPLES,
            seed: spec.training.seed,
        };
        (u, column, judge_groups(&groups, &r_validation, &rule))
    });

    let prediction_reference = Some(prediction_profile(spec, &p_validation)?);
    let refit = spec.training.refit_on_all_rows;
    ensemble = refit_if_asked(spec, data, progress, ensemble, |x, y| {
        params.fit_regression(x, y)
    })?;
    let fit_seconds = start.elapsed().as_secs_f64();

    progress(Stage::Evaluate);
    let p_holdout = estimate(&ensemble, &data.holdout.x);
    let r_holdout = residuals(&data.holdout.y, &p_holdout);
    let holdout = RegressionMetrics::compute(&data.holdout.y, &p_holdout, margin).with_interval(
        &data.holdout.y,
        &p_holdout,
        &interval,
    );
    let underestimation = judged.map(|(u, column, judged)| {
        let feature = &data.schema.features()[column];
        let groups: Vec<GroupFinding> = judged
            .groups
            .into_iter()
            .map(|g| GroupFinding {
                code: feature
                    .code_of(g.value)
                    .unwrap_or_else(|| g.value.to_string()),
                value: g.value,
                rows: g.rows,
                mean_residual: g.mean_residual,
                lower_bound: g.lower_bound,
                flagged: g.flagged,
            })
            .collect();
        let flags: Vec<bool> = data
            .holdout
            .x
            .iter_rows()
            .map(|row| find_group(&groups, row[column]).is_some_and(|i| groups[i].flagged))
            .collect();
        Underestimation {
            feature: u.group.clone(),
            min_rows: u.min_rows as u64,
            confidence: u.confidence,
            judged: judged.judged as u64,
            per_group_confidence: judged.per_group_confidence,
            groups,
            holdout: FlagCheck::compute(
                &r_holdout,
                &flags,
                0.95,
                BOOTSTRAP_RESAMPLES,
                spec.training.seed,
            ),
        }
    });

    Ok(TrainedModel {
        spec: spec.clone(),
        algorithm: algorithm.clone(),
        imputation: data.imputation.clone(),
        reference: data.reference.clone(),
        ensemble,
        threshold: 0.0,
        validation: Evaluation::Regression(validation),
        holdout: Evaluation::Regression(holdout),
        regression: Some(RegressionModel {
            interval,
            underestimation,
        }),
        calibration: None,
        prediction_reference,
        summary: summary(data, refit, fit_seconds),
    })
}

fn fit_classifier(
    spec: &ModelSpec,
    data: &PreparedData,
    algorithm: &AlgorithmParams,
    progress: &mut dyn FnMut(Stage),
) -> Result<TrainedModel> {
    let params = algorithm.clone().check()?;
    progress(Stage::Fit);
    let start = Instant::now();
    let mut ensemble = params.fit(&data.fit.x, &data.fit.y)?;

    progress(Stage::ChooseThreshold);
    let raw_validation = ensemble.predict_proba_batch(&data.validation.x);
    let choice = calibration::choose(
        &data.validation.y,
        &raw_validation,
        &Method::ALL,
        spec.training.seed,
    );
    let calibrator = match spec.training.calibration {
        Calibration::Auto => choice.calibrator.clone(),
        Calibration::None => None,
        Calibration::Platt => Method::Platt.fit(&data.validation.y, &raw_validation),
        Calibration::Isotonic => Method::Isotonic.fit(&data.validation.y, &raw_validation),
    };
    let calibrate = |p: Vec<f64>| match &calibrator {
        Some(map) => map.apply_all(&p),
        None => p,
    };
    let p_validation = calibrate(raw_validation.clone());
    let threshold = best_f1_threshold(&data.validation.y, &p_validation);
    let validation = BinaryMetrics::compute(&data.validation.y, &p_validation, threshold);

    let prediction_reference = Some(prediction_profile(spec, &p_validation)?);
    let refit = spec.training.refit_on_all_rows;
    ensemble = refit_if_asked(spec, data, progress, ensemble, |x, y| params.fit(x, y))?;
    let fit_seconds = start.elapsed().as_secs_f64();

    progress(Stage::Evaluate);
    let raw_holdout = ensemble.predict_proba_batch(&data.holdout.x);
    let p_holdout = calibrate(raw_holdout.clone());
    let holdout = BinaryMetrics::compute(&data.holdout.y, &p_holdout, threshold);
    let ece = |y: &[f64], p: &[f64]| calibration::expected_calibration_error(y, p, BINS);
    let calibration = CalibrationReport {
        figures: CalibrationFigures {
            method: calibrator.as_ref().map_or(Method::None, Calibrator::method),
            validation_ece_raw: ece(&data.validation.y, &raw_validation),
            holdout_ece_raw: ece(&data.holdout.y, &raw_holdout),
            holdout_roc_auc_raw: roc_auc(&data.holdout.y, &raw_holdout),
            cross_fitted: choice.scores,
        },
        asked: spec.training.calibration,
        validation_ece: ece(&data.validation.y, &p_validation),
        validation_reliability: calibration::reliability(&data.validation.y, &p_validation, BINS),
        holdout_reliability: calibration::reliability(&data.holdout.y, &p_holdout, BINS),
        calibrator,
    };

    Ok(TrainedModel {
        spec: spec.clone(),
        algorithm: algorithm.clone(),
        imputation: data.imputation.clone(),
        reference: data.reference.clone(),
        ensemble,
        threshold,
        validation: Evaluation::Binary(validation),
        holdout: Evaluation::Binary(holdout),
        regression: None,
        calibration: Some(calibration),
        prediction_reference,
        summary: summary(data, refit, fit_seconds),
    })
}

/// How a classification's probabilities were calibrated, and what it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationReport {
    /// The map applied to every probability the model answers (`None`: served raw).
    pub calibrator: Option<Calibrator>,
    /// The method, why, and what the raw probabilities scored: also the version's figures.
    #[serde(flatten)]
    pub figures: CalibrationFigures,
    /// What the spec asked for.
    pub asked: Calibration,
    /// Expected calibration error of the served probabilities on the validation slice.
    pub validation_ece: f64,
    /// Reliability curves of the served probabilities.
    pub validation_reliability: Vec<ReliabilityBin>,
    pub holdout_reliability: Vec<ReliabilityBin>,
}

/// What calibration changed, as a version's figures (`artifact::Metrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationFigures {
    pub method: Method,
    /// Expected calibration error of the raw probabilities (the served ones' is in the
    /// version's figures' `ece`).
    pub validation_ece_raw: f64,
    pub holdout_ece_raw: f64,
    /// ROC AUC of the raw probabilities on the holdout: the served ones' is the same (a
    /// strictly increasing map keeps it).
    pub holdout_roc_auc_raw: f64,
    /// Each method's cross-fitted log loss and ECE on the validation slice: why it was chosen.
    #[serde(default)]
    pub cross_fitted: Vec<CrossFitted>,
}

impl CalibrationReport {
    /// The probability served for a raw one.
    pub fn apply(&self, p: f64) -> f64 {
        self.calibrator.as_ref().map_or(p, |map| map.apply(p))
    }
}

/// Train-on-synthetic: fits the spec's algorithm on rows drawn by a generator fitted on the fit
/// slice (as many synthetic rows as the fit and validation slices hold, the threshold chosen on
/// the synthetic validation rows) and evaluates it on the real holdout, to set beside the model
/// trained on the real rows.
pub fn train_on_synthetic(
    spec: &ModelSpec,
    data: &PreparedData,
    seed: u64,
    progress: &mut dyn FnMut(Stage),
) -> Result<TrainedModel> {
    if spec.task != Task::BinaryClassification {
        return Err(crate::Error::Unsupported(
            "training on synthetic rows needs class targets: a regression's generator draws none"
                .into(),
        ));
    }
    let generator = Generator::fit(
        &data.fit.x,
        &data.schema.synthetic_kinds(),
        Some(&data.fit.y),
        &GeneratorParams::default(),
    )?;
    let synthetic = |rows: usize, seed: u64| -> LabelledData {
        let sample = generator.sample(rows, seed);
        LabelledData {
            y: sample.y.unwrap_or_default(),
            x: sample.x,
            report: LoadReport {
                rows,
                ..data.fit.report.clone()
            },
        }
    };
    let mut on_synthetic = data.clone();
    on_synthetic.fit = synthetic(data.fit.x.rows(), seed);
    on_synthetic.validation = synthetic(data.validation.x.rows(), seed.wrapping_add(1));
    fit_and_evaluate(spec, &on_synthetic, &spec.algorithm, progress)
}

/// Loads the data and trains the spec's own algorithm.
pub fn train(spec: &ModelSpec, progress: &mut dyn FnMut(Stage)) -> Result<TrainedModel> {
    let data = PreparedData::load(spec, progress)?;
    fit_and_evaluate(spec, &data, &spec.algorithm, progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_split_keeps_class_shares_and_every_row_once() {
        let y: Vec<f64> = (0..1000).map(|i| f64::from(u8::from(i % 3 == 0))).collect();
        let (fit, validation) = stratified_split(&y, 0.2, 7);
        assert_eq!(fit.len() + validation.len(), y.len());
        let mut all: Vec<usize> = fit.iter().chain(&validation).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        let share = |rows: &[usize]| {
            rows.iter().filter(|&&i| y[i] == 1.0).count() as f64 / rows.len() as f64
        };
        assert!((share(&validation) - share(&fit)).abs() < 0.01);
        assert_eq!(validation.len(), 200);
        assert_eq!(
            stratified_split(&y, 0.2, 7),
            (fit, validation),
            "same seed, same split"
        );
    }
}
