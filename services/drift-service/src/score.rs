//! Scoring on a schedule, not per scrape: every period, each model's sliding window is copied
//! (under the lock: a few kilobytes of counts) and compared with its reference outside it;
//! tumbling windows are scored once, when they close. Results go to the metrics and to the
//! model's state, where `/v1/drift` reads them.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use vigie_drift::{Cadence, ClosedWindow, DriftReport, Histograms, compare_after, compare_at};

use crate::metrics::Metrics;
use crate::quality::Realised;
use crate::unseen::UnseenCodes;
use crate::watch::{ModelWatch, Reference, Scored, State, WindowScore, lock};
use vigie_model::estimate::Estimated;

struct Snapshot {
    reference: Arc<Reference>,
    sliding: Histograms,
    /// The answers of the sliding window's events, when the model's are watched.
    predicted: Option<Histograms>,
    closed: Vec<ClosedWindow>,
    noise_active: bool,
    open_events: u64,
    /// The sliding and tumbling windows' widths, seconds.
    widths: [f64; 2],
    /// The quality of the last labelled answers, and the answers and labels waiting.
    realised: Realised,
    waiting: (usize, usize),
    /// The live answers' estimated quality, and the share of the periods' answers labelled.
    estimated: Option<Estimated>,
    labelled_share: Option<f64>,
    /// How often the sliding window is a fresh sample, and the tumbling windows' width.
    sliding_cadence: Cadence,
    tumbling_cadence: Cadence,
    /// The last score of this sliding window (the rules' hysteresis holds what drifted then).
    previous: Option<Arc<Scored>>,
    /// Codes the spec does not list, every partition's summed.
    unseen: UnseenCodes,
}

/// A time in milliseconds since the epoch as a date (the epoch if out of range).
pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Scores every model once, now.
pub fn score_all(state: &Mutex<State>, metrics: &Metrics, score_seconds: f64) {
    score_at(state, metrics, score_seconds, Utc::now());
}

/// What one scoring gave a model: its sliding window's score, and the tumbling windows that
/// closed since the last scoring.
#[derive(Debug, Clone)]
pub struct ModelScores {
    pub model: String,
    pub scored: Arc<Scored>,
    pub windows: Vec<WindowScore>,
}

