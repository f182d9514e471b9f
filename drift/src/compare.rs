//! Decisions: which statistic decides that a feature drifted, at which threshold, and the
//! dataset score (the share of features that drifted, exported as `ml_data_drift_score`).
//!
//! A feature drifts when its statistic is beyond both:
//! - the noise threshold for this window's size: the null distribution's quantile (see
//!   [`crate::null`]) at the level each feature is tested at, derived from the spec's
//!   `false_alarms_per_30_days` (the expected data-set alerts by chance) and how many
//!   independent windows a month holds ([`Cadence`]); and
//! - the rule's threshold, now the effect floor: a difference too small to matter is not
//!   drift, however sure it is (large windows make every p-value small).
//!
//! A profile without null distributions (written before they existed) decides on the floor
//! alone, as before.
//!
//! Hysteresis (optional, `hysteresis` below 1): a feature that drifted at the last scoring of
//! the same window stays drifted while its statistic is beyond that share of both thresholds,
//! measured from "no difference" (the distance itself, `1 - r` for the correlation, `-ln p` for
//! a p-value), so a statistic hovering at a threshold does not flap the alert.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::null::{NullParams, feature_level};
use crate::profile::{FeatureProfile, Profile};
use crate::stats::Statistics;
use crate::window::Histograms;

/// A statistic a rule can decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    Tvd,
    Correlation,
    Psi,
    JsDistance,
    Wasserstein,
    ChiSquareP,
    KsP,
}

impl Statistic {
    pub const ALL: [Statistic; 7] = [
        Statistic::Tvd,
        Statistic::Correlation,
        Statistic::Psi,
        Statistic::JsDistance,
        Statistic::Wasserstein,
        Statistic::ChiSquareP,
        Statistic::KsP,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Statistic::Tvd => "tvd",
            Statistic::Correlation => "correlation",
            Statistic::Psi => "psi",
            Statistic::JsDistance => "js_distance",
            Statistic::Wasserstein => "wasserstein",
            Statistic::ChiSquareP => "chi_square_p",
            Statistic::KsP => "ks_p",
        }
    }

    /// Whether a feature drifted when the statistic is below its threshold (a similarity or a
    /// p-value) rather than above it (a distance).
    pub fn drifts_below(self) -> bool {
        matches!(
            self,
            Statistic::Correlation | Statistic::ChiSquareP | Statistic::KsP
        )
    }

    /// Whether the statistic exists for numerical features only.
    pub fn numerical_only(self) -> bool {
        matches!(self, Statistic::Wasserstein | Statistic::KsP)
    }

    /// The statistic's value among computed ones.
    pub fn of(self, s: &Statistics) -> Option<f64> {
        match self {
            Statistic::Tvd => Some(s.tvd),
            Statistic::Correlation => Some(s.correlation),
            Statistic::Psi => Some(s.psi),
            Statistic::JsDistance => Some(s.js_distance),
            Statistic::Wasserstein => s.wasserstein,
            Statistic::ChiSquareP => Some(s.chi_square_p),
            Statistic::KsP => s.ks_p,
        }
    }
}

/// "Drifted when `statistic` passes `threshold`" (above for distances, below for the
/// correlation and p-values).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub statistic: Statistic,
    pub threshold: f64,
}

impl Rule {
    pub fn drifted(&self, value: f64) -> bool {
        if self.statistic.drifts_below() {
            value < self.threshold
        } else {
            value > self.threshold
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = if self.statistic.drifts_below() {
            "<"
        } else {
            ">"
        };
        write!(f, "{} {op} {}", self.statistic.name(), self.threshold)
    }
}

/// The decision rules of a model: a default per kind of feature, overrides per feature, the
/// fewest events worth scoring, and the share of drifted features that makes the data set
/// drifted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftRules {
    pub categorical: Rule,
    pub numerical: Rule,
    /// Rules of named features, replacing their kind's default.
    pub features: BTreeMap<String, Rule>,
    /// Below this many events no score is given.
    pub min_rows: u64,
    /// The data set drifted when at least this share of its features did.
    pub dataset_share: f64,
    /// Expected data-set alerts per 30 days when nothing drifted: what the noise thresholds
    /// are set for.
    #[serde(skip_serializing_if = "skip_target")]
    pub false_alarms_per_30_days: f64,
    /// How the null distributions are estimated at training time.
    #[serde(skip_serializing_if = "skip_null")]
    pub null: NullParams,
    /// The share of the thresholds a drifted feature must fall back below to leave drift, in
    /// (0, 1]: 1 (the default) is no hysteresis.
    #[serde(skip_serializing_if = "skip_hysteresis")]
    pub hysteresis: f64,
}

