//! A dense, row-major feature matrix.

use crate::{Error, Result};

/// Features of `rows` rows by `cols` columns, row-major; `f64::NAN` marks a missing value.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    data: Vec<f64>,
    rows: usize,
    cols: usize,
}

impl Matrix {
    /// Wraps row-major `data`; fails when its length is not `rows * cols`.
    pub fn from_row_major(data: Vec<f64>, rows: usize, cols: usize) -> Result<Self> {
        if data.len() != rows * cols {
            return Err(Error::LengthMismatch {
                rows: data.len() / cols.max(1),
                targets: rows,
            });
        }
        Ok(Self { data, rows, cols })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The rows, mutable in place.
    pub fn iter_rows_mut(&mut self) -> impl Iterator<Item = &mut [f64]> + '_ {
        self.data.chunks_exact_mut(self.cols.max(1)).take(self.rows)
    }

    pub fn iter_rows(&self) -> impl ExactSizeIterator<Item = &[f64]> + '_ {
        // `chunks_exact(0)` panics, and a matrix with no column has no meaningful rows anyway.
        self.data.chunks_exact(self.cols.max(1)).take(self.rows)
    }

    /// The rows at `indices`, in that order.
    pub fn select_rows(&self, indices: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(indices.len() * self.cols);
        for &i in indices {
            data.extend_from_slice(self.row(i));
        }
        Matrix {
            data,
            rows: indices.len(),
            cols: self.cols,
        }
    }

    /// The same values, column-major, as `forust-ml` wants them.
    pub(crate) fn to_column_major(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.data.len());
        for c in 0..self.cols {
            out.extend(self.iter_rows().map(|row| row[c]));
        }
        out
    }

    pub fn as_slice(&self) -> &[f64] {
        &self.data
    }
}
