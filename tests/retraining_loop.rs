//! The retraining loop end to end, every part a real process on loopback: tansu (a
//! Kafka-protocol broker), PostgreSQL (when configured, else SQLite), `vigie predict`,
//! `vigie drift`, `vigie trainer`, Prometheus (alerting/vigie.rules.yml, 1 s scrape and
//! evaluation) and Alertmanager (alerting/alertmanager.yml, short group and repeat intervals).
//!
//! Two models run side by side, a classification (BAAC accident severity) and a regression
//! (London Fire Brigade attendance time); production starts as a deliberately weak version of
//! each (3 shallow boosting rounds), and the trainer retrains from the real specs. Both holdouts
//! are replayed as traffic and labelled (300 BAAC rows, every LFB row): the drift service joins
//! the labels to the answers, and the regression's realised MAE and interval coverage must be
//! those of the answers the service gave. Noise is injected into the classification's events
//! through /config/noise: its drift alert fires. The regression's inputs do not move, but its
//! holdout replayed again is labelled with attendance times ten minutes longer: its realised
//! quality alert fires. The test follows the drift score over the threshold, both alerts
//! firing in Prometheus, Alertmanager calling the trainer, one run per model, each recording
//! the alert that started it, no second run although the alerts keep firing, the promotions on
//! each task's metric (ROC AUC up, MAE down) with their holdout figures, and the prediction
//! service switching versions with zero failed requests. It prints the delays from
//! the injection to each step (benchmarks/README.md records them).
//!
//! Skipped when tansu, prometheus or prometheus-alertmanager is missing, unless
//! VIGIE_REQUIRE_ALERTING=1 (as CI sets it).

#![allow(clippy::unwrap_used)] // Test helpers: a failed setup should panic loudly.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{
    Broker, Daemon, Service, WINDOW_ARGS, binary, expect, free_port, get_json, json_of,
    let_the_window_pass, metric, repo, start_service, until, vigie_ok,
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const SECRET: &str = "a secret of the retraining loop test, long enough";
const WEBHOOK_TOKEN: &str = "webhook-token-of-the-loop-test";
const MODEL: &str = "baac-severity";
/// The regression beside it.
const LFB: &str = "lfb-response-time";
/// The drift service's quality window (labelled answers), as the test starts it.
const QUALITY_WINDOW: usize = 500;
/// The drift score from which the alert fires (`ml_data_drift_score >= 0.25`).
const THRESHOLD: f64 = 0.25;

/// `text` with `from` replaced by `to`, which must occur exactly once.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} once in the config");
    text.replace(from, to)
}

/// Everything the loop runs on, started, and what the steps share.
/// Fields drop in order: the processes stop before their folder goes.
struct Stack {
    _daemons: Vec<Daemon>,
    _processes: Vec<Service>,
    _broker: Broker,
    /// The registry, the logs, Prometheus's and Alertmanager's data.
    _home: tempfile::TempDir,
    predict: String,
    drift: String,
    trainer: String,
    prom: String,
    client: reqwest::Client,
    /// An admin's token (the same accounts and secret on every service).
    token: String,
    /// Per upload (request id), the rows the prediction service refused.
    refused: std::sync::Mutex<std::collections::HashMap<String, std::collections::HashSet<usize>>>,
}

