//! The drift service's router, called without sockets (tower's `oneshot`), on a real SQLite
//! registry, with events applied to the state directly: auth, noise injection and its every
//! bad input, the drift state and report, readiness, metrics, reference switching.

#![allow(clippy::unwrap_used)] // Test helpers: a failed setup should panic loudly.

use axum::http::StatusCode;
use serde_json::json;
use vigie_api::testing::{self, Client};
use vigie_core::testing::{toy_model, toy_model_with_leaves};
use vigie_drift_service::{AppState, Config, Inner, Metrics, router};
use vigie_registry::Registry;
use vigie_stream::event::{
    AnswerRef, EstimateRef, Features, OutcomeRef, PredictionEventRef, Value as Cell,
};

struct Harness {
    _dir: tempfile::TempDir,
    registry: Registry,
    state: AppState,
    client: Client,
    offset: i64,
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = testing::registry(dir.path()).await;
        registry.register(toy_model(), "test").await.unwrap();
        let base = testing::base(&registry).await;
        let metrics = Metrics::register(&base.metrics.registry).unwrap();
        let state = Inner::start(base, Config::default(), metrics, None, None).await;
        Harness {
            _dir: dir,
            registry,
            client: Client::new(router(state.clone())),
            state,
            offset: 0,
        }
    }

    /// Applies `n` toy events (colour 1 or 2 in turn, speed `speed`) to the state.
    fn feed(&mut self, n: usize, speed: f64) {
        let hash = self.spec_hash();
        self.feed_with(n, speed, &hash);
    }

    /// [`Harness::feed`] with events of the spec whose hash is `hash`.
    fn feed_with(&mut self, n: usize, speed: f64, hash: &str) {
        let answer = OutcomeRef {
            class: 0,
            label: "no",
            probability: 0.2,
            threshold: 0.5,
        };
        for i in 0..n {
            let values = [Cell::Number(1.0 + (i % 2) as f64), Cell::Number(speed)];
            self.apply("toy", hash, ["colour", "speed"], &values, answer.into());
        }
    }

    /// Applies one event of `model` (its spec's hash, feature names and values, its answer)
    /// to the state, at the next offset of partition 0.
    fn apply(
        &mut self,
        model: &str,
        hash: &str,
        names: [&str; 2],
        values: &[Cell<'_>],
        answer: AnswerRef<'_>,
    ) {
        let names = names.map(String::from);
        let ts = chrono::Utc::now();
        let payload = PredictionEventRef {
            event_id: "e",
            request_id: "r",
            ts: &ts,
            model,
            model_version: 1,
            schema_hash: hash,
            features: Features {
                names: &names,
                values,
            },
            prediction: answer,
            latency_us: 1,
            source: vigie_stream::Source::Api,
            row: None,
        }
        .to_json();
        let mut state = self.state.state.lock().unwrap();
        state.apply(0, self.offset, &payload, ts.timestamp_millis());
        self.offset += 1;
    }

    fn spec_hash(&self) -> String {
        let state = self.state.state.lock().unwrap();
        state.models["toy"].reference.spec_hash.clone()
    }

    /// Applies `n` events of the toy regression (station north, distance 5) whose estimates
    /// come from `estimate(i)`.
    fn feed_estimates(&mut self, n: usize, estimate: impl Fn(usize) -> f64) {
        let hash = {
            let state = self.state.state.lock().unwrap();
            state.models["toy-time"].reference.spec_hash.clone()
        };
        for i in 0..n {
            let value = estimate(i);
            let answer = EstimateRef {
                value,
                lower: value - 60.0,
                upper: value + 120.0,
                underestimation_risk: false,
                group: Some("north"),
            };
            let values = [Cell::Text("north"), Cell::Number(5.0)];
            self.apply(
                "toy-time",
                &hash,
                ["station", "distance"],
                &values,
                answer.into(),
            );
        }
    }
}

