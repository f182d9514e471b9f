//! The prediction service's router, called without sockets (tower's `oneshot`), on a real
//! SQLite registry and the embedded Kafka-protocol broker: auth, every kind of bad input,
//! JSON and CSV predictions, the events they publish, model switching, the operations routes.

#![allow(clippy::unwrap_used)] // Test helpers: a failed setup should panic loudly.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use vigie_api::Auth;
use vigie_api::testing::{self, Client};
use vigie_core::testing::{toy_model, toy_model_with_leaves, toy_regression_model};
use vigie_predict::{AppState, Config, Inner, Metrics, router};
use vigie_registry::Registry;
use vigie_stream::{EmbeddedBroker, EventProducer, PredictionEvent, ProducerConfig};

struct Harness {
    _dir: tempfile::TempDir,
    broker: EmbeddedBroker,
    registry: Registry,
    state: AppState,
    client: Client,
}

impl Harness {
    /// The toy model registered, an admin `root` and a user `amy`.
    async fn new(config: Config) -> Self {
        let h = Self::empty(config).await;
        h.registry.register(toy_model(), "test").await.unwrap();
        h.state.poll().await;
        h
    }

    /// Accounts `root` (admin) and `amy` (user), no model.
    async fn empty(config: Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = testing::registry(dir.path()).await;
        let base = testing::base(&registry).await;
        let broker = EmbeddedBroker::start().unwrap();
        let metrics = Metrics::register(&base.metrics.registry).unwrap();
        let producer = EventProducer::new(
            &ProducerConfig::new(broker.bootstrap_servers()),
            metrics.producer.clone(),
        )
        .unwrap();
        let state = Inner::start(base, config, Arc::new(producer), metrics).await;
        Harness {
            _dir: dir,
            broker,
            registry,
            client: Client::new(router(state.clone())),
            state,
        }
    }

    /// Every event on the predictions topic, once the producer has delivered them.
    async fn events(&self, want: usize) -> Vec<PredictionEvent> {
        let producer = self.state.producer.clone();
        let brokers = self.broker.bootstrap_servers();
        tokio::task::spawn_blocking(move || {
            assert_eq!(
                producer.flush(Duration::from_secs(30)),
                0,
                "events left undelivered"
            );
            vigie_stream::read::read_topic(
                &brokers,
                vigie_stream::PREDICTIONS_TOPIC,
                want,
                Duration::from_secs(30),
            )
            .unwrap()
            .iter()
            .map(|r| {
                let event: PredictionEvent = r.json(vigie_stream::PREDICTIONS_TOPIC).unwrap();
                assert_eq!(
                    r.key.as_deref(),
                    Some(vigie_stream::event_key(&event.request_id, event.row).as_bytes())
                );
                assert_eq!(r.header("model"), Some(event.model.as_bytes()));
                assert_eq!(
                    r.header("model_version"),
                    Some(event.model_version.to_string().as_bytes())
                );
                event
            })
            .collect()
        })
        .await
        .unwrap()
    }
}

fn config() -> Config {
    Config {
        max_body_bytes: 4096,
        max_batch_rows: 5,
        max_csv_rows: 10,
        ..Config::default()
    }
}

