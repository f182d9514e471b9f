//! Realised quality: the labels of `vigie.labels` joined to the answers of `vigie.predictions`
//! by request id and row, and what the last labelled answers show (a regression's MAE and
//! interval coverage, a classification's accuracy and Brier score).
//!
//! Labels come late (an attendance time minutes after the call, a hospitalisation days
//! later). An answer waits for its label at most [`QualityConfig::wait_ms`], and at most
//! [`QualityConfig::capacity`] answers wait per model: the oldest leave first. A label read
//! before its answer (the two topics are read side by side, in no common order) waits the
//! same way. Whatever leaves without its partner is counted; nothing leaves in silence.
//!
//! The first label of an answer counts. A later one for the same answer is counted as
//! relabelled and changes nothing (the window already holds the first; an operator who
//! corrects a label reads the counter). An answer of a version no longer in production is
//! counted apart and kept out of the window: the window is the production version's quality.
//!
//! Beside the join, a classification's quality is estimated without labels (see
//! [`vigie_model::estimate`]) over the answers of the sliding window (a sketch per pane of
//! event time), and every answer and every joined label is counted into its period (event
//! time, as wide as the tumbling windows; the last [`QualityConfig::periods`] kept): each
//! period shows its estimated and its realised quality side by side, the share of its answers
//! labelled so far and their mean label delay. A period counts the answers of whatever version
//! served them.
//!
//! A [`Quality`] is one partition's: labels are published under their answer's key, so a label
//! is on its answer's partition, and the join needs no other partition. [`QualitySum`] adds
//! several partitions' up, always in partition order, so that one instance reading every
//! partition and several reading some give the same figures: the window of labelled answers is
//! the newest [`QualityConfig::window`] of all partitions by label time (each partition keeps
//! its newest, so the newest of all are among them), sketches and periods are sums.
//!
//! The whole state is saved with the drift checkpoint (see `crate::checkpoint`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hasher;

use chrono::{DateTime, Utc};
use prometheus::{Histogram, IntCounter};
use serde::{Deserialize, Serialize};
use vigie_model::estimate::{Estimated, Labelled, RealisedClass, Sketch};
use vigie_model::metrics::ConfusionMatrix;

use crate::metrics::Metrics;

/// How long and how many answers wait for labels, and how many labelled answers a model's
/// quality is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QualityConfig {
    /// Longest wait of an answer for its label (and of a label for its answer), in ms.
    pub wait_ms: i64,
    /// Most answers (and most early labels) waiting per model.
    pub capacity: usize,
    /// Labelled answers in a model's quality window (the newest by label time).
    pub window: usize,
    /// The live estimate's answers: the last this many ms of event time (a model's watch sets
    /// the sliding window's width), in panes of `pane_ms` (the sliding window's).
    pub live_ms: i64,
    pub pane_ms: i64,
    /// Width of a period, in ms (a model's watch sets the tumbling windows').
    pub period_ms: i64,
    /// Periods kept (the newest).
    pub periods: usize,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            wait_ms: 72 * 3_600_000,
            capacity: 10_000,
            window: 500,
            live_ms: 300_000,
            pane_ms: 5_000,
            period_ms: 60_000,
            periods: 120,
        }
    }
}

/// The identity of an answer: its request id and row, hashed eight bytes at a time (stable
/// across runs and platforms: keys are saved in checkpoints). Not a defence against chosen
/// collisions: the maps below hash keys again with a per-process secret. At 10,000 waiting
/// answers, two sharing a key is a one in 10^10 event.
pub fn key(request_id: &str, row: Option<u64>) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes = request_id.as_bytes();
    let mut h = K ^ bytes.len() as u64;
    let mut eat = |word: u64| h = (h ^ word).wrapping_mul(K).rotate_left(29);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        eat(u64::from_le_bytes(word));
    }
    let rest = chunks.remainder();
    let mut word = [0u8; 8];
    word[..rest.len()].copy_from_slice(rest);
    eat(u64::from_le_bytes(word));
    // Absent and row 0 differ.
    eat(row.map_or(0, |r| r.wrapping_add(1)));
    mix(h)
}

/// splitmix64's finaliser: every output bit depends on every input bit.
fn mix(mut h: u64) -> u64 {
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// How the maps hash keys: the key mixed with a secret drawn once per process, so that no
/// one can choose request ids that pile up in one place of a map. Keys are hashes already:
/// a general-purpose hasher on top, twice per answer, was a measurable share of the drift
/// service's time per event.
#[derive(Debug, Clone, Copy)]
pub struct KeyState {
    secret: u64,
}

impl Default for KeyState {
    fn default() -> Self {
        use std::hash::BuildHasher;
        static SECRET: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let secret = *SECRET
            .get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64));
        KeyState { secret }
    }
}

impl std::hash::BuildHasher for KeyState {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            secret: self.secret,
            value: 0,
        }
    }
}

/// See [`KeyState`].
#[derive(Debug, Clone, Copy)]
pub struct KeyHasher {
    secret: u64,
    value: u64,
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        mix(self.value ^ self.secret)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; other input still hashes.
        self.value = crate::watch::fnv1a(self.value, bytes);
    }

    fn write_u64(&mut self, key: u64) {
        self.value ^= key;
    }
}

type KeyMap<V> = HashMap<u64, V, KeyState>;
type KeySet = HashSet<u64, KeyState>;

/// What an answer said, as far as its quality goes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    #[serde(rename = "v")]
    pub version: u32,
    /// The probability of the positive class, or the estimate.
    #[serde(rename = "y")]
    pub value: f64,
    /// The class answered (classification).
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub class: Option<u8>,
    /// The prediction interval (regression).
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<(f64, f64)>,
    #[serde(rename = "f", default, skip_serializing_if = "std::ops::Not::not")]
    pub flagged: bool,
    /// Event time of the prediction, ms.
    #[serde(rename = "t")]
    pub at_ms: i64,
    /// Its row in a batch or an upload.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
}

