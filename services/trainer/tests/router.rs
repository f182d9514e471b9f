//! The trainer's router, called without sockets (tower's `oneshot`), on a real SQLite registry
//! and real training runs on small generated data sets of the toy spec: webhook auth and every
//! malformed payload, duplicates, single flight and cooldown, promotion when the candidate is
//! better, rejection when it is not, failure when training fails, and the manual promote and
//! rollback endpoints (a corrupt artifact is never promoted).

#![allow(clippy::unwrap_used)] // Test helpers: a failed setup should panic loudly.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use vigie_api::testing::{self, Answer, Client};
use vigie_core::testing::{TOY_REGRESSION_SPEC, TOY_SPEC, toy_model, toy_regression_model};
use vigie_registry::{Registry, RunState, Status};
use vigie_stream::EventProducer;
use vigie_stream::producer::{ProducerConfig, ProducerMetrics};
use vigie_trainer::{AppState, Config, Inner, Metrics, router};

const WEBHOOK_TOKEN: &str = "webhook-token-of-the-tests";

/// How the generated data's target depends on the features.
#[derive(Debug, Clone, Copy)]
enum Truth {
    /// y follows colour (the toy production model reads only speed: a new model wins).
    Colour,
    /// y = speed >= 50, exactly what the toy production model says (nothing to win).
    Speed,
}

/// Writes a spec named `toy` and its four data files into `dir`.
fn write_data(dir: &Path, truth: Truth, retraining: &str) {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    for (prefix, rows) in [("train", 600), ("test", 400)] {
        let (mut x, mut y) = (String::from("colour,speed\n"), String::from("y\n"));
        for _ in 0..rows {
            let colour = 1 + next() % 2;
            let speed = next() % 131;
            let noisy = next() % 10 == 0;
            let label = match truth {
                Truth::Colour => u64::from((colour == 2) != noisy),
                Truth::Speed => u64::from(speed >= 50),
            };
            x.push_str(&format!("{colour},{speed}\n"));
            y.push_str(&format!("{label}\n"));
        }
        std::fs::write(dir.join(format!("x_{prefix}.csv")), x).unwrap();
        std::fs::write(dir.join(format!("y_{prefix}.csv")), y).unwrap();
    }
    let spec = TOY_SPEC
        .replace(
            "train_features = \"x.csv\"",
            "train_features = \"x_train.csv\"",
        )
        .replace("train_target = \"y.csv\"", "train_target = \"y_train.csv\"")
        .replace(
            "holdout_features = \"x.csv\"",
            "holdout_features = \"x_test.csv\"",
        )
        .replace(
            "holdout_target = \"y.csv\"",
            "holdout_target = \"y_test.csv\"",
        )
        .replace("[algorithm]", &format!("{retraining}\n[algorithm]"));
    std::fs::write(dir.join("toy.toml"), spec).unwrap();
}

/// Labelled traffic off (no broker in these tests) and fewer resamples.
const RETRAINING: &str = "[retraining]\nlabelled_traffic = false\nbootstrap_samples = 200\n";

struct Harness {
    dir: tempfile::TempDir,
    registry: Registry,
    state: AppState,
    client: Client,
}

