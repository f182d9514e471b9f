//! Small fixtures for the tests of this crate and of the crates above it (feature `testing`).

use vigie_model::bootstrap::Evaluation;
use vigie_model::metrics::BinaryMetrics;
use vigie_model::regression::{FlagCheck, Interval, MeanEstimate, RegressionMetrics};
use vigie_model::{
    AlgorithmParams, GradientBoostingParams, Link, NodeSpec, TreeEnsemble, TreeParams,
};

use crate::dataset::LoadReport;
use crate::schema::Imputation;
use crate::spec::ModelSpec;
use crate::train::{GroupFinding, RegressionModel, TrainedModel, TrainingSummary, Underestimation};

/// A two-feature spec: `colour` (codes 1, 2; required) and `speed` (0..=130; imputed).
pub const TOY_SPEC: &str = r#"
name = "toy"
task = "binary_classification"
[target]
column = "y"
positive = "1"
negative = "0"
positive_label = "yes"
negative_label = "no"
[data]
train_features = "x.csv"
train_target = "y.csv"
holdout_features = "x.csv"
holdout_target = "y.csv"
[algorithm]
kind = "decision_tree"
[[feature]]
name = "colour"
type = "categorical"
missing = "reject"
codes = { 1 = "red", 2 = "green" }
[[feature]]
name = "speed"
type = "numerical"
missing = "impute"
min = 0
max = 130
"#;

/// A hand-made model of [`TOY_SPEC`]: probability 0.8 when speed >= 50, else 0.2 (one tree).
pub fn toy_model() -> TrainedModel {
    toy_model_with_leaves(0.2, 0.8)
}

/// The toy model answering `low` below speed 50 and `high` from 50 (and for a missing speed):
/// two versions with different leaves are told apart by their answers.
pub fn toy_model_with_leaves(low: f64, high: f64) -> TrainedModel {
    let spec = ModelSpec::from_toml(TOY_SPEC).expect("the toy spec is valid");
    let mut ensemble = TreeEnsemble::new(2, Link::Mean, 0.0);
    ensemble.push_tree(&[
        NodeSpec::Split {
            feature: 1,
            threshold: 50.0,
            left: 1,
            right: 2,
            missing: 2,
        },
        NodeSpec::Leaf(low),
        NodeSpec::Leaf(high),
    ]);
    let y = [0.0, 1.0, 1.0, 0.0];
    let p = [0.2, 0.8, 0.8, 0.2];
    let metrics = BinaryMetrics::compute(&y, &p, 0.5);
    TrainedModel {
        spec,
        algorithm: AlgorithmParams::DecisionTree(TreeParams::default()),
        imputation: Imputation {
            fills: vec![None, Some(30.0)],
        },
        reference: {
            let x = vigie_model::Matrix::from_row_major(
                vec![1.0, 20.0, 2.0, 60.0, 1.0, f64::NAN],
                3,
                2,
            )
            .expect("3 rows of 2");
            let none = vigie_model::Matrix::from_row_major(Vec::new(), 0, 2).expect("empty");
            let kinds = [
                vigie_drift::Kind::Categorical {
                    codes: Some(vec![1.0, 2.0]),
                },
                vigie_drift::Kind::Numerical,
            ];
            vigie_drift::Profile::build(
                &["colour", "speed"],
                &kinds,
                &x,
                &none,
                &Default::default(),
            )
        },
        ensemble,
        threshold: 0.5,
        validation: Evaluation::Binary(metrics.clone()),
        holdout: Evaluation::Binary(metrics),
        regression: None,
        calibration: None,
        prediction_reference: None,
        summary: toy_summary(),
    }
}

fn toy_summary() -> TrainingSummary {
    TrainingSummary {
        fit_rows: 4,
        validation_rows: 4,
        holdout_rows: 4,
        refit_on_all_rows: false,
        fit_seconds: 0.01,
        train_report: LoadReport::default(),
        holdout_report: LoadReport::default(),
    }
}

/// A regression spec: `station` (text codes "north", "south", "east"; required; the
/// underestimation groups) and `distance` (0..=50 km; imputed); the target is a time in
/// seconds in [0, 3600].
pub const TOY_REGRESSION_SPEC: &str = r#"
name = "toy-time"
task = "regression"
[target]
column = "seconds"
unit = "s"
min = 0
max = 3600
[data]
train_features = "x.csv"
train_target = "y.csv"
holdout_features = "x.csv"
holdout_target = "y.csv"
[regression]
interval_coverage = 0.9
underestimate_margin = 60
[regression.underestimation]
group = "station"
min_rows = 20
[algorithm]
kind = "gradient_boosting"
[[feature]]
name = "station"
type = "categorical"
missing = "reject"
codes = ["north", "south", "east"]
[[feature]]
name = "distance"
type = "numerical"
unit = "km"
missing = "impute"
min = 0
max = 50
"#;

