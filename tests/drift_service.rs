//! Black-box tests of the drift service: the BAAC holdout streamed through the prediction
//! service must not look drifted; injected noise must be scored as drift and stop being so once
//! removed; and a drift service killed mid-stream must, once restarted, have counted every
//! event exactly once. Against the embedded broker (`vigie up`) and a real one (tansu).

#![allow(clippy::unwrap_used)] // Test helpers: a failed setup should panic loudly.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Uploads holdout rows as one CSV and returns how many were predicted (rows the spec refuses,
/// such as speed limits above 130, are answered with an error and publish nothing).
async fn upload(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    header: &[String],
    rows: &[Vec<String>],
) -> u64 {
    let mut body = header.join(",");
    body.push('\n');
    for row in rows {
        body.push_str(&row.join(","));
        body.push('\n');
    }
    let request = client
        .post(format!("{url}/v1/models/baac-severity/predict/csv"))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .header("x-vigie-source", "replay")
        .body(body);
    let text = expect(request, 200).await.text().await.unwrap();
    let predicted = text
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(1).is_some_and(|class| !class.is_empty()))
        .count() as u64;
    assert!(predicted > rows.len() as u64 * 9 / 10, "{text}");
    predicted
}

fn score(model: &Value) -> (f64, f64) {
    let report = &model["sliding"]["report"];
    assert_eq!(report["scored"], true, "{report}");
    (
        report["score"].as_f64().unwrap(),
        report["dataset_share"].as_f64().unwrap(),
    )
}

