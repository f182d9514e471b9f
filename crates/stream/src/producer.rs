//! A producer that never makes a request wait for the broker.
//!
//! Events go into librdkafka's queue and `publish` returns; librdkafka's own thread sends
//! them, retries while the broker is away (`message.timeout.ms = 0`: a queued event never
//! expires) and reports each delivery, which the metrics count. The queue is bounded
//! (messages and bytes, both configurable): past the bound an event is refused, counted as
//! dropped and logged, never waited for.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::util::Timeout;

use crate::{Error, Result};

/// How to reach the broker and how much to hold while it is away.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    /// Most events held in memory while the broker is away or slow.
    pub queue_max_messages: u32,
    /// Most kilobytes held in memory likewise.
    pub queue_max_kbytes: u32,
    /// How long librdkafka waits to fill a batch.
    pub linger: Duration,
    /// Extra librdkafka settings (`key=value`), applied last.
    pub extra: Vec<(String, String)>,
}

impl ProducerConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        ProducerConfig {
            brokers: brokers.into(),
            queue_max_messages: 2_000_000,
            queue_max_kbytes: 2 * 1024 * 1024,
            linger: Duration::from_millis(5),
            extra: Vec::new(),
        }
    }
}

/// Publish counters, registered once per process in the service's metrics registry.
#[derive(Debug, Clone)]
pub struct ProducerMetrics {
    enqueued: IntCounterVec,
    delivered: IntCounterVec,
    failed: IntCounterVec,
    dropped: IntCounterVec,
    queue_depth: IntGauge,
}

impl ProducerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<_> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let queue_depth = IntGauge::new(
            "vigie_events_queue_depth",
            "Events accepted by the producer and not yet acknowledged by the broker",
        )?;
        registry.register(Box::new(queue_depth.clone()))?;
        Ok(ProducerMetrics {
            enqueued: counter(
                "vigie_events_enqueued_total",
                "Events handed to the producer's queue",
                &["topic"],
            )?,
            delivered: counter(
                "vigie_events_delivered_total",
                "Events the broker acknowledged",
                &["topic"],
            )?,
            failed: counter(
                "vigie_events_delivery_failures_total",
                "Events the producer gave up on after the broker refused them",
                &["topic", "reason"],
            )?,
            dropped: counter(
                "vigie_events_dropped_total",
                "Events refused before queueing (queue full, or a message the broker cannot take)",
                &["topic", "reason"],
            )?,
            queue_depth,
        })
    }

    /// Creates the series of the topics a service publishes to, at 0: a dashboard shows 0,
    /// not "no data", before the first event (delivery failures under the reason `other`,
    /// refusals under both of theirs).
    pub fn expect_topics(&self, topics: &[&str]) {
        for topic in topics {
            self.enqueued.with_label_values(&[topic]);
            self.delivered.with_label_values(&[topic]);
            self.failed.with_label_values(&[topic, "other"]);
            for reason in ["queue_full", "refused"] {
                self.dropped.with_label_values(&[topic, reason]);
            }
        }
    }
}

/// Counts delivery reports on librdkafka's thread.
struct Context {
    metrics: ProducerMetrics,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        // Broker down, connection refused...: librdkafka retries by itself.
        tracing::warn!(%error, reason, "kafka producer");
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        match result {
            Ok(message) => self
                .metrics
                .delivered
                .with_label_values(&[message.topic()])
                .inc(),
            Err((error, message)) => {
                let reason = error
                    .rdkafka_error_code()
                    .map(|c| format!("{c:?}"))
                    .unwrap_or_else(|| "other".into());
                tracing::error!(%error, topic = message.topic(), "event delivery failed");
                self.metrics
                    .failed
                    .with_label_values(&[message.topic(), &reason])
                    .inc();
            }
        }
    }
}

/// Why an event was not queued. The caller's work is not failed by it: the event is counted
/// as dropped and logged.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the producer's queue is full ({0} events held while the broker is away)")]
    QueueFull(usize),
    #[error("kafka refused the event: {0}")]
    Refused(KafkaError),
}

/// The process's producer: cheap to share (`Arc`), safe to call from any thread.
pub struct EventProducer {
    producer: ThreadedProducer<Context>,
    metrics: ProducerMetrics,
}

