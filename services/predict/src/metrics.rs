//! What the prediction service exports on `/metrics` beside the shell's metrics (HTTP
//! requests, database and broker checks): predictions, refusals, labels, the served versions
//! and the producer's queue.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use vigie_stream::producer::ProducerMetrics;

/// The `class` label of a regression's predictions (a classification's are "0" and "1").
pub const ESTIMATE_CLASS: &str = "estimate";

/// The prediction service's own metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub producer: ProducerMetrics,
    /// Predictions by model, version and class ([`ESTIMATE_CLASS`] for a regression).
    pub predictions: IntCounterVec,
    /// A regression's answers flagged as at risk of underestimation, by model and version.
    pub flagged: IntCounterVec,
    /// Rows refused by model and error code (422s, and bad CSV rows).
    pub rejected: IntCounterVec,
    /// Labels (ground truth) queued for `vigie.labels`, by model.
    pub labels: IntCounterVec,
    /// Feedback refused, by model and reason (a request not answered here, a row it did not
    /// answer, another model's request, an answer labelled already, a label of the wrong
    /// type...).
    pub feedback_refused: IntCounterVec,
    /// Labels published that the ledger could not judge (older than it, or another
    /// instance's or a caller's request id).
    pub feedback_unverified: IntCounterVec,
    /// 1 for each model version being served.
    pub model_info: IntGaugeVec,
    pub model_switches: IntCounterVec,
    pub model_load_failures: IntCounterVec,
}

impl Metrics {
    /// Registers the metrics in `registry` (the service's, see `vigie_api::ServiceMetrics`).
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<_> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let model_info = IntGaugeVec::new(
            Opts::new(
                "vigie_model_info",
                "The model versions being served (value 1)",
            ),
            &["model", "version"],
        )?;
        registry.register(Box::new(model_info.clone()))?;
        Ok(Metrics {
            producer: ProducerMetrics::register(registry)?,
            predictions: counter(
                "vigie_predictions_total",
                "Predictions served, each batch row counted",
                &["model", "version", "class"],
            )?,
            flagged: counter(
                "vigie_underestimation_flags_total",
                "A regression's answers flagged as at risk of being underestimated (their group's)",
                &["model", "version"],
            )?,
            rejected: counter(
                "vigie_prediction_rejections_total",
                "Prediction rows refused, by error code",
                &["model", "error"],
            )?,
            labels: counter(
                "vigie_labels_total",
                "Labels (ground truth) queued for vigie.labels",
                &["model"],
            )?,
            feedback_refused: counter(
                "vigie_feedback_refused_total",
                "Feedback requests refused, by the reason of their first bad label",
                &["model", "reason"],
            )?,
            feedback_unverified: counter(
                "vigie_feedback_unverified_total",
                "Labels published that the ledger of answered requests could not judge (older than it, another instance's or a caller's request id)",
                &["model"],
            )?,
            model_info,
            model_switches: counter(
                "vigie_model_switches_total",
                "Times the served version of a model changed",
                &["model"],
            )?,
            model_load_failures: counter(
                "vigie_model_load_failures_total",
                "Production versions that could not be loaded (the previous one keeps serving)",
                &["model"],
            )?,
        })
    }
}
