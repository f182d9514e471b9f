//! The consumer: one thread that reads its share of the partitions of `vigie.predictions`
//! (and the same partitions of `vigie.labels`, joined to the answers: see [`crate::quality`]),
//! counts each event into the state, checkpoints each partition with the offsets it stops
//! at, and shares its partitions' counts with the other instances of its group (see
//! [`crate::partials`]).
//!
//! Instances of one `--group` share the topic's partitions through Kafka's group protocol,
//! cooperative-sticky: a rebalance moves only the partitions that change hands. Labels are
//! published under their answer's key, so label partition `p` belongs with prediction
//! partition `p`: the labels consumer is assigned by hand the numbers the group gave the
//! predictions consumer. When a partition is assigned, its checkpoint (`group/partition` in
//! the registry) is read back and it resumes at the checkpoint's position, else at the group's
//! committed offset, else at its beginning; when one is revoked, it is checkpointed, its
//! partials published and its offsets committed before it is let go: no event is counted twice
//! and none is lost. An instance that dies without letting go loses the group at the end of
//! its session (`--session-timeout-ms`); its partitions resume elsewhere from their last
//! checkpoints, and the events after them are counted again, once.
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
//! (`enable.auto.commit` is off): at-least-once delivery, made exact by the checkpoints' own
//! offsets (see [`crate::checkpoint`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use vigie_registry::Registry;
use vigie_stream::EventProducer;

use crate::checkpoint::{PARTITION_FORMAT, PartitionCheckpoint, Restored, partition_key};
use crate::metrics::Metrics;
use crate::partials;
use crate::watch::{Applied, Feed, Mark, Reset, Skip, State, label_identity, lock};

/// Where and how the consumer reads.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub brokers: String,
    pub group: String,
    pub topic: String,
    /// The labels topic, read beside the predictions (`None`: labels are not joined).
    pub labels_topic: Option<String>,
    /// The compacted topic the group's instances share their partitions' counts on.
    pub partials_topic: String,
    /// This instance's name, in its partials and its logs.
    pub instance: String,
    /// How often the state is saved, the offsets committed and the partials published.
    pub checkpoint_interval: Duration,
    /// How long the group waits for a silent instance before giving its partitions to others.
    pub session_timeout: Duration,
    /// How long the broker may hold a fetch of the predictions that finds nothing new.
    pub fetch_wait: Duration,
}

/// Reads librdkafka's statistics for the consumer lag (no extra request to the broker), and
/// hands the group's rebalances to the [`Hooks`].
pub struct Context {
    topic: String,
    lag: prometheus::IntGauge,
    hooks: OnceLock<Arc<Hooks>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
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

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let partitions: Vec<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Some(hooks) = self.hooks.get() {
                    for (p, offset) in hooks.assigned(consumer, &partitions) {
                        if let Err(e) = tpl.set_partition_offset(&self.topic, p, offset) {
                            tracing::warn!(error = %e, partition = p, "cannot set the partition's position");
                        }
                    }
                }
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = assigned {
                    tracing::error!(error = %e, ?partitions, "cannot take the partitions assigned");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if let Some(hooks) = self.hooks.get() {
                    hooks.revoked(consumer, &partitions);
                }
                let released = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = released {
                    tracing::error!(error = %e, ?partitions, "cannot let the partitions revoked go");
                }
            }
            other => {
                tracing::error!(error = ?other, "the consumer group's rebalance failed");
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "cannot let the partitions go after a failed rebalance");
                }
            }
        }
    }
}

pub type DriftConsumer = BaseConsumer<Context>;

/// The longest wait for the first events of the partitions whose origin is checked.
pub const ORIGIN_WAIT: Duration = Duration::from_secs(5);

/// How often the partials topic is looked for while the broker does not list it.
pub const PARTITION_CHECK: Duration = Duration::from_secs(10);

/// The longest time between two polls of the group's consumer (see [`create`]).
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(30);

/// How long the origins reader lets a fetch fill: it wants one event per partition, soon.
const ORIGIN_FETCH_WAIT_MS: u32 = 10;

/// The longest wait for the broker's answer at stop.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The longest wait for a revoked partition's partials to reach the broker.
pub const PARTIALS_FLUSH: Duration = Duration::from_secs(5);

