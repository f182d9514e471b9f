//! The models being served, swapped atomically when the registry's production version moves.
//!
//! A request takes one `Arc<Served>` at its start and uses it to the end: a promotion never
//! fails a request nor mixes two versions in one answer, and the old version is freed when
//! its last request finishes.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use vigie_api::ApiError;
use vigie_core::artifact::Artifact;
use vigie_core::inference::Model;
use vigie_registry::{ModelVersion, Registry};

use crate::metrics::Metrics;

/// The error codes a prediction row can be refused with (`vigie_prediction_rejections_total`).
pub const REJECTION_CODES: [&str; 15] = [
    "invalid_json",
    "invalid_body",
    "unknown_field",
    "duplicate_field",
    "missing_field",
    "wrong_type",
    "missing_value",
    "unknown_code",
    "out_of_range",
    "invalid_value",
    "batch_too_large",
    "wrong_width",
    "invalid_csv",
    "body_too_large",
    "unsupported_media_type",
];

/// One loaded model version.
#[derive(Debug)]
pub struct Served {
    pub model: Model,
    pub version: ModelVersion,
    /// When this process started serving it.
    pub since: DateTime<Utc>,
    /// The version as a metric label.
    pub version_label: String,
}

impl Served {
    pub fn new(artifact: Artifact, version: ModelVersion) -> Self {
        Served {
            model: Model::new(artifact),
            version_label: version.version.to_string(),
            version,
            since: Utc::now(),
        }
    }

    pub fn name(&self) -> &str {
        &self.version.name
    }

    pub fn feature_names(&self) -> &[String] {
        &self.model.artifact().feature_order
    }
}

/// The served models by name.
#[derive(Debug, Default)]
pub struct ModelSet {
    current: ArcSwap<BTreeMap<String, Arc<Served>>>,
}

impl ModelSet {
    pub fn get(&self, name: &str) -> Option<Arc<Served>> {
        self.current.load().get(name).cloned()
    }

    /// The model, or a 404 that lists the served ones.
    pub fn get_or_404(&self, name: &str) -> Result<Arc<Served>, ApiError> {
        self.get(name).ok_or_else(|| {
            let names: Vec<String> = self.current.load().keys().cloned().collect();
            ApiError::not_found(
                "unknown_model",
                format!(
                    "no model named {name:?} is served; served: {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            )
        })
    }

    pub fn all(&self) -> Vec<Arc<Served>> {
        self.current.load().values().cloned().collect()
    }

    /// Loads each production version that differs from the served one (only the names in
    /// `only`, when it is not empty). A version that fails to load is logged and counted, and
    /// the previous one keeps serving.
    pub async fn sync(
        &self,
        registry: &Registry,
        only: &[String],
        metrics: &Metrics,
    ) -> Result<(), vigie_registry::Error> {
        let production = registry.production().await?;
        let current = self.current.load_full();
        let mut next = BTreeMap::clone(&current);
        let mut changed = false;
        for version in production {
            if !only.is_empty() && !only.contains(&version.name) {
                continue;
            }
            if current
                .get(&version.name)
                .is_some_and(|s| s.version.version == version.version)
            {
                continue;
            }
            let (r, v) = (registry.clone(), version.clone());
            let loaded = tokio::task::spawn_blocking(move || r.load(&v)).await;
            let artifact = match loaded {
                Ok(Ok(artifact)) => artifact,
                Ok(Err(e)) => {
                    tracing::error!(model = %version.id(), error = %e, "cannot load the production version; the served one stays");
                    metrics
                        .model_load_failures
                        .with_label_values(&[&version.name])
                        .inc();
                    continue;
                }
                Err(e) => {
                    tracing::error!(model = %version.id(), error = %e, "model loading panicked");
                    continue;
                }
            };
            let served = Served::new(artifact, version);
            if let Some(old) = current.get(served.name()) {
                let _ = metrics
                    .model_info
                    .remove_label_values(&[old.name(), &old.version_label]);
                metrics
                    .model_switches
                    .with_label_values(&[served.name()])
                    .inc();
                tracing::info!(
                    model = served.name(),
                    from = old.version.version,
                    to = served.version.version,
                    "switching model version"
                );
            } else {
                tracing::info!(model = %served.version.id(), "serving model");
                // The model's counters exist from the start: 0, not "no data", on dashboards.
                metrics.model_switches.with_label_values(&[served.name()]);
                metrics
                    .model_load_failures
                    .with_label_values(&[served.name()]);
                metrics.labels.with_label_values(&[served.name()]);
                for code in REJECTION_CODES {
                    metrics.rejected.with_label_values(&[served.name(), code]);
                }
            }
            metrics
                .model_info
                .with_label_values(&[served.name(), &served.version_label])
                .set(1);
            // This version's predictions exist from the start too.
            let classes: &[&str] = match served.model.task() {
                vigie_core::spec::Task::BinaryClassification => &["0", "1"],
                vigie_core::spec::Task::Regression => &[crate::metrics::ESTIMATE_CLASS],
            };
            for class in classes {
                metrics.predictions.with_label_values(&[
                    served.name(),
                    &served.version_label,
                    class,
                ]);
            }
            if served.model.task() == vigie_core::spec::Task::Regression {
                metrics
                    .flagged
                    .with_label_values(&[served.name(), &served.version_label]);
            }
            next.insert(served.name().to_string(), Arc::new(served));
            changed = true;
        }
        if changed {
            self.current.store(Arc::new(next));
        }
        Ok(())
    }
}