/// Scores every model once at `now` (the wall clock in the service; the events' clock in a
/// backtest): one code path for both. Returns what each model got.
pub fn score_at(
    state: &Mutex<State>,
    metrics: &Metrics,
    score_seconds: f64,
    now: DateTime<Utc>,
) -> Vec<ModelScores> {
    let snapshots: Vec<Snapshot> = {
        let mut state = lock(state);
        state.expire_noise(now);
        let config = state.config;
        // Windows whose end passed by the lateness on the wall clock close too, so a model
        // whose traffic stopped (or a partition gone idle) still gets its last window scored.
        let watermark = now.timestamp_millis().saturating_sub(config.lateness_ms);
        state
            .models
            .values_mut()
            .map(|w| {
                let merged = w.merged();
                let closed = merged.features.closed(
                    config.tumbling_ms,
                    w.tumbling_scored_until_ms,
                    watermark,
                );
                if let Some(last) = closed.last() {
                    w.tumbling_scored_until_ms = last.end_ms;
                }
                // Panes in no window left to score go: scored, and older than the widest
                // window.
                let newest = merged.features.max_time_ms();
                if let Some(newest) = newest {
                    let old = newest.saturating_sub(config.keep_ms());
                    let forget = old.min(w.tumbling_scored_until_ms);
                    for counts in w.partitions.values_mut() {
                        counts.forget_before(forget);
                    }
                    for quality in w.quality.values_mut() {
                        quality.forget_before(forget);
                    }
                }
                for quality in w.quality.values_mut() {
                    quality.expire(now.timestamp_millis());
                }
                let quality = w.quality_sum();
                Snapshot {
                    reference: w.reference.clone(),
                    sliding: merged.features.sliding(config.sliding_ms),
                    predicted: merged
                        .answers
                        .as_ref()
                        .map(|a| a.sliding_to(merged.features.max_time_ms(), config.sliding_ms)),
                    closed,
                    noise_active: w.noise.is_some(),
                    open_events: merged.features.rows_from(w.tumbling_scored_until_ms),
                    widths: [
                        config.sliding_ms as f64 / 1000.0,
                        config.tumbling_ms as f64 / 1000.0,
                    ],
                    realised: quality.realised(w.reference.regression_margin),
                    waiting: quality.waiting(),
                    estimated: quality.estimate(newest),
                    labelled_share: quality.labelled_share(),
                    sliding_cadence: Cadence::sliding(
                        config.sliding_ms as f64 / 1000.0,
                        score_seconds,
                    ),
                    tumbling_cadence: Cadence::tumbling(config.tumbling_ms as f64 / 1000.0),
                    previous: w.last.clone(),
                    unseen: merged.unseen,
                }
            })
            .collect()
    };
    let mut results = Vec::with_capacity(snapshots.len());
    for snap in snapshots {
        let started = Instant::now();
        let reference = &snap.reference;
        let cadence = snap.sliding_cadence;
        let previous = snap.previous.as_deref();
        let report = compare_after(
            &reference.profile,
            &snap.sliding,
            &reference.rules,
            cadence,
            previous.map(|s| &s.report),
        );
        let predictions = reference
            .predictions
            .as_ref()
            .zip(snap.predicted.as_ref())
            .map(|(p, h)| {
                let before = previous.and_then(|s| s.predictions.as_ref());
                compare_after(&p.profile, h, &reference.rules, cadence, before)
            });
        metrics
            .scoring_seconds
            .observe(started.elapsed().as_secs_f64());
        publish(metrics, reference, &report, &snap, now);
        publish_predictions(metrics, reference, predictions.as_ref());
        publish_answers(metrics, reference, snap.predicted.as_ref());
        publish_quality(metrics, reference, &snap);
        let windows: Vec<WindowScore> = snap
            .closed
            .iter()
            .map(|c| WindowScore {
                start: time(c.start_ms),
                end: time(c.end_ms),
                events: c.histograms.rows(),
                report: compare_at(
                    &reference.profile,
                    &c.histograms,
                    &reference.rules,
                    snap.tumbling_cadence,
                ),
            })
            .collect();
        if let Some(last) = windows.iter().rev().find(|w| w.report.scored) {
            metrics
                .tumbling_score
                .with_label_values(&[&reference.model])
                .set(last.report.score);
        }
        let scored = Scored {
            at: now,
            version: reference.version,
            noise_active: snap.noise_active,
            report,
            predictions,
        };
        results.push((snap.reference, scored, windows, snap.unseen));
    }
    let mut state = lock(state);
    let config = state.config;
    let State {
        models, history, ..
    } = &mut *state;
    let mut scores = Vec::with_capacity(results.len());
    for (reference, scored, windows, unseen) in results {
        // A promotion between the copy and now replaced the windows: the result is stale.
        let Some(watch) = models
            .get_mut(&reference.model)
            .filter(|w| Arc::ptr_eq(&w.reference, &reference))
        else {
            continue;
        };
        let scored = Arc::new(scored);
        Arc::make_mut(history.entry(reference.model.clone()).or_default()).record(
            &scored,
            scored.report.current_rows,
            config.history_step_ms,
            config.history_points,
        );
        watch.last = Some(scored.clone());
        publish_unseen(metrics, watch, &unseen);
        watch.tumbling_scores.extend(windows.iter().cloned());
        while watch.tumbling_scores.len() > config.retain {
            watch.tumbling_scores.pop_front();
        }
        scores.push(ModelScores {
            model: reference.model.clone(),
            scored,
            windows,
        });
    }
    scores
}