impl std::fmt::Debug for EventProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventProducer")
            .field("in_flight", &self.producer.in_flight_count())
            .finish()
    }
}

impl EventProducer {
    pub fn new(config: &ProducerConfig, metrics: ProducerMetrics) -> Result<Self> {
        if config.brokers.trim().is_empty() {
            return Err(Error::Config("no broker address".into()));
        }
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("client.id", "vigie")
            // A queued event never expires: an outage delays it, it does not lose it.
            .set("message.timeout.ms", "0")
            .set(
                "queue.buffering.max.messages",
                config.queue_max_messages.to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                config.queue_max_kbytes.to_string(),
            )
            .set("linger.ms", config.linger.as_millis().to_string())
            .set("acks", "all")
            .set("reconnect.backoff.max.ms", "1000");
        for (key, value) in &config.extra {
            client.set(key, value);
        }
        let producer: ThreadedProducer<Context> = client.create_with_context(Context {
            metrics: metrics.clone(),
        })?;
        Ok(EventProducer { producer, metrics })
    }

    /// Queues one event and returns at once.
    pub fn publish(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), PublishError> {
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (key, value) in headers {
            owned = owned.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let record = BaseRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(owned);
        match self.producer.send(record) {
            Ok(()) => {
                self.metrics.enqueued.with_label_values(&[topic]).inc();
                Ok(())
            }
            Err((error, _)) => {
                let (reason, error) = match error.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::QueueFull) => (
                        "queue_full",
                        PublishError::QueueFull(self.producer.in_flight_count().max(0) as usize),
                    ),
                    _ => ("refused", PublishError::Refused(error)),
                };
                self.metrics
                    .dropped
                    .with_label_values(&[topic, reason])
                    .inc();
                tracing::error!(%error, topic, key, "event dropped");
                Err(error)
            }
        }
    }

    /// Events queued and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.producer.in_flight_count().max(0) as usize
    }

    /// Refreshes the queue-depth gauge (call before exporting metrics).
    pub fn update_gauges(&self) {
        self.metrics.queue_depth.set(self.in_flight() as i64);
    }

    /// Waits up to `timeout` for every queued event to be acknowledged; returns how many are
    /// still queued (lost if the process exits now). Blocks: call from a blocking thread.
    pub fn flush(&self, timeout: Duration) -> usize {
        if let Err(error) = self.producer.flush(Timeout::After(timeout)) {
            tracing::warn!(%error, "producer flush");
        }
        self.in_flight()
    }

    /// Asks the broker for the topic's metadata: true when it answers within `timeout` and
    /// knows the topic. Blocks: call from a blocking thread.
    pub fn topic_available(&self, topic: &str, timeout: Duration) -> bool {
        match self
            .producer
            .client()
            .fetch_metadata(Some(topic), Timeout::After(timeout))
        {
            Ok(metadata) => metadata
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()),
            Err(_) => false,
        }
    }

    /// [`EventProducer::flush`] off the async threads, logged: waits up to `timeout` and
    /// returns how many events are still queued (lost if the process exits now).
    pub async fn drain(self: Arc<Self>, timeout: Duration) -> usize {
        let queued = self.in_flight();
        tracing::info!(queued, "flushing the queued events");
        let producer = Arc::clone(&self);
        let left = tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .unwrap_or(queued);
        if left > 0 {
            tracing::error!(
                left,
                "events still queued after the flush timeout are lost with this process"
            );
        } else {
            tracing::info!("every event delivered");
        }
        left
    }

    /// Whether the broker answers within 2 s and holds `topic`, asked off the async threads;
    /// `Err` says what is wrong and how many events wait meanwhile.
    pub async fn check_topic(self: Arc<Self>, topic: &str) -> std::result::Result<(), String> {
        let producer = Arc::clone(&self);
        let name = topic.to_string();
        let found = tokio::task::spawn_blocking(move || {
            producer.topic_available(&name, Duration::from_secs(2))
        })
        .await
        .unwrap_or(false);
        if found {
            Ok(())
        } else {
            Err(format!(
                "unreachable, or no topic {topic}: events wait in the producer's queue ({} now)",
                self.in_flight()
            ))
        }
    }
}