const PREDICT: &str = "/v1/models/toy/predict";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_need_a_valid_token() {
    // Tokens, roles and the account routes are the shell's: vigie-api's tests/accounts.rs.
    let h = Harness::new(config()).await;
    let body = json!({"features": {"colour": 1, "speed": 60}});
    let a = h
        .client
        .post(PREDICT, None, "application/json", body.to_string())
        .await;
    a.error(StatusCode::UNAUTHORIZED, "missing_token");
    assert_eq!(a.headers[header::WWW_AUTHENTICATE], "Bearer");
    h.client
        .post_json(PREDICT, "not.a.jwt", &body)
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_token");
    let amy = h.client.login("amy").await;
    assert_eq!(
        h.client.post_json(PREDICT, &amy, &body).await.status,
        StatusCode::OK
    );
    // An account deleted behind this instance's back (another replica, the CLI) is noticed
    // on the next poll.
    h.registry.delete_user("amy").await.unwrap();
    h.state.poll().await;
    h.client
        .post_json(PREDICT, &amy, &body)
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_predictions_answer_check_and_publish() {
    let h = Harness::new(config()).await;
    let token = h.client.login("amy").await;
    let request = Request::post(PREDICT)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-request-id", "cad-42")
        .body(Body::from(
            json!({"features": {"colour": 1, "speed": 60}}).to_string(),
        ))
        .unwrap();
    let a = h.client.call(request).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.headers["x-request-id"], "cad-42");
    assert_eq!(
        a.json(),
        json!({"request_id": "cad-42", "model": "toy", "model_version": 1, "class": 1, "label": "yes", "probability": 0.8, "threshold": 0.5})
    );
    // Missing speed is imputed (30: below the split); a code may come as a string.
    let a = h
        .client
        .post_json(
            PREDICT,
            &token,
            &json!({"features": {"colour": "2", "speed": null}}),
        )
        .await;
    assert_eq!(
        (a.json()["class"].clone(), a.json()["probability"].clone()),
        (json!(0), json!(0.2))
    );
    let generated_id = a.json()["request_id"].as_str().unwrap().to_string();
    assert_eq!(a.headers["x-request-id"].to_str().unwrap(), generated_id);

    // Every kind of bad input: 4xx with the error code and the field.
    let cases = [
        (
            json!({"features": {"colour": 1, "speed": 60, "mood": 3}}),
            "unknown_field",
            Some("mood"),
        ),
        (
            json!({"features": {"colour": 1}}),
            "missing_field",
            Some("speed"),
        ),
        (
            json!({"features": {"colour": 1, "speed": "fast"}}),
            "wrong_type",
            Some("speed"),
        ),
        (
            json!({"features": {"colour": true, "speed": 60}}),
            "wrong_type",
            Some("colour"),
        ),
        (
            json!({"features": {"colour": [1], "speed": 60}}),
            "wrong_type",
            Some("colour"),
        ),
        (
            json!({"features": {"colour": 3, "speed": 60}}),
            "unknown_code",
            Some("colour"),
        ),
        (
            json!({"features": {"colour": "blue", "speed": 60}}),
            "unknown_code",
            Some("colour"),
        ),
        (
            json!({"features": {"colour": 1, "speed": 131}}),
            "out_of_range",
            Some("speed"),
        ),
        (
            json!({"features": {"colour": 1, "speed": -1}}),
            "out_of_range",
            Some("speed"),
        ),
        (
            json!({"features": {"colour": null, "speed": 60}}),
            "missing_value",
            Some("colour"),
        ),
        (json!({"features": [1, 60]}), "invalid_body", None),
        (json!({"colour": 1, "speed": 60}), "invalid_body", None),
        (
            json!({"features": {"colour": 1, "speed": 60}, "extra": 1}),
            "invalid_body",
            None,
        ),
    ];
    for (body, code, field) in cases {
        let a = h.client.post_json(PREDICT, &token, &body).await;
        let e = a.error(StatusCode::UNPROCESSABLE_ENTITY, code);
        assert_eq!(e["field"].as_str(), field, "{body} -> {e}");
    }
    // Fields JSON objects can repeat: a feature given twice is refused, not overwritten.
    let twice = r#"{"features": {"colour": 1, "speed": 60, "colour": 2}}"#;
    let a = h
        .client
        .post(PREDICT, Some(&token), "application/json", twice)
        .await;
    assert_eq!(
        a.error(StatusCode::UNPROCESSABLE_ENTITY, "duplicate_field")["field"],
        "colour"
    );
    let twice =
        r#"{"features": {"colour": 1, "speed": 60}, "features": {"colour": 2, "speed": 60}}"#;
    h.client
        .post(PREDICT, Some(&token), "application/json", twice)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    // Escaped names and text are read as JSON spells them; fields in any order.
    let escaped = r#"{"features": {"speed": 60, "col\u006fur": "\u0032"}}"#;
    let a = h
        .client
        .post(PREDICT, Some(&token), "application/json", escaped)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json());
    assert_eq!(a.json()["class"], 1);
    h.client
        .post(
            PREDICT,
            Some(&token),
            "application/json",
            r#"{"features": {"colour": 1, "speed": 60}} trailing"#,
        )
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_json");
    h.client
        .post(
            PREDICT,
            Some(&token),
            "application/json",
            "{\"features\": {",
        )
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_json");
    h.client
        .post(PREDICT, Some(&token), "text/plain", "{}")
        .await
        .error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let huge = json!({"features": {"colour": 1, "speed": 60, "pad": "x".repeat(5000)}});
    h.client
        .post_json(PREDICT, &token, &huge)
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    let a = h
        .client
        .post_json("/v1/models/nope/predict", &token, &json!({"features": {}}))
        .await;
    assert!(
        a.error(StatusCode::NOT_FOUND, "unknown_model")["message"]
            .as_str()
            .unwrap()
            .contains("toy")
    );
    let a = h
        .client
        .call(
            Request::post(PREDICT)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .header("x-vigie-source", "mars")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(
        a.error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value")["field"],
        "x-vigie-source"
    );
    h.client
        .get("/v1/nothing-here", Some(&token))
        .await
        .error(StatusCode::NOT_FOUND, "not_found");

    // Exactly the three predictions made, with every field as answered.
    let events = h.events(3).await;
    assert_eq!(events.len(), 3);
    let first = &events.iter().find(|e| e.request_id == "cad-42").unwrap();
    assert_eq!(first.model, "toy");
    assert_eq!(first.model_version, 1);
    assert_eq!(
        first.schema_hash,
        h.state
            .models
            .get("toy")
            .unwrap()
            .model
            .artifact()
            .spec_hash
    );
    assert_eq!(
        Value::Object(first.features.clone()),
        json!({"colour": 1, "speed": 60})
    );
    let answer = first.prediction.as_class().unwrap();
    assert_eq!(first.schema_version, 1);
    assert_eq!(
        (
            answer.class,
            answer.label.as_str(),
            answer.probability,
            answer.threshold
        ),
        (1, "yes", 0.8, 0.5)
    );
    assert_eq!(first.source, vigie_stream::Source::Api);
    assert_eq!(first.row, None);
    assert!(first.latency_us > 0 && first.latency_us < 60_000_000);
    assert!((chrono::Utc::now() - first.ts).num_seconds().abs() < 600);
    let second = events
        .iter()
        .find(|e| e.request_id == generated_id)
        .unwrap();
    assert_eq!(
        Value::Object(second.features.clone()),
        json!({"colour": 2, "speed": null}),
        "features as received, before imputation"
    );
    assert_ne!(first.event_id, second.event_id);
    let escaped = events
        .iter()
        .find(|e| e.request_id != generated_id && e.request_id != "cad-42")
        .unwrap();
    assert_eq!(
        Value::Object(escaped.features.clone()),
        json!({"colour": 2, "speed": 60})
    );

    // The metrics saw all of it.
    let metrics = h.client.get("/metrics", None).await.text();
    for line in [
        r#"vigie_predictions_total{class="1",model="toy",version="1"} 2"#,
        r#"vigie_predictions_total{class="0",model="toy",version="1"} 1"#,
        r#"vigie_prediction_rejections_total{error="unknown_field",model="toy"} 1"#,
        r#"vigie_prediction_rejections_total{error="duplicate_field",model="toy"} 1"#,
        r#"http_requests_total{method="POST",route="/v1/models/{name}/predict",status="200"} 3"#,
        r#"http_requests_total{method="POST",route="/v1/models/{name}/predict",status="422"}"#,
        r#"vigie_events_enqueued_total{topic="vigie.predictions"} 3"#,
        r#"vigie_events_delivered_total{topic="vigie.predictions"} 3"#,
        r#"vigie_events_queue_depth 0"#,
        r#"vigie_model_info{model="toy",version="1"} 1"#,
        r#"http_request_duration_seconds_bucket{method="POST",route="/v1/models/{name}/predict",status="200",le="#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_checked_whole_then_answered_in_order() {
    let h = Harness::new(config()).await;
    let token = h.client.login("amy").await;
    let url = "/v1/models/toy/predict/batch";
    let rows = json!({"rows": [
        {"colour": 1, "speed": 60}, {"colour": 2, "speed": 10}, {"colour": 1, "speed": null}
    ]});
    let a = h.client.post_json(url, &token, &rows).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let body = a.json();
    assert_eq!(
        (
            body["model"].as_str(),
            body["model_version"].as_u64(),
            body["threshold"].as_f64()
        ),
        (Some("toy"), Some(1), Some(0.5))
    );
    let p: Vec<(u64, f64)> = body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["class"].as_u64().unwrap(),
                p["probability"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(p, [(1, 0.8), (0, 0.2), (0, 0.2)]);

    let bad = json!({"rows": [{"colour": 1, "speed": 60}, {"colour": 1, "speed": 999}]});
    let e = h
        .client
        .post_json(url, &token, &bad)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "out_of_range");
    assert_eq!(
        (e["row"].as_u64(), e["field"].as_str()),
        (Some(1), Some("speed"))
    );
    let six = json!({"rows": vec![json!({"colour": 1, "speed": 1}); 6]});
    h.client
        .post_json(url, &token, &six)
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large");
    let a = h.client.post_json(url, &token, &json!({"rows": []})).await;
    assert_eq!(a.json()["predictions"], json!([]));

    // Only the good batch published, one event per row, with its row index.
    let events = h.events(3).await;
    let mut rows: Vec<(Option<u64>, f64)> = events
        .iter()
        .map(|e| (e.row, e.prediction.as_class().unwrap().probability))
        .collect();
    rows.sort_by_key(|r| r.0);
    assert_eq!(rows, [(Some(0), 0.8), (Some(1), 0.2), (Some(2), 0.2)]);
    assert!(
        events
            .iter()
            .all(|e| e.source == vigie_stream::Source::Batch && e.request_id == body["request_id"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_uploads_stream_answers_and_errors_by_row() {
    let h = Harness::new(config()).await;
    let token = h.client.login("amy").await;
    let url = "/v1/models/toy/predict/csv";
    // Columns in another order, CRLF, a quoted value, a blank line, an empty (imputed) cell.
    let upload = "speed,colour\r\n60,1\r\n\"10\",2\r\n\r\n,1\r\n200,1\r\n5,7\r\n1\r\n";
    let a = h.client.post(url, Some(&token), "text/csv", upload).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(
        (
            a.headers["x-model"].to_str().unwrap(),
            a.headers["x-model-version"].to_str().unwrap(),
            a.headers["x-threshold"].to_str().unwrap()
        ),
        ("toy", "1", "0.5")
    );
    let lines: Vec<String> = a.text().lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        [
            "row,class,label,probability,error,field",
            "0,1,yes,0.8,,",
            "1,0,no,0.2,,",
            "2,0,no,0.2,,",
            "3,,,,\"feature speed: 200 is outside the valid range [0, 130]\",speed",
            "4,,,,\"feature colour: unknown code \"\"7\"\"\",colour",
            "5,,,,\"the row has 1 fields, the header has 2\",",
        ]
    );
    let first_id = a.headers["x-request-id"].to_str().unwrap().to_string();

    // Header problems are refused before any row: 422 with the column.
    for (upload, code, field) in [
        ("colour\n1\n", "missing_field", "speed"),
        ("colour,speed,colour\n1,2,1\n", "duplicate_field", "colour"),
    ] {
        let e = h
            .client
            .post(url, Some(&token), "text/csv", upload)
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY, code);
        assert_eq!(e["field"], field);
    }
    h.client
        .post(url, Some(&token), "text/csv", "")
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "empty_csv");
    h.client
        .post(url, Some(&token), "application/json", "colour,speed\n")
        .await
        .error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    h.client
        .post(url, None, "text/csv", "colour,speed\n")
        .await
        .error(StatusCode::UNAUTHORIZED, "missing_token");

    // Past the row limit (10 here), the answer stops with a line that says so.
    let mut many = String::from("colour,speed\n");
    for i in 0..12 {
        many.push_str(&format!("1,{i}\n"));
    }
    let a = h.client.post(url, Some(&token), "text/csv", many).await;
    let text = a.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 10 + 1, "{text}");
    assert_eq!(
        lines[11],
        ",,,,upload incomplete: the upload has more than 10 rows: row 10 (line 12) and the 1 lines after it were not read,"
    );
    let second_id = a.headers["x-request-id"].to_str().unwrap().to_string();

    // Events: rows 0-2 of the first upload, rows 0-9 of the last, every one marked batch.
    let events = h.events(13).await;
    assert_eq!(events.len(), 13);
    let mut rows = std::collections::BTreeMap::<String, Vec<u64>>::new();
    for e in &events {
        assert_eq!(e.source, vigie_stream::Source::Batch);
        rows.entry(e.request_id.clone())
            .or_default()
            .push(e.row.unwrap());
    }
    for r in rows.values_mut() {
        r.sort();
    }
    assert_eq!(rows[&first_id], [0, 1, 2]);
    assert_eq!(rows[&second_id], (0..10).collect::<Vec<u64>>());
    let imputed = events
        .iter()
        .find(|e| e.request_id == first_id && e.row == Some(2))
        .unwrap();
    assert_eq!(
        Value::Object(imputed.features.clone()),
        json!({"colour": 1, "speed": null})
    );

    // A column that is no feature is ignored, and listed.
    let a = h
        .client
        .post(
            url,
            Some(&token),
            "text/csv",
            "colour,mood,speed,day\n1,3,60,4\n",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.headers["x-ignored-columns"], "mood,day");
    assert_eq!(a.text().lines().nth(1), Some("0,1,yes,0.8,,"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_switches_versions_without_a_failed_or_mixed_request() {
    let h = Harness::new(config()).await;
    let token = h.client.login("amy").await;
    // Version 2 answers 0.3 / 0.9 where version 1 answers 0.2 / 0.8.
    h.registry
        .register(toy_model_with_leaves(0.3, 0.9), "test")
        .await
        .unwrap();
    let expected = |version: u64| match version {
        1 => [0.8, 0.2],
        2 => [0.9, 0.3],
        v => panic!("unexpected version {v}"),
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (app, token, stop) = (h.client.app.clone(), token.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = std::collections::BTreeMap::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = json!({"rows": [{"colour": 1, "speed": 60}, {"colour": 1, "speed": 10}, {"colour": 2, "speed": 99}, {"colour": 2, "speed": 0}]});
                let response = app
                    .clone()
                    .oneshot(
                        Request::post("/v1/models/toy/predict/batch")
                            .header(header::AUTHORIZATION, format!("Bearer {token}"))
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(Body::from(body.to_string()))
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                let status = response.status();
                let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
                assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&bytes));
                let body: Value = serde_json::from_slice(&bytes).unwrap();
                let version = body["model_version"].as_u64().unwrap();
                let [high, low] = expected(version);
                let got: Vec<f64> = body["predictions"].as_array().unwrap().iter().map(|p| p["probability"].as_f64().unwrap()).collect();
                assert_eq!(got, [high, low, high, low], "version {version} answered with another version's numbers");
                *seen.entry(version).or_insert(0usize) += 1;
                // The router answers without waiting on anything: give the other tasks a turn.
                tokio::task::yield_now().await;
            }
            seen
        }));
    }
    // Switch back and forth while the clients run.
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let version = if round % 2 == 0 { 2 } else { 1 };
        h.registry.promote("toy", version, "test").await.unwrap();
        h.state.poll().await;
        let ready = h.client.get("/ready", None).await.json();
        assert_eq!(ready["models"][0]["version"], version, "{ready}");
    }
    h.registry.promote("toy", 2, "test").await.unwrap();
    h.state.poll().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = std::collections::BTreeMap::new();
    for c in clients {
        for (v, n) in c.await.unwrap() {
            *total.entry(v).or_insert(0) += n;
        }
    }
    assert!(total.values().sum::<usize>() > 0);
    let a = h
        .client
        .post_json(
            PREDICT,
            &token,
            &json!({"features": {"colour": 1, "speed": 60}}),
        )
        .await;
    assert_eq!(
        (
            a.json()["model_version"].as_u64(),
            a.json()["probability"].as_f64()
        ),
        (Some(2), Some(0.9))
    );
    let metrics = h.client.get("/metrics", None).await.text();
    assert!(
        metrics.contains(r#"vigie_model_info{model="toy",version="2"} 1"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains(r#"vigie_model_info{model="toy",version="1"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"vigie_model_switches_total{model="toy"} 7"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_routes_and_offline_docs() {
    let h = Harness::new(config()).await;
    assert_eq!(
        h.client.get("/health", None).await.json(),
        json!({"status": "ok"})
    );
    h.state.poll().await;
    let ready = h.client.get("/ready", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    let ready = ready.json();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["models"][0]["name"], "toy");
    assert_eq!(ready["dependencies"]["database"], "ok");
    assert_eq!(ready["dependencies"]["broker"], "ok", "{ready}");

    let token = h.client.login("amy").await;
    let models = h.client.get("/v1/models", Some(&token)).await.json();
    assert_eq!(
        (
            models[0]["name"].as_str(),
            models[0]["version"].as_u64(),
            models[0]["features"].as_u64()
        ),
        (Some("toy"), Some(1), Some(2))
    );
    let detail = h.client.get("/v1/models/toy", Some(&token)).await.json();
    assert_eq!(detail["features"][0]["name"], "colour");
    h.client
        .get("/v1/models", None)
        .await
        .error(StatusCode::UNAUTHORIZED, "missing_token");

    // The OpenAPI document describes each served model's features from its spec.
    let doc = h.client.get("/openapi.json", None).await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/auth/token",
        "/v1/users",
        "/v1/users/{name}",
        "/v1/models",
        "/v1/models/toy",
        "/v1/models/toy/predict",
        "/v1/models/toy/predict/batch",
        "/v1/models/toy/predict/csv",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} undocumented");
    }
    let features = &doc["components"]["schemas"]["Features.toy"];
    assert_eq!(features["properties"]["colour"]["enum"], json!([1, 2]));
    assert_eq!(
        features["properties"]["speed"]["type"],
        json!(["number", "null"])
    );
    assert_eq!(features["properties"]["speed"]["maximum"], json!(130.0));
    // Its example is a valid request.
    let example = doc["paths"]["/v1/models/toy/predict"]["post"]["requestBody"]["content"]["application/json"]["example"].clone();
    assert_eq!(
        h.client.post_json(PREDICT, &token, &example).await.status,
        StatusCode::OK
    );

    // The docs page and its assets come from the binary: nothing is fetched from elsewhere.
    let page = h.client.get("/docs/", None).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "the page loads something from the network:\n{html}"
    );
    for asset in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        let a = h.client.get(asset, None).await;
        assert_eq!(a.status, StatusCode::OK, "{asset}");
        assert!(a.body.len() > 100, "{asset}");
    }
    assert!(
        h.client
            .get("/docs/swagger-initializer.js", None)
            .await
            .text()
            .contains("/openapi.json")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_without_a_model() {
    let h = Harness::empty(Config::default()).await;
    let short = Auth::new(b"short", Duration::from_secs(60), h.registry.clone())
        .await
        .unwrap_err();
    assert!(short.contains("at least 32 bytes"), "{short}");
    let (app, registry, state) = (h.client.app.clone(), h.registry.clone(), h.state.clone());
    let response = app
        .clone()
        .oneshot(Request::get("/ready").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // A model registered later is picked up by the next poll.
    registry.register(toy_model(), "test").await.unwrap();
    state.poll().await;
    let response = app
        .oneshot(Request::get("/ready").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_never_closed_ends_the_answer_with_the_row_it_opened_in() {
    let h = Harness::new(Config {
        max_csv_rows: 100_000,
        ..config()
    })
    .await;
    let token = h.client.login("amy").await;
    let url = "/v1/models/toy/predict/csv";
    let rows = 2_000;
    for opened in [0, 1, 999, 1_990, rows - 1] {
        let mut upload = String::from("colour,speed\n");
        for i in 0..rows {
            if i == opened {
                upload.push_str("1,\"3\n");
            } else {
                upload.push_str(&format!("1,{}\n", i % 131));
            }
        }
        let a = h.client.post(url, Some(&token), "text/csv", upload).await;
        assert_eq!(a.status, StatusCode::OK);
        let text = a.text();
        let lines: Vec<&str> = text.lines().collect();
        // Every row before the quote answered, then the reason the rest was not.
        assert_eq!(lines.len(), 1 + opened + 1, "quote in row {opened}: {text}");
        let after = rows - 1 - opened;
        assert_eq!(
            *lines.last().unwrap(),
            format!(
                ",,,,upload incomplete: row {opened}: a quote opened on line {} is never closed: that line and the {after} after it were read as one field: that row and the {after} lines after it were not read,",
                opened + 2
            ),
            "quote in row {opened}"
        );
    }

    // A quote that swallows more than the longest line: stopped there, the rest counted.
    let small = Harness::new(Config {
        max_csv_rows: 100_000,
        max_csv_line_bytes: 1024,
        ..config()
    })
    .await;
    let token = small.client.login("amy").await;
    let mut upload = String::from("colour,speed\n1,3\n1,\"4\n");
    for i in 0..500 {
        upload.push_str(&format!("1,{}\n", i % 131));
    }
    let text = small
        .client
        .post(url, Some(&token), "text/csv", upload)
        .await
        .text();
    let last = text.lines().last().unwrap().to_string();
    assert_eq!(text.lines().count(), 1 + 1 + 1, "{text}");
    assert_eq!(
        last,
        ",,,,upload incomplete: row 1: a quote opened on line 3 is not closed within 1024 bytes: that row and the 500 lines after it were not read,"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_a_healthy_service_never_moves_exist_at_zero() {
    let h = Harness::new(config()).await;
    let metrics = h.client.metrics().await;
    for line in [
        "vigie_prediction_rejections_total{error=\"out_of_range\",model=\"toy\"} 0",
        "vigie_prediction_rejections_total{error=\"invalid_json\",model=\"toy\"} 0",
        "vigie_events_dropped_total{reason=\"queue_full\",topic=\"vigie.predictions\"} 0",
        "vigie_events_dropped_total{reason=\"refused\",topic=\"vigie.labels\"} 0",
        "vigie_events_delivery_failures_total{reason=\"other\",topic=\"vigie.predictions\"} 0",
        "vigie_events_enqueued_total{topic=\"vigie.predictions\"} 0",
        "vigie_model_switches_total{model=\"toy\"} 0",
        "vigie_logins_total{outcome=\"throttled\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regression_answers_estimates_intervals_and_flags_everywhere() {
    let h = Harness::new(config()).await;
    h.registry
        .register(toy_regression_model(), "test")
        .await
        .unwrap();
    h.state.poll().await;
    let token = h.client.login("amy").await;

    // Both models listed, each with its task and its figures.
    let models = h.client.get("/v1/models", Some(&token)).await.json();
    let time = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "toy-time")
        .unwrap();
    assert_eq!(time["task"], "regression");
    assert_eq!(time["unit"], "s");
    assert_eq!(time["interval_coverage"], 0.9);
    assert!(time["holdout_mae"].is_number() && time.get("holdout_roc_auc").is_none());
    let toy = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "toy")
        .unwrap();
    assert_eq!(toy["task"], "binary_classification");
    assert!(toy.get("holdout_mae").is_none());
    let detail = h
        .client
        .get("/v1/models/toy-time", Some(&token))
        .await
        .json();
    assert_eq!(detail["regression"]["interval"]["coverage"], 0.9);
    assert_eq!(
        detail["regression"]["underestimation"]["feature"],
        "station"
    );

    // One estimate: its interval, and the flag with its reason.
    let url = "/v1/models/toy-time/predict";
    let a = h
        .client
        .post_json(
            url,
            &token,
            &json!({"features": {"station": "south", "distance": 20}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let body = a.json();
    assert_eq!(body["prediction"], 600.0);
    assert_eq!(body["interval"], json!([540.0, 720.0]));
    assert_eq!(
        (body["unit"].as_str(), body["coverage"].as_f64()),
        (Some("s"), Some(0.9))
    );
    assert_eq!(body["underestimation_risk"], true);
    let group = &body["underestimation_group"];
    assert_eq!(
        (
            group["feature"].as_str(),
            group["group"].as_str(),
            group["flagged"].as_bool()
        ),
        (Some("station"), Some("south"), Some(true))
    );
    assert!(group["lower_bound"].as_f64().unwrap() > 0.0);
    assert!(body.get("class").is_none() && body.get("threshold").is_none());
    // A group the validation slice never saw: not flagged, and no group to show.
    let a = h
        .client
        .post_json(
            url,
            &token,
            &json!({"features": {"station": "east", "distance": null}}),
        )
        .await
        .json();
    assert_eq!(
        (
            a["underestimation_risk"].as_bool(),
            a["underestimation_group"].is_null()
        ),
        (Some(false), true)
    );
    // A bad value is refused by field, as for any model.
    let e = h
        .client
        .post_json(
            url,
            &token,
            &json!({"features": {"station": "west", "distance": 1}}),
        )
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "unknown_code");
    assert_eq!(e["field"], "station");

    // A batch.
    let a = h
        .client
        .post_json(
            "/v1/models/toy-time/predict/batch",
            &token,
            &json!({"rows": [{"station": "north", "distance": 5}, {"station": "south", "distance": 5}]}),
        )
        .await
        .json();
    assert_eq!((a["unit"].as_str(), a.get("threshold")), (Some("s"), None));
    let rows: Vec<(f64, bool)> = a["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["prediction"].as_f64().unwrap(),
                p["underestimation_risk"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [(300.0, false), (300.0, true)]);

    // A CSV upload: the regression's columns, a refused row in place.
    let a = h
        .client
        .post(
            "/v1/models/toy-time/predict/csv",
            Some(&token),
            "text/csv",
            "distance,station\n20,north\n5,west\n",
        )
        .await;
    assert_eq!(a.headers["x-interval-coverage"], "0.9");
    assert_eq!(
        a.text(),
        "row,prediction,lower,upper,underestimation_risk,group,error,field\n\
         0,600,540,720,false,north,,\n\
         1,,,,,,\"feature station: unknown code \"\"west\"\"\",station\n"
    );

    // Feedback: the observed number, in range.
    let feedback = "/v1/models/toy-time/feedback";
    let a = h
        .client
        .post_json(
            feedback,
            &token,
            &json!({"request_id": "r1", "label": 655.0}),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    for bad in [json!("late"), json!(-5), json!(true)] {
        let e = h
            .client
            .post_json(feedback, &token, &json!({"request_id": "r1", "label": bad}))
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_label");
        assert_eq!(e["field"], "label");
    }

    // Events: version 2, the estimate as answered, the group's code.
    let events = h.events(5).await;
    let estimates: Vec<_> = events
        .iter()
        .filter(|e| e.model == "toy-time")
        .map(|e| {
            (
                e.schema_version,
                e.prediction.as_estimate().unwrap().clone(),
            )
        })
        .collect();
    assert_eq!(estimates.len(), 5);
    assert!(estimates.iter().all(|(v, _)| *v == 2));
    let flagged = estimates
        .iter()
        .filter(|(_, e)| e.underestimation_risk)
        .count();
    assert_eq!(flagged, 2);
    assert!(
        estimates
            .iter()
            .any(|(_, e)| e.group.as_deref() == Some("south")
                && (e.value, e.lower, e.upper) == (600.0, 540.0, 720.0))
    );

    let metrics = h.client.get("/metrics", None).await.text();
    let line = r#"vigie_predictions_total{class="estimate",model="toy-time",version="1"} 5"#;
    assert!(metrics.contains(line), "missing {line} in\n{metrics}");

    // The document shows each task's answer.
    let doc = h.client.get("/openapi.json", None).await.json();
    let answer = |model: &str| {
        doc["paths"][format!("/v1/models/{model}/predict")]["post"]["responses"]["200"]["content"]
            ["application/json"]["schema"]["$ref"]
            .clone()
    };
    assert_eq!(answer("toy-time"), "#/components/schemas/Estimate");
    assert_eq!(answer("toy"), "#/components/schemas/Prediction");
    assert!(
        doc["components"]["schemas"]["Estimate"]["properties"]["underestimation_risk"].is_object()
    );
}

#[tokio::test]
async fn feedback_is_checked_against_the_requests_answered_and_refusals_are_counted() {
    let h = Harness::new(config()).await;
    let token = h.client.login("amy").await;
    let feedback = "/v1/models/toy/feedback";
    let single = h
        .client
        .post_json(
            PREDICT,
            &token,
            &json!({"features": {"colour": 1, "speed": 60}}),
        )
        .await
        .json()["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let rows = json!({"rows": [{"colour": 1, "speed": 60}, {"colour": 2, "speed": 10}]});
    let batch = h
        .client
        .post_json("/v1/models/toy/predict/batch", &token, &rows)
        .await
        .json()["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    // A request refused for its input got an id, and no answer.
    let refused = h
        .client
        .post_json(
            PREDICT,
            &token,
            &json!({"features": {"colour": 9, "speed": 60}}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let refused = refused.headers["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();

    let label = |id: &str, row: Option<u64>| match row {
        Some(r) => json!({"request_id": id, "row": r, "label": 1}),
        None => json!({"request_id": id, "label": "yes"}),
    };
    let a = h
        .client
        .post_json(
            feedback,
            &token,
            &json!({"labels": [label(&single, None), label(&batch, Some(1))]}),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    assert_eq!(a.json()["accepted"], 2);
    assert_eq!(a.json()["unverified"], 0);
    for (body, status, error, field) in [
        (
            label(&refused, None),
            StatusCode::NOT_FOUND,
            "unknown_request",
            "request_id",
        ),
        (
            label(&batch, Some(2)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_such_row",
            "row",
        ),
        (
            label(&batch, None),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_such_row",
            "row",
        ),
        (
            label(&single, Some(0)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_such_row",
            "row",
        ),
        // The first label counts; a second is refused, and said so.
        (
            label(&single, None),
            StatusCode::CONFLICT,
            "already_labelled",
            "request_id",
        ),
        (
            label(&batch, Some(1)),
            StatusCode::CONFLICT,
            "already_labelled",
            "row",
        ),
        (
            json!({"request_id": &batch, "row": 0, "label": 2}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_label",
            "label",
        ),
    ] {
        let e = h
            .client
            .post_json(feedback, &token, &body)
            .await
            .error(status, error);
        assert_eq!(e["field"], field, "{body}: {e}");
    }
    // Row 0 of the batch is still unlabelled.
    let a = h
        .client
        .post_json(feedback, &token, &label(&batch, Some(0)))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    // All or nothing: a bad label in a list leaves the good ones unlabelled, to send again.
    let fresh = h
        .client
        .post_json(
            PREDICT,
            &token,
            &json!({"features": {"colour": 2, "speed": 60}}),
        )
        .await
        .json()["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let e = h
        .client
        .post_json(
            feedback,
            &token,
            &json!({"labels": [label(&fresh, None), label(&refused, None)]}),
        )
        .await
        .error(StatusCode::NOT_FOUND, "unknown_request");
    assert_eq!(e["row"], 1);
    let a = h
        .client
        .post_json(feedback, &token, &label(&fresh, None))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    // An upload's refused row has no answer to label; its answered rows do.
    let upload = h
        .client
        .post(
            "/v1/models/toy/predict/csv",
            Some(&token),
            "text/csv",
            "colour,speed\n1,60\n9,60\n",
        )
        .await;
    assert!(
        upload
            .text()
            .lines()
            .nth(2)
            .unwrap()
            .contains("unknown code")
    );
    let upload = upload.headers["x-request-id"].to_str().unwrap().to_string();
    let e = h
        .client
        .post_json(feedback, &token, &label(&upload, Some(1)))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "no_such_row");
    assert!(
        e["message"].as_str().unwrap().contains("was refused"),
        "{e}"
    );
    let a = h
        .client
        .post_json(feedback, &token, &label(&upload, Some(0)))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    // A caller's own id, or one from before a restart, cannot be judged here: published and
    // counted.
    let a = h
        .client
        .post_json(feedback, &token, &label("cad:2026-11-30.7", None))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.json()["unverified"], 1);

    let metrics = h.client.get("/metrics", None).await.text();
    for line in [
        r#"vigie_feedback_refused_total{model="toy",reason="unknown_request"} 2"#,
        r#"vigie_feedback_refused_total{model="toy",reason="no_such_row"} 4"#,
        r#"vigie_feedback_refused_total{model="toy",reason="already_labelled"} 2"#,
        r#"vigie_feedback_refused_total{model="toy",reason="invalid_label"} 1"#,
        r#"vigie_feedback_unverified_total{model="toy"} 1"#,
        r#"vigie_labels_total{model="toy"} 6"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
}
