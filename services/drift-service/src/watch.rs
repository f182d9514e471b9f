//! The drift state: per model, its reference and the windows its events fill, and the next
//! offset of every partition. The consumer thread applies events to it; the scorer, the HTTP
//! handlers and the checkpoints read it. It sits behind one mutex ([`lock`]), held per event
//! (about 0.3 µs) or per copy of a window's counts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use prometheus::{Histogram, IntCounter, IntGauge};
use serde::{Deserialize, Serialize};
use vigie_api::ApiError;
use vigie_core::artifact::Artifact;
use vigie_core::schema::Schema;
use vigie_core::spec::{ModelSpec, Task};
use vigie_drift::{Binner, DriftReport, DriftRules, Histograms, PaneSum, Panes, Profile};
use vigie_model::bootstrap::Evaluation;
use vigie_synthetic::{Injector, NoiseSpec};

use crate::decode::{Decoder, Envelope};
use crate::history::History;
use crate::metrics::Metrics;
use crate::partials::{self, Partial};
use crate::quality::{self, Answer, Early, LabelOutcome, Quality, QualityConfig, QualitySum};
use crate::unseen::UnseenCodes;

/// What a model's events are scored against: the production version's reference profile.
#[derive(Debug)]
pub struct Reference {
    pub model: String,
    pub version: u32,
    pub spec_hash: String,
    pub profile: Profile,
    pub binner: Binner,
    pub rules: DriftRules,
    pub decoder: Decoder,
    /// The reference of the model's answers, when its artifact has one.
    pub predictions: Option<Predictions>,
    /// A regression's underestimation margin (the realised share of estimates more than this
    /// under the truth); `None` for a classification.
    pub regression_margin: Option<f64>,
    /// What the quality alerts compare with: the version's holdout figures, the spec's
    /// tolerances and the labels the realised alert needs.
    pub quality: QualityTargets,
    pub loaded_at: DateTime<Utc>,
}

/// See [`Reference::quality`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QualityTargets {
    /// The production version's holdout figures, by metric (empty without an artifact).
    pub holdout: BTreeMap<&'static str, f64>,
    pub tolerance: BTreeMap<String, f64>,
    pub min_labels: u32,
}

impl QualityTargets {
    fn new(spec: &ModelSpec, holdout: Option<&Evaluation>) -> Self {
        let holdout = match holdout {
            Some(Evaluation::Binary(m)) => BTreeMap::from([
                ("accuracy", m.accuracy),
                ("precision", m.precision),
                ("recall", m.recall),
                ("f1", m.f1),
                ("roc_auc", m.roc_auc),
                ("brier", m.brier),
            ]),
            Some(Evaluation::Regression(m)) => {
                let mut figures = BTreeMap::from([("mae", m.mae), ("rmse", m.rmse)]);
                if let Some(c) = m.interval_coverage {
                    figures.insert("interval_coverage", c);
                }
                figures
            }
            None => BTreeMap::new(),
        };
        QualityTargets {
            holdout,
            tolerance: spec.quality.tolerances(spec.task),
            min_labels: spec.quality.min_labels(),
        }
    }
}

/// The reference of a model's answers (probabilities or estimates): one numerical feature.
#[derive(Debug)]
pub struct Predictions {
    pub profile: Profile,
    pub binner: Binner,
}

impl Reference {
    pub fn new(spec: &ModelSpec, spec_hash: &str, version: u32, profile: Profile) -> Self {
        Reference {
            model: spec.name.clone(),
            version,
            spec_hash: spec_hash.to_string(),
            binner: Binner::new(&profile),
            profile,
            rules: spec.drift.clone(),
            decoder: Decoder::new(&Schema::new(spec)),
            predictions: None,
            regression_margin: (spec.task == Task::Regression)
                .then(|| spec.regression().underestimate_margin),
            quality: QualityTargets::new(spec, None),
            loaded_at: Utc::now(),
        }
    }

    pub fn of_artifact(artifact: &Artifact) -> Self {
        let mut reference = Reference::new(
            &artifact.spec,
            &artifact.spec_hash,
            artifact.version,
            artifact.reference.clone(),
        );
        reference.quality = QualityTargets::new(&artifact.spec, Some(&artifact.metrics.holdout));
        reference.predictions = artifact
            .prediction_reference
            .clone()
            .map(|profile| Predictions {
                binner: Binner::new(&profile),
                profile,
            });
        reference
    }
}

/// The shape of every model's windows. Every window is made of event-time panes (see
/// [`vigie_drift::window`]), counted per partition and summed: the sums do not depend on how
/// the partitions are shared among instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowConfig {
    /// Width of the sliding window: the last this many milliseconds of event time.
    pub sliding_ms: i64,
    /// Width of a pane, in milliseconds: it divides the sliding and tumbling widths.
    pub pane_ms: i64,
    /// Width of the tumbling event-time windows, in milliseconds.
    pub tumbling_ms: i64,
    /// How long after its end a pane (so a tumbling window) still takes events, in
    /// milliseconds.
    pub lateness_ms: i64,
    /// Closed tumbling windows' scores kept.
    pub retain: usize,
    /// The history's step: at most one point per this many milliseconds (see
    /// [`crate::history`]).
    pub history_step_ms: i64,
    /// Most points of a model's history.
    pub history_points: usize,
    /// How labels are joined to answers.
    pub quality: QualityConfig,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            sliding_ms: 300_000,
            pane_ms: 5_000,
            tumbling_ms: 60_000,
            lateness_ms: 10_000,
            retain: 10,
            // Three hours at a point every scoring (5 s).
            history_step_ms: 5_000,
            history_points: 2_160,
            quality: QualityConfig::default(),
        }
    }
}

