//! Reads a topic from its beginning: what tests and tools use to check what was published.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::{Error, Result};

/// One message, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// Copies a message out of the consumer's buffer.
    fn of(message: &rdkafka::message::BorrowedMessage<'_>) -> Self {
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        }
    }

    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// The payload as a JSON value of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self, topic: &str) -> Result<T> {
        serde_json::from_slice(&self.payload).map_err(|e| Error::BadEvent {
            topic: topic.to_string(),
            partition: self.partition,
            offset: self.offset,
            message: e.to_string(),
        })
    }
}

/// The readers' client context: librdkafka also reports a partition's end as a client error,
/// which is how [`scan_to_end`] knows it is done, not a problem worth a log line.
struct ReadContext;

impl ClientContext for ReadContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::warn!(%error, reason, "kafka reader");
        }
    }
}

impl ConsumerContext for ReadContext {}

/// A consumer that reads by assignment and commits nothing; with `eof`, it reports reaching
/// the end of each partition.
fn reader(brokers: &str, eof: bool) -> Result<BaseConsumer<ReadContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "vigie-read")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", if eof { "true" } else { "false" })
        .set("fetch.wait.max.ms", crate::FETCH_WAIT_MS)
        .set("fetch.queue.backoff.ms", crate::FETCH_QUEUE_BACKOFF_MS)
        .create_with_context(ReadContext)?)
}

/// Reads every partition of `topic` from offset 0 until `want` messages arrived or `timeout`
/// passed (then returns what it has). Blocks: call from a blocking thread.
pub fn read_topic(
    brokers: &str,
    topic: &str,
    want: usize,
    timeout: Duration,
) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    scan_topic(brokers, topic, timeout, timeout, |record| {
        records.push(record);
        if records.len() < want {
            Scan::Continue
        } else {
            Scan::Stop
        }
    })?;
    Ok(records)
}

/// What [`scan_topic`] does after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    Continue,
    Stop,
}

/// Hands every message of every partition of `topic`, from offset 0, to `on_record`, until it
/// says stop, no message came for `idle` (the first one included), or `limit` passed. Reading
/// until the topic goes quiet, rather than to the partitions' high watermarks, counts what a
/// consumer really receives. Blocks: call from a blocking thread.
pub fn scan_topic(
    brokers: &str,
    topic: &str,
    idle: Duration,
    limit: Duration,
    mut on_record: impl FnMut(Record) -> Scan,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    let consumer = reader(brokers, false)?;
    let metadata = consumer
        .client()
        .fetch_metadata(Some(topic), rdkafka::util::Timeout::After(idle))?;
    let mut assignment = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            assignment.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let mut last = Instant::now();
    while last.elapsed() < idle && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message?;
        last = Instant::now();
        let record = Record::of(&message);
        if on_record(record) == Scan::Stop {
            break;
        }
    }
    Ok(())
}

/// Hands every message of `topic` to `on_record`, every partition from offset 0 until the
/// consumer reaches its end, unless `on_record` says stop or `limit` passes (an error then: the
/// read is incomplete). Messages published while it reads may be included.
///
/// The end is the consumer's partition EOF, which follows the fetch responses, not the high
/// watermark from a ListOffsets request: tansu's can lag the log (its memory engine answers
/// the last batch's base offset + 1, so a read bounded by it stopped after one message of a
/// 300-message batch). Blocks: call from a blocking thread.
pub fn scan_to_end(
    brokers: &str,
    topic: &str,
    limit: Duration,
    mut on_record: impl FnMut(Record) -> Scan,
) -> Result<()> {
    let started = Instant::now();
    let deadline = started + limit;
    let consumer = reader(brokers, true)?;
    let left = || deadline.saturating_duration_since(Instant::now());
    let metadata = consumer
        .client()
        .fetch_metadata(Some(topic), rdkafka::util::Timeout::After(left()))?;
    let mut open = std::collections::BTreeSet::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        if let Some(e) = t.error() {
            return Err(Error::Config(format!("topic {topic}: {e:?}")));
        }
        open.extend(t.partitions().iter().map(|p| p.id()));
    }
    if open.is_empty() {
        return Err(Error::Config(format!("topic {topic} has no partitions")));
    }
    let mut assignment = TopicPartitionList::new();
    for &p in &open {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut read = 0u64;
    while !open.is_empty() {
        if Instant::now() >= deadline {
            return Err(Error::Config(format!(
                "reading {topic} took longer than {limit:?}; partitions {open:?} not read to their end ({read} messages read)"
            )));
        }
        let message = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                open.remove(&partition);
                continue;
            }
            Some(message) => message?,
        };
        read += 1;
        if on_record(Record::of(&message)) == Scan::Stop {
            break;
        }
    }
    tracing::info!(
        topic,
        read,
        seconds = started.elapsed().as_secs_f64(),
        "topic read to its end"
    );
    Ok(())
}

/// What [`audit`] found on a prediction topic.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Audit {
    pub records: u64,
    pub distinct: u64,
    pub duplicates: u64,
    pub unreadable: u64,
}

/// Reads `topic` until it has been quiet for `idle` and counts its events by `event_id`:
/// how many records, how many distinct events, how many repeats, how many payloads without an
/// id. Blocks.
pub fn audit(brokers: &str, topic: &str, idle: Duration) -> Result<Audit> {
    /// The id is all the audit compares.
    #[derive(serde::Deserialize)]
    struct Id {
        event_id: String,
    }
    let mut seen = std::collections::HashSet::new();
    let mut audit = Audit::default();
    scan_topic(brokers, topic, idle, Duration::from_secs(3600), |record| {
        audit.records += 1;
        match serde_json::from_slice::<Id>(&record.payload) {
            Ok(id) => {
                if seen.insert(id.event_id) {
                    audit.distinct += 1;
                } else {
                    audit.duplicates += 1;
                }
            }
            Err(_) => audit.unreadable += 1,
        }
        Scan::Continue
    })?;
    Ok(audit)
}

/// Counts the messages of each partition of `topic` by reading it to its end: exact on any
/// broker, where a sum of ListOffsets watermarks is not (tansu's lag its log). Partitions
/// without a message are left out. Blocks: call from a blocking thread.
pub fn count(brokers: &str, topic: &str, limit: Duration) -> Result<BTreeMap<i32, u64>> {
    let mut counts = BTreeMap::new();
    scan_to_end(brokers, topic, limit, |record| {
        *counts.entry(record.partition).or_default() += 1;
        Scan::Continue
    })?;
    Ok(counts)
}
