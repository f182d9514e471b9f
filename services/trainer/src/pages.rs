//! The trainer's pages, in the shell every service shares (`vigie_api::console`):
//!
//! - `/`: every model of the registry, its versions and production version, the actions an
//!   admin takes on it (retrain now, promote a version, roll back), and the recent runs.
//! - `/runs/{id}`: a run's timeline (triggered -> training -> evaluated -> promoted |
//!   rejected | failed, with when each step came) and its comparison with production on the
//!   holdout, with the bootstrap interval of the improvement.
//! - `POST /models/{name}/retrain`, `/promote`, `/rollback`: the forms, which call the API's
//!   handlers (`/v1/models/{name}/...`: the same checks, the same log lines) once their token
//!   and origin are checked; a mistake comes back as the page with the message.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::TimeZone;
use serde::Deserialize;
use serde_json::Value;
use vigie_api::console::{
    Link, Page, Session, SignedForm, encode_segment, escape, html, see_other,
};
use vigie_api::{ApiError, HasAuth};
use vigie_registry::runs::{Run, RunState};
use vigie_registry::{ModelVersion, Status};

use crate::state::AppState;

/// Runs the overview lists.
const RUNS_SHOWN: u32 = 20;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(models_page))
        .route("/runs/{id}", get(run_page))
        .route("/models/{name}/retrain", post(retrain))
        .route("/models/{name}/promote", post(promote))
        .route("/models/{name}/rollback", post(rollback))
}

fn nav() -> Vec<Link> {
    vec![
        Link::new("Models and runs", "/"),
        Link::new("API docs", "/docs"),
    ]
}

fn when(ms: i64) -> String {
    chrono::Utc
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn page(
    session: &Session,
    state: &AppState,
    title: &str,
    flash: Option<(&str, &str)>,
    body: String,
) -> String {
    let nav = nav();
    Page {
        title,
        service: "trainer",
        nav: &nav,
        session: Some((session, state.auth())),
        flash,
        body,
    }
    .render()
}

#[derive(Debug, Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

/// `GET /`
async fn models_page(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<DoneQuery>,
) -> Response {
    let flash = match query.done.as_deref() {
        Some("promoted") => Some(("ok", "Promoted: the services load the new version now.")),
        Some("rolled_back") => Some(("ok", "Rolled back to the version before.")),
        _ => None,
    };
    models_answer(&state, &session, StatusCode::OK, flash).await
}

async fn models_answer(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    flash: Option<(&str, &str)>,
) -> Response {
    let registry = state.registry();
    let (versions, runs) = match (registry.list().await, registry.runs(None, RUNS_SHOWN).await) {
        (Ok(versions), Ok(runs)) => (versions, runs),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "cannot read the registry for the trainer's page");
            let body =
                "<p class=\"drifted\">The registry does not answer: try again in a moment.</p>";
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                page(session, state, "Models and runs", flash, body.into()),
            );
        }
    };
    let mut models: BTreeMap<&str, Vec<&ModelVersion>> = BTreeMap::new();
    for v in &versions {
        models.entry(v.name.as_str()).or_default().push(v);
    }
    let mut body = String::with_capacity(32 * 1024);
    if models.is_empty() {
        body.push_str("<p class=\"muted\">No model in the registry yet: <code>vigie train</code> registers one.</p>");
    }
    for (name, versions) in &models {
        model_section(&mut body, name, versions, session, state).await;
    }
    runs_table(&mut body, &runs);
    html(status, page(session, state, "Models and runs", flash, body))
}

/// A version's holdout figures, the numbers of its evaluation.
fn holdout_figures(v: &ModelVersion) -> String {
    let value = serde_json::to_value(&v.metrics.holdout).unwrap_or_default();
    // An evaluation is tagged by its kind: the figures are one level down.
    let figures = match &value {
        Value::Object(map) if map.len() == 1 => map.values().next().cloned().unwrap_or_default(),
        other => other.clone(),
    };
    let Value::Object(map) = figures else {
        return String::new();
    };
    map.iter()
        .filter_map(|(k, v)| v.as_f64().map(|n| format!("{} {n:.3}", escape(k))))
        .take(6)
        .collect::<Vec<_>>()
        .join(", ")
}

