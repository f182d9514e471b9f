//! Headless Chromium driven over the WebDriver protocol (Debian's chromium and chromedriver):
//! opens a page of a running service with its bearer token, collects the console's errors and
//! takes a screenshot.

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
    let port = free_port();
    let _driver = Driver(
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
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1800"]
            },
            "goog:loggingPrefs": {"browser": "ALL"}
        }}}),
    )
    .await;
    let session = format!("{base}/session/{}", session["sessionId"].as_str().unwrap());
    let cdp = |cmd: &'static str, params: Value| {
        let (client, url) = (client.clone(), format!("{session}/goog/cdp/execute"));
        async move {
            call(
                &client,
                reqwest::Method::POST,
                &url,
                json!({"cmd": cmd, "params": params}),
            )
            .await
        }
    };
    // The page's own requests carry the token, as a dispatcher's browser session would.
    cdp("Network.enable", json!({})).await;
    cdp(
        "Network.setExtraHTTPHeaders",
        json!({"headers": {"Authorization": format!("Bearer {token}")}}),
    )
    .await;
    // Uncaught exceptions, failed loads (capture phase) and console.error calls, recorded
    // before any script of the page runs.
    cdp(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": "window.__errors = [];\
            window.addEventListener('error', e => window.__errors.push(String(e.message || (e.target && (e.target.src || e.target.href)) || e.type)), true);\
            window.addEventListener('unhandledrejection', e => window.__errors.push('unhandled rejection: ' + e.reason));\
            const consoleError = console.error;\
            console.error = (...a) => { window.__errors.push(a.map(String).join(' ')); consoleError(...a); };"}),
    )
    .await;
    call(
        &client,
        reqwest::Method::POST,
        &format!("{session}/url"),
        json!({"url": url}),
    )
    .await;
    let seen = call(
        &client,
        reqwest::Method::POST,
        &format!("{session}/execute/sync"),
        json!({"script": "return [document.readyState, document.title, document.body ? document.body.innerText : '', window.__errors || []];", "args": []}),
    )
    .await;
    assert_eq!(seen[0], "complete", "the page finished loading");
    let mut errors: Vec<String> = seen[3]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap_or_default().to_string())
        .collect();
    // The browser's own console log: network failures (a 404 favicon...) land here.
    let log = client
        .post(format!("{session}/se/log"))
        .json(&json!({"type": "browser"}))
        .send()
        .await
        .unwrap();
    assert!(log.status().is_success(), "chromedriver's browser log");
    let log: Value = log.json().await.unwrap();
    for entry in log["value"].as_array().into_iter().flatten() {
        if entry["level"] == "SEVERE" {
            errors.push(entry["message"].as_str().unwrap_or_default().to_string());
        }
    }
    let png = call(
        &client,
        reqwest::Method::GET,
        &format!("{session}/screenshot"),
        Value::Null,
    )
    .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().unwrap())
        .unwrap();
    let _ = client.delete(&session).send().await;
    Rendered {
        title: seen[1].as_str().unwrap_or_default().to_string(),
        text: seen[2].as_str().unwrap_or_default().to_string(),
        errors,
        png,
    }
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