impl Stack {
    /// The broker with the topics, a weak production model, the three services, Alertmanager
    /// routed to the trainer and Prometheus scraping the services; `None` (the test skips)
    /// when a program is missing and VIGIE_REQUIRE_ALERTING is not 1.
    async fn start() -> Option<Stack> {
        let required = std::env::var("VIGIE_REQUIRE_ALERTING").as_deref() == Ok("1");
        let (Some(tansu), Some(prometheus), Some(alertmanager)) = (
            common::tansu(),
            binary("prometheus"),
            binary("prometheus-alertmanager").or_else(|| binary("alertmanager")),
        ) else {
            assert!(
                !required,
                "VIGIE_REQUIRE_ALERTING=1 but tansu, prometheus or prometheus-alertmanager is missing"
            );
            eprintln!("skipped: tansu, prometheus and prometheus-alertmanager are needed");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let database_url = match vigie_registry::testing::fresh_postgres_database().await {
            Some(url) => url,
            None => format!("sqlite://{}", home.join("registry.db").display()),
        };
        eprintln!("registry: {database_url}");

        // In memory: tansu's SQLite storage, under this test's load (a dispatcher in a tight
        // loop beside two CSV replays), answered metadata and fetch requests later than
        // librdkafka's timeouts (benchmarks/README.md, "The retraining loop").
        let broker = Broker::started(tansu, None, &vigie_stream::TOPICS);
        let brokers = broker.address();

        // Production: a weak version (3 rounds of depth 2), trained from a copy of the spec.
        let weak = common::quick_spec(&home.join("weak"));
        let text = std::fs::read_to_string(&weak).unwrap();
        let text = replace_once(&text, "iterations = 20", "iterations = 3");
        let text = replace_once(&text, "max_depth = 6", "max_depth = 2");
        std::fs::write(&weak, text).unwrap();
        let weak_lfb = common::quick_lfb_spec(&home.join("weak"));
        let text = std::fs::read_to_string(&weak_lfb).unwrap();
        let text = replace_once(&text, "iterations = 20", "iterations = 3");
        let text = replace_once(&text, "max_depth = 6", "max_depth = 2");
        std::fs::write(&weak_lfb, text).unwrap();
        let db = [("DATABASE_URL", database_url.as_str())];
        vigie_ok(home, &["train", "--spec", weak.to_str().unwrap()], &db);
        vigie_ok(home, &["train", "--spec", weak_lfb.to_str().unwrap()], &db);
        vigie_ok(
            home,
            &["users", "add", "ops", "--admin"],
            &[("VIGIE_PASSWORD", "ops-password-1"), db[0]],
        );

        let env = [
            ("DATABASE_URL", database_url.as_str()),
            ("KAFKA_BROKERS", brokers.as_str()),
            ("VIGIE_JWT_SECRET", SECRET),
            ("VIGIE_POLL_MS", "1000"),
        ];
        let (predict_process, predict) =
            start_service(&["predict", "--listen", "127.0.0.1:0"], &env, home);
        let (drift_process, drift) = start_service(
            &[
                "drift",
                "--drift-listen",
                "127.0.0.1:0",
                WINDOW_ARGS[0],
                WINDOW_ARGS[1],
                WINDOW_ARGS[2],
                WINDOW_ARGS[3],
                "--score-ms",
                "500",
                "--tumbling-secs",
                "5",
                "--lateness-secs",
                "1",
                "--quality-window",
                &QUALITY_WINDOW.to_string(),
            ],
            &env,
            home,
        );
        let models_dir = repo().join("models");
        let mut trainer_env = env.to_vec();
        trainer_env.push(("VIGIE_WEBHOOK_TOKEN", WEBHOOK_TOKEN));
        let (trainer_process, trainer) = start_service(
            &[
                "trainer",
                "--trainer-listen",
                "127.0.0.1:0",
                "--trainer-models-dir",
                models_dir.to_str().unwrap(),
            ],
            &trainer_env,
            home,
        );
        eprintln!("predict: {predict}, drift: {drift}, trainer: {trainer}");
        let (am, alertmanager) = start_alertmanager(&alertmanager, home, &trainer);
        let (prom, prometheus) =
            start_prometheus(&prometheus, home, &am, [&predict, &drift, &trainer]);

        let client = reqwest::Client::new();
        for ready in [format!("{prom}/-/ready"), format!("{am}/-/ready")] {
            until(&ready, Duration::from_secs(60), || async {
                let ok = client.get(&ready).send().await.ok()?.status().is_success();
                ok.then_some(())
            })
            .await;
        }
        let token = common::token(&client, &predict, "ops", "ops-password-1").await;
        Some(Stack {
            _daemons: vec![alertmanager, prometheus],
            _processes: vec![predict_process, drift_process, trainer_process],
            _broker: broker,
            _home: dir,
            predict,
            drift,
            trainer,
            prom,
            client,
            token,
            refused: Default::default(),
        })
    }

    /// Uploads a model's whole holdout as CSV traffic; returns the upload's request id and
    /// the answers (the CSV the service sent back).
    async fn replay(&self, model: &str) -> (String, String) {
        let (file, rows) = match model {
            MODEL => ("data/baac/X_test.csv", 16_410),
            _ => ("data/lfb/X_test.csv", 1_895),
        };
        let holdout = std::fs::read(repo().join(file)).unwrap();
        let request = self
            .client
            .post(format!("{}/v1/models/{model}/predict/csv", self.predict))
            .bearer_auth(&self.token)
            .header("content-type", "text/csv")
            .body(holdout);
        let response = expect(request, 200).await;
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        let text = response.text().await.unwrap();
        assert_eq!(text.lines().count(), rows + 1, "every holdout row answered");
        self.refused
            .lock()
            .unwrap()
            .insert(request_id.clone(), Self::refused_rows(&text));
        (request_id, text)
    }

    /// Both holdouts replayed: the BAAC upload's request id and the LFB upload's, with its
    /// answers.
    async fn replay_both(&self) -> (String, (String, String)) {
        let (baac, _) = self.replay(MODEL).await;
        (baac, self.replay(LFB).await)
    }

    /// A model's `ml_data_drift_score`, once published.
    async fn score(&self, model: &str) -> Option<f64> {
        let text = common::metrics(&self.client, &self.drift).await;
        let series = format!("ml_data_drift_score{{model=\"{model}\"}}");
        text.lines()
            .any(|l| l.starts_with(&series))
            .then(|| metric(&text, &series))
    }

    /// Ground truth for the last `n` rows of a model's upload (its holdout's targets: a class,
    /// or an attendance time) but those it refused, sent as feedback. The last: the drift
    /// service keeps the newest answers waiting for their labels (`--label-capacity`,
    /// 10,000), fewer than the BAAC holdout's 16,410. Returns how many were sent.
    async fn label(&self, model: &str, request_id: &str, n: usize) -> usize {
        self.label_later(model, request_id, n, 0.0).await
    }

    /// The rows of an upload the prediction service refused (their answer line holds an
    /// error): they have no answer to label.
    fn refused_rows(answers: &str) -> std::collections::HashSet<usize> {
        answers
            .lines()
            .skip(1)
            .filter_map(|l| {
                let cells: Vec<&str> = l.split(',').collect();
                (cells.len() > 2 && cells[1].is_empty()).then(|| cells[0].parse().ok())?
            })
            .collect()
    }

    /// As [`Stack::label`], every attendance time `later` seconds longer (within the target's
    /// range, 7,200 s): the world the regression answers for got slower.
    async fn label_later(&self, model: &str, request_id: &str, n: usize, later: f64) -> usize {
        let file = match model {
            MODEL => "data/baac/y_test.csv",
            _ => "data/lfb/y_test.csv",
        };
        let targets = std::fs::read_to_string(repo().join(file)).unwrap();
        let rows = targets.lines().count() - 1;
        let first = rows.saturating_sub(n);
        let refused = self.refused.lock().unwrap()[request_id].clone();
        let labels: Vec<Value> = targets
            .lines()
            .skip(1)
            .enumerate()
            .skip(first)
            .filter(|(row, _)| !refused.contains(row))
            .map(|(row, y)| {
                let mut truth: Value = serde_json::from_str(y.trim()).unwrap();
                if later != 0.0 {
                    truth = json!((truth.as_f64().unwrap() + later).min(7200.0));
                }
                json!({"request_id": request_id, "row": row, "label": truth})
            })
            .collect();
        let request = self
            .client
            .post(format!("{}/v1/models/{model}/feedback", self.predict))
            .bearer_auth(&self.token)
            .json(&json!({"labels": labels}));
        let sent = labels.len();
        expect(request, 202).await;
        sent
    }

    async fn runs(&self) -> Option<Value> {
        get_json(
            &self.client,
            &format!("{}/v1/runs", self.trainer),
            Some(&self.token),
        )
        .await
    }
}

/// Alertmanager with the repository's routing, calling the test's trainer, with short
/// intervals: its URL and the process.
fn start_alertmanager(bin: &Path, home: &Path, trainer: &str) -> (String, Daemon) {
    let dir = home.join("alertmanager");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let config = std::fs::read_to_string(repo().join("alerting/alertmanager.yml")).unwrap();
    let config = replace_once(
        &config,
        "http://127.0.0.1:8002/v1/alerts",
        &format!("{trainer}/v1/alerts"),
    );
    let config = replace_once(&config, "group_wait: 30s", "group_wait: 1s");
    let config = replace_once(&config, "group_interval: 5m", "group_interval: 2s");
    let config = replace_once(&config, "repeat_interval: 4h", "repeat_interval: 4s");
    std::fs::write(dir.join("alertmanager.yml"), config).unwrap();
    std::fs::write(dir.join("webhook-token"), WEBHOOK_TOKEN).unwrap();
    let port = free_port();
    let mut command = Command::new(bin);
    command
        .arg(format!(
            "--config.file={}",
            dir.join("alertmanager.yml").display()
        ))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=");
    (
        format!("http://127.0.0.1:{port}"),
        Daemon::spawn("alertmanager", command, home),
    )
}

/// Prometheus with the repository's rules (the drift and quality alerts' `for` cut to 3 s), scraping the
/// three services every second and alerting `alertmanager`: its URL and the process.
fn start_prometheus(
    bin: &Path,
    home: &Path,
    alertmanager: &str,
    services: [&str; 3],
) -> (String, Daemon) {
    let dir = home.join("prometheus");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let rules = std::fs::read_to_string(repo().join("alerting/vigie.rules.yml")).unwrap();
    std::fs::write(dir.join("vigie.rules.yml"), {
        assert_eq!(
            rules.matches("for: 2m").count(),
            3,
            "the drift and quality alerts"
        );
        rules.replace("for: 2m", "for: 3s")
    })
    .unwrap();
    let target = |url: &str| url.trim_start_matches("http://").to_string();
    let [predict, drift, trainer] = services.map(target);
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [vigie.rules.yml]\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{}']\n\
         scrape_configs:\n  - job_name: vigie-predict\n    static_configs: [{{targets: ['{predict}']}}]\n\
         \x20 - job_name: vigie-drift\n    static_configs: [{{targets: ['{drift}']}}]\n\
         \x20 - job_name: vigie-trainer\n    static_configs: [{{targets: ['{trainer}']}}]\n",
        target(alertmanager)
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let mut command = Command::new(bin);
    command
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--rules.alert.resend-delay=1s");
    (
        format!("http://127.0.0.1:{port}"),
        Daemon::spawn("prometheus", command, home),
    )
}

/// A dispatcher calling the prediction service one request at a time, from the moment it
/// starts until `stop`: what failed, and the version that answered each request.
struct Dispatcher {
    stop: Arc<AtomicBool>,
    /// Answers by a version other than 1.
    newer: Arc<AtomicUsize>,
    task: JoinHandle<(Vec<String>, Vec<u64>)>,
}

impl Dispatcher {
    fn start(stack: &Stack) -> Self {
        let (header, rows) = common::holdout();
        let stop = Arc::new(AtomicBool::new(false));
        let newer = Arc::new(AtomicUsize::new(0));
        let (client, token, predict) = (
            stack.client.clone(),
            stack.token.clone(),
            stack.predict.clone(),
        );
        let task = {
            let (stop, newer) = (stop.clone(), newer.clone());
            tokio::spawn(async move {
                let (mut failed, mut versions) = (Vec::new(), Vec::new());
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let features = common::features(&header, &rows[i % rows.len()]);
                    i += 1;
                    let answer = client
                        .post(format!("{predict}/v1/models/{MODEL}/predict"))
                        .bearer_auth(&token)
                        .json(&json!({"features": features}))
                        .send()
                        .await;
                    match answer {
                        Ok(r) if r.status() == 200 => {
                            let body: Value = r.json().await.unwrap();
                            let version = body["model_version"].as_u64().unwrap();
                            if version != 1 {
                                newer.fetch_add(1, Ordering::Relaxed);
                            }
                            versions.push(version);
                        }
                        Ok(r) => {
                            let status = r.status();
                            let body = r.text().await.unwrap_or_default();
                            // Some holdout rows hold values the spec maps to missing in
                            // training data but refuses in requests (vma 500, 900...): those
                            // answer 422 from any version, as they should. Anything else is a
                            // failure.
                            let refused = status == 422
                                && serde_json::from_str::<Value>(&body)
                                    .is_ok_and(|b| b["error"] == "out_of_range");
                            if !refused {
                                failed.push(format!("{status} {body}"));
                            }
                        }
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (failed, versions)
            })
        };
        Dispatcher { stop, newer, task }
    }

    /// Waits for `n` answers by a newer version, stops, and checks that no request failed and
    /// that the versions switched once, from 1 to `new_version`, never back.
    async fn stop_after_newer(self, n: usize, new_version: u64) {
        until(
            "answers from the new version",
            Duration::from_secs(60),
            || async { (self.newer.load(Ordering::Relaxed) >= n).then_some(()) },
        )
        .await;
        self.stop.store(true, Ordering::Relaxed);
        let (failed, versions) = self.task.await.unwrap();
        assert!(
            failed.is_empty(),
            "failed requests during the switch: {failed:?}"
        );
        let switch = versions.iter().position(|&v| v == new_version).unwrap();
        assert!(
            versions[..switch].iter().all(|&v| v == 1),
            "before the switch, version 1 only"
        );
        assert!(
            versions[switch..].iter().all(|&v| v == new_version),
            "no request went back to the old version"
        );
        eprintln!(
            "dispatcher: {} requests, none failed ({} by version 1, {} by version {new_version})",
            versions.len(),
            switch,
            versions.len() - switch
        );
    }
}

/// Seconds from the noise injection to each step of the loop (benchmarks/README.md); the
/// runs' steps are read from their own records, the latest of both models'.
#[derive(Debug, Default)]
struct Timeline {
    /// The injection, Unix time in milliseconds.
    injected_ms: i64,
    score: f64,
    alert: f64,
    run: f64,
    done: f64,
    serving: f64,
}

impl Timeline {
    fn starting_now() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        Timeline {
            injected_ms: now.as_millis() as i64,
            ..Timeline::default()
        }
    }

