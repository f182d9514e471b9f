//! Helpers of the black-box tests that run `vigie` services as processes.

#![allow(dead_code)] // Each test file uses a part.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Map, Value};

pub const VIGIE: &str = env!("CARGO_BIN_EXE_vigie");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of the BAAC spec with absolute data paths and a quick algorithm (one booster of
/// 20 rounds): the service tests need a real model, not a good one.
pub fn quick_spec(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("models/baac-severity.toml")).unwrap();
    let data = repo().join("data/baac");
    let text = text
        .replace("\"../data/baac/", &format!("\"{}/", data.display()))
        .replace("iterations = 200", "iterations = 20")
        .replace("bags = 3", "bags = 1");
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("baac-severity.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The holdout features: the header and the rows as text cells.
pub fn holdout() -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(repo().join("data/baac/X_test.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    (header, rows)
}

/// A holdout row as a prediction request's features (numbers, null for empty cells).
pub fn features(header: &[String], row: &[String]) -> Map<String, Value> {
    header
        .iter()
        .zip(row)
        .map(|(name, cell)| {
            let value = if cell.is_empty() {
                Value::Null
            } else {
                let v: f64 = cell.parse().unwrap();
                if v.fract() == 0.0 {
                    Value::from(v as i64)
                } else {
                    Value::from(v)
                }
            };
            (name.clone(), value)
        })
        .collect()
}

/// A child process whose stdout lines arrive on a channel; killed when dropped.
pub struct Service {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Service {
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Service {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line containing `needle` (panics if the process ends first or
    /// nothing comes for `patience`) and returns it.
    pub fn wait_for(&mut self, needle: &str, patience: Duration) -> String {
        loop {
            match self.lines.recv_timeout(patience) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no line with {needle:?} ({e}); the process printed:\n{}\nexit: {:?}",
                    self.seen.join("\n"),
                    self.child.try_wait()
                ),
            }
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        self.child.wait().unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// The first word after `label` in `line`.
pub fn after<'a>(line: &'a str, label: &str) -> &'a str {
    let rest = &line[line
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} in {line:?}"))
        + label.len()..];
    rest.split_whitespace().next().unwrap()
}

/// Runs `vigie` to completion with `home` as VIGIE_HOME and returns its stdout.
pub fn vigie_ok(home: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = Command::new(VIGIE);
    command
        .args(args)
        .env("VIGIE_HOME", home)
        .env_remove("DATABASE_URL");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "vigie {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One value of a Prometheus text exposition (the sum over series matching `prefix`).
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The service's `/metrics` text.
pub async fn metrics(client: &reqwest::Client, url: &str) -> String {
    client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A token from `/auth/token`.
pub async fn token(client: &reqwest::Client, url: &str, name: &str, password: &str) -> String {
    let answer: Value = client
        .post(format!("{url}/auth/token"))
        .form(&[("username", name), ("password", password)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {answer}"))
        .to_string()
}