async fn model_section(
    body: &mut String,
    name: &str,
    versions: &[&ModelVersion],
    session: &Session,
    state: &AppState,
) {
    let production = versions.iter().find(|v| v.status == Status::Production);
    let id = escape(name);
    let _ = write!(
        body,
        "<section class=\"card\" id=\"model-{id}\"><h2>{id} <span class=\"muted\">{}</span></h2>\
         <table><thead><tr><th>version</th><th>status</th><th>algorithm</th><th>holdout</th>\
         <th>trained (UTC)</th><th>by</th></tr></thead><tbody>",
        production.map_or("no production version".into(), |v| format!(
            "version {} in production",
            v.version
        )),
    );
    for v in versions.iter().rev() {
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            v.version,
            if v.status == Status::Production {
                "steady"
            } else {
                "muted"
            },
            escape(&format!("{:?}", v.status).to_lowercase()),
            escape(&v.algorithm),
            holdout_figures(v),
            v.created_at.format("%Y-%m-%d %H:%M"),
            escape(&v.triggered_by),
        );
    }
    body.push_str("</tbody></table>");
    if !session.is_admin() {
        body.push_str("<p class=\"muted\">Read only: an admin retrains, promotes and rolls back.</p></section>");
        return;
    }
    let token = session.form_field(state.auth());
    let path = encode_segment(name);
    let _ = write!(
        body,
        "<form class=\"inline\" method=\"post\" action=\"/models/{path}/retrain\" \
         data-confirm=\"Retrain {id} now? The candidate is promoted only if it is shown better.\">{token}\
         <button type=\"submit\">Retrain now</button></form> "
    );
    let others: Vec<&&ModelVersion> = versions
        .iter()
        .filter(|v| v.status != Status::Production)
        .collect();
    if !others.is_empty() {
        let mut options = String::new();
        for v in others.iter().rev() {
            let _ = write!(
                options,
                "<option value=\"{0}\">version {0}</option>",
                v.version
            );
        }
        let _ = write!(
            body,
            "<form class=\"inline\" method=\"post\" action=\"/models/{path}/promote\" \
             data-confirm=\"Promote this version of {id} to production?\">{token}\
             <label for=\"promote-{id}\">Version</label> <select id=\"promote-{id}\" name=\"version\">{options}</select> \
             <button type=\"submit\">Promote</button></form> "
        );
    }
    match state.registry().rollback_target(name).await {
        Ok(Some(target)) => {
            let _ = write!(
                body,
                "<form class=\"inline\" method=\"post\" action=\"/models/{path}/rollback\" \
                 data-confirm=\"Roll {id} back to version {target}?\">{token}\
                 <button type=\"submit\">Roll back to version {target}</button></form>"
            );
        }
        Ok(None) => body.push_str("<span class=\"muted\">No promotion to roll back.</span>"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the rollback target");
        }
    }
    body.push_str("</section>");
}

fn runs_table(body: &mut String, runs: &[Run]) {
    body.push_str("<section class=\"card\" id=\"runs\"><h2>Recent retraining runs</h2>");
    if runs.is_empty() {
        body.push_str("<p class=\"muted\">No run yet.</p></section>");
        return;
    }
    body.push_str(
        "<table><thead><tr><th>run</th><th>model</th><th>trigger</th><th>state</th>\
         <th>production → candidate</th><th>started (UTC)</th></tr></thead><tbody>",
    );
    for run in runs {
        let _ = write!(
            body,
            "<tr><td><a href=\"/runs/{path}\">{short}</a></td><td>{model}</td><td>{trigger}</td>\
             <td class=\"{class}\">{state}</td><td>{production} → {candidate}</td><td>{started}</td></tr>",
            path = escape(&encode_segment(&run.id)),
            short = escape(&run.id.chars().take(8).collect::<String>()),
            model = escape(&run.model),
            trigger = escape(&run.trigger),
            class = state_class(run.state),
            state = run.state.as_str(),
            production = run
                .production_version
                .map_or("-".into(), |v| format!("v{v}")),
            candidate = run
                .candidate_version
                .map_or("-".into(), |v| format!("v{v}")),
            started = when(run.created_at),
        );
    }
    body.push_str("</tbody></table></section>");
}

fn state_class(state: RunState) -> &'static str {
    match state {
        RunState::Promoted => "steady",
        RunState::Rejected | RunState::Failed => "drifted",
        _ => "muted",
    }
}

