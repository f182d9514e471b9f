//! Prediction from a loaded artifact: the library function the prediction service calls.

use vigie_model::Matrix;

use crate::artifact::Artifact;
use crate::schema::{Cell, Origin, Schema, ValueError};

/// A model ready to predict: an artifact and its compiled schema.
#[derive(Debug, Clone)]
pub struct Model {
    artifact: Artifact,
    schema: Schema,
}

/// One prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// 1 for the positive class, 0 for the negative.
    pub class: u8,
    /// Probability of the positive class.
    pub probability: f64,
}

/// Why a row cannot be predicted: which feature and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("feature {feature}: {error}")]
pub struct RowError {
    pub feature: String,
    pub error: ValueError,
}

impl Model {
    pub fn new(artifact: Artifact) -> Self {
        let schema = Schema::new(&artifact.spec);
        Model { artifact, schema }
    }

    pub fn artifact(&self) -> &Artifact {
        &self.artifact
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The label of a class, as the spec names it.
    pub fn label(&self, class: u8) -> &str {
        let target = &self.artifact.spec.target;
        if class == 1 {
            &target.positive_label
        } else {
            &target.negative_label
        }
    }

    /// Predicts one row already parsed by the schema (model order, `NaN` = missing); imputes
    /// the missing values in place.
    pub fn predict_parsed(&self, row: &mut [f64]) -> Prediction {
        self.artifact.imputation.apply(row);
        let probability = self.artifact.ensemble.predict_proba(row);
        Prediction {
            class: u8::from(probability >= self.artifact.threshold),
            probability,
        }
    }

    /// Parses one row of raw values (model order; `None` = missing) as a request and predicts.
    pub fn predict_raw(&self, values: &[Option<&str>]) -> Result<Prediction, RowError> {
        assert_eq!(values.len(), self.schema.len(), "one value per feature");
        let mut row = vec![f64::NAN; values.len()];
        for ((slot, raw), feature) in row.iter_mut().zip(values).zip(self.schema.features()) {
            match feature.parse(*raw, Origin::Request) {
                Ok(Cell::Value(v)) => *slot = v,
                Ok(Cell::Missing | Cell::OutOfRangeAsMissing) => {}
                Err(error) => {
                    return Err(RowError {
                        feature: feature.name().to_string(),
                        error,
                    });
                }
            }
        }
        Ok(self.predict_parsed(&mut row))
    }

    /// Predicts every row of a parsed matrix (model order, `NaN` = missing).
    pub fn predict_batch(&self, x: &Matrix) -> Vec<Prediction> {
        let mut row = vec![0.0; x.cols()];
        x.iter_rows()
            .map(|r| {
                row.copy_from_slice(r);
                self.predict_parsed(&mut row)
            })
            .collect()
    }
}
