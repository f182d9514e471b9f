//! The consumer: one thread that reads every partition of `vigie.predictions` (and of
//! `vigie.labels`, joined to the answers: see [`crate::quality`]), counts each event into the
//! state, and checkpoints the state with the offsets it stops at on both topics.
//!
//! It commits its offsets to its consumer group, but takes its partitions itself (`assign`,
//! every partition of the topic) instead of joining the group's rebalancing: a model's
//! sliding window is the last N events of all partitions, so one member holds them all, and a
//! restarted instance resumes at once instead of waiting for the dead member's session to
//! expire. It starts each partition at the checkpoint's position, else at the group's
//! committed offset, else at the beginning; new partitions are picked up within
//! `PARTITION_CHECK`.
//!
//! A position is only good on the log it was taken on. Before starting at one, the partition's
//! first counted event (its origin, in the checkpoint) is read again: another event there, or
//! a log that ends before it, means the log started again (a new broker, such as the embedded
//! one after a restart, or a topic created again), and the partition is read from its
//! beginning. While running, an event before the position that is not one just read means the
//! same (a broker answers a fetch past the end of a log that started again with an
//! out-of-range error, and the reader goes back to its beginning: see `State::apply`).
//!
//! Offsets are never committed before the events before them are in a saved checkpoint
//! (`enable.auto.commit` is off): at-least-once delivery, made exact by the checkpoint's own
//! offsets (see [`crate::checkpoint`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use vigie_registry::Registry;

use crate::checkpoint::Checkpoint;
use crate::metrics::Metrics;
use crate::watch::{Applied, Feed, Mark, Reset, Skip, State, label_identity, lock};

/// Where and how the consumer reads.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub brokers: String,
    pub group: String,
    pub topic: String,
    /// The labels topic, read beside the predictions (`None`: labels are not joined).
    pub labels_topic: Option<String>,
    /// How often the state is saved and the offsets committed.
    pub checkpoint_interval: Duration,
}

/// Reads librdkafka's statistics for the consumer lag (no extra request to the broker).
#[derive(Debug)]
pub struct Context {
    topic: String,
    lag: prometheus::IntGauge,
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };

        let lag: i64 = topic
            .partitions
            .values()
            .filter(|p| p.partition >= 0 && p.hi_offset >= 0)
            .map(|p| {
                let position = [p.app_offset, p.committed_offset, p.lo_offset]
                    .into_iter()
                    .find(|&o| o >= 0)
                    .unwrap_or(0);
                (p.hi_offset - position).max(0)
            })
            .sum();
        self.lag.set(lag);
    }
}

impl ConsumerContext for Context {}

pub type DriftConsumer = BaseConsumer<Context>;

/// The longest wait for the first events of the partitions whose origin is checked.
pub const ORIGIN_WAIT: Duration = Duration::from_secs(5);

/// How often the topic's partitions are listed again.
pub const PARTITION_CHECK: Duration = Duration::from_secs(10);

/// Creates the consumer; partitions are assigned by [`Runner::run`].
pub fn create(
    config: &ConsumerConfig,
    metrics: &Metrics,
) -> rdkafka::error::KafkaResult<DriftConsumer> {
    let consumer: DriftConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group)
        .set("client.id", "vigie-drift")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A new group starts at the beginning: events published before the first start count.
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", vigie_stream::FETCH_WAIT_MS)
        .set(
            "fetch.queue.backoff.ms",
            vigie_stream::FETCH_QUEUE_BACKOFF_MS,
        )
        .set("statistics.interval.ms", "1000")
        .create_with_context(Context {
            topic: config.topic.clone(),
            lag: metrics.consumer_lag.clone(),
        })?;
    Ok(consumer)
}