/// `GET /runs/{id}`
async fn run_page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let run = match state.registry().run(&id).await {
        Ok(Some(run)) => run,
        Ok(None) => {
            let message = format!("No run {id:?}.");
            return html(
                StatusCode::NOT_FOUND,
                page(
                    &session,
                    &state,
                    "Not found",
                    Some(("error", &message)),
                    "<p><a href=\"/\">Back</a></p>".into(),
                ),
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a run for its page");
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                page(
                    &session,
                    &state,
                    "Run",
                    Some(("error", "The registry does not answer: try again.")),
                    String::new(),
                ),
            );
        }
    };
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>{model}, {trigger} by {by}; production version {production}, candidate {candidate}. \
         State: <b class=\"{class}\">{state}</b>{error}</p>",
        model = escape(&run.model),
        trigger = escape(&run.trigger),
        by = escape(&run.triggered_by),
        production = run.production_version.map_or("-".into(), |v| v.to_string()),
        candidate = run.candidate_version.map_or("-".into(), |v| v.to_string()),
        class = state_class(run.state),
        state = run.state.as_str(),
        error = run
            .error
            .as_deref()
            .map(|e| format!(": {}", escape(e)))
            .unwrap_or_default(),
    );
    timeline(&mut body, &run);
    comparison(&mut body, &run.detail);
    if let Some(data) = run.detail.get("data") {
        let _ = write!(
            body,
            "<h2>Training data</h2><pre>{}</pre>",
            escape(&serde_json::to_string_pretty(data).unwrap_or_default())
        );
    }
    let title = format!("Run {}", run.id.chars().take(8).collect::<String>());
    html(StatusCode::OK, page(&session, &state, &title, None, body))
}

/// The steps a run went through, with when each came.
fn timeline(body: &mut String, run: &Run) {
    let end = match run.state {
        RunState::Rejected => RunState::Rejected,
        RunState::Failed => RunState::Failed,
        _ => RunState::Promoted,
    };
    let steps = [
        RunState::Triggered,
        RunState::Training,
        RunState::Evaluated,
        end,
    ];
    body.push_str("<h2>Timeline</h2><ol class=\"timeline\">");
    for step in steps {
        let at = match step {
            RunState::Triggered => Some(run.created_at),
            s => run
                .detail
                .get(format!("{}_at", s.as_str()))
                .and_then(Value::as_i64)
                .or_else(|| {
                    (s == run.state && s.is_final())
                        .then_some(run.finished_at)
                        .flatten()
                }),
        };
        // A failed run says where it failed by the steps' times; others went through every
        // step before their state.
        let reached = step == RunState::Triggered
            || at.is_some()
            || step == run.state
            || (run.state != RunState::Failed && order(step) <= order(run.state));
        // The step the run is in, not over yet.
        let in_progress = step == run.state && !step.is_final();
        let _ = write!(
            body,
            "<li class=\"{}\">{}{}</li>",
            match (reached, step.is_final(), in_progress) {
                (false, ..) | (true, false, true) => "muted",
                (true, true, _) => state_class(step),
                (true, false, false) => "steady",
            },
            step.as_str(),
            match at {
                Some(at) if in_progress => format!(": since {} UTC (in progress)", when(at)),
                Some(at) => format!(": {} UTC", when(at)),
                None if in_progress => " (in progress)".into(),
                None if reached => String::new(),
                None => " (not reached)".into(),
            }
        );
    }
    body.push_str("</ol>");
}

/// A step's place in a run: triggered 0, training 1, evaluated 2, its end 3.
fn order(state: RunState) -> usize {
    match state {
        RunState::Triggered => 0,
        RunState::Training => 1,
        RunState::Evaluated => 2,
        RunState::Promoted | RunState::Rejected | RunState::Failed => 3,
    }
}