/// Creates the predictions consumer, a member of the group once [`Runner::run`] subscribes.
pub fn create(
    config: &ConsumerConfig,
    metrics: &Metrics,
) -> rdkafka::error::KafkaResult<DriftConsumer> {
    let consumer: DriftConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group)
        .set("client.id", format!("vigie-drift-{}", config.instance))
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set(
            "session.timeout.ms",
            config.session_timeout.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (config.session_timeout.as_millis() / 5)
                .max(100)
                .to_string(),
        )
        // The longest a member may go between polls, and the longest a rebalance waits for
        // the members to join again. The loop polls every 100 ms at most; a rebalance's hooks
        // take a checkpoint and a flush of a few seconds. (librdkafka's default, 5 minutes, is
        // also how long tansu keeps a restarted instance waiting for a dead member's share.)
        .set(
            "max.poll.interval.ms",
            MAX_POLL_INTERVAL.as_millis().to_string(),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A new group starts at the beginning: events published before the first start count.
        .set("auto.offset.reset", "earliest")
        .set(
            "fetch.wait.max.ms",
            config.fetch_wait.as_millis().to_string(),
        )
        .set(
            "fetch.queue.backoff.ms",
            vigie_stream::FETCH_QUEUE_BACKOFF_MS,
        )
        .set("statistics.interval.ms", "1000")
        .create_with_context(Context {
            topic: config.topic.clone(),
            lag: metrics.consumer_lag.clone(),
            hooks: OnceLock::new(),
        })?;
    Ok(consumer)
}

/// A consumer assigned partitions by hand (the labels of the partitions the group gave this
/// instance; every partition of the partials topic; the origins of partitions assigned).
/// Labels and partials are a trickle beside the predictions: it waits up to `fetch_wait_ms`
/// for a fetch to fill (an idle reader asks the broker a few times a second, not a hundred).
/// With `eof`, reaching a partition's end is reported as an error to the poller.
fn reader(
    config: &ConsumerConfig,
    suffix: &str,
    fetch_wait_ms: u32,
    eof: bool,
) -> rdkafka::error::KafkaResult<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        // The group's own id: the labels' committed offsets are the group's.
        .set("group.id", format!("{}{suffix}", config.group))
        .set(
            "client.id",
            format!("vigie-drift-{}{suffix}", config.instance),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", eof.to_string())
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .set(
            "fetch.queue.backoff.ms",
            vigie_stream::FETCH_QUEUE_BACKOFF_MS,
        )
        .create()
}

