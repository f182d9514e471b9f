//! Each model's drift over time, for the pages: at most one point per history step (the
//! scoring's result then: the dataset score, each feature's statistic and decision, whether
//! noise was injected), in a ring of a bounded number of points. Every instance of a group
//! scores the same sums, so every instance keeps the same history; it is saved in the registry
//! under [`key`] beside the partitions' checkpoints (the last instance to save wins, with the
//! same points) and read back at start, so that a restarted instance still shows the hours
//! before.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::state::AppState;
use crate::watch::lock;

use crate::watch::Scored;

/// The format of the saved histories; another is not read (the history starts again).
pub const FORMAT: u32 = 1;

/// The registry key of a group's histories (apart from the partitions' `GROUP/PARTITION`).
pub fn key(group: &str) -> String {
    format!("history/{group}")
}

/// One feature at one point: its index in [`History::features`], its statistic, its noise
/// threshold, and whether it drifted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeaturePoint {
    #[serde(rename = "i")]
    pub index: u16,
    #[serde(rename = "s")]
    pub statistic: f32,
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    #[serde(rename = "d")]
    pub drifted: bool,
}

/// A model's drift at one scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// When it was scored, milliseconds since the epoch.
    pub at_ms: i64,
    /// The reference version scored against.
    pub version: u32,
    /// Events in the sliding window.
    pub events: u64,
    /// The dataset score (the share of features drifted); absent below the minimum sample
    /// size.
    pub score: Option<f64>,
    /// The share of drifted features that makes the dataset drifted.
    pub threshold: f64,
    pub drifted: bool,
    pub noise: bool,
    /// Each feature scored (none below the minimum sample size).
    pub features: Vec<FeaturePoint>,
}

/// A model's points, oldest first, and the names their feature indices refer to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Every feature name seen, in the order first seen (a new reference version may add
    /// some; none is removed, so old points keep their meaning).
    pub features: Vec<String>,
    pub points: VecDeque<Point>,
}

