//! End to end against a real Kafka-protocol broker (tansu, a separate process with its data
//! in SQLite): every field of the events checked against what the service answered, and a
//! broker outage under traffic (the broker killed, then restarted on the same storage) that
//! must neither fail a prediction nor lose an event.
//!
//! Needs the `tansu` binary: CI installs it. Without it the test says so and passes, unless
//! VIGIE_REQUIRE_TANSU=1 (as CI sets), which makes its absence a failure.

#![allow(clippy::unwrap_used)] // Test helpers: a failed setup should panic loudly.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use vigie_stream::PredictionEvent;

/// What the service answered to one request, with the features it was sent.
struct Served {
    sent: Value,
    answer: Value,
}

async fn predict_rows(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    header: &[String],
    rows: &[Vec<String>],
) -> (Vec<Served>, Vec<Duration>) {
    let mut served = Vec::new();
    let mut latencies = Vec::new();
    for row in rows {
        let sent = Value::Object(features(header, row));
        let start = Instant::now();
        let request = client
            .post(format!("{url}/v1/models/baac-severity/predict"))
            .bearer_auth(token)
            .json(&json!({"features": sent}));
        let response = expect(request, 200).await;
        latencies.push(start.elapsed());
        served.push(Served {
            sent,
            answer: response.json().await.unwrap(),
        });
    }
    (served, latencies)
}

fn p99(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[(d.len() * 99 / 100).min(d.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_under_traffic_fails_no_prediction_and_loses_no_event() {
    let Some(bin) = tansu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = trained_home(dir.path(), "dispatch", "dispatch-password", false);

    let mut broker = Broker::started(
        bin,
        Some(dir.path().join("tansu.db")),
        &[vigie_stream::PREDICTIONS_TOPIC],
    );

    let (mut service, url) = start_predict(
        &home,
        &broker.address(),
        "an end-to-end secret of at least 32 bytes",
    );
    let client = reqwest::Client::new();
    let token = token(&client, &url, "dispatch", "dispatch-password").await;
    let (header, rows) = holdout();
    let rows = &rows[..900];

    // Before, during and after the outage: 300 predictions each.
    let (mut served, before) = predict_rows(&client, &url, &token, &header, &rows[..300]).await;
    broker.kill();
    let (during_served, during) =
        predict_rows(&client, &url, &token, &header, &rows[300..600]).await;
    served.extend(during_served);
    let queued = metric(&metrics(&client, &url).await, "vigie_events_queue_depth");
    broker.start();
    let (after_served, after_) = predict_rows(&client, &url, &token, &header, &rows[600..]).await;
    served.extend(after_served);
    eprintln!(
        "p99 latency: before {:?}, broker down {:?}, after restart {:?}; {queued} events queued during the outage",
        p99(before),
        p99(during),
        p99(after_)
    );
    assert!(
        queued > 0.0,
        "the outage should have held events in the queue"
    );

    // Wait for the producer to deliver what it held (bounded, so a bug cannot hang CI).
    let m = until_ok(
        "the events delivered after the restart",
        Duration::from_secs(180),
        || async {
            let m = metrics(&client, &url).await;
            if metric(&m, "vigie_events_delivered_total{") >= 900.0 {
                Ok(m)
            } else {
                Err(m)
            }
        },
    )
    .await;
    assert_eq!(metric(&m, "vigie_events_dropped_total{"), 0.0);
    assert_eq!(metric(&m, "vigie_events_delivery_failures_total{"), 0.0);

    // Every prediction served is on the topic, with every field as answered.
    let brokers = broker.address();
    let records = tokio::task::spawn_blocking(move || {
        vigie_stream::read::read_topic(
            &brokers,
            vigie_stream::PREDICTIONS_TOPIC,
            usize::MAX,
            Duration::from_secs(20),
        )
        .unwrap()
    })
    .await
    .unwrap();
    let mut events: HashMap<String, PredictionEvent> = HashMap::new();
    let mut duplicates = 0;
    for r in &records {
        let event: PredictionEvent = r.json(vigie_stream::PREDICTIONS_TOPIC).unwrap();
        assert_eq!(
            r.key.as_deref(),
            Some(vigie_stream::event_key(&event.request_id, event.row).as_bytes())
        );
        assert_eq!(r.header("model"), Some(b"baac-severity".as_slice()));
        assert_eq!(r.header("model_version"), Some(b"1".as_slice()));
        if let Some(previous) = events.insert(event.event_id.clone(), event.clone()) {
            // A retry after the broker died between storing a batch and acknowledging it:
            // at-least-once delivery. The copy must be exact.
            assert_eq!(previous, event);
            duplicates += 1;
        }
    }
    eprintln!(
        "{} messages on the topic, {} distinct events, {duplicates} redelivered copies",
        records.len(),
        events.len()
    );
    assert_eq!(events.len(), 900, "an event is missing, or one too many");
    let spec_hash = vigie_ok(&home, &["models", "show", "baac-severity", "--json"], &[]);
    let spec_hash: Value = serde_json::from_str(&spec_hash).unwrap();
    let by_request: HashMap<&str, &PredictionEvent> = events
        .values()
        .map(|e| (e.request_id.as_str(), e))
        .collect();
    for s in &served {
        let a = &s.answer;
        let e = by_request[a["request_id"].as_str().unwrap()];
        assert_eq!(e.model, "baac-severity");
        assert_eq!(e.model_version, 1);
        assert_eq!(e.schema_hash, spec_hash["spec_hash"].as_str().unwrap());
        assert_eq!(Value::Object(e.features.clone()), s.sent);
        let p = e.prediction.as_class().expect("a classification's event");
        assert_eq!(p.class as u64, a["class"].as_u64().unwrap());
        assert_eq!(p.label, a["label"].as_str().unwrap());
        assert_eq!(p.probability, a["probability"].as_f64().unwrap());
        assert_eq!(p.threshold, a["threshold"].as_f64().unwrap());
        assert_eq!(e.source, vigie_stream::Source::Api);
        assert_eq!(e.row, None);
        assert!(e.latency_us > 0);
        assert!((chrono::Utc::now() - e.ts).num_seconds().abs() < 3600);
        assert!(uuid_like(&e.event_id), "{}", e.event_id);
    }

    let status = service.terminate();
    assert!(status.success(), "{status:?}");
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}