/// A label read before its answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Early {
    pub truth: f64,
    /// When the label was given, ms.
    pub at_ms: i64,
}

/// A labelled answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Joined {
    pub answer: Answer,
    pub truth: f64,
    /// From the prediction to its label, ms.
    pub delay_ms: i64,
}

impl Joined {
    /// Where it stands in the window of labelled answers: by when its label was given (not
    /// before its answer), then when its answer was, then its row, then its key. Labels given
    /// together (one feedback request) keep their answers' order.
    fn order(&self, key: u64) -> WindowKey {
        (
            self.answer.at_ms.saturating_add(self.delay_ms),
            self.answer.at_ms,
            self.answer.row.unwrap_or(0),
            key,
        )
    }
}

/// See [`Joined::order`].
type WindowKey = (i64, i64, u64, u64);

/// What became of a label of a watched model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelOutcome {
    /// Joined to its answer: in the window.
    Joined,
    /// Its answer is not read yet: it waits.
    Early,
    /// Its answer was labelled already: the first label counts.
    Relabelled,
    /// Its answer came from a version no longer in production: counted, not in the window.
    OldVersion,
    /// The label's type does not fit the model's task (a class for a regression...).
    WrongType,
    /// Its answer never came within the wait (or the early labels were full).
    Unmatched,
}

impl LabelOutcome {
    /// The outcomes counted in `vigie_quality_labels_total` (early labels are counted when
    /// they are joined or leave).
    pub const COUNTED: [LabelOutcome; 5] = [
        LabelOutcome::Joined,
        LabelOutcome::Relabelled,
        LabelOutcome::OldVersion,
        LabelOutcome::WrongType,
        LabelOutcome::Unmatched,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LabelOutcome::Joined => "joined",
            LabelOutcome::Early => "early",
            LabelOutcome::Relabelled => "relabelled",
            LabelOutcome::OldVersion => "old_version",
            LabelOutcome::WrongType => "wrong_type",
            LabelOutcome::Unmatched => "unmatched",
        }
    }
}

/// Why an answer left without a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlabelled {
    /// Its wait ran out.
    Wait,
    /// More answers waited than the capacity: the oldest left.
    Capacity,
}

impl Unlabelled {
    pub const ALL: [Unlabelled; 2] = [Unlabelled::Wait, Unlabelled::Capacity];

    pub fn as_str(self) -> &'static str {
        match self {
            Unlabelled::Wait => "wait",
            Unlabelled::Capacity => "capacity",
        }
    }
}

/// The quality of a model's last labelled answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Realised {
    /// Labelled answers measured (at most the window).
    pub labels: usize,
    pub window: usize,
    /// Regression: mean absolute error, root mean squared error, mean residual (truth minus
    /// estimate), the share of truths inside the interval, the share of estimates more than
    /// the spec's margin under the truth, the share flagged as at risk of underestimation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rmse: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_residual: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_coverage: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_underestimated: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_flagged: Option<f64>,
    /// Classification: the share of answers whose class was the truth, and the Brier score of
    /// the probabilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brier: Option<f64>,
    /// Classification: ROC AUC of the probabilities (absent while the labels hold one class),
    /// and F1, precision and recall of the classes answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roc_auc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall: Option<f64>,
    /// Median delay from the prediction to its label, seconds.
    pub median_label_delay_seconds: f64,
}

impl Realised {
    /// The metrics present, by the name `vigie_quality_realised` gives them.
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        // In the order of [`Realised::NAMES`].
        let values = [
            self.mae,
            self.rmse,
            self.mean_residual,
            self.interval_coverage,
            self.share_underestimated,
            self.share_flagged,
            self.accuracy,
            self.brier,
            self.roc_auc,
            self.f1,
            self.precision,
            self.recall,
        ];
        Self::NAMES
            .into_iter()
            .zip(values)
            .filter_map(|(name, v)| v.map(|v| (name, v)))
            .collect()
    }

    /// Every name [`Realised::metrics`] may give.
    pub const NAMES: [&'static str; 12] = [
        "mae",
        "rmse",
        "mean_residual",
        "interval_coverage",
        "share_underestimated",
        "share_flagged",
        "accuracy",
        "brier",
        "roc_auc",
        "f1",
        "precision",
        "recall",
    ];
}

/// The saved form of a partition's [`Quality`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QualityState {
    /// Answers waiting, oldest first: key, when read (ms), the answer.
    pub awaiting: Vec<(u64, i64, Answer)>,
    /// Labels waiting for their answer, oldest first: key, when read (ms), the label.
    pub early: Vec<(u64, i64, Early)>,
    /// Keys of the answers labelled lately, oldest first.
    pub labelled: Vec<u64>,
    /// The window, oldest first: key and labelled answer.
    pub window: Vec<(u64, Joined)>,
    /// The live answers' sketches, by pane start.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub live: BTreeMap<i64, Sketch>,
    /// The periods, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub periods: Vec<Period>,
}

/// One period's answers and their labels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Period {
    pub start_ms: i64,
    pub answers: u64,
    /// A classification's answers, for the estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sketch: Option<Sketch>,
    pub labelled: u64,
    /// A classification's labelled answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labelled>,
    /// A regression's labelled answers: the sum of absolute errors, the answers with an
    /// interval and those whose interval held the truth.
    #[serde(default)]
    pub absolute_error: f64,
    #[serde(default)]
    pub with_interval: u64,
    #[serde(default)]
    pub covered: u64,
    /// The sum of the labels' delays, ms.
    #[serde(default)]
    pub delay_ms: f64,
}