    /// Seconds from the injection to a run's record of a time (Unix milliseconds).
    fn since(&self, run_time: &Value) -> f64 {
        (run_time.as_i64().unwrap() - self.injected_ms) as f64 / 1000.0
    }
}

/// Noise on every event of the classification (categorical values swapped, as a tester proves
/// the loop works) and its holdout replayed through it: waits for its score over the
/// threshold, then for its drift alert firing in Prometheus.
async fn inject_noise_until_the_alerts_fire(
    stack: &Stack,
    injected: Instant,
    timeline: &mut Timeline,
) {
    let noise = json!({"model": MODEL, "mode": "category_swap", "rate": 1.0, "seed": 7, "ttl_seconds": 3600});
    let request = stack
        .client
        .post(format!("{}/config/noise", stack.drift))
        .bearer_auth(&stack.token)
        .json(&noise);
    expect(request, 201).await;
    let_the_window_pass().await;
    stack.replay(MODEL).await;
    let drifted = until(
        &format!("{MODEL}'s drift score over the threshold"),
        Duration::from_secs(120),
        || async { stack.score(MODEL).await.filter(|&s| s >= THRESHOLD) },
    )
    .await;
    eprintln!("{MODEL}: drift score with noise {drifted}");
    timeline.score = injected.elapsed().as_secs_f64();
    alert_firing(stack, "VigieDataDrift", MODEL).await;
    timeline.alert = injected.elapsed().as_secs_f64();
}

/// Waits for `alert` of `model` firing in Prometheus; returns its labels.
async fn alert_firing(stack: &Stack, alert: &str, model: &str) -> Value {
    until(
        &format!("{alert} of {model} firing in Prometheus"),
        Duration::from_secs(120),
        || async {
            let alerts = get_json(
                &stack.client,
                &format!("{}/api/v1/alerts", stack.prom),
                None,
            )
            .await?;
            alerts["data"]["alerts"]
                .as_array()?
                .iter()
                .find(|a| {
                    a["labels"]["alertname"] == alert
                        && a["labels"]["model"] == model
                        && a["state"] == "firing"
                })
                .map(|a| a["labels"].clone())
        },
    )
    .await
}

/// The regression's quality alert: its holdout replayed once more, and labelled late with
/// every attendance time ten minutes longer. Its inputs do not drift; the answers it gave are
/// now far off: the realised interval coverage falls under the holdout's by more than the
/// spec's tolerance, and VigieQualityRealisedDrop fires. Before that, the estimated and
/// realised figures of the classification sit beside its holdout figures on /v1/drift.
async fn late_labels_fire_the_quality_alert(
    stack: &Stack,
    labelled: usize,
    injected: Instant,
    timeline: &mut Timeline,
) -> usize {
    let url = format!("{}/v1/drift?model={MODEL}", stack.drift);
    let drift = get_json(&stack.client, &url, Some(&stack.token))
        .await
        .unwrap();
    let quality = &drift["models"][0]["quality"];
    let estimated = quality["estimated"]["roc_auc"]["value"].as_f64().unwrap();
    let holdout = quality["targets"]["holdout"]["roc_auc"].as_f64().unwrap();
    let realised = quality["roc_auc"].as_f64().unwrap();
    assert_eq!(
        quality["labels"].as_u64(),
        Some(labelled as u64),
        "{quality}"
    );
    assert!(
        (estimated - holdout).abs() < 0.05,
        "the holdout replayed: estimated ROC AUC {estimated} near the holdout's {holdout}: {quality}"
    );
    assert!(
        !quality["periods"].as_array().unwrap().is_empty(),
        "{quality}"
    );
    eprintln!(
        "{MODEL}: ROC AUC estimated {estimated:.4}, realised {realised:.4} ({labelled} labels), holdout {holdout:.4}"
    );
    let (request_id, _) = stack.replay(LFB).await;
    let sent = stack.label_later(LFB, &request_id, usize::MAX, 600.0).await;
    let labels = alert_firing(stack, "VigieQualityRealisedDrop", LFB).await;
    assert_eq!(labels["metric"], "interval_coverage", "{labels}");
    timeline.alert = timeline.alert.max(injected.elapsed().as_secs_f64());
    sent
}

/// The realised quality the drift service measures on the labelled LFB traffic: once every
/// label is joined (`round` uploads labelled so far), the window holds the last labelled
/// answers, and its MAE and interval coverage are those of the answers the prediction service
/// sent back (`answers`, its CSV) against the truths.
async fn the_realised_quality_is_that_of_the_answers(stack: &Stack, answers: &str, round: usize) {
    let truths: Vec<f64> = std::fs::read_to_string(repo().join("data/lfb/y_test.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|y| y.trim().parse().unwrap())
        .collect();
    // row,prediction,lower,upper,...: the rows answered, in order.
    let mut answered: Vec<(f64, f64, f64, f64)> = Vec::new();
    for line in answers.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        if let (Ok(row), Ok(value), Ok(lower), Ok(upper)) = (
            cells[0].parse::<usize>(),
            cells[1].parse::<f64>(),
            cells[2].parse::<f64>(),
            cells[3].parse::<f64>(),
        ) {
            answered.push((truths[row], value, lower, upper));
        }
    }
    assert!(
        answered.len() > QUALITY_WINDOW,
        "{} answered",
        answered.len()
    );
    let window = &answered[answered.len() - QUALITY_WINDOW..];
    let n = window.len() as f64;
    let mae = window.iter().map(|(y, p, ..)| (y - p).abs()).sum::<f64>() / n;
    let coverage = window
        .iter()
        .filter(|(y, _, lo, hi)| lo <= y && y <= hi)
        .count() as f64
        / n;
    let joined = format!("vigie_quality_labels_total{{model=\"{LFB}\",outcome=\"joined\"}}");
    until(
        "every LFB label joined to its answer",
        Duration::from_secs(60),
        || async {
            let text = common::metrics(&stack.client, &stack.drift).await;
            (metric(&text, &joined) as usize == round * answered.len()).then_some(())
        },
    )
    .await;
    let url = format!("{}/v1/drift?model={LFB}", stack.drift);
    let drift = get_json(&stack.client, &url, Some(&stack.token))
        .await
        .unwrap();
    let quality = &drift["models"][0]["quality"];
    assert_eq!(quality["labels"], QUALITY_WINDOW, "{quality}");
    let realised_mae = quality["mae"].as_f64().unwrap();
    assert!(
        (realised_mae - mae).abs() < 0.01,
        "realised MAE {realised_mae}, from the answers {mae}: {quality}"
    );
    assert_eq!(
        quality["interval_coverage"].as_f64().unwrap(),
        coverage,
        "{quality}"
    );
    eprintln!(
        "LFB labelled traffic, round {round}: realised MAE {realised_mae:.2} s, interval coverage {coverage:.3} over the last {QUALITY_WINDOW} labels"
    );
}

/// The run the alert started for `model`, followed to its end: it must be promoted, on the
/// fixed holdout, on the task's metric, with a bootstrap lower bound above zero. Returns the
/// finished run.
async fn the_alert_starts_a_run_that_promotes(
    stack: &Stack,
    model: &str,
    alert: &str,
    timeline: &mut Timeline,
) -> Value {
    let run = until(
        &format!("a retraining run of {model}"),
        Duration::from_secs(120),
        || async {
            let runs = stack.runs().await?;
            runs.as_array()?
                .iter()
                .find(|r| r["model"] == model)
                .cloned()
        },
    )
    .await;
    assert_eq!(run["trigger"], "alert", "{run}");
    assert!(
        run["triggered_by"]
            .as_str()
            .unwrap()
            .starts_with(&format!("alert {alert} ")),
        "{run}"
    );
    let id = run["id"].as_str().unwrap().to_string();

    let url = format!("{}/v1/runs/{id}", stack.trainer);
    let run = until("the run's end", Duration::from_secs(900), || async {
        let run = get_json(&stack.client, &url, Some(&stack.token)).await?;
        ["promoted", "rejected", "failed"]
            .contains(&run["state"].as_str()?)
            .then_some(run)
    })
    .await;
    let (started, ended) = (
        timeline.since(&run["created_at"]),
        timeline.since(&run["finished_at"]),
    );
    timeline.run = timeline.run.max(started);
    timeline.done = timeline.done.max(ended);
    assert_eq!(run["state"], "promoted", "{run:#}");
    let evaluation = &run["detail"]["evaluation"];
    let (metric, rows) = match model {
        MODEL => ("roc_auc", 16_410),
        _ => ("mae", 1_895),
    };
    assert_eq!(evaluation["comparison"]["metric"], metric, "{evaluation}");
    let (before, after) = (
        evaluation["production"][metric].as_f64().unwrap(),
        evaluation["candidate"][metric].as_f64().unwrap(),
    );
    assert_eq!(evaluation["production"]["rows"], rows, "the fixed holdout");
    assert_eq!(evaluation["candidate"]["rows"], rows);
    assert!(
        evaluation["comparison"]["improvement_lower"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    eprintln!(
        "{model}: run started {started:.1} s and ended {ended:.1} s after the injection; holdout {metric} production {before:.4}, candidate {after:.4}; verdict: {}",
        run["detail"]["verdict"]
    );
    run
}

/// The labelled traffic the run read: every label, and none of them trained on (they are
/// holdout rows).
fn the_run_read_every_label_and_trained_on_none(run: &Value, labels: u64) {
    let join = &run["detail"]["data"]["labels"];
    assert_eq!(
        join["labels"], labels,
        "every label read: {}",
        run["detail"]["data"]
    );
    assert_eq!(
        join["joined"], 0,
        "holdout rows are never trained on: {join}"
    );
    let accounted = join["in_holdout"].as_u64().unwrap()
        + join["unmatched"].as_u64().unwrap()
        + join["invalid_values"].as_u64().unwrap();
    assert_eq!(accounted, labels, "{join}");
    eprintln!("labelled traffic: {join}");
}

/// Alertmanager keeps notifying (repeat_interval, a new firing after the windows restart):
/// the trainer records those alerts and starts nothing more: one run per model.
async fn repeated_alerts_start_no_second_run(stack: &Stack) {
    until(
        "a repeated alert held back",
        Duration::from_secs(120),
        || async {
            let text = common::metrics(&stack.client, &stack.trainer).await;
            let held = metric(&text, "vigie_retraining_alerts_total{action=\"duplicate\"")
                + metric(&text, "vigie_retraining_alerts_total{action=\"cooldown\"")
                + metric(&text, "vigie_retraining_alerts_total{action=\"busy\"");
            (held >= 1.0).then_some(())
        },
    )
    .await;
    let runs = stack.runs().await.unwrap();
    let runs = runs.as_array().unwrap();
    for model in [MODEL, LFB] {
        let of_model = runs.iter().filter(|r| r["model"] == model).count();
        assert_eq!(of_model, 1, "exactly one retraining of {model}: {runs:#?}");
    }
    assert_eq!(runs.len(), 2, "{runs:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_fires_the_alert_and_the_trainer_promotes_a_better_model_without_a_failed_request() {
    let Some(stack) = Stack::start().await else {
        return;
    };

    // The holdouts as traffic: the windows fill with rows like the training data's.
    let (request_id, (lfb_request, lfb_answers)) = stack.replay_both().await;
    for model in [MODEL, LFB] {
        let clean = until(
            &format!("a first drift score of {model}"),
            Duration::from_secs(120),
            || stack.score(model),
        )
        .await;
        eprintln!("{model}: drift score of the replayed holdout {clean}");
        assert!(
            clean < THRESHOLD,
            "{model}'s holdout does not drift: {clean}"
        );
    }

    // Ground truth for 300 BAAC rows of that traffic and every LFB row. They are holdout
    // rows: the trainer must keep them out of the fit. The drift service joins them to the
    // answers: the LFB model's realised quality.
    let labelled = stack.label(MODEL, &request_id, 300).await;
    let lfb_labelled = stack.label(LFB, &lfb_request, usize::MAX).await;
    the_realised_quality_is_that_of_the_answers(&stack, &lfb_answers, 1).await;

    // Dispatchers keep calling through everything that follows.
    let dispatcher = Dispatcher::start(&stack);
    let injected = Instant::now();
    let mut timeline = Timeline::starting_now();
    inject_noise_until_the_alerts_fire(&stack, injected, &mut timeline).await;
    let lfb_late =
        late_labels_fire_the_quality_alert(&stack, labelled, injected, &mut timeline).await;
    let run =
        the_alert_starts_a_run_that_promotes(&stack, MODEL, "VigieDataDrift", &mut timeline).await;
    let lfb_run = the_alert_starts_a_run_that_promotes(
        &stack,
        LFB,
        "VigieQualityRealisedDrop",
        &mut timeline,
    )
    .await;

    let new_versions = [
        (MODEL, run["candidate_version"].as_u64().unwrap()),
        (LFB, lfb_run["candidate_version"].as_u64().unwrap()),
    ];
    until(
        "the prediction service serving the new versions",
        Duration::from_secs(60),
        || async {
            let ready = get_json(&stack.client, &format!("{}/ready", stack.predict), None).await?;
            let models = ready["models"].as_array()?;
            new_versions
                .iter()
                .all(|(name, version)| {
                    models
                        .iter()
                        .any(|m| m["name"] == *name && m["version"] == *version)
                })
                .then_some(())
        },
    )
    .await;
    timeline.serving = injected.elapsed().as_secs_f64();

    repeated_alerts_start_no_second_run(&stack).await;

    // The new versions' own realised quality: the promotions started the quality windows
    // again; the holdouts replayed and labelled once more fill them (the third labelled LFB
    // upload: the second was labelled late).
    let (request_id, (lfb_request, lfb_answers)) = stack.replay_both().await;
    stack.label(MODEL, &request_id, 300).await;
    stack.label(LFB, &lfb_request, usize::MAX).await;
    the_realised_quality_is_that_of_the_answers(&stack, &lfb_answers, 3).await;

    // The dashboards against this live Prometheus: every query answers with data.
    let checked = dashboards_answer(&stack.client, &stack.prom).await;
    eprintln!("dashboards: {checked} Prometheus queries answered with data");

    the_run_read_every_label_and_trained_on_none(&run, labelled as u64);
    the_run_read_every_label_and_trained_on_none(&lfb_run, (lfb_labelled + lfb_late) as u64);
    dispatcher.stop_after_newer(20, new_versions[0].1).await;
    eprintln!(
        "from noise injection: scores over threshold {:.1} s, alerts firing {:.1} s, runs started {:.1} s, runs ended {:.1} s, new versions serving {:.1} s",
        timeline.score, timeline.alert, timeline.run, timeline.done, timeline.serving
    );
}

/// Every Prometheus query of dashboards/*.json (panel targets, annotations, and the
/// variables' label_values queries), run against the live Prometheus with each variable at
/// its default (All): each must parse, and return data within the cap, except in a panel that
/// says what its emptiness means (`fieldConfig.defaults.noValue`: "No unseen code since..."). Loki targets may only
/// select on the labels the services ship (service, level). Returns the number of queries.
async fn dashboards_answer(client: &reqwest::Client, prom: &str) -> usize {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    // Prometheus's HTTP API: a GET with query parameters, answered in JSON.
    let api = |path: String, params: Vec<(&'static str, String)>| {
        let client = client.clone();
        async move { json_of(client.get(format!("{prom}{path}")).query(&params)).await }
    };
    let query = |expr: String| {
        let answer = api("/api/v1/query".into(), vec![("query", expr.clone())]);
        async move {
            let answer = answer.await;
            assert_eq!(answer["status"], "success", "{expr}: {answer}");
            answer["data"]["result"].as_array().unwrap().clone()
        }
    };
    let mut checked = 0;
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let board: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let mut exprs: Vec<(String, String)> = Vec::new();
        let mut may_be_empty: Vec<(String, String)> = Vec::new();
        let is = |ds: &Value, kind: &str| ds["type"] == kind;
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let ds = if target["datasource"].is_object() {
                    &target["datasource"]
                } else {
                    &panel["datasource"]
                };
                let expr = target["expr"].as_str().unwrap().to_string();
                let title = format!("{name}: {}", panel["title"].as_str().unwrap());
                if is(ds, "prometheus") {
                    if panel["fieldConfig"]["defaults"]["noValue"].is_string() {
                        may_be_empty.push((title, expr));
                    } else {
                        exprs.push((title, expr));
                    }
                } else {
                    assert!(is(ds, "loki"), "{title}: datasource {ds}");
                    let selector = &expr[expr.find('{').unwrap()..=expr.find('}').unwrap()];
                    for matcher in selector.trim_matches(['{', '}']).split(',') {
                        let label = matcher.split(['=', '!']).next().unwrap().trim();
                        assert!(
                            ["service", "level"].contains(&label),
                            "{title}: Loki label {label} is not shipped"
                        );
                    }
                }
            }
        }
        for a in board["annotations"]["list"].as_array().unwrap() {
            if is(&a["datasource"], "prometheus") {
                let title = format!("{name}: annotation {}", a["name"].as_str().unwrap());
                exprs.push((title, a["expr"].as_str().unwrap().to_string()));
            }
        }
        for var in board["templating"]["list"].as_array().unwrap() {
            if var["type"] == "query" {
                let definition = var["definition"].as_str().unwrap();
                let inner = definition
                    .strip_prefix("label_values(")
                    .and_then(|d| d.strip_suffix(')'))
                    .unwrap_or_else(|| panic!("{name}: variable {definition}"));
                let (metric, label) = inner.split_once(',').unwrap();
                let values = api(
                    format!("/api/v1/label/{}/values", label.trim()),
                    vec![("match[]", metric.trim().to_string())],
                )
                .await;
                assert!(
                    !values["data"].as_array().unwrap().is_empty(),
                    "{name}: variable {} has no values: {definition}",
                    var["name"]
                );
                checked += 1;
            }
        }
        let resolve = |expr: &str| {
            let mut resolved = expr
                .replace("$__rate_interval", "30s")
                .replace("$__interval", "15s")
                .replace("$__range", "1h");
            for var in board["templating"]["list"].as_array().unwrap() {
                let placeholder = format!("${}", var["name"].as_str().unwrap());
                resolved = resolved.replace(&placeholder, ".*");
            }
            resolved
        };
        for (title, expr) in may_be_empty {
            let resolved = resolve(&expr);
            assert!(
                !resolved.contains('$'),
                "{title}: unresolved variable in {expr}"
            );
            query(resolved).await;
            checked += 1;
        }
        for (title, expr) in exprs {
            let resolved = resolve(&expr);
            assert!(
                !resolved.contains('$'),
                "{title}: unresolved variable in {expr}"
            );
            until(
                &format!("data for {title}: {resolved}"),
                Duration::from_secs(120),
                || {
                    let answer = query(resolved.clone());
                    async move { (!answer.await.is_empty()).then_some(()) }
                },
            )
            .await;
            checked += 1;
        }
    }
    checked
}
