//! The core of Vigie: model specs, data loading and checking, the training pipeline, model
//! artifacts and inference.
//!
//! # Layout
//! - [`spec`]: a model described as data (TOML), checked on load, hashed.
//! - [`schema`]: the spec's features compiled to parse raw values into model inputs.
//! - [`dataset`]: reads CSVs, reports every mismatch by file, line and column.
//! - [`number`]: decimal text to `f64`, exactly as the standard library reads it, faster.
//! - [`train`]: split, impute, fit, choose the threshold on validation, evaluate on holdout.
//! - [`artifact`]: the versioned, sha256-checked model file.
//! - [`inference`]: single-row and batch prediction from a loaded artifact.

pub mod artifact;
pub mod dataset;
mod error;
pub mod inference;
pub mod number;
pub mod schema;
pub mod spec;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod train;

pub use error::{Error, Result};