// The serialised rules are part of a spec's hash (`ModelSpec::hash`), which every model
// artifact records and checks: a field added later is left out at its default, so that a spec
// written before it hashes the same. `false_alarms_per_30_days` and `null` were first written
// always (the "noise fields" form, from the noise thresholds until hysteresis came): artifacts
// of that time are checked against that form, which `with_noise_fields_form` gives.

thread_local! {
    static NOISE_FIELDS_FORM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the rules serialised in the "noise fields" form: `false_alarms_per_30_days`
/// and `null` always written, `hysteresis` never (see above).
pub fn with_noise_fields_form<R>(f: impl FnOnce() -> R) -> R {
    NOISE_FIELDS_FORM.with(|form| {
        form.set(true);
        let result = f();
        form.set(false);
        result
    })
}

fn noise_fields_form() -> bool {
    NOISE_FIELDS_FORM.with(std::cell::Cell::get)
}

fn skip_target(target: &f64) -> bool {
    !noise_fields_form() && *target == DriftRules::default().false_alarms_per_30_days
}

fn skip_null(null: &NullParams) -> bool {
    !noise_fields_form() && *null == NullParams::default()
}

fn skip_hysteresis(hysteresis: &f64) -> bool {
    noise_fields_form() || *hysteresis == 1.0
}

impl Default for DriftRules {
    fn default() -> Self {
        DriftRules {
            categorical: Rule {
                statistic: Statistic::Tvd,
                threshold: 0.1,
            },
            numerical: Rule {
                statistic: Statistic::Correlation,
                threshold: 0.95,
            },
            features: BTreeMap::new(),
            min_rows: 500,
            dataset_share: 0.5,
            false_alarms_per_30_days: 1.0,
            null: NullParams::default(),
            hysteresis: 1.0,
        }
    }
}

/// A rule that cannot apply, named by its feature.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRule(pub String);

impl std::fmt::Display for BadRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadRule {}

impl DriftRules {
    /// The rule of one feature.
    pub fn rule(&self, feature: &FeatureProfile) -> Rule {
        self.features
            .get(feature.name())
            .copied()
            .unwrap_or(if feature.is_numerical() {
                self.numerical
            } else {
                self.categorical
            })
    }

    /// Checks thresholds and that every rule applies to its feature of `profile` (a named
    /// feature must exist; Wasserstein and KS apply to numerical features only).
    pub fn check(&self, profile: &Profile) -> Result<(), BadRule> {
        let features: Vec<(&str, bool)> = profile
            .features
            .iter()
            .map(|f| (f.name(), f.is_numerical()))
            .collect();
        self.check_features(&features)
    }

    /// [`DriftRules::check`] against (name, is numerical) pairs.
    pub fn check_features(&self, features: &[(&str, bool)]) -> Result<(), BadRule> {
        let bad = |m: String| Err(BadRule(m));
        if self.categorical.statistic.numerical_only() {
            return bad(format!(
                "drift.categorical: {} applies to numerical features only",
                self.categorical.statistic.name()
            ));
        }
        if !(0.0..=1.0).contains(&self.dataset_share) {
            return bad(format!(
                "drift.dataset_share must be in [0, 1], got {}",
                self.dataset_share
            ));
        }
        let target = self.false_alarms_per_30_days;
        if !(target.is_finite() && target > 0.0 && target <= 1_000.0) {
            return bad(format!(
                "drift.false_alarms_per_30_days must be above 0 and at most 1,000, got {target}"
            ));
        }
        self.null.check().map_err(BadRule)?;
        if !(self.hysteresis > 0.0 && self.hysteresis <= 1.0) {
            return bad(format!(
                "drift.hysteresis must be above 0 and at most 1 (1: none), got {}",
                self.hysteresis
            ));
        }
        let rules = [
            ("categorical", &self.categorical),
            ("numerical", &self.numerical),
        ]
        .into_iter()
        .map(|(n, r)| (n.to_string(), r))
        .chain(
            self.features
                .iter()
                .map(|(n, r)| (format!("features.{n}"), r)),
        );
        for (name, rule) in rules {
            if !rule.threshold.is_finite() {
                return bad(format!(
                    "drift.{name}: the threshold must be a finite number"
                ));
            }
        }
        for (name, rule) in &self.features {
            let Some(&(_, numerical)) = features.iter().find(|(n, _)| n == name) else {
                return bad(format!(
                    "drift.features.{name}: the model has no such feature"
                ));
            };
            if rule.statistic.numerical_only() && !numerical {
                return bad(format!(
                    "drift.features.{name}: {} applies to numerical features only",
                    rule.statistic.name()
                ));
            }
        }
        Ok(())
    }
}

/// One feature's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    pub name: String,
    /// "categorical" or "numerical".
    pub kind: String,
    pub statistics: Statistics,
    pub rule: Rule,
    /// The rule's statistic.
    pub score: f64,
    /// The statistic's noise threshold for this window's size (absent without a null
    /// distribution); the rule's threshold is the effect floor.
    #[serde(default)]
    pub noise_threshold: Option<f64>,
    /// Whether the statistic is beyond the noise threshold, and beyond the floor (for a
    /// feature held by hysteresis, beyond their lower bounds).
    #[serde(default)]
    pub beyond_noise: bool,
    #[serde(default)]
    pub beyond_floor: bool,
    /// Drifted at the last scoring, and judged against the thresholds' lower bounds.
    #[serde(default)]
    pub held: bool,
    /// Both, from the minimum number of events on.
    pub drifted: bool,
}

