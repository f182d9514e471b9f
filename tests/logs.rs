//! The logs of the services: JSON lines on stdout, and Loki's push API fed by tracing-loki
//! when LOKI_URL is set. No Loki server can be installed here: a local receiver decodes what
//! Loki would (snappy-compressed protobuf PushRequest) and keeps each line with its labels.

#![allow(clippy::unwrap_used)] // Test helpers: a failed setup should panic loudly.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use prost::Message;
use serde_json::{Value, json};

// Loki's push format (pkg/push/push.proto): what the receiver decodes.
#[derive(Clone, PartialEq, prost::Message)]
struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    streams: Vec<Stream>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Stream {
    #[prost(string, tag = "1")]
    labels: String,
    #[prost(message, repeated, tag = "2")]
    entries: Vec<Entry>,
    #[prost(uint64, tag = "3")]
    hash: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Entry {
    #[prost(message, optional, tag = "1")]
    timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    line: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Timestamp {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// One received log line: its stream's labels and the line (JSON from tracing-loki).
#[derive(Debug, Clone)]
struct Line {
    labels: BTreeMap<String, String>,
    line: Value,
    timestamp: i64,
}

#[derive(Default)]
struct Receiver {
    lines: Vec<Line>,
    pushes: usize,
    refused: usize,
}

/// `{a="x",b="y"}` as a map (the values hold no quotes or commas here).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (k.trim().to_string(), v.trim().trim_matches('"').to_string())
        })
        .collect()
}

async fn push(
    State(received): State<Arc<Mutex<Receiver>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut received = received.lock().unwrap();
    received.pushes += 1;
    // Loki hiccups once: the first push is refused, and its lines must come again.
    if received.pushes == 1 {
        received.refused += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/x-"),
        "{headers:?}"
    );
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    let request = PushRequest::decode(raw.as_slice()).unwrap();
    for stream in request.streams {
        let labels = parse_labels(&stream.labels);
        for entry in stream.entries {
            received.lines.push(Line {
                labels: labels.clone(),
                line: serde_json::from_str(&entry.line).unwrap(),
                timestamp: entry.timestamp.map_or(0, |t| t.seconds),
            });
        }
    }
    StatusCode::NO_CONTENT
}

async fn receiver() -> (String, Arc<Mutex<Receiver>>) {
    let received = Arc::new(Mutex::new(Receiver::default()));
    let app = axum::Router::new()
        .route("/loki/api/v1/push", axum::routing::post(push))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn find(received: &Mutex<Receiver>, message: &str) -> Option<Line> {
    received
        .lock()
        .unwrap()
        .lines
        .iter()
        .find(|l| l.line["message"] == message)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_log_json_to_stdout_and_ship_every_line_to_loki_with_service_and_level() {
    let (loki, received) = receiver().await;
    let home = tempfile::tempdir().unwrap();
    let (mut up, password) = start_up(home.path(), &["--log-format", "json", "--loki-url", &loki]);
    let url = printed(&up, "prediction service");

    // Startup lines (the drift consumer's partitions), pushed again after Loki's refusal.
    let reading = until_ok(
        "a 'reading partition' line in Loki",
        Duration::from_secs(60),
        || async {
            find(&received, "reading partition").ok_or_else(|| {
                let received = received.lock().unwrap();
                format!("{} pushes, lines {:?}", received.pushes, received.lines)
            })
        },
    )
    .await;
    assert_eq!(received.lock().unwrap().refused, 1);
    assert_eq!(
        reading.labels["service"], "vigie-up",
        "{:?}",
        reading.labels
    );
    assert_eq!(reading.labels["level"], "info");
    assert_eq!(reading.labels.len(), 2, "labels: service and level only");
    assert_eq!(
        reading.line["topic"], "vigie.predictions",
        "{}",
        reading.line
    );
    assert_eq!(reading.line["_target"], "vigie_drift_service::consumer");
    let now = chrono::Utc::now().timestamp();
    assert!((now - reading.timestamp).abs() < 600, "the line's own time");

    // A request's line, with its fields.
    let client = reqwest::Client::new();
    let token = token(&client, &url, "admin", &password).await;
    let request = client
        .post(format!("{url}/v1/users"))
        .bearer_auth(&token)
        .json(
            &json!({"name": "dispatcher-7", "password": "a long enough password", "role": "user"}),
        );
    expect(request, 201).await;
    let account = until(
        "an 'account created' line in Loki",
        Duration::from_secs(60),
        || async { find(&received, "account created") },
    )
    .await;
    assert_eq!(account.line["user"], "dispatcher-7");
    assert_eq!(account.line["by"], "admin");
    assert_eq!(account.labels["level"], "info");

    // Stopping flushes: the shutdown's lines are in Loki when the process has exited.
    let status = up.terminate();
    assert!(status.success(), "{status}");
    for message in [
        "shutdown requested: draining requests",
        "every event delivered",
        "stopped",
    ] {
        let line = find(&received, message)
            .unwrap_or_else(|| panic!("{message:?} did not reach Loki before the exit"));
        assert_eq!(line.labels["service"], "vigie-up");
    }

    // Stdout: the banner for people, then one JSON object per log line.
    while let Ok(line) = up.lines.recv_timeout(Duration::from_secs(5)) {
        up.seen.push(line);
    }
    let json: Vec<Value> = up
        .seen
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        json.iter().any(|l| l["message"] == "reading partition"),
        "{:?}",
        up.seen
    );
    for line in &json {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line.get(key).is_some(), "{key} in {line}");
        }
    }
}

#[test]
fn a_loki_url_that_is_not_one_is_refused_by_name() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(VIGIE)
        .args(["users", "list"])
        .env("VIGIE_HOME", home.path())
        .env("LOKI_URL", "loki:3100 please")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("LOKI_URL"), "{stderr}");
}
