//! Vigie's Kafka contracts and the plumbing around them.
//!
//! - [`event`]: the messages on `vigie.predictions` (one per prediction, each batch row too),
//!   `vigie.labels` and `vigie.models`, as producers write them and consumers read them.
//! - [`producer`]: [`EventProducer`], which queues events in librdkafka and returns at once: a
//!   request never waits for the broker, and an outage delays events without losing them.
//! - [`embedded`]: an in-process Kafka-protocol broker (librdkafka's mock cluster) for
//!   `vigie up` and tests; the same producer and consumer code talks to it over TCP.
//! - [`follow`]: a thread that hands every new model event on `vigie.models` to a callback,
//!   so a service reloads a promoted version at once instead of at its next poll.
//! - [`read`]: reading a topic from the beginning, for tests and tools.

pub mod embedded;
pub mod event;
pub mod follow;
pub mod producer;
pub mod read;

pub use embedded::EmbeddedBroker;
pub use event::{LabelEvent, ModelAction, ModelEvent, PredictionEvent, Source};
pub use producer::{EventProducer, ProducerConfig};

/// One JSON message per prediction. Key: [`event_key`].
pub const PREDICTIONS_TOPIC: &str = "vigie.predictions";
/// Ground truth arriving after the prediction. Key: [`event_key`], as its prediction's.
pub const LABELS_TOPIC: &str = "vigie.labels";
/// Model lifecycle events (promotions, rollbacks).
pub const MODELS_TOPIC: &str = "vigie.models";
/// The drift service instances' counts of their partitions, for one another (compacted: the
/// latest per key is what counts). Key: `model/partition`.
pub const PARTIALS_TOPIC: &str = "vigie.drift.partials";
/// Every topic Vigie writes, for brokers that do not create topics on first use.
pub const TOPICS: [&str; 4] = [
    PREDICTIONS_TOPIC,
    LABELS_TOPIC,
    MODELS_TOPIC,
    PARTIALS_TOPIC,
];

/// The key of a prediction event and of its label: the request id, and for a row of a batch
/// or an upload, the request id, `/` and the row.
///
/// Kafka's partitioner hashes the key, so this key spreads a model's events over the
/// partitions evenly (a 100,000-row upload is 100,000 keys, not one that would put it all on
/// one partition and one drift instance), and puts a label on the same partition number as
/// its answer (both topics have the same partitions; the drift service joins them per
/// partition).
pub fn event_key(request_id: &str, row: Option<u64>) -> std::borrow::Cow<'_, str> {
    match row {
        None => std::borrow::Cow::Borrowed(request_id),
        Some(row) => std::borrow::Cow::Owned(format!("{request_id}/{row}")),
    }
}

/// `fetch.wait.max.ms` for the consumers that read a busy topic (the drift service, the
/// readers in [`read`]). Kafka answers a fetch as soon as it has data, whatever the wait; tansu
/// holds each fetch for the whole wait when a partition has nothing new, so there the wait
/// caps the rate. Reading 310,000 events from 3 partitions, one holding them all
/// (benchmarks/README.md): 25,800 events/s at librdkafka's default (500 ms), 61,000 at
/// 100 ms, 310,000 at 10 ms, 181,000 at 1 ms. An idle consumer then sends 100 fetches a second.
pub const FETCH_WAIT_MS: &str = "10";

/// `fetch.queue.backoff.ms` for the same consumers. When its local queue is full (100,000
/// messages or 64 MB; a hundred thousand BAAC events are 70 MB), librdkafka waits this long
/// before fetching again. At the default (1 s) a consumer that drains the queue in less than a
/// second idles until then: that capped the drift service near 100,000 events/s on one core
/// (103,014), and 157,618 without it (benchmarks/README.md).
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// Errors of the Kafka plumbing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("invalid producer configuration: {0}")]
    Config(String),
    #[error("bad event on {topic} at partition {partition} offset {offset}: {message}")]
    BadEvent {
        topic: String,
        partition: i32,
        offset: i64,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An embedded broker and a producer publishing to it, for tests.
#[cfg(test)]
pub(crate) fn broker_and_producer() -> (EmbeddedBroker, EventProducer) {
    let broker = EmbeddedBroker::start().expect("embedded broker");
    let producer = EventProducer::new(
        &ProducerConfig::new(broker.bootstrap_servers()),
        producer::ProducerMetrics::register(&prometheus::Registry::new()).expect("metrics"),
    )
    .expect("producer");
    (broker, producer)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    /// An upload's rows go to every partition about evenly, and each label to the partition
    /// number of its answer (what the drift service's per-partition join needs).
    #[test]
    fn event_keys_spread_an_upload_and_put_labels_beside_their_answers() {
        let (broker, producer) = broker_and_producer();
        let brokers = broker.bootstrap_servers();
        let rows = 600u64;
        let request = "0193a8f2-7c1e-7d40-8000-4f1a2b3c4d5e";
        assert_eq!(event_key(request, None), request);
        for row in 0..rows {
            let key = event_key(request, Some(row));
            assert_eq!(key, format!("{request}/{row}"));
            let body = row.to_string();
            producer
                .publish(PREDICTIONS_TOPIC, &key, body.as_bytes(), &[])
                .expect("queued");
            producer
                .publish(LABELS_TOPIC, &key, body.as_bytes(), &[])
                .expect("queued");
        }
        assert_eq!(producer.flush(Duration::from_secs(30)), 0);
        let partitions = |topic: &str| -> BTreeMap<Vec<u8>, i32> {
            read::read_topic(&brokers, topic, rows as usize, Duration::from_secs(30))
                .expect("read")
                .into_iter()
                .map(|r| (r.payload, r.partition))
                .collect()
        };
        let answers = partitions(PREDICTIONS_TOPIC);
        let labels = partitions(LABELS_TOPIC);
        assert_eq!(answers.len(), rows as usize);
        assert_eq!(answers, labels, "every label on its answer's partition");
        let mut per_partition = BTreeMap::<i32, u64>::new();
        for p in answers.values() {
            *per_partition.entry(*p).or_default() += 1;
        }
        assert_eq!(per_partition.len(), embedded::PARTITIONS as usize);
        let even = rows / embedded::PARTITIONS as u64;
        for (p, n) in per_partition {
            assert!(
                n.abs_diff(even) * 4 < even,
                "partition {p} holds {n} of {rows} rows"
            );
        }
    }
}
