//! Headless Chromium driven over the WebDriver protocol (Debian's chromium and chromedriver):
//! [`Browser`] opens pages, types, presses keys, answers dialogs, runs scripts, and reads the
//! console's errors, the requests the pages made and screenshots; [`render`] opens one page of
//! a running service with its bearer token.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use super::free_port;

/// What the browser saw of a page.
#[derive(Debug)]
pub struct Rendered {
    pub title: String,
    pub text: String,
    /// Console errors, failed resource loads and uncaught exceptions.
    pub errors: Vec<String>,
    pub png: Vec<u8>,
}

/// Chromium and chromedriver, or `None` when they are not installed; a failure instead when
/// VIGIE_REQUIRE_CHROMIUM=1 (as CI sets).
pub fn chromium() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        names
            .iter()
            .map(|n| PathBuf::from("/usr/bin").join(n))
            .find(|p| p.is_file())
    };
    let found = find(&["chromium", "chromium-browser"]).zip(find(&["chromedriver"]));
    if found.is_none() && std::env::var("VIGIE_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
        panic!("VIGIE_REQUIRE_CHROMIUM=1 but chromium or chromedriver is missing");
    }
    found
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn call(client: &reqwest::Client, method: reqwest::Method, url: &str, body: Value) -> Value {
    let mut request = client.request(method.clone(), url);
    if method != reqwest::Method::GET {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{method} {url}: {status} {answer}");
    answer["value"].clone()
}

/// Opens `url` in headless Chromium with `Authorization: Bearer token`, waits for the page to
/// load, and returns what it rendered.
pub async fn render(
    chromium: &PathBuf,
    chromedriver: &PathBuf,
    url: &str,
    token: &str,
) -> Rendered {
    let browser = Browser::start(chromium, chromedriver).await;
    // The page's own requests carry the token, as a dispatcher's browser session would.
    browser.cdp("Network.enable", json!({})).await;
    browser
        .cdp(
            "Network.setExtraHTTPHeaders",
            json!({"headers": {"Authorization": format!("Bearer {token}")}}),
        )
        .await;
    browser.goto(url).await;
    let rendered = Rendered {
        title: browser.title().await,
        text: browser.text().await,
        errors: browser.errors().await,
        png: browser.screenshot().await,
    };
    browser.close().await;
    rendered
}

/// Share of the screenshot's pixels that differ from its most common colour, and the number of
/// distinct colours: a blank page has almost none of either.
pub fn ink(png: &[u8]) -> (f64, usize) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).unwrap();
    let channels = info.color_type.samples();
    let pixels: Vec<&[u8]> = buffer[..info.buffer_size()]
        .chunks_exact(channels)
        .collect();
    let mut counts = std::collections::HashMap::<&[u8], usize>::new();
    for p in &pixels {
        *counts.entry(p).or_default() += 1;
    }
    let background = counts.values().copied().max().unwrap_or(0);
    (
        1.0 - background as f64 / pixels.len().max(1) as f64,
        counts.len(),
    )
}

/// A headless Chromium session driven step by step over WebDriver: pages opened, fields typed
/// into, keys pressed, scripts run, screenshots, the console's errors and every request the
/// pages made (Chromium's performance log).
pub struct Browser {
    _driver: Driver,
    client: reqwest::Client,
    session: String,
}