/// What the consumer thread does with the state when the group moves partitions, and at its
/// checkpoints. Runs on the consumer thread (a rebalance runs inside its poll).
pub struct Hooks {
    pub state: Arc<Mutex<State>>,
    pub registry: Registry,
    /// The async runtime the database calls run on (the thread itself is not async).
    pub runtime: tokio::runtime::Handle,
    pub config: ConsumerConfig,
    pub metrics: Metrics,
    /// The service's `vigie_database_up`: a checkpoint that cannot be saved sets it to 0.
    pub database_up: prometheus::IntGauge,
    /// Publishes the partials.
    pub producer: Arc<EventProducer>,
    /// Reads the labels of the partitions assigned (when labels are joined).
    labels: Option<BaseConsumer>,
    /// The partitions this instance reads.
    owned: Mutex<BTreeSet<i32>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Hooks {
    /// The hooks of a consumer reading with `config`.
    pub fn new(
        state: Arc<Mutex<State>>,
        registry: Registry,
        runtime: tokio::runtime::Handle,
        config: ConsumerConfig,
        metrics: Metrics,
        database_up: prometheus::IntGauge,
        producer: Arc<EventProducer>,
    ) -> rdkafka::error::KafkaResult<Self> {
        let labels = match &config.labels_topic {
            Some(_) => Some(reader(&config, "", 100, false)?),
            None => None,
        };
        Ok(Hooks {
            state,
            registry,
            runtime,
            config,
            metrics,
            database_up,
            producer,
            labels,
            owned: Mutex::new(BTreeSet::new()),
        })
    }

    /// The partitions this instance reads.
    pub fn owned(&self) -> BTreeSet<i32> {
        self.owned_set().clone()
    }

    /// Whether this instance reads partition `p`.
    pub fn owns(&self, p: i32) -> bool {
        self.owned_set().contains(&p)
    }

    fn owned_set(&self) -> std::sync::MutexGuard<'_, BTreeSet<i32>> {
        self.owned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Partitions assigned: each one's checkpoint read back (its origin checked), the labels
    /// of the same numbers assigned beside; returns where each resumes.
    fn assigned(&self, consumer: &DriftConsumer, partitions: &[i32]) -> Vec<(i32, Offset)> {
        if partitions.is_empty() {
            return Vec::new();
        }
        tracing::info!(?partitions, instance = %self.config.instance, "partitions assigned");
        self.metrics
            .rebalances
            .with_label_values(&["assigned"])
            .inc_by(partitions.len() as u64);
        for &p in partitions {
            self.restore(p);
        }
        for feed in self.feeds() {
            if let Err(e) = self.check_origins(feed, partitions) {
                tracing::warn!(error = %e, ?feed, "cannot read the partitions' origins; the positions are kept");
            }
        }
        {
            let mut owned = self.owned_set();
            owned.extend(partitions);
            self.metrics.assigned_partitions.set(owned.len() as i64);
        }
        let offsets = self.positions(consumer, Feed::Predictions, partitions);
        if let (Some(labels), Some(topic)) = (&self.labels, &self.config.labels_topic) {
            let mut assignment = TopicPartitionList::new();
            for (p, offset) in self.positions(consumer, Feed::Labels, partitions) {
                if let Err(e) = assignment.add_partition_offset(topic, p, offset) {
                    tracing::warn!(error = %e, partition = p, "cannot set the labels' position");
                }
            }
            if let Err(e) = labels.incremental_assign(&assignment) {
                tracing::error!(error = %e, ?partitions, "cannot read the labels of the partitions assigned");
            }
        }
        offsets
    }

    /// Partitions revoked: each one checkpointed, its partials published and its offsets
    /// committed, then let go (its labels too).
    fn revoked(&self, consumer: &DriftConsumer, partitions: &[i32]) {
        if partitions.is_empty() {
            return;
        }
        tracing::info!(?partitions, instance = %self.config.instance, "partitions revoked");
        self.metrics
            .rebalances
            .with_label_values(&["revoked"])
            .inc_by(partitions.len() as u64);
        let set: BTreeSet<i32> = partitions.iter().copied().collect();
        // Async: the rows hold the positions; a commit waiting for an absent coordinator
        // would hold the rebalance.
        if self.checkpoint(consumer, &set, CommitMode::Async) {
            self.publish(&set);
            let left = self.producer.flush(PARTIALS_FLUSH);
            if left > 0 {
                tracing::warn!(
                    left,
                    "partials of the partitions revoked not delivered in time: the next owner's replace them"
                );
            }
        }
        if let (Some(labels), Some(topic)) = (&self.labels, &self.config.labels_topic) {
            let mut released = TopicPartitionList::new();
            for &p in partitions {
                released.add_partition(topic, p);
            }
            if let Err(e) = labels.incremental_unassign(&released) {
                tracing::warn!(error = %e, "cannot let the labels of the partitions revoked go");
            }
        }
        let mut state = lock(&self.state);
        let mut owned = self.owned_set();
        for &p in partitions {
            state.release(p);
            owned.remove(&p);
        }
        self.metrics.assigned_partitions.set(owned.len() as i64);
    }

    /// Reads partition `p`'s checkpoint back into the state.
    fn restore(&self, p: i32) {
        let key = partition_key(&self.config.group, p);
        let saved = match self.runtime.block_on(self.registry.checkpoint(&key)) {
            Ok(Some(saved)) => saved,
            Ok(None) => return,
            Err(e) => {
                // Without it the partition would be counted again from the group's committed
                // offset, with its counts lost: better to stop here than count wrong.
                tracing::error!(error = %e, partition = p, "cannot read the partition's checkpoint; it resumes at the group's committed offset with empty counts");
                self.database_up.set(0);
                return;
            }
        };
        let checkpoint = match serde_json::from_str::<PartitionCheckpoint>(&saved.state) {
            Ok(c) if c.format == PARTITION_FORMAT && c.topic == self.config.topic => c,
            Ok(c) => {
                tracing::error!(partition = p, format = c.format, topic = %c.topic, "the partition's checkpoint is of another format or topic: not read");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, partition = p, "unreadable checkpoint: not read");
                return;
            }
        };
        for restored in lock(&self.state).restore_partition(checkpoint) {
            match restored {
                Restored::Windows { model, events } => {
                    tracing::info!(%model, partition = p, events, "counts restored from the checkpoint")
                }
                Restored::Discarded { model, reason } => {
                    tracing::warn!(%model, partition = p, %reason, "checkpointed counts discarded")
                }
            }
        }
    }

