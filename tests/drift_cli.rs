//! Black-box tests of `vigie drift-report` and `vigie synthetic` on the real BAAC files.

#![allow(clippy::unwrap_used)] // Test helpers: a failed setup should panic loudly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VIGIE: &str = env!("CARGO_BIN_EXE_vigie");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vigie(args: &[&str]) -> Output {
    Command::new(VIGIE).args(args).output().unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `vigie drift-report` of `current` against the BAAC training features, written to `out`.
fn drift_report(current: &Path, out: &Path) -> Output {
    let spec = repo().join("models/baac-severity.toml");
    let train = repo().join("data/baac/X_train.csv");
    vigie(&[
        "drift-report",
        "--spec",
        path(&spec),
        "--reference",
        path(&train),
        "--current",
        path(current),
        "--out",
        path(out),
    ])
}

#[test]
fn drift_report_writes_html_and_json_and_flags_a_shift() {
    let dir = tempfile::tempdir().unwrap();
    let test = repo().join("data/baac/X_test.csv");
    let out = dir.path().join("same");
    let run = drift_report(&test, &out);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("0 of 28 features drifted"), "{stdout}");
    let html = std::fs::read_to_string(out.join("drift-report.html")).unwrap();
    assert!(html.contains("id=\"f-victim_age\"") && !html.contains("<script"));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("drift-report.json")).unwrap()).unwrap();
    assert_eq!(json["report"]["current_rows"], 16410);
    assert_eq!(json["report"]["features"].as_array().unwrap().len(), 28);

    // Night-time rows only (lum is the 17th column; 1 is daylight): lum drifts.
    let text = std::fs::read_to_string(&test).unwrap();
    let mut lines = text.lines();
    let mut night = format!("{}\n", lines.next().unwrap());
    for line in lines.filter(|l| l.split(',').nth(16) != Some("1")) {
        night.push_str(line);
        night.push('\n');
    }
    let night_file = dir.path().join("night.csv");
    std::fs::write(&night_file, night).unwrap();
    let out = dir.path().join("night");
    let run = drift_report(&night_file, &out);
    assert!(run.status.success());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("drift-report.json")).unwrap()).unwrap();
    let lum = json["report"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "lum")
        .unwrap()
        .clone();
    assert_eq!(lum["drifted"], true, "{lum}");

    // A bad value is named by file, line and column, and nothing is written.
    let bad = dir.path().join("bad.csv");
    let mut text = std::fs::read_to_string(&test).unwrap();
    text.push_str("10,3,2,0.0,2021,19.0,2.0,1.0,1.0,4,2.0,1.0,1.0,30.0,4,11,5,59,59350,2,2,0.0,6.0,50.6,3.05,25,4,1\n");
    std::fs::write(&bad, text).unwrap();
    let out = dir.path().join("bad");
    let run = drift_report(&bad, &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr.contains("line 16412") && stderr.contains("hour"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn synthetic_rows_are_written_with_their_fidelity() {
    let dir = tempfile::tempdir().unwrap();
    let spec = repo().join("models/baac-severity.toml");
    let csv = dir.path().join("synthetic.csv");
    let report = dir.path().join("fidelity.json");
    let run = vigie(&[
        "synthetic",
        "--spec",
        path(&spec),
        "--rows",
        "2000",
        "--no-tstr",
        "--out",
        path(&csv),
        "--report",
        path(&report),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("place,catu,sexe,"));
    assert_eq!(lines.count(), 2000);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let gap = |k: &str| json[k]["mean_association_gap"].as_f64().unwrap();
    assert!(gap("network") < gap("independent_columns"), "{json}");
    assert_eq!(json["network"]["columns"].as_array().unwrap().len(), 29);
}
