//! What the drift service exports on `/metrics` beside the shell's metrics (HTTP requests,
//! database and broker checks). Names follow Prometheus' conventions (base units, `_total`
//! counters); `ml_data_drift_score` is the mission's name and is kept as is.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

/// The drift service's own metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Share of the features that drifted in the sliding window (absent below the minimum
    /// sample size).
    pub score: GaugeVec,
    /// 1 when the share reached the model's alert threshold.
    pub dataset_drifted: IntGaugeVec,
    /// The share of drifted features at which the data set counts as drifted.
    pub threshold: GaugeVec,
    /// The deciding statistic of each feature (TVD or correlation, per the rules).
    pub feature_score: GaugeVec,
    pub feature_drifted: IntGaugeVec,
    /// The score of the last closed tumbling window.
    pub tumbling_score: GaugeVec,
    /// The answers' statistic (the numerical rule's: histogram correlation by default) on the
    /// sliding window's answers against the prediction reference.
    pub prediction_score: GaugeVec,
    /// 1 when the answers' statistic crossed its threshold.
    pub prediction_drifted: IntGaugeVec,
    /// Events counted whose answer had no probability or estimate to read.
    pub answers_unreadable: IntCounter,
    /// Events in each model's windows.
    pub window_events: IntGaugeVec,
    /// The windows' widths, seconds of event time.
    pub window_width: GaugeVec,
    pub events: IntCounterVec,
    pub skipped: IntCounterVec,
    /// Partition positions given up because the log is not the one they were taken on.
    pub offset_resets: IntCounterVec,
    /// Events removed from a partition's log before they were read.
    pub missed: IntCounter,
    /// Partials read, by what became of them (see `partials::Outcome`).
    pub partials: IntCounterVec,
    /// Partials this instance published.
    pub partials_published: IntCounter,
    /// Partitions of the predictions topic this instance reads.
    pub assigned_partitions: IntGauge,
    /// Rebalances of the consumer group this instance went through, by what they did to it.
    pub rebalances: IntCounterVec,
    pub late: IntCounterVec,
    pub noised: IntCounterVec,
    pub noise_active: IntGaugeVec,
    pub consumer_lag: IntGauge,
    /// From an event's time to its counting.
    pub delay: Histogram,
    pub scoring_seconds: Histogram,
    pub last_scored: GaugeVec,
    pub checkpoints: IntCounterVec,
    pub checkpoint_bytes: IntGauge,
    pub checkpoint_time: Gauge,
    pub reference_info: IntGaugeVec,
    pub reference_switches: IntCounterVec,
    /// Labels of watched models by what became of them (see `quality::LabelOutcome`).
    pub quality_labels: IntCounterVec,
    /// Labels not read as a watched model's: unreadable, or of a model not watched here.
    pub labels_skipped: IntCounterVec,
    /// Answers that left without a label, by why.
    pub quality_unlabelled: IntCounterVec,
    /// From a prediction to its label.
    pub label_delay: Histogram,
    /// The quality of each model's last labelled answers, by metric.
    pub quality_realised: GaugeVec,
    /// Labelled answers in each model's quality window.
    pub quality_window_labels: IntGaugeVec,
    /// Answers waiting for a label, and labels waiting for an answer.
    pub quality_waiting: IntGaugeVec,
    /// A classification's quality estimated without labels on the live answers, by metric,
    /// and the 95% band of the realised figure around it.
    pub quality_estimated: GaugeVec,
    pub quality_estimated_lower: GaugeVec,
    pub quality_estimated_upper: GaugeVec,
    /// The production version's holdout figures, by metric.
    pub quality_holdout: GaugeVec,
    /// The spec's quality tolerance per alerted metric, and the labels the realised alert
    /// needs.
    pub quality_tolerance: GaugeVec,
    pub quality_min_labels: IntGaugeVec,
    /// The share of the kept periods' answers labelled so far.
    pub quality_labelled_share: GaugeVec,
    /// Quantiles of each model's answers: the sliding window's and the reference's.
    pub prediction_quantile: GaugeVec,
    /// Each feature's noise threshold for the sliding window's size.
    pub noise_threshold: GaugeVec,
    /// The level each feature is tested at.
    pub feature_level: GaugeVec,
    /// Events with a code the spec does not list, per model and feature.
    pub unseen: IntCounterVec,
    /// The most frequent unseen codes of each feature since the reference was loaded.
    pub unseen_code_events: IntGaugeVec,
}

