//! The model artifact: a versioned, self-checking file holding everything needed to serve a
//! model (its spec, feature order, imputation, trees, threshold) and how it was evaluated.
//!
//! # Format (version 1)
//! Line 1 is a JSON header:
//! `{"format":"vigie-model","format_version":1,"payload_bytes":N,"payload_sha256":"..."}`.
//! The rest of the file is the payload: exactly `payload_bytes` bytes of JSON (see
//! [`Artifact`]) whose sha256 is `payload_sha256`. Loading checks the header, the length, the
//! hash, then that the embedded spec still hashes to `spec_hash`, that the feature order is the
//! spec's and that every tree index is in bounds. Any failure refuses the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vigie_drift::Profile;
use vigie_model::TreeEnsemble;
use vigie_model::bootstrap::Evaluation;

use crate::schema::Imputation;
use crate::spec::{ModelSpec, Task};
use crate::train::{
    CalibrationFigures, CalibrationReport, RegressionModel, TrainedModel, TrainingSummary,
};
use crate::{Error, Result};

pub const FORMAT: &str = "vigie-model";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    format_version: u32,
    payload_bytes: u64,
    payload_sha256: String,
}

/// Quality figures of a model version (binary classification or regression figures, by the
/// model's task).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// On the validation slice of the training data, where the threshold was chosen (or the
    /// interval calibrated).
    pub validation: Evaluation,
    /// On the fixed holdout, never used to choose anything.
    pub holdout: Evaluation,
    /// A classification's calibration and what it changed (the served probabilities' figures
    /// are the two above); absent for a regression and from versions trained before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationFigures>,
}

/// The payload of an artifact file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub name: String,
    pub version: u32,
    pub created_at: DateTime<Utc>,
    pub task: Task,
    /// `gradient_boosting`, `random_forest` or `decision_tree`.
    pub algorithm: String,
    pub spec_hash: String,
    /// Feature names in the order the model reads them.
    pub feature_order: Vec<String>,
    /// Decide the positive class when the probability is at least this (0 for a regression).
    pub threshold: f64,
    pub metrics: Metrics,
    /// A regression's interval and underestimated groups; absent for a classification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<RegressionModel>,
    /// A classification's calibration: the map its probabilities go through, and what it
    /// changed; absent from artifacts written before calibration (served raw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationReport>,
    /// The reference of the model's answers (one feature, `prediction`); absent from artifacts
    /// written before prediction drift was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_reference: Option<Profile>,
    pub training: TrainingSummary,
    pub spec: ModelSpec,
    pub imputation: Imputation,
    /// The drift reference built at training time, versioned with the model.
    pub reference: Profile,
    pub ensemble: TreeEnsemble,
}

/// A written artifact: where, and the sha256 of the whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenArtifact {
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

