//! Reads a topic from its beginning: what tests and tools use to check what was published.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
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

/// Reads every partition of `topic` from offset 0 until `want` messages arrived or `timeout`
/// passed (then returns what it has). Blocks: call from a blocking thread.
pub fn read_topic(
    brokers: &str,
    topic: &str,
    want: usize,
    timeout: Duration,
) -> Result<Vec<Record>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "vigie-read")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let metadata = consumer
        .client()
        .fetch_metadata(Some(topic), rdkafka::util::Timeout::After(timeout))?;
    let mut assignment = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            assignment.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while records.len() < want && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message?;
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        records.push(Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    Ok(records)
}

/// Messages per partition of `topic` (high minus low watermark). Blocks.
pub fn count(brokers: &str, topic: &str, timeout: Duration) -> Result<Vec<(i32, i64)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "vigie-count")
        .create()?;
    let metadata = consumer
        .client()
        .fetch_metadata(Some(topic), rdkafka::util::Timeout::After(timeout))?;
    let mut counts = Vec::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        if let Some(e) = t.error() {
            return Err(Error::Kafka(rdkafka::error::KafkaError::MetadataFetch(
                e.into(),
            )));
        }
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
            counts.push((p.id(), high - low));
        }
    }
    counts.sort();
    Ok(counts)
}