impl Harness {
    async fn new(truth: Truth) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir_all(&models).unwrap();
        write_data(&models, truth, RETRAINING);
        let registry = testing::registry(dir.path()).await;
        // Production: the hand-made toy model (probability from speed alone).
        registry.register(toy_model(), "test").await.unwrap();
        let base = testing::base(&registry).await;
        let metrics = Metrics::register(&base.metrics.registry).unwrap();
        // Nothing listens there: model events stay queued, which is all these tests need.
        let producer = EventProducer::new(
            &ProducerConfig::new("127.0.0.1:9"),
            ProducerMetrics::register(&prometheus::Registry::new()).unwrap(),
        )
        .unwrap();
        let config = Config {
            models_dir: models,
            webhook_token: WEBHOOK_TOKEN.into(),
            ..Config::default()
        };
        let state = AppState::new(
            base,
            Inner::new(config, metrics, Arc::new(producer), "127.0.0.1:9"),
        );
        Harness {
            client: Client::new(router(state.clone())),
            state,
            dir,
            registry,
        }
    }

    async fn alert(&self, payload: &Value) -> Answer {
        self.client
            .send(
                "POST",
                "/v1/alerts",
                Some(WEBHOOK_TOKEN),
                Some(&payload.to_string()),
            )
            .await
    }

    /// Waits for a run to end (runs are real trainings; the cap only stops a hung test).
    async fn finished(&self, id: &str) -> vigie_registry::Run {
        for _ in 0..2400 {
            let run = self.registry.run(id).await.unwrap().unwrap();
            if run.state.is_final() {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("run {id} did not end within 120 s");
    }

    async fn production(&self) -> u32 {
        self.registry
            .production_of("toy")
            .await
            .unwrap()
            .unwrap()
            .version
    }
}

/// A drift alert for `model` as Alertmanager sends it.
fn drift_alert(model: &str, fingerprint: &str, starts_at: &str) -> Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"VigieDataDrift\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "vigie-trainer",
        "groupLabels": {"alertname": "VigieDataDrift"},
        "commonLabels": {"alertname": "VigieDataDrift", "model": model},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "VigieDataDrift", "model": model, "severity": "critical"},
            "annotations": {"summary": "drift"},
            "startsAt": starts_at,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph",
            "fingerprint": fingerprint
        }]
    })
}

#[tokio::test]
async fn unauthenticated_or_malformed_webhooks_are_refused_and_start_nothing() {
    let h = Harness::new(Truth::Colour).await;
    let payload = drift_alert("toy", "f1", "2026-11-22T10:00:00Z");
    let body = payload.to_string();
    h.client
        .send("POST", "/v1/alerts", None, Some(&body))
        .await
        .error(StatusCode::UNAUTHORIZED, "missing_token");
    h.client
        .send("POST", "/v1/alerts", Some("not-the-token"), Some(&body))
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_token");
    let mut request = Request::post("/v1/alerts")
        .header(header::AUTHORIZATION, format!("Basic {WEBHOOK_TOKEN}"))
        .body(Body::from(body.clone()))
        .unwrap();
    request
        .headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    h.client
        .call(request)
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_token");
    // A user's JWT is not the webhook token.
    let amy = h.client.login("amy").await;
    h.client
        .send("POST", "/v1/alerts", Some(&amy), Some(&body))
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_token");

    for (field, broken) in [
        ("version", {
            let mut p = payload.clone();
            p["version"] = "3".into();
            p
        }),
        ("alerts", {
            let mut p = payload.clone();
            p["alerts"] = json!([]);
            p
        }),
        ("alerts[0].fingerprint", {
            let mut p = payload.clone();
            p["alerts"][0]
                .as_object_mut()
                .unwrap()
                .remove("fingerprint");
            p
        }),
        ("alerts[0].startsAt", {
            let mut p = payload.clone();
            p["alerts"][0]["startsAt"] = "soon".into();
            p
        }),
    ] {
        let body = h
            .alert(&broken)
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_webhook");
        assert_eq!(body["field"], field, "{body}");
    }
    h.client
        .send("POST", "/v1/alerts", Some(WEBHOOK_TOKEN), Some("{not json"))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_webhook");

    assert!(h.registry.alerts_seen(10).await.unwrap().is_empty());
    assert!(h.registry.runs(None, 10).await.unwrap().is_empty());
    let metrics = h.client.metrics().await;
    assert!(
        metrics.contains("vigie_retraining_webhook_refused_total{reason=\"invalid_token\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigie_retraining_webhook_refused_total{reason=\"invalid_payload\"} 5")
    );
}