    /// Where each of `partitions` resumes on `feed`'s topic: the state's position, else the
    /// group's committed offset, else the beginning.
    fn positions(
        &self,
        consumer: &DriftConsumer,
        feed: Feed,
        partitions: &[i32],
    ) -> Vec<(i32, Offset)> {
        let topic = self.topic(feed);
        let positions = lock(&self.state).positions_of(feed).offsets.clone();
        let mut query = TopicPartitionList::new();
        for &p in partitions {
            query.add_partition(topic, p);
        }
        let committed = consumer
            .committed_offsets(query, Duration::from_secs(5))
            .ok();
        partitions
            .iter()
            .map(|&p| {
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
                (p, offset)
            })
            .collect()
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
        let reader = reader(&self.config, "-origins", ORIGIN_FETCH_WAIT_MS, true)?;
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

    /// Saves the checkpoint of each of `partitions` this instance reads (its counts, quality
    /// and positions together, one row per partition), then commits their offsets to the
    /// group. A failed save commits nothing and returns `false`: the next checkpoint carries
    /// the partitions.
    pub fn checkpoint(
        &self,
        consumer: &DriftConsumer,
        partitions: &BTreeSet<i32>,
        mode: CommitMode,
    ) -> bool {
        let partitions: Vec<i32> = {
            let owned = self.owned_set();
            partitions.intersection(&owned).copied().collect()
        };
        if partitions.is_empty() {
            return true;
        }
        let labels_topic = self.config.labels_topic.as_deref();
        let (rows, positions) = {
            let state = lock(&self.state);
            let rows: Result<Vec<(i32, String)>, serde_json::Error> = partitions
                .iter()
                .map(|&p| {
                    serde_json::to_string(&state.partition_checkpoint(
                        &self.config.topic,
                        labels_topic,
                        p,
                    ))
                    .map(|text| (p, text))
                })
                .collect();
            let of = |offsets: &BTreeMap<i32, i64>| -> BTreeMap<i32, i64> {
                partitions
                    .iter()
                    .filter_map(|p| offsets.get(p).map(|&o| (*p, o)))
                    .collect()
            };
            let positions = Committed {
                topic: self.config.topic.clone(),
                offsets: of(&state.positions.offsets),
                labels: labels_topic.map(|t| (t.to_string(), of(&state.label_positions.offsets))),
            };
            (rows, positions)
        };
        let rows = match rows {
            Ok(rows) => rows,
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
        let mut bytes = 0;
        for (partition, text) in &rows {
            let key = partition_key(&self.config.group, *partition);
            let saved = self.runtime.block_on(self.registry.save_checkpoint(
                &key,
                text,
                now.timestamp_millis(),
            ));
            if let Err(e) = saved {
                tracing::warn!(error = %e, partition, "cannot save the checkpoint; offsets not committed");
                self.metrics
                    .checkpoints
                    .with_label_values(&["failed"])
                    .inc();
                self.database_up.set(0);
                return false;
            }
            bytes += text.len();
        }
        self.database_up.set(1);
        self.metrics.checkpoints.with_label_values(&["saved"]).inc();
        self.metrics.checkpoint_bytes.set(bytes as i64);
        self.metrics
            .checkpoint_time
            .set(now.timestamp_millis() as f64 / 1000.0);
        if let Err(e) = commit(consumer, &positions, mode) {
            // The saved checkpoints still hold the positions: the next commit catches up.
            tracing::warn!(error = %e, "cannot commit the offsets");
        }
        true
    }

    /// Publishes the partials of `partitions` (those this instance reads).
    pub fn publish(&self, partitions: &BTreeSet<i32>) {
        let partials =
            lock(&self.state).partials(&self.config.group, &self.config.instance, partitions);
        for partial in &partials {
            let payload = match serde_json::to_vec(partial) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "cannot serialise a partial");
                    continue;
                }
            };
            let key = partials::key(&partial.model, partial.partition);
            if self
                .producer
                .publish(&self.config.partials_topic, &key, &payload, &[])
                .is_ok()
            {
                self.metrics.partials_published.inc();
            }
        }
    }
}