/// The widest pane [`auto_pane_ms`] chooses for windows up to a minute wide.
pub const MAX_AUTO_PANE_MS: i64 = 5_000;

/// The pane width for windows `sliding_ms` and `tumbling_ms` wide: the widest that divides
/// both and is at most [`MAX_AUTO_PANE_MS`] and a fifth of the narrower window, or a twelfth
/// of it when that is wider (a day-wide window moves in two-hour steps rather than keep
/// 17,280 panes).
pub fn auto_pane_ms(sliding_ms: i64, tumbling_ms: i64) -> i64 {
    fn gcd(a: i64, b: i64) -> i64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let common = gcd(sliding_ms.max(1), tumbling_ms.max(1));
    let narrow = sliding_ms.min(tumbling_ms).max(1);
    let widest = (narrow / 12).max(MAX_AUTO_PANE_MS.min(narrow / 5)).max(1);
    // The divisors of `common` from the widest down: common / 1, common / 2, ...
    (1..=common)
        .map(|k| common / k)
        .find(|&pane| common % pane == 0 && pane <= widest)
        .unwrap_or(1)
}

impl WindowConfig {
    /// Why these widths cannot cut windows into panes, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.pane_ms < 1 || self.sliding_ms < 1 || self.tumbling_ms < 1 || self.lateness_ms < 0 {
            return Err(format!(
                "window widths must be positive: pane {} ms, sliding {} ms, tumbling {} ms, lateness {} ms",
                self.pane_ms, self.sliding_ms, self.tumbling_ms, self.lateness_ms
            ));
        }
        for (name, width) in [("sliding", self.sliding_ms), ("tumbling", self.tumbling_ms)] {
            if width % self.pane_ms != 0 {
                return Err(format!(
                    "the {name} window ({width} ms) is not a whole number of panes ({} ms)",
                    self.pane_ms
                ));
            }
        }
        Ok(())
    }

    /// How long panes are kept after the newest event: the widest window and its lateness.
    /// Panes are forgotten after a scoring, once older than this and in no window left to
    /// score.
    pub fn keep_ms(&self) -> i64 {
        self.sliding_ms.max(self.tumbling_ms) + self.lateness_ms
    }

    fn panes(&self, binner: &Binner) -> Panes {
        Panes::new(binner, self.pane_ms, self.lateness_ms)
    }

    /// Whether panes saved under some configuration can go on being counted under this one.
    pub fn fits(&self, panes: &Panes) -> bool {
        panes.is_shaped(self.pane_ms, self.lateness_ms)
    }
}

/// One partition's counts of a model's events (against its reference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// The features, per pane.
    pub features: Panes,
    /// The answers, per pane (a model whose answers have a reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<Panes>,
    /// Every event counted (late ones too).
    pub total: Histograms,
    pub events: u64,
    /// Codes the spec does not list, by feature and value.
    #[serde(default)]
    pub unseen: UnseenCodes,
}

impl Counts {
    pub fn new(reference: &Reference, config: &WindowConfig) -> Self {
        Counts {
            features: config.panes(&reference.binner),
            answers: reference
                .predictions
                .as_ref()
                .map(|p| config.panes(&p.binner)),
            total: Histograms::new(&reference.binner),
            events: 0,
            unseen: UnseenCodes::new(reference.binner.features()),
        }
    }

    /// Forgets the panes that start before `start_ms` (closed ones only).
    pub fn forget_before(&mut self, start_ms: i64) {
        self.features.forget_before(start_ms);
        if let Some(answers) = &mut self.answers {
            answers.forget_before(start_ms);
        }
    }

    /// Whether these counts are over `reference`'s bins and cut as `config` says.
    pub fn fits(&self, reference: &Reference, config: &WindowConfig) -> bool {
        let answers_fit = match (&self.answers, &reference.predictions) {
            (Some(a), Some(p)) => a.fits(&p.binner) && config.fits(a),
            (None, None) => true,
            _ => false,
        };
        self.features.fits(&reference.binner)
            && config.fits(&self.features)
            && self.total.fits(&reference.binner)
            && self.unseen.fits(reference.binner.features())
            && answers_fit
    }
}

/// A model's counts, every partition's added up.
#[derive(Debug, Clone)]
pub struct Merged {
    pub features: PaneSum,
    pub answers: Option<PaneSum>,
    pub total: Histograms,
    pub events: u64,
    pub unseen: UnseenCodes,
}

impl Merged {
    pub fn new(reference: &Reference, config: &WindowConfig) -> Self {
        Merged {
            features: PaneSum::new(&reference.binner, config.pane_ms),
            answers: reference
                .predictions
                .as_ref()
                .map(|p| PaneSum::new(&p.binner, config.pane_ms)),
            total: Histograms::new(&reference.binner),
            events: 0,
            unseen: UnseenCodes::new(reference.binner.features()),
        }
    }