impl Period {
    fn count(&mut self, answer: &Answer) {
        self.answers += 1;
        if let Some(class) = answer.class {
            self.sketch
                .get_or_insert_with(Sketch::default)
                .add(Sketch::slot(answer.value, class));
        }
    }

    fn label(&mut self, joined: &Joined) {
        self.labelled += 1;
        self.delay_ms += joined.delay_ms as f64;
        let answer = &joined.answer;
        match answer.class {
            Some(class) => self.labels.get_or_insert_with(Labelled::default).add(
                answer.value,
                class,
                joined.truth == 1.0,
            ),
            None => {
                self.absolute_error += (joined.truth - answer.value).abs();
                if let Some((lo, hi)) = answer.interval {
                    self.with_interval += 1;
                    self.covered += u64::from(lo <= joined.truth && joined.truth <= hi);
                }
            }
        }
    }

    /// Adds another partition's counts of the same period.
    fn merge(&mut self, other: &Period) {
        self.answers += other.answers;
        if let Some(sketch) = &other.sketch {
            self.sketch
                .get_or_insert_with(Sketch::default)
                .merge(sketch);
        }
        self.labelled += other.labelled;
        if let Some(labels) = &other.labels {
            self.labels
                .get_or_insert_with(Labelled::default)
                .merge(labels);
        }
        self.absolute_error += other.absolute_error;
        self.with_interval += other.with_interval;
        self.covered += other.covered;
        self.delay_ms += other.delay_ms;
    }

    /// What the period shows; `width_ms` is its width.
    pub fn view(&self, width_ms: i64) -> PeriodView {
        let labelled = self.labelled as f64;
        PeriodView {
            start: crate::score::time(self.start_ms),
            end: crate::score::time(self.start_ms.saturating_add(width_ms)),
            answers: self.answers,
            labelled: self.labelled,
            labelled_share: if self.answers > 0 {
                (labelled / self.answers as f64).min(1.0)
            } else {
                0.0
            },
            mean_label_delay_seconds: (self.labelled > 0)
                .then(|| self.delay_ms / labelled / 1000.0),
            estimated: self.sketch.as_ref().and_then(Sketch::estimate),
            realised: self.labels.as_ref().and_then(Labelled::realised),
            mae: (self.labels.is_none() && self.labelled > 0)
                .then(|| self.absolute_error / labelled),
            interval_coverage: (self.with_interval > 0)
                .then(|| self.covered as f64 / self.with_interval as f64),
        }
    }
}

/// A period as `/v1/drift` shows it: the estimate beside the realised figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodView {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub answers: u64,
    pub labelled: u64,
    /// The share of the period's answers labelled so far (labels still come in).
    pub labelled_share: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_label_delay_seconds: Option<f64>,
    /// A classification's quality estimated from its probabilities, with 95% bands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated: Option<Estimated>,
    /// A classification's quality on the labelled answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realised: Option<RealisedClass>,
    /// A regression's on the labelled answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_coverage: Option<f64>,
}

/// Answers waiting for their label (or labels for their answer), in the order they were read:
/// a ring of slots (read in order, so the oldest are found without a search) and an index from
/// key to slot (16-byte entries, looked up at random: small enough to stay in cache for a busy
/// model). A joined item leaves a hole; holes at the front are dropped at once.
#[derive(Debug)]
struct Waiting<T> {
    slots: VecDeque<Option<(u64, i64, T)>>,
    /// The sequence number of `slots[0]`.
    first: u64,
    index: KeyMap<u64>,
}

impl<T> Default for Waiting<T> {
    fn default() -> Self {
        Waiting {
            slots: VecDeque::new(),
            first: 0,
            index: KeyMap::default(),
        }
    }
}

impl<T: Copy> Waiting<T> {
    fn len(&self) -> usize {
        self.index.len()
    }

    fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn slot(&self, seq: u64) -> usize {
        (seq - self.first) as usize
    }

    fn contains(&self, key: u64) -> bool {
        self.index.contains_key(&key)
    }

    /// Adds an item read at `read`; a second one under the same key replaces the first.
    fn push(&mut self, key: u64, read: i64, item: T) {
        let seq = self.first + self.slots.len() as u64;
        if let Some(old) = self.index.insert(key, seq) {
            let at = self.slot(old);
            self.slots[at] = None;
        }
        self.slots.push_back(Some((key, read, item)));
    }

    /// The item under `key`, taken out.
    fn take(&mut self, key: u64) -> Option<T> {
        let seq = self.index.remove(&key)?;
        let at = self.slot(seq);
        let (_, _, item) = self.slots[at].take()?;
        self.trim();
        Some(item)
    }

    /// Drops the holes at the front.
    fn trim(&mut self) {
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.first += 1;
        }
    }

    /// Takes the oldest item out when `leave(read)` says it leaves; `false` when it stays (or
    /// nothing waits).
    fn pop_oldest_if(&mut self, leave: impl Fn(i64) -> bool) -> bool {
        self.trim();
        match self.slots.front() {
            Some(Some((key, read, _))) if leave(*read) => {
                let key = *key;
                self.slots.pop_front();
                self.index.remove(&key);
                self.first += 1;
                true
            }
            _ => false,
        }
    }

    /// Slots in use, holes included.
    fn span(&self) -> usize {
        self.slots.len()
    }

    fn iter(&self) -> impl Iterator<Item = &(u64, i64, T)> {
        self.slots.iter().flatten()
    }
}

/// One partition's join of a model's labels to its answers, its newest labelled answers, the
/// sketches of its live answers and its periods.
#[derive(Debug)]
pub struct Quality {
    config: QualityConfig,
    awaiting: Waiting<Answer>,
    early: Waiting<Early>,
    labelled: KeySet,
    labelled_order: VecDeque<u64>,
    /// The newest labelled answers, in [`Joined::order`].
    window: BTreeMap<WindowKey, Joined>,
    /// A classification's answers, by pane start.
    live: BTreeMap<i64, Sketch>,
    /// By start, ms.
    periods: BTreeMap<i64, Period>,
    counters: Counters,
}