/// Current data against a reference profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub reference_rows: u64,
    pub current_rows: u64,
    pub min_rows: u64,
    /// Whether there were enough events to decide.
    pub scored: bool,
    pub features: Vec<FeatureDrift>,
    pub drifted_features: usize,
    /// Share of features that drifted (0 when not scored): `ml_data_drift_score`.
    pub score: f64,
    pub dataset_share: f64,
    /// `score >= dataset_share`, when scored.
    pub dataset_drifted: bool,
    /// The level each feature is tested at (absent without null distributions), and the
    /// independent windows per 30 days it was derived for.
    #[serde(default)]
    pub feature_level: Option<f64>,
    #[serde(default)]
    pub windows_per_30_days: f64,
    /// The spec's target the level was derived from.
    #[serde(default)]
    pub false_alarms_per_30_days: f64,
}

/// How many independent windows 30 days hold, for the level of each test: a window is a fresh
/// sample once all its events are new, so a sliding window of n events at r events a second
/// gives `30 days x r / n` of them (at most one per scoring).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cadence {
    pub windows_per_30_days: f64,
}

/// Seconds in 30 days.
pub const THIRTY_DAYS: f64 = 30.0 * 86_400.0;

impl Cadence {
    /// A window a day: what a one-off comparison (a file against the reference) assumes.
    pub const DAILY: Cadence = Cadence {
        windows_per_30_days: 30.0,
    };

    /// A sliding window of the last `width_seconds` of event time, scored every
    /// `score_seconds`: a fresh window every width, or every scoring when scorings are further
    /// apart.
    pub fn sliding(width_seconds: f64, score_seconds: f64) -> Self {
        Cadence::tumbling(width_seconds.max(score_seconds))
    }

    /// Tumbling windows `width_seconds` wide.
    pub fn tumbling(width_seconds: f64) -> Self {
        Cadence {
            windows_per_30_days: (THIRTY_DAYS / width_seconds.max(1e-3)).max(1.0),
        }
    }
}