/// The comparison on the holdout: each model's figure, the improvement and its bootstrap
/// interval against the margin asked, drawn and written.
fn comparison(body: &mut String, detail: &Value) {
    let Some(c) = detail.pointer("/evaluation/comparison") else {
        return;
    };
    let number = |key: &str| c.get(key).and_then(Value::as_f64);
    let (Some(improvement), Some(lower), Some(upper)) = (
        number("improvement"),
        number("improvement_lower"),
        number("improvement_upper"),
    ) else {
        return;
    };
    let margin = number("min_improvement").unwrap_or(0.0);
    let metric = c.get("metric").and_then(Value::as_str).unwrap_or("metric");
    let _ = write!(
        body,
        "<h2>Candidate against production on the holdout</h2><p>{metric}: production \
         {production}, candidate {candidate}; improvement <b>{improvement:+.4}</b>, bootstrap \
         interval [{lower:+.4}, {upper:+.4}] ({samples} resamples of {rows} rows, {confidence}% \
         one-sided bound); promoted only when the lower bound is above {margin:+.4}: \
         <b class=\"{class}\">{verdict}</b>.</p>",
        metric = escape(metric),
        production = number("production").map_or("-".into(), |v| format!("{v:.4}")),
        candidate = number("candidate").map_or("-".into(), |v| format!("{v:.4}")),
        samples = c.get("samples").and_then(Value::as_u64).unwrap_or(0),
        rows = c.get("rows").and_then(Value::as_u64).unwrap_or(0),
        confidence = number("confidence").map_or("-".into(), |v| format!("{:.0}", v * 100.0)),
        class = if lower > margin { "steady" } else { "drifted" },
        verdict = if lower > margin {
            "shown better"
        } else {
            "not shown better"
        },
    );
    // The interval on an axis that holds it, zero and the margin.
    let lo = lower.min(0.0).min(margin);
    let hi = upper.max(0.0).max(margin);
    let span = (hi - lo).max(1e-9) * 1.2;
    let (lo, w, left) = (lo - span * 0.083, 800.0, 20.0);
    let x = |v: f64| left + (w - 2.0 * left) * (v - lo) / span;
    let _ = write!(
        body,
        "<svg viewBox=\"0 0 {w} 70\" width=\"100%\" role=\"img\" aria-label=\"improvement \
         {improvement:+.4}, interval from {lower:+.4} to {upper:+.4}, margin {margin:+.4}\" \
         xmlns=\"http://www.w3.org/2000/svg\">\
         <line x1=\"{left}\" x2=\"{r}\" y1=\"35\" y2=\"35\" stroke=\"#d9dde5\"/>\
         <line x1=\"{z:.1}\" x2=\"{z:.1}\" y1=\"15\" y2=\"55\" stroke=\"#667085\"/><text x=\"{z:.1}\" y=\"12\" text-anchor=\"middle\">0</text>\
         <line x1=\"{m:.1}\" x2=\"{m:.1}\" y1=\"15\" y2=\"55\" stroke=\"#b3261e\" stroke-dasharray=\"4 3\"/>\
         <text x=\"{m:.1}\" y=\"66\" text-anchor=\"middle\">margin</text>\
         <rect x=\"{l:.1}\" y=\"28\" width=\"{iw:.1}\" height=\"14\" fill=\"#9fb3d1\"/>\
         <circle cx=\"{e:.1}\" cy=\"35\" r=\"5\" fill=\"#2f6fde\"/></svg>",
        r = w - left,
        z = x(0.0),
        m = x(margin),
        l = x(lower),
        iw = (x(upper) - x(lower)).max(1.0),
        e = x(improvement),
    );
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    #[serde(default)]
    form_token: String,
}

impl SignedForm for TokenForm {
    fn form_token(&self) -> &str {
        &self.form_token
    }
}

#[derive(Debug, Deserialize)]
struct PromoteForm {
    #[serde(default)]
    form_token: String,
    #[serde(default)]
    version: String,
}

impl SignedForm for PromoteForm {
    fn form_token(&self) -> &str {
        &self.form_token
    }
}

/// The page again with why the form was refused.
async fn refused(state: &AppState, session: &Session, e: &ApiError) -> Response {
    let text = match &e.field {
        Some(field) => format!("{field}: {}", e.message),
        None => e.message.clone(),
    };
    models_answer(state, session, e.status, Some(("error", &text))).await
}

/// `POST /models/{name}/retrain`: through `POST /v1/models/{name}/retrain`; to the run's page.
async fn retrain(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let answer = match session.admin_form(state.auth(), &headers, form) {
        Ok((admin, _)) => crate::http::retrain(State(state.clone()), admin, Path(name)).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(answer) => {
            let body = axum::body::to_bytes(answer.into_body(), 1024 * 1024)
                .await
                .unwrap_or_default();
            let run: Value = serde_json::from_slice(&body).unwrap_or_default();
            match run.get("id").and_then(Value::as_str) {
                Some(id) => see_other(&format!("/runs/{}", encode_segment(id))),
                None => see_other("/"),
            }
        }
        Err(e) => refused(&state, &session, &e).await,
    }
}

/// `POST /models/{name}/promote`: through `POST /v1/models/{name}/promote`.
async fn promote(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Result<Form<PromoteForm>, FormRejection>,
) -> Response {
    let answer = match session.admin_form(state.auth(), &headers, form) {
        Ok((admin, form)) => {
            // The API's body; a version that is not a number goes as text for the API to
            // refuse.
            let version = match form.version.trim().parse::<u64>() {
                Ok(v) => Value::from(v),
                Err(_) => Value::from(form.version.trim()),
            };
            let body = Bytes::from(serde_json::json!({ "version": version }).to_string());
            crate::http::promote(State(state.clone()), admin, Path(name.clone()), body).await
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok(_) => see_other(&format!("/?done=promoted#model-{}", encode_segment(&name))),
        Err(e) => refused(&state, &session, &e).await,
    }
}

/// `POST /models/{name}/rollback`: through `POST /v1/models/{name}/rollback`.
async fn rollback(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let answer = match session.admin_form(state.auth(), &headers, form) {
        Ok((admin, _)) => {
            crate::http::rollback(State(state.clone()), admin, Path(name.clone())).await
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok(_) => see_other(&format!(
            "/?done=rolled_back#model-{}",
            encode_segment(&name)
        )),
        Err(e) => refused(&state, &session, &e).await,
    }
}