/// The model's counters, resolved once.
#[derive(Debug, Clone)]
struct Counters {
    labels: [IntCounter; LabelOutcome::COUNTED.len()],
    unlabelled: [IntCounter; Unlabelled::ALL.len()],
    delay: Histogram,
}

impl Counters {
    fn new(metrics: &Metrics, model: &str) -> Self {
        Counters {
            labels: LabelOutcome::COUNTED.map(|o| {
                metrics
                    .quality_labels
                    .with_label_values(&[model, o.as_str()])
            }),
            unlabelled: Unlabelled::ALL.map(|u| {
                metrics
                    .quality_unlabelled
                    .with_label_values(&[model, u.as_str()])
            }),
            delay: metrics.label_delay.clone(),
        }
    }

    fn label(&self, outcome: LabelOutcome) {
        if let Some(at) = LabelOutcome::COUNTED.iter().position(|o| *o == outcome) {
            self.labels[at].inc();
        }
    }

    fn unlabelled(&self, why: Unlabelled) {
        let at = Unlabelled::ALL.iter().position(|u| *u == why).unwrap_or(0);
        self.unlabelled[at].inc();
    }
}

impl Quality {
    pub fn new(config: QualityConfig, metrics: &Metrics, model: &str) -> Self {
        Quality {
            config,
            awaiting: Waiting::default(),
            early: Waiting::default(),
            labelled: KeySet::default(),
            labelled_order: VecDeque::new(),
            window: BTreeMap::new(),
            live: BTreeMap::new(),
            periods: BTreeMap::new(),
            counters: Counters::new(metrics, model),
        }
    }

    /// Answers and labels waiting.
    pub fn waiting(&self) -> (usize, usize) {
        (self.awaiting.len(), self.early.len())
    }

    /// An answer read: joined at once to its early label, else waits. `version` is the
    /// production version now; `live` says whether its event entered its pane (a late one is
    /// not in the live answers, as it is not in the sliding window).
    pub fn answer(&mut self, key: u64, answer: Answer, version: u32, now_ms: i64, live: bool) {
        self.expire(now_ms);
        if let (Some(class), true) = (answer.class, live) {
            let pane = vigie_drift::window::window_start(answer.at_ms, self.config.pane_ms);
            self.live
                .entry(pane)
                .or_default()
                .add(Sketch::slot(answer.value, class));
        }
        if let Some(period) = self.period(answer.at_ms, true) {
            period.count(&answer);
        }
        if !self.early.is_empty()
            && let Some(early) = self.early.take(key)
        {
            self.join(key, answer, early, version);
            return;
        }
        if !self.labelled.is_empty() && self.labelled.contains(&key) {
            // Delivered again after its label (at-least-once): already joined.
            return;
        }
        self.awaiting.push(key, now_ms, answer);
        // At most `capacity` answers wait, over at most twice as many slots (the holes of
        // answers joined out of order).
        while self.awaiting.len() > self.config.capacity
            || self.awaiting.span() > 2 * self.config.capacity
        {
            if !self.awaiting.pop_oldest_if(|_| true) {
                break;
            }
            self.counters.unlabelled(Unlabelled::Capacity);
        }
    }

    /// A label read for the answer `key`; `version` is the production version now.
    pub fn label(&mut self, key: u64, label: Early, version: u32, now_ms: i64) -> LabelOutcome {
        self.expire(now_ms);
        if self.labelled.contains(&key) {
            self.counters.label(LabelOutcome::Relabelled);
            return LabelOutcome::Relabelled;
        }
        if let Some(answer) = self.awaiting.take(key) {
            return self.join(key, answer, label, version);
        }
        if self.early.contains(key) {
            // A second label before the answer: the first counts.
            self.counters.label(LabelOutcome::Relabelled);
            return LabelOutcome::Relabelled;
        }
        self.early.push(key, now_ms, label);
        while self.early.len() > self.config.capacity
            || self.early.span() > 2 * self.config.capacity
        {
            if !self.early.pop_oldest_if(|_| true) {
                break;
            }
            self.counters.label(LabelOutcome::Unmatched);
        }
        LabelOutcome::Early
    }

    /// Counts a label whose type does not fit the task.
    pub fn wrong_type(&self) {
        self.counters.label(LabelOutcome::WrongType);
    }

    fn join(&mut self, key: u64, answer: Answer, label: Early, version: u32) -> LabelOutcome {
        self.labelled.insert(key);
        self.labelled_order.push_back(key);
        while self.labelled_order.len() > self.config.capacity {
            if let Some(old) = self.labelled_order.pop_front() {
                self.labelled.remove(&old);
            }
        }
        let delay_ms = (label.at_ms - answer.at_ms).max(0);
        self.counters.delay.observe(delay_ms as f64 / 1000.0);
        let joined = Joined {
            answer,
            truth: label.truth,
            delay_ms,
        };
        if let Some(period) = self.period(answer.at_ms, false) {
            period.label(&joined);
        }
        if answer.version != version {
            self.counters.label(LabelOutcome::OldVersion);
            return LabelOutcome::OldVersion;
        }
        self.window.insert(joined.order(key), joined);
        while self.window.len() > self.config.window {
            self.window.pop_first();
        }
        self.counters.label(LabelOutcome::Joined);
        LabelOutcome::Joined
    }

