//! Backtesting: the live service's windows, decisions and alert, run offline over a stream of
//! events, to see what a spec's rules would have said before they are deployed.
//!
//! One code path: events go through [`State::apply`] (decoding, noise, the sliding and tumbling
//! windows), labels through [`State::apply_label`] (the join, the periods) and scorings through
//! [`score_at`], exactly as in the service; only the clock differs. The service scores on the
//! wall clock; a backtest scores on the events' (and labels') own clock, every scoring period
//! of event time, and evaluates the data-set alert and the quality alerts the way the shipped
//! Prometheus rules do (held for their `for`).
//!
//! Two simplifications, both about time without input: a scoring period with no new event or
//! label is not scored (the windows are the ones already scored; a gap of days would otherwise
//! make thousands of identical scorings), and the alerts are evaluated at scorings only
//! (Prometheus evaluates them on its own schedule, a few seconds apart).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use vigie_drift::DriftReport;
use vigie_synthetic::{Injector, NoiseSpec};

use crate::decode::Envelope;
use crate::metrics::Metrics;
use crate::quality::PeriodView;
use crate::score::{ModelScores, score_at, time};
use crate::watch::{ActiveNoise, Applied, Reference, State, WindowConfig, lock};
use vigie_core::spec::QualitySpec;

/// How a backtest windows, scores and alerts.
#[derive(Debug, Clone)]
pub struct BacktestConfig {
    pub windows: WindowConfig,
    /// The scoring period, in milliseconds of event time.
    pub score_ms: i64,
    /// How long the data set must stay drifted before the alert fires, in milliseconds (the
    /// shipped rule's `for: 2m`).
    pub alert_for_ms: i64,
    /// Noise injected into the events from the `after`-th counted one on (0: from the first).
    pub noise: Option<(NoiseSpec, u64)>,
}

/// The data-set alert at a scoring, as Prometheus would have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Inactive,
    /// Drifted, for less than the alert's `for`.
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One feature's decision in a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureDecision {
    pub name: String,
    pub statistic: &'static str,
    pub score: f64,
    /// The noise threshold for this window's size (absent without null distributions).
    pub noise_threshold: Option<f64>,
    /// The effect floor (the rule's threshold).
    pub floor: f64,
    pub drifted: bool,
    /// Drifted at the last scoring, judged against the lower bounds of the rules' hysteresis.
    pub held: bool,
}

/// A scored window: the sliding window at a scoring, or a tumbling window once closed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowRecord {
    /// "sliding" or "tumbling".
    pub window: &'static str,
    /// The scoring's time (sliding), the window's end (tumbling).
    pub at: DateTime<Utc>,
    /// A tumbling window's start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    /// Events counted so far (sliding); in the window (tumbling).
    pub events: u64,
    /// Events in the window.
    pub rows: u64,
    pub scored: bool,
    pub score: f64,
    pub drifted_features: usize,
    pub dataset_drifted: bool,
    pub feature_level: Option<f64>,
    pub windows_per_30_days: f64,
    pub noise_active: bool,
    /// The data-set alert after this scoring (sliding windows only: the alert watches them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertState>,
    pub features: Vec<FeatureDecision>,
}

impl WindowRecord {
    fn of(
        window: &'static str,
        at: DateTime<Utc>,
        start: Option<DateTime<Utc>>,
        events: u64,
        report: &DriftReport,
    ) -> Self {
        WindowRecord {
            window,
            at,
            start,
            events,
            rows: report.current_rows,
            scored: report.scored,
            score: report.score,
            drifted_features: report.drifted_features,
            dataset_drifted: report.dataset_drifted,
            feature_level: report.feature_level,
            windows_per_30_days: report.windows_per_30_days,
            noise_active: false,
            alert: None,
            features: report
                .features
                .iter()
                .map(|f| FeatureDecision {
                    name: f.name.clone(),
                    statistic: f.rule.statistic.name(),
                    score: f.score,
                    noise_threshold: f.noise_threshold,
                    floor: f.rule.threshold,
                    drifted: f.drifted,
                    held: f.held,
                })
                .collect(),
        }
    }
}