#[tokio::test]
async fn the_drift_state_and_report_need_a_token_and_show_the_live_window() {
    let mut h = Harness::new().await;
    assert_eq!(
        h.client.send("GET", "/v1/drift", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.client
            .send("GET", "/v1/drift/report", Some("forged"), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let amy = h.client.login("amy").await;

    // Before enough events, the window is shown but not scored.
    h.feed(100, 20.0);
    h.state.score();
    let state = h
        .client
        .send("GET", "/v1/drift", Some(&amy), None)
        .await
        .json();
    let toy = &state["models"][0];
    assert_eq!(toy["model"], "toy");
    assert_eq!(toy["reference"]["version"], 1);
    assert_eq!(toy["events"], 100);
    assert_eq!(toy["windows"]["sliding_events"], 100);
    assert_eq!(toy["sliding"]["report"]["scored"], false);
    assert_eq!(state["consumer"]["positions"]["0"], 100);
    assert!(!h.client.metrics().await.contains("ml_data_drift_score{"));

    // The toy reference: colours 1, 2, 1; speeds 20, 60, missing. A window of colours 1 and 2
    // in turn at speed 20 drifts on both features (TVD 1/6 on colour; speed correlation low).
    h.feed(600, 20.0);
    h.state.score();
    let state = h
        .client
        .send("GET", "/v1/drift?model=toy", Some(&amy), None)
        .await
        .json();
    let report = &state["models"][0]["sliding"]["report"];
    assert_eq!(report["scored"], true, "{report}");
    assert_eq!(report["current_rows"], 700);
    let features: Vec<&str> = report["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(features, ["colour", "speed"]);
    let score = report["score"].as_f64().unwrap();
    let metrics = h.client.metrics().await;
    assert!(
        metrics.contains(&format!("ml_data_drift_score{{model=\"toy\"}} {score}\n")),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigie_drift_events_total{model=\"toy\"} 700"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigie_drift_alert_threshold{model=\"toy\"} 0.5"),
        "{metrics}"
    );

    let page = h
        .client
        .send("GET", "/v1/drift/report", Some(&amy), None)
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..100]);
    assert!(html.contains("toy v1: the 700 events of the last 300 s"));
    assert!(!html.contains("<script"));

    h.client
        .send("GET", "/v1/drift?model=nope", Some(&amy), None)
        .await
        .error(StatusCode::NOT_FOUND, "unknown_model");
    h.client
        .send("GET", "/v1/drift/report?model=nope", Some(&amy), None)
        .await
        .error(StatusCode::NOT_FOUND, "unknown_model");
}

#[tokio::test]
async fn noise_is_injected_shown_and_reset_by_admins_only() {
    let mut h = Harness::new().await;
    let (root, amy) = (h.client.login("root").await, h.client.login("amy").await);
    let body = r#"{"mode": "category_swap", "features": ["colour"], "rate": 1.0, "seed": 4, "ttl_seconds": 60}"#;
    assert_eq!(
        h.client
            .send("POST", "/config/noise", None, Some(body))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    h.client
        .send("POST", "/config/noise", Some(&amy), Some(body))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    h.client
        .send("GET", "/config/noise", Some(&amy), None)
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");

    let started = h
        .client
        .send("POST", "/config/noise", Some(&root), Some(body))
        .await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.text());
    let view = &started.json()["noise"];
    assert_eq!(view["model"], "toy");
    assert_eq!(view["mode"], "category_swap");
    assert_eq!(view["by"], "root");
    assert_eq!(started.json()["replaced"], false);

    // Every colour is swapped on the way in: 1 -> 2 and 2 -> 1 (no code maps to itself).
    h.feed(10, 20.0);
    let shown = h
        .client
        .send("GET", "/config/noise", Some(&root), None)
        .await
        .json();
    assert_eq!(shown["active"][0]["events_seen"], 10);
    assert_eq!(shown["active"][0]["events_noised"], 10);
    h.state.score();
    let metrics = h.client.metrics().await;
    assert!(
        metrics.contains("vigie_drift_noise_active{model=\"toy\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigie_drift_events_noised_total{model=\"toy\"} 10"),
        "{metrics}"
    );
    let state = h
        .client
        .send("GET", "/v1/drift", Some(&amy), None)
        .await
        .json();
    assert_eq!(state["models"][0]["noise"]["events_noised"], 10);

    // A second POST replaces the first.
    let again = h
        .client
        .send(
            "POST",
            "/config/noise",
            Some(&root),
            Some(r#"{"mode": "missing", "rate": 0.5}"#),
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text());
    assert_eq!(again.json()["replaced"], true);

    let reset = h
        .client
        .send("DELETE", "/config/noise", Some(&root), None)
        .await;
    assert_eq!(reset.status, StatusCode::OK);
    assert_eq!(reset.json()["removed"][0]["mode"], "missing");
    let shown = h
        .client
        .send("GET", "/config/noise", Some(&root), None)
        .await
        .json();
    assert_eq!(shown["active"], json!([]));
    h.feed(5, 20.0);
    let metrics = h.client.metrics().await;
    assert!(
        metrics.contains("vigie_drift_noise_active{model=\"toy\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigie_drift_events_noised_total{model=\"toy\"} 10"),
        "{metrics}"
    );
    // Deleting again is harmless.
    let reset = h
        .client
        .send("DELETE", "/config/noise?model=toy", Some(&root), None)
        .await;
    assert_eq!(reset.json()["removed"], json!([]));
}

#[tokio::test]
async fn every_bad_noise_request_names_its_field() {
    let h = Harness::new().await;
    let root = h.client.login("root").await;
    let cases: &[(&str, StatusCode, &str, Option<&str>)] = &[
        (
            "not json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            None,
        ),
        (
            "[1]",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            None,
        ),
        (
            r#"{"rate": 1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("mode"),
        ),
        (
            r#"{"mode": "gaussian", "rate": 1, "scale": 1e300}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("scale"),
        ),
        (
            r#"{"mode": "missing", "rate": 1, "features": ["speed", "speed"]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("features"),
        ),
        (
            r#"{"noise": 0.8}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("noise"),
        ),
        (
            r#"{"mode": "fire", "rate": 1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("mode"),
        ),
        (
            r#"{"mode": "missing"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("rate"),
        ),
        (
            r#"{"mode": "missing", "rate": "all"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("rate"),
        ),
        (
            r#"{"mode": "missing", "rate": 0}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("rate"),
        ),
        (
            r#"{"mode": "missing", "rate": 1.5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("rate"),
        ),
        (
            r#"{"mode": "missing", "rate": 1, "colour": 3}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("colour"),
        ),
        (
            r#"{"mode": "missing", "rate": 1, "features": "speed"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("features"),
        ),
        (
            r#"{"mode": "missing", "rate": 1, "features": ["altitude"]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("features"),
        ),
        (
            r#"{"mode": "gaussian", "rate": 1, "features": ["colour"]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("features"),
        ),
        (
            r#"{"mode": "gaussian", "rate": 1, "scale": -2}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("scale"),
        ),
        (
            r#"{"mode": "missing", "rate": 1, "seed": -1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("seed"),
        ),
        (
            r#"{"mode": "missing", "rate": 1, "ttl_seconds": 0}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("ttl_seconds"),
        ),
        (
            r#"{"mode": "missing", "rate": 1, "ttl_seconds": 999999999}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("ttl_seconds"),
        ),
        (
            r#"{"mode": "missing", "rate": 1, "model": 3}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_noise",
            Some("model"),
        ),
        (
            r#"{"mode": "missing", "rate": 1, "model": "nope"}"#,
            StatusCode::NOT_FOUND,
            "unknown_model",
            Some("model"),
        ),
    ];
    for (body, status, code, field) in cases {
        let answer = h
            .client
            .send("POST", "/config/noise", Some(&root), Some(body))
            .await;
        let error = answer.error(*status, code);
        assert_eq!(error["field"].as_str(), *field, "{body}: {error}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    let shown = h
        .client
        .send("GET", "/config/noise", Some(&root), None)
        .await
        .json();
    assert_eq!(
        shown["active"],
        json!([]),
        "no bad request started anything"
    );
}

#[tokio::test]
async fn a_promotion_switches_the_reference_and_restarts_the_windows() {
    let mut h = Harness::new().await;
    let root = h.client.login("root").await;
    h.feed(600, 20.0);
    let noise = r#"{"mode": "missing", "features": ["speed"], "rate": 0.5, "ttl_seconds": 600}"#;
    assert_eq!(
        h.client
            .send("POST", "/config/noise", Some(&root), Some(noise))
            .await
            .status,
        StatusCode::CREATED
    );
    let ready = h.client.send("GET", "/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["models"][0]["reference_version"], 1);

    let (v2, _) = h
        .registry
        .register(toy_model_with_leaves(0.1, 0.9), "test")
        .await
        .unwrap();
    h.registry.promote("toy", v2.version, "test").await.unwrap();
    h.state.poll().await;
    let ready = h.client.send("GET", "/ready", None, None).await.json();
    assert_eq!(ready["models"][0]["reference_version"], 2);
    let state = h
        .client
        .send("GET", "/v1/drift", Some(&root), None)
        .await
        .json();
    assert_eq!(
        state["models"][0]["events"], 0,
        "windows binned for v1 are not reused"
    );
    assert_eq!(
        state["models"][0]["noise"]["mode"], "missing",
        "the noise carries over"
    );
    let metrics = h.client.metrics().await;
    assert!(
        metrics.contains("vigie_drift_reference_info{model=\"toy\",version=\"2\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("vigie_drift_reference_info{model=\"toy\",version=\"1\"}"));
    assert!(metrics.contains("vigie_drift_reference_switches_total{model=\"toy\"} 1"));
}

#[tokio::test]
async fn the_operations_routes_answer() {
    let h = Harness::new().await;
    assert_eq!(
        h.client.send("GET", "/health", None, None).await.status,
        StatusCode::OK
    );
    let doc = h
        .client
        .send("GET", "/openapi.json", None, None)
        .await
        .json();
    assert!(doc["paths"]["/config/noise"]["post"].is_object());
    let docs = h.client.send("GET", "/docs/", None, None).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.text().contains("swagger"), "{}", docs.text());
    h.client
        .send("GET", "/nowhere", None, None)
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    let metrics = h.client.metrics().await;
    assert!(
        metrics.contains("http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_service_that_counts_none_of_the_events_it_reads_is_not_ready() {
    let mut h = Harness::new().await;
    h.feed(10, 20.0);
    assert_eq!(h.client.get("/ready", None).await.status, StatusCode::OK);
    // Events of another spec of the model (say, a producer that was not upgraded): read, not
    // counted. Past 100 in a row the service says so.
    h.feed_with(99, 20.0, "another-spec");
    assert_eq!(h.client.get("/ready", None).await.status, StatusCode::OK);
    h.feed_with(1, 20.0, "another-spec");
    let ready = h.client.get("/ready", None).await;
    let body = ready.json();
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        body["reason"],
        "the last 100 events read were not counted (other_schema: 100); vigie_drift_events_skipped_total has the reasons"
    );
    assert_eq!(body["uncounted_in_a_row"]["events"], 100);
    // One counted event and it is ready again.
    h.feed(1, 20.0);
    assert_eq!(h.client.get("/ready", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn absurd_noise_requests_are_refused_with_the_request_to_send_instead() {
    let h = Harness::new().await;
    let root = h.client.login("root").await;
    let many: Vec<String> = (0..100_000).map(|i| format!("f{i}")).collect();
    let body = json!({"mode": "missing", "rate": 1, "features": many}).to_string();
    let a = h
        .client
        .send("POST", "/config/noise", Some(&root), Some(&body))
        .await;
    let e = a.error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_noise");
    assert_eq!(e["field"], "features");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("100000 features named; the model has 2"),
        "{e}"
    );
    // The seed project's {"noise": 0.8}: the message shows the request that says it.
    let a = h
        .client
        .send(
            "POST",
            "/config/noise",
            Some(&root),
            Some(r#"{"noise": 0.8}"#),
        )
        .await;
    let e = a.error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_noise");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains(r#"{"mode": "gaussian", "rate": 0.8, "scale": 1}"#),
        "{e}"
    );
}

/// Scores now and returns the regression's answers report (`/v1/drift`).
async fn answers(h: &Harness, token: &str) -> serde_json::Value {
    h.state.score();
    let state = h
        .client
        .send("GET", "/v1/drift?model=toy-time", Some(token), None)
        .await
        .json();
    state["models"][0]["sliding"]["predictions"].clone()
}

#[tokio::test]
async fn a_classification_and_a_regression_are_watched_side_by_side() {
    let mut h = Harness::new().await;
    h.registry
        .register(vigie_core::testing::toy_regression_model(), "test")
        .await
        .unwrap();
    h.state.poll().await;
    let amy = h.client.login("amy").await;
    let ready = h.client.send("GET", "/ready", None, None).await.json();
    let watched: Vec<&str> = ready["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(watched, ["toy", "toy-time"]);
    // Without a model, the report page links to each model's report.
    let index = h
        .client
        .send("GET", "/v1/drift/report", Some(&amy), None)
        .await;
    assert_eq!(index.status, StatusCode::OK);
    let html = index.text();
    for model in ["toy", "toy-time"] {
        assert!(html.contains(&format!("href=\"?model={model}\"")), "{html}");
    }
    let report = h
        .client
        .send("GET", "/v1/drift/report?model=toy-time", Some(&amy), None)
        .await;
    assert_eq!(report.status, StatusCode::OK);
    assert!(report.text().contains("toy-time v1"));
    // A noise injection must name its model now.
    let root = h.client.login("root").await;
    let noise = r#"{"mode": "missing", "rate": 0.5}"#;
    h.client
        .send("POST", "/config/noise", Some(&root), Some(noise))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "model_required");

    // The regression's answers: spread as on its validation slice (250 to 650 s), then all
    // at 300 s. Below the minimum sample size nothing is published.
    h.feed_estimates(100, |i| 250.0 + (i * 4 % 400) as f64);
    assert_eq!(answers(&h, &amy).await["scored"], false);
    assert!(
        !h.client
            .metrics()
            .await
            .contains("vigie_drift_prediction_score{")
    );
    h.feed_estimates(900, |i| 250.0 + (i * 4 % 400) as f64);
    let report = answers(&h, &amy).await;
    assert_eq!(report["scored"], true, "{report}");
    assert_eq!(report["features"][0]["name"], "prediction");
    assert_eq!(report["features"][0]["drifted"], false, "{report}");
    let metrics = h.client.metrics().await;
    assert!(
        metrics.contains("vigie_drift_prediction_drifted{model=\"toy-time\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("vigie_drift_prediction_score{model=\"toy-time\",statistic=\"correlation\"}")
    );
    h.feed_estimates(1_000, |_| 300.0);
    let report = answers(&h, &amy).await;
    assert_eq!(report["features"][0]["drifted"], true, "{report}");
    assert!(
        h.client
            .metrics()
            .await
            .contains("vigie_drift_prediction_drifted{model=\"toy-time\"} 1")
    );
    // The classification's artifact has no answers' reference: no such series for it.
    assert!(
        !h.client
            .metrics()
            .await
            .contains("vigie_drift_prediction_drifted{model=\"toy\"}")
    );
}

#[tokio::test]
async fn the_estimated_quality_sits_beside_the_holdout_figures_on_the_api_the_report_and_the_metrics()
 {
    let mut h = Harness::new().await;
    let amy = h.client.login("amy").await;
    // 600 answers of probability 0.2, class 0: expected accuracy 0.8, one positive in five.
    h.feed(600, 50.0);
    h.state.score();
    let state = h
        .client
        .send("GET", "/v1/drift?model=toy", Some(&amy), None)
        .await
        .json();
    let quality = &state["models"][0]["quality"];
    let estimated = &quality["estimated"];
    assert_eq!(estimated["rows"], 600, "{quality}");
    let accuracy = estimated["accuracy"]["value"].as_f64().unwrap();
    assert!((accuracy - 0.8).abs() < 0.001, "{estimated}");
    let (lower, upper) = (
        estimated["accuracy"]["lower"].as_f64().unwrap(),
        estimated["accuracy"]["upper"].as_f64().unwrap(),
    );
    // sqrt(0.16 / 600) = 0.0163: the 95% band is 0.032 each side.
    assert!((accuracy - lower - 0.032).abs() < 0.001, "{estimated}");
    assert!((upper - accuracy - 0.032).abs() < 0.001, "{estimated}");
    assert_eq!(
        estimated["f1"]["value"], 0.0,
        "no answer of the positive class"
    );
    assert!(
        quality["targets"]["holdout"]["roc_auc"].is_number(),
        "{quality}"
    );
    assert_eq!(quality["targets"]["tolerance"]["f1"], 0.05, "{quality}");
    assert_eq!(quality["targets"]["min_labels"], 200, "{quality}");
    let periods = quality["periods"].as_array().unwrap();
    assert_eq!(
        periods
            .iter()
            .map(|p| p["answers"].as_u64().unwrap())
            .sum::<u64>(),
        600
    );
    assert_eq!(quality["labelled_share"], 0.0);

    let metrics = h.client.metrics().await;
    for line in [
        "vigie_quality_estimated{metric=\"accuracy\",model=\"toy\"}",
        "vigie_quality_estimated_lower{metric=\"f1\",model=\"toy\"} 0",
        "vigie_quality_estimated_upper{metric=\"roc_auc\",model=\"toy\"}",
        "vigie_quality_holdout{metric=\"roc_auc\",model=\"toy\"}",
        "vigie_quality_tolerance{metric=\"f1\",model=\"toy\"} 0.05",
        "vigie_quality_min_labels{model=\"toy\"} 200",
        "vigie_quality_labelled_share{model=\"toy\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    let report = h
        .client
        .send("GET", "/v1/drift/report?model=toy", Some(&amy), None)
        .await
        .text();
    assert!(report.contains("<section id=\"quality\">"), "{report}");
    // 0.2 stands for its bin, [0.200, 0.201): 0.7995 shown to three places.
    assert!(
        report.contains("<td>accuracy</td><td>0.799</td>"),
        "{report}"
    );
}

/// The pages: a browser without a session goes to the sign-in page and comes back; a wrong
/// password is said on the page; the session cookie opens the overview and the report (not the
/// API's writes); the overview's noise form goes through `/config/noise`'s checks, refuses a
/// form without its token or from another site, and shows its mistakes on the page; a user
/// sees the same pages read-only; a tampered or expired cookie goes back to the sign-in page.
#[tokio::test]
async fn the_pages_sign_in_show_the_overview_and_guard_their_forms() {
    use axum::http::header;
    let mut h = Harness::new().await;
    let root_page = h.client.page("/", None).await;
    assert_eq!(root_page.status, StatusCode::SEE_OTHER);
    assert_eq!(root_page.headers[header::LOCATION], "/sign-in?next=/");
    let report = h.client.page("/v1/drift/report?model=toy", None).await;
    assert_eq!(report.status, StatusCode::SEE_OTHER);
    assert_eq!(
        report.headers[header::LOCATION],
        "/sign-in?next=/v1/drift/report%3Fmodel%3Dtoy"
    );
    let sign_in = h.client.page("/sign-in?next=/", None).await;
    assert_eq!(sign_in.status, StatusCode::OK);
    let form = sign_in.text();
    assert!(form.contains("<label for=\"password\">"), "{form}");
    assert!(
        !form.contains("http://") && !form.contains("https://"),
        "{form}"
    );

    let wrong = h
        .client
        .post(
            "/sign-in",
            None,
            "application/x-www-form-urlencoded",
            "username=root&password=not-it&next=/",
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text().contains("Wrong user name or password."));
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
    let answer = h
        .client
        .post(
            "/sign-in",
            None,
            "application/x-www-form-urlencoded",
            "username=root&password=root-password&next=//evil.example/",
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(
        answer.headers[header::LOCATION],
        "/",
        "no leaving the service"
    );
    let set = answer.headers[header::SET_COOKIE].to_str().unwrap();
    for part in [
        "vigie_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=600",
    ] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let root = h.client.sign_in("root").await;

    // The overview, once traffic is scored.
    h.feed(700, 20.0);
    h.state.score();
    let page = h.client.page("/", Some(&root)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.headers[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    assert!(
        page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let html = page.text();
    for part in [
        "id=\"model-toy\"",
        "version 1 in production",
        "Drift score over time",
        "<svg",
        "id=\"history-toy\"",
        "href=\"/features/toy/colour\"",
        "No noise injected.",
        "No retraining run yet.",
        "Inject noise",
        "root (admin)",
    ] {
        assert!(html.contains(part), "{part}: {html}");
    }
    let report = h
        .client
        .page("/v1/drift/report?model=toy", Some(&root))
        .await;
    assert_eq!(report.status, StatusCode::OK);
    assert!(report.text().contains("toy v1"));
    let feature = h.client.page("/features/toy/speed", Some(&root)).await;
    assert_eq!(feature.status, StatusCode::OK);
    assert!(feature.text().contains("Its statistic over time"));
    assert_eq!(
        h.client
            .page("/features/toy/nope", Some(&root))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The cookie reads; it does not write through the API.
    let request = axum::http::Request::post("/config/noise")
        .header(header::COOKIE, &root)
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(r#"{"mode": "missing", "rate": 1}"#))
        .unwrap();
    h.client
        .call(request)
        .await
        .error(StatusCode::UNAUTHORIZED, "missing_token");

    // The noise form: its token and origin are checked first.
    let token = testing::form_token(&html);
    let noise = format!(
        "model=toy&mode=missing&features=speed&rate=1&seed=3&ttl_seconds=60&form_token={token}"
    );
    let forged = noise.replace(&token, "forged");
    let refused = h.client.form("/overview/noise", &root, &forged, None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused
            .text()
            .contains("the form&#39;s token is not this session&#39;s")
    );
    let cross = h
        .client
        .form(
            "/overview/noise",
            &root,
            &noise,
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert!(cross.text().contains("another site"));
    // Absurd values: the API's message, on the page, with the form as sent.
    let absurd = noise.replace("rate=1", "rate=5");
    let answer = h.client.form("/overview/noise", &root, &absurd, None).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    let text = answer.text();
    assert!(text.contains("role=\"alert\">rate: "), "{text}");
    assert!(
        text.contains("name=\"rate\" inputmode=\"decimal\" value=\"5\""),
        "{text}"
    );
    let answer = h
        .client
        .form(
            "/overview/noise",
            &root,
            &noise.replace("ttl_seconds=60", "ttl_seconds=ten"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer.text().contains("ttl_seconds: "));
    assert!(!lock_noise(&h), "nothing injected by refused forms");
    // The right form: injected, and said so on the overview.
    let answer = h.client.form("/overview/noise", &root, &noise, None).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text());
    assert_eq!(
        answer.headers[header::LOCATION],
        "/?done=noise_started#model-toy"
    );
    assert!(lock_noise(&h));
    let html = h
        .client
        .page("/?done=noise_started", Some(&root))
        .await
        .text();
    assert!(html.contains("Noise injection started"), "{html}");
    assert!(
        html.contains("Noise injected: missing, 100% of events, features speed, by root"),
        "{html}"
    );
    assert!(html.contains("Stop the noise injection"));

    // A user: the same pages, read-only; a forged admin action is refused.
    let amy = h.client.sign_in("amy").await;
    let html = h.client.page("/", Some(&amy)).await.text();
    assert!(html.contains("Read only: an admin starts and stops noise injections."));
    assert!(!html.contains("Inject noise<"), "{html}");
    let token = testing::form_token(&html);
    let answer = h
        .client
        .form(
            "/overview/noise/stop",
            &amy,
            &format!("model=toy&form_token={token}"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(lock_noise(&h));
    let token = testing::form_token(&h.client.page("/", Some(&root)).await.text());
    let answer = h
        .client
        .form(
            "/overview/noise/stop",
            &root,
            &format!("model=toy&form_token={token}"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert!(!lock_noise(&h));

    // A tampered cookie, an expired one: back to the sign-in page, saying why.
    let tampered = format!("{root}x");
    let answer = h.client.page("/", Some(&tampered)).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(
        answer.headers[header::LOCATION],
        "/sign-in?next=/&why=invalid"
    );
    // Left as it is (another service of the host may read it); the next sign-in replaces it.
    assert!(answer.headers.get(header::SET_COOKIE).is_none());
    // A form's route answers only its POST: the sign-in comes back to the overview.
    let answer = h
        .client
        .form("/overview/noise", &tampered, "model=toy", None)
        .await;
    assert_eq!(
        answer.headers[header::LOCATION],
        "/sign-in?next=/&why=invalid"
    );
    let now = chrono::Utc::now().timestamp();
    let claims = vigie_api::auth::Claims {
        sub: "root".into(),
        role: vigie_registry::Role::Admin,
        iat: now - 700,
        exp: now - 100,
        iss: "vigie".into(),
    };
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(testing::SECRET),
    )
    .unwrap();
    let answer = h
        .client
        .page(
            "/features/toy/speed",
            Some(&format!("vigie_session={expired}")),
        )
        .await;
    assert_eq!(
        answer.headers[header::LOCATION],
        "/sign-in?next=/features/toy/speed&why=expired"
    );
    let page = h
        .client
        .page("/sign-in?next=/features/toy/speed&why=expired", None)
        .await;
    assert!(page.text().contains("Your session has expired"));

    // Signing out clears the cookie.
    let token = testing::form_token(&h.client.page("/", Some(&root)).await.text());
    let answer = h
        .client
        .form("/sign-out", &root, &format!("form_token={token}"), None)
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.headers[header::LOCATION], "/sign-in?why=signed_out");
    assert!(
        answer.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

fn lock_noise(h: &Harness) -> bool {
    vigie_drift_service::watch::lock(&h.state.state).models["toy"]
        .noise
        .is_some()
}
