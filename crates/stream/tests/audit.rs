//! Reading a topic back: the audit counts records, distinct events, repeats and payloads
//! without an id, on the embedded broker.

use std::time::Duration;

use vigie_stream::producer::{EventProducer, ProducerConfig, ProducerMetrics};
use vigie_stream::{EmbeddedBroker, LABELS_TOPIC, read};

#[test]
fn the_audit_counts_distinct_events_repeats_and_unreadable_payloads() {
    let broker = EmbeddedBroker::start().unwrap();
    let servers = broker.bootstrap_servers();
    let metrics = ProducerMetrics::register(&prometheus::Registry::new()).unwrap();
    let producer = EventProducer::new(&ProducerConfig::new(servers.clone()), metrics).unwrap();
    for (key, payload) in [
        ("a", r#"{"event_id": "e1", "x": 1}"#),
        ("b", r#"{"event_id": "e2"}"#),
        ("a", r#"{"event_id": "e1", "x": 1}"#),
        ("c", "not json"),
        ("d", r#"{"id": "e3"}"#),
    ] {
        producer
            .publish(LABELS_TOPIC, key, payload.as_bytes(), &[])
            .unwrap();
    }
    assert_eq!(producer.flush(Duration::from_secs(30)), 0, "all delivered");
    let audit = read::audit(&servers, LABELS_TOPIC, Duration::from_secs(3)).unwrap();
    assert_eq!(
        audit,
        read::Audit {
            records: 5,
            distinct: 2,
            duplicates: 1,
            unreadable: 2,
        }
    );
}