#[tokio::test]
async fn repeated_alerts_start_one_run_which_promotes_a_better_candidate() {
    let h = Harness::new(Truth::Colour).await;
    let payload = drift_alert("toy", "f1", "2026-11-22T10:00:00.5Z");
    // Alertmanager sends the same alert again (repeat_interval, group changes), even at once.
    let answers = futures_util::future::join_all((0..5).map(|_| h.alert(&payload))).await;
    let mut actions: Vec<String> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, StatusCode::OK, "{}", a.text());
            a.json()["alerts"][0]["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        [
            "duplicate",
            "duplicate",
            "duplicate",
            "duplicate",
            "started"
        ]
    );
    let started = answers
        .iter()
        .map(Answer::json)
        .find(|a| a["alerts"][0]["action"] == "started")
        .unwrap();
    let run_id = started["alerts"][0]["run_id"].as_str().unwrap().to_string();

    let run = h.finished(&run_id).await;
    assert_eq!(run.state, RunState::Promoted, "{run:?}");
    assert_eq!(run.trigger, "alert");
    assert_eq!(run.triggered_by, "alert VigieDataDrift f1");
    assert_eq!(run.production_version, Some(1));
    assert_eq!(run.candidate_version, Some(2));
    let evaluation = &run.detail["evaluation"];
    let (before, after) = (
        evaluation["production"]["roc_auc"].as_f64().unwrap(),
        evaluation["candidate"]["roc_auc"].as_f64().unwrap(),
    );
    assert!(after > before + 0.2, "{evaluation}");
    assert_eq!(evaluation["production"]["rows"], 400, "the fixed holdout");
    let comparison = &evaluation["comparison"];
    assert_eq!(comparison["better"], true);
    assert!(comparison["improvement_lower"].as_f64().unwrap() > 0.0);
    assert_eq!(run.detail["data"]["training_rows"], 600);
    assert_eq!(h.production().await, 2);
    assert_eq!(
        h.registry.version("toy", 1).await.unwrap().status,
        Status::Archived
    );

    // Still firing after the run: the same alert is a duplicate; a new firing of it (a new
    // startsAt) meets the cooldown.
    let again = h.alert(&payload).await.json();
    assert_eq!(again["alerts"][0]["action"], "duplicate");
    let later = drift_alert("toy", "f1", "2026-11-22T11:00:00Z");
    let cooled = h.alert(&later).await.json();
    assert_eq!(cooled["alerts"][0]["action"], "cooldown", "{cooled}");
    assert_eq!(h.registry.runs(Some("toy"), 10).await.unwrap().len(), 1);

    let amy = h.client.login("amy").await;
    let listed = h
        .client
        .send("GET", "/v1/runs?model=toy", Some(&amy), None)
        .await
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["state"], "promoted");
    let shown = h
        .client
        .send("GET", &format!("/v1/runs/{run_id}"), Some(&amy), None)
        .await
        .json();
    assert_eq!(shown["candidate_version"], 2);
    let history = h
        .client
        .send("GET", "/v1/models/toy", Some(&amy), None)
        .await
        .json();
    assert_eq!(history["production_version"], 2);
    assert_eq!(history["promotions"][0]["by"], "trainer");
    let alerts = h
        .client
        .send("GET", "/v1/alerts", Some(&amy), None)
        .await
        .json();
    assert_eq!(alerts.as_array().unwrap().len(), 2, "{alerts}");

    let metrics = h.client.metrics().await;
    for line in [
        "vigie_retraining_runs_total{model=\"toy\",outcome=\"promoted\"} 1",
        "vigie_retraining_runs_started_total{model=\"toy\",trigger=\"alert\"} 1",
        "vigie_retraining_alerts_total{action=\"duplicate\",alertname=\"VigieDataDrift\"} 5",
        "vigie_retraining_alerts_total{action=\"started\",alertname=\"VigieDataDrift\"} 1",
        "vigie_retraining_alerts_total{action=\"cooldown\",alertname=\"VigieDataDrift\"} 1",
        "vigie_model_production_version{model=\"toy\"} 2",
        "vigie_model_promotions_total{action=\"promoted\",by=\"trainer\",model=\"toy\"} 1",
        "vigie_retraining_in_progress{model=\"toy\"} 0",
        "vigie_retraining_run_duration_seconds_count{model=\"toy\",outcome=\"promoted\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    assert!(metrics.contains("vigie_model_holdout_quality{metric=\"roc_auc\",model=\"toy\"}"));
}