    /// Adds one partition's counts (checked to fit the reference first).
    pub fn add(&mut self, counts: &Counts) {
        // Counts are checked against the reference before they get here.
        let _ = self.features.add(&counts.features);
        if let (Some(sum), Some(answers)) = (&mut self.answers, &counts.answers) {
            let _ = sum.add(answers);
        }
        let _ = self.total.merge(&counts.total);
        self.events += counts.events;
        self.unseen.merge(&counts.unseen);
    }
}

/// Noise a tester injected into one model's events.
#[derive(Debug)]
pub struct ActiveNoise {
    pub injector: Injector,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub by: String,
    /// Events this injection changed.
    pub events_noised: u64,
    /// Events that went through while it was active.
    pub events_seen: u64,
}

/// What `GET /config/noise` shows of an injection.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NoiseView {
    pub model: String,
    #[serde(flatten)]
    pub spec: NoiseSpec,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub by: String,
    pub events_seen: u64,
    pub events_noised: u64,
}

/// The last score of a model's sliding window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Scored {
    pub at: DateTime<Utc>,
    /// The reference version scored against.
    pub version: u32,
    pub noise_active: bool,
    pub report: DriftReport,
    /// The answers of the window against the prediction reference (absent for a model whose
    /// artifact has none).
    pub predictions: Option<DriftReport>,
}

/// The drift score of a closed tumbling window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowScore {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub events: u64,
    pub report: DriftReport,
}

/// One model's windows.
#[derive(Debug)]
pub struct ModelWatch {
    pub reference: Arc<Reference>,
    pub config: WindowConfig,
    /// Each partition's counts against this reference, of the partitions this instance reads.
    pub partitions: BTreeMap<i32, Counts>,
    /// The latest partial of each partition another instance published (see
    /// [`crate::partials`]): counted into the sums for the partitions this one does not read.
    pub remote: BTreeMap<i32, Arc<Partial>>,
    pub noise: Option<ActiveNoise>,
    /// Closed tumbling windows already scored end before this time.
    pub tumbling_scored_until_ms: i64,
    pub tumbling_scores: VecDeque<WindowScore>,
    /// The last score of the sliding window.
    pub last: Option<Arc<Scored>>,
    /// Each partition's labels joined to its answers (a label is on its answer's partition).
    pub quality: BTreeMap<i32, Quality>,
    quality_config: QualityConfig,
    metrics: Metrics,
    pub since: DateTime<Utc>,
    /// The `(feature, code)` series of `vigie_drift_unseen_code_events` published for it.
    pub unseen_published: Vec<(String, String)>,
    row: Vec<f64>,
    bins: Vec<u16>,
    answer_bins: [u16; 1],
    /// The unseen codes of the event being counted.
    found: Vec<(usize, String)>,
    /// Per feature: events with an unseen code.
    unseen_counters: Vec<IntCounter>,
    counted: IntCounter,
    noised: IntCounter,
    late_events: IntCounter,
    noise_active: IntGauge,
}

impl ModelWatch {
    pub fn new(reference: Arc<Reference>, config: &WindowConfig, metrics: &Metrics) -> Self {
        let binner = &reference.binner;
        let model = reference.model.as_str();
        ModelWatch {
            config: *config,
            partitions: BTreeMap::new(),
            remote: BTreeMap::new(),
            noise: None,
            tumbling_scored_until_ms: i64::MIN,
            tumbling_scores: VecDeque::new(),
            last: None,
            quality: BTreeMap::new(),
            quality_config: QualityConfig {
                live_ms: config.sliding_ms,
                pane_ms: config.pane_ms,
                period_ms: config.tumbling_ms,
                ..config.quality
            },
            metrics: metrics.clone(),
            since: Utc::now(),
            unseen_published: Vec::new(),
            row: vec![f64::NAN; binner.features()],
            bins: vec![0; binner.features()],
            answer_bins: [0],
            found: Vec::new(),
            unseen_counters: reference
                .profile
                .features
                .iter()
                .map(|f| metrics.unseen.with_label_values(&[model, f.name()]))
                .collect(),
            counted: metrics.events.with_label_values(&[model]),
            noised: metrics.noised.with_label_values(&[model]),
            late_events: metrics.late.with_label_values(&[model]),
            noise_active: {
                let gauge = metrics.noise_active.with_label_values(&[model]);
                gauge.set(0);
                gauge
            },
            reference,
        }
    }

    /// Every partition's counts added up.
    pub fn merged(&self) -> Merged {
        let mut merged = Merged::new(&self.reference, &self.config);
        for (_, counts) in self.parts() {
            merged.add(counts);
        }
        merged
    }

    /// Whether this instance reads `partition` (it holds its own counts or quality of it).
    fn owns(&self, partition: i32) -> bool {
        self.partitions.contains_key(&partition) || self.quality.contains_key(&partition)
    }

    /// Each partition's counts, in partition order: this instance's own, and for a partition
    /// it does not read, the latest partial another instance published of it.
    pub fn parts(&self) -> Vec<(i32, &Counts)> {
        let mut parts: Vec<(i32, &Counts)> = self.partitions.iter().map(|(&p, c)| (p, c)).collect();
        parts.extend(
            self.remote
                .iter()
                .filter(|(p, _)| !self.owns(**p))
                .map(|(&p, partial)| (p, &partial.counts)),
        );
        parts.sort_by_key(|(p, _)| *p);
        parts
    }

    /// The newest event time counted, of any partition.
    pub fn newest_ms(&self) -> Option<i64> {
        self.parts()
            .iter()
            .filter_map(|(_, c)| c.features.max_time_ms())
            .max()
    }