/// The consumer thread's loop and what it needs.
pub struct Runner {
    pub consumer: Arc<DriftConsumer>,
    pub state: Arc<Mutex<State>>,
    pub registry: Registry,
    /// The async runtime the database calls run on (the thread itself is not async).
    pub runtime: tokio::runtime::Handle,
    pub config: ConsumerConfig,
    pub metrics: Metrics,
    /// The service's `vigie_database_up`: a checkpoint that cannot be saved sets it to 0.
    pub database_up: prometheus::IntGauge,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// Polls and counts until `stop` is set, checkpointing every interval and once more at
    /// the end. Blocks: run it on its own thread.
    pub fn run(self, stop: &AtomicBool) {
        let skipped: Vec<prometheus::IntCounter> = Skip::ALL
            .iter()
            .map(|s| self.metrics.skipped.with_label_values(&[s.as_str()]))
            .collect();
        let mut last_checkpoint = Instant::now();
        let mut dirty = false;
        let mut partitions = Partitions::default();
        let mut last_partition_check: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            if last_partition_check.is_none_or(|t| t.elapsed() >= PARTITION_CHECK) {
                last_partition_check = Some(Instant::now());
                match self.assign(&partitions) {
                    Ok(n) => partitions = n,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list the topics' partitions; retrying")
                    }
                }
                if partitions.predictions.is_empty() {
                    // No topic yet (or no broker): look again soon.
                    last_partition_check =
                        Some(Instant::now() - PARTITION_CHECK + Duration::from_secs(1));
                }
            }
            if let Some(message) = self.consumer.poll(Duration::from_millis(100)) {
                match message {
                    Ok(m) if Some(m.topic()) == self.config.labels_topic.as_deref() => {
                        let now_ms = chrono::Utc::now().timestamp_millis();
                        let payload = m.payload().unwrap_or_default();
                        let _ = lock(&self.state).apply_label(
                            m.partition(),
                            m.offset(),
                            payload,
                            now_ms,
                        );
                        dirty = true;
                    }
                    Ok(m) => {
                        let now_ms = chrono::Utc::now().timestamp_millis();
                        let payload = m.payload().unwrap_or_default();
                        let applied =
                            lock(&self.state).apply(m.partition(), m.offset(), payload, now_ms);
                        if let Applied::Skipped(skip) = applied {
                            let at = Skip::ALL.iter().position(|s| *s == skip).unwrap_or(0);
                            skipped[at].inc();
                        }
                        dirty = true;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "consumer error; retrying");
                    }
                }
            }
            if dirty && last_checkpoint.elapsed() >= self.config.checkpoint_interval {
                self.checkpoint(CommitMode::Async);
                last_checkpoint = Instant::now();
                dirty = false;
            }
        }
        if dirty {
            self.checkpoint(CommitMode::Async);
        }
        tracing::info!("drift consumer stopped");
    }

    /// Reads the first event counted on each of `partitions` (its origin) again, where the
    /// position has moved past it: the same event means the same log; another event there, an
    /// earlier one (the broker reset a fetch past the end to the beginning), or a log that ends
    /// before it means the log started again, and the partition's position is given up. A
    /// partition that answers nothing within [`ORIGIN_WAIT`] keeps its position.
    fn check_origins(&self, feed: Feed, partitions: &[i32]) -> rdkafka::error::KafkaResult<()> {
        let topic = self.topic(feed);
        let origins: BTreeMap<i32, Mark> = {
            let state = lock(&self.state);
            let positions = state.positions_of(feed);
            positions
                .origins
                .iter()
                .filter(|(p, origin)| {
                    partitions.contains(p)
                        && positions
                            .offsets
                            .get(p)
                            .is_some_and(|&next| next > origin.offset)
                })
                .map(|(&p, origin)| (p, origin.clone()))
                .collect()
        };
        if origins.is_empty() {
            return Ok(());
        }
        tracing::debug!(?origins, "reading the partitions' origins");
        let reader: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.config.brokers)
            .set("group.id", format!("{}-origins", self.config.group))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", vigie_stream::FETCH_WAIT_MS)
            .create()?;
        let mut assignment = TopicPartitionList::new();
        for (&p, origin) in &origins {
            assignment.add_partition_offset(topic, p, Offset::Offset(origin.offset))?;
        }
        reader.assign(&assignment)?;
        // Per partition: its first event from the origin on, or `None` for its end.
        let mut first: BTreeMap<i32, Option<Mark>> = BTreeMap::new();
        let deadline = Instant::now() + ORIGIN_WAIT;
        while first.len() < origins.len() && Instant::now() < deadline {
            match reader.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let payload = m.payload().unwrap_or_default();
                    let event_id = match feed {
                        Feed::Predictions => crate::decode::Envelope::parse(payload)
                            .map(|e| e.event_id.to_string())
                            .unwrap_or_default(),
                        Feed::Labels => label_identity(payload),
                    };
                    first.entry(m.partition()).or_insert(Some(Mark {
                        offset: m.offset(),
                        event_id,
                    }));
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    first.entry(p).or_insert(None);
                }
                Some(Err(e)) => tracing::warn!(error = %e, "reading the partitions' origins"),
                None => {}
            }
        }
        tracing::debug!(?first, "the partitions' first events");
        for (p, origin) in &origins {
            let given_up = judge_origin(origin, first.get(p));
            match given_up {
                Some((reset, offset)) => lock(&self.state).give_up(feed, *p, reset, offset),
                None if !first.contains_key(p) => tracing::warn!(
                    partition = p,
                    "the partition's first event was not read in time; its position is kept"
                ),
                None => {}
            }
        }
        Ok(())
    }

    /// The topic a feed is read from.
    fn topic(&self, feed: Feed) -> &str {
        match feed {
            Feed::Predictions => &self.config.topic,
            Feed::Labels => self.config.labels_topic.as_deref().unwrap_or_default(),
        }
    }

    /// The feeds read: the predictions, and the labels when configured.
    fn feeds(&self) -> Vec<Feed> {
        let mut feeds = vec![Feed::Predictions];
        if self.config.labels_topic.is_some() {
            feeds.push(Feed::Labels);
        }
        feeds
    }

    /// The partitions of `feed`'s topic (none when it does not exist yet).
    fn partitions(&self, feed: Feed) -> rdkafka::error::KafkaResult<Vec<i32>> {
        let topic = self.topic(feed);
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))?;
        let mut partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        partitions.sort_unstable();
        Ok(partitions)
    }

    /// Assigns every partition of the topics when they are not `current`'s; returns those
    /// assigned. The whole assignment is given again (both topics), each partition at the
    /// state's position, else the group's committed offset, else its beginning.
    fn assign(&self, current: &Partitions) -> rdkafka::error::KafkaResult<Partitions> {
        let mut found = Partitions::default();
        for feed in self.feeds() {
            let partitions = self.partitions(feed)?;
            let before = current.of(feed);
            if before.is_empty()
                && !partitions.is_empty()
                && let Err(e) = self.check_origins(feed, &partitions)
            {
                tracing::warn!(error = %e, ?feed, "cannot read the partitions' origins; the positions are kept");
            }
            // A topic listed empty (a broker that did not answer for it) keeps what it had.
            *found.of_mut(feed) = if partitions.is_empty() {
                before.to_vec()
            } else {
                partitions
            };
        }
        if &found == current || found.predictions.is_empty() {
            return Ok(current.clone());
        }
        let mut assignment = TopicPartitionList::new();
        for feed in self.feeds() {
            let topic = self.topic(feed);
            let positions = lock(&self.state).positions_of(feed).offsets.clone();
            let mut query = TopicPartitionList::new();
            for &p in found.of(feed) {
                query.add_partition(topic, p);
            }
            let committed = self
                .consumer
                .committed_offsets(query, Duration::from_secs(5))
                .ok();
            for &p in found.of(feed) {
                let offset = match positions.get(&p) {
                    Some(&next) => Offset::Offset(next),
                    None => committed
                        .as_ref()
                        .and_then(|c| c.find_partition(topic, p))
                        .map(|e| e.offset())
                        .filter(|o| matches!(o, Offset::Offset(_)))
                        .unwrap_or(Offset::Beginning),
                };
                tracing::info!(topic, partition = p, ?offset, "reading partition");
                assignment.add_partition_offset(topic, p, offset)?;
            }
        }
        self.consumer.assign(&assignment)?;
        Ok(found)
    }

    /// Saves the state with its offsets, then commits those offsets to the group. A failed
    /// save commits nothing: the next checkpoint carries everything.
    pub fn checkpoint(&self, mode: CommitMode) -> bool {
        let checkpoint =
            lock(&self.state).checkpoint(&self.config.topic, self.config.labels_topic.as_deref());
        let text = match serde_json::to_string(&checkpoint) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialise the checkpoint");
                self.metrics
                    .checkpoints
                    .with_label_values(&["failed"])
                    .inc();
                return false;
            }
        };
        let now = chrono::Utc::now();
        let saved = self.runtime.block_on(self.registry.save_checkpoint(
            &self.config.group,
            &text,
            now.timestamp_millis(),
        ));
        if let Err(e) = saved {
            tracing::warn!(error = %e, "cannot save the checkpoint; offsets not committed");
            self.metrics
                .checkpoints
                .with_label_values(&["failed"])
                .inc();
            self.database_up.set(0);
            return false;
        }
        self.database_up.set(1);
        self.metrics.checkpoints.with_label_values(&["saved"]).inc();
        self.metrics.checkpoint_bytes.set(text.len() as i64);
        self.metrics
            .checkpoint_time
            .set(now.timestamp_millis() as f64 / 1000.0);
        if let Err(e) = commit(&self.consumer, &checkpoint, mode) {
            // The saved checkpoint still holds the position: the next commit catches up.
            tracing::warn!(error = %e, "cannot commit the offsets");
        }
        true
    }
}

