//! Prediction from a loaded artifact: the library function the prediction service calls.

use vigie_model::Matrix;

use crate::artifact::Artifact;
use crate::schema::Schema;
use crate::spec::Task;
use crate::train::{GroupFinding, Underestimation};

/// A model ready to predict: an artifact and its compiled schema.
#[derive(Debug, Clone)]
pub struct Model {
    artifact: Artifact,
    schema: Schema,
    /// Where a regression's group feature is in a row, when its artifact judged groups.
    group_column: Option<usize>,
}

/// One prediction: a class with its probability, or an estimate with its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Prediction {
    Class(ClassPrediction),
    Estimate(Estimate),
}

/// A binary classification's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassPrediction {
    /// 1 for the positive class, 0 for the negative.
    pub class: u8,
    /// Probability of the positive class.
    pub probability: f64,
}

/// A regression's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The estimate, inside the target's valid range.
    pub value: f64,
    /// `[lower, upper]` at the spec's coverage.
    pub interval: [f64; 2],
    /// Where the row's group is among the underestimation findings (see
    /// [`Model::group_finding`]); `None` when the spec names no group or the validation slice
    /// never saw this one.
    pub group: Option<u32>,
    /// Whether the row's group is one the model underestimates.
    pub underestimation_risk: bool,
}

impl Prediction {
    /// The classification's answer (`None` for an estimate).
    pub fn as_class(&self) -> Option<&ClassPrediction> {
        match self {
            Prediction::Class(c) => Some(c),
            Prediction::Estimate(_) => None,
        }
    }

    pub fn as_estimate(&self) -> Option<&Estimate> {
        match self {
            Prediction::Estimate(e) => Some(e),
            Prediction::Class(_) => None,
        }
    }

    /// The number the answer stands on: the probability, or the estimate.
    pub fn score(&self) -> f64 {
        match self {
            Prediction::Class(c) => c.probability,
            Prediction::Estimate(e) => e.value,
        }
    }
}

impl Model {
    pub fn new(artifact: Artifact) -> Self {
        let schema = Schema::new(&artifact.spec);
        let group_column = artifact
            .regression
            .as_ref()
            .and_then(|r| r.underestimation.as_ref())
            .and_then(|u| schema.position(&u.feature));
        Model {
            artifact,
            schema,
            group_column,
        }
    }

    /// A regression's judged groups, with the column of their feature.
    fn underestimation(&self) -> Option<(usize, &Underestimation)> {
        let u = self
            .artifact
            .regression
            .as_ref()?
            .underestimation
            .as_ref()?;
        Some((self.group_column?, u))
    }

    pub fn task(&self) -> Task {
        self.artifact.task
    }

    /// The underestimation finding an estimate's group refers to.
    pub fn group_finding(&self, estimate: &Estimate) -> Option<(&str, &GroupFinding)> {
        let (_, u) = self.underestimation()?;
        let finding = u.groups.get(estimate.group? as usize)?;
        Some((&u.feature, finding))
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
            target.positive_label()
        } else {
            target.negative_label()
        }
    }

    /// Predicts one row already parsed by the schema (model order, `NaN` = missing); imputes
    /// the missing values in place.
    pub fn predict_parsed(&self, row: &mut [f64]) -> Prediction {
        self.artifact.imputation.apply(row);
        let raw = self.artifact.ensemble.predict_proba(row);
        let Some(regression) = &self.artifact.regression else {
            let probability = match &self.artifact.calibration {
                Some(calibration) => calibration.apply(raw),
                None => raw,
            };
            return Prediction::Class(ClassPrediction {
                class: u8::from(probability >= self.artifact.threshold),
                probability,
            });
        };
        let interval = &regression.interval;
        let value = raw.clamp(interval.min, interval.max);
        let (group, underestimation_risk) = match self.underestimation() {
            Some((column, u)) => {
                let at = u.position(row[column]);
                let risk = at.is_some_and(|i| u.groups[i].flagged);
                (at.map(|i| i as u32), risk)
            }
            None => (None, false),
        };
        Prediction::Estimate(Estimate {
            value,
            interval: interval.around(value),
            group,
            underestimation_risk,
        })
    }

    /// Predicts every row of a parsed matrix (model order, `NaN` = missing). Large batches are
    /// split across the cores (rayon), in order. Panics when `x` does not have one column per
    /// feature.
    pub fn predict_batch(&self, x: &Matrix) -> Vec<Prediction> {
        use rayon::prelude::*;

        assert_eq!(x.cols(), self.schema.len(), "one column per feature");
        let predict_chunk = |rows: &[f64]| -> Vec<Prediction> {
            let mut row = vec![0.0; x.cols()];
            rows.chunks_exact(x.cols().max(1))
                .map(|r| {
                    row.copy_from_slice(r);
                    self.predict_parsed(&mut row)
                })
                .collect()
        };
        if x.rows() < PARALLEL_BATCH_ROWS || x.cols() == 0 {
            return predict_chunk(x.as_slice());
        }
        x.as_slice()
            .par_chunks(PARALLEL_BATCH_ROWS * x.cols())
            .flat_map_iter(predict_chunk)
            .collect()
    }
}

