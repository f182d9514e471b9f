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
    let _alone = ALONE.lock().await;
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
    published += replay_holdout(home.path(), 700, &["--kafka-brokers", &brokers], &[]);
    let model = scored_after(&client, &drift_url, &token, BAAC, published).await;
    assert_eq!(model["events"].as_u64().unwrap(), published);

    let status = up.terminate();
    assert!(status.success(), "vigie up stopped with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_service_killed_mid_stream_counts_every_event_once_after_its_restart() {
    let _alone = ALONE.lock().await;
    let Some(bin) = tansu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = trained_home(dir.path(), "ops", "ops-password-1", true);
    let broker = Broker::started(
        bin,
        Some(dir.path().join("tansu.db")),
        &[
            vigie_stream::PREDICTIONS_TOPIC,
            vigie_stream::PARTIALS_TOPIC,
        ],
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
                // tansu's SQLite storage answers a group's heartbeats late while it stores the
                // upload (once more than 10 s: the session ended, and its coordinator never gave
                // the member partitions again).
                "--session-timeout-ms",
                "20000",
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

/// A drift service asked to stop while its broker is away exits (its last checkpoint saved)
/// rather than wait for the broker without end; started again once the broker is back, it
/// resumes from that checkpoint: what it had counted stays counted once, and what comes after
/// is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_service_stopped_while_its_broker_is_away_exits_and_resumes_from_its_checkpoint() {
    let _alone = ALONE.lock().await;
    let Some(bin) = tansu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = trained_home(dir.path(), "ops", "ops-password-1", true);
    // Stored on disk: the broker started again holds the same log.
    let mut broker = Broker::started(
        bin,
        Some(dir.path().join("tansu.db")),
        &[
            vigie_stream::PREDICTIONS_TOPIC,
            vigie_stream::PARTIALS_TOPIC,
        ],
    );
    let env = broker.service_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = [
        "drift",
        "--drift-listen",
        "127.0.0.1:0",
        "--checkpoint-ms",
        "200",
        "--score-ms",
        "200",
        "--window-secs",
        "3600",
    ];
    let first = replay_holdout(&home, 2000, &[], &env);
    let (mut drift, url) = start_service(&args, &env, &home);
    let client = reqwest::Client::new();
    let ops = token(&client, &url, "ops", "ops-password-1").await;
    until(
        "the first events counted",
        Duration::from_secs(120),
        || async { (counted(&client, &url, &ops).await? == first).then_some(()) },
    )
    .await;

    broker.kill();
    let asked = std::time::Instant::now();
    signal(drift.child.id(), "TERM");
    let status = loop {
        if let Some(status) = drift.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(60),
            "still running 60 s after SIGTERM with its broker away"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = asked.elapsed();
    eprintln!("stopped {took:?} after SIGTERM with the broker away: {status}");
    assert!(status.success(), "{status}");
    // What it waits for at most: the partials' delivery, the group's goodbye and the
    // broker's answer (5 s each), the stall watch's broker call under way (2 s).
    assert!(took < Duration::from_secs(30), "{took:?}");

    broker.start();
    let (mut drift, url) = start_service(&args, &env, &home);
    let second = replay_holdout(&home, 500, &[], &env);
    let total = first + second;
    until_ok(
        "every event counted once after the restart",
        Duration::from_secs(120),
        || async {
            let events = counted(&client, &url, &ops).await.unwrap_or(0);
            assert!(events <= total, "{events} counted of {total}");
            if events == total {
                Ok(())
            } else {
                Err(format!("{events} of {total} counted"))
            }
        },
    )
    .await;
    let text = metrics(&client, &url).await;
    assert_eq!(
        metric(&text, "vigie_drift_offset_resets_total{reason="),
        0.0,
        "the checkpoint's positions were given up: {text}"
    );
    assert!(drift.terminate().success());
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
    let _alone = ALONE.lock().await;
    let home = tempfile::tempdir().unwrap();
    let fast = [
        "--score-ms",
        "300",
        "--checkpoint-ms",
        "300",
        "--history-step-secs",
        "1",
    ];
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
    // The drift history is saved at stop with the checkpoint, and read back at start.
    let history = |url: String, token: String| {
        let client = client.clone();
        async move {
            let history = get_json(
                &client,
                &format!("{url}/v1/drift/history?model={BAAC}"),
                Some(&token),
            )
            .await
            .unwrap();
            history["points"].as_array().unwrap().clone()
        }
    };
    let kept = until("two points of history", Duration::from_secs(60), || async {
        let points = history(drift_url.clone(), first.clone()).await;
        (points.len() >= 2).then_some(points)
    })
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
    let restored = history(drift_url.clone(), token.clone()).await;
    assert!(
        restored.len() >= kept.len(),
        "{} of {} points",
        restored.len(),
        kept.len()
    );
    assert_eq!(restored[..kept.len()], kept[..]);
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
    // The positions are checked when the group assigns the partitions, which may be after
    // the first new events: the new log is found shorter than the position (restarted) or
    // holding another event at its origin (replaced). Either way the positions are given up.
    let given_up = metric(&text, "vigie_drift_offset_resets_total{reason=");
    eprintln!("after the restart: {total} events counted, {given_up} partitions given up");
    assert!(given_up >= 1.0, "{text}");
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
    let _alone = ALONE.lock().await;
    let Some(bin) = tansu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = trained_home(dir.path(), "ops", "ops-password-1", true);
    // One partition: every event lands where the checkpoint's anchor is.
    let topic = vigie_stream::PREDICTIONS_TOPIC;
    let broker = Broker::started(bin, None, &[vigie_stream::PARTIALS_TOPIC]);
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
    let env = broker.service_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let replay = |count: usize| replay_holdout(&home, count, &[], &env);
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

/// The model's drift state on one instance: the events its sums hold, each partition's events
/// (read here or not), and the sliding window's per-feature statistics once scored.
async fn group_view(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> Option<(u64, Vec<(i64, bool, u64)>, Value)> {
    let model = drift_of(client, url, token, BAAC).await;
    let partitions = model["windows"]["partitions"]
        .as_array()?
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap(),
                p["read_here"].as_bool().unwrap(),
                p["events"].as_u64().unwrap(),
            )
        })
        .collect();
    Some((
        model["events"].as_u64()?,
        partitions,
        model["sliding"]["report"]["features"].clone(),
    ))
}

/// Three drift instances of one group on a six-partition topic (tansu): they share the
/// partitions, each scores the sums of all of them; one is killed mid-stream, its partitions
/// move to the two others within the session, and once the stream is read the survivors'
/// sums hold every event once, equal to those of one instance reading the topic alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_the_partitions_and_one_killed_loses_nothing() {
    let _alone = ALONE.lock().await;
    let Some(bin) = tansu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = trained_home(dir.path(), "ops", "ops-password-1", true);
    // tansu's memory storage serves a fetch that starts inside a stored batch from the next
    // batch on: a partition resumed at its checkpoint would skip the rest of its batch (the
    // drift service counts them as missed). The replay sends batches of one event.
    let broker = Broker::started(bin, None, &[]);
    for topic in vigie_stream::TOPICS {
        broker.create_topic_with(topic, 6);
    }
    let env = broker.service_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let replay = |count: usize| replay_holdout(&home, count, &["--batch-events", "1"], &env);
    let start = |name: &str, group: &str| {
        let args = [
            "drift",
            "--drift-listen",
            "127.0.0.1:0",
            "--group",
            group,
            "--instance",
            name,
            "--session-timeout-ms",
            "10000",
            // Idle fetches held 200 ms, not 10: three instances, their labels and partials
            // readers ask the broker tens of times a second, not hundreds.
            "--fetch-wait-ms",
            "200",
            "--checkpoint-ms",
            "1000",
            "--score-ms",
            "500",
            // The whole replay in the sliding window: the scores compare every event.
            "--window-secs",
            "3600",
        ];
        start_service(&args, &env, &home)
    };
    // A partials topic that deletes old messages, or none: a clear refusal naming it.
    broker.create_topic_with("plain", 6);
    for (topic, says) in [("plain", "is not compacted"), ("missing", "does not exist")] {
        let out = vigie(
            &home,
            &[
                "drift",
                "--drift-listen",
                "127.0.0.1:0",
                "--partials-topic",
                topic,
            ],
            &env,
        )
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("partials topic {topic} {says}")),
            "{stderr}"
        );
    }
    let client = reqwest::Client::new();
    let mut instances: Vec<(Service, String)> = ["d1", "d2", "d3"]
        .iter()
        .map(|n| start(n, "shared"))
        .collect();
    let ops = token(&client, &instances[0].1, "ops", "ops-password-1").await;
    // The group shares the six partitions out.
    until_ok(
        "six partitions shared by three",
        Duration::from_secs(120),
        || async {
            let mut assigned = Vec::new();
            for (_, url) in &instances {
                let ready = get_json(&client, &format!("{url}/ready"), None)
                    .await
                    .ok_or("no answer")?;
                let mine = ready["consumer"]["assigned_partitions"]
                    .as_array()
                    .map_or(0, Vec::len);
                assigned.push(mine);
            }
            if assigned.iter().sum::<usize>() == 6 && assigned.iter().all(|&n| n == 2) {
                Ok(())
            } else {
                Err(format!("{assigned:?}"))
            }
        },
    )
    .await;

    let mut published = replay(30_000);
    until_ok(
        "a third of them counted",
        Duration::from_secs(120),
        || async {
            let (events, ..) = group_view(&client, &instances[2].1, &ops)
                .await
                .ok_or("no view")?;
            if events >= 10_000 {
                Ok(())
            } else {
                Err(format!("{events}"))
            }
        },
    )
    .await;
    // Killed: no last checkpoint, no goodbye to the group.
    let (mut killed, killed_url) = instances.remove(2);
    signal(killed.child.id(), "KILL");
    killed.child.wait().unwrap();
    let killed_at = std::time::Instant::now();
    eprintln!("killed the instance at {killed_url}");
    published += replay(30_000);

    // Within the session timeout and a rebalance, the survivors read all six partitions.
    let moved = until_ok(
        "the killed instance's partitions taken",
        Duration::from_secs(60),
        || async {
            let mut read = 0;
            for (_, url) in &instances {
                let (_, partitions, _) = group_view(&client, url, &ops).await.ok_or("no view")?;
                read += partitions.iter().filter(|(_, here, _)| *here).count();
            }
            if read == 6 {
                Ok(killed_at.elapsed())
            } else {
                Err(format!("{read} read"))
            }
        },
    )
    .await;
    eprintln!(
        "failover: the killed instance's partitions read again {:.1} s after the kill",
        moved.as_secs_f64()
    );

    // Every event once, on both survivors, and the same scores on both.
    let views = until_ok(
        "every event counted once on both",
        Duration::from_secs(120),
        || async {
            let mut views = Vec::new();
            for (_, url) in &instances {
                let view = group_view(&client, url, &ops).await.ok_or("no view")?;
                assert!(
                    view.0 <= published,
                    "{} counted, {published} published",
                    view.0
                );
                views.push(view);
            }
            if views.iter().all(|v| v.0 == published)
                && views[0].2 == views[1].2
                && views[0].2.is_array()
            {
                Ok(views)
            } else {
                Err(format!(
                    "{:?}",
                    views.iter().map(|v| v.0).collect::<Vec<_>>()
                ))
            }
        },
    )
    .await;
    eprintln!(
        "after the failover: {published} events counted on both survivors; all counted {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );

    // One instance alone, in a group of its own, reading the same topic from its beginning:
    // the same per-partition counts and the same statistics.
    let (_solo, solo_url) = start("solo", "alone");
    let survivors = &views[0];
    let solo = until_ok(
        "the lone instance's sums",
        Duration::from_secs(120),
        || async {
            let view = group_view(&client, &solo_url, &ops)
                .await
                .ok_or("no view")?;
            // Its scoring after the last event counted: the survivors' statistics.
            if view.0 == published && view.2 == survivors.2 {
                Ok(view)
            } else {
                Err(format!("{} counted", view.0))
            }
        },
    )
    .await;
    let per_partition = |v: &(u64, Vec<(i64, bool, u64)>, Value)| -> Vec<(i64, u64)> {
        v.1.iter().map(|&(p, _, n)| (p, n)).collect()
    };
    assert_eq!(per_partition(&solo), per_partition(&views[0]));
    assert_eq!(
        solo.2, views[0].2,
        "the same statistics, feature by feature"
    );
    let text = metrics(&client, &instances[0].1).await;
    assert!(
        metric(&text, "vigie_drift_partials_total{outcome=\"added\"}") > 0.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "vigie_drift_partials_total{outcome=\"unreadable\"}"),
        0.0
    );
    for (service, _) in &mut instances {
        assert!(service.terminate().success());
    }
}