/// The partitions assigned, per topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Partitions {
    predictions: Vec<i32>,
    labels: Vec<i32>,
}

impl Partitions {
    fn of(&self, feed: Feed) -> &[i32] {
        match feed {
            Feed::Predictions => &self.predictions,
            Feed::Labels => &self.labels,
        }
    }

    fn of_mut(&mut self, feed: Feed) -> &mut Vec<i32> {
        match feed {
            Feed::Predictions => &mut self.predictions,
            Feed::Labels => &mut self.labels,
        }
    }
}

/// Commits the offsets of `checkpoint` (both topics) for the partitions it has a position on.
fn commit(
    consumer: &DriftConsumer,
    checkpoint: &Checkpoint,
    mode: CommitMode,
) -> rdkafka::error::KafkaResult<()> {
    let mut offsets = TopicPartitionList::new();
    for (&partition, &next) in &checkpoint.offsets {
        offsets.add_partition_offset(&checkpoint.topic, partition, Offset::Offset(next))?;
    }
    if let Some(labels) = &checkpoint.labels {
        for (&partition, &next) in &labels.offsets {
            offsets.add_partition_offset(&labels.topic, partition, Offset::Offset(next))?;
        }
    }
    if offsets.count() == 0 {
        return Ok(());
    }
    consumer.commit(&offsets, mode)
}