/// The consumer thread's loop and what it needs.
pub struct Runner {
    pub consumer: Arc<DriftConsumer>,
    pub hooks: Arc<Hooks>,
    /// Reads every partition of the partials topic.
    pub partials: BaseConsumer,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

/// The most messages read from the labels or the partials in one turn of the loop.
const BATCH: usize = 1_000;

impl Runner {
    /// The runner of `consumer`, its rebalances handed to `hooks`; reads the partials topic.
    pub fn new(consumer: Arc<DriftConsumer>, hooks: Arc<Hooks>) -> Result<Self, String> {
        let config = &hooks.config;
        let partials = reader(
            config,
            &format!("-partials-{}", config.instance),
            500,
            false,
        )
        .map_err(|e| format!("cannot create the partials reader: {e}"))?;
        if consumer.context().hooks.set(hooks.clone()).is_err() {
            return Err("the consumer already has a runner".into());
        }
        Ok(Runner {
            consumer,
            hooks,
            partials,
        })
    }

    /// Reads every partition of the partials topic from its beginning; `false` while the
    /// broker does not list it (tried again later).
    fn assign_partials(&self) -> bool {
        let topic = &self.hooks.config.partials_topic;
        let metadata = match self
            .partials
            .fetch_metadata(Some(topic), Duration::from_secs(5))
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, %topic, "cannot list the partials topic's partitions; retrying");
                return false;
            }
        };
        let mut assignment = TopicPartitionList::new();
        for t in metadata.topics().iter().filter(|t| t.name() == topic) {
            for p in t.partitions() {
                if let Err(e) = assignment.add_partition_offset(topic, p.id(), Offset::Beginning) {
                    tracing::warn!(error = %e, "cannot read the partials topic");
                    return false;
                }
            }
        }
        if assignment.count() == 0 {
            return false;
        }
        match self.partials.assign(&assignment) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, %topic, "cannot read the partials topic; retrying");
                false
            }
        }
    }

    /// Polls and counts until `stop` is set, checkpointing (and publishing the partials)
    /// every interval and once more at the end, then leaves the group. Blocks: run it on its
    /// own thread.
    pub fn run(self, stop: &AtomicBool) {
        let hooks = &self.hooks;
        let config = &hooks.config;
        if let Err(e) = self.consumer.subscribe(&[&config.topic]) {
            tracing::error!(error = %e, topic = %config.topic, "cannot join the consumer group");
            return;
        }
        self.count(stop);
        self.leave();
    }

    /// The consumer's loop: counts until `stop` is set; joins the group again when the stall
    /// watch finds partitions nobody reads.
    fn count(&self, stop: &AtomicBool) {
        let hooks = &self.hooks;
        let config = &hooks.config;
        let skipped: Vec<prometheus::IntCounter> = Skip::ALL
            .iter()
            .map(|s| hooks.metrics.skipped.with_label_values(&[s.as_str()]))
            .collect();
        let mut last_checkpoint = Instant::now();
        // Partitions (of either topic: the same numbers) read since the last checkpoint.
        let mut touched: BTreeSet<i32> = BTreeSet::new();
        let mut partials_read = false;
        let mut last_partials_try: Option<Instant> = None;
        let mut stalls = Stalls::default();
        while !stop.load(Ordering::Relaxed) {
            if !partials_read && last_partials_try.is_none_or(|t| t.elapsed() >= PARTITION_CHECK) {
                partials_read = self.assign_partials();
                last_partials_try = Some(Instant::now());
            }
            let side = self.read_labels(&mut touched) + self.read_partials();
            // Others to read: look at the predictions without waiting. Then the predictions
            // waiting, up to a batch, before the labels and partials are looked at again.
            let mut wait = if side > 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(100)
            };
            let mut state = None;
            for _ in 0..BATCH {
                let Some(message) = self.consumer.poll(wait) else {
                    break;
                };
                wait = Duration::ZERO;
                match message {
                    Ok(m) => {
                        let now_ms = chrono::Utc::now().timestamp_millis();
                        let payload = m.payload().unwrap_or_default();
                        let state = state.get_or_insert_with(|| lock(&hooks.state));
                        let applied = state.apply(m.partition(), m.offset(), payload, now_ms);
                        if let Applied::Skipped(skip) = applied {
                            let at = Skip::ALL.iter().position(|s| *s == skip).unwrap_or(0);
                            skipped[at].inc();
                        }
                        touched.insert(m.partition());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "consumer error; retrying");
                        break;
                    }
                }
            }
            drop(state);
            let unread = stalls.unread(&self.consumer, config, |p| hooks.owns(p), stop);
            if !unread.is_empty() {
                tracing::warn!(?unread, instance = %config.instance, "partitions nobody in the group reads: joining the group again");
                hooks
                    .metrics
                    .rebalances
                    .with_label_values(&["rejoined"])
                    .inc();
                self.consumer.unsubscribe();
                if let Err(e) = self.consumer.subscribe(&[&config.topic]) {
                    tracing::error!(error = %e, topic = %config.topic, "cannot join the consumer group again");
                }
            }
            if !touched.is_empty() && last_checkpoint.elapsed() >= config.checkpoint_interval {
                if hooks.checkpoint(&self.consumer, &touched, CommitMode::Async) {
                    hooks.publish(&touched);
                    touched.clear();
                }
                last_checkpoint = Instant::now();
            }
        }
    }

    /// The last checkpoint and partials of every partition read here, then out of the group.
    fn leave(self) {
        let hooks = &self.hooks;
        let config = &hooks.config;
        // The last checkpoint of every partition read, its partials, then leave the group:
        // the others take the partitions at once instead of at the end of this session.
        let owned = hooks.owned();
        if hooks.checkpoint(&self.consumer, &owned, CommitMode::Async) {
            hooks.publish(&owned);
            let left = hooks.producer.flush(PARTIALS_FLUSH);
            if left > 0 {
                tracing::warn!(left, "partials not delivered at stop");
            }
        }
        // Leaving runs the revoke hook once more (nothing new to save) and lets the
        // partitions go; polled here, not when the consumer is dropped with the runtime.
        self.consumer.unsubscribe();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !hooks.owned_set().is_empty() && Instant::now() < deadline {
            let _ = self.consumer.poll(Duration::from_millis(100));
        }
        // Dropping a consumer of a group waits for the broker without end: with the broker
        // away, the process would never exit. Then the consumers are left open (the group gives
        // this instance's partitions to others at the end of its session).
        if self
            .consumer
            .fetch_metadata(Some(&config.topic), CLOSE_WAIT)
            .is_err()
        {
            tracing::warn!(
                "the broker does not answer: stopping without leaving the consumer group"
            );
            std::mem::forget(self.consumer.clone());
            // The labels reader lives in the hooks.
            std::mem::forget(hooks.clone());
            std::mem::forget(self.partials);
        }
        tracing::info!("drift consumer stopped");
    }

    /// Counts the labels waiting in the labels consumer (at most [`BATCH`]); returns how many
    /// were read.
    fn read_labels(&self, touched: &mut BTreeSet<i32>) -> usize {
        let Some(labels) = &self.hooks.labels else {
            return 0;
        };
        drain(labels, "labels", |m| {
            let now_ms = chrono::Utc::now().timestamp_millis();
            let payload = m.payload().unwrap_or_default();
            let _ = lock(&self.hooks.state).apply_label(m.partition(), m.offset(), payload, now_ms);
            touched.insert(m.partition());
        })
    }

    /// Takes in the partials waiting (at most [`BATCH`]); returns how many were read.
    fn read_partials(&self) -> usize {
        let group = &self.hooks.config.group;
        drain(&self.partials, "partials", |m| {
            let noise = m.key().is_some_and(|k| k.starts_with(b"noise/"));
            if let Some(payload) = m.payload() {
                let mut state = lock(&self.hooks.state);
                if noise {
                    state.apply_shared_noise(group, payload, chrono::Utc::now());
                } else {
                    state.apply_partial(group, payload);
                }
            }
        })
    }
}