fn publish(
    metrics: &Metrics,
    reference: &Reference,
    report: &DriftReport,
    snap: &Snapshot,
    now: DateTime<Utc>,
) {
    let model = reference.model.as_str();
    metrics
        .window_events
        .with_label_values(&[model, "sliding"])
        .set(snap.sliding.rows() as i64);
    metrics
        .window_events
        .with_label_values(&[model, "tumbling_open"])
        .set(snap.open_events as i64);
    for (window, width) in ["sliding", "tumbling"].into_iter().zip(snap.widths) {
        metrics
            .window_width
            .with_label_values(&[model, window])
            .set(width);
    }
    metrics
        .threshold
        .with_label_values(&[model])
        .set(report.dataset_share);
    metrics
        .last_scored
        .with_label_values(&[model])
        .set(now.timestamp_millis() as f64 / 1000.0);
    if !report.scored {
        // Below the minimum sample size nothing is published: no score is better than a
        // score of noise.
        let _ = metrics.score.remove_label_values(&[model]);
        let _ = metrics.dataset_drifted.remove_label_values(&[model]);
        let _ = metrics.feature_level.remove_label_values(&[model]);
        for f in &report.features {
            let labels = [model, &f.name, f.rule.statistic.name()];
            let _ = metrics.feature_score.remove_label_values(&labels);
            let _ = metrics.noise_threshold.remove_label_values(&labels);
            let _ = metrics
                .feature_drifted
                .remove_label_values(&[model, &f.name]);
        }
        return;
    }
    metrics.score.with_label_values(&[model]).set(report.score);
    metrics
        .dataset_drifted
        .with_label_values(&[model])
        .set(i64::from(report.dataset_drifted));
    match report.feature_level {
        Some(level) => metrics.feature_level.with_label_values(&[model]).set(level),
        None => {
            let _ = metrics.feature_level.remove_label_values(&[model]);
        }
    }
    for f in &report.features {
        let labels = [model, &f.name, f.rule.statistic.name()];
        metrics
            .feature_score
            .with_label_values(&labels)
            .set(f.score);
        match f.noise_threshold {
            Some(t) => metrics.noise_threshold.with_label_values(&labels).set(t),
            None => {
                let _ = metrics.noise_threshold.remove_label_values(&labels);
            }
        }
        metrics
            .feature_drifted
            .with_label_values(&[model, &f.name])
            .set(i64::from(f.drifted));
    }
}

/// The answers' drift: its statistic and decision, or nothing below the minimum sample size
/// (or for a model whose answers have no reference).
fn publish_predictions(metrics: &Metrics, reference: &Reference, report: Option<&DriftReport>) {
    let model = reference.model.as_str();
    match report.and_then(|r| r.features.first().filter(|_| r.scored)) {
        Some(f) => {
            metrics
                .prediction_score
                .with_label_values(&[model, f.rule.statistic.name()])
                .set(f.score);
            metrics
                .prediction_drifted
                .with_label_values(&[model])
                .set(i64::from(f.drifted));
        }
        None => unpublish_predictions(metrics, reference),
    }
}

fn unpublish_predictions(metrics: &Metrics, reference: &Reference) {
    let model = reference.model.as_str();
    if let Some(p) = &reference.predictions {
        for f in &p.profile.features {
            let rule = reference.rules.rule(f);
            let _ = metrics
                .prediction_score
                .remove_label_values(&[model, rule.statistic.name()]);
        }
    }
    let _ = metrics.prediction_drifted.remove_label_values(&[model]);
}

/// The quantiles of the answers exported, as Prometheus labels.
const QUANTILES: [(f64, &str); 3] = [(0.1, "0.1"), (0.5, "0.5"), (0.9, "0.9")];

/// Quantiles of the answers (a regression's estimates, a classification's probabilities): the
/// sliding window's and the validation slice's, both read off the reference's bins.
fn publish_answers(metrics: &Metrics, reference: &Reference, window: Option<&Histograms>) {
    let model = reference.model.as_str();
    let Some(profile) = reference
        .predictions
        .as_ref()
        .and_then(|p| p.profile.features.first())
    else {
        return;
    };
    let sources = [
        ("reference", Some(profile.counts())),
        ("window", window.map(|h| h.feature(0))),
    ];
    for (source, counts) in sources {
        for (q, name) in QUANTILES {
            let gauge = [model, source, name];
            match counts.and_then(|c| profile.quantile(c, q)) {
                Some(v) => metrics.prediction_quantile.with_label_values(&gauge).set(v),
                None => {
                    let _ = metrics.prediction_quantile.remove_label_values(&gauge);
                }
            }
        }
    }
}

