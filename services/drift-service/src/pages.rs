//! The drift service's pages, in the shell every service shares (`vigie_api::console`: the
//! sign-in, the session cookie, the forms' guard, the layout):
//!
//! - `/`: the overview of every model watched: its production version and holdout figures,
//!   its drift score now and over time ([`crate::history`]), each feature's decisions over
//!   time, the noise injected, and the recent retraining runs (from the registry; each links
//!   to its page on the trainer when `--trainer-url` says where that is). It refreshes itself.
//! - `/features/{model}/{feature}`: a feature's statistic over time against its threshold, and
//!   its current histogram against the reference's.
//! - `POST /overview/noise` and `POST /overview/noise/stop`: the overview's noise forms, for
//!   admins. They call the handlers of `/config/noise` (the same checks, the same log lines);
//!   a mistake comes back as the overview with the message and the form as it was sent.
//!
//! The console lives in the drift service because it holds what the overview is about (the
//! scores and their history) and reads the rest (versions, runs) from the registry; the
//! trainer's actions (retrain, promote, roll back) are on the trainer's own pages, where its
//! handlers run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use vigie_api::console::{self, Link, Page, Session, SignedForm, escape, html, see_other};
use vigie_api::{ApiError, HasAuth};
use vigie_registry::runs::Run;

use crate::history::{History, Point};
use crate::score::time;
use crate::state::AppState;
use crate::watch::{ModelQuery, NoiseView, Scored, lock};

/// The overview refreshes itself this often (seconds).
const REFRESH_SECS: u32 = 10;
/// Retraining runs the overview lists.
const RUNS_SHOWN: u32 = 10;
/// Points of the history the overview's table lists (the newest).
const TABLE_POINTS: usize = 12;
/// Most vertices of a line chart: samples beyond are thinned out.
const LINE_POINTS: usize = 450;
/// Most columns of the feature decisions' chart: points beyond are grouped.
const DECISION_COLUMNS: usize = 90;

const MODES: [&str; 5] = [
    "gaussian",
    "category_swap",
    "prior_shift",
    "new_category",
    "missing",
];

/// The pages' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/features/{model}/{feature}", get(feature_page))
        .route("/overview/noise", post(start_noise))
        .route("/overview/noise/stop", post(stop_noise))
}

fn nav(state: &AppState) -> Vec<Link> {
    let mut links = vec![
        Link::new("Overview", "/"),
        Link::new("Drift report", "/v1/drift/report"),
    ];
    if let Some(trainer) = &state.config.trainer_url {
        links.push(Link::new(
            "Models and runs",
            format!("{}/", trainer.trim_end_matches('/')),
        ));
    }
    links.push(Link::new("API docs", "/docs"));
    links
}

