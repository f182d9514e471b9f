//! Helpers of the black-box tests that run `vigie` services as processes.

#![allow(dead_code)] // Each test file uses a part.

use std::future::Future;
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
    quick_copy(dir, "baac-severity")
}

/// `models/{name}.toml` copied into `dir` with absolute data paths and one booster of 20 rounds.
fn quick_copy(dir: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo().join(format!("models/{name}.toml"))).unwrap();
    let data = repo().join("data");
    let text = text
        .replace("\"../data/", &format!("\"{}/", data.display()))
        .replace("iterations = 200", "iterations = 20")
        .replace("bags = 3", "bags = 1");
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A copy of the London Fire Brigade spec with absolute data paths and a quick algorithm (one
/// booster of 20 rounds), beside the BAAC one: `vigie up` serves a classification and a
/// regression side by side.
pub fn quick_lfb_spec(dir: &Path) -> PathBuf {
    quick_copy(dir, "lfb-response-time")
}

/// A copy of the Chicago crash-type spec with absolute data paths and a quick algorithm: the
/// third model `vigie up` serves, with text codes and names matched ignoring case.
pub fn quick_chicago_spec(dir: &Path) -> PathBuf {
    quick_copy(dir, "chicago-crash-type")
}

/// The London Fire Brigade holdout: the header and the rows as text cells (no quotes in it).
pub fn lfb_holdout() -> (Vec<String>, Vec<Vec<String>>) {
    csv_cells(&std::fs::read_to_string(repo().join("data/lfb/X_test.csv")).unwrap())
}

/// A London Fire Brigade row as a request's features: numbers where the cell is one, text
/// otherwise.
pub fn lfb_features(header: &[String], row: &[String]) -> Map<String, Value> {
    header
        .iter()
        .zip(row)
        .map(|(name, cell)| {
            let value = cell
                .parse::<i64>()
                .map_or_else(|_| Value::from(cell.as_str()), Value::from);
            (name.clone(), value)
        })
        .collect()
}

/// A CSV file without quotes as its header and its rows of text cells.
fn csv_cells(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
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

/// The holdout features: the header and the rows as text cells.
pub fn holdout() -> (Vec<String>, Vec<Vec<String>>) {
    csv_cells(&std::fs::read_to_string(repo().join("data/baac/X_test.csv")).unwrap())
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

/// `DIR/home` with the quick spec's model trained (from `DIR/models`) and an account `name`
/// whose password is `password` (an admin with `admin`).
pub fn trained_home(dir: &Path, name: &str, password: &str, admin: bool) -> PathBuf {
    let home = dir.join("home");
    let spec = quick_spec(&dir.join("models"));
    vigie_ok(&home, &["train", "--spec", spec.to_str().unwrap()], &[]);
    let mut args = vec!["users", "add", name];
    if admin {
        args.push("--admin");
    }
    vigie_ok(&home, &args, &[("VIGIE_PASSWORD", password)]);
    home
}

/// The first word after `label` in `line`.
pub fn after<'a>(line: &'a str, label: &str) -> &'a str {
    let rest = &line[line
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} in {line:?}"))
        + label.len()..];
    rest.split_whitespace().next().unwrap()
}