impl Metrics {
    /// Registers the metrics in `registry` (the service's, see `vigie_api::ServiceMetrics`).
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        macro_rules! register {
            ($metric:expr) => {{
                let m = $metric;
                registry.register(Box::new(m.clone()))?;
                m
            }};
        }
        let model = &["model"];
        let seconds = |name: &str, help: &str, buckets: Vec<f64>| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        };
        let skipped = register!(IntCounterVec::new(
            Opts::new(
                "vigie_drift_events_skipped_total",
                "Events of the predictions topic not counted in a window, by reason"
            ),
            &["reason"]
        )?);
        let offset_resets = register!(IntCounterVec::new(
            Opts::new(
                "vigie_drift_offset_resets_total",
                "Partition positions given up because the partition's log is not the one they were taken on (restarted: a new broker or a recreated topic starting before the position; replaced: another event at the checkpoint's last offset)"
            ),
            &["reason"]
        )?);
        Ok(Metrics {
            unseen: register!(IntCounterVec::new(
                Opts::new(
                    "vigie_drift_unseen_codes_total",
                    "Events counted whose feature held a code the model's spec does not list (answered as missing or refused by the spec's unseen policy; counted in the feature's other bin)"
                ),
                &["model", "feature"]
            )?),
            unseen_code_events: register!(IntGaugeVec::new(
                Opts::new(
                    "vigie_drift_unseen_code_events",
                    "Events with this unseen code since the model's reference was loaded: the most frequent codes of each feature (at most 5, refreshed at each scoring)"
                ),
                &["model", "feature", "code"]
            )?),
            offset_resets,
            partials: register!(IntCounterVec::new(
                Opts::new(
                    "vigie_drift_partials_total",
                    "Partials read from the partials topic, by what became of them (added to the sums; own: of a partition this instance reads; other_reference: counted against another reference version; unreadable; foreign: another group's or a model not watched)"
                ),
                &["outcome"]
            )?),
            partials_published: register!(IntCounter::new(
                "vigie_drift_partials_published_total",
                "Partials (a model's counts of a partition) this instance published"
            )?),
            assigned_partitions: register!(IntGauge::new(
                "vigie_drift_assigned_partitions",
                "Partitions of the predictions topic this instance reads"
            )?),
            rebalances: register!(IntCounterVec::new(
                Opts::new(
                    "vigie_drift_rebalances_total",
                    "Partitions assigned to or revoked from this instance by the consumer group, by kind (rejoined: times this instance joined the group again because a partition was read by nobody)"
                ),
                &["kind"]
            )?),
            missed: register!(IntCounter::new(
                "vigie_drift_events_missed_total",
                "Events the drift service never read: the broker's retention removed them from the log before the service reached them"
            )?),
            score: register!(GaugeVec::new(
                Opts::new(
                    "ml_data_drift_score",
                    "Share of a model's features whose live window drifted from the reference"
                ),
                model
            )?),
            dataset_drifted: register!(IntGaugeVec::new(
                Opts::new(
                    "vigie_drift_dataset_drifted",
                    "1 when ml_data_drift_score reached the model's alert threshold"
                ),
                model
            )?),
            threshold: register!(GaugeVec::new(
                Opts::new(
                    "vigie_drift_alert_threshold",
                    "The share of drifted features at which a model's data counts as drifted"
                ),
                model
            )?),
            feature_score: register!(GaugeVec::new(
                Opts::new(
                    "vigie_drift_feature_score",
                    "Each feature's deciding statistic on the sliding window (tvd or correlation)"
                ),
                &["model", "feature", "statistic"]
            )?),
            feature_drifted: register!(IntGaugeVec::new(
                Opts::new(
                    "vigie_drift_feature_drifted",
                    "1 when the feature's statistic crossed its threshold"
                ),
                &["model", "feature"]
            )?),
            tumbling_score: register!(GaugeVec::new(
                Opts::new(
                    "vigie_drift_tumbling_score",
                    "Share of drifted features in the last closed tumbling window"
                ),
                model
            )?),
            prediction_score: register!(GaugeVec::new(
                Opts::new(
                    "vigie_drift_prediction_score",
                    "The statistic of a model's answers (probabilities or estimates) in the sliding window against the answers on its validation slice"
                ),
                &["model", "statistic"]
            )?),
            prediction_drifted: register!(IntGaugeVec::new(
                Opts::new(
                    "vigie_drift_prediction_drifted",
                    "1 when a model's answers drifted from its validation slice's"
                ),
                model
            )?),
            answers_unreadable: register!(IntCounter::new(
                "vigie_drift_answers_unreadable_total",
                "Events counted whose answer had neither a probability nor an estimate (left out of the answers' window)"
            )?),
            window_events: register!(IntGaugeVec::new(
                Opts::new("vigie_drift_window_events", "Events in a model's windows"),
                &["model", "window"]
            )?),
            window_width: register!(GaugeVec::new(
                Opts::new(
                    "vigie_drift_window_width_seconds",
                    "Width of a model's windows, in seconds of event time"
                ),
                &["model", "window"]
            )?),
            events: register!(IntCounterVec::new(
                Opts::new(
                    "vigie_drift_events_total",
                    "Prediction events counted in a model's windows"
                ),
                model
            )?),
            skipped,
            late: register!(IntCounterVec::new(
                Opts::new(
                    "vigie_drift_events_late_total",
                    "Events that arrived after their tumbling window closed (still in the sliding window)"
                ),
                model
            )?),
            noised: register!(IntCounterVec::new(
                Opts::new(
                    "vigie_drift_events_noised_total",
                    "Events changed by an injected noise before entering the windows"
                ),
                model
            )?),
            noise_active: register!(IntGaugeVec::new(
                Opts::new(
                    "vigie_drift_noise_active",
                    "1 while a noise injection changes a model's events"
                ),
                model
            )?),
            consumer_lag: register!(IntGauge::new(
                "vigie_drift_consumer_lag_events",
                "Events on the predictions topic not consumed yet (all assigned partitions)"
            )?),
            delay: register!(seconds(
                "vigie_drift_event_delay_seconds",
                "From an event's time (the prediction) to its counting in the windows",
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0
                ]
            )?),
            scoring_seconds: register!(seconds(
                "vigie_drift_scoring_duration_seconds",
                "Time to score one model's windows",
                vec![
                    0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.025, 0.1
                ]
            )?),
            last_scored: register!(GaugeVec::new(
                Opts::new(
                    "vigie_drift_last_scored_timestamp_seconds",
                    "When a model's sliding window was last scored (Unix time)"
                ),
                model
            )?),
            checkpoints: register!(IntCounterVec::new(
                Opts::new(
                    "vigie_drift_checkpoints_total",
                    "State checkpoints written to the database, by outcome"
                ),
                &["outcome"]
            )?),
            checkpoint_bytes: register!(IntGauge::new(
                "vigie_drift_checkpoint_bytes",
                "Size of the last checkpoint written"
            )?),
            checkpoint_time: register!(Gauge::new(
                "vigie_drift_checkpoint_timestamp_seconds",
                "When the last checkpoint was written (Unix time)"
            )?),
            reference_info: register!(IntGaugeVec::new(
                Opts::new(
                    "vigie_drift_reference_info",
                    "The model version whose reference each model's events are scored against (value 1)"
                ),
                &["model", "version"]
            )?),
            reference_switches: register!(IntCounterVec::new(
                Opts::new(
                    "vigie_drift_reference_switches_total",
                    "Times a model's reference changed (a promotion)"
                ),
                model
            )?),
            quality_labels: register!(IntCounterVec::new(
                Opts::new(
                    "vigie_quality_labels_total",
                    "Labels of watched models, by outcome: joined to their answer, relabelled (the first counts), old_version (the answer's version left production), wrong_type, unmatched (no answer within the wait)"
                ),
                &["model", "outcome"]
            )?),
            labels_skipped: register!(IntCounterVec::new(
                Opts::new(
                    "vigie_quality_labels_skipped_total",
                    "Messages of the labels topic not read as a watched model's label, by reason"
                ),
                &["reason"]
            )?),
            quality_unlabelled: register!(IntCounterVec::new(
                Opts::new(
                    "vigie_quality_answers_unlabelled_total",
                    "Answers that stopped waiting for a label, by reason (wait: its wait ran out; capacity: the oldest of too many)"
                ),
                &["model", "reason"]
            )?),
            label_delay: register!(seconds(
                "vigie_quality_label_delay_seconds",
                "From a prediction to its label",
                vec![
                    1.0,
                    10.0,
                    60.0,
                    300.0,
                    900.0,
                    3600.0,
                    4.0 * 3600.0,
                    12.0 * 3600.0,
                    86400.0,
                    3.0 * 86400.0,
                    7.0 * 86400.0
                ]
            )?),
            quality_realised: register!(GaugeVec::new(
                Opts::new(
                    "vigie_quality_realised",
                    "Quality of a model's last labelled answers, by metric (regression: mae, rmse, mean_residual, interval_coverage, share_underestimated, share_flagged; classification: accuracy, brier, roc_auc, f1, precision, recall)"
                ),
                &["model", "metric"]
            )?),
            quality_window_labels: register!(IntGaugeVec::new(
                Opts::new(
                    "vigie_quality_window_labels",
                    "Labelled answers in a model's quality window"
                ),
                model
            )?),
            quality_waiting: register!(IntGaugeVec::new(
                Opts::new(
                    "vigie_quality_waiting",
                    "Answers waiting for their label (kind=answers) and labels read before their answer (kind=labels)"
                ),
                &["model", "kind"]
            )?),
            quality_estimated: register!(GaugeVec::new(
                Opts::new(
                    "vigie_quality_estimated",
                    "A classification's quality estimated without labels from its calibrated probabilities over the live answers (the sliding window's events), by metric: accuracy, precision, recall, f1, roc_auc"
                ),
                &["model", "metric"]
            )?),
            quality_estimated_lower: register!(GaugeVec::new(
                Opts::new(
                    "vigie_quality_estimated_lower",
                    "Lower end of the 95% band of the realised figure around vigie_quality_estimated, for the window's size"
                ),
                &["model", "metric"]
            )?),
            quality_estimated_upper: register!(GaugeVec::new(
                Opts::new(
                    "vigie_quality_estimated_upper",
                    "Upper end of the 95% band of the realised figure around vigie_quality_estimated"
                ),
                &["model", "metric"]
            )?),
            quality_holdout: register!(GaugeVec::new(
                Opts::new(
                    "vigie_quality_holdout",
                    "The production version's figure on the fixed holdout, by metric"
                ),
                &["model", "metric"]
            )?),
            quality_tolerance: register!(GaugeVec::new(
                Opts::new(
                    "vigie_quality_tolerance",
                    "How far a metric may fall short of the holdout figure before the quality alerts fire (the spec's [quality] tolerance; mae: how far above)"
                ),
                &["model", "metric"]
            )?),
            quality_min_labels: register!(IntGaugeVec::new(
                Opts::new(
                    "vigie_quality_min_labels",
                    "Labelled answers the realised quality alert needs (the spec's [quality] min_labels)"
                ),
                model
            )?),
            quality_labelled_share: register!(GaugeVec::new(
                Opts::new(
                    "vigie_quality_labelled_share",
                    "The share of the answers of the kept periods labelled so far"
                ),
                model
            )?),
            noise_threshold: register!(GaugeVec::new(
                Opts::new(
                    "vigie_drift_feature_noise_threshold",
                    "The statistic a feature's sliding window passes by chance at the feature's level, for the window's size (a feature drifts beyond it and beyond the rule's threshold, the effect floor)"
                ),
                &["model", "feature", "statistic"]
            )?),
            feature_level: register!(GaugeVec::new(
                Opts::new(
                    "vigie_drift_feature_level",
                    "The false-alarm level each feature is tested at, derived from the spec's false_alarms_per_30_days and the windows a month holds"
                ),
                model
            )?),
            prediction_quantile: register!(GaugeVec::new(
                Opts::new(
                    "vigie_drift_prediction_quantile",
                    "Quantiles of a model's answers (probabilities or estimates): of the sliding window (source=window) and of the validation slice's (source=reference), read off the reference's bins"
                ),
                &["model", "source", "quantile"]
            )?),
        })
    }
}