/// Whether a partition's log is the one its position was taken on, from what was read at the
/// position's origin: `read` is `None` when nothing answered, `Some(None)` when the partition
/// ended before any event. `Some` gives the position up, with why and the offset it was seen at.
fn judge_origin(origin: &Mark, read: Option<&Option<Mark>>) -> Option<(Reset, i64)> {
    match read? {
        // The same log: the position holds.
        Some(m) if m.offset == origin.offset && m.event_id == origin.event_id => None,
        // The origin is gone from the log's start (retention): the same log as far as can be
        // told.
        Some(m) if m.offset > origin.offset => None,
        Some(m) if m.offset == origin.offset => Some((Reset::Replaced, m.offset)),
        Some(m) => Some((Reset::Restarted, m.offset)),
        // The partition ends before its origin: the log that holds the position ends after it
        // (it held the events up to the position), so this is another one. Asking the broker
        // for the log's end now would race with the producer: a new log may have grown past
        // the origin since it answered.
        None => Some((Reset::Restarted, origin.offset)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(offset: i64, event_id: &str) -> Mark {
        Mark {
            offset,
            event_id: event_id.into(),
        }
    }

    #[test]
    fn a_position_is_given_up_only_on_another_log() {
        let origin = mark(0, "e-1");
        let judge = |read: Option<Option<Mark>>| judge_origin(&origin, read.as_ref());
        assert_eq!(judge(Some(Some(mark(0, "e-1")))), None, "the same log");
        assert_eq!(
            judge(Some(Some(mark(0, "e-9")))),
            Some((Reset::Replaced, 0)),
            "another event at the origin"
        );
        assert_eq!(
            judge(Some(Some(mark(40, "e-2")))),
            None,
            "the origin removed by retention"
        );
        // A partition found empty (a new broker whose producer has not written to it yet) is
        // another log, even if events reach it before the position is used.
        assert_eq!(judge(Some(None)), Some((Reset::Restarted, 0)));
        assert_eq!(judge(None), None, "no answer: the position is kept");
        let later = mark(100, "e-100");
        assert_eq!(
            judge_origin(&later, Some(&Some(mark(3, "x")))),
            Some((Reset::Restarted, 3)),
            "an earlier event: the broker reset a fetch past the log's end"
        );
    }
}