    /// A partition's quality (created empty).
    pub fn quality_of(&mut self, partition: i32) -> &mut Quality {
        let (config, metrics, model) = (self.quality_config, &self.metrics, &self.reference.model);
        self.quality
            .entry(partition)
            .or_insert_with(|| Quality::new(config, metrics, model))
    }

    /// Every partition's quality added up, in partition order (own, or another instance's
    /// partial).
    pub fn quality_sum(&self) -> QualitySum {
        let mut parts: Vec<(i32, quality::Part<'_>)> = self
            .quality
            .iter()
            .map(|(&p, q)| (p, quality::Part::Own(q)))
            .collect();
        parts.extend(
            self.remote
                .iter()
                .filter(|(p, _)| !self.owns(**p))
                .map(|(&p, partial)| (p, quality::Part::Shared(&partial.quality))),
        );
        parts.sort_by_key(|(p, _)| *p);
        QualitySum::of(self.quality_config, parts.into_iter().map(|(_, part)| part))
    }

    /// Events counted against this reference, every partition's.
    pub fn events(&self) -> u64 {
        self.parts().iter().map(|(_, c)| c.events).sum()
    }

    /// Events late for their pane, every partition's.
    pub fn late(&self) -> u64 {
        self.parts().iter().map(|(_, c)| c.features.late()).sum()
    }

    /// Forgets a partition this instance no longer reads (its partials, once published, stand
    /// for it).
    pub fn release(&mut self, partition: i32) {
        self.partitions.remove(&partition);
        self.quality.remove(&partition);
    }

    /// Starts `noise` (replacing the active one, returned) and marks it in the metrics.
    pub fn start_noise(&mut self, noise: ActiveNoise) -> Option<ActiveNoise> {
        self.noise_active.set(1);
        self.noise.replace(noise)
    }

    /// Stops the active noise, if any (returned), and marks it in the metrics.
    pub fn stop_noise(&mut self, why: &str) -> Option<ActiveNoise> {
        self.noise_active.set(0);
        let stopped = self.noise.take();
        if stopped.is_some() {
            tracing::info!(model = %self.reference.model, why, "noise injection stopped");
        }
        stopped
    }

    pub fn noise_view(&self) -> Option<NoiseView> {
        self.noise.as_ref().map(|n| NoiseView {
            model: self.reference.model.clone(),
            spec: n.injector.spec().clone(),
            started_at: n.started_at,
            expires_at: n.expires_at,
            by: n.by.clone(),
            events_seen: n.events_seen,
            events_noised: n.events_noised,
        })
    }
}

/// Why an event was not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not a prediction event (bad JSON, missing fields).
    Unreadable,
    /// Its model has no reference here (not in production, or not watched by this instance).
    UnknownModel,
    /// It follows another spec than the reference's (`schema_hash` differs).
    OtherSchema,
    /// Its features do not decode with the reference's spec.
    BadFeatures,
    /// Its offset is before the state's position: it is already in the windows (a replay
    /// after a restart).
    AlreadyCounted,
}

impl Skip {
    pub const ALL: [Skip; 5] = [
        Skip::Unreadable,
        Skip::UnknownModel,
        Skip::OtherSchema,
        Skip::BadFeatures,
        Skip::AlreadyCounted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Unreadable => "unreadable",
            Skip::UnknownModel => "unknown_model",
            Skip::OtherSchema => "other_schema",
            Skip::BadFeatures => "bad_features",
            Skip::AlreadyCounted => "already_counted",
        }
    }
}

/// What [`State::apply`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Counted { noised: bool },
    Skipped(Skip),
}

/// Why a partition's position was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// The partition's log starts again before the position: it delivered an event there
    /// that is not one counted, or it ends before the position (a new broker, such as the
    /// embedded one after a restart, or a topic deleted and created again).
    Restarted,
    /// Another event stands at the offset of the first event counted on the partition: the
    /// topic was created again and has grown past the old position (found at a restart).
    Replaced,
}

impl Reset {
    pub const ALL: [Reset; 2] = [Reset::Restarted, Reset::Replaced];

    pub fn as_str(self) -> &'static str {
        match self {
            Reset::Restarted => "restarted",
            Reset::Replaced => "replaced",
        }
    }
}

/// An event of a partition: its offset and event id (empty when unreadable).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub offset: i64,
    pub event_id: String,
}

/// The last [`RECENT`] events read on a partition, by offset and a hash of their event id:
/// a broker may deliver some of them again (tansu answers a fetch at the end of its log with
/// the last batch), and those are told apart from the events of a log that starts again.
#[derive(Debug, Clone)]
pub struct Recent {
    ids: Vec<(i64, u64)>,
}

/// How many events per partition [`Recent`] remembers.
pub const RECENT: usize = 4096;

impl Default for Recent {
    fn default() -> Self {
        Recent {
            ids: vec![(-1, 0); RECENT],
        }
    }
}

impl Recent {
    fn slot(offset: i64) -> usize {
        offset.rem_euclid(RECENT as i64) as usize
    }

    fn push(&mut self, offset: i64, id: u64) {
        self.ids[Self::slot(offset)] = (offset, id);
    }

    /// Whether the event at `offset` was read, with this id.
    fn holds(&self, offset: i64, id: u64) -> bool {
        self.ids[Self::slot(offset)] == (offset, id)
    }
}

