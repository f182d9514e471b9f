//! Model fitting, inference and evaluation for Vigie: pure computation, no IO.
//!
//! # Layout
//! - [`Matrix`]: a dense row-major table of `f64` features, `NaN` for a missing value.
//! - [`AlgorithmParams`]: the algorithms Vigie can fit (gradient boosting through `forust-ml`,
//!   random forest through `linfa-ensemble`, decision tree through `linfa-trees`) and their
//!   hyperparameters; [`AlgorithmParams::check`] validates them, [`ValidParams::fit`] trains.
//! - [`TreeEnsemble`]: what every fitted algorithm is converted into, a flat array of tree nodes
//!   that predicts one row in a few microseconds and serialises independently of the crate that
//!   grew the trees.
//! - [`calibration`]: reliability curves, expected calibration error, and the maps (Platt,
//!   isotonic) that make probabilities frequencies.
//! - [`estimate`]: a classifier's quality estimated from its calibrated probabilities, without
//!   labels, and measured with them, over counts that merge.
//! - [`metrics`]: binary classification metrics and the choice of a decision threshold.
//! - [`regression`]: regression metrics, the conformal prediction interval, and the groups a
//!   model underestimates.
//! - [`bootstrap`]: paired bootstrap comparison of two models on the same rows.

mod algorithm;
pub mod bootstrap;
pub mod calibration;
mod ensemble;
mod error;
pub mod estimate;
mod matrix;
pub mod metrics;
pub mod regression;

pub use algorithm::{
    AlgorithmParams, ForestParams, GradientBoostingParams, TreeParams, ValidParams,
};
pub use ensemble::{Link, Node, NodeSpec, TreeEnsemble};
pub use error::{Error, Result};
pub use matrix::Matrix;
