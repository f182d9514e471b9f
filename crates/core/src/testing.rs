//! Small fixtures for the tests of this crate and of the crates above it (feature `testing`).

use vigie_model::metrics::BinaryMetrics;
use vigie_model::{AlgorithmParams, Link, NodeSpec, TreeEnsemble, TreeParams};

use crate::dataset::LoadReport;
use crate::schema::Imputation;
use crate::spec::ModelSpec;
use crate::train::{TrainedModel, TrainingSummary};

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
        validation: metrics.clone(),
        holdout: metrics,
        summary: TrainingSummary {
            fit_rows: 4,
            validation_rows: 4,
            holdout_rows: 4,
            refit_on_all_rows: false,
            fit_seconds: 0.01,
            train_report: LoadReport::default(),
            holdout_report: LoadReport::default(),
        },
    }
}