/// A model as the overview shows it, copied out of the state's lock.
struct Card {
    name: String,
    version: u32,
    loaded_at: DateTime<Utc>,
    real_rows: u64,
    synthetic_rows: u64,
    holdout: Vec<(&'static str, f64)>,
    features: Vec<String>,
    last: Option<Arc<Scored>>,
    noise: Option<NoiseView>,
    history: Arc<History>,
}

fn cards(state: &AppState) -> Vec<Card> {
    let mut guard = lock(&state.state);
    guard.expire_noise(Utc::now());
    guard
        .models
        .values()
        .map(|w| {
            let r = &w.reference;
            Card {
                name: r.model.clone(),
                version: r.version,
                loaded_at: r.loaded_at,
                real_rows: r.profile.real_rows,
                synthetic_rows: r.profile.synthetic_rows,
                holdout: r.quality.holdout.iter().map(|(k, v)| (*k, *v)).collect(),
                features: r
                    .profile
                    .features
                    .iter()
                    .map(|f| f.name().to_string())
                    .collect(),
                last: w.last.clone(),
                noise: w.noise_view(),
                history: guard.history.get(&r.model).cloned().unwrap_or_default(),
            }
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct OverviewQuery {
    done: Option<String>,
}

/// The noise form as sent: every field as text, turned into the API's JSON body.
#[derive(Debug, Clone, Default, Deserialize)]
struct NoiseForm {
    #[serde(default)]
    model: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    features: String,
    #[serde(default)]
    rate: String,
    #[serde(default)]
    scale: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    seed: String,
    #[serde(default)]
    ttl_seconds: String,
    #[serde(default)]
    form_token: String,
}

impl NoiseForm {
    /// The body `POST /config/noise` takes. A number field that does not read as a number goes
    /// as the text it is, for the API to name the field and say what it wants.
    fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("model".into(), Value::from(self.model.clone()));
        if !self.mode.is_empty() {
            body.insert("mode".into(), Value::from(self.mode.clone()));
        }
        let features: Vec<Value> = self
            .features
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(Value::from)
            .collect();
        if !features.is_empty() {
            body.insert("features".into(), Value::Array(features));
        }
        for (field, text) in [
            ("rate", &self.rate),
            ("scale", &self.scale),
            ("code", &self.code),
            ("seed", &self.seed),
            ("ttl_seconds", &self.ttl_seconds),
        ] {
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let value = if let Ok(n) = text.parse::<u64>() {
                Value::from(n)
            } else if let Some(n) = text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                Value::Number(n)
            } else {
                Value::from(text)
            };
            body.insert(field.into(), value);
        }
        Value::Object(body)
    }
}

#[derive(Debug, Deserialize)]
struct StopForm {
    #[serde(default)]
    model: String,
    #[serde(default)]
    form_token: String,
}

/// What the overview says at its top.
struct Flash {
    error: bool,
    text: String,
}

impl Flash {
    fn of(e: &ApiError) -> Self {
        Flash {
            error: true,
            text: match &e.field {
                Some(field) => format!("{field}: {}", e.message),
                None => e.message.clone(),
            },
        }
    }
}

/// `GET /`
async fn overview(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<OverviewQuery>,
) -> Response {
    let flash = match query.done.as_deref() {
        Some("noise_started") => Some(Flash {
            error: false,
            text: "Noise injection started: the next scorings measure it.".into(),
        }),
        Some("noise_stopped") => Some(Flash {
            error: false,
            text: "Noise injection stopped.".into(),
        }),
        _ => None,
    };
    render_overview(&state, &session, StatusCode::OK, flash, None).await
}

async fn render_overview(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    flash: Option<Flash>,
    sent: Option<&NoiseForm>,
) -> Response {
    let runs = state.registry().runs(None, RUNS_SHOWN).await;
    let cards = cards(state);
    let auth = state.auth();
    let mut body = String::with_capacity(64 * 1024);
    let _ = write!(
        body,
        "<div id=\"live\" data-live=\"{REFRESH_SECS}\" data-live-src=\"/\"><p class=\"muted\">Scored every {score} s \
         over the last {window} s of events; shown at {now} UTC, refreshed every \
         {REFRESH_SECS} s.</p>",
        score = state.config.score_interval.as_secs_f64(),
        window = state.config.windows.sliding_ms as f64 / 1000.0,
        now = Utc::now().format("%H:%M:%S"),
    );
    if cards.is_empty() {
        body.push_str(
            "<section class=\"card\"><p>No model is watched yet: a model needs a production \
             version with a reference (<code>vigie train</code>, then a promotion).</p></section>",
        );
    }
    for card in &cards {
        model_card(&mut body, card, state);
    }
    runs_section(&mut body, runs, state.config.trainer_url.as_deref());
    body.push_str("</div>");
    for card in &cards {
        noise_forms(&mut body, card, session, auth, state, sent);
    }
    let nav = nav(state);
    let flash_text = flash
        .as_ref()
        .map(|f| (if f.error { "error" } else { "ok" }, f.text.as_str()));
    let page = Page {
        title: "Overview",
        service: "drift",
        nav: &nav,
        session: Some((session, auth)),
        flash: flash_text,
        body,
    };
    html(status, page.render())
}

fn model_card(body: &mut String, card: &Card, state: &AppState) {
    let name = escape(&card.name);
    let _ = write!(
        body,
        "<section class=\"card\" id=\"model-{name}\" aria-labelledby=\"title-{name}\">\
         <h2 id=\"title-{name}\">{name} <span class=\"muted\">version {version} in production</span></h2>\
         <div class=\"figures\">",
        version = card.version,
    );
    match card.last.as_deref() {
        Some(last) if last.report.scored => {
            let report = &last.report;
            let _ = write!(
                body,
                "<div class=\"figure\">drift score<b class=\"{class}\" data-score=\"{score}\">{score:.3}</b>\
                 {drifted} of {features} features drifted; the data set drifts at {share:.0}%</div>",
                class = if report.dataset_drifted {
                    "drifted"
                } else {
                    "steady"
                },
                score = report.score,
                drifted = report.drifted_features,
                features = report.features.len(),
                share = report.dataset_share * 100.0,
            );
        }
        Some(last) => {
            let _ = write!(
                body,
                "<div class=\"figure\">drift score<b class=\"muted\">not scored</b>{} events in \
                 the window, {} needed</div>",
                last.report.current_rows, last.report.min_rows
            );
        }
        None => body.push_str(
            "<div class=\"figure\">drift score<b class=\"muted\">not yet scored</b></div>",
        ),
    }
    let events = card.last.as_ref().map_or(0, |l| l.report.current_rows);
    let _ = write!(
        body,
        "<div class=\"figure\">events in the window<b>{events}</b>last {window} s</div>\
         <div class=\"figure\">reference<b>{rows}</b>{real} real + {synthetic} synthetic rows, \
         loaded {loaded}</div>",
        window = state.config.windows.sliding_ms as f64 / 1000.0,
        rows = card.real_rows + card.synthetic_rows,
        real = card.real_rows,
        synthetic = card.synthetic_rows,
        loaded = card.loaded_at.format("%Y-%m-%d %H:%M UTC"),
    );
    if !card.holdout.is_empty() {
        let figures: Vec<String> = card
            .holdout
            .iter()
            .map(|(k, v)| format!("{k} {v:.3}"))
            .collect();
        let _ = write!(
            body,
            "<div class=\"figure\">holdout (version {})<b>{}</b>{}</div>",
            card.version,
            figures.first().cloned().unwrap_or_default(),
            figures[1..].join(", ")
        );
    }
    body.push_str("</div>");
    match &card.noise {
        Some(n) => {
            let _ = write!(
                body,
                "<p class=\"drifted\" id=\"noise-{name}\">Noise injected: {mode}, {rate:.0}% of \
                 events{features}, by {by} until {until} UTC ({noised} of {seen} events changed).</p>",
                mode = serde_json::to_value(n.spec.mode)
                    .ok()
                    .and_then(|m| m.as_str().map(escape))
                    .unwrap_or_default(),
                rate = n.spec.rate * 100.0,
                features = if n.spec.features.is_empty() {
                    String::new()
                } else {
                    format!(", features {}", escape(&n.spec.features.join(", ")))
                },
                by = escape(&n.by),
                until = n.expires_at.format("%H:%M:%S"),
                noised = n.events_noised,
                seen = n.events_seen,
            );
        }
        None => {
            let _ = write!(
                body,
                "<p class=\"muted\" id=\"noise-{name}\">No noise injected.</p>"
            );
        }
    }
    let points: Vec<&Point> = card.history.points.iter().collect();
    let _ = write!(body, "<h3>Drift score over time</h3>");
    if points.is_empty() {
        body.push_str("<p class=\"muted\">No scoring yet.</p>");
    } else {
        body.push_str(&score_chart(&points, &card.name));
        decisions_chart(body, card);
        history_table(body, card);
    }
    features_table(body, card);
    let _ = write!(
        body,
        "<p><a href=\"/v1/drift/report?model={name}\">The full report of {name}'s window</a> \
         (every statistic, every histogram).</p></section>"
    );
}

/// `(x, y)` of a value in a plot area: time across, value up.
struct Scale {
    left: f64,
    width: f64,
    top: f64,
    height: f64,
    t0: i64,
    t1: i64,
    max: f64,
}

impl Scale {
    fn x(&self, at_ms: i64) -> f64 {
        let span = (self.t1 - self.t0).max(1) as f64;
        self.left + self.width * (at_ms - self.t0) as f64 / span
    }

    fn y(&self, value: f64) -> f64 {
        self.top + self.height * (1.0 - (value / self.max).clamp(0.0, 1.0))
    }
}

fn clock(at_ms: i64) -> String {
    time(at_ms).format("%H:%M:%S").to_string()
}

/// A value of a chart at a time: missing where not scored; whether it drifted, whether noise
/// was injected then.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: i64,
    value: Option<f64>,
    drifted: bool,
    noise: bool,
}

/// A line of `values` over time (gaps where a value is missing), with a dashed threshold line,
/// the periods of noise shaded, and the axes' ends labelled.
fn line_chart(label: &str, series: &[Sample], threshold: Option<f64>, max: f64) -> String {
    let (w, h) = (900.0, 170.0);
    let scale = Scale {
        left: 46.0,
        width: w - 56.0,
        top: 10.0,
        height: h - 40.0,
        t0: series.first().map_or(0, |p| p.at),
        t1: series.last().map_or(1, |p| p.at),
        max,
    };
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"{label}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{label}</title>\
         <rect x=\"{l}\" y=\"{t}\" width=\"{pw}\" height=\"{ph}\" fill=\"#fafbfc\" stroke=\"#d9dde5\"/>",
        label = escape(label),
        l = scale.left,
        t = scale.top,
        pw = scale.width,
        ph = scale.height,
    );
    // Noise: shaded from each noised point to the next.
    for pair in series.windows(2) {
        if pair[0].noise {
            let (x0, x1) = (scale.x(pair[0].at), scale.x(pair[1].at));
            let _ = write!(
                svg,
                "<rect x=\"{x0:.1}\" y=\"{t}\" width=\"{:.1}\" height=\"{ph}\" fill=\"#fde9c8\"/>",
                (x1 - x0).max(1.0),
                t = scale.top,
                ph = scale.height,
            );
        }
    }
    if let Some(t) = threshold {
        let y = scale.y(t);
        let _ = write!(
            svg,
            "<line x1=\"{l}\" x2=\"{r}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#b3261e\" \
             stroke-dasharray=\"5 4\"/><text x=\"{r}\" y=\"{ty:.1}\" text-anchor=\"end\">threshold {t:.3}</text>",
            l = scale.left,
            r = scale.left + scale.width,
            ty = y - 3.0,
        );
    }
    // At most about one vertex per two units of width: every k-th sample, with each
    // missing one kept (the gaps stay gaps).
    let step = series.len().div_ceil(LINE_POINTS).max(1);
    let mut path = String::new();
    let mut pen_down = false;
    let drawn = series
        .iter()
        .enumerate()
        .filter(|(i, s)| i % step == 0 || s.value.is_none() || *i + 1 == series.len())
        .map(|(_, s)| s);
    for &Sample { at, value, .. } in drawn {
        match value {
            Some(v) => {
                let _ = write!(
                    path,
                    "{}{:.1} {:.1} ",
                    if pen_down { "L" } else { "M" },
                    scale.x(at),
                    scale.y(v)
                );
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    if series.len() == 1
        && let Some(v) = series[0].value
    {
        let _ = write!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#2f6fde\"/>",
            scale.x(series[0].at),
            scale.y(v)
        );
    }
    let _ = write!(
        svg,
        "<path d=\"{path}\" fill=\"none\" stroke=\"#2f6fde\" stroke-width=\"2\"/>"
    );
    if series.len() <= 300 {
        for &Sample {
            at, value, drifted, ..
        } in series
        {
            if let (Some(v), true) = (value, drifted) {
                let _ = write!(
                    svg,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#b3261e\"/>",
                    scale.x(at),
                    scale.y(v)
                );
            }
        }
    }
    let _ = write!(
        svg,
        "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{max}</text>\
         <text x=\"{lx}\" y=\"{by}\" text-anchor=\"end\">0</text>\
         <text x=\"{l}\" y=\"{xy}\">{t0}</text><text x=\"{r}\" y=\"{xy}\" text-anchor=\"end\">{t1}</text></svg>",
        lx = scale.left - 4.0,
        ty = scale.top + 9.0,
        by = scale.top + scale.height,
        l = scale.left,
        r = scale.left + scale.width,
        xy = scale.top + scale.height + 16.0,
        max = if max >= 1.0 {
            format!("{max:.0}")
        } else {
            format!("{max:.3}")
        },
        t0 = clock(scale.t0),
        t1 = clock(scale.t1),
    );
    svg
}

fn score_chart(points: &[&Point], model: &str) -> String {
    let series: Vec<Sample> = points
        .iter()
        .map(|p| Sample {
            at: p.at_ms,
            value: p.score,
            drifted: p.drifted,
            noise: p.noise,
        })
        .collect();
    let threshold = points.last().map(|p| p.threshold);
    let label = format!(
        "{model}: drift score at {} scorings from {} to {} UTC (red dots: data set drifted; \
         shaded: noise injected)",
        points.len(),
        clock(points.first().map_or(0, |p| p.at_ms)),
        clock(points.last().map_or(0, |p| p.at_ms)),
    );
    line_chart(&label, &series, threshold, 1.0)
}

/// Each feature of the reference (rows) over the history (columns, points grouped when there
/// are many): red where it drifted, green where it was scored and did not, grey where it was
/// not scored.
fn decisions_chart(body: &mut String, card: &Card) {
    let points = &card.history.points;
    let columns = points.len().clamp(1, DECISION_COLUMNS);
    let per = points.len().div_ceil(columns).max(1);
    // Per column and history feature index: scored there, drifted there.
    let names = card.history.features.len();
    let mut scored = vec![vec![false; names]; columns];
    let mut drifted = vec![vec![false; names]; columns];
    for (i, point) in points.iter().enumerate() {
        let column = (i / per).min(columns - 1);
        for f in &point.features {
            let at = usize::from(f.index);
            if at < names {
                scored[column][at] = true;
                drifted[column][at] |= f.drifted;
            }
        }
    }
    let index: BTreeMap<&str, usize> = card
        .history
        .features
        .iter()
        .enumerate()
        .map(|(i, f)| (f.as_str(), i))
        .collect();
    let used = points.len().div_ceil(per).max(1);
    let (left, cell_w, cell_h) = (170.0, 8.0, 14.0);
    let w = left + cell_w * used as f64 + 10.0;
    let h = cell_h * card.features.len() as f64 + 6.0;
    let _ = write!(
        body,
        "<h3>Feature decisions over time</h3><svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" \
         role=\"img\" aria-label=\"{name}: each feature's decision at each scoring, oldest left\" \
         xmlns=\"http://www.w3.org/2000/svg\">",
        name = escape(&card.name),
    );
    for (row, feature) in card.features.iter().enumerate() {
        let y = row as f64 * cell_h;
        let _ = write!(
            body,
            "<text x=\"{x}\" y=\"{ty:.1}\" text-anchor=\"end\">{name}</text>",
            x = left - 6.0,
            ty = y + cell_h - 3.0,
            name = escape(feature),
        );
        let at = index.get(feature.as_str()).copied();
        for column in 0..used {
            let fill = match at {
                Some(at) if drifted[column][at] => "#b3261e",
                Some(at) if scored[column][at] => "#9fd3ad",
                _ => "#e3e6ec",
            };
            let _ = write!(
                body,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cw:.1}\" height=\"{ch:.1}\" fill=\"{fill}\"/>",
                x = left + column as f64 * cell_w,
                cw = cell_w - 1.0,
                ch = cell_h - 2.0,
            );
        }
    }
    body.push_str(
        "</svg><p class=\"muted\">Red: drifted; green: scored, no drift; grey: not scored.</p>",
    );
}

/// The newest points as a table (what the charts draw, readable by anyone).
fn history_table(body: &mut String, card: &Card) {
    let name = escape(&card.name);
    let _ = write!(
        body,
        "<details id=\"history-details-{name}\"><summary>The last scorings as a table</summary>\
         <table id=\"history-{name}\"><thead><tr><th>time (UTC)</th><th>version</th>\
         <th>events</th><th>drift score</th><th>drifted features</th><th>noise</th></tr></thead><tbody>"
    );
    for p in card.history.points.iter().rev().take(TABLE_POINTS) {
        let drifted: Vec<&str> = p
            .features
            .iter()
            .filter(|f| f.drifted)
            .filter_map(|f| card.history.features.get(usize::from(f.index)))
            .map(String::as_str)
            .collect();
        let _ = write!(
            body,
            "<tr><td>{at}</td><td>{version}</td><td>{events}</td><td class=\"score\">{score}</td>\
             <td>{drifted}</td><td>{noise}</td></tr>",
            at = clock(p.at_ms),
            version = p.version,
            events = p.events,
            score = p.score.map_or("not scored".into(), |s| format!("{s:.3}")),
            drifted = escape(&drifted.join(", ")),
            noise = if p.noise { "injected" } else { "" },
        );
    }
    body.push_str("</tbody></table></details>");
}

fn features_table(body: &mut String, card: &Card) {
    let Some(last) = card.last.as_deref() else {
        return;
    };
    let name = escape(&card.name);
    body.push_str(
        "<h3>Features now</h3><table><thead><tr><th>feature</th><th>statistic</th>\
         <th>value</th><th>noise threshold</th><th>decision</th></tr></thead><tbody>",
    );
    for f in &last.report.features {
        let decision = match (last.report.scored, f.drifted) {
            (false, _) => "<span class=\"muted\">not scored</span>",
            (true, true) => "<span class=\"drifted\">drifted</span>",
            (true, false) => "<span class=\"steady\">no drift</span>",
        };
        let _ = write!(
            body,
            "<tr><td><a href=\"/features/{name}/{feature_path}\">{feature}</a></td><td>{rule}</td>\
             <td>{value:.4}</td><td>{threshold}</td><td>{decision}</td></tr>",
            feature_path = escape(&console::encode_segment(&f.name)),
            feature = escape(&f.name),
            rule = escape(&f.rule.to_string()),
            value = f.score,
            threshold = f.noise_threshold.map_or("-".into(), |t| format!("{t:.4}")),
        );
    }
    body.push_str("</tbody></table>");
}

fn runs_section(
    body: &mut String,
    runs: Result<Vec<Run>, vigie_registry::Error>,
    trainer: Option<&str>,
) {
    body.push_str("<section class=\"card\" id=\"runs\"><h2>Recent retraining runs</h2>");
    let runs = match runs {
        Ok(runs) => runs,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the retraining runs for the overview");
            body.push_str("<p class=\"drifted\">The registry does not answer: the runs cannot be shown now.</p></section>");
            return;
        }
    };
    if runs.is_empty() {
        body.push_str("<p class=\"muted\">No retraining run yet.</p></section>");
        return;
    }
    body.push_str(
        "<table><thead><tr><th>run</th><th>model</th><th>trigger</th><th>state</th>\
         <th>production → candidate</th><th>started (UTC)</th><th>finished</th></tr></thead><tbody>",
    );
    for run in &runs {
        let short = run.id.chars().take(8).collect::<String>();
        let id = match trainer {
            Some(url) => format!(
                "<a href=\"{}/runs/{}\">{}</a>",
                escape(url.trim_end_matches('/')),
                escape(&console::encode_segment(&run.id)),
                escape(&short)
            ),
            None => escape(&short),
        };
        let state = run.state.as_str();
        let class = match state {
            "promoted" => "steady",
            "rejected" | "failed" => "drifted",
            _ => "muted",
        };
        let _ = write!(
            body,
            "<tr><td>{id}</td><td>{model}</td><td>{trigger} ({by})</td>\
             <td class=\"{class}\">{state}{error}</td><td>{production} → {candidate}</td>\
             <td>{started}</td><td>{finished}</td></tr>",
            model = escape(&run.model),
            trigger = escape(&run.trigger),
            by = escape(&run.triggered_by),
            error = run
                .error
                .as_deref()
                .map(|e| format!(": {}", escape(e)))
                .unwrap_or_default(),
            production = run
                .production_version
                .map_or("-".into(), |v| format!("v{v}")),
            candidate = run
                .candidate_version
                .map_or("-".into(), |v| format!("v{v}")),
            started = time(run.created_at).format("%Y-%m-%d %H:%M:%S"),
            finished = run
                .finished_at
                .map_or("".into(), |t| time(t).format("%H:%M:%S").to_string()),
        );
    }
    body.push_str("</tbody></table></section>");
}