/// A firing of the data-set alert: when the data set started to drift, when the alert fired
/// (and after how many events), and when it resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Firing {
    pub pending_at: DateTime<Utc>,
    pub pending_events: u64,
    pub fired_at: DateTime<Utc>,
    pub fired_events: u64,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// What a backtest read and decided.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub model: String,
    pub version: u32,
    /// Messages read, and those counted into the windows.
    pub read: u64,
    pub counted: u64,
    /// Messages not counted, by reason (as `vigie_drift_events_skipped_total` names them).
    pub skipped: BTreeMap<&'static str, u64>,
    pub first_event: Option<DateTime<Utc>>,
    pub last_event: Option<DateTime<Utc>>,
    /// Sliding-window scorings, those with enough events to decide, and those where the data
    /// set drifted.
    pub scorings: u64,
    pub scored: u64,
    pub dataset_drifted: u64,
    /// Closed tumbling windows, scored and drifted.
    pub tumbling: u64,
    pub tumbling_scored: u64,
    pub tumbling_drifted: u64,
    /// Per feature (model order): the scored sliding windows where it drifted.
    pub feature_drifted: Vec<(String, u64)>,
    /// Every firing of the data-set alert.
    pub alerts: Vec<Firing>,
    /// The counted event the noise started at.
    pub noise_from_event: Option<u64>,
    /// Labels read, by what became of them (as `vigie_quality_labels_total` names them).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<&'static str, u64>,
    /// Every firing of a quality alert, as the shipped rules would have it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quality_alerts: Vec<QualityFiring>,
}

/// A firing of a quality alert: which figure (estimated or realised) of which metric fell
/// short of the holdout figure by more than the tolerance, from when, and after how many
/// events it fired.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityFiring {
    /// "estimated" (`VigieQualityEstimatedDrop`) or "realised" (`VigieQualityRealisedDrop`).
    pub source: &'static str,
    pub metric: String,
    pub value: f64,
    pub bound: f64,
    pub pending_at: DateTime<Utc>,
    pub pending_events: u64,
    pub fired_at: DateTime<Utc>,
    pub fired_events: u64,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A backtest in progress: feed it events in their order, then [`Backtest::finish`] it.
#[derive(Debug)]
pub struct Backtest {
    state: Mutex<State>,
    metrics: Metrics,
    config: BacktestConfig,
    model: String,
    score_seconds: f64,
    /// The next scoring, once the first event set the clock.
    next_score_ms: Option<i64>,
    /// The latest event time seen.
    clock_ms: i64,
    /// Events counted since the last scoring.
    fresh: bool,
    /// The noise to start, and the counted event it starts at (until it starts).
    noise: Option<(Injector, u64)>,
    /// When the data set started to drift (time, events), while it still does.
    drifting_since: Option<(i64, u64)>,
    /// Per (source, metric): since when (time, events) the figure is short, while it is.
    short_since: BTreeMap<(&'static str, String), (i64, u64)>,
    summary: Summary,
}

impl Backtest {
    /// A backtest of `reference`'s model; an error when the noise does not fit its features.
    pub fn new(reference: Reference, config: BacktestConfig) -> Result<Self, String> {
        config.windows.check()?;
        // The service's metrics, in a registry of their own: the same code counts and exports.
        let metrics = Metrics::register(&prometheus::Registry::new())
            .map_err(|e| format!("cannot register the metrics: {e}"))?;
        let noise = match &config.noise {
            Some((spec, after)) => Some((
                Injector::new(spec.clone(), &reference.profile).map_err(|e| e.to_string())?,
                *after,
            )),
            None => None,
        };
        let summary = Summary {
            model: reference.model.clone(),
            version: reference.version,
            feature_drifted: reference
                .profile
                .features
                .iter()
                .map(|f| (f.name().to_string(), 0))
                .collect(),
            ..Summary::default()
        };
        let model = reference.model.clone();
        let mut state = State::new(config.windows, metrics.clone());
        state.set_reference(Arc::new(reference));
        Ok(Backtest {
            state: Mutex::new(state),
            metrics,
            score_seconds: config.score_ms as f64 / 1000.0,
            config,
            model,
            next_score_ms: None,
            clock_ms: i64::MIN,
            fresh: false,
            noise,
            drifting_since: None,
            short_since: BTreeMap::new(),
            summary,
        })
    }