const WINDOW: usize = 2_000;
const BAAC: &str = "baac-severity";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vigie_up_scores_the_holdout_as_it_is_and_injected_noise_as_drift() {
    let home = tempfile::tempdir().unwrap();
    let (mut up, password) = start_up(
        home.path(),
        &[
            WINDOW_ARGS[0],
            WINDOW_ARGS[1],
            WINDOW_ARGS[2],
            WINDOW_ARGS[3],
            "--score-ms",
            "300",
            "--checkpoint-ms",
            "300",
        ],
    );
    let (url, drift_url) = (
        printed(&up, "prediction service"),
        printed(&up, "drift service"),
    );

    let client = reqwest::Client::new();
    let token = token(&client, &url, "admin", &password).await;
    let ready = json_of(client.get(format!("{drift_url}/ready"))).await;
    assert_eq!(ready["models"][0]["model"], "baac-severity", "{ready}");
    let (header, rows) = holdout();

    // The whole holdout: like the training data, so no alarm.
    let mut published = upload(&client, &url, &token, &header, &rows).await;
    let model = scored_after(&client, &drift_url, &token, BAAC, published).await;
    let (clean, threshold) = score(&model);
    eprintln!("holdout: score {clean}, drifted {:?}", drifted(&model));
    assert!(
        clean < threshold,
        "the holdout scored {clean} >= {threshold}: {:?}",
        drifted(&model)
    );
    let text = metrics(&client, &drift_url).await;
    assert_eq!(
        metric(&text, "ml_data_drift_score{model=\"baac-severity\"}"),
        clean
    );
    assert_eq!(metric(&text, "vigie_drift_noise_active{"), 0.0);

    // Gaussian noise on every numerical feature, two standard deviations: once a window of
    // noised events is in, the score crosses the threshold.
    // Two models are watched (BAAC and LFB): the injection names its model.
    let noise = json!({"model": "baac-severity", "mode": "gaussian", "rate": 1.0, "scale": 2.0,
        "seed": 11, "ttl_seconds": 900});
    let request = client
        .post(format!("{drift_url}/config/noise"))
        .bearer_auth(&token)
        .json(&noise);
    expect(request, 201).await;
    let_the_window_pass().await;
    published += upload(&client, &url, &token, &header, &rows[..WINDOW + 200]).await;
    let model = scored_after(&client, &drift_url, &token, BAAC, published).await;
    let (noisy, _) = score(&model);
    let moved = drifted(&model);
    eprintln!("gaussian noise: score {noisy}, drifted {moved:?}");
    assert!(
        noisy >= threshold,
        "gaussian noise scored {noisy} < {threshold}: {moved:?}"
    );
    for name in ["victim_age", "lat", "long"] {
        assert!(moved.iter().any(|m| m == name), "{name} not in {moved:?}");
    }
    assert!(model["noise"]["events_noised"].as_u64().unwrap() > WINDOW as u64);
    let text = metrics(&client, &drift_url).await;
    assert_eq!(
        metric(&text, "vigie_drift_noise_active{model=\"baac-severity\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "vigie_drift_dataset_drifted{model=\"baac-severity\"}"
        ),
        1.0
    );

    // DELETE: the noise stops; a window of clean events later the score is back down.
    let request = client
        .delete(format!("{drift_url}/config/noise"))
        .bearer_auth(&token);
    expect(request, 200).await;
    let_the_window_pass().await;
    published += upload(
        &client,
        &url,
        &token,
        &header,
        &rows[WINDOW..2 * WINDOW + 200],
    )
    .await;
    let model = scored_after(&client, &drift_url, &token, BAAC, published).await;
    let (after_reset, _) = score(&model);
    assert!(
        after_reset < threshold,
        "{after_reset}: {:?}",
        drifted(&model)
    );
    assert!(model["noise"].is_null());

    // A category swap on every categorical feature.
    let swap = json!({"model": "baac-severity", "mode": "category_swap", "rate": 1.0, "seed": 5});
    let request = client
        .post(format!("{drift_url}/config/noise"))
        .bearer_auth(&token)
        .json(&swap);
    expect(request, 201).await;
    let_the_window_pass().await;
    published += upload(&client, &url, &token, &header, &rows[..WINDOW + 200]).await;
    let model = scored_after(&client, &drift_url, &token, BAAC, published).await;
    let (swapped, _) = score(&model);
    eprintln!(
        "category swap: score {swapped}, drifted {:?}",
        drifted(&model)
    );
    assert!(swapped >= threshold, "{swapped}");

    // The report page of the live window; with two models watched, the bare page links to
    // each model's.
    let request = client
        .get(format!("{drift_url}/v1/drift/report"))
        .bearer_auth(&token);
    let index = expect(request, 200).await.text().await.unwrap();
    for model in ["baac-severity", "lfb-response-time"] {
        assert!(
            index.contains(&format!("href=\"?model={model}\"")),
            "{index}"
        );
    }
    let request = client
        .get(format!("{drift_url}/v1/drift/report?model=baac-severity"))
        .bearer_auth(&token);
    let html = expect(request, 200).await.text().await.unwrap();
    assert!(html.contains("noise injection active"), "{}", &html[..300]);

    // The same page as people see it: headless Chromium renders it, with no console error.
    if let Some((chromium, chromedriver)) = common::browser::chromium() {
        let page = common::browser::render(
            &chromium,
            &chromedriver,
            &format!("{drift_url}/v1/drift/report?model=baac-severity"),
            &token,
        )
        .await;
        assert!(page.errors.is_empty(), "console errors: {:?}", page.errors);
        assert!(page.title.contains("baac-severity"), "{}", page.title);
        assert!(
            page.text.contains("noise injection active"),
            "{}",
            page.text
        );
        assert!(page.text.contains("drifted features"), "{}", page.text);
        let (ink, colours) = common::browser::ink(&page.png);
        let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("drift-report.png");
        std::fs::write(&shot, &page.png).unwrap();
        eprintln!(
            "drift report screenshot: {} ({} bytes, {:.1}% of pixels not background, {colours} colours)",
            shot.display(),
            page.png.len(),
            ink * 100.0
        );
        assert!(ink > 0.02 && colours >= 8, "a blank page: {ink} {colours}");
    } else {
        eprintln!("browser check skipped: chromium and chromedriver are needed");
    }

    // Events replayed without the HTTP path count like served ones.
    let brokers = printed(&up, "embedded broker at");
    let replayed = vigie_ok(
        home.path(),
        &[
            "events",
            "replay",
            "--kafka-brokers",
            &brokers,
            "--model",
            "baac-severity",
            "--features",
            repo().join("data/baac/X_test.csv").to_str().unwrap(),
            "--count",
            "700",
        ],
        &[],
    );
    assert!(
        replayed.contains("replayed 700 events of baac-severity@1"),
        "{replayed}"
    );
    published += 700;
    let model = scored_after(&client, &drift_url, &token, BAAC, published).await;
    assert_eq!(model["events"].as_u64().unwrap(), published);

    let status = up.terminate();
    assert!(status.success(), "vigie up stopped with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_service_killed_mid_stream_counts_every_event_once_after_its_restart() {
    let Some(bin) = tansu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = trained_home(dir.path(), "ops", "ops-password-1", true);
    let broker = Broker::started(
        bin,
        Some(dir.path().join("tansu.db")),
        &[vigie_stream::PREDICTIONS_TOPIC],
    );
    let secret = "an end-to-end secret of at least 32 bytes";

    let (_predict, url) = start_predict(&home, &broker.address(), secret);
    let drift_port = free_port();
    let start_drift = || {
        let mut command = Command::new(VIGIE);
        command
            .args([
                "drift",
                "--drift-listen",
                &format!("127.0.0.1:{drift_port}"),
            ])
            .args([
                "--window-secs",
                "60",
                "--score-ms",
                "200",
                "--checkpoint-ms",
                "200",
            ])
            .env("VIGIE_HOME", &home)
            .env("KAFKA_BROKERS", broker.address())
            .env("VIGIE_JWT_SECRET", secret)
            .env("VIGIE_POLL_MS", "200")
            .env_remove("DATABASE_URL");
        let mut drift = Service::spawn(command);
        drift.wait_for("listening on", Duration::from_secs(120));
        drift
    };
    let drift_url = format!("http://127.0.0.1:{drift_port}");
    let mut drift = start_drift();
    let client = reqwest::Client::new();
    let token = token(&client, &url, "ops", "ops-password-1").await;
    let (header, rows) = holdout();

    // A first part, and the drift service killed (SIGKILL: no last checkpoint) once it has
    // counted some of it.
    let mut published = upload(&client, &url, &token, &header, &rows[..4000]).await;
    let counted = until("1,500 events counted", Duration::from_secs(300), || async {
        let state = drift_of(&client, &drift_url, &token, BAAC).await;
        state["events"].as_u64().filter(|&counted| counted >= 1500)
    })
    .await;
    eprintln!("killing the drift service at {counted} of {published} events counted");
    signal(drift.child.id(), "KILL");
    drift.child.wait().unwrap();

    // Traffic goes on while it is down; then it restarts, and more traffic comes.
    published += upload(&client, &url, &token, &header, &rows[4000..6000]).await;
    let mut drift = start_drift();
    published += upload(&client, &url, &token, &header, &rows[6000..]).await;
    let model = scored_after(&client, &drift_url, &token, BAAC, published).await;
    // Each partition's counts add up to the model's.
    let partitions: u64 = model["windows"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["events"].as_u64().unwrap())
        .sum();
    assert_eq!(partitions, published, "{}", model["windows"]);
    let text = metrics(&client, &drift_url).await;
    eprintln!(
        "after the restart: {} events counted of {published}, {} already counted and skipped",
        model["events"],
        metric(
            &text,
            "vigie_drift_events_skipped_total{reason=\"already_counted\"}"
        )
    );
    // Every published event counted exactly once: none lost with the killed process, none
    // counted twice on re-reading what followed its last checkpoint. (`scored_after` also
    // fails as soon as the count passes what was published.)
    assert_eq!(model["events"].as_u64().unwrap(), published);
    let status = drift.terminate();
    assert!(status.success());
}

/// The events the drift service counted for the model, once it answers.
async fn counted(client: &reqwest::Client, url: &str, token: &str) -> Option<u64> {
    let state = get_json(
        client,
        &format!("{url}/v1/drift?model=baac-severity"),
        Some(token),
    )
    .await?;
    state["models"][0]["events"].as_u64()
}

/// `n` single predictions of holdout rows from `from` (each its own request, so the events
/// spread over every partition); returns how many were predicted.
async fn predict_singles(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    from: usize,
    n: usize,
) -> u64 {
    let (header, rows) = holdout();
    let mut predicted = 0;
    for row in rows.iter().skip(from).take(n) {
        let request = client
            .post(format!("{url}/v1/models/baac-severity/predict"))
            .bearer_auth(token)
            .json(&json!({"features": features(&header, row)}));
        // Rows the spec refuses (speed limits above 130) answer 422 and publish nothing.
        if request.send().await.unwrap().status() == 200 {
            predicted += 1;
        }
    }
    predicted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_vigie_up_counts_the_traffic_of_its_new_broker() {
    let home = tempfile::tempdir().unwrap();
    let fast = ["--score-ms", "300", "--checkpoint-ms", "300"];
    let (mut up, password) = start_up(home.path(), &fast);
    let (url, drift_url) = (
        printed(&up, "prediction service"),
        printed(&up, "drift service"),
    );
    let client = reqwest::Client::new();
    let first = token(&client, &url, "admin", &password).await;
    let before = predict_singles(&client, &url, &first, 0, 300).await;
    until(
        "the first run's events counted",
        Duration::from_secs(120),
        || async { (counted(&client, &drift_url, &first).await? == before).then_some(()) },
    )
    .await;
    assert!(up.terminate().success());

    // The same home: the registry, the accounts and the drift checkpoint (with its offsets)
    // are kept; the embedded broker is new and its partitions start at offset 0 again.
    let mut up = restart_up(home.path(), &fast);
    let (url, drift_url) = (
        printed(&up, "prediction service"),
        printed(&up, "drift service"),
    );
    let token = token(&client, &url, "admin", &password).await;
    let after = predict_singles(&client, &url, &token, 300, 500).await;
    let total = until_ok(
        "every new event counted after the restart",
        Duration::from_secs(120),
        || async {
            let events = counted(&client, &drift_url, &token).await.unwrap_or(0);
            assert!(events <= before + after, "{events} counted");
            if events == before + after {
                Ok(events)
            } else {
                Err(format!("{events} of {} counted", before + after))
            }
        },
    )
    .await;
    let text = metrics(&client, &drift_url).await;
    let restarted = metric(
        &text,
        "vigie_drift_offset_resets_total{reason=\"restarted\"}",
    );
    eprintln!("after the restart: {total} events counted, {restarted} partitions restarted");
    assert!(restarted >= 1.0, "{text}");
    assert_eq!(
        metric(
            &text,
            "vigie_drift_events_skipped_total{reason=\"already_counted\"}"
        ),
        0.0
    );
    let ready = json_of(client.get(format!("{drift_url}/ready"))).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(up.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_deleted_and_created_again_is_counted_from_its_beginning() {
    let Some(bin) = tansu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = trained_home(dir.path(), "ops", "ops-password-1", true);
    // One partition: every event lands where the checkpoint's anchor is.
    let topic = vigie_stream::PREDICTIONS_TOPIC;
    let broker = Broker::started(bin, None, &[]);
    let recreate = |delete: bool| {
        if delete {
            let status = Command::new(&broker.bin)
                .args(["topic", "delete", topic, "--broker"])
                .arg(format!("tcp://{}", broker.address()))
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "tansu topic delete");
        }
        let status = Command::new(&broker.bin)
            .args(["topic", "create", topic, "--partitions", "1", "--broker"])
            .arg(format!("tcp://{}", broker.address()))
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "tansu topic create");
    };
    recreate(false);
    let env = [
        ("KAFKA_BROKERS", broker.address()),
        (
            "VIGIE_JWT_SECRET",
            "an end-to-end secret of at least 32 bytes".to_string(),
        ),
        ("VIGIE_POLL_MS", "200".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let replay = |count: usize| {
        let features = repo().join("data/baac/X_test.csv");
        let out = vigie_ok(
            &home,
            &[
                "events",
                "replay",
                "--model",
                "baac-severity",
                "--features",
                features.to_str().unwrap(),
                "--count",
                &count.to_string(),
            ],
            &env,
        );
        assert!(out.contains(&format!("replayed {count} events")), "{out}");
        count as u64
    };
    let drift_args = [
        "drift",
        "--drift-listen",
        "127.0.0.1:0",
        "--checkpoint-ms",
        "200",
        "--score-ms",
        "200",
    ];
    let client = reqwest::Client::new();
    let mut published = 0;
    // The drift service counts a first log, stops; the topic goes and comes back with fewer
    // events than the old position, then with more: each time the restarted service finds
    // another event at the partition's origin, and counts every event of the new log, once.
    for (phase, (delete, count)) in [(false, 1000), (true, 300), (true, 1500)]
        .into_iter()
        .enumerate()
    {
        if delete {
            recreate(true);
        }
        published += replay(count);
        let (mut drift, drift_url) = start_service(&drift_args, &env, &home);
        let ops = token(&client, &drift_url, "ops", "ops-password-1").await;
        let events = until_ok(
            &format!("phase {phase}: {published} events counted"),
            Duration::from_secs(120),
            || async {
                let events = counted(&client, &drift_url, &ops).await.unwrap_or(0);
                assert!(
                    events <= published,
                    "{events} counted, {published} published"
                );
                if events == published {
                    Ok(events)
                } else {
                    Err(format!("{events} counted"))
                }
            },
        )
        .await;
        let text = metrics(&client, &drift_url).await;
        eprintln!(
            "phase {phase}: {events} events counted; resets: restarted {}, replaced {}",
            metric(
                &text,
                "vigie_drift_offset_resets_total{reason=\"restarted\"}"
            ),
            metric(
                &text,
                "vigie_drift_offset_resets_total{reason=\"replaced\"}"
            )
        );
        // Phases 1 and 2: another event at the partition's origin (its first event counted).
        assert_eq!(
            metric(
                &text,
                "vigie_drift_offset_resets_total{reason=\"replaced\"}"
            ),
            if phase == 0 { 0.0 } else { 1.0 },
            "{text}"
        );
        assert_eq!(
            metric(
                &text,
                "vigie_drift_offset_resets_total{reason=\"restarted\"}"
            ),
            0.0,
            "{text}"
        );
        assert!(drift.terminate().success());
    }
}