/// FNV-1a's starting value.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over `bytes`, from `hash`: stable on every run and platform.
pub(crate) fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A stable 64-bit hash of an event id.
fn id_hash(id: &str) -> u64 {
    fnv1a(FNV_OFFSET, id.as_bytes())
}

/// Events read in a row without one counted (events of models this instance does not watch
/// aside): past [`UNCOUNTED_STREAK`] of them, the service is not ready.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Uncounted {
    pub events: u64,
    /// By reason, as `vigie_drift_events_skipped_total` names them.
    pub reasons: BTreeMap<&'static str, u64>,
}

/// How many events read in a row without one counted make the service not ready.
pub const UNCOUNTED_STREAK: u64 = 100;

/// Where the consumer stands on one topic.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    /// Next offset to count, per partition: every event before it is in the state (or was
    /// skipped for a reason counted in the metrics).
    pub offsets: BTreeMap<i32, i64>,
    /// The first event counted on each partition's log: saved with the checkpoint, so that a
    /// restart can tell whether the log it resumes is the one it left.
    pub origins: BTreeMap<i32, Mark>,
    /// The last events read on each partition.
    pub recent: BTreeMap<i32, Recent>,
}

/// What [`Positions::advance`] found about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The next message, or one past a gap the broker's retention left (counted by the
    /// caller as missed).
    Next { missed: Option<i64> },
    /// One of the last messages read, delivered again.
    AlreadyRead,
    /// The first of a log that starts again: the position was given up.
    Restarted { position: i64 },
}

impl Positions {
    /// Moves a partition's position past the message at `offset` whose identity is `id`.
    fn advance(&mut self, partition: i32, offset: i64, id: &str) -> Step {
        let hash = id_hash(id);
        let next = self.offsets.get(&partition).copied().unwrap_or(0);
        let recent = self.recent.entry(partition).or_default();
        let mut step = Step::Next { missed: None };
        if offset < next {
            if recent.holds(offset, hash) {
                return Step::AlreadyRead;
            }
            *recent = Recent::default();
            self.origins.remove(&partition);
            step = Step::Restarted { position: next };
        } else if offset > next && next > 0 {
            step = Step::Next { missed: Some(next) };
        }
        let recent = self.recent.entry(partition).or_default();
        recent.push(offset, hash);
        self.offsets.insert(partition, offset + 1);
        self.origins.entry(partition).or_insert_with(|| Mark {
            offset,
            event_id: id.to_string(),
        });
        step
    }

    /// Forgets a partition's position: it is read from its beginning.
    fn forget(&mut self, partition: i32) {
        self.offsets.insert(partition, 0);
        self.origins.remove(&partition);
        self.recent.remove(&partition);
    }
}

/// The identity of a label message (label events carry no id of their own): a hash of its
/// bytes, as text. A message delivered again has the same.
pub fn label_identity(payload: &[u8]) -> String {
    format!("{:016x}", fnv1a(FNV_OFFSET, payload))
}

/// The topic a message comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Predictions,
    Labels,
}

/// Why a label message was not read as a watched model's label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelSkip {
    Unreadable,
    UnknownModel,
    AlreadyRead,
}

impl LabelSkip {
    pub const ALL: [LabelSkip; 3] = [
        LabelSkip::Unreadable,
        LabelSkip::UnknownModel,
        LabelSkip::AlreadyRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LabelSkip::Unreadable => "unreadable",
            LabelSkip::UnknownModel => "unknown_model",
            LabelSkip::AlreadyRead => "already_read",
        }
    }
}

/// Every model's windows and the consumer's position.
#[derive(Debug)]
pub struct State {
    pub config: WindowConfig,
    pub models: BTreeMap<String, ModelWatch>,
    /// The position on the predictions topic.
    pub positions: Positions,
    /// The position on the labels topic.
    pub label_positions: Positions,
    /// Events read since the last one counted.
    pub uncounted: Uncounted,
    pub metrics: Metrics,
    /// Each model's drift over time (kept across promotions: a model's history goes on),
    /// shared with the pages that draw it (a scoring copies it only while a page holds it).
    pub history: BTreeMap<String, Arc<History>>,
    /// Whether the saved history was read back (it is saved only once it was).
    pub history_read: bool,
    delay: Histogram,
}

impl State {
    pub fn new(config: WindowConfig, metrics: Metrics) -> Self {
        // Every reason exists from the start: 0, not "no data", on dashboards.
        for skip in Skip::ALL {
            metrics.skipped.with_label_values(&[skip.as_str()]);
        }
        for reset in Reset::ALL {
            metrics.offset_resets.with_label_values(&[reset.as_str()]);
        }
        for skip in LabelSkip::ALL {
            metrics.labels_skipped.with_label_values(&[skip.as_str()]);
        }
        for outcome in partials::Outcome::ALL {
            metrics.partials.with_label_values(&[outcome.as_str()]);
        }
        State {
            config,
            models: BTreeMap::new(),
            positions: Positions::default(),
            label_positions: Positions::default(),
            uncounted: Uncounted::default(),
            history: BTreeMap::new(),
            history_read: false,
            delay: metrics.delay.clone(),
            metrics,
        }
    }

