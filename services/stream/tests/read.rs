//! Reading a topic to its end, on the embedded broker (tests/topic_read.rs does it on tansu).

use std::time::Duration;

use vigie_stream::producer::{EventProducer, ProducerConfig, ProducerMetrics};
use vigie_stream::read::{Scan, scan_to_end};
use vigie_stream::{EmbeddedBroker, LABELS_TOPIC};

fn count(servers: &str, topic: &str) -> vigie_stream::Result<u64> {
    let mut n = 0;
    scan_to_end(servers, topic, Duration::from_secs(60), |_| {
        n += 1;
        Scan::Continue
    })?;
    Ok(n)
}

#[test]
fn scan_to_end_reads_every_message_of_every_batch_and_refuses_an_unknown_topic() {
    let broker = EmbeddedBroker::start().unwrap();
    let servers = broker.bootstrap_servers();
    let metrics = ProducerMetrics::register(&prometheus::Registry::new()).unwrap();
    let producer = EventProducer::new(&ProducerConfig::new(servers.clone()), metrics).unwrap();
    for round in 1..=2u64 {
        // One key: one partition, in large batches; the other partitions stay empty.
        for i in 0..300 {
            producer
                .publish(
                    LABELS_TOPIC,
                    "one-key",
                    format!("{{\"i\":{i}}}").as_bytes(),
                    &[],
                )
                .unwrap();
        }
        assert_eq!(producer.flush(Duration::from_secs(30)), 0);
        assert_eq!(count(&servers, LABELS_TOPIC).unwrap(), 300 * round);
    }
    // Stop is honoured.
    let mut seen = 0;
    scan_to_end(&servers, LABELS_TOPIC, Duration::from_secs(60), |_| {
        seen += 1;
        if seen == 10 {
            Scan::Stop
        } else {
            Scan::Continue
        }
    })
    .unwrap();
    assert_eq!(seen, 10);
    let error = count(&servers, "no.such.topic").unwrap_err().to_string();
    assert!(error.contains("no.such.topic"), "{error}");
}
