//! Black-box tests of the Chicago crash-type model, the third model `vigie up` serves beside
//! BAAC and the London Fire Brigade: text codes and a text target, the portal's exports as they
//! are (column names whose case changed, extra columns, quoted fields, codes the spec does not
//! list), the holdout through the HTTP API beside scikit-learn, and the real shift between
//! June 2019 and April 2026 seen by the drift service.

#![allow(clippy::unwrap_used)] // Test helpers: a failed setup should panic loudly.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

const MODEL: &str = "chicago-crash-type";
const WINDOW: u64 = 1_000;
const POSITIVE: &str = "INJURY AND / OR TOW DUE TO CRASH";

fn chicago(file: &str) -> std::path::PathBuf {
    repo().join("data/chicago").join(file)
}

/// A CSV file (quotes honoured) as its header and its records.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut records = Vec::new();
    let (mut record, mut field, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => record.push(std::mem::take(&mut field)),
            '\n' if !quoted => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            '\r' if !quoted => {}
            c => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    let header = records.remove(0);
    (header, records)
}

/// A CSV field, quoted when it must be.
fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

fn to_csv(header: &[String], rows: &[&Vec<String>]) -> String {
    let mut body = header
        .iter()
        .map(|h| quote(h))
        .collect::<Vec<_>>()
        .join(",");
    body.push('\n');
    for row in rows {
        body.push_str(&row.iter().map(|f| quote(f)).collect::<Vec<_>>().join(","));
        body.push('\n');
    }
    body
}

/// Uploads a CSV body to the model's CSV endpoint: the answer's lines (header dropped) and its
/// `x-ignored-columns` header.
async fn upload(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: Vec<u8>,
) -> (Vec<Vec<String>>, String) {
    let request = client
        .post(format!("{url}/v1/models/{MODEL}/predict/csv"))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .header("x-vigie-source", "replay")
        .body(body);
    let response = expect(request, 200).await;
    let ignored = response
        .headers()
        .get("x-ignored-columns")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let path =
        std::env::temp_dir().join(format!("vigie-chicago-answer-{}.csv", std::process::id()));
    std::fs::write(&path, &text).unwrap();
    let (_, rows) = read_csv(&path);
    let _ = std::fs::remove_file(path);
    (rows, ignored)
}

/// The features a scoring flagged, as a set.
fn drifted_set(model: &Value) -> BTreeSet<String> {
    drifted(model).into_iter().collect()
}

/// ROC AUC of `scores` against `truth` (ties count half).
fn roc_auc(truth: &[bool], scores: &[f64]) -> f64 {
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(truth.iter().copied()).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < pairs.len() {
        let mut j = i;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        let rank = (i + j + 1) as f64 / 2.0;
        rank_sum += rank * pairs[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    let positives = truth.iter().filter(|&&t| t).count() as f64;
    let negatives = truth.len() as f64 - positives;
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// scikit-learn's HistGradientBoosting ROC AUC on the same split (benchmarks/sklearn_chicago.py),
/// when Python has scikit-learn; CI requires it (VIGIE_REQUIRE_SKLEARN=1).
fn sklearn_hgb_auc() -> Option<f64> {
    let available = Command::new("python3")
        .args(["-c", "import sklearn, pandas"])
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        assert!(
            std::env::var("VIGIE_REQUIRE_SKLEARN").is_err(),
            "VIGIE_REQUIRE_SKLEARN is set but python3 cannot import sklearn and pandas"
        );
        eprintln!("skipping the comparison with scikit-learn: python3 has no sklearn");
        return None;
    }
    let out = tempfile::NamedTempFile::new().unwrap();
    let status = Command::new("python3")
        .arg(repo().join("benchmarks/sklearn_chicago.py"))
        .arg("--json")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    let rows: Value = serde_json::from_slice(&std::fs::read(out.path()).unwrap()).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["model"]
                .as_str()
                .unwrap()
                .starts_with("HistGradientBoosting")
        })
        .map(|r| r["roc_auc"].as_f64().unwrap())
}