    /// Watches `reference`'s model from now on with empty windows (a first reference, or a
    /// promotion: windows binned with the old reference's edges cannot be rebinned). An active
    /// noise injection carries over when it fits the new reference's features.
    pub fn set_reference(&mut self, reference: Arc<Reference>) {
        let model = reference.model.clone();
        let mut watch = ModelWatch::new(reference, &self.config, &self.metrics);
        let Some(old) = self.models.remove(&model) else {
            self.models.insert(model, watch);
            return;
        };
        for (feature, code) in &old.unseen_published {
            let _ = self
                .metrics
                .unseen_code_events
                .remove_label_values(&[&model, feature, code]);
        }
        // Answers waiting for labels still wait (their labels count as the old version's);
        // the quality window starts again with the new version's answers.
        watch.quality = old.quality;
        for quality in watch.quality.values_mut() {
            quality.clear_window();
        }
        if let Some(noise) = old.noise {
            match Injector::new(noise.injector.spec().clone(), &watch.reference.profile) {
                Ok(injector) => {
                    watch.start_noise(ActiveNoise { injector, ..noise });
                }
                Err(e) => {
                    tracing::warn!(%model, error = %e, "the noise injection does not fit the new reference; it stops");
                }
            }
        }
        self.models.insert(model, watch);
    }

    /// Counts one message of the predictions topic: decodes it, applies the model's noise,
    /// adds it to the model's windows, and moves the partition's position past it.
    /// `now_ms` is the wall clock (noise expiry, the delay metric).
    ///
    /// A message before the partition's position is one of the last events read, delivered
    /// again (skipped as already counted), or the first of a log that starts again (a new
    /// broker, a topic created again): then the position is given up and the message counted.
    pub fn apply(&mut self, partition: i32, offset: i64, payload: &[u8], now_ms: i64) -> Applied {
        let applied = self.apply_unrecorded(partition, offset, payload, now_ms);
        match applied {
            Applied::Counted { .. } => self.uncounted = Uncounted::default(),
            Applied::Skipped(Skip::UnknownModel) => {}
            Applied::Skipped(skip) => {
                self.uncounted.events += 1;
                *self.uncounted.reasons.entry(skip.as_str()).or_insert(0) += 1;
            }
        }
        applied
    }

    fn apply_unrecorded(
        &mut self,
        partition: i32,
        offset: i64,
        payload: &[u8],
        now_ms: i64,
    ) -> Applied {
        let envelope = Envelope::parse(payload);
        let event_id = envelope.as_ref().map_or("", |e| e.event_id);
        if self.advance(Feed::Predictions, partition, offset, event_id) {
            return Applied::Skipped(Skip::AlreadyCounted);
        }
        let Ok(envelope) = envelope else {
            return Applied::Skipped(Skip::Unreadable);
        };
        let Some(watch) = self.models.get_mut(envelope.model) else {
            return Applied::Skipped(Skip::UnknownModel);
        };
        if envelope.schema_hash != watch.reference.spec_hash {
            return Applied::Skipped(Skip::OtherSchema);
        }
        if watch
            .reference
            .decoder
            .decode(envelope.features, &mut watch.row, &mut watch.found)
            .is_err()
        {
            return Applied::Skipped(Skip::BadFeatures);
        }
        for (feature, _) in &watch.found {
            if let Some(counter) = watch.unseen_counters.get(*feature) {
                counter.inc();
            }
        }
        if watch
            .noise
            .as_ref()
            .is_some_and(|n| n.expires_at.timestamp_millis() <= now_ms)
        {
            watch.stop_noise("expired");
        }
        let mut noised = false;
        if let Some(noise) = &mut watch.noise {
            noised = noise.injector.apply(&mut watch.row);
            noise.events_seen += 1;
            noise.events_noised += u64::from(noised);
        }
        let time_ms = envelope.time_ms();
        watch.reference.binner.bin_row(&watch.row, &mut watch.bins);
        let counts = watch
            .partitions
            .entry(partition)
            .or_insert_with(|| Counts::new(&watch.reference, &watch.config));
        counts.total.add(&watch.bins);
        counts.events += 1;
        for (feature, value) in &watch.found {
            counts.unseen.add(*feature, value);
        }
        let in_pane = counts.features.add(time_ms, &watch.bins);
        if !in_pane {
            watch.late_events.inc();
        }
        // Answers are what the model said: noise injected into the features leaves them.
        let answer = &envelope.prediction;
        match answer.score() {
            Some(score) => {
                if let (Some(panes), Some(predictions), true) =
                    (&mut counts.answers, &watch.reference.predictions, in_pane)
                {
                    predictions.binner.bin_row(&[score], &mut watch.answer_bins);
                    panes.add(time_ms, &watch.answer_bins);
                }
                let version = watch.reference.version;
                watch.quality_of(partition).answer(
                    quality::key(envelope.request_id, envelope.row),
                    Answer {
                        version: envelope.model_version,
                        value: score,
                        class: answer.class(),
                        interval: answer.interval(),
                        flagged: answer.flagged(),
                        at_ms: time_ms,
                        row: envelope.row,
                    },
                    version,
                    now_ms,
                    in_pane,
                );
            }
            None => self.metrics.answers_unreadable.inc(),
        }
        watch.counted.inc();
        if noised {
            watch.noised.inc();
        }
        self.delay
            .observe((now_ms - time_ms).max(0) as f64 / 1000.0);
        Applied::Counted { noised }
    }