/// Hands the messages waiting in `reader` (at most [`BATCH`]) to `each` without waiting;
/// returns how many were read. An error ends the turn (the next turn retries).
fn drain(reader: &BaseConsumer, what: &str, mut each: impl FnMut(&BorrowedMessage<'_>)) -> usize {
    let mut read = 0;
    while read < BATCH {
        match reader.poll(Duration::ZERO) {
            Some(Ok(m)) => {
                each(&m);
                read += 1;
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, reader = what, "consumer error; retrying");
                break;
            }
            None => break,
        }
    }
    read
}

/// Watches the group's committed offsets for a partition nobody reads: its committed offset
/// stands still below its log's end for [`STALL_FACTOR`] session timeouts. Every reader
/// commits at its checkpoints, so that is a partition the group has not given to a live
/// member. A broker's group coordinator should never leave one so (tansu 0.6 does: a member
/// that joins while a dead leader's session runs is given nothing, and the group stays so);
/// an instance that sees one of another's partitions stalled joins the group again, at most
/// once per stall period.
#[derive(Debug, Default)]
struct Stalls {
    /// Per partition: the committed offset last seen, and since when it has not moved.
    seen: BTreeMap<i32, (i64, Instant)>,
    last_check: Option<Instant>,
    last_rejoin: Option<Instant>,
}

