//! The error type of model fitting.

/// Why a model could not be fitted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid hyperparameter `{name}`: {reason}")]
    InvalidParam { name: &'static str, reason: String },
    #[error("cannot fit on an empty training set")]
    EmptyTrainingSet,
    #[error("the target must hold both classes 0 and 1, found only {0}")]
    SingleClass(f64),
    #[error("{0} cannot fit a regression: use gradient_boosting")]
    NoRegression(&'static str),
    #[error("target of row {row} is not a finite number")]
    NonFiniteTarget { row: usize },
    #[error("{rows} feature rows but {targets} targets")]
    LengthMismatch { rows: usize, targets: usize },
    #[error("gradient boosting failed: {0}")]
    GradientBoosting(String),
    #[error("linfa failed: {0}")]
    Linfa(String),
    #[error(
        "the fitted model is unusable ({0}); check the hyperparameters (l2 and min_leaf_weight of 0 can give infinite leaves)"
    )]
    Unusable(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