    /// Reads one message of the partials topic (see [`crate::partials`]): another instance's
    /// counts of a partition (or this one's), kept for the sums when they were counted by
    /// `group` against the model's reference now.
    pub fn apply_partial(&mut self, group: &str, payload: &[u8]) -> partials::Outcome {
        let outcome = self.apply_partial_unrecorded(group, payload);
        self.metrics
            .partials
            .with_label_values(&[outcome.as_str()])
            .inc();
        outcome
    }

    fn apply_partial_unrecorded(&mut self, group: &str, payload: &[u8]) -> partials::Outcome {
        use partials::Outcome;
        let Ok(mut partial) = serde_json::from_slice::<Partial>(payload) else {
            return Outcome::Unreadable;
        };
        if partial.format != partials::FORMAT {
            return Outcome::Unreadable;
        }
        if partial.group != group {
            return Outcome::Foreign;
        }
        let Some(watch) = self.models.get_mut(&partial.model) else {
            return Outcome::Foreign;
        };
        let reference = &watch.reference;
        if partial.version != reference.version || partial.spec_hash != reference.spec_hash {
            return Outcome::OtherReference;
        }
        if partial.counts.unseen.features.is_empty() {
            partial.counts.unseen = UnseenCodes::new(reference.binner.features());
        }
        if !partial.counts.fits(reference, &watch.config) {
            return Outcome::Unreadable;
        }
        let own = watch.owns(partial.partition);
        watch.remote.insert(partial.partition, Arc::new(partial));
        if own { Outcome::Own } else { Outcome::Added }
    }

    /// Takes in a noise injection another instance shared (or this one, read back): started
    /// as it was (same spec, times and author) unless it is the one active already or has
    /// expired; stopped when it says so. `false` for another group's or a model not watched.
    pub fn apply_shared_noise(&mut self, group: &str, payload: &[u8], now: DateTime<Utc>) -> bool {
        let Ok(shared) = serde_json::from_slice::<partials::SharedNoise>(payload) else {
            return false;
        };
        if shared.format != partials::FORMAT || shared.group != group {
            return false;
        }
        let Some(watch) = self.models.get_mut(&shared.model) else {
            return false;
        };
        match shared.spec {
            None => {
                if watch
                    .noise
                    .as_ref()
                    .is_some_and(|n| n.started_at <= shared.started_at)
                {
                    watch.stop_noise("stopped on another instance of the group");
                }
            }
            Some(spec) => {
                let active = watch.noise.as_ref().is_some_and(|n| {
                    n.started_at == shared.started_at && n.injector.spec() == &spec
                });
                if active || shared.expires_at <= now {
                    return true;
                }
                match Injector::new(spec, &watch.reference.profile) {
                    Ok(injector) => {
                        watch.start_noise(ActiveNoise {
                            injector,
                            started_at: shared.started_at,
                            expires_at: shared.expires_at,
                            by: shared.by,
                            events_noised: 0,
                            events_seen: 0,
                        });
                        tracing::info!(model = %shared.model, from = %shared.instance, "noise injection shared by the group");
                    }
                    Err(e) => {
                        tracing::warn!(model = %shared.model, error = %e, "a shared noise injection does not fit the reference here");
                    }
                }
            }
        }
        true
    }

    /// The partials of `partitions` (those this instance reads), one per model and partition.
    pub fn partials(
        &self,
        group: &str,
        instance: &str,
        partitions: &std::collections::BTreeSet<i32>,
    ) -> Vec<Partial> {
        let now = Utc::now();
        let mut out = Vec::new();
        for (name, w) in &self.models {
            let mut read: Vec<i32> = w.partitions.keys().copied().collect();
            read.extend(w.quality.keys());
            read.sort_unstable();
            read.dedup();
            for p in read.into_iter().filter(|p| partitions.contains(p)) {
                out.push(Partial {
                    format: partials::FORMAT,
                    group: group.to_string(),
                    model: name.clone(),
                    partition: p,
                    version: w.reference.version,
                    spec_hash: w.reference.spec_hash.clone(),
                    instance: instance.to_string(),
                    written_at: now,
                    offset: self.positions.offsets.get(&p).copied().unwrap_or(0),
                    counts: w
                        .partitions
                        .get(&p)
                        .cloned()
                        .unwrap_or_else(|| Counts::new(&w.reference, &w.config)),
                    quality: w.quality.get(&p).map(Quality::share).unwrap_or_default(),
                });
            }
        }
        out
    }

    /// Gives up the position of a partition whose log is not the one it was taken on (see
    /// [`Reset`]): it is read from its beginning. `offset` is where that was seen.
    pub fn give_up(&mut self, feed: Feed, partition: i32, reset: Reset, offset: i64) {
        let positions = self.positions_mut(feed);
        let position = positions.offsets.get(&partition).copied().unwrap_or(0);
        positions.forget(partition);
        self.reset(feed, partition, reset, offset, position);
    }

    /// Moves `feed`'s position past the message at `offset` whose identity is `id`, logging
    /// and counting a log that starts again or a gap; `true` when the message was read
    /// already (delivered again).
    fn advance(&mut self, feed: Feed, partition: i32, offset: i64, id: &str) -> bool {
        match self.positions_mut(feed).advance(partition, offset, id) {
            Step::AlreadyRead => return true,
            Step::Restarted { position } => {
                self.reset(feed, partition, Reset::Restarted, offset, position)
            }
            Step::Next {
                missed: Some(position),
            } => self.missed(feed, partition, position, offset),
            Step::Next { missed: None } => {}
        }
        false
    }