/// The realised quality of the last labelled answers (nothing before the first label), the
/// estimated quality of the live answers (nothing before the first answer), and what the
/// quality alerts compare them with.
fn publish_quality(metrics: &Metrics, reference: &Reference, snap: &Snapshot) {
    let (realised, (answers, labels)) = (&snap.realised, snap.waiting);
    let model = reference.model.as_str();
    let set = |gauge: &prometheus::GaugeVec, metric: &str, value: Option<f64>| match value {
        Some(v) => gauge.with_label_values(&[model, metric]).set(v),
        None => {
            let _ = gauge.remove_label_values(&[model, metric]);
        }
    };
    for name in Estimated::NAMES {
        let band = snap.estimated.as_ref().and_then(|e| e.figure(name));
        set(&metrics.quality_estimated, name, band.map(|b| b.value));
        set(
            &metrics.quality_estimated_lower,
            name,
            band.map(|b| b.lower),
        );
        set(
            &metrics.quality_estimated_upper,
            name,
            band.map(|b| b.upper),
        );
    }
    let targets = &reference.quality;
    for (name, &value) in &targets.holdout {
        set(&metrics.quality_holdout, name, Some(value));
    }
    for (name, &value) in &targets.tolerance {
        set(&metrics.quality_tolerance, name, Some(value));
    }
    metrics
        .quality_min_labels
        .with_label_values(&[model])
        .set(i64::from(targets.min_labels));
    match snap.labelled_share {
        Some(share) => metrics
            .quality_labelled_share
            .with_label_values(&[model])
            .set(share),
        None => {
            let _ = metrics.quality_labelled_share.remove_label_values(&[model]);
        }
    }
    metrics
        .quality_window_labels
        .with_label_values(&[model])
        .set(realised.labels as i64);
    for (kind, n) in [("answers", answers), ("labels", labels)] {
        metrics
            .quality_waiting
            .with_label_values(&[model, kind])
            .set(n as i64);
    }
    let present = realised.metrics();
    for name in Realised::NAMES {
        let value = present.iter().find(|(n, _)| *n == name).map(|&(_, v)| v);
        set(&metrics.quality_realised, name, value);
    }
}

/// Unseen codes published per feature.
pub const UNSEEN_PUBLISHED: usize = 5;

/// Publishes each feature's most frequent unseen codes, and forgets the series of codes that
/// left the top.
fn publish_unseen(metrics: &Metrics, watch: &mut ModelWatch, unseen: &UnseenCodes) {
    let model = watch.reference.model.as_str();
    let mut published = Vec::new();
    for (f, unseen) in watch
        .reference
        .profile
        .features
        .iter()
        .zip(&unseen.features)
    {
        for (code, events) in unseen.top(UNSEEN_PUBLISHED) {
            metrics
                .unseen_code_events
                .with_label_values(&[model, f.name(), code])
                .set(events as i64);
            published.push((f.name().to_string(), code.to_string()));
        }
    }
    for (feature, code) in &watch.unseen_published {
        if !published.iter().any(|(f, c)| f == feature && c == code) {
            let _ = metrics
                .unseen_code_events
                .remove_label_values(&[model, feature, code]);
        }
    }
    watch.unseen_published = published;
}

/// Forgets a model's published series (its reference changed: the old features may differ).
pub fn unpublish(metrics: &Metrics, reference: &Reference) {
    unpublish_predictions(metrics, reference);
    let model = reference.model.as_str();
    for source in ["reference", "window"] {
        for (_, name) in QUANTILES {
            let _ = metrics
                .prediction_quantile
                .remove_label_values(&[model, source, name]);
        }
    }
    let _ = metrics.score.remove_label_values(&[model]);
    let _ = metrics.dataset_drifted.remove_label_values(&[model]);
    let _ = metrics.tumbling_score.remove_label_values(&[model]);
    let _ = metrics.feature_level.remove_label_values(&[model]);
    for f in &reference.profile.features {
        let rule = reference.rules.rule(f);
        let labels = [model, f.name(), rule.statistic.name()];
        let _ = metrics.feature_score.remove_label_values(&labels);
        let _ = metrics.noise_threshold.remove_label_values(&labels);
        let _ = metrics
            .feature_drifted
            .remove_label_values(&[model, f.name()]);
    }
}