const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

/// The rows of a model's history table on the overview (time, version, events, score,
/// drifted features, noise), newest first.
async fn history_rows(browser: &common::browser::Browser, model: &str) -> Vec<Vec<String>> {
    let rows = browser
        .run(
            "return [...document.querySelectorAll('#history-' + arguments[0] + ' tbody tr')]\
             .map(r => [...r.cells].map(c => c.textContent))",
            json!([model]),
        )
        .await;
    serde_json::from_value(rows).unwrap()
}

/// The score of a history row, when it was scored.
fn row_score(row: &[String]) -> Option<f64> {
    row[3].parse().ok()
}

/// Asserts that the browser's only errors since the last look are the answers of status
/// `status` (a refused form's page).
async fn expect_only(browser: &common::browser::Browser, status: &str) {
    let errors = browser.errors().await;
    assert!(
        !errors.is_empty()
            && errors
                .iter()
                .all(|e| e.contains(&format!("status of {status}"))),
        "{errors:?}"
    );
}

/// A page as people see it: no error, not blank, nothing asked of another origin.
async fn check_page(browser: &common::browser::Browser, name: &str) -> Vec<u8> {
    let errors = browser.errors().await;
    assert!(errors.is_empty(), "{name}: console errors {errors:?}");
    for (page, request) in browser.requests().await {
        let request_origin = common::browser::origin(&request);
        assert!(
            request.starts_with("data:") || request_origin == common::browser::origin(&page),
            "{name}: {page} asked another origin for {request}"
        );
    }
    let unlabelled = browser
        .run(
            "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]\
             .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')).map(e => e.name)",
            json!([]),
        )
        .await;
    assert_eq!(unlabelled, json!([]), "{name}: fields without a label");
    let timing = browser
        .run(
            "const n = performance.getEntriesByType('navigation')[0];\
             const p = performance.getEntriesByName('first-contentful-paint')[0];\
             return [n.decodedBodySize, n.responseStart - n.startTime, p ? p.startTime : -1]",
            json!([]),
        )
        .await;
    let png = browser.screenshot().await;
    let (ink, colours) = common::browser::ink(&png);
    eprintln!(
        "{name}: {} bytes of HTML, first byte {:.0} ms, first paint {:.0} ms; screenshot {} bytes, \
         {:.1}% of pixels not background, {colours} colours",
        timing[0],
        timing[1].as_f64().unwrap_or(-1.0),
        timing[2].as_f64().unwrap_or(-1.0),
        png.len(),
        ink * 100.0
    );
    assert!(
        ink > 0.02 && colours >= 8,
        "{name}: a blank page: {ink} {colours}"
    );
    png
}