    pub fn positions_of(&self, feed: Feed) -> &Positions {
        match feed {
            Feed::Predictions => &self.positions,
            Feed::Labels => &self.label_positions,
        }
    }

    fn positions_mut(&mut self, feed: Feed) -> &mut Positions {
        match feed {
            Feed::Predictions => &mut self.positions,
            Feed::Labels => &mut self.label_positions,
        }
    }

    /// Reads one message of the labels topic: a label of a watched model is joined to its
    /// answer (or waits for it); see [`crate::quality`].
    pub fn apply_label(
        &mut self,
        partition: i32,
        offset: i64,
        payload: &[u8],
        now_ms: i64,
    ) -> Result<LabelOutcome, LabelSkip> {
        let outcome = self.apply_label_unrecorded(partition, offset, payload, now_ms);
        if let Err(skip) = outcome {
            self.metrics
                .labels_skipped
                .with_label_values(&[skip.as_str()])
                .inc();
        }
        outcome
    }

    fn apply_label_unrecorded(
        &mut self,
        partition: i32,
        offset: i64,
        payload: &[u8],
        now_ms: i64,
    ) -> Result<LabelOutcome, LabelSkip> {
        if self.advance(Feed::Labels, partition, offset, &label_identity(payload)) {
            return Err(LabelSkip::AlreadyRead);
        }
        let label: vigie_stream::LabelEvent =
            serde_json::from_slice(payload).map_err(|_| LabelSkip::Unreadable)?;
        let watch = self
            .models
            .get_mut(&label.model)
            .ok_or(LabelSkip::UnknownModel)?;
        // A regression's truth is a number; a classification's, a class.
        let truth = match (watch.reference.regression_margin, label.class, label.value) {
            (Some(_), None, Some(v)) if v.is_finite() => Some(v),
            (None, Some(c @ (0 | 1)), None) => Some(f64::from(c)),
            _ => None,
        };
        let Some(truth) = truth else {
            watch.quality_of(partition).wrong_type();
            return Ok(LabelOutcome::WrongType);
        };
        let version = watch.reference.version;
        Ok(watch.quality_of(partition).label(
            quality::key(&label.request_id, label.row),
            Early {
                truth,
                at_ms: label.ts.timestamp_millis(),
            },
            version,
            now_ms,
        ))
    }

    /// Gives up a partition's position: logged and counted.
    fn reset(&mut self, feed: Feed, partition: i32, reset: Reset, offset: i64, position: i64) {
        tracing::warn!(
            ?feed,
            partition,
            offset,
            position,
            reason = reset.as_str(),
            "the partition's log is not the one the position was taken on (a new broker, or a topic created again): counting from here"
        );
        self.metrics
            .offset_resets
            .with_label_values(&[reset.as_str()])
            .inc();
    }

    /// Counts the events between a partition's position and the next event delivered: the
    /// broker no longer held them when the drift service reached them (its retention removed
    /// them while the service lagged or was stopped). They cannot be counted; they are not
    /// passed over in silence.
    fn missed(&mut self, feed: Feed, partition: i32, position: i64, offset: i64) {
        let missed = (offset - position) as u64;
        tracing::warn!(
            ?feed,
            partition,
            position,
            offset,
            missed,
            "events were removed from the partition's log before they were read: they are not counted"
        );
        self.metrics.missed.inc_by(missed);
    }

    /// Removes expired noise injections (the consumer also does it as events arrive; this
    /// covers a model with no traffic).
    pub fn expire_noise(&mut self, now: DateTime<Utc>) {
        for watch in self.models.values_mut() {
            if watch.noise.as_ref().is_some_and(|n| n.expires_at <= now) {
                watch.stop_noise("expired");
            }
        }
    }

    /// The model a request names, or the only one watched: 404 for a model not watched, 422
    /// when several are watched and none is named.
    pub fn pick(&self, name: Option<&str>) -> Result<String, ApiError> {
        let models = &self.models;
        match name {
            Some(name) if models.contains_key(name) => Ok(name.to_string()),
            Some(name) => Err(self.unknown_model(name)),
            None if models.len() == 1 => Ok(models.keys().next().cloned().unwrap_or_default()),
            None if models.is_empty() => Err(ApiError::unavailable(
                "no_model",
                "no model is watched yet: no production version has a reference",
            )),
            None => Err(ApiError::invalid(
                "model_required",
                format!(
                    "several models are watched ({}): name one",
                    models.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
            .with_field("model")),
        }
    }

    /// The 404 for a model not watched, listing the watched ones.
    pub fn unknown_model(&self, name: &str) -> ApiError {
        let names: Vec<&str> = self.models.keys().map(String::as_str).collect();
        ApiError::not_found(
            "unknown_model",
            format!(
                "no model named {name:?} is watched; watched: {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
        )
        .with_field("model")
    }
}

/// A query naming a model (optional when one is watched).
#[derive(Debug, Deserialize)]
pub struct ModelQuery {
    pub model: Option<String>,
}

/// The state's lock. Nothing under it is expected to panic (no unwrap, no indexing outside the
/// bins); were it poisoned all the same, serving the counts beats stopping every reader.
pub fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
pub(crate) mod tests;