#[tokio::test]
async fn a_candidate_no_better_than_production_is_rejected() {
    let h = Harness::new(Truth::Speed).await;
    let root = h.client.login("root").await;
    let started = h
        .client
        .send("POST", "/v1/models/toy/retrain", Some(&root), None)
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.text());
    let run = h.finished(started.json()["id"].as_str().unwrap()).await;
    assert_eq!(run.state, RunState::Rejected, "{run:?}");
    assert_eq!(run.trigger, "manual");
    assert_eq!(run.triggered_by, "admin root");
    assert_eq!(
        run.candidate_version,
        Some(2),
        "the candidate stays registered"
    );
    assert_eq!(run.detail["evaluation"]["comparison"]["better"], false);
    assert!(
        run.detail["verdict"]
            .as_str()
            .unwrap()
            .contains("not shown better")
    );
    assert_eq!(h.production().await, 1);
    assert_eq!(
        h.registry.version("toy", 2).await.unwrap().status,
        Status::Candidate
    );
}

#[tokio::test]
async fn a_failed_training_leaves_production_serving_and_the_run_failed() {
    let h = Harness::new(Truth::Colour).await;
    // A training file the spec refuses.
    std::fs::write(
        h.dir.path().join("models/x_train.csv"),
        "colour,speed\n1,20\n9,30\n",
    )
    .unwrap();
    let root = h.client.login("root").await;
    let started = h
        .client
        .send("POST", "/v1/models/toy/retrain", Some(&root), None)
        .await
        .json();
    let run = h.finished(started["id"].as_str().unwrap()).await;
    assert_eq!(run.state, RunState::Failed, "{run:?}");
    assert!(
        run.error.as_deref().unwrap().contains("x_train.csv"),
        "{:?}",
        run.error
    );
    assert_eq!(run.candidate_version, None);
    assert_eq!(h.production().await, 1);
    assert_eq!(
        h.registry.list().await.unwrap().len(),
        1,
        "no candidate registered"
    );
    assert!(
        h.client
            .metrics()
            .await
            .contains("vigie_retraining_runs_total{model=\"toy\",outcome=\"failed\"} 1")
    );
}

#[tokio::test]
async fn single_flight_holds_and_manual_runs_need_an_admin() {
    let h = Harness::new(Truth::Colour).await;
    // A run in progress (its row, as another trainer process would hold it).
    h.registry
        .start_run(
            "held",
            "toy",
            "manual",
            "admin root",
            Some(1),
            chrono::Utc::now().timestamp_millis(),
        )
        .await
        .unwrap();
    let busy = h
        .alert(&drift_alert("toy", "f9", "2026-11-22T10:00:00Z"))
        .await
        .json();
    assert_eq!(busy["alerts"][0]["action"], "busy");
    assert_eq!(busy["alerts"][0]["run_id"], "held");
    let root = h.client.login("root").await;
    h.client
        .send("POST", "/v1/models/toy/retrain", Some(&root), None)
        .await
        .error(StatusCode::CONFLICT, "run_in_progress");
    let amy = h.client.login("amy").await;
    h.client
        .send("POST", "/v1/models/toy/retrain", Some(&amy), None)
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    h.client
        .send("POST", "/v1/models/toy/retrain", None, None)
        .await
        .error(StatusCode::UNAUTHORIZED, "missing_token");
    h.client
        .send("POST", "/v1/models/nope/retrain", Some(&root), None)
        .await
        .error(StatusCode::NOT_FOUND, "unknown_model");
    assert_eq!(h.registry.runs(None, 10).await.unwrap().len(), 1);

    // Alerts that are not for retraining are recorded and start nothing.
    let mut resolved = drift_alert("toy", "f2", "2026-11-22T10:00:00Z");
    resolved["alerts"][0]["status"] = "resolved".into();
    assert_eq!(
        h.alert(&resolved).await.json()["alerts"][0]["action"],
        "resolved"
    );
    let mut other = drift_alert("toy", "f3", "2026-11-22T10:00:00Z");
    other["alerts"][0]["labels"]["alertname"] = "VigieApiErrors".into();
    assert_eq!(
        h.alert(&other).await.json()["alerts"][0]["action"],
        "ignored"
    );
    let mut no_model = drift_alert("toy", "f4", "2026-11-22T10:00:00Z");
    no_model["alerts"][0]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("model");
    assert_eq!(
        h.alert(&no_model).await.json()["alerts"][0]["action"],
        "ignored"
    );
    let unknown = drift_alert("nope", "f5", "2026-11-22T10:00:00Z");
    assert_eq!(
        h.alert(&unknown).await.json()["alerts"][0]["action"],
        "ignored"
    );
    assert_eq!(h.registry.runs(None, 10).await.unwrap().len(), 1);

    h.client
        .send("GET", "/v1/runs?limit=0", Some(&amy), None)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query");
    h.client
        .send("GET", "/v1/runs?colour=1", Some(&amy), None)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query");
    h.client
        .send("GET", "/v1/runs/nope", Some(&amy), None)
        .await
        .error(StatusCode::NOT_FOUND, "unknown_run");
}