/// The noise forms of a model: for an admin, start (or replace) and stop; for others, a note.
fn noise_forms(
    body: &mut String,
    card: &Card,
    session: &Session,
    auth: &vigie_api::Auth,
    state: &AppState,
    sent: Option<&NoiseForm>,
) {
    let name = escape(&card.name);
    let _ = write!(
        body,
        "<section class=\"card\" id=\"noise-forms-{name}\"><h2>Noise injection: {name}</h2>"
    );
    if !session.is_admin() {
        body.push_str(
            "<p class=\"muted\">Read only: an admin starts and stops noise injections.</p></section>",
        );
        return;
    }
    let sent = sent.filter(|s| s.model == card.name);
    let value =
        |f: fn(&NoiseForm) -> &str, default: &str| -> String { escape(sent.map_or(default, f)) };
    let id = |field: &str| format!("{field}-{name}");
    let mode_now = sent.map_or("gaussian", |s| s.mode.as_str());
    let mut modes = String::new();
    for mode in MODES {
        let _ = write!(
            modes,
            "<option value=\"{mode}\"{}>{mode}</option>",
            if mode == mode_now { " selected" } else { "" }
        );
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/overview/noise\" data-confirm=\"Inject noise into {name}'s events? \
         Its drift score will measure it.\">{token}<input type=\"hidden\" name=\"model\" value=\"{name}\">\
         <fieldset><legend>Inject noise (replaces an active injection)</legend>\
         <p><label for=\"{mode_id}\">Mode</label> <select id=\"{mode_id}\" name=\"mode\">{modes}</select></p>\
         <p><label for=\"{features_id}\">Features</label> <input id=\"{features_id}\" name=\"features\" \
         size=\"40\" value=\"{features}\" placeholder=\"every feature the mode suits\" \
         aria-describedby=\"{features_id}-help\"> <span id=\"{features_id}-help\" class=\"muted\">comma-separated names</span></p>\
         <p><label for=\"{rate_id}\">Share of events</label> <input id=\"{rate_id}\" name=\"rate\" \
         inputmode=\"decimal\" value=\"{rate}\" aria-describedby=\"{rate_id}-help\"> \
         <span id=\"{rate_id}-help\" class=\"muted\">in (0, 1]</span></p>\
         <p><label for=\"{scale_id}\">Scale (gaussian)</label> <input id=\"{scale_id}\" name=\"scale\" \
         inputmode=\"decimal\" value=\"{scale}\" aria-describedby=\"{scale_id}-help\"> \
         <span id=\"{scale_id}-help\" class=\"muted\">standard deviations, default 1</span></p>\
         <p><label for=\"{code_id}\">Code (prior shift, new category)</label> <input id=\"{code_id}\" \
         name=\"code\" inputmode=\"decimal\" value=\"{code}\"></p>\
         <p><label for=\"{seed_id}\">Seed</label> <input id=\"{seed_id}\" name=\"seed\" \
         inputmode=\"numeric\" value=\"{seed}\"></p>\
         <p><label for=\"{ttl_id}\">Time to live (s)</label> <input id=\"{ttl_id}\" name=\"ttl_seconds\" \
         inputmode=\"numeric\" value=\"{ttl}\" aria-describedby=\"{ttl_id}-help\"> \
         <span id=\"{ttl_id}-help\" class=\"muted\">at most {max_ttl}</span></p>\
         <p><button type=\"submit\">Inject noise</button></p></fieldset></form>",
        token = session.form_field(auth),
        mode_id = id("mode"),
        features_id = id("features"),
        rate_id = id("rate"),
        scale_id = id("scale"),
        code_id = id("code"),
        seed_id = id("seed"),
        ttl_id = id("ttl"),
        features = value(|s| &s.features, ""),
        rate = value(|s| &s.rate, "0.5"),
        scale = value(|s| &s.scale, ""),
        code = value(|s| &s.code, ""),
        seed = value(|s| &s.seed, "0"),
        ttl = value(
            |s| &s.ttl_seconds,
            &state.config.default_noise_ttl.as_secs().to_string()
        ),
        max_ttl = state.config.max_noise_ttl.as_secs(),
    );
    if card.noise.is_some() {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/overview/noise/stop\" \
             data-confirm=\"Stop the noise injected into {name}'s events?\">{token}\
             <input type=\"hidden\" name=\"model\" value=\"{name}\">\
             <button type=\"submit\">Stop the noise injection</button></form>",
            token = session.form_field(auth),
        );
    }
    body.push_str("</section>");
}

