//! An in-process Kafka-protocol broker: librdkafka's mock cluster, listening on a loopback
//! port. It speaks the real protocol, so the producer and consumers run unchanged against it
//! (other processes can connect too). Everything it holds is in memory and dies with it.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::{Result, TOPICS};

/// Partitions of each topic on the embedded broker.
pub const PARTITIONS: i32 = 3;

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