#[tokio::test]
async fn manual_promotion_checks_the_artifact_and_rollback_follows_the_history() {
    let h = Harness::new(Truth::Colour).await;
    let (v2, _) = h.registry.register(toy_model(), "test").await.unwrap();
    let (v3, _) = h.registry.register(toy_model(), "test").await.unwrap();
    let root = h.client.login("root").await;
    let amy = h.client.login("amy").await;

    h.client
        .send("POST", "/v1/models/toy/rollback", Some(&root), None)
        .await
        .error(StatusCode::CONFLICT, "nothing_to_roll_back");
    h.client
        .send(
            "POST",
            "/v1/models/toy/promote",
            Some(&amy),
            Some(r#"{"version": 2}"#),
        )
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    for (body, code) in [
        (r#"{"version": 0}"#, "invalid_version"),
        (r#"{"version": "2"}"#, "invalid_version"),
        (r#"{"version": 2, "force": true}"#, "unknown_field"),
        (r#"[2]"#, "invalid_body"),
    ] {
        h.client
            .send("POST", "/v1/models/toy/promote", Some(&root), Some(body))
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY, code);
    }
    h.client
        .send(
            "POST",
            "/v1/models/toy/promote",
            Some(&root),
            Some(r#"{"version": 9}"#),
        )
        .await
        .error(StatusCode::NOT_FOUND, "unknown_version");

    // A corrupt artifact is never promoted.
    let path = h.registry.artifacts_dir().join(&v3.artifact_path);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    let refused = h
        .client
        .send(
            "POST",
            "/v1/models/toy/promote",
            Some(&root),
            Some(r#"{"version": 3}"#),
        )
        .await
        .error(StatusCode::CONFLICT, "bad_artifact");
    assert!(
        refused["message"].as_str().unwrap().contains("toy@3"),
        "{refused}"
    );
    assert_eq!(h.production().await, 1);

    let promoted = h
        .client
        .send(
            "POST",
            "/v1/models/toy/promote",
            Some(&root),
            Some(&format!("{{\"version\": {}}}", v2.version)),
        )
        .await;
    assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.text());
    assert_eq!(promoted.json()["previous_version"], 1);
    assert_eq!(h.production().await, 2);

    let rolled = h
        .client
        .send("POST", "/v1/models/toy/rollback", Some(&root), None)
        .await;
    assert_eq!(rolled.status, StatusCode::OK, "{}", rolled.text());
    assert_eq!(rolled.json()["version"], 1);
    assert_eq!(h.production().await, 1);
    let history = h.registry.promotions("toy").await.unwrap();
    assert_eq!(history[0].action, "rolled_back");
    assert_eq!(history[0].by, "admin root");
    let metrics = h.client.metrics().await;
    assert!(metrics.contains(
        "vigie_model_promotions_total{action=\"rolled_back\",by=\"admin\",model=\"toy\"} 1"
    ));
    assert!(metrics.contains("vigie_model_production_version{model=\"toy\"} 1"));
}

#[tokio::test]
async fn health_ready_openapi_and_docs_answer() {
    let h = Harness::new(Truth::Colour).await;
    assert_eq!(
        h.client.send("GET", "/health", None, None).await.status,
        StatusCode::OK
    );
    let ready = h.client.send("GET", "/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["production"][0]["version"], 1);
    let doc = h
        .client
        .send("GET", "/openapi.json", None, None)
        .await
        .json();
    assert!(doc["paths"]["/v1/alerts"]["post"].is_object());
    assert_eq!(
        h.client.send("GET", "/docs/", None, None).await.status,
        StatusCode::OK
    );
    h.client
        .send("GET", "/nope", None, None)
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_notification_past_the_cap_keeps_its_drift_alerts_and_counts_the_rest() {
    let h = Harness::new(Truth::Colour).await;
    let mut payload = drift_alert("toy", "drift", "2026-11-22T10:00:00Z");
    let drift = payload["alerts"][0].clone();
    let mut alerts: Vec<Value> = (0..1_200)
        .map(|i| {
            let mut a = drift.clone();
            a["labels"] = json!({"alertname": "HighLatency", "instance": format!("i{i}")});
            a["fingerprint"] = format!("lat{i}").into();
            a
        })
        .collect();
    // The drift alert comes last, past the first 1,000.
    alerts.push(drift);
    payload["alerts"] = alerts.into();
    let started = std::time::Instant::now();
    let a = h.alert(&payload).await;
    let elapsed = started.elapsed();
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let body = a.json();
    assert_eq!(body["skipped"], 201);
    let outcomes = body["alerts"].as_array().unwrap();
    assert_eq!(outcomes.len(), 1_000);
    assert_eq!(outcomes[0]["fingerprint"], "drift");
    assert_eq!(outcomes[0]["action"], "started", "{}", outcomes[0]);
    assert!(outcomes[1..].iter().all(|o| o["action"] == "ignored"));
    // One transaction for the thousand: well under the 24 s one insert per alert took.
    eprintln!("1,201 alerts answered in {elapsed:?}");
    assert_eq!(h.registry.alerts_seen(1_000).await.unwrap().len(), 1_000);
    let metrics = h.client.metrics().await;
    assert!(
        metrics.contains("vigie_retraining_alerts_skipped_total 201"),
        "{metrics}"
    );
    let run = outcomes[0]["run_id"].as_str().unwrap().to_string();
    h.finished(&run).await;
}

#[tokio::test]
async fn the_webhook_checks_its_token_first_and_answers_every_refusal_in_json() {
    let h = Harness::new(Truth::Colour).await;
    // A wrong token with a body that never ends: refused at once, the body unread.
    let never = futures_util::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
    let request = Request::post("/v1/alerts")
        .header(header::AUTHORIZATION, "Bearer not-the-token")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(never))
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), h.client.call(request))
        .await
        .expect("the refusal waited for the body");
    answer.error(StatusCode::UNAUTHORIZED, "invalid_token");

    // Not JSON: 415; past 16 MiB: 413, both as the JSON error body.
    let payload = drift_alert("toy", "f1", "2026-11-22T10:00:00Z").to_string();
    let request = Request::post("/v1/alerts")
        .header(header::AUTHORIZATION, format!("Bearer {WEBHOOK_TOKEN}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(payload))
        .unwrap();
    h.client
        .call(request)
        .await
        .error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let huge = format!("{{\"padding\": \"{}\"}}", "x".repeat(17 * 1024 * 1024));
    h.client
        .send("POST", "/v1/alerts", Some(WEBHOOK_TOKEN), Some(&huge))
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    // Past 1 MiB on another route: JSON too (axum answers it in text itself).
    let big = format!("{{\"version\": \"{}\"}}", "1".repeat(2 * 1024 * 1024));
    let root = h.client.login("root").await;
    h.client
        .send("POST", "/v1/models/toy/promote", Some(&root), Some(&big))
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    // A method a route does not take.
    h.client
        .send("DELETE", "/v1/runs", Some(&root), None)
        .await
        .error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn the_series_a_healthy_trainer_never_moves_exist_at_zero() {
    let h = Harness::new(Truth::Colour).await;
    h.state.poll().await;
    let metrics = h.client.metrics().await;
    for line in [
        "vigie_retraining_alerts_total{action=\"started\",alertname=\"VigieDataDrift\"} 0",
        "vigie_retraining_alerts_total{action=\"duplicate\",alertname=\"VigieDataDrift\"} 0",
        "vigie_retraining_in_progress{model=\"toy\"} 0",
        "vigie_retraining_runs_total{model=\"toy\",outcome=\"failed\"} 0",
        "vigie_model_promotions_total{action=\"rolled_back\",by=\"admin\",model=\"toy\"} 0",
        "vigie_events_dropped_total{reason=\"queue_full\",topic=\"vigie.models\"} 0",
        "vigie_events_delivery_failures_total{reason=\"other\",topic=\"vigie.models\"} 0",
        "vigie_retraining_alerts_skipped_total 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

/// Writes the toy regression spec (`toy-time`) and its data: the time grows with the distance,
/// and the south station adds a minute; the hand-made production model knows only two steps.
fn write_regression_data(dir: &Path) {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    let stations = ["north", "south", "east"];
    for (prefix, rows) in [("train", 900), ("test", 400)] {
        let (mut x, mut y) = (
            String::from("station,distance\n"),
            String::from("seconds\n"),
        );
        for _ in 0..rows {
            let station = stations[(next() % 3) as usize];
            let distance = (next() % 500) as f64 / 10.0;
            let noise = (next() % 41) as f64 - 20.0;
            let extra = if station == "south" { 60.0 } else { 0.0 };
            let seconds = 120.0 + 15.0 * distance + extra + noise;
            x.push_str(&format!("{station},{distance}\n"));
            y.push_str(&format!("{seconds}\n"));
        }
        std::fs::write(dir.join(format!("xt_{prefix}.csv")), x).unwrap();
        std::fs::write(dir.join(format!("yt_{prefix}.csv")), y).unwrap();
    }
    let spec = TOY_REGRESSION_SPEC
        .replace(
            "train_features = \"x.csv\"",
            "train_features = \"xt_train.csv\"",
        )
        .replace(
            "train_target = \"y.csv\"",
            "train_target = \"yt_train.csv\"",
        )
        .replace(
            "holdout_features = \"x.csv\"",
            "holdout_features = \"xt_test.csv\"",
        )
        .replace(
            "holdout_target = \"y.csv\"",
            "holdout_target = \"yt_test.csv\"",
        )
        .replace(
            "[algorithm]",
            &format!("{RETRAINING}\n[algorithm]\niterations = 100"),
        );
    std::fs::write(dir.join("toy-time.toml"), spec).unwrap();
}

#[tokio::test]
async fn a_regression_retrains_and_promotes_on_mae() {
    let h = Harness::new(Truth::Speed).await;
    write_regression_data(&h.dir.path().join("models"));
    h.registry
        .register(toy_regression_model(), "test")
        .await
        .unwrap();
    let root = h.client.login("root").await;
    let started = h
        .client
        .send("POST", "/v1/models/toy-time/retrain", Some(&root), None)
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.text());
    let run = h.finished(started.json()["id"].as_str().unwrap()).await;
    assert_eq!(run.state, RunState::Promoted, "{run:?}");
    let evaluation = &run.detail["evaluation"];
    assert_eq!(evaluation["comparison"]["metric"], "mae");
    let (production, candidate) = (
        evaluation["production"]["mae"].as_f64().unwrap(),
        evaluation["candidate"]["mae"].as_f64().unwrap(),
    );
    assert!(
        candidate < production,
        "MAE {candidate} against {production}"
    );
    // Lower is better: the improvement is production minus candidate, and positive.
    let improvement = evaluation["comparison"]["improvement"].as_f64().unwrap();
    assert!((improvement - (production - candidate)).abs() < 1e-9);
    assert!(
        evaluation["candidate"]["interval_coverage"]
            .as_f64()
            .unwrap()
            > 0.8
    );
    let production = h.registry.production_of("toy-time").await.unwrap().unwrap();
    assert_eq!(production.version, 2);
    let loaded = h.registry.load(&production).unwrap();
    let regression = loaded.regression.as_ref().unwrap();
    // The south station's extra minute is learned from its feature, not left to the flag.
    assert!(
        regression
            .underestimation
            .as_ref()
            .unwrap()
            .flagged()
            .count()
            <= 1
    );

    h.state.poll().await;
    let metrics = h.client.get("/metrics", None).await.text();
    for line in [
        "vigie_retraining_runs_total{model=\"toy-time\",outcome=\"promoted\"} 1",
        "vigie_model_holdout_quality{metric=\"mae\",model=\"toy-time\"}",
        "vigie_model_holdout_quality{metric=\"interval_coverage\",model=\"toy-time\"}",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
}

/// The trainer's pages: the models and runs, an admin's retrain form (to the run's page, with
/// its timeline and bootstrap interval once it ends), promotion and rollback through the API's
/// handlers (their refusals on the page), a user's read-only view, forged forms refused.
#[tokio::test]
async fn the_pages_show_models_and_runs_and_act_through_the_api_handlers() {
    let h = Harness::new(Truth::Colour).await;
    let answer = h.client.page("/", None).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let root = h.client.sign_in("root").await;
    let html = h.client.page("/", Some(&root)).await.text();
    for part in [
        "id=\"model-toy\"",
        "version 1 in production",
        "Retrain now",
        "No promotion to roll back.",
        "No run yet.",
    ] {
        assert!(html.contains(part), "{part}: {html}");
    }
    let token = testing::form_token(&html);
    let forged = h
        .client
        .form("/models/toy/retrain", &root, "form_token=forged", None)
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(h.registry.runs(None, 10).await.unwrap().is_empty());
    let answer = h
        .client
        .form(
            "/models/toy/retrain",
            &root,
            &format!("form_token={token}"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text());
    let location = answer.headers[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    let id = location.strip_prefix("/runs/").unwrap();
    let run = h.finished(id).await;
    assert_eq!(run.state, RunState::Promoted, "{run:?}");
    assert_eq!(run.triggered_by, "admin root");
    let page = h.client.page(&location, Some(&root)).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    for part in [
        "<li class=\"steady\">triggered: ",
        "training: ",
        "evaluated: ",
        "promoted: ",
        "bootstrap interval [",
        "shown better",
        "<svg",
    ] {
        assert!(html.contains(part), "{part}: {html}");
    }
    assert_eq!(
        h.client.page("/runs/nope", Some(&root)).await.status,
        StatusCode::NOT_FOUND
    );

    // Version 2 is production; promote 1 again by the form, then roll back to 2.
    let html = h.client.page("/", Some(&root)).await.text();
    assert!(html.contains("version 2 in production"), "{html}");
    assert!(html.contains("Roll back to version 1"), "{html}");
    let token = testing::form_token(&html);
    let answer = h
        .client
        .form(
            "/models/toy/promote",
            &root,
            &format!("version=9&form_token={token}"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.text().contains("toy has no version 9"));
    let answer = h
        .client
        .form(
            "/models/toy/promote",
            &root,
            &format!("version=one&form_token={token}"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        answer
            .text()
            .contains("version: version must be a positive integer")
    );
    let answer = h
        .client
        .form(
            "/models/toy/promote",
            &root,
            &format!("version=1&form_token={token}"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text());
    assert_eq!(h.production().await, 1);
    let answer = h
        .client
        .form(
            "/models/toy/rollback",
            &root,
            &format!("form_token={token}"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text());
    assert_eq!(h.production().await, 2);

    // A user reads the same pages, and cannot act.
    let amy = h.client.sign_in("amy").await;
    let html = h.client.page("/", Some(&amy)).await.text();
    assert!(html.contains("Read only"), "{html}");
    assert!(!html.contains("Retrain now"));
    let token = testing::form_token(&html);
    let answer = h
        .client
        .form(
            "/models/toy/rollback",
            &amy,
            &format!("form_token={token}"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(h.production().await, 2);
    let cross = h
        .client
        .form(
            "/models/toy/retrain",
            &root,
            "form_token=x",
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
}