/// A hand-made model of [`TOY_REGRESSION_SPEC`]: 300 s below 10 km, 600 s from 10 km (and for
/// a missing distance, imputed as 12); interval [estimate - 60, estimate + 120]; "south" (code
/// value 1) flagged as underestimated, "north" judged and not flagged, "east" never seen.
pub fn toy_regression_model() -> TrainedModel {
    let spec = ModelSpec::from_toml(TOY_REGRESSION_SPEC).expect("the toy spec is valid");
    let mut ensemble = TreeEnsemble::new(2, Link::Identity, 450.0);
    ensemble.push_tree(&[
        NodeSpec::Split {
            feature: 1,
            threshold: 10.0,
            left: 1,
            right: 2,
            missing: 2,
        },
        NodeSpec::Leaf(-150.0),
        NodeSpec::Leaf(150.0),
    ]);
    let y = [320.0, 590.0, 700.0, 280.0];
    let p = [300.0, 600.0, 600.0, 300.0];
    let interval = Interval {
        coverage: 0.9,
        lower_offset: -60.0,
        upper_offset: 120.0,
        min: 0.0,
        max: 3600.0,
        calibration_rows: 4,
    };
    let metrics = RegressionMetrics::compute(&y, &p, 60.0).with_interval(&y, &p, &interval);
    let estimate = |rows, mean, lower, upper| MeanEstimate {
        rows,
        mean,
        lower,
        upper,
    };
    TrainedModel {
        reference: {
            let x =
                vigie_model::Matrix::from_row_major(vec![0.0, 5.0, 1.0, 20.0, 2.0, f64::NAN], 3, 2)
                    .expect("3 rows of 2");
            let none = vigie_model::Matrix::from_row_major(Vec::new(), 0, 2).expect("empty");
            let kinds = [
                vigie_drift::Kind::Categorical {
                    codes: Some(vec![0.0, 1.0, 2.0]),
                },
                vigie_drift::Kind::Numerical,
            ];
            vigie_drift::Profile::build(
                &["station", "distance"],
                &kinds,
                &x,
                &none,
                &Default::default(),
            )
        },
        spec,
        algorithm: AlgorithmParams::GradientBoosting(GradientBoostingParams::default()),
        imputation: Imputation {
            fills: vec![None, Some(12.0)],
        },
        ensemble,
        threshold: 0.0,
        validation: Evaluation::Regression(metrics.clone()),
        holdout: Evaluation::Regression(metrics),
        calibration: None,
        regression: Some(RegressionModel {
            interval,
            underestimation: Some(Underestimation {
                feature: "station".into(),
                min_rows: 20,
                confidence: 0.95,
                judged: 2,
                per_group_confidence: 0.975,
                groups: vec![
                    GroupFinding {
                        code: "north".into(),
                        value: 0.0,
                        rows: 40,
                        mean_residual: -3.0,
                        lower_bound: Some(-20.0),
                        flagged: false,
                    },
                    GroupFinding {
                        code: "south".into(),
                        value: 1.0,
                        rows: 35,
                        mean_residual: 70.0,
                        lower_bound: Some(31.0),
                        flagged: true,
                    },
                ],
                holdout: FlagCheck {
                    flagged: estimate(2, 50.0, 10.0, 90.0),
                    unflagged: estimate(2, -5.0, -15.0, 5.0),
                    difference: Some(estimate(4, 55.0, 12.0, 95.0)),
                    confidence: 0.95,
                },
            }),
        }),
        // Answers spread over 250-650 s.
        prediction_reference: {
            let answers: Vec<f64> = (0..400).map(|i| 250.0 + f64::from(i)).collect();
            let x = vigie_model::Matrix::from_row_major(answers, 400, 1).expect("400 rows of 1");
            let none = vigie_model::Matrix::from_row_major(Vec::new(), 0, 1).expect("empty");
            Some(vigie_drift::Profile::build(
                &[crate::train::PREDICTION_FEATURE],
                &[vigie_drift::Kind::Numerical],
                &x,
                &none,
                &Default::default(),
            ))
        },
        summary: toy_summary(),
    }
}
