//! Helpers of the black-box tests that run `vigie` services as processes.

#![allow(dead_code)] // Each test file uses a part.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

pub mod browser;

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
        // Logs as text on the inherited stderr (shown with --nocapture), unless the test
        // chose otherwise; stdout carries the lines tests wait for.
        if !command.get_envs().any(|(k, _)| k == "VIGIE_LOG_FORMAT") {
            command.env("VIGIE_LOG_FORMAT", "text");
        }
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

/// The tansu binary (a real Kafka-protocol broker), or `None` when it is not installed;
/// a failure instead when VIGIE_REQUIRE_TANSU=1 (as CI sets).
pub fn tansu() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("TANSU").map(PathBuf::from),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu")),
        Some(PathBuf::from("/usr/local/bin/tansu")),
    ];
    let found = candidates.into_iter().flatten().find(|p| p.is_file());
    if found.is_none() && std::env::var("VIGIE_REQUIRE_TANSU").as_deref() == Ok("1") {
        panic!(
            "VIGIE_REQUIRE_TANSU=1 but no tansu binary (set TANSU or install it in ~/.cargo/bin)"
        );
    }
    found
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tansu broker storing its data in an SQLite file (so a restart keeps the messages), or in
/// memory when `storage` is `None`.
pub struct Broker {
    pub bin: PathBuf,
    pub port: u16,
    pub storage: Option<PathBuf>,
    pub child: Option<Child>,
}

impl Broker {
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) {
        let url = format!("tcp://{}", self.address());
        let mut command = Command::new(&self.bin);
        command.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
        ]);
        match &self.storage {
            // tansu reads the path of a sqlite:// URL relative to its working directory.
            Some(file) => command
                .arg(format!(
                    "sqlite://{}",
                    file.file_name().unwrap().to_string_lossy()
                ))
                .current_dir(file.parent().unwrap()),
            None => command.arg("memory://tansu/"),
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Ready when it accepts connections.
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(self.address()).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn create_topic(&self, topic: &str) {
        let status = Command::new(&self.bin)
            .args([
                "topic",
                "create",
                topic,
                "--broker",
                &format!("tcp://{}", self.address()),
                "--partitions",
                "3",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "tansu topic create {topic}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `vigie up` on embedded defaults in `home` (the quick spec, both services on ports the system
/// chooses), with `extra` flags, started: the process (its first lines read) and the admin's
/// password.
pub fn start_up(home: &Path, extra: &[&str]) -> (Service, String) {
    let specs = home.join("models");
    quick_spec(&specs);
    let mut command = Command::new(VIGIE);
    command
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--drift-listen",
            "127.0.0.1:0",
            "--trainer-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .arg("--models-dir")
        .arg(&specs)
        .env("VIGIE_HOME", home)
        .env("VIGIE_POLL_MS", "200")
        .env_remove("DATABASE_URL")
        .env_remove("KAFKA_BROKERS")
        .env_remove("VIGIE_JWT_SECRET");
    let mut up = Service::spawn(command);
    let admin = up.wait_for("admin account", Duration::from_secs(600));
    let password = after(&admin, "admin / ").to_string();
    up.wait_for("Stop with Ctrl-C", Duration::from_secs(60));
    (up, password)
}

/// The first word after `label` on the first line `service` printed with it.
pub fn printed(service: &Service, label: &str) -> String {
    let line = service
        .seen
        .iter()
        .find(|l| l.contains(label))
        .unwrap_or_else(|| panic!("no line with {label:?}: {:?}", service.seen));
    after(line, label).to_string()
}

/// `vigie predict` on `brokers` with the registry in `home`, started: the process and its URL.
pub fn start_predict(home: &Path, brokers: &str, secret: &str) -> (Service, String) {
    let mut command = Command::new(VIGIE);
    command
        .args(["predict", "--listen", "127.0.0.1:0", "--poll-ms", "200"])
        .env("VIGIE_HOME", home)
        .env("KAFKA_BROKERS", brokers)
        .env("VIGIE_JWT_SECRET", secret)
        .env_remove("DATABASE_URL");
    let mut service = Service::spawn(command);
    let line = service.wait_for("listening on", Duration::from_secs(120));
    let url = after(&line, "listening on").to_string();
    (service, url)
}