    /// Lets the answers and labels whose wait ran out leave, counted.
    pub fn expire(&mut self, now_ms: i64) {
        let before = now_ms - self.config.wait_ms;
        while self.awaiting.pop_oldest_if(|read| read <= before) {
            self.counters.unlabelled(Unlabelled::Wait);
        }
        while self.early.pop_oldest_if(|read| read <= before) {
            self.counters.label(LabelOutcome::Unmatched);
        }
    }

    /// Forgets the window and the live answers (a new production version: its quality starts
    /// from its own answers and labels). Answers waiting stay: their labels are still counted,
    /// as the old version's, and so do the periods.
    pub fn clear_window(&mut self) {
        self.window.clear();
        self.live.clear();
    }

    /// Forgets the live answers' panes that start before `start_ms` (the sliding window's
    /// panes go at the same time).
    pub fn forget_before(&mut self, start_ms: i64) {
        self.live = self.live.split_off(&start_ms);
    }

    /// The period of event time `at_ms`: created when `create` and it is not older than the
    /// periods kept (the oldest then leave); `None` for a period already gone.
    fn period(&mut self, at_ms: i64, create: bool) -> Option<&mut Period> {
        let start = vigie_drift::window::window_start(at_ms, self.config.period_ms);
        if create && !self.periods.contains_key(&start) {
            let full = self.periods.len() >= self.config.periods.max(1);
            if full
                && self
                    .periods
                    .keys()
                    .next()
                    .is_some_and(|&first| start < first)
            {
                return None;
            }
            self.periods.insert(
                start,
                Period {
                    start_ms: start,
                    ..Period::default()
                },
            );
            while self.periods.len() > self.config.periods.max(1) {
                self.periods.pop_first();
            }
        }
        self.periods.get_mut(&start)
    }

    pub fn state(&self) -> QualityState {
        QualityState {
            awaiting: self.awaiting.iter().copied().collect(),
            early: self.early.iter().copied().collect(),
            labelled: self.labelled_order.iter().copied().collect(),
            window: self.window.iter().map(|(&(.., k), j)| (k, *j)).collect(),
            live: self.live.clone(),
            periods: self.periods.values().cloned().collect(),
        }
    }

    /// What this partition adds to a sum, for another instance.
    pub fn share(&self) -> QualityShare {
        QualityShare {
            window: self.window.iter().map(|(&(.., k), j)| (k, *j)).collect(),
            live: self.live.clone(),
            periods: self.periods.values().cloned().collect(),
            waiting: self.waiting(),
        }
    }

    /// Takes a saved state back, within this configuration's bounds (the newest kept).
    pub fn restore(&mut self, saved: QualityState) {
        let keep = |len: usize, bound: usize| len.saturating_sub(bound);
        let skip = keep(saved.awaiting.len(), self.config.capacity);
        for (key, read, answer) in saved.awaiting.into_iter().skip(skip) {
            self.awaiting.push(key, read, answer);
        }
        let skip = keep(saved.early.len(), self.config.capacity);
        for (key, read, label) in saved.early.into_iter().skip(skip) {
            self.early.push(key, read, label);
        }
        let skip = keep(saved.labelled.len(), self.config.capacity);
        for key in saved.labelled.into_iter().skip(skip) {
            self.labelled.insert(key);
            self.labelled_order.push_back(key);
        }
        self.window = saved
            .window
            .into_iter()
            .map(|(k, j)| (j.order(k), j))
            .collect();
        while self.window.len() > self.config.window {
            self.window.pop_first();
        }
        // Sketches whose slots do not fit (a damaged checkpoint) are left out.
        self.live = saved
            .live
            .into_iter()
            .filter(|(start, _)| {
                vigie_drift::window::window_start(*start, self.config.pane_ms) == *start
            })
            .collect();
        let skip = keep(saved.periods.len(), self.config.periods);
        self.periods = saved
            .periods
            .into_iter()
            .skip(skip)
            .map(|p| (p.start_ms, p))
            .collect();
    }
}

/// What a partition's quality adds to a sum, as an instance publishes it for the others
/// (see `crate::partials`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QualityShare {
    /// The newest labelled answers: key and labelled answer.
    pub window: Vec<(u64, Joined)>,
    /// The live answers' sketches, by pane start.
    pub live: BTreeMap<i64, Sketch>,
    pub periods: Vec<Period>,
    /// Answers and labels waiting.
    pub waiting: (usize, usize),
}

