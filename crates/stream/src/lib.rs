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

/// One JSON message per prediction. Key: the request id.
pub const PREDICTIONS_TOPIC: &str = "vigie.predictions";
/// Ground truth arriving after the prediction.
pub const LABELS_TOPIC: &str = "vigie.labels";
/// Model lifecycle events (promotions, rollbacks).
pub const MODELS_TOPIC: &str = "vigie.models";
/// Every topic Vigie writes, for brokers that do not create topics on first use.
pub const TOPICS: [&str; 3] = [PREDICTIONS_TOPIC, LABELS_TOPIC, MODELS_TOPIC];

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