impl History {
    /// Records `scored` (with `events` in the window) when the last point is at least
    /// `step_ms` older, dropping the oldest points past `capacity`. Returns whether it did.
    pub fn record(&mut self, scored: &Scored, events: u64, step_ms: i64, capacity: usize) -> bool {
        let at_ms = scored.at.timestamp_millis();
        if self
            .points
            .back()
            .is_some_and(|last| at_ms - last.at_ms < step_ms)
        {
            return false;
        }
        let report = &scored.report;
        let features = if report.scored {
            report
                .features
                .iter()
                // A statistic that is not a number is left out (JSON cannot hold it).
                .filter(|f| f.score.is_finite())
                .filter_map(|f| {
                    let index = self.index_of(&f.name)?;
                    Some(FeaturePoint {
                        index,
                        statistic: f.score as f32,
                        threshold: f
                            .noise_threshold
                            .filter(|t| t.is_finite())
                            .map(|t| t as f32),
                        drifted: f.drifted,
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        self.points.push_back(Point {
            at_ms,
            version: scored.version,
            events,
            score: (report.scored && report.score.is_finite()).then_some(report.score),
            threshold: if report.dataset_share.is_finite() {
                report.dataset_share
            } else {
                0.0
            },
            drifted: report.scored && report.dataset_drifted,
            noise: scored.noise_active,
            features,
        });
        while self.points.len() > capacity.max(1) {
            self.points.pop_front();
        }
        true
    }

    /// Puts the points of `older` (a saved history) that come before this one's in front of
    /// them, their features' indices translated to this history's names; keeps the newest
    /// `capacity` points.
    pub fn absorb_older(&mut self, older: History, capacity: usize) {
        let first = self.points.front().map_or(i64::MAX, |p| p.at_ms);
        let mut points: VecDeque<Point> =
            VecDeque::with_capacity(older.points.len() + self.points.len());
        for mut point in older.points.into_iter().filter(|p| p.at_ms < first) {
            point.features = point
                .features
                .into_iter()
                .filter_map(|mut f| {
                    let name = older.features.get(usize::from(f.index))?;
                    f.index = self.index_of(name)?;
                    Some(f)
                })
                .collect();
            points.push_back(point);
        }
        points.extend(self.points.drain(..));
        while points.len() > capacity.max(1) {
            points.pop_front();
        }
        self.points = points;
    }

    /// The index of feature `name`, added when new; `None` past the indices a point holds.
    fn index_of(&mut self, name: &str) -> Option<u16> {
        let at = match self.features.iter().position(|f| f == name) {
            Some(at) => at,
            None => {
                self.features.push(name.to_string());
                self.features.len() - 1
            }
        };
        u16::try_from(at).ok()
    }

    /// Feature `name` at each point where it was scored: when, its statistic, its threshold,
    /// whether it drifted.
    pub fn feature(&self, name: &str) -> Vec<(i64, &FeaturePoint)> {
        let Some(index) = self.features.iter().position(|f| f == name) else {
            return Vec::new();
        };
        self.points
            .iter()
            .filter_map(|p| {
                p.features
                    .iter()
                    .find(|f| usize::from(f.index) == index)
                    .map(|f| (p.at_ms, f))
            })
            .collect()
    }
}

/// What is saved: every model's history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub format: u32,
    pub models: BTreeMap<String, History>,
}

/// Reads the group's saved histories back (see [`crate::history`]) into the state, in front of
/// what was scored since the start. A history that cannot be read (another format, not JSON) is
/// logged and replaced at the next save; a registry that does not answer is asked again at the
/// next save, which waits for it (the saved hours are not overwritten by a short new history).
pub async fn load(app: &AppState) {
    let key = key(&app.config.group);
    let saved = match app.registry().checkpoint(&key).await {
        Ok(saved) => saved,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the drift history yet; trying again before saving it");
            return;
        }
    };
    let models = match saved.map(|s| serde_json::from_str::<Saved>(&s.state)) {
        None => BTreeMap::new(),
        Some(Ok(history)) if history.format == FORMAT => history.models,
        Some(Ok(history)) => {
            tracing::warn!(
                format = history.format,
                "a drift history of another format: it starts again"
            );
            BTreeMap::new()
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "unreadable drift history: it starts again");
            BTreeMap::new()
        }
    };
    let points: usize = models.values().map(|h| h.points.len()).sum();
    if points > 0 {
        tracing::info!(models = models.len(), points, "drift history read back");
    }
    let mut state = lock(&app.state);
    let capacity = state.config.history_points;
    for (model, older) in models {
        match state.history.get_mut(&model) {
            Some(current) => Arc::make_mut(current).absorb_older(older, capacity),
            None => {
                state.history.insert(model, Arc::new(older));
            }
        }
    }
    state.history_read = true;
}

/// Saves every model's history in the registry (once the saved one has been read back).
pub async fn save(app: &AppState) {
    if !lock(&app.state).history_read {
        load(app).await;
    }
    let histories: Vec<(String, Arc<History>)> = {
        let state = lock(&app.state);
        if !state.history_read || state.history.is_empty() {
            return;
        }
        state
            .history
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    // Serialised off the state's lock: the histories are shared, not copied.
    let text = serde_json::to_string(&SavedRef {
        format: FORMAT,
        models: histories.iter().map(|(k, v)| (k.as_str(), &**v)).collect(),
    });
    let text = match text {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise the drift history");
            return;
        }
    };
    let key = key(&app.config.group);
    if let Err(e) = app
        .registry()
        .save_checkpoint(&key, &text, chrono::Utc::now().timestamp())
        .await
    {
        tracing::warn!(error = %e, "cannot save the drift history; trying again later");
    }
}

/// [`Saved`] borrowing the histories.
#[derive(Debug, Serialize)]
pub struct SavedRef<'a> {
    pub format: u32,
    pub models: BTreeMap<&'a str, &'a History>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use vigie_drift::DriftReport;

    fn scored(at_ms: i64, drifted: &[(&str, bool)]) -> Scored {
        let mut report: DriftReport = serde_json::from_value(serde_json::json!({
            "reference_rows": 100, "current_rows": 50, "min_rows": 10, "scored": true,
            "features": [], "drifted_features": 0, "score": 0.5, "dataset_share": 0.5,
            "dataset_drifted": true
        }))
        .unwrap();
        for (name, d) in drifted {
            let mut f: vigie_drift::FeatureDrift = serde_json::from_value(serde_json::json!({
                "name": name, "kind": "numerical",
                "statistics": {"tvd": 0.25, "correlation": 0.9, "psi": 0.25, "js_distance": 0.1,
                    "wasserstein": null, "chi_square_p": 0.01, "ks_p": null},
                "rule": {"statistic": "psi", "threshold": 0.1},
                "score": 0.25, "drifted": d
            }))
            .unwrap();
            f.noise_threshold = Some(0.125);
            report.features.push(f);
        }
        Scored {
            at: chrono::Utc.timestamp_millis_opt(at_ms).unwrap(),
            version: 3,
            noise_active: false,
            report,
            predictions: None,
        }
    }

    #[test]
    fn one_point_per_step_and_no_more_than_the_capacity() {
        let mut history = History::default();
        assert!(history.record(&scored(0, &[("a", false)]), 50, 1_000, 3));
        assert!(!history.record(&scored(999, &[("a", true)]), 50, 1_000, 3));
        for at in [1_000, 2_000, 3_000] {
            assert!(history.record(&scored(at, &[("a", true), ("b", false)]), 50, 1_000, 3));
        }
        let at: Vec<i64> = history.points.iter().map(|p| p.at_ms).collect();
        assert_eq!(at, [1_000, 2_000, 3_000]);
        assert_eq!(history.features, ["a", "b"]);
        let a = history.feature("a");
        assert_eq!(a.len(), 3);
        assert!(
            a.iter()
                .all(|(_, f)| f.drifted && f.threshold == Some(0.125))
        );
        assert!(history.feature("c").is_empty());
        let saved = Saved {
            format: FORMAT,
            models: [("m".to_string(), history)].into(),
        };
        let text = serde_json::to_string(&saved).unwrap();
        assert_eq!(serde_json::from_str::<Saved>(&text).unwrap(), saved);
    }

    #[test]
    fn a_saved_history_goes_in_front_of_the_new_one_by_name() {
        let mut older = History::default();
        older.record(&scored(0, &[("b", true)]), 50, 1, 10);
        older.record(&scored(1, &[("b", false), ("a", true)]), 50, 1, 10);
        older.record(&scored(5, &[("a", true)]), 50, 1, 10);
        let mut new = History::default();
        new.record(&scored(5, &[("a", false)]), 50, 1, 10);
        new.absorb_older(older, 10);
        let at: Vec<i64> = new.points.iter().map(|p| p.at_ms).collect();
        assert_eq!(at, [0, 1, 5], "the saved point at 5 is the new one's");
        assert_eq!(new.features, ["a", "b"]);
        let b: Vec<bool> = new.feature("b").iter().map(|(_, f)| f.drifted).collect();
        assert_eq!(b, [true, false]);
        let a: Vec<bool> = new.feature("a").iter().map(|(_, f)| f.drifted).collect();
        assert_eq!(a, [true, false]);
        let mut short = new.clone();
        short.absorb_older(History::default(), 2);
        assert_eq!(short.points.len(), 2);
    }

    #[test]
    fn a_statistic_that_is_not_a_number_is_left_out() {
        let mut s = scored(0, &[("a", true), ("b", true)]);
        s.report.features[0].score = f64::NAN;
        s.report.features[1].noise_threshold = Some(f64::INFINITY);
        let mut history = History::default();
        history.record(&s, 50, 1, 10);
        let text = serde_json::to_string(&history).unwrap();
        let back: History = serde_json::from_str(&text).unwrap();
        assert_eq!(back.points[0].features.len(), 1);
        assert_eq!(back.points[0].features[0].threshold, None);
    }
}
