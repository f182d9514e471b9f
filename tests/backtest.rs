//! Black-box tests of `vigie backtest`: the drift service's windows, decisions and alert over
//! a features file; rules given on the command line change what it decides; bad input fails
//! with one clear message naming the file, line, column or field.

#![allow(clippy::unwrap_used)] // Test helpers: a failed setup should panic loudly.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Writes holdout rows as a CSV, with a `ts` column when `times` are given.
fn write(
    dir: &Path,
    name: &str,
    header: &[String],
    rows: &[&Vec<String>],
    times: Option<&[String]>,
) -> PathBuf {
    let mut text = header.join(",");
    if times.is_some() {
        text.push_str(",ts");
    }
    text.push('\n');
    for (i, row) in rows.iter().enumerate() {
        text.push_str(&row.join(","));
        if let Some(times) = times {
            text.push(',');
            text.push_str(&times[i]);
        }
        text.push('\n');
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn backtest(home: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["backtest", "--model", "baac-severity"];
    all.extend_from_slice(args);
    vigie(home, &all, &[]).output().unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn failure(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn a_backtest_finds_injected_noise_and_a_what_if_rule_changes_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let home = trained_home(dir.path(), "admin", "a-long-password", true);
    let (header, rows) = holdout();
    let rows: Vec<&Vec<String>> = rows.iter().take(6_000).collect();
    let file = write(dir.path(), "x.csv", &header, &rows, None);
    let out = dir.path().join("out");
    // Every numerical feature (9 of 28: the alert needs 7).
    let noise = r#"{"mode":"gaussian","rate":1.0,"scale":2.0,"seed":3}"#;
    let common = [
        "--features",
        file.to_str().unwrap(),
        "--events-per-second",
        "5",
        "--window-secs",
        "200",
        "--noise",
        noise,
        "--noise-after-events",
        "3000",
    ];
    let mut args = common.to_vec();
    args.extend(["--out", out.to_str().unwrap()]);
    let printed = stdout(&backtest(&home, &args));
    eprintln!("{printed}");
    assert!(
        printed.contains("6000 events read, 6000 counted"),
        "{printed}"
    );
    assert!(
        printed.contains("Noise injected from event 3000"),
        "{printed}"
    );
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let alerts = summary["alerts"].as_array().unwrap();
    let fired = alerts
        .iter()
        .find(|a| a["fired_events"].as_u64().unwrap() > 3000)
        .unwrap_or_else(|| panic!("the noise fired no alert: {summary}"));
    assert!(
        printed.contains("events after the noise started"),
        "{printed}"
    );
    // Every scored window is written, with one decision line per feature.
    let windows = std::fs::read_to_string(out.join("windows.jsonl")).unwrap();
    let records: Vec<Value> = windows
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let features = records[0]["features"].as_array().unwrap().len();
    assert_eq!(features, header.len());
    let decisions = std::fs::read_to_string(out.join("decisions.csv")).unwrap();
    assert_eq!(decisions.lines().count(), 1 + records.len() * features);
    assert!(decisions.starts_with(
        "window,at,start,events,rows,scored,feature,statistic,score,noise_threshold,floor,drifted"
    ));
    let firing_at = fired["fired_events"].as_u64().unwrap();
    assert!(
        records
            .iter()
            .any(|r| r["alert"] == "firing" && r["events"].as_u64() == Some(firing_at)),
        "{fired}"
    );

    // The same stream under rules whose floors nothing passes: no alert.
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "categorical = { statistic = \"tvd\", threshold = 1.0 }\nnumerical = { statistic = \"correlation\", threshold = -1.0 }\n",
    )
    .unwrap();
    let what_if = dir.path().join("what-if");
    let mut args = common.to_vec();
    args.extend([
        "--rules",
        rules.to_str().unwrap(),
        "--out",
        what_if.to_str().unwrap(),
    ]);
    let printed = stdout(&backtest(&home, &args));
    assert!(
        printed.contains("The data-set alert would not have fired"),
        "{printed}"
    );
    assert!(
        printed.contains("Features drifted (scorings): none"),
        "{printed}"
    );
}

/// The BAAC holdout's targets, one per row.
fn targets() -> Vec<String> {
    std::fs::read_to_string(repo().join("data/baac/y_test.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[test]
fn labels_set_each_periods_realised_quality_beside_its_estimate_and_a_shift_fires_the_alert() {
    let dir = tempfile::tempdir().unwrap();
    let home = trained_home(dir.path(), "admin", "a-long-password", true);
    let (header, rows) = holdout();
    let y = targets();
    // 3,000 rows from outside the Paris area, then 2,000 from it (8.6% severe against 42%):
    // a real covariate shift, which the model's own probabilities see.
    let dep = header.iter().position(|h| h == "dep").unwrap();
    let paris = |r: &Vec<String>| ["75", "92", "93", "94"].contains(&r[dep].as_str());
    let order: Vec<usize> = (0..rows.len())
        .filter(|&i| !paris(&rows[i]))
        .take(3_000)
        .chain((0..rows.len()).filter(|&i| paris(&rows[i])).take(2_000))
        .collect();
    let chosen: Vec<&Vec<String>> = order.iter().map(|&i| &rows[i]).collect();
    let file = write(dir.path(), "x.csv", &header, &chosen, None);
    let labels = dir.path().join("y.csv");
    let text: String = order.iter().map(|&i| format!("{}\n", y[i])).collect();
    std::fs::write(&labels, format!("grav\n{text}")).unwrap();
    let out = dir.path().join("out");
    let args = [
        "--features",
        file.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--events-per-second",
        "100",
        "--tumbling-secs",
        "5",
        "--window-secs",
        "5",
        "--label-delay-secs",
        "30",
        "--alert-for-secs",
        "10",
        "--out",
        out.to_str().unwrap(),
    ];
    let printed = stdout(&backtest(&home, &args));
    eprintln!("{printed}");
    assert!(printed.contains("Labels: 5000 joined"), "{printed}");
    assert!(
        printed.contains("Quality on 10 periods with at least 100 labels"),
        "{printed}"
    );
    let periods: Vec<Value> = std::fs::read_to_string(out.join("quality.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(periods.len(), 10);
    let f1 = |p: &Value| {
        (
            p["realised"]["f1"].as_f64().unwrap(),
            p["estimated"]["f1"]["value"].as_f64().unwrap(),
        )
    };
    for p in &periods {
        assert_eq!(
            (p["answers"].as_u64(), p["labelled_share"].as_f64()),
            (Some(500), Some(1.0))
        );
    }
    let mean = |ps: &[Value], k: usize| {
        ps.iter().map(|p| [f1(p).0, f1(p).1][k]).sum::<f64>() / ps.len() as f64
    };
    let (before, after) = periods.split_at(6);
    // Realised F1 falls far; the estimate falls with it, in the same periods.
    assert!(mean(after, 0) < mean(before, 0) - 0.05, "{periods:?}");
    assert!(mean(after, 1) < mean(before, 1) - 0.05, "{periods:?}");
    for p in &periods {
        let (realised, estimated) = f1(p);
        assert!((realised - estimated).abs() < 0.1, "{p}");
    }
    // The estimated F1 alert fires after the shift began, before any label of it came.
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let alerts = summary["quality_alerts"].as_array().unwrap();
    let estimated = alerts
        .iter()
        .find(|a| a["source"] == "estimated" && a["metric"] == "f1")
        .unwrap_or_else(|| panic!("{alerts:?}"));
    let pending = estimated["pending_events"].as_u64().unwrap();
    assert!((3_000..4_000).contains(&pending), "{estimated}");
    assert!(
        alerts
            .iter()
            .any(|a| a["source"] == "realised" && a["metric"] == "f1"),
        "{alerts:?}"
    );
    // Every answer with its truth, for other tools.
    let answers = std::fs::read_to_string(out.join("answers.csv")).unwrap();
    assert_eq!(answers.lines().count(), 5_001);
    assert!(answers.starts_with("event,period_start,probability,class,label\n"));

    // A target file that does not fit the features file is named.
    let short = dir.path().join("short.csv");
    std::fs::write(&short, "grav\n1\n0\n").unwrap();
    let mut bad = args.to_vec();
    bad[3] = short.to_str().unwrap();
    let error = failure(&backtest(&home, &bad));
    assert!(error.contains("short.csv"), "{error}");
    assert!(error.contains("2 target rows"), "{error}");
}

#[test]
fn events_are_placed_at_their_time_and_bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let home = trained_home(dir.path(), "admin", "a-long-password", true);
    let (header, rows) = holdout();
    let rows: Vec<&Vec<String>> = rows.iter().take(1_200).collect();
    // One event a minute from 08:00.
    let start = chrono::DateTime::parse_from_rfc3339("2021-06-01T08:00:00Z").unwrap();
    let times: Vec<String> = (0..rows.len())
        .map(|i| {
            (start + chrono::Duration::minutes(i as i64))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        })
        .collect();
    let timed = write(dir.path(), "timed.csv", &header, &rows, Some(&times));
    // The timed file, windows of 500, writing to `out`, with `extra` flags.
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "--features",
            timed.to_str().unwrap(),
            "--time-column",
            "ts",
            // 500 minutes: the last 500 events, one a minute.
            "--window-secs",
            "30000",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        stdout(&backtest(&home, &args))
    };
    let printed = run(&dir.path().join("out"), &[]);
    assert!(
        printed.contains("Events from 2021-06-01 08:00:00 UTC to 2021-06-02 03:59:00 UTC"),
        "{printed}"
    );
    // 20 hours of events, one scoring per event (each a minute after the last), and the
    // tumbling minutes.
    assert!(
        printed.contains("Sliding window: 1200 scorings"),
        "{printed}"
    );
    assert!(
        printed.contains("Tumbling windows: 1200 closed"),
        "{printed}"
    );
    // All on two days of June: the day of the month drifts (a real shift, found).
    let drifted = printed
        .lines()
        .find(|l| l.starts_with("Features drifted"))
        .unwrap();
    assert!(drifted.contains("jour "), "{printed}");

    // The fixed rules alone: no noise thresholds in the records.
    let fixed = dir.path().join("fixed");
    let printed = run(&fixed, &["--floor-only"]);
    assert!(printed.contains("alone (no noise thresholds)"), "{printed}");
    let windows = std::fs::read_to_string(fixed.join("windows.jsonl")).unwrap();
    assert!(windows.contains("\"noise_threshold\":null"));
    assert!(!windows.contains("\"noise_threshold\":0."));

    // Out of time order: the line and the column.
    let mut shuffled = times.clone();
    shuffled.swap(10, 11);
    let bad = write(dir.path(), "unsorted.csv", &header, &rows, Some(&shuffled));
    let err = failure(&backtest(
        &home,
        &["--features", bad.to_str().unwrap(), "--time-column", "ts"],
    ));
    assert!(err.contains("unsorted.csv line 13 column ts"), "{err}");
    assert!(err.contains("before the time of line 12"), "{err}");
    let err = failure(&backtest(
        &home,
        &[
            "--features",
            timed.to_str().unwrap(),
            "--time-column",
            "when",
        ],
    ));
    assert!(err.contains("line 1 column when: missing column"), "{err}");

    // Another schema: a feature's column missing.
    let short: Vec<String> = header[1..].to_vec();
    let cut: Vec<Vec<String>> = rows.iter().map(|r| r[1..].to_vec()).collect();
    let cut: Vec<&Vec<String>> = cut.iter().collect();
    let other = write(dir.path(), "other.csv", &short, &cut, None);
    let err = failure(&backtest(&home, &["--features", other.to_str().unwrap()]));
    assert!(
        err.contains(&format!(
            "other.csv line 1 column {}: missing column",
            header[0]
        )),
        "{err}"
    );

    // Rules and noise that cannot apply, by field.
    let file = timed.to_str().unwrap();
    let err = failure(&backtest(
        &home,
        &["--features", file, "--false-alarms-per-30-days", "0"],
    ));
    assert!(
        err.contains("drift.false_alarms_per_30_days must be above 0"),
        "{err}"
    );
    let err = failure(&backtest(
        &home,
        &["--features", file, "--dataset-share", "1.5"],
    ));
    assert!(
        err.contains("drift.dataset_share must be in [0, 1]"),
        "{err}"
    );
    let err = failure(&backtest(&home, &["--features", file, "--hysteresis", "0"]));
    assert!(err.contains("drift.hysteresis must be above 0"), "{err}");
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "min_rowz = 10\n").unwrap();
    let err = failure(&backtest(
        &home,
        &["--features", file, "--rules", rules.to_str().unwrap()],
    ));
    assert!(err.contains("min_rowz"), "{err}");
    std::fs::write(&rules, "[null]\nresamples = 300\n").unwrap();
    let err = failure(&backtest(
        &home,
        &["--features", file, "--rules", rules.to_str().unwrap()],
    ));
    assert!(err.contains("drift.null differs"), "{err}");
    let err = failure(&backtest(
        &home,
        &["--features", file, "--noise", r#"{"mode":"fog","rate":1}"#],
    ));
    assert!(err.contains("--noise: unknown mode"), "{err}");
    let err = failure(&backtest(
        &home,
        &[
            "--features",
            file,
            "--noise",
            r#"{"mode":"gaussian","rate":1,"features":["colour"]}"#,
        ],
    ));
    assert!(err.contains("colour"), "{err}");
}

/// The live service and the backtest of its topic, on a real broker (tansu, three
/// partitions): the windows are sums of event-time panes, so the order in which the
/// partitions are read does not matter; the backtest's last window is the service's, every
/// feature's statistic equal to the bit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_of_the_live_topic_scores_what_the_service_scored() {
    let Some(bin) = tansu() else {
        eprintln!("skipped: tansu is needed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = trained_home(dir.path(), "ops", "ops-password-1", true);
    let broker = Broker::started(
        bin,
        None,
        &[
            vigie_stream::PREDICTIONS_TOPIC,
            vigie_stream::PARTIALS_TOPIC,
        ],
    );
    let secret = "an end-to-end secret of at least 32 bytes";
    let window = "3600";
    let (mut drift, drift_url) = start_service(
        &[
            "drift",
            "--drift-listen",
            "127.0.0.1:0",
            "--window-secs",
            window,
            "--score-ms",
            "200",
        ],
        &[
            ("KAFKA_BROKERS", &broker.address()),
            ("VIGIE_JWT_SECRET", secret),
            ("VIGIE_POLL_MS", "200"),
        ],
        &home,
    );
    replay_holdout(&home, 3000, &["--kafka-brokers", &broker.address()], &[]);
    let client = reqwest::Client::new();
    let token = token(&client, &drift_url, "ops", "ops-password-1").await;
    let started = chrono::Utc::now();
    let live = until(
        "a scoring of the 3,000 events",
        std::time::Duration::from_secs(120),
        || async {
            let state = get_json(&client, &format!("{drift_url}/v1/drift"), Some(&token)).await?;
            let model = state["models"][0].clone();
            let at: chrono::DateTime<chrono::Utc> =
                serde_json::from_value(model["sliding"]["at"].clone()).ok()?;
            (model["events"] == 3000 && at > started).then_some(model)
        },
    )
    .await;
    // A scoring after every event was counted.
    let live = until(
        "a later scoring",
        std::time::Duration::from_secs(60),
        || async {
            let state = get_json(&client, &format!("{drift_url}/v1/drift"), Some(&token)).await?;
            let model = state["models"][0].clone();
            (model["sliding"]["at"] != live["sliding"]["at"]).then_some(model)
        },
    )
    .await;

    let out = dir.path().join("out");
    let printed = vigie_ok(
        &home,
        &[
            "backtest",
            "--model",
            "baac-severity",
            "--topic",
            vigie_stream::PREDICTIONS_TOPIC,
            "--kafka-brokers",
            &broker.address(),
            "--window-secs",
            window,
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        printed.contains("3000 events read, 3000 counted"),
        "{printed}"
    );
    let windows = std::fs::read_to_string(out.join("windows.jsonl")).unwrap();
    let last: Value = windows
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .rfind(|w| w["window"] == "sliding")
        .unwrap();
    let report = &live["sliding"]["report"];
    assert_eq!(last["rows"], 3000);
    assert_eq!(report["current_rows"], 3000);
    let scores = |features: &Value, key: &str| -> Vec<(String, f64)> {
        features
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap().to_string(),
                    f[key].as_f64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        scores(&report["features"], "score"),
        scores(&last["features"], "score")
    );
    let floors: Vec<(String, f64)> = report["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["rule"]["threshold"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(floors, scores(&last["features"], "floor"));
    assert!(drift.terminate().success());
}