/// How many session timeouts a partition's committed offset may stand still below its end
/// before the partition counts as unread.
pub const STALL_FACTOR: u32 = 3;

impl Stalls {
    /// The partitions of the topic, not read here (`owns`), whose committed offset has stood
    /// still below the log's end for the stall period; checked once per session timeout. Asks
    /// the broker (each call waits up to two seconds); once `stop` is set, skips the calls per
    /// partition.
    fn unread(
        &mut self,
        consumer: &DriftConsumer,
        config: &ConsumerConfig,
        owns: impl Fn(i32) -> bool,
        stop: &AtomicBool,
    ) -> Vec<i32> {
        let now = Instant::now();
        if self
            .last_check
            .is_some_and(|t| now.duration_since(t) < config.session_timeout)
        {
            return Vec::new();
        }
        self.last_check = Some(now);
        let timeout = Duration::from_secs(2);
        let topic = &config.topic;
        let Ok(metadata) = consumer.fetch_metadata(Some(topic), timeout) else {
            return Vec::new();
        };
        let mut query = TopicPartitionList::new();
        for t in metadata.topics().iter().filter(|t| t.name() == topic) {
            for p in t.partitions() {
                query.add_partition(topic, p.id());
            }
        }
        let Ok(committed) = consumer.committed_offsets(query, timeout) else {
            return Vec::new();
        };
        let period = config.session_timeout * STALL_FACTOR;
        let mut unread = Vec::new();
        for e in committed.elements_for_topic(topic) {
            let p = e.partition();
            let at = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            let since = match self.seen.get(&p) {
                Some(&(before, since)) if before == at => since,
                _ => now,
            };
            self.seen.insert(p, (at, since));
            if owns(p) || now.duration_since(since) < period || stop.load(Ordering::Relaxed) {
                continue;
            }
            let end = consumer
                .fetch_watermarks(topic, p, timeout)
                .map(|(_, high)| high)
                .unwrap_or(0);
            if end > at {
                unread.push(p);
            }
        }
        let may_rejoin = self
            .last_rejoin
            .is_none_or(|t| now.duration_since(t) >= period);
        if unread.is_empty() || !may_rejoin {
            return Vec::new();
        }
        self.last_rejoin = Some(now);
        // Judged afresh after the rejoin.
        self.seen.clear();
        unread
    }
}

/// The offsets a checkpoint lets the consumer commit: both topics' next offsets.
#[derive(Debug, Clone)]
struct Committed {
    topic: String,
    offsets: BTreeMap<i32, i64>,
    labels: Option<(String, BTreeMap<i32, i64>)>,
}

/// Commits the offsets of a checkpoint (both topics) for the partitions it has a position on.
fn commit(
    consumer: &DriftConsumer,
    positions: &Committed,
    mode: CommitMode,
) -> rdkafka::error::KafkaResult<()> {
    let mut offsets = TopicPartitionList::new();
    for (&partition, &next) in &positions.offsets {
        offsets.add_partition_offset(&positions.topic, partition, Offset::Offset(next))?;
    }
    if let Some((topic, labels)) = &positions.labels {
        for (&partition, &next) in labels {
            offsets.add_partition_offset(topic, partition, Offset::Offset(next))?;
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
