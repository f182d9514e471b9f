//! Synthetic data and noise for Vigie. Pure computation, no IO.
//!
//! - [`Generator`]: a seeded generator fitted on training rows that keeps the dependencies
//!   between features and with the target (a tree-augmented Bayesian network over discretised
//!   columns, numerical ones included; see [`generator`]). The drift reference of a model mixes
//!   its training rows with such samples (the share is set in the model spec).
//! - [`fidelity()`]: how close synthetic rows are to real ones, per column and per pair.
//! - [`noise`]: seeded noise models applied to events, for testers.
//! - [`MarginalSampler`]: each column resampled on its own; it destroys every dependency and is
//!   kept as the baseline the generator is measured against.

pub mod fidelity;
pub mod generator;
pub mod noise;
pub mod states;

pub use fidelity::{Fidelity, fidelity};
pub use generator::{FitError, Generator, GeneratorParams, Sample};
pub use noise::{Injector, NoiseError, NoiseMode, NoiseSpec};
pub use states::{ColumnKind, StateParams};

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use vigie_model::Matrix;

/// The per-feature (marginal) distributions of a data set, ready to sample from: every value
/// drawn occurs in its source column, with the source's frequencies, independently of the
/// other columns.
#[derive(Debug, Clone, PartialEq)]
pub struct MarginalSampler {
    /// One column of source values per feature (`NaN` = missing).
    columns: Vec<Vec<f64>>,
}

impl MarginalSampler {
    /// Learns the marginals of `x`; `None` when `x` has no row.
    pub fn fit(x: &Matrix) -> Option<Self> {
        if x.rows() == 0 {
            return None;
        }
        let columns = (0..x.cols())
            .map(|c| x.iter_rows().map(|row| row[c]).collect())
            .collect();
        Some(MarginalSampler { columns })
    }

    /// `n` synthetic rows, the same for the same seed.
    pub fn sample(&self, n: usize, seed: u64) -> Matrix {
        let mut rng = StdRng::seed_from_u64(seed);
        let cols = self.columns.len();
        let mut data = Vec::with_capacity(n * cols);
        for _ in 0..n {
            for column in &self.columns {
                data.push(column[rng.gen_range(0..column.len())]);
            }
        }
        Matrix::from_row_major(data, n, cols).expect("n rows of every column")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Matrix {
        // Column 0: code 1 three times in four; column 1: 10, 20, missing, 40.
        let data = vec![1.0, 10.0, 1.0, 20.0, 2.0, f64::NAN, 1.0, 40.0];
        Matrix::from_row_major(data, 4, 2).unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_rows() {
        let sampler = MarginalSampler::fit(&source()).unwrap();
        let a = sampler.sample(100, 7);
        let b = sampler.sample(100, 7);
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "NaN-aware comparison");
        assert_ne!(format!("{a:?}"), format!("{:?}", sampler.sample(100, 8)));
    }

    #[test]
    fn samples_keep_values_and_frequencies() {
        let sampler = MarginalSampler::fit(&source()).unwrap();
        let s = sampler.sample(20_000, 1);
        assert_eq!((s.rows(), s.cols()), (20_000, 2));
        let ones = s.iter_rows().filter(|r| r[0] == 1.0).count() as f64 / 20_000.0;
        assert!((ones - 0.75).abs() < 0.02, "share of code 1: {ones}");
        let missing = s.iter_rows().filter(|r| r[1].is_nan()).count() as f64 / 20_000.0;
        assert!((missing - 0.25).abs() < 0.02, "share of missing: {missing}");
        assert!(s.iter_rows().all(|r| [1.0, 2.0].contains(&r[0])));
        assert!(
            s.iter_rows()
                .all(|r| r[1].is_nan() || [10.0, 20.0, 40.0].contains(&r[1]))
        );
    }

    #[test]
    fn an_empty_source_has_no_marginals() {
        let empty = Matrix::from_row_major(vec![], 0, 3).unwrap();
        assert!(MarginalSampler::fit(&empty).is_none());
    }
}