/// The pages of `vigie up` in headless Chromium: the root asks for a sign-in; a wrong password
/// is said on the page, the admin's signs in; the overview shows each model's drift score over
/// time, and the test reads the values back from it after traffic and after noise injected
/// from the page's own form (filled and sent with the keyboard, an absurd value first); the
/// noise is stopped from the page; a form posted from another site changes nothing; the
/// report, a feature's page, the trainer's page and a run started from it render without
/// errors, with every field labelled and no request to another origin. The overview's
/// screenshot is the README's (docs/overview.png).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_follows_the_drift_over_time_and_injects_noise_from_the_page() {
    let _alone = ALONE.lock().await;
    let Some((chromium, chromedriver)) = common::browser::chromium() else {
        eprintln!("browser test skipped: chromium and chromedriver are needed");
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let mut extra = WINDOW_ARGS.to_vec();
    extra.extend(["--score-ms", "300", "--history-step-secs", "1"]);
    let (mut up, password) = start_up(home.path(), &extra);
    let (url, drift, trainer, brokers) = (
        printed(&up, "prediction service"),
        printed(&up, "drift service"),
        printed(&up, "trainer"),
        printed(&up, "embedded broker at"),
    );
    let replay =
        |count: usize| replay_holdout(home.path(), count, &["--kafka-brokers", &brokers], &[]);
    let browser = common::browser::Browser::start(&chromium, &chromedriver).await;

    // Signing in, with the keyboard: a wrong password, then the right one.
    browser.goto(&format!("{drift}/")).await;
    assert_eq!(browser.url().await, format!("{drift}/sign-in?next=/"));
    assert!(browser.title().await.starts_with("Sign in"));
    check_page(&browser, "sign-in").await;
    browser.type_into("#username", "admin").await;
    browser.type_into("#password", "not-the-password").await;
    browser.mark().await;
    browser.press(&[ENTER]).await;
    browser.next_page().await;
    assert!(
        browser
            .text()
            .await
            .contains("Wrong user name or password.")
    );
    // The refusal's status is the browser's only complaint.
    expect_only(&browser, "401").await;
    browser.type_into("#password", &password).await;
    browser.mark().await;
    browser.press(&[ENTER]).await;
    browser.next_page().await;
    assert_eq!(browser.url().await, format!("{drift}/"));
    assert!(browser.title().await.starts_with("Overview"));

    // Traffic as it was trained on: scored, and on the page.
    replay(3000);
    let steady = until(
        "the holdout scored on the overview",
        Duration::from_secs(120),
        || async {
            browser.goto(&format!("{drift}/")).await;
            let rows = history_rows(&browser, BAAC).await;
            rows.iter()
                .find_map(|r| row_score(r))
                .filter(|_| rows.len() >= 2)
        },
    )
    .await;
    let timing = browser
        .run(
            "const n = performance.getEntriesByType('navigation')[0];\
             const p = performance.getEntriesByName('first-contentful-paint')[0];\
             return {first_byte: n.responseStart - n.startTime, loaded: n.loadEventEnd - n.startTime,\
                     first_paint: p ? p.startTime : null, bytes: n.decodedBodySize}",
            json!([]),
        )
        .await;
    eprintln!("overview after traffic: {timing}");
    check_page(&browser, "overview").await;

    // Keyboard only: the noise form is reached with Tab.
    browser.goto(&format!("{drift}/")).await;
    let mut reached = false;
    for _ in 0..120 {
        browser.press(&[TAB]).await;
        let focused = browser
            .run(
                "const e = document.activeElement; return e ? e.id + ' ' + e.textContent : ''",
                json!([]),
            )
            .await;
        if focused.as_str().is_some_and(|f| f.contains("Inject noise")) {
            reached = true;
            break;
        }
    }
    assert!(reached, "the noise form's button is not reached with Tab");

    // An absurd share, then a right one; each form asks first.
    let field = |name: &str| format!("#{name}-{BAAC}");
    browser.type_into(&field("rate"), "5").await;
    browser.mark().await;
    browser.press(&[ENTER]).await;
    let question = browser.dialog().await.expect("a confirmation");
    assert!(
        question.contains("Inject noise into baac-severity"),
        "{question}"
    );
    browser.accept().await;
    let text = browser.text().await;
    assert!(text.contains("rate: "), "{text}");
    assert!(!text.contains("Noise injected:"), "{text}");
    expect_only(&browser, "422").await;
    browser
        .run(
            "const s = document.getElementById(arguments[0]); s.focus(); return s.id",
            json!([format!("mode-{BAAC}")]),
        )
        .await;
    browser.press(&["c"]).await; // category_swap, the first mode starting with c
    browser.type_into(&field("rate"), "1").await;
    browser.mark().await;
    browser.press(&[ENTER]).await;
    assert!(browser.dialog().await.is_some());
    browser.accept().await;
    let text = browser.text().await;
    assert!(text.contains("Noise injection started"), "{text}");
    assert!(
        text.contains("Noise injected: category_swap, 100% of events"),
        "{text}"
    );

    // Noised traffic: scored as drift, on the page.
    let_the_window_pass().await;
    replay(3000);
    let noised = until(
        "the noise scored on the overview",
        Duration::from_secs(120),
        || async {
            browser.goto(&format!("{drift}/")).await;
            history_rows(&browser, BAAC)
                .await
                .iter()
                .filter(|r| r[5] == "injected")
                .filter_map(|r| row_score(r))
                .reduce(f64::max)
                .filter(|s| *s > steady)
        },
    )
    .await;
    eprintln!(
        "drift score read on the overview: {steady:.3} before the noise, {noised:.3} with it"
    );
    assert!(noised >= steady + 0.2, "{steady} -> {noised}");
    let png = check_page(&browser, "overview with noise").await;
    let docs = repo().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("overview.png"), &png).unwrap();

    // Stopped from the page.
    browser.mark().await;
    browser
        .click(&format!(
            "#noise-forms-{BAAC} form[action=\"/overview/noise/stop\"] button"
        ))
        .await;
    assert!(browser.dialog().await.is_some());
    browser.accept().await;
    assert!(browser.text().await.contains("Noise injection stopped."));

    // A form posted from another site: no session cookie goes with it, nothing changes.
    let attack = format!(
        "data:text/html,<form method=post action='{drift}/overview/noise'>\
         <input name=model value={BAAC}><input name=mode value=missing><input name=rate value=1>\
         <button id=go>go</button></form>"
    );
    browser.goto(&attack).await;
    browser.mark().await;
    browser.click("#go").await;
    browser.next_page().await;
    assert!(browser.url().await.starts_with(&format!("{drift}/sign-in")));
    let client = reqwest::Client::new();
    let token = token(&client, &url, "admin", &password).await;
    let active = json_of(
        client
            .get(format!("{drift}/config/noise"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(active["active"], json!([]), "{active}");
    browser.requests().await; // the attack page's own requests are not the service's

    // The report, a feature's page.
    browser
        .goto(&format!("{drift}/v1/drift/report?model={BAAC}"))
        .await;
    assert!(browser.title().await.contains(BAAC));
    check_page(&browser, "report").await;
    browser.goto(&format!("{drift}/")).await;
    browser.mark().await;
    browser
        .click(&format!("#model-{BAAC} a[href^=\"/features/\"]"))
        .await;
    browser.next_page().await;
    assert!(browser.text().await.contains("Its statistic over time"));
    check_page(&browser, "feature").await;

    // The trainer's pages, signed in by the same cookie (one host); a run from its form.
    browser.goto(&format!("{trainer}/")).await;
    assert!(browser.title().await.starts_with("Models and runs"));
    check_page(&browser, "trainer").await;
    browser.mark().await;
    browser
        .click(&format!("#model-{BAAC} form[action$=\"/retrain\"] button"))
        .await;
    assert!(browser.dialog().await.is_some());
    browser.accept().await;
    assert!(browser.url().await.contains("/runs/"));
    let run_page = browser.url().await;
    let state = until("the run ended", Duration::from_secs(300), || async {
        browser.goto(&run_page).await;
        let text = browser.text().await;
        ["promoted", "rejected", "failed"]
            .into_iter()
            .find(|s| text.contains(&format!("State: {s}")))
    })
    .await;
    eprintln!("run started from the trainer's page: {state}");
    assert_ne!(state, "failed", "{}", browser.text().await);
    assert!(browser.text().await.contains("bootstrap interval ["));
    check_page(&browser, "run").await;

    // The overview refreshes its figures by itself (every 10 s).
    browser.goto(&format!("{drift}/")).await;
    let script = "return [document.querySelector('#live p').textContent, \
                  document.documentElement.dataset.refreshed || null]";
    let before = browser.run(script, json!([])).await;
    assert_eq!(before[1], Value::Null);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = browser.run(script, json!([])).await;
    assert!(after[1].is_string(), "not refreshed: {after}");
    assert_ne!(before[0], after[0], "the same figures after a refresh");
    assert!(browser.errors().await.is_empty());

    browser.close().await;
    assert!(up.terminate().success());
}