impl SignedForm for NoiseForm {
    fn form_token(&self) -> &str {
        &self.form_token
    }
}

impl SignedForm for StopForm {
    fn form_token(&self) -> &str {
        &self.form_token
    }
}

/// The overview again with why a form was refused (and the noise form as it was sent).
async fn refused(
    state: &AppState,
    session: &Session,
    e: &ApiError,
    sent: Option<&NoiseForm>,
) -> Response {
    render_overview(state, session, e.status, Some(Flash::of(e)), sent).await
}

/// `POST /overview/noise`: the form's injection, through `POST /config/noise`'s handler.
async fn start_noise(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    form: Result<Form<NoiseForm>, FormRejection>,
) -> Response {
    let (admin, form) = match session.admin_form(state.auth(), &headers, form) {
        Ok(checked) => checked,
        Err(e) => return refused(&state, &session, &e, None).await,
    };
    let body = Bytes::from(form.body().to_string());
    match crate::noise::inject(State(state.clone()), admin, body).await {
        Ok(_) => see_other(&format!(
            "/?done=noise_started#model-{}",
            console::encode_component(&form.model)
        )),
        Err(e) => refused(&state, &session, &e, Some(&form)).await,
    }
}

/// `POST /overview/noise/stop`: through `DELETE /config/noise`'s handler.
async fn stop_noise(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    form: Result<Form<StopForm>, FormRejection>,
) -> Response {
    let answer = match session.admin_form(state.auth(), &headers, form) {
        Ok((admin, form)) => {
            let query = ModelQuery {
                model: Some(form.model.clone()),
            };
            crate::noise::reset(State(state.clone()), admin, Query(query))
                .await
                .map(|_| form.model)
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok(model) => see_other(&format!(
            "/?done=noise_stopped#model-{}",
            console::encode_component(&model)
        )),
        Err(e) => refused(&state, &session, &e, None).await,
    }
}

/// `GET /features/{model}/{feature}`
async fn feature_page(
    State(state): State<AppState>,
    session: Session,
    Path((model, feature)): Path<(String, String)>,
) -> Response {
    let auth = state.auth();
    let nav = nav(&state);
    let not_found = |message: String| {
        html(
            StatusCode::NOT_FOUND,
            Page {
                title: "Not found",
                service: "drift",
                nav: &nav,
                session: Some((&session, auth)),
                flash: Some(("error", &message)),
                body: "<p><a href=\"/\">Back to the overview</a></p>".into(),
            }
            .render(),
        )
    };
    let found = {
        let guard = lock(&state.state);
        match guard.models.get(&model) {
            None => Err(format!("No model named {model:?} is watched here.")),
            Some(w) => match w
                .reference
                .profile
                .features
                .iter()
                .position(|f| f.name() == feature)
            {
                None => Err(format!("{model} has no feature named {feature:?}.")),
                Some(index) => {
                    let merged = w.merged();
                    let current = merged.features.sliding(w.config.sliding_ms);
                    let chart =
                        vigie_drift::report::feature_chart(&w.reference.profile, &current, index);
                    let last = w.last.as_ref().and_then(|l| {
                        l.report
                            .features
                            .get(index)
                            .cloned()
                            .map(|f| (l.report.scored, f))
                    });
                    let history = guard.history.get(&model).cloned().unwrap_or_default();
                    Ok((chart, last, history, current.rows()))
                }
            },
        }
    };
    let (chart, last, history, rows) = match found {
        Ok(found) => found,
        Err(message) => return not_found(message),
    };
    // Read off the state's lock: the history is shared, not copied.
    let noise: BTreeSet<i64> = history
        .points
        .iter()
        .filter(|p| p.noise)
        .map(|p| p.at_ms)
        .collect();
    let series: Vec<(Sample, Option<f64>)> = history
        .feature(&feature)
        .into_iter()
        .map(|(at, f)| {
            let sample = Sample {
                at,
                value: Some(f64::from(f.statistic)),
                drifted: f.drifted,
                noise: noise.contains(&at),
            };
            (sample, f.threshold.map(f64::from))
        })
        .collect();
    let mut body = String::new();
    match &last {
        Some((scored, f)) => {
            let _ = write!(
                body,
                "<p>{statistic} now: <b>{value:.4}</b>; noise threshold {threshold}; decision: {decision} \
                 ({rows} events in the window).</p>",
                statistic = escape(&f.rule.to_string()),
                value = f.score,
                threshold = f.noise_threshold.map_or("-".into(), |t| format!("{t:.4}")),
                decision = match (scored, f.drifted) {
                    (false, _) => "<span class=\"muted\">not scored</span>",
                    (true, true) => "<span class=\"drifted\">drifted</span>",
                    (true, false) => "<span class=\"steady\">no drift</span>",
                },
            );
        }
        None => body.push_str("<p class=\"muted\">Not scored yet.</p>"),
    }
    body.push_str("<h2>Its statistic over time</h2>");
    if series.is_empty() {
        body.push_str("<p class=\"muted\">No scoring of this feature yet.</p>");
    } else {
        let max = series
            .iter()
            .filter_map(|(p, t)| p.value.into_iter().chain(*t).reduce(f64::max))
            .fold(0.0f64, f64::max)
            .max(1e-6)
            * 1.1;
        let line: Vec<Sample> = series.iter().map(|(p, _)| *p).collect();
        let threshold = series.last().and_then(|(_, t)| *t);
        let label = format!(
            "{model} {feature}: its statistic at {} scorings (red dots: drifted; dashed: the noise \
             threshold now)",
            series.len()
        );
        body.push_str(&line_chart(&label, &line, threshold, max));
    }
    body.push_str("<h2>The window against the reference</h2>");
    body.push_str(&chart);
    let _ = write!(
        body,
        "<p><a href=\"/v1/drift/report?model={m}#f-{f}\">This feature in the full report</a> · \
         <a href=\"/#model-{m}\">Back to the overview</a></p>",
        m = escape(&model),
        f = escape(&feature),
    );
    let title = format!("{model}: {feature}");
    html(
        StatusCode::OK,
        Page {
            title: &title,
            service: "drift",
            nav: &nav,
            session: Some((&session, auth)),
            flash: None,
            body,
        }
        .render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_noise_form_becomes_the_apis_body_and_keeps_what_is_not_a_number() {
        let form = NoiseForm {
            model: "m".into(),
            mode: "gaussian".into(),
            features: " a, ,b ".into(),
            rate: "0.25".into(),
            scale: "".into(),
            code: "".into(),
            seed: "7".into(),
            ttl_seconds: "ten".into(),
            form_token: "t".into(),
        };
        assert_eq!(
            form.body(),
            serde_json::json!({"model": "m", "mode": "gaussian", "features": ["a", "b"],
                               "rate": 0.25, "seed": 7, "ttl_seconds": "ten"})
        );
        // The API names the field.
        let e = crate::noise::NoiseRequest::parse(form.body().to_string().as_bytes()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("ttl_seconds"));
    }

    #[test]
    fn a_chart_of_one_point_and_of_gaps_draws() {
        let at = |at, value, drifted, noise| Sample {
            at,
            value,
            drifted,
            noise,
        };
        let svg = line_chart("x <y>", &[at(0, Some(0.5), true, false)], Some(0.3), 1.0);
        assert!(svg.contains("<circle"), "{svg}");
        assert!(svg.contains("x &lt;y&gt;"), "{svg}");
        let svg = line_chart(
            "gaps",
            &[
                at(0, Some(0.1), false, true),
                at(1, None, false, false),
                at(2, Some(0.2), false, false),
            ],
            None,
            1.0,
        );
        assert_eq!(svg.matches('M').count(), 2, "{svg}");
        assert!(svg.contains("#fde9c8"), "noise shaded: {svg}");
    }
}
