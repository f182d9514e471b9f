//! What the trainer exports on `/metrics` beside the shell's metrics (HTTP requests, database
//! and broker checks): runs, alerts, promotions, production versions and their holdout figures.

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use vigie_stream::producer::ProducerMetrics;

/// The trainer's own metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub producer: ProducerMetrics,
    /// Runs started, by model and trigger (alert, manual).
    pub runs_started: IntCounterVec,
    /// Runs finished, by model and outcome (promoted, rejected, failed).
    pub runs: IntCounterVec,
    pub run_seconds: HistogramVec,
    /// 1 while a run of the model is in progress.
    pub in_progress: IntGaugeVec,
    /// Alerts received, by alert name and what the trainer did.
    pub alerts: IntCounterVec,
    /// Alerts of a notification past the most read at once, not read.
    pub alerts_skipped: IntCounter,
    /// Webhook calls refused (401, 422), by reason.
    pub webhook_refused: IntCounterVec,
    /// The last evaluated improvement of a candidate over production (primary metric,
    /// oriented so that positive is better), and its bootstrap lower bound.
    pub last_improvement: GaugeVec,
    /// The production version of each model.
    pub production_version: IntGaugeVec,
    /// Holdout figures of each model's production version.
    pub holdout_quality: GaugeVec,
    pub promotions: IntCounterVec,
}

/// The reasons of `vigie_retraining_webhook_refused_total`: no token, a wrong one, a body
/// that is not Alertmanager's payload.
pub const WEBHOOK_REFUSALS: [&str; 3] = ["missing_token", "invalid_token", "invalid_payload"];

impl Metrics {
    /// Registers the metrics in `registry` (the service's, see `vigie_api::ServiceMetrics`).
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let run_seconds = HistogramVec::new(
            HistogramOpts::new(
                "vigie_retraining_run_duration_seconds",
                "Time from a run's trigger to its end, by outcome",
            )
            .buckets(vec![
                1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
            ]),
            &["model", "outcome"],
        )?;
        registry.register(Box::new(run_seconds.clone()))?;
        let in_progress = IntGaugeVec::new(
            Opts::new(
                "vigie_retraining_in_progress",
                "1 while a retraining of the model runs",
            ),
            &["model"],
        )?;
        registry.register(Box::new(in_progress.clone()))?;
        let production_version = IntGaugeVec::new(
            Opts::new(
                "vigie_model_production_version",
                "The production version of each model",
            ),
            &["model"],
        )?;
        registry.register(Box::new(production_version.clone()))?;
        let webhook_refused = counter(
            "vigie_retraining_webhook_refused_total",
            "Webhook calls refused, by reason",
            &["reason"],
        )?;
        // Every reason from the start: a dashboard shows 0, not "no data", while all is well.
        for reason in WEBHOOK_REFUSALS {
            webhook_refused.with_label_values(&[reason]);
        }
        Ok(Metrics {
            producer: ProducerMetrics::register(registry)?,
            runs_started: counter(
                "vigie_retraining_runs_started_total",
                "Retraining runs started, by trigger",
                &["model", "trigger"],
            )?,
            runs: counter(
                "vigie_retraining_runs_total",
                "Retraining runs finished, by outcome",
                &["model", "outcome"],
            )?,
            run_seconds,
            in_progress,
            alerts: counter(
                "vigie_retraining_alerts_total",
                "Alerts received on the webhook, by what the trainer did (started, busy, cooldown, duplicate, resolved, ignored)",
                &["alertname", "action"],
            )?,
            webhook_refused,
            alerts_skipped: {
                let c = IntCounter::new(
                    "vigie_retraining_alerts_skipped_total",
                    "Alerts of a notification past the 1,000 read at once (the retraining ones are read first)",
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            last_improvement: gauge(
                "vigie_retraining_last_improvement",
                "The last candidate's improvement over production on the primary metric (positive is better), and its bootstrap lower bound",
                &["model", "metric", "bound"],
            )?,
            production_version,
            holdout_quality: gauge(
                "vigie_model_holdout_quality",
                "Holdout figures of the production version",
                &["model", "metric"],
            )?,
            promotions: counter(
                "vigie_model_promotions_total",
                "Versions moved to production, by action (promoted, rolled_back) and by whom (trainer, admin)",
                &["model", "action", "by"],
            )?,
        })
    }

    /// Creates the series of the alerts that retrain, for every action, at 0.
    pub fn expect_alerts(&self, names: &[String]) {
        for name in names {
            for action in ALERT_ACTIONS {
                self.alerts.with_label_values(&[name, action]);
            }
        }
    }

    /// Creates the series of a model with a production version, at 0 (runs by trigger and
    /// outcome, promotions by action and author, the run in progress).
    pub fn expect_model(&self, model: &str) {
        for trigger in ["alert", "manual"] {
            self.runs_started.with_label_values(&[model, trigger]);
        }
        for outcome in ["promoted", "rejected", "failed"] {
            self.runs.with_label_values(&[model, outcome]);
            self.run_seconds.with_label_values(&[model, outcome]);
        }
        for action in ["promoted", "rolled_back"] {
            for by in ["trainer", "admin"] {
                self.promotions.with_label_values(&[model, action, by]);
            }
        }
        let in_progress = self.in_progress.with_label_values(&[model]);
        if in_progress.get() != 1 {
            in_progress.set(0);
        }
    }
}

/// What the webhook does with an alert: the `action` of `vigie_retraining_alerts_total`.
pub const ALERT_ACTIONS: [&str; 6] = [
    "started",
    "busy",
    "cooldown",
    "duplicate",
    "resolved",
    "ignored",
];