/// Below this many rows a batch is predicted on the calling thread; above, in chunks of this
/// many rows on rayon's pool (one chunk is ~4 ms of work, far above the cost of a task).
const PARALLEL_BATCH_ROWS: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::RowError;
    use crate::testing::toy_model;

    fn model() -> Model {
        Model::new(Artifact::new(toy_model(), 1, chrono::Utc::now()))
    }

    /// A request's text values read by the schema, then predicted.
    fn predict_text(m: &Model, values: &[Option<&str>]) -> Result<Prediction, RowError> {
        let mut row = vec![0.0; m.schema().len()];
        m.schema()
            .parse_request_row(values.iter().copied(), &mut row)?;
        Ok(m.predict_parsed(&mut row))
    }

    #[test]
    fn raw_rows_are_checked_imputed_and_thresholded() {
        let m = model();
        let p = *predict_text(&m, &[Some("1"), Some("60")])
            .unwrap()
            .as_class()
            .unwrap();
        assert_eq!((p.class, p.probability), (1, 0.8));
        assert_eq!(m.label(p.class), "yes");
        // Missing speed is imputed with 30: below the split.
        let p = *predict_text(&m, &[Some("2.0"), None])
            .unwrap()
            .as_class()
            .unwrap();
        assert_eq!((p.class, p.probability), (0, 0.2));
        let err = predict_text(&m, &[Some("3"), Some("60")]).unwrap_err();
        assert_eq!(err.to_string(), "feature colour: unknown code \"3\"");
        let err = predict_text(&m, &[None, Some("60")]).unwrap_err();
        assert!(
            matches!(err, RowError::Value { ref feature, .. } if feature == "colour"),
            "{err}"
        );
        let err = predict_text(&m, &[Some("1")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "1 values given, the model reads 2 features"
        );
        let err = predict_text(&m, &[Some("1"), Some("131")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "feature speed: 131 is outside the valid range [0, 130]"
        );
    }

    #[test]
    fn a_regression_answers_an_estimate_its_interval_and_its_group() {
        let m = Model::new(Artifact::new(
            crate::testing::toy_regression_model(),
            1,
            chrono::Utc::now(),
        ));
        assert_eq!(m.task(), Task::Regression);
        let answer =
            |values: &[Option<&str>]| *predict_text(&m, values).unwrap().as_estimate().unwrap();
        let north = answer(&[Some("north"), Some("5")]);
        assert_eq!(north.value, 300.0);
        assert_eq!(north.interval, [240.0, 420.0]);
        assert!(!north.underestimation_risk);
        let (feature, finding) = m.group_finding(&north).unwrap();
        assert_eq!(
            (feature, finding.code.as_str(), finding.flagged),
            ("station", "north", false)
        );
        // A missing distance is imputed (12 km): the upper leaf.
        let south = answer(&[Some("south"), None]);
        assert_eq!(south.value, 600.0);
        assert!(south.underestimation_risk);
        assert_eq!(m.group_finding(&south).unwrap().1.code, "south");
        // A group the validation slice never saw: no finding, no risk.
        let east = answer(&[Some("east"), Some("1")]);
        assert!(!east.underestimation_risk && east.group.is_none());
        assert!(m.group_finding(&east).is_none());
    }

    #[test]
    fn batches_match_single_rows_in_order_on_any_size() {
        let m = model();
        for n in [0, 1, 255, 256, 1000] {
            let data: Vec<f64> = (0..n)
                .flat_map(|i| {
                    [
                        1.0,
                        if i % 3 == 0 {
                            f64::NAN
                        } else {
                            (i % 131) as f64
                        },
                    ]
                })
                .collect();
            let x = Matrix::from_row_major(data, n, 2).unwrap();
            let batch = m.predict_batch(&x);
            assert_eq!(batch.len(), n);
            for (row, p) in x.iter_rows().zip(&batch) {
                assert_eq!(*p, m.predict_parsed(&mut row.to_vec()));
            }
        }
    }
}
