//! An in-process Kafka-protocol broker: librdkafka's mock cluster, listening on a loopback
//! port. It speaks the real protocol, so the producer and consumers run unchanged against it
//! (other processes can connect too). Everything it holds is in memory and dies with it.
//!
//! What it keeps is bounded: librdkafka's mock partitions drop their oldest batches once they
//! hold more than [`RETAINED_BYTES`] or [`RETAINED_BATCHES`] (fixed in librdkafka,
//! `rd_kafka_mock_partition_log_append`), so the broker holds at most about
//! `TOPICS x PARTITIONS x 5 MiB` (60 MiB) however long `vigie up` runs. A consumer that falls
//! further behind than that resumes at the log's start; the drift service counts what it
//! missed (`vigie_drift_events_missed_total`).

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::{Result, TOPICS};

/// Partitions of each topic on the embedded broker.
pub const PARTITIONS: i32 = 3;

/// The most bytes of events a partition keeps (librdkafka's mock cluster; not configurable).
pub const RETAINED_BYTES: usize = 5 * 1024 * 1024;

/// The most producer batches a partition keeps (librdkafka's mock cluster; not configurable).
pub const RETAINED_BATCHES: usize = 100_000;

pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap_servers", &self.bootstrap_servers())
            .finish()
    }
}

impl EmbeddedBroker {
    /// Starts a one-broker cluster with Vigie's topics.
    pub fn start() -> Result<Self> {
        let cluster = MockCluster::new(1)?;
        for topic in TOPICS {
            cluster.create_topic(topic, PARTITIONS, 1)?;
        }
        Ok(EmbeddedBroker { cluster })
    }

    /// The address clients connect to (`127.0.0.1:PORT`).
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    use super::*;
    use crate::PREDICTIONS_TOPIC;

    #[test]
    fn a_partition_keeps_its_last_five_mebibytes() {
        let broker = EmbeddedBroker::start().expect("embedded broker");
        let brokers = broker.bootstrap_servers();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        let payload = vec![b'x'; 1024];
        let sent = 12 * 1024; // 12 MiB of payload on partition 0
        for i in 0..sent {
            let key = i.to_string();
            let record = BaseRecord::to(PREDICTIONS_TOPIC)
                .partition(0)
                .key(&key)
                .payload(&payload);
            let mut record = Some(record);
            while let Some(r) = record.take() {
                if let Err((_, r)) = producer.send(r) {
                    producer.poll(Duration::from_millis(10));
                    record = Some(r);
                }
            }
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(30)).expect("flushed");
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "watermarks")
            .create()
            .expect("consumer");
        let (low, high) = consumer
            .fetch_watermarks(PREDICTIONS_TOPIC, 0, Duration::from_secs(5))
            .expect("watermarks");
        assert_eq!(high, sent, "every event was appended");
        assert!(
            low > 0,
            "the oldest events were dropped (log {low}..{high})"
        );
        let kept_bytes = (high - low) as usize * payload.len();
        assert!(
            kept_bytes <= RETAINED_BYTES,
            "{kept_bytes} bytes of payload kept, more than {RETAINED_BYTES}"
        );
        assert!(
            kept_bytes >= RETAINED_BYTES / 2,
            "only {kept_bytes} bytes of payload kept"
        );
    }
}