    /// Reads one message of a predictions topic (or an event built from a file's row), at its
    /// partition and offset. The windows scored before it, if its time passed a scoring, are
    /// added to `out`.
    pub fn event(
        &mut self,
        partition: i32,
        offset: i64,
        payload: &[u8],
        out: &mut Vec<WindowRecord>,
    ) -> Applied {
        if let Ok(envelope) = Envelope::parse(payload) {
            self.advance_to(envelope.time_ms(), out);
        }
        self.start_noise();
        let now_ms = self.clock_ms.max(0);
        let applied = lock(&self.state).apply(partition, offset, payload, now_ms);
        self.summary.read += 1;
        match applied {
            Applied::Counted { .. } => {
                self.summary.counted += 1;
                self.fresh = true;
            }
            Applied::Skipped(skip) => *self.summary.skipped.entry(skip.as_str()).or_insert(0) += 1,
        }
        applied
    }

    /// Reads one message of a labels topic (or a label built from a target file), at its
    /// offset; its time moves the clock as an event's does, and the scoring period it falls in
    /// is scored.
    pub fn label(&mut self, offset: i64, at_ms: i64, payload: &[u8], out: &mut Vec<WindowRecord>) {
        self.advance_to(at_ms, out);
        let now_ms = self.clock_ms.max(0);
        let outcome = lock(&self.state).apply_label(0, offset, payload, now_ms);
        // A label changes the realised quality: the next period is scored.
        self.fresh = true;
        let name = match outcome {
            Ok(outcome) => outcome.as_str(),
            Err(skip) => skip.as_str(),
        };
        *self.summary.labels.entry(name).or_insert(0) += 1;
    }

    /// The model's periods: answers, labels, estimated and realised quality, oldest first.
    pub fn periods(&self) -> Vec<PeriodView> {
        lock(&self.state)
            .models
            .get(&self.model)
            .map(|w| w.quality_sum().periods())
            .unwrap_or_default()
    }

    /// Scores the windows at the end of the stream (every tumbling window closes) and returns
    /// what the backtest found.
    pub fn finish(mut self, out: &mut Vec<WindowRecord>) -> Summary {
        if self.next_score_ms.is_some() {
            let w = &self.config.windows;
            let end = self
                .clock_ms
                .saturating_add(self.config.score_ms.max(w.tumbling_ms + w.lateness_ms));
            self.score(end, out);
            self.summary.last_event = Some(time(self.clock_ms));
        }
        self.summary
    }

    /// Starts the noise once its first event is next.
    fn start_noise(&mut self) {
        if self
            .noise
            .as_ref()
            .is_none_or(|(_, after)| self.summary.counted < *after)
        {
            return;
        }
        let mut state = lock(&self.state);
        let Some(watch) = state.models.get_mut(&self.model) else {
            return;
        };
        let Some((injector, _)) = self.noise.take() else {
            return;
        };
        let at = time(self.clock_ms.max(0));
        watch.start_noise(ActiveNoise {
            injector,
            started_at: at,
            expires_at: DateTime::<Utc>::MAX_UTC,
            by: "backtest".into(),
            events_noised: 0,
            events_seen: 0,
        });
        self.summary.noise_from_event = Some(self.summary.counted);
    }

    /// Moves the clock to an event's time, scoring every period it passes that has new events.
    fn advance_to(&mut self, time_ms: i64, out: &mut Vec<WindowRecord>) {
        let period = self.config.score_ms.max(1);
        let Some(mut next) = self.next_score_ms else {
            self.next_score_ms = Some(time_ms.saturating_add(period));
            self.clock_ms = time_ms;
            self.summary.first_event = Some(time(time_ms));
            return;
        };
        if time_ms < next {
            self.clock_ms = self.clock_ms.max(time_ms);
            return;
        }
        if self.fresh {
            self.score(next, out);
            next = next.saturating_add(period);
        }
        // The periods after it, up to this event, have no new event: one step over them.
        if time_ms >= next {
            next = next.saturating_add((time_ms - next) / period * period + period);
        }
        self.next_score_ms = Some(next);
        self.clock_ms = self.clock_ms.max(time_ms);
    }

