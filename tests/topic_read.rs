//! Reading a topic to its end on a real broker (tansu), in memory and on SQLite: the trainer
//! reads vigie.labels and vigie.predictions this way, and `vigie events count` counts so.
//! tansu's ListOffsets high watermark lags its log (the memory engine answers the last batch's
//! base offset + 1), so a read bounded by it stopped after one message and a count from
//! watermarks said 1 for 300; reads now end on the consumer's partition EOF.

#![allow(clippy::unwrap_used)] // Test helpers: a failed setup should panic loudly.

mod common;

use std::time::Duration;

use common::{Broker, tansu, vigie_ok};
use vigie_stream::LABELS_TOPIC;
use vigie_stream::producer::{EventProducer, ProducerConfig, ProducerMetrics};

#[test]
fn every_message_is_read_and_counted_on_tansu_in_memory_and_on_sqlite() {
    let Some(bin) = tansu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for storage in [None, Some(dir.path().join("tansu.db"))] {
        let broker = Broker::started(bin.clone(), storage, &[LABELS_TOPIC]);
        let servers = broker.address();
        let metrics = ProducerMetrics::register(&prometheus::Registry::new()).unwrap();
        let producer = EventProducer::new(&ProducerConfig::new(servers.clone()), metrics).unwrap();
        for round in 1..=3u64 {
            for i in 0..300 {
                let payload = format!("{{\"i\":{i}}}");
                producer
                    .publish(LABELS_TOPIC, "one-key", payload.as_bytes(), &[])
                    .unwrap();
            }
            assert_eq!(producer.flush(Duration::from_secs(60)), 0);
            let counts =
                vigie_stream::read::count(&servers, LABELS_TOPIC, Duration::from_secs(60)).unwrap();
            assert_eq!(counts.values().sum::<u64>(), 300 * round, "round {round}");
        }
        let printed = vigie_ok(
            dir.path(),
            &[
                "events",
                "count",
                "--kafka-brokers",
                &servers,
                "--topic",
                LABELS_TOPIC,
            ],
            &[],
        );
        assert!(
            printed.lines().any(|l| l == format!("{LABELS_TOPIC} 900")),
            "{printed}"
        );
    }
}