/// Scores `current` (counted with `profile`'s bins) against the profile.
///
/// # Panics
/// When `current` has another number of features than the profile (they come from the same
/// [`crate::Binner`]).
pub fn compare(profile: &Profile, current: &Histograms, rules: &DriftRules) -> DriftReport {
    compare_at(profile, current, rules, Cadence::DAILY)
}

/// [`compare`] for windows scored at `cadence`.
///
/// # Panics
/// As [`compare`].
pub fn compare_at(
    profile: &Profile,
    current: &Histograms,
    rules: &DriftRules,
    cadence: Cadence,
) -> DriftReport {
    compare_after(profile, current, rules, cadence, None)
}

/// Whether `value` is beyond `share` of `threshold`'s distance from "no difference".
pub(crate) fn beyond(statistic: Statistic, value: f64, threshold: f64, share: f64) -> bool {
    if share >= 1.0 {
        return Rule {
            statistic,
            threshold,
        }
        .drifted(value);
    }
    match statistic {
        Statistic::Correlation => 1.0 - value > share * (1.0 - threshold),
        Statistic::ChiSquareP | Statistic::KsP => value < threshold.powf(share),
        _ => value > share * threshold,
    }
}

/// [`compare_at`] for the same window scored again after `previous`: a feature that drifted
/// then is held by the rules' hysteresis.
///
/// # Panics
/// As [`compare`].
pub fn compare_after(
    profile: &Profile,
    current: &Histograms,
    rules: &DriftRules,
    cadence: Cadence,
    previous: Option<&DriftReport>,
) -> DriftReport {
    assert_eq!(
        current.features(),
        profile.features.len(),
        "histograms binned with this profile"
    );
    let scored = current.rows() >= rules.min_rows.max(1);
    let count = profile.features.len();
    let needed = ((rules.dataset_share * count as f64).ceil() as usize).max(1);
    let window_level = (rules.false_alarms_per_30_days / cadence.windows_per_30_days).min(1.0);
    let level = profile
        .null
        .as_ref()
        .map(|_| feature_level(window_level, count, needed));
    let features: Vec<FeatureDrift> = profile
        .features
        .iter()
        .enumerate()
        .map(|(f, feature)| {
            let statistics = Statistics::compute(feature, current.feature(f));
            let mut rule = rules.rule(feature);
            if rule.statistic.numerical_only() && !feature.is_numerical() {
                // `check` refuses such rules; stay defined if it was skipped.
                rule = rules.categorical;
            }
            let score = rule.statistic.of(&statistics).unwrap_or(statistics.tvd);
            let noise_threshold =
                profile.null.as_ref().zip(level).and_then(|(null, level)| {
                    null.threshold(f, rule.statistic, current.rows(), level)
                });
            let held = rules.hysteresis < 1.0
                && previous
                    .and_then(|p| p.features.get(f))
                    .is_some_and(|p| p.drifted && p.name == feature.name());
            let share = if held { rules.hysteresis } else { 1.0 };
            let beyond_noise =
                noise_threshold.is_none_or(|t| beyond(rule.statistic, score, t, share));
            let beyond_floor = beyond(rule.statistic, score, rule.threshold, share);
            FeatureDrift {
                name: feature.name().to_string(),
                kind: feature.kind_name().to_string(),
                drifted: scored && beyond_noise && beyond_floor,
                noise_threshold,
                beyond_noise,
                beyond_floor,
                held,
                statistics,
                rule,
                score,
            }
        })
        .collect();
    let drifted_features = features.iter().filter(|f| f.drifted).count();
    let score = if scored && !features.is_empty() {
        drifted_features as f64 / features.len() as f64
    } else {
        0.0
    };
    DriftReport {
        reference_rows: profile.rows,
        current_rows: current.rows(),
        min_rows: rules.min_rows,
        scored,
        drifted_features,
        score,
        dataset_share: rules.dataset_share,
        dataset_drifted: scored && score >= rules.dataset_share,
        feature_level: level,
        windows_per_30_days: cadence.windows_per_30_days,
        false_alarms_per_30_days: rules.false_alarms_per_30_days,
        features,
    }
}