impl Browser {
    pub async fn start(chromium: &PathBuf, chromedriver: &PathBuf) -> Browser {
        let port = free_port();
        let driver = Driver(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let start = Instant::now();
        loop {
            let ready = client.get(format!("{base}/status")).send().await;
            if let Ok(r) = ready
                && let Ok(status) = r.json::<Value>().await
                && status["value"]["ready"] == true
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let session = call(
            &client,
            reqwest::Method::POST,
            &format!("{base}/session"),
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                // Dialogs (the forms' confirmations) wait for the test to answer them.
                "unhandledPromptBehavior": "ignore",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1300,1600"]
                },
                "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"}
            }}}),
        )
        .await;
        let session = format!("{base}/session/{}", session["sessionId"].as_str().unwrap());
        let browser = Browser {
            _driver: driver,
            client,
            session,
        };
        // Errors recorded before any script of a page runs.
        browser
            .cdp(
                "Page.addScriptToEvaluateOnNewDocument",
                json!({"source": "window.__errors = [];\
                    window.addEventListener('error', e => window.__errors.push(String(e.message || (e.target && (e.target.src || e.target.href)) || e.type)), true);\
                    window.addEventListener('unhandledrejection', e => window.__errors.push('unhandled rejection: ' + e.reason));\
                    window.addEventListener('securitypolicyviolation', e => window.__errors.push('CSP: ' + e.violatedDirective + ' ' + e.blockedURI));\
                    const consoleError = console.error;\
                    console.error = (...a) => { window.__errors.push(a.map(String).join(' ')); consoleError(...a); };"}),
            )
            .await;
        browser
    }

    async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.post("goog/cdp/execute", json!({"cmd": cmd, "params": params}))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        call(
            &self.client,
            reqwest::Method::POST,
            &format!("{}/{path}", self.session),
            body,
        )
        .await
    }

    async fn get(&self, path: &str) -> Value {
        call(
            &self.client,
            reqwest::Method::GET,
            &format!("{}/{path}", self.session),
            Value::Null,
        )
        .await
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.post("url", json!({"url": url})).await;
        self.settle().await;
    }

    /// Waits for the document to be loaded (after a navigation a form started).
    pub async fn settle(&self) {
        let start = Instant::now();
        loop {
            let state = self
                .client
                .post(format!("{}/execute/sync", self.session))
                .json(&json!({"script": "return document.readyState", "args": []}))
                .send()
                .await;
            if let Ok(r) = state
                && let Ok(v) = r.json::<Value>().await
                && v["value"] == "complete"
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the page did not load"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn url(&self) -> String {
        self.get("url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn title(&self) -> String {
        self.get("title")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.post("execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.run(
            "return document.body ? document.body.innerText : ''",
            json!([]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// The element `css` selects (the test fails without one).
    pub async fn find(&self, css: &str) -> String {
        let found = self
            .post("element", json!({"using": "css selector", "value": css}))
            .await;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    /// Empties the field `css` selects and types `text` into it (keyboard input).
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.post(&format!("element/{element}/clear"), json!({}))
            .await;
        self.post(&format!("element/{element}/value"), json!({"text": text}))
            .await;
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.post(&format!("element/{element}/click"), json!({}))
            .await;
    }

    /// Presses `keys` (WebDriver key codes: "\u{E004}" Tab, "\u{E007}" Enter) on whatever has
    /// the focus.
    pub async fn press(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for key in keys {
            actions.push(json!({"type": "keyDown", "value": key}));
            actions.push(json!({"type": "keyUp", "value": key}));
        }
        self.post(
            "actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
    }

    /// The text of the dialog open (a form's confirmation), if any.
    pub async fn dialog(&self) -> Option<String> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            let answer = self
                .client
                .get(format!("{}/alert/text", self.session))
                .send()
                .await
                .unwrap();
            if answer.status().is_success() {
                let v: Value = answer.json().await.unwrap();
                return v["value"].as_str().map(str::to_string);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Answers the open dialog yes, and waits for the page the form leads to (the page was
    /// [`Browser::mark`]ed before the form was sent).
    pub async fn accept(&self) {
        self.post("alert/accept", json!({})).await;
        self.next_page().await;
    }

    /// Marks the page shown: [`Browser::next_page`] waits for another one.
    pub async fn mark(&self) {
        self.run("window.__vigie_old_page = true; return 0", json!([]))
            .await;
    }

    /// Waits until the page shown is not the one [`Browser::mark`]ed, and has loaded (a form
    /// sent or a link followed: the old page stays until the new one answers).
    pub async fn next_page(&self) {
        let start = Instant::now();
        loop {
            let seen = self
                .client
                .post(format!("{}/execute/sync", self.session))
                .json(&json!({"script": "return [document.readyState, window.__vigie_old_page === true]", "args": []}))
                .send()
                .await;
            if let Ok(r) = seen
                && let Ok(v) = r.json::<Value>().await
                && v["value"] == json!(["complete", false])
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no new page within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The page's errors so far: its own (uncaught, console.error, CSP) and the browser's
    /// severe log entries (failed loads).
    pub async fn errors(&self) -> Vec<String> {
        let mut errors: Vec<String> = self
            .run("return window.__errors || []", json!([]))
            .await
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e.as_str().unwrap_or_default().to_string())
            .collect();
        for entry in self.log("browser").await {
            if entry["level"] == "SEVERE" {
                errors.push(entry["message"].as_str().unwrap_or_default().to_string());
            }
        }
        errors
    }

    async fn log(&self, kind: &str) -> Vec<Value> {
        let log = self
            .client
            .post(format!("{}/se/log", self.session))
            .json(&json!({"type": kind}))
            .send()
            .await
            .unwrap();
        assert!(log.status().is_success(), "chromedriver's {kind} log");
        let log: Value = log.json().await.unwrap();
        log["value"].as_array().cloned().unwrap_or_default()
    }

    /// Every request the pages made since the last call: (the page's URL, the request's URL).
    pub async fn requests(&self) -> Vec<(String, String)> {
        self.log("performance")
            .await
            .iter()
            .filter_map(|entry| {
                let message: Value = serde_json::from_str(entry["message"].as_str()?).ok()?;
                let message = &message["message"];
                (message["method"] == "Network.requestWillBeSent").then(|| {
                    let params = &message["params"];
                    (
                        params["documentURL"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        params["request"]["url"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
            })
            .collect()
    }

    pub async fn screenshot(&self) -> Vec<u8> {
        let png = self.get("screenshot").await;
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap()
    }
}

impl Browser {
    /// Ends the session: the browser quits (the driver goes when dropped).
    pub async fn close(self) {
        let _ = self.client.delete(&self.session).send().await;
    }
}

/// The origin of a URL (`scheme://host:port`), or the URL itself when it has none.
pub fn origin(url: &str) -> &str {
    match url.find("://") {
        Some(at) => {
            let rest = &url[at + 3..];
            let end = rest.find('/').map_or(url.len(), |e| at + 3 + e);
            &url[..end]
        }
        None => url,
    }
}