/// A partition's part of a [`QualitySum`]: the state of a partition this instance reads, or
/// what another instance published of one it reads.
#[derive(Debug, Clone, Copy)]
pub enum Part<'a> {
    Own(&'a Quality),
    Shared(&'a QualityShare),
}

/// Several partitions' quality of one model, added up (see the module's documentation).
#[derive(Debug, Clone)]
pub struct QualitySum {
    config: QualityConfig,
    /// The newest labelled answers of all partitions, oldest first.
    window: Vec<Joined>,
    live: BTreeMap<i64, Sketch>,
    periods: BTreeMap<i64, Period>,
    waiting: (usize, usize),
}

impl QualitySum {
    /// The sum of `parts`, given in partition order.
    pub fn of<'a>(config: QualityConfig, parts: impl IntoIterator<Item = Part<'a>>) -> Self {
        let mut window: BTreeMap<WindowKey, Joined> = BTreeMap::new();
        let mut live: BTreeMap<i64, Sketch> = BTreeMap::new();
        let mut periods: BTreeMap<i64, Period> = BTreeMap::new();
        let mut waiting = (0, 0);
        let mut add_period = |period: &Period| {
            periods
                .entry(period.start_ms)
                .or_insert_with(|| Period {
                    start_ms: period.start_ms,
                    ..Period::default()
                })
                .merge(period);
        };
        for part in parts {
            let (part_live, part_waiting) = match part {
                Part::Own(q) => {
                    window.extend(q.window.iter().map(|(&k, &j)| (k, j)));
                    q.periods.values().for_each(&mut add_period);
                    (&q.live, q.waiting())
                }
                Part::Shared(share) => {
                    window.extend(share.window.iter().map(|&(k, j)| (j.order(k), j)));
                    share.periods.iter().for_each(&mut add_period);
                    (&share.live, share.waiting)
                }
            };
            while window.len() > config.window {
                window.pop_first();
            }
            for (&start, sketch) in part_live {
                live.entry(start).or_default().merge(sketch);
            }
            waiting = (waiting.0 + part_waiting.0, waiting.1 + part_waiting.1);
        }
        while periods.len() > config.periods.max(1) {
            periods.pop_first();
        }
        QualitySum {
            config,
            window: window.into_values().collect(),
            live,
            periods,
            waiting,
        }
    }

    /// Answers and labels waiting.
    pub fn waiting(&self) -> (usize, usize) {
        self.waiting
    }

    /// The quality of the live answers estimated without labels: those of the panes of the
    /// last [`QualityConfig::live_ms`] up to the pane of `newest_ms` (the sliding window's
    /// newest event; a classification's; `None` before its first answer).
    pub fn estimate(&self, newest_ms: Option<i64>) -> Option<Estimated> {
        let newest = newest_ms.or_else(|| self.live.keys().next_back().copied())?;
        let pane = self.config.pane_ms.max(1);
        let last = vigie_drift::window::window_start(newest, pane);
        let panes = (self.config.live_ms.max(1) + pane - 1) / pane;
        let first = last.saturating_sub((panes - 1).saturating_mul(pane));
        let mut sum: Option<Sketch> = None;
        for (_, sketch) in self.live.range(first..=last) {
            sum.get_or_insert_with(Sketch::default).merge(sketch);
        }
        sum?.estimate()
    }

    /// The periods, oldest first.
    pub fn periods(&self) -> Vec<PeriodView> {
        self.periods
            .values()
            .map(|p| p.view(self.config.period_ms))
            .collect()
    }

    /// The share of the kept periods' answers labelled so far; `None` before an answer.
    pub fn labelled_share(&self) -> Option<f64> {
        let (answers, labelled) = self
            .periods
            .values()
            .fold((0, 0), |(a, l), p| (a + p.answers, l + p.labelled));
        (answers > 0).then(|| (labelled as f64 / answers as f64).min(1.0))
    }

    /// The quality of the window; `margin` is the regression spec's underestimation margin
    /// (`None` for a classification).
    pub fn realised(&self, margin: Option<f64>) -> Realised {
        let n = self.window.len();
        let mut delays: Vec<i64> = self.window.iter().map(|j| j.delay_ms).collect();
        delays.sort_unstable();
        let median_label_delay_seconds = delays.get(n / 2).map_or(0.0, |&d| d as f64 / 1000.0);
        let mut realised = Realised {
            labels: n,
            window: self.config.window,
            mae: None,
            rmse: None,
            mean_residual: None,
            interval_coverage: None,
            share_underestimated: None,
            share_flagged: None,
            accuracy: None,
            brier: None,
            roc_auc: None,
            f1: None,
            precision: None,
            recall: None,
            median_label_delay_seconds,
        };
        if n == 0 {
            return realised;
        }
        let count = n as f64;
        let mean = |f: &dyn Fn(&Joined) -> f64| self.window.iter().map(f).sum::<f64>() / count;
        let share = |f: &dyn Fn(&Joined) -> bool| {
            self.window.iter().filter(|j| f(j)).count() as f64 / count
        };
        match margin {
            Some(margin) => {
                realised.mae = Some(mean(&|j| (j.truth - j.answer.value).abs()));
                realised.rmse = Some(mean(&|j| (j.truth - j.answer.value).powi(2)).sqrt());
                realised.mean_residual = Some(mean(&|j| j.truth - j.answer.value));
                realised.share_underestimated = Some(share(&|j| j.truth - j.answer.value > margin));
                realised.share_flagged = Some(share(&|j| j.answer.flagged));
                let with_interval = self
                    .window
                    .iter()
                    .filter(|j| j.answer.interval.is_some())
                    .count();
                if with_interval > 0 {
                    let covered = self
                        .window
                        .iter()
                        .filter(|j| {
                            j.answer
                                .interval
                                .is_some_and(|(lo, hi)| lo <= j.truth && j.truth <= hi)
                        })
                        .count();
                    realised.interval_coverage = Some(covered as f64 / with_interval as f64);
                }
            }
            None => {
                realised.brier = Some(mean(&|j| (j.answer.value - j.truth).powi(2)));
                let with_class: Vec<&Joined> = self
                    .window
                    .iter()
                    .filter(|j| j.answer.class.is_some())
                    .collect();
                if !with_class.is_empty() {
                    let mut confusion = ConfusionMatrix::default();
                    for j in &with_class {
                        confusion.add(j.truth == 1.0, j.answer.class == Some(1), 1);
                    }
                    realised.accuracy = Some(confusion.accuracy());
                    realised.precision = Some(confusion.precision());
                    realised.recall = Some(confusion.recall());
                    realised.f1 = Some(confusion.f1());
                }
                let y: Vec<f64> = self.window.iter().map(|j| j.truth).collect();
                let p: Vec<f64> = self.window.iter().map(|j| j.answer.value).collect();
                let positives = y.iter().filter(|&&t| t == 1.0).count();
                if positives > 0 && positives < y.len() {
                    realised.roc_auc = Some(vigie_model::metrics::roc_auc(&y, &p));
                }
            }
        }
        realised
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One partition's figures: its sum alone.
    trait Figures {
        fn realised(&self, margin: Option<f64>) -> Realised;
        fn estimate(&self) -> Option<Estimated>;
        fn periods(&self) -> Vec<PeriodView>;
        fn labelled_share(&self) -> Option<f64>;
    }

    impl Figures for Quality {
        fn realised(&self, margin: Option<f64>) -> Realised {
            QualitySum::of(self.config, [Part::Own(self)]).realised(margin)
        }

        fn estimate(&self) -> Option<Estimated> {
            QualitySum::of(self.config, [Part::Own(self)]).estimate(None)
        }

        fn periods(&self) -> Vec<PeriodView> {
            QualitySum::of(self.config, [Part::Own(self)]).periods()
        }

        fn labelled_share(&self) -> Option<f64> {
            QualitySum::of(self.config, [Part::Own(self)]).labelled_share()
        }
    }

    fn quality(capacity: usize, window: usize) -> (Quality, prometheus::Registry) {
        let registry = prometheus::Registry::new();
        let metrics = Metrics::register(&registry).expect("metrics");
        let config = QualityConfig {
            wait_ms: 1_000,
            capacity,
            window,
            ..QualityConfig::default()
        };
        (Quality::new(config, &metrics, "m"), registry)
    }

    fn estimate(value: f64, lo: f64, hi: f64, flagged: bool) -> Answer {
        Answer {
            version: 1,
            value,
            class: None,
            interval: Some((lo, hi)),
            flagged,
            at_ms: 0,
            row: None,
        }
    }

    fn truth(truth: f64, at_ms: i64) -> Early {
        Early { truth, at_ms }
    }

    fn counted(registry: &prometheus::Registry, family: &str, outcome: &str) -> u64 {
        let text = vigie_api::encode_metrics(registry);
        text.lines()
            .filter(|l| l.starts_with(family) && l.contains(&format!("\"{outcome}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    #[test]
    fn keys_tell_requests_and_rows_apart() {
        assert_ne!(key("r1", None), key("r1", Some(0)));
        assert_ne!(key("r1", Some(0)), key("r1", Some(1)));
        assert_ne!(key("r1", Some(1)), key("r2", Some(1)));
        assert_eq!(key("r1", Some(7)), key("r1", Some(7)));
    }

    #[test]
    fn a_regression_window_gives_its_mae_coverage_and_underestimation() {
        let (mut q, registry) = quality(100, 4);
        // Four answers labelled in order, a fifth pushes the first out of the window.
        let answers = [
            (100.0, 50.0, 150.0, false, 400.0), // far under, outside: the oldest, leaves
            (100.0, 50.0, 150.0, false, 90.0),  // |e| 10, covered
            (200.0, 150.0, 250.0, true, 300.0), // |e| 100, outside, under by 100
            (300.0, 250.0, 350.0, false, 330.0), // |e| 30, covered
            (400.0, 350.0, 450.0, true, 380.0), // |e| 20, covered
        ];
        for (i, &(value, lo, hi, flagged, _)) in answers.iter().enumerate() {
            q.answer(i as u64, estimate(value, lo, hi, flagged), 1, 0, true);
        }
        for (i, &(.., y)) in answers.iter().enumerate() {
            let got = q.label(i as u64, truth(y, 2_000 + i as i64), 1, 10);
            assert_eq!(got, LabelOutcome::Joined);
        }
        let r = q.realised(Some(60.0));
        assert_eq!(r.labels, 4);
        assert_eq!(r.mae, Some(40.0));
        assert_eq!(r.mean_residual, Some((-10.0 + 100.0 + 30.0 - 20.0) / 4.0));
        assert_eq!(r.interval_coverage, Some(0.75));
        assert_eq!(r.share_underestimated, Some(0.25));
        assert_eq!(r.share_flagged, Some(0.5));
        assert_eq!(r.accuracy, None);
        assert_eq!(r.median_label_delay_seconds, 2.003);
        assert_eq!(
            counted(&registry, "vigie_quality_labels_total", "joined"),
            5
        );
    }

    #[test]
    fn a_label_before_its_answer_waits_and_a_second_label_changes_nothing() {
        let (mut q, registry) = quality(100, 10);
        assert_eq!(q.label(7, truth(1.0, 5), 1, 0), LabelOutcome::Early);
        assert_eq!(q.waiting(), (0, 1));
        let answer = Answer {
            class: Some(1),
            interval: None,
            ..estimate(0.8, 0.0, 0.0, false)
        };
        q.answer(7, answer, 1, 10, true);
        assert_eq!(q.waiting(), (0, 0));
        assert_eq!(q.label(7, truth(0.0, 6), 1, 20), LabelOutcome::Relabelled);
        // The same answer delivered again after its label waits for nothing.
        q.answer(7, answer, 1, 30, true);
        assert_eq!(q.waiting(), (0, 0));
        let r = q.realised(None);
        assert_eq!((r.labels, r.accuracy), (1, Some(1.0)));
        assert!((r.brier.unwrap() - 0.04).abs() < 1e-12);
        assert_eq!(
            counted(&registry, "vigie_quality_labels_total", "relabelled"),
            1
        );
    }

    #[test]
    fn whatever_waits_too_long_or_overflows_leaves_counted() {
        let (mut q, registry) = quality(2, 10);
        for k in 0..3 {
            q.answer(k, estimate(1.0, 0.0, 2.0, false), 1, 0, true);
        }
        assert_eq!(q.waiting(), (2, 0), "the oldest left for the capacity");
        assert_eq!(
            counted(
                &registry,
                "vigie_quality_answers_unlabelled_total",
                "capacity"
            ),
            1
        );
        assert_eq!(q.label(9, truth(1.0, 0), 1, 500), LabelOutcome::Early);
        // Past the wait (1 s): both answers and the early label leave.
        q.expire(1_500);
        assert_eq!(q.waiting(), (0, 0));
        assert_eq!(
            counted(&registry, "vigie_quality_answers_unlabelled_total", "wait"),
            2
        );
        assert_eq!(
            counted(&registry, "vigie_quality_labels_total", "unmatched"),
            1
        );
        // A label for an answer that left waits in turn: it cannot be joined.
        assert_eq!(q.label(1, truth(1.0, 0), 1, 1_600), LabelOutcome::Early);
    }

    #[test]
    fn an_old_versions_answer_is_counted_out_of_the_window() {
        let (mut q, registry) = quality(10, 10);
        q.answer(1, estimate(1.0, 0.0, 2.0, false), 1, 0, true);
        assert_eq!(q.label(1, truth(1.0, 0), 2, 0), LabelOutcome::OldVersion);
        assert_eq!(q.realised(Some(0.0)).labels, 0);
        assert_eq!(
            counted(&registry, "vigie_quality_labels_total", "old_version"),
            1
        );
    }

    fn class_answer(p: f64, at_ms: i64) -> Answer {
        Answer {
            version: 1,
            value: p,
            class: Some(u8::from(p >= 0.5)),
            interval: None,
            flagged: false,
            at_ms,
            row: None,
        }
    }

    #[test]
    fn a_classification_is_estimated_on_its_live_answers_and_measured_per_period() {
        let registry = prometheus::Registry::new();
        let metrics = Metrics::register(&registry).expect("metrics");
        let config = QualityConfig {
            wait_ms: 1_000_000,
            capacity: 100,
            window: 100,
            live_ms: 2_000,
            pane_ms: 500,
            period_ms: 1_000,
            periods: 2,
        };
        let mut q = Quality::new(config, &metrics, "m");
        assert_eq!(q.estimate(), None);
        // Six answers over three periods of event time, 500 ms apart; the live estimate is
        // of the last 2 s: 4 answers.
        let ps = [0.9, 0.8, 0.1, 0.7, 0.2, 0.3];
        for (k, &p) in ps.iter().enumerate() {
            q.answer(k as u64, class_answer(p, 500 * k as i64), 1, 0, true);
        }
        let live = q.estimate().expect("estimated");
        assert_eq!(live.rows, 4);
        let expected = 0.1 + 0.7 + 0.2 + 0.3;
        assert!(
            (live.expected_positives - expected).abs() < 0.01,
            "{live:?}"
        );
        // Two periods kept: [1000, 2000) and [2000, 3000).
        let periods = q.periods();
        assert_eq!(periods.len(), 2);
        assert_eq!(
            periods.iter().map(|p| p.answers).collect::<Vec<_>>(),
            vec![2, 2]
        );
        // Labels: 0.1 was negative, 0.7 positive (period 1), 0.2 positive (period 2).
        for (k, truth) in [(2, 0.0), (3, 1.0), (4, 1.0)] {
            assert_eq!(
                q.label(
                    k,
                    Early {
                        truth,
                        at_ms: 4_000
                    },
                    1,
                    0
                ),
                LabelOutcome::Joined
            );
        }
        let periods = q.periods();
        let first = periods[0].realised.as_ref().expect("labelled");
        assert_eq!(
            (first.rows, first.accuracy, first.roc_auc),
            (2, 1.0, Some(1.0))
        );
        assert_eq!(periods[1].labelled, 1);
        assert_eq!(periods[1].labelled_share, 0.5);
        assert_eq!(periods[0].mean_label_delay_seconds, Some(2.75));
        assert_eq!(q.labelled_share(), Some(0.75));
        // The rolling window's classification figures: 3 labelled, 0.2 answered 0 but was 1.
        let r = q.realised(None);
        assert_eq!((r.precision, r.recall), (Some(1.0), Some(0.5)));
        assert_eq!(r.f1, Some(2.0 / 3.0));
        assert_eq!(r.roc_auc, Some(1.0));
        // A label for an answer whose period left still joins the window; no period counts it.
        assert_eq!(
            q.label(
                0,
                Early {
                    truth: 1.0,
                    at_ms: 4_000
                },
                1,
                0
            ),
            LabelOutcome::Joined
        );
        assert_eq!(q.periods().iter().map(|p| p.labelled).sum::<u64>(), 3);
        // Saved and read back: the live answers and the periods come back.
        let saved = q.state();
        let mut back = Quality::new(config, &metrics, "m");
        back.restore(serde_json::from_str(&serde_json::to_string(&saved).unwrap()).unwrap());
        assert_eq!(back.estimate(), q.estimate());
        assert_eq!(back.periods(), q.periods());
        // A new version forgets the live answers, not the periods.
        back.clear_window();
        assert_eq!(back.estimate(), None);
        assert_eq!(back.periods().len(), 2);
    }

    #[test]
    fn the_state_comes_back_as_it_was_saved() {
        let (mut q, _registry) = quality(10, 3);
        for k in 0..5 {
            q.answer(
                k,
                estimate(k as f64, 0.0, 10.0, k % 2 == 0),
                1,
                k as i64,
                true,
            );
        }
        for k in 0..4 {
            q.label(k, truth(1.0, 100), 1, 50);
        }
        q.label(42, truth(3.0, 100), 1, 60);
        let saved = q.state();
        assert_eq!(saved.awaiting.len(), 1);
        assert_eq!(saved.early.len(), 1);
        assert_eq!(saved.window.len(), 3);
        let text = serde_json::to_string(&saved).expect("json");
        let (mut back, _r) = quality(10, 3);
        back.restore(serde_json::from_str(&text).expect("read back"));
        assert_eq!(back.state(), saved);
        assert_eq!(back.realised(Some(0.0)), q.realised(Some(0.0)));
        // A smaller window keeps the newest.
        let (mut small, _r) = quality(10, 2);
        small.restore(saved.clone());
        assert_eq!(small.state().window, saved.window[1..].to_vec());
    }
}