/// Per feature, the total-variation distance between the shares of its values in two files
/// (the values as the files spell them; names matched ignoring case): what the drift rule of
/// a categorical feature measures.
fn shares_moved(
    reference: &(Vec<String>, Vec<Vec<String>>),
    current: &(Vec<String>, Vec<Vec<String>>),
    feature: &str,
) -> f64 {
    let shares = |(header, rows): &(Vec<String>, Vec<Vec<String>>)| {
        let c = header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(feature))
            .unwrap();
        let mut counts: BTreeMap<String, f64> = BTreeMap::new();
        for row in rows {
            *counts.entry(row[c].trim().to_string()).or_default() += 1.0;
        }
        counts
            .into_iter()
            .map(|(k, n)| (k, n / rows.len() as f64))
            .collect::<BTreeMap<_, _>>()
    };
    let (a, b) = (shares(reference), shares(current));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.iter()
        .map(|k| (a.get(*k).unwrap_or(&0.0) - b.get(*k).unwrap_or(&0.0)).abs())
        .sum::<f64>()
        / 2.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_models_side_by_side_and_the_2026_export_as_the_portal_gives_it() {
    let home = tempfile::tempdir().unwrap();
    let (_up, password) = start_up_with(
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
        &[MODEL],
    );
    let (url, drift_url) = (
        printed(&_up, "prediction service"),
        printed(&_up, "drift service"),
    );
    let client = reqwest::Client::new();
    let token = token(&client, &url, "admin", &password).await;

    // Three models, each with its own request schema in the OpenAPI document.
    let models = json_of(client.get(format!("{url}/v1/models")).bearer_auth(&token)).await;
    let names: BTreeSet<&str> = models
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["baac-severity", "chicago-crash-type", "lfb-response-time"]),
        "{models}"
    );
    let doc = json_of(client.get(format!("{url}/openapi.json"))).await;
    let features = &doc["components"]["schemas"][format!("Features.{MODEL}")];
    assert!(
        features["properties"]["WEATHER_CONDITION"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("RAIN")),
        "{features}"
    );
    assert!(
        features["properties"]["STREET_NAME"]["enum"].is_null(),
        "open vocabulary"
    );
    assert!(
        features["description"]
            .as_str()
            .unwrap()
            .contains("ignoring case")
    );
    for other in ["baac-severity", "lfb-response-time"] {
        assert!(doc["paths"][format!("/v1/models/{other}/predict")].is_object());
    }

    // The holdout as it is (CRASH_DATE is no feature: ignored and listed), ranked at least as
    // well as scikit-learn's HistGradientBoosting on the same files.
    let holdout = std::fs::read(chicago("X_test.csv")).unwrap();
    let (answers, ignored) = upload(&client, &url, &token, holdout).await;
    assert_eq!(ignored, "CRASH_DATE");
    let (_, truth) = read_csv(&chicago("y_test.csv"));
    assert_eq!(answers.len(), truth.len());
    let errors: Vec<&Vec<String>> = answers.iter().filter(|a| !a[4].is_empty()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let truth: Vec<bool> = truth.iter().map(|t| t[0] == POSITIVE).collect();
    let scores: Vec<f64> = answers.iter().map(|a| a[3].parse().unwrap()).collect();
    let auc = roc_auc(&truth, &scores);
    let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
    for (a, &t) in answers.iter().zip(&truth) {
        match (a[1] == "1", t) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fn_ += 1.0,
            _ => {}
        }
    }
    let f1 = 2.0 * tp / (2.0 * tp + fp + fn_);
    eprintln!("holdout through the API: ROC AUC {auc:.4}, F1 {f1:.4} at the served threshold");
    if let Some(hgb) = sklearn_hgb_auc() {
        eprintln!("scikit-learn HistGradientBoosting (default): ROC AUC {hgb:.4}");
        assert!(
            auc >= hgb,
            "ROC AUC {auc:.4} below HistGradientBoosting's {hgb:.4}"
        );
    }
    let mut published = answers.len() as u64;

    // A random 1,000-row slice of the holdout flags no feature (BEAT_OF_OCCURRENCE has 270-odd
    // beats: a raw TVD over 1,000 rows is large without any drift).
    let (header, rows) = read_csv(&chicago("X_test.csv"));
    let mut picked: Vec<&Vec<String>> = rows.iter().collect();
    let mut seed: u64 = 2026;
    for i in (1..picked.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        picked.swap(i, (seed >> 33) as usize % (i + 1));
    }
    picked.truncate(WINDOW as usize);
    let_the_window_pass().await;
    let (answers, _) = upload(&client, &url, &token, to_csv(&header, &picked).into_bytes()).await;
    published += answers.len() as u64;
    let model = scored_after(&client, &drift_url, &token, MODEL, published).await;
    assert_eq!(
        model["sliding"]["report"]["current_rows"], WINDOW,
        "{model}"
    );
    assert_eq!(
        drifted_set(&model),
        BTreeSet::new(),
        "a 2019 slice: {model}"
    );
    assert!(
        model["unseen_codes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["feature"] == "STREET_NAME")
    );

    // The April 2026 export, byte for byte as the portal gives it: lower-case quoted names, 48
    // columns, codes the spec does not list.
    let export = std::fs::read(chicago("crashes_2026-04.csv")).unwrap();
    let_the_window_pass().await;
    let (answers, ignored) = upload(&client, &url, &token, export).await;
    assert_eq!(answers.len(), 1000);
    let errors: Vec<&Vec<String>> = answers.iter().filter(|a| !a[4].is_empty()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let ignored: BTreeSet<&str> = ignored.split(',').collect();
    for column in [
        "crash_record_id",
        "crash_type",
        "damage",
        "most_severe_injury",
        "location",
    ] {
        assert!(ignored.contains(column), "{column} not in {ignored:?}");
    }
    assert_eq!(ignored.len(), 48 - 22);
    published += 1000;
    let model = scored_after(&client, &drift_url, &token, MODEL, published).await;
    let live = drifted_set(&model);

    // What moved, computed from the two files: `vigie drift-report` reads the training file and
    // the export as they are, with the spec's rules.
    let out = tempfile::tempdir().unwrap();
    let spec = home.path().join(format!("models/{MODEL}.toml"));
    let printed = vigie_ok(
        home.path(),
        &[
            "drift-report",
            "--spec",
            spec.to_str().unwrap(),
            "--reference",
            chicago("X_train.csv").to_str().unwrap(),
            "--current",
            chicago("crashes_2026-04.csv").to_str().unwrap(),
            "--out",
            out.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        printed.contains("26 columns that are no feature"),
        "{printed}"
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("drift-report.json")).unwrap())
            .unwrap();
    let expected: BTreeSet<String> = report["report"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["drifted"] == true)
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    eprintln!("2026: the drift service flagged {live:?}; the files say {expected:?}");
    assert_eq!(live, expected);
    assert!(!expected.is_empty(), "seven years apart, something moved");
    // And, independently of Vigie's code, each categorical feature whose shares clearly moved
    // beyond the rule's floor (TVD 0.1) is flagged, and none that clearly stayed.
    let (train, export) = (
        read_csv(&chicago("X_train.csv")),
        read_csv(&chicago("crashes_2026-04.csv")),
    );
    for f in report["report"]["features"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        if f["kind"] != "categorical" || name == "BEAT_OF_OCCURRENCE" || name == "STREET_NAME" {
            continue;
        }
        let moved = shares_moved(&train, &export, name);
        eprintln!("{name}: shares moved by {moved:.3}");
        if moved > 0.15 {
            assert!(
                live.contains(name),
                "{name} moved by {moved:.3}, not flagged"
            );
        }
        if moved < 0.05 {
            assert!(
                !live.contains(name),
                "{name} moved by {moved:.3} only, flagged"
            );
        }
    }

    // Unseen street names: counted by value, shown on /v1/drift, the report and /metrics; the
    // count is the files' own.
    let listed: BTreeSet<&String> = {
        let c = train.0.iter().position(|h| h == "STREET_NAME").unwrap();
        train.1.iter().map(|r| &r[c]).collect()
    };
    let c = export.0.iter().position(|h| h == "street_name").unwrap();
    let mut new_streets: BTreeMap<&str, u64> = BTreeMap::new();
    for row in &export.1 {
        if !row[c].is_empty() && !listed.contains(&row[c]) {
            *new_streets.entry(row[c].as_str()).or_default() += 1;
        }
    }
    assert!(!new_streets.is_empty());
    let streets = model["unseen_codes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["feature"] == "STREET_NAME")
        .unwrap()
        .clone();
    let before: u64 = {
        // The 2019 uploads' unseen streets (holdout streets the training rows never named).
        let (h, rows) = read_csv(&chicago("X_test.csv"));
        let c = h.iter().position(|h| h == "STREET_NAME").unwrap();
        let all: u64 = rows.iter().filter(|r| !listed.contains(&r[c])).count() as u64;
        let slice: u64 = picked.iter().filter(|r| !listed.contains(&r[c])).count() as u64;
        all + slice
    };
    let total: u64 = new_streets.values().sum();
    assert_eq!(
        streets["events"].as_u64().unwrap(),
        before + total,
        "{streets}"
    );
    let top = &streets["top"][0];
    assert!(top["events"].as_u64().unwrap() >= 1);
    let text = metrics(&client, &drift_url).await;
    assert_eq!(
        metric(
            &text,
            &format!("vigie_drift_unseen_codes_total{{feature=\"STREET_NAME\",model=\"{MODEL}\"}}")
        ),
        (before + total) as f64
    );
    assert!(
        text.contains("vigie_drift_unseen_code_events{code="),
        "{text}"
    );
    let page = expect(
        client
            .get(format!("{drift_url}/v1/drift/report?model={MODEL}"))
            .bearer_auth(&token),
        200,
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(page.contains("Codes the spec does not list"));
    assert!(page.contains("STREET_NAME"));

    // The other models' drift is their own: none of these events counted for them.
    for other in ["baac-severity", "lfb-response-time"] {
        let request = client
            .get(format!("{drift_url}/v1/drift?model={other}"))
            .bearer_auth(&token);
        let state: Value = expect(request, 200).await.json().await.unwrap();
        assert_eq!(state["models"][0]["events"], 0, "{other}");
    }

    // Bad input through the API: a header without a feature, a code the spec refuses, an
    // unlisted street (answered), a file in another encoding.
    let request = client
        .post(format!("{url}/v1/models/{MODEL}/predict/csv"))
        .bearer_auth(&token)
        .header("content-type", "text/csv")
        .body(
            String::from_utf8(std::fs::read(chicago("crashes_2026-04.csv")).unwrap())
                .unwrap()
                .replacen("\"weather_condition\",", "", 1),
        );
    let e: Value = expect(request, 422).await.json().await.unwrap();
    assert_eq!(e["field"], "WEATHER_CONDITION", "{e}");
    let row = |weather: &str, street: &str| {
        let (h, rows) = read_csv(&chicago("X_test.csv"));
        let mut features = serde_json::Map::new();
        for (name, cell) in h.iter().zip(&rows[0]) {
            if name == "CRASH_DATE" {
                continue;
            }
            let value = match name.as_str() {
                "WEATHER_CONDITION" => json!(weather),
                "STREET_NAME" => json!(street),
                _ if cell.is_empty() => Value::Null,
                _ => cell
                    .parse::<i64>()
                    .map(Value::from)
                    .or_else(|_| cell.parse::<f64>().map(Value::from))
                    .unwrap_or_else(|_| json!(cell)),
            };
            features.insert(name.clone(), value);
        }
        json!({ "features": features })
    };
    let predict = format!("{url}/v1/models/{MODEL}/predict");
    let request = client
        .post(&predict)
        .bearer_auth(&token)
        .json(&row("HAIL", "STATE ST"));
    let e: Value = expect(request, 422).await.json().await.unwrap();
    assert_eq!(e["field"], "WEATHER_CONDITION", "{e}");
    assert!(e["message"].as_str().unwrap().contains("HAIL"), "{e}");
    let request = client
        .post(&predict)
        .bearer_auth(&token)
        .json(&row("RAIN", "A STREET NOBODY NAMED"));
    let answer: Value = expect(request, 200).await.json().await.unwrap();
    assert!(answer["probability"].as_f64().is_some(), "{answer}");
    // Field names in lower case, as the 2026 export spells them: the same answer. The same
    // feature under both spellings is named twice.
    let upper = row("RAIN", "STATE ST");
    let lower: serde_json::Map<String, Value> = upper["features"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.to_lowercase(), v.clone()))
        .collect();
    let mut answers = Vec::new();
    for body in [upper.clone(), json!({ "features": lower })] {
        let request = client.post(&predict).bearer_auth(&token).json(&body);
        let answer: Value = expect(request, 200).await.json().await.unwrap();
        answers.push(answer["probability"].as_f64().unwrap());
    }
    assert_eq!(answers[0], answers[1]);
    let mut twice = upper.clone();
    twice["features"]["weather_condition"] = json!("RAIN");
    let request = client.post(&predict).bearer_auth(&token).json(&twice);
    let e: Value = expect(request, 422).await.json().await.unwrap();
    assert_eq!(e["error"], "duplicate_field", "{e}");
    // Latin-1 bytes: the header is read, the row says it is not UTF-8, the others are answered.
    let (h, rows) = read_csv(&chicago("X_test.csv"));
    let mut latin1 = to_csv(&h, &[&rows[0]]).into_bytes();
    let mut bad_row = to_csv(&h, &[&rows[1]]).into_bytes();
    bad_row.drain(..bad_row.iter().position(|&b| b == b'\n').unwrap() + 1);
    let at = bad_row.iter().position(|&b| b == b',').unwrap();
    bad_row.insert(at, 0xE9); // "é" in Latin-1
    latin1.extend(bad_row);
    let (answers, _) = upload(&client, &url, &token, latin1).await;
    assert_eq!(answers.len(), 2);
    assert!(answers[0][4].is_empty(), "{answers:?}");
    assert!(answers[1][4].contains("UTF-8"), "{answers:?}");
    // UTF-16 (a spreadsheet's "Unicode text"): the header cannot be read, and the answer says so.
    let utf16: Vec<u8> = std::iter::once(0xFEFFu16)
        .chain(to_csv(&h, &[&rows[0]]).encode_utf16())
        .flat_map(u16::to_le_bytes)
        .collect();
    let request = client
        .post(format!("{url}/v1/models/{MODEL}/predict/csv"))
        .bearer_auth(&token)
        .header("content-type", "text/csv")
        .body(utf16);
    let e: Value = expect(request, 400).await.json().await.unwrap();
    assert_eq!(e["error"], "invalid_csv", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("header line is not valid UTF-8"),
        "{e}"
    );
}

#[test]
fn bad_chicago_files_are_refused_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for file in ["X_train.csv", "y_train.csv", "X_test.csv", "y_test.csv"] {
        std::fs::copy(chicago(file), data.join(file)).unwrap();
    }
    let spec_text = std::fs::read_to_string(repo().join(format!("models/{MODEL}.toml")))
        .unwrap()
        .replace("\"../data/chicago/", &format!("\"{}/", data.display()))
        .replace("iterations = 200", "iterations = 5")
        .replace("bags = 3", "bags = 1");
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, spec_text).unwrap();
    let train = |what: &str| {
        let out = vigie(&home, &["train", "--spec", spec.to_str().unwrap()], &[])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{what}: trained anyway");
        let models = vigie_ok(&home, &["models", "list"], &[]);
        assert!(!models.contains(MODEL), "{what}: half written: {models}");
        stderr
    };
    let y = data.join("y_train.csv");
    let original = std::fs::read_to_string(&y).unwrap();

    // A target that is neither class.
    std::fs::write(
        &y,
        original.replacen("NO INJURY / DRIVE AWAY", "UNKNOWN", 1),
    )
    .unwrap();
    let e = train("a bad target");
    let line = original
        .lines()
        .position(|l| l == "NO INJURY / DRIVE AWAY")
        .unwrap()
        + 1;
    assert!(
        e.contains(&format!(
            "y_train.csv line {line} column CRASH_TYPE: target \"UNKNOWN\" is neither"
        )),
        "{e}"
    );
    std::fs::write(&y, &original).unwrap();

    // A header without a feature.
    let x = data.join("X_train.csv");
    let features = std::fs::read_to_string(&x).unwrap();
    std::fs::write(&x, features.replacen("WEATHER_CONDITION", "WEATHER", 1)).unwrap();
    let e = train("a missing column");
    assert!(
        e.contains("X_train.csv line 1 column WEATHER_CONDITION: missing column"),
        "{e}"
    );

    // Another encoding: Latin-1 bytes on line 3.
    let mut bytes = features.clone().into_bytes();
    let second_line = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    let third_line = second_line
        + bytes[second_line..]
            .iter()
            .position(|&b| b == b'\n')
            .unwrap()
        + 1;
    bytes.insert(third_line + 1, 0xE9);
    std::fs::write(&x, bytes).unwrap();
    let e = train("Latin-1 bytes");
    assert!(
        e.contains("X_train.csv line 3: not valid UTF-8 text"),
        "{e}"
    );

    // A code the spec refuses, in training data.
    std::fs::write(&x, features.replacen(",RAIN,", ",HAIL,", 1)).unwrap();
    let e = train("an unknown code");
    assert!(
        e.contains("column WEATHER_CONDITION: unknown code \"HAIL\""),
        "{e}"
    );
    std::fs::write(&x, &features).unwrap();
}