fn refuse(path: &Path, message: impl Into<String>) -> Error {
    Error::Artifact {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl Artifact {
    /// Gives a trained model its name and version.
    pub fn new(model: TrainedModel, version: u32, created_at: DateTime<Utc>) -> Self {
        Artifact {
            name: model.spec.name.clone(),
            version,
            created_at,
            task: model.spec.task,
            algorithm: model.algorithm.kind().to_string(),
            spec_hash: model.spec.hash(),
            feature_order: model
                .spec
                .feature_names()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            threshold: model.threshold,
            metrics: Metrics {
                validation: model.validation,
                holdout: model.holdout,
                calibration: model.calibration.as_ref().map(|c| c.figures.clone()),
            },
            regression: model.regression,
            calibration: model.calibration,
            prediction_reference: model.prediction_reference,
            training: model.summary,
            spec: model.spec,
            imputation: model.imputation,
            reference: model.reference,
            ensemble: model.ensemble,
        }
    }

    /// `name@version`, as the CLI and logs write it.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The file's bytes: header line, then payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        let payload = serde_json::to_vec(self).expect("an artifact always serialises");
        let header = Header {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            payload_bytes: payload.len() as u64,
            payload_sha256: hex::encode(Sha256::digest(&payload)),
        };
        let mut bytes = serde_json::to_vec(&header).expect("a header always serialises");
        bytes.push(b'\n');
        bytes.extend_from_slice(&payload);
        bytes
    }

    /// Parses and checks artifact bytes; `path` only names the source in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let newline = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| refuse(path, "no header line: not a Vigie model artifact"))?;
        let header: Header = serde_json::from_slice(&bytes[..newline])
            .map_err(|e| refuse(path, format!("unreadable header: {e}")))?;
        if header.format != FORMAT {
            return Err(refuse(
                path,
                format!("format {:?} is not {FORMAT:?}", header.format),
            ));
        }
        if header.format_version != FORMAT_VERSION {
            return Err(refuse(
                path,
                format!(
                    "format version {} is not supported (this build reads version {FORMAT_VERSION})",
                    header.format_version
                ),
            ));
        }
        let payload = &bytes[newline + 1..];
        if payload.len() as u64 != header.payload_bytes {
            return Err(refuse(
                path,
                format!(
                    "payload is {} bytes, header says {}: the file is truncated or altered",
                    payload.len(),
                    header.payload_bytes
                ),
            ));
        }
        let actual = hex::encode(Sha256::digest(payload));
        if actual != header.payload_sha256 {
            return Err(refuse(
                path,
                format!(
                    "payload sha256 is {actual}, header says {}: the file is corrupt or was altered",
                    header.payload_sha256
                ),
            ));
        }
        let artifact: Artifact = serde_json::from_slice(payload)
            .map_err(|e| refuse(path, format!("unreadable payload: {e}")))?;
        artifact.check().map_err(|m| refuse(path, m))?;
        Ok(artifact)
    }

    /// Consistency of the payload with itself.
    fn check(&self) -> std::result::Result<(), String> {
        self.spec.validate().map_err(|e| e.to_string())?;
        self.reference.validate().map_err(|e| e.to_string())?;
        let hashes = self.spec.hashes();
        if !hashes.contains(&self.spec_hash) {
            return Err(format!(
                "embedded spec hashes to {}, artifact records {}",
                hashes[0], self.spec_hash
            ));
        }
        let order: Vec<&str> = self.spec.feature_names();
        if order
            != self
                .feature_order
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        {
            return Err("feature order differs from the embedded spec's".into());
        }
        if self.ensemble.n_features() != order.len() || self.imputation.fills.len() != order.len() {
            return Err(format!(
                "model reads {} features and imputes {}, the spec declares {}",
                self.ensemble.n_features(),
                self.imputation.fills.len(),
                order.len()
            ));
        }
        let profiled: Vec<&str> = self.reference.features.iter().map(|f| f.name()).collect();
        if profiled != order {
            return Err("the drift reference does not profile the spec's features in order".into());
        }
        if self.task != self.spec.task {
            return Err(format!(
                "task {} differs from the embedded spec's {}",
                self.task.as_str(),
                self.spec.task.as_str()
            ));
        }
        let evaluations = [&self.metrics.validation, &self.metrics.holdout];
        match (self.task, &self.regression) {
            (Task::BinaryClassification, None) => {
                if !(0.0..=1.0).contains(&self.threshold) {
                    return Err(format!("threshold {} is not a probability", self.threshold));
                }
                if evaluations.iter().any(|e| e.as_binary().is_none()) {
                    return Err("a classification's metrics are not classification figures".into());
                }
            }
            (Task::Regression, Some(regression)) => {
                if self.ensemble.link() != vigie_model::Link::Identity {
                    return Err("a regression's trees do not give a number (link)".into());
                }
                if evaluations.iter().any(|e| e.as_regression().is_none()) {
                    return Err("a regression's metrics are not regression figures".into());
                }
                regression.interval.validate()?;
                if let Some(u) = &regression.underestimation {
                    let position = self.feature_order.iter().position(|f| *f == u.feature);
                    if position.is_none() {
                        return Err(format!(
                            "the underestimation groups' feature {:?} is not a feature",
                            u.feature
                        ));
                    }
                    if u.groups.windows(2).any(|w| w[0].value >= w[1].value) {
                        return Err("the underestimation groups are not in order".into());
                    }
                }
            }
            (Task::BinaryClassification, Some(_)) => {
                return Err("a classification carries a regression's interval".into());
            }
            (Task::Regression, None) => {
                return Err("a regression carries no interval".into());
            }
        }
        if let Some(p) = &self.prediction_reference {
            p.validate().map_err(|e| e.to_string())?;
            let names: Vec<&str> = p.features.iter().map(|f| f.name()).collect();
            if names != [crate::train::PREDICTION_FEATURE] {
                return Err(format!(
                    "the prediction reference profiles {names:?}, not the one feature {:?}",
                    crate::train::PREDICTION_FEATURE
                ));
            }
        }
        self.ensemble.validate().map_err(|e| e.to_string())
    }

    /// Reads and checks an artifact file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path)
    }

    /// Reads an artifact file whose whole-file sha256 must be `expected_sha256` (as a registry
    /// recorded it), then checks it as [`Artifact::read`] does.
    pub fn read_verified(path: &Path, expected_sha256: &str) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != expected_sha256 {
            return Err(refuse(
                path,
                format!("file sha256 is {actual}, the registry recorded {expected_sha256}"),
            ));
        }
        Self::from_bytes(&bytes, path)
    }

    /// Writes the artifact atomically as `dir/{stem}-{sha256 prefix}.vigie`: a temporary file
    /// in `dir`, flushed to disk, then renamed (never over an existing file). On any error
    /// nothing is left in `dir`.
    pub fn write_atomic(&self, dir: &Path, stem: &str) -> Result<WrittenArtifact> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let bytes = self.to_bytes();
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let target = dir.join(format!("{stem}-{}.vigie", &sha256[..12]));
        let mut tmp = tempfile::Builder::new()
            .prefix(".writing-")
            .tempfile_in(dir)
            .map_err(io(dir))?;
        tmp.write_all(&bytes).map_err(io(&target))?;
        tmp.as_file().sync_all().map_err(io(&target))?;
        tmp.persist_noclobber(&target).map_err(|e| Error::Io {
            path: target.clone(),
            source: e.error,
        })?;
        // The rename is durable once the folder itself is flushed; if that fails, the file goes.
        if let Err(source) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            let _ = std::fs::remove_file(&target);
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
        Ok(WrittenArtifact {
            path: target,
            sha256,
            bytes: bytes.len() as u64,
        })
    }
}

#[cfg(test)]
mod tests;