    /// One scoring at `now_ms`, through the service's scorer.
    fn score(&mut self, now_ms: i64, out: &mut Vec<WindowRecord>) {
        self.fresh = false;
        let scores = score_at(&self.state, &self.metrics, self.score_seconds, time(now_ms));
        for ModelScores {
            scored, windows, ..
        } in scores
        {
            let report = &scored.report;
            let summary = &mut self.summary;
            summary.scorings += 1;
            summary.scored += u64::from(report.scored);
            summary.dataset_drifted += u64::from(report.dataset_drifted);
            for (count, f) in summary.feature_drifted.iter_mut().zip(&report.features) {
                count.1 += u64::from(f.drifted);
            }
            let alert = self.alert(now_ms, report.scored && report.dataset_drifted);
            let mut record =
                WindowRecord::of("sliding", scored.at, None, self.summary.counted, report);
            record.alert = Some(alert);
            record.noise_active = scored.noise_active;
            out.push(record);
            self.quality_alerts(now_ms);
            for w in &windows {
                self.summary.tumbling += 1;
                self.summary.tumbling_scored += u64::from(w.report.scored);
                self.summary.tumbling_drifted += u64::from(w.report.dataset_drifted);
                out.push(WindowRecord::of(
                    "tumbling",
                    w.end,
                    Some(w.start),
                    w.events,
                    &w.report,
                ));
            }
        }
    }

    /// The quality alerts after a scoring, as `alerting/vigie.rules.yml` has them: the live
    /// estimate, and the realised figure once the window holds `min_labels` labels, against
    /// the holdout figure and the tolerance.
    fn quality_alerts(&mut self, now_ms: i64) {
        let figures: Vec<(&'static str, String, f64, f64)> = {
            let state = lock(&self.state);
            let Some(w) = state.models.get(&self.model) else {
                return;
            };
            let targets = &w.reference.quality;
            let quality = w.quality_sum();
            let estimated = quality.estimate(w.newest_ms());
            let realised = quality.realised(w.reference.regression_margin);
            let enough = realised.labels >= targets.min_labels as usize;
            let realised = realised.metrics();
            let mut figures = Vec::new();
            for (metric, &tolerance) in &targets.tolerance {
                let Some(&holdout) = targets.holdout.get(metric.as_str()) else {
                    continue;
                };
                let bound = if QualitySpec::higher_is_better(metric) {
                    holdout - tolerance
                } else {
                    holdout + tolerance
                };
                if let Some(e) = estimated.as_ref().and_then(|e| e.figure(metric)) {
                    figures.push(("estimated", metric.clone(), e.value, bound));
                }
                if enough && let Some(&(_, r)) = realised.iter().find(|(n, _)| n == metric) {
                    figures.push(("realised", metric.clone(), r, bound));
                }
            }
            figures
        };
        let counted = self.summary.counted;
        for (source, metric, value, bound) in figures {
            let short = if QualitySpec::higher_is_better(&metric) {
                value < bound
            } else {
                value > bound
            };
            let key = (source, metric.clone());
            let open = self
                .summary
                .quality_alerts
                .iter_mut()
                .rev()
                .find(|f| f.source == source && f.metric == metric && f.resolved_at.is_none());
            if !short {
                self.short_since.remove(&key);
                if let Some(firing) = open {
                    firing.resolved_at = Some(time(now_ms));
                }
                continue;
            }
            let (since, since_events) = *self.short_since.entry(key).or_insert((now_ms, counted));
            if now_ms - since < self.config.alert_for_ms || open.is_some() {
                continue;
            }
            self.summary.quality_alerts.push(QualityFiring {
                source,
                metric,
                value,
                bound,
                pending_at: time(since),
                pending_events: since_events,
                fired_at: time(now_ms),
                fired_events: counted,
                resolved_at: None,
            });
        }
    }

    /// The alert after a scoring where the data set did (or did not) drift.
    fn alert(&mut self, now_ms: i64, drifted: bool) -> AlertState {
        if !drifted {
            self.drifting_since = None;
            if let Some(firing) = self
                .summary
                .alerts
                .last_mut()
                .filter(|f| f.resolved_at.is_none())
            {
                firing.resolved_at = Some(time(now_ms));
            }
            return AlertState::Inactive;
        }
        let counted = self.summary.counted;
        let (since, since_events) = *self.drifting_since.get_or_insert((now_ms, counted));
        if now_ms - since < self.config.alert_for_ms {
            return AlertState::Pending;
        }
        let firing = self
            .summary
            .alerts
            .last()
            .is_some_and(|f| f.resolved_at.is_none());
        if !firing {
            self.summary.alerts.push(Firing {
                pending_at: time(since),
                pending_events: since_events,
                fired_at: time(now_ms),
                fired_events: counted,
                resolved_at: None,
            });
        }
        AlertState::Firing
    }
}

#[cfg(test)]
mod tests;