/// `vigie ARGS` with `home` as VIGIE_HOME and `env` (DATABASE_URL unset unless given).
pub fn vigie(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(VIGIE);
    command
        .args(args)
        .env("VIGIE_HOME", home)
        .env_remove("DATABASE_URL");
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

/// Runs `vigie` to completion with `home` as VIGIE_HOME and returns its stdout.
pub fn vigie_ok(home: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = vigie(home, args, env).output().unwrap();
    assert!(
        out.status.success(),
        "vigie {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Replays the first `count` BAAC holdout rows as prediction events of baac-severity with
/// `vigie events replay` (`extra`: more of its flags); returns `count`.
pub fn replay_holdout(home: &Path, count: usize, extra: &[&str], env: &[(&str, &str)]) -> u64 {
    let features = repo().join("data/baac/X_test.csv");
    let count_text = count.to_string();
    let mut args = vec![
        "events",
        "replay",
        "--model",
        "baac-severity",
        "--features",
        features.to_str().unwrap(),
        "--count",
        &count_text,
    ];
    args.extend_from_slice(extra);
    let out = vigie_ok(home, &args, env);
    assert!(out.contains(&format!("replayed {count} events")), "{out}");
    count as u64
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
    expect(client.get(format!("{url}/metrics")), 200)
        .await
        .text()
        .await
        .unwrap()
}

/// A token from `/auth/token`.
pub async fn token(client: &reqwest::Client, url: &str, name: &str, password: &str) -> String {
    let answer = json_of(
        client
            .post(format!("{url}/auth/token"))
            .form(&[("username", name), ("password", password)]),
    )
    .await;
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {answer}"))
        .to_string()
}

/// Sends `request` and returns its JSON answer, whatever its status (panics when the
/// request fails or the body is not JSON).
pub async fn json_of(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}, not JSON ({e}): {text}"))
}

/// Sends `request` and returns its response once its status is `status` (panics with the
/// body otherwise).
pub async fn expect(request: reqwest::RequestBuilder, status: u16) -> reqwest::Response {
    let response = request.send().await.unwrap();
    if response.status().as_u16() != status {
        let got = response.status();
        let body = response.text().await.unwrap_or_default();
        panic!("expected {status}, got {got}: {body}");
    }
    response
}

/// `GET url` (with a bearer token) as JSON; `None` when the request or its body fails, as
/// while a service starts: for polling with [`until`].
pub async fn get_json(client: &reqwest::Client, url: &str, token: Option<&str>) -> Option<Value> {
    let mut request = client.get(url);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    request.send().await.ok()?.json().await.ok()
}

/// How often [`until`] checks.
const POLL: Duration = Duration::from_millis(50);

/// Polls `check` until it gives a value; `what` names the wait in the panic when `cap`
/// passes (the cap only stops a hung test: nothing here depends on timing).
pub async fn until<T, F, Fut>(what: &str, cap: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    until_ok(what, cap, || {
        let checked = check();
        async move { checked.await.ok_or_else(String::new) }
    })
    .await
}

/// [`until`], where each miss says what it saw: the last one is in the panic.
pub async fn until_ok<T, F, Fut>(what: &str, cap: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                start.elapsed() < cap,
                "waited {cap:?} for {what}{}{seen}",
                if seen.is_empty() { "" } else { "; last seen: " }
            ),
        }
        tokio::time::sleep(POLL).await;
    }
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
    if found.is_none() {
        if std::env::var("VIGIE_REQUIRE_TANSU").as_deref() == Ok("1") {
            panic!(
                "VIGIE_REQUIRE_TANSU=1 but no tansu binary (set TANSU or install it in ~/.cargo/bin)"
            );
        }
        eprintln!(
            "skipped: no tansu binary (cargo install tansu --locked --features dynostore,libsql)"
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
    /// A broker on a free port, started, with `topics` created.
    pub fn started(bin: PathBuf, storage: Option<PathBuf>, topics: &[&str]) -> Broker {
        let mut broker = Broker {
            bin,
            port: free_port(),
            storage,
            child: None,
        };
        broker.start();
        for topic in topics {
            broker.create_topic(topic);
        }
        broker
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What a service started on this broker needs: its address, a JWT secret, and a
    /// registry poll of 200 ms.
    pub fn service_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KAFKA_BROKERS", self.address()),
            (
                "VIGIE_JWT_SECRET",
                "an end-to-end secret of at least 32 bytes".to_string(),
            ),
            ("VIGIE_POLL_MS", "200".to_string()),
        ]
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

    /// Creates `topic` with 3 partitions (the partials topic compacted, as the drift service
    /// wants it).
    pub fn create_topic(&self, topic: &str) {
        self.create_topic_with(topic, 3);
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic_with(&self, topic: &str, partitions: u32) {
        let mut command = Command::new(&self.bin);
        command.args([
            "topic",
            "create",
            topic,
            "--broker",
            &format!("tcp://{}", self.address()),
            "--partitions",
            &partitions.to_string(),
        ]);
        if topic == vigie_stream::PARTIALS_TOPIC {
            command.args(["--config", "cleanup.policy=compact"]);
        }
        let status = command.stdout(Stdio::null()).status().unwrap();
        assert!(status.success(), "tansu topic create {topic}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `vigie up` on embedded defaults in `home` (the quick specs of the three models, the services on
/// ports the system chooses), with `extra` flags, started: the process (its first lines read) and the admin's
/// password.
pub fn start_up(home: &Path, extra: &[&str]) -> (Service, String) {
    start_up_with(home, extra, &[])
}

/// [`start_up`], with the models named in `full` trained on their spec's own algorithm rather
/// than the quick one.
pub fn start_up_with(home: &Path, extra: &[&str], full: &[&str]) -> (Service, String) {
    let command = up_command(home, extra);
    let specs = home.join("models");
    for name in full {
        let text = std::fs::read_to_string(repo().join(format!("models/{name}.toml"))).unwrap();
        let data = repo().join("data");
        let text = text.replace("\"../data/", &format!("\"{}/", data.display()));
        std::fs::write(specs.join(format!("{name}.toml")), text).unwrap();
    }
    let mut up = Service::spawn(command);
    let admin = up.wait_for("admin account", Duration::from_secs(600));
    let password = after(&admin, "admin / ").to_string();
    up.wait_for("Stop with Ctrl-C", Duration::from_secs(60));
    (up, password)
}

/// [`start_up`] again on a home where it ran before (its admin exists and prints nothing).
pub fn restart_up(home: &Path, extra: &[&str]) -> Service {
    let mut up = Service::spawn(up_command(home, extra));
    up.wait_for("Stop with Ctrl-C", Duration::from_secs(600));
    up
}

fn up_command(home: &Path, extra: &[&str]) -> Command {
    let specs = home.join("models");
    quick_spec(&specs);
    quick_lfb_spec(&specs);
    quick_chicago_spec(&specs);
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
    command
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

/// [`vigie`] started: the process and the URL it printed it is listening on.
pub fn start_service(args: &[&str], env: &[(&str, &str)], home: &Path) -> (Service, String) {
    let mut service = Service::spawn(vigie(home, args, env));
    let line = service.wait_for("listening on", Duration::from_secs(300));
    let url = after(&line, "listening on")
        .trim_end_matches(',')
        .to_string();
    (service, url)
}

/// `vigie predict` on `brokers` with the registry in `home`, started: the process and its URL.
pub fn start_predict(home: &Path, brokers: &str, secret: &str) -> (Service, String) {
    start_service(
        &["predict", "--listen", "127.0.0.1:0", "--poll-ms", "200"],
        &[("KAFKA_BROKERS", brokers), ("VIGIE_JWT_SECRET", secret)],
        home,
    )
}

/// A program installed from Debian's packages (Prometheus, Alertmanager), if it is.
pub fn binary(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/local/bin", "/usr/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// A process whose output goes to a file, shown when the test fails; killed when dropped.
pub struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `command` with its output in `dir/NAME.log`.
    pub fn spawn(name: &'static str, mut command: Command, dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Daemon { name, child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.name, self.log());
        }
    }
}

/// The drift service's sliding window in the end-to-end tests: the last 3 s of event time in
/// half-second panes, so that a test's phases are each scored on their own events.
/// Held by the tests of a binary that must not share the machine's two cores with each
/// other: a consumer group on tansu's SQLite storage misses its heartbeats when a browser, a
/// retraining or `vigie up`'s training run beside it, and tansu's coordinator then did not
/// give the member partitions again (seen twice, a restarted drift service counting nothing
/// more for five minutes).
pub static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub const WINDOW_ARGS: [&str; 4] = ["--window-secs", "3", "--pane-ms", "500"];

/// Waits until the events published so far are out of the next phase's sliding window
/// ([`WINDOW_ARGS`]): the window ends at the newest event, so events published from now on
/// are scored without the earlier ones.
pub async fn let_the_window_pass() {
    tokio::time::sleep(Duration::from_millis(3_600)).await;
}

/// `GET /v1/drift?model=MODEL` of the drift service at `url`: the model's state.
pub async fn drift_of(client: &reqwest::Client, url: &str, token: &str, model: &str) -> Value {
    let request = client
        .get(format!("{url}/v1/drift?model={model}"))
        .bearer_auth(token);
    let state: Value = expect(request, 200).await.json().await.unwrap();
    state["models"][0].clone()
}

/// Waits until the drift service has counted `events` of `model`'s events (failing if it
/// counts more), then for a scoring of the window after that moment, and returns the model's
/// state.
pub async fn scored_after(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    model: &str,
    events: u64,
) -> Value {
    let cap = Duration::from_secs(300);
    let counted_at = until_ok(&format!("{events} events counted"), cap, || async {
        let state = drift_of(client, url, token, model).await;
        let counted = state["events"].as_u64().unwrap();
        assert!(
            counted <= events,
            "counted {counted} events, {events} were published"
        );
        if counted == events {
            Ok(chrono::Utc::now())
        } else {
            Err(state["events"].to_string())
        }
    })
    .await;
    let state = until_ok(&format!("a scoring after {counted_at}"), cap, || async {
        let state = drift_of(client, url, token, model).await;
        let at: Option<chrono::DateTime<chrono::Utc>> =
            serde_json::from_value(state["sliding"]["at"].clone()).ok();
        if at.is_some_and(|at| at > counted_at) {
            Ok(state)
        } else {
            Err(state["sliding"]["at"].to_string())
        }
    })
    .await;
    assert_eq!(state["events"].as_u64().unwrap(), events, "{state}");
    state
}

/// The features a model's last scoring flagged.
pub fn drifted(model: &Value) -> Vec<String> {
    model["sliding"]["report"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["drifted"] == true)
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}
