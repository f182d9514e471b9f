//! Reading a topic to its end, on the embedded broker (tests/topic_read.rs does it on tansu).

use std::time::Duration;

use vigie_stream::producer::{EventProducer, ProducerConfig, ProducerMetrics};
use vigie_stream::read::{self, Scan, scan_to_end};
use vigie_stream::{EmbeddedBroker, LABELS_TOPIC};

#[test]
fn scan_to_end_reads_every_message_of_every_batch_and_refuses_an_unknown_topic() {
    let broker = EmbeddedBroker::start().unwrap();
    let servers = broker.bootstrap_servers();
    let metrics = ProducerMetrics::register(&prometheus::Registry::new()).unwrap();
    let producer = EventProducer::new(&ProducerConfig::new(servers.clone()), metrics).unwrap();
    let limit = Duration::from_secs(60);
    for round in 1..=2u64 {
        // One key: one partition, in large batches; the other partitions stay empty.
        for i in 0..300 {
            let payload = format!("{{\"i\":{i}}}");
            producer
                .publish(LABELS_TOPIC, "one-key", payload.as_bytes(), &[])
                .unwrap();
        }
        assert_eq!(producer.flush(Duration::from_secs(30)), 0);
        let counts = read::count(&servers, LABELS_TOPIC, limit).unwrap();
        assert_eq!(counts.len(), 1, "one partition holds them: {counts:?}");
        assert_eq!(counts.values().sum::<u64>(), 300 * round);
    }
    // Stop is honoured.
    let mut seen = 0;
    scan_to_end(&servers, LABELS_TOPIC, limit, |_| {
        seen += 1;
        if seen == 10 {
            Scan::Stop
        } else {
            Scan::Continue
        }
    })
    .unwrap();
    assert_eq!(seen, 10);
    let error = read::count(&servers, "no.such.topic", limit)
        .unwrap_err()
        .to_string();
    assert!(error.contains("no.such.topic"), "{error}");
}
