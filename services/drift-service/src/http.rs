//! The drift service's routes: `/v1/drift` (the state per model and feature),
//! `/v1/drift/report` (the HTML report of the live window) and `/config/noise` (see
//! [`crate::noise`]). The shell (`vigie_api::service::router`) adds the operations and account
//! routes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use vigie_api::{ApiError, CurrentUser, HasAuth};
use vigie_drift::{Cadence, compare_at};

use crate::quality::{PeriodView, Realised};
use crate::score::time;
use crate::state::AppState;
use crate::unseen::UnseenCodes;
use crate::watch::QualityTargets;
use crate::watch::{ModelQuery, ModelWatch, NoiseView, Reference, Scored, WindowScore, lock};
use vigie_model::estimate::Estimated;

/// The whole HTTP surface: the service's routes inside the shell.
pub fn router(state: AppState) -> Router {
    vigie_api::service::router(state, routes())
}

/// The service's own routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/drift", get(drift))
        .route("/v1/drift/report", get(report))
        .route("/v1/drift/history", get(history))
        .route(
            "/config/noise",
            get(crate::noise::show)
                .post(crate::noise::inject)
                .delete(crate::noise::reset),
        )
        .merge(crate::pages::routes())
}

#[derive(Debug, Serialize)]
struct ReferenceView {
    version: u32,
    spec_hash: String,
    rows: u64,
    real_rows: u64,
    synthetic_rows: u64,
    loaded_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
struct OpenWindow {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    events: u64,
}

#[derive(Debug, Serialize)]
struct WindowsView {
    /// The sliding window: the last this many seconds of event time.
    sliding_seconds: f64,
    sliding_events: u64,
    pane_seconds: f64,
    tumbling_seconds: f64,
    lateness_seconds: f64,
    /// Tumbling windows not yet closed and scored.
    tumbling_open: Vec<OpenWindow>,
    late_events: u64,
    /// The partitions whose events were counted, with their counts.
    partitions: Vec<PartitionView>,
}

/// A partition's share of a model's counts.
#[derive(Debug, Serialize)]
struct PartitionView {
    partition: i32,
    /// Read by this instance, or by another (its partial: the instance that counted it and
    /// when it published it).
    read_here: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    published_at: Option<DateTime<Utc>>,
    events: u64,
    /// The newest event time counted on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    newest_event: Option<DateTime<Utc>>,
    late_events: u64,
}

/// One model's drift, as `/v1/drift` shows it.
#[derive(Debug, Serialize)]
pub struct ModelView {
    model: String,
    reference: ReferenceView,
    /// Events counted since the reference was loaded.
    events: u64,
    since: DateTime<Utc>,
    windows: WindowsView,
    /// The last score of the sliding window (null before the first scoring).
    sliding: Option<Arc<Scored>>,
    /// Scores of the last closed tumbling windows, oldest first.
    tumbling: Vec<WindowScore>,
    noise: Option<NoiseView>,
    /// Labels joined to the answers: the quality of the last labelled ones.
    quality: QualityView,
    /// Features whose events held codes the spec does not list, since the reference was
    /// loaded: the most frequent codes first.
    unseen_codes: Vec<UnseenView>,
}

/// One feature's unseen codes.
#[derive(Debug, Serialize)]
struct UnseenView {
    feature: String,
    events: u64,
    /// The most frequent codes (at most [`UNSEEN_SHOWN`]), with their events.
    top: Vec<UnseenCode>,
    /// Distinct codes kept, and events whose code came after the kept ones.
    distinct: usize,
    other_codes_events: u64,
}

#[derive(Debug, Serialize)]
struct UnseenCode {
    code: String,
    events: u64,
}

/// Unseen codes shown per feature.
const UNSEEN_SHOWN: usize = 10;

fn unseen_view(reference: &Reference, unseen: &UnseenCodes) -> Vec<UnseenView> {
    reference
        .profile
        .features
        .iter()
        .zip(&unseen.features)
        .filter(|(_, u)| u.events > 0)
        .map(|(f, u)| UnseenView {
            feature: f.name().to_string(),
            events: u.events,
            top: u
                .top(UNSEEN_SHOWN)
                .into_iter()
                .map(|(code, events)| UnseenCode {
                    code: code.to_string(),
                    events,
                })
                .collect(),
            distinct: u.values.len(),
            other_codes_events: u.other_values,
        })
        .collect()
}

/// The report page's section on unseen codes (empty when there are none). Codes come from
/// requests: escaped.
fn unseen_section(unseen: &[UnseenView]) -> String {
    use vigie_drift::report::escape;
    if unseen.is_empty() {
        return String::new();
    }
    let rows: String = unseen
        .iter()
        .map(|u| {
            let codes: Vec<String> = u
                .top
                .iter()
                .map(|c| format!("<code>{}</code> ({})", escape(&c.code), c.events))
                .collect();
            let more = if u.distinct > u.top.len() || u.other_codes_events > 0 {
                format!(
                    ", and {} more codes",
                    u.distinct - u.top.len() + usize::from(u.other_codes_events > 0)
                )
            } else {
                String::new()
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}{more}</td></tr>",
                escape(&u.feature),
                u.events,
                codes.join(", ")
            )
        })
        .collect();
    format!(
        "<section id=\"unseen\"><h2>Codes the spec does not list</h2>\
         <p>Since the reference was loaded; counted in each feature's \"other\" bin.</p>\
         <table><thead><tr><th>feature</th><th>events</th><th>most frequent codes (events)</th></tr></thead>\
         <tbody>{rows}</tbody></table></section>"
    )
}

/// The report's quality section: the live estimate beside the holdout figures and the
/// realised ones, then each period's estimate beside its realised figures. Numbers and
/// metric names only: nothing to escape.
fn quality_section(w: &ModelWatch) -> String {
    let targets = &w.reference.quality;
    let quality = w.quality_sum();
    let realised = quality.realised(w.reference.regression_margin);
    let labels = realised.labels;
    let realised = realised.metrics();
    let fmt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
    let find = |name: &str| realised.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    let mut rows = String::new();
    let estimated = quality.estimate(w.newest_ms());
    let names: Vec<&str> = match &estimated {
        Some(_) => vec!["roc_auc", "f1", "precision", "recall", "accuracy"],
        None => vec!["mae", "interval_coverage", "rmse"],
    };
    for name in names {
        let band = estimated.as_ref().and_then(|e| e.figure(name));
        rows.push_str(&format!(
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            fmt(band.map(|b| b.value)),
            band.map_or("–".into(), |b| format!("{:.3} – {:.3}", b.lower, b.upper)),
            fmt(find(name)),
            fmt(targets.holdout.get(name).copied()),
            fmt(targets.tolerance.get(name).copied()),
        ));
    }
    let periods: String = quality
        .periods()
        .iter()
        .rev()
        .map(|p| {
            let est = p.estimated.as_ref();
            let real = p.realised.as_ref();
            format!(
                "<tr><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                p.start.format("%Y-%m-%d %H:%M:%S"),
                p.answers,
                100.0 * p.labelled_share,
                fmt(est.map(|e| e.roc_auc.value)),
                fmt(real.and_then(|r| r.roc_auc)),
                fmt(est.map(|e| e.f1.value)),
                fmt(real.map(|r| r.f1)),
                fmt(p.mae),
                fmt(p.interval_coverage),
            )
        })
        .collect();
    format!(
        "<section id=\"quality\"><h2>Model quality</h2>\
         <p>Estimated without labels from the probabilities of the last {live} answers (a \
         classification's; 95% band of the realised figure for a window this size), realised on \
         the last {labels} labelled answers, beside the production version's holdout figures. \
         An alert fires when either falls short of the holdout figure by more than the \
         tolerance.</p>\
         <table><thead><tr><th>metric</th><th>estimated</th><th>band</th><th>realised</th>\
         <th>holdout</th><th>tolerance</th></tr></thead><tbody>{rows}</tbody></table>\
         <h3>By period</h3><table><thead><tr><th>start</th><th>answers</th><th>labelled</th>\
         <th>ROC AUC est.</th><th>ROC AUC real.</th><th>F1 est.</th><th>F1 real.</th>\
         <th>MAE</th><th>coverage</th></tr></thead><tbody>{periods}</tbody></table></section>",
        live = estimated.as_ref().map_or(0, |e| e.rows),
    )
}

#[derive(Debug, Serialize)]
struct QualityView {
    #[serde(flatten)]
    realised: Realised,
    /// Answers waiting for their label, and labels read before their answer.
    answers_waiting: usize,
    labels_waiting: usize,
    /// A classification's quality estimated without labels on the live answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    estimated: Option<Estimated>,
    /// What the quality alerts compare with: the version's holdout figures, the tolerances,
    /// the labels the realised alert needs.
    targets: QualityTargets,
    #[serde(skip_serializing_if = "Option::is_none")]
    labelled_share: Option<f64>,
    /// Each period's answers, labels, estimated and realised quality, oldest first.
    periods: Vec<PeriodView>,
}

fn view(w: &ModelWatch) -> ModelView {
    let r = &w.reference;
    let config = &w.config;
    let merged = w.merged();
    let width = config.tumbling_ms;
    ModelView {
        model: r.model.clone(),
        reference: ReferenceView {
            version: r.version,
            spec_hash: r.spec_hash.clone(),
            rows: r.profile.rows,
            real_rows: r.profile.real_rows,
            synthetic_rows: r.profile.synthetic_rows,
            loaded_at: r.loaded_at,
        },
        events: merged.events,
        since: w.since,
        windows: WindowsView {
            sliding_seconds: config.sliding_ms as f64 / 1000.0,
            sliding_events: merged.features.sliding(config.sliding_ms).rows(),
            pane_seconds: config.pane_ms as f64 / 1000.0,
            tumbling_seconds: width as f64 / 1000.0,
            lateness_seconds: config.lateness_ms as f64 / 1000.0,
            tumbling_open: merged
                .features
                .windows(width, w.tumbling_scored_until_ms)
                .into_iter()
                .map(|c| OpenWindow {
                    start: time(c.start_ms),
                    end: time(c.end_ms),
                    events: c.histograms.rows(),
                })
                .collect(),
            late_events: merged.features.late(),
            partitions: w
                .parts()
                .into_iter()
                .map(|(partition, c)| {
                    let remote = w
                        .remote
                        .get(&partition)
                        .filter(|_| !w.partitions.contains_key(&partition));
                    (partition, c, remote)
                })
                .map(|(partition, c, remote)| PartitionView {
                    partition,
                    read_here: remote.is_none(),
                    instance: remote.map(|r| r.instance.clone()),
                    published_at: remote.map(|r| r.written_at),
                    events: c.events,
                    newest_event: c.features.max_time_ms().map(time),
                    late_events: c.features.late(),
                })
                .collect(),
        },
        sliding: w.last.clone(),
        tumbling: w.tumbling_scores.iter().cloned().collect(),
        noise: w.noise_view(),
        quality: {
            let quality = w.quality_sum();
            let (answers_waiting, labels_waiting) = quality.waiting();
            QualityView {
                realised: quality.realised(r.regression_margin),
                answers_waiting,
                labels_waiting,
                estimated: quality.estimate(merged.features.max_time_ms()),
                targets: r.quality.clone(),
                labelled_share: quality.labelled_share(),
                periods: quality.periods(),
            }
        },
        unseen_codes: unseen_view(r, &merged.unseen),
    }
}

#[derive(Debug, Serialize)]
struct DriftView {
    models: Vec<ModelView>,
    consumer: ConsumerView,
}

#[derive(Debug, Serialize)]
struct ConsumerView {
    group: String,
    topic: String,
    /// Next offset counted, per partition.
    positions: BTreeMap<i32, i64>,
    lag_events: i64,
    /// The labels topic and the next offset read on each of its partitions.
    #[serde(skip_serializing_if = "Option::is_none")]
    labels_topic: Option<String>,
    label_positions: BTreeMap<i32, i64>,
}

/// `GET /v1/drift[?model=NAME]`
async fn drift(
    State(state): State<AppState>,
    _user: CurrentUser,
    Query(query): Query<ModelQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let guard = lock(&state.state);
    let models: Vec<ModelView> = match &query.model {
        Some(name) => {
            let w = guard
                .models
                .get(name)
                .ok_or_else(|| guard.unknown_model(name))?;
            vec![view(w)]
        }
        None => guard.models.values().map(view).collect(),
    };
    let positions = guard.positions.offsets.clone();
    let label_positions = guard.label_positions.offsets.clone();
    drop(guard);
    let body = DriftView {
        models,
        consumer: ConsumerView {
            group: state.config.group.clone(),
            topic: state.config.topic.clone(),
            positions,
            lag_events: state.metrics.consumer_lag.get(),
            labels_topic: state.config.labels_topic.clone(),
            label_positions,
        },
    };
    serde_json::to_value(body)
        .map(Json)
        .map_err(|e| ApiError::internal("drift view", &e))
}

/// `GET /v1/drift/history[?model=NAME]`: the model's drift over time (see
/// [`crate::history`]), oldest point first.
async fn history(
    State(state): State<AppState>,
    _user: CurrentUser,
    Query(query): Query<ModelQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let guard = lock(&state.state);
    let name = guard.pick(query.model.as_deref())?;
    let history = guard.history.get(&name).cloned().unwrap_or_default();
    drop(guard);
    Ok(Json(serde_json::json!({
        "model": name,
        "step_seconds": state.config.windows.history_step_ms as f64 / 1000.0,
        "capacity": state.config.windows.history_points,
        "features": history.features,
        "points": history.points,
    })))
}

/// `GET /v1/drift/report[?model=NAME]`: the live sliding window against the reference; with
/// several models watched and none named, a page linking to each model's report.
async fn report(
    State(state): State<AppState>,
    user: Result<CurrentUser, ApiError>,
    headers: axum::http::HeaderMap,
    method: axum::http::Method,
    uri: axum::http::Uri,
    Query(query): Query<ModelQuery>,
) -> Result<Response, ApiError> {
    if let Err(e) = user {
        // A browser without a session goes to the sign-in page (saying why), and comes back.
        let browser = !headers.contains_key(axum::http::header::AUTHORIZATION)
            && headers
                .get(axum::http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/html"));
        if browser
            && let Err(sign_in) =
                vigie_api::console::Session::of(state.auth(), &method, &uri, &headers)
        {
            return Ok(sign_in.into_response());
        }
        return Err(e);
    }
    report_page(&state, &query)
        .map(|page| vigie_api::console::html(axum::http::StatusCode::OK, page))
}

/// The report's page: the model's window, or the index of models when several are watched
/// and none is named.
fn report_page(state: &AppState, query: &ModelQuery) -> Result<String, ApiError> {
    let (reference, current, noise, cadence, unseen, quality, window_seconds) = {
        let guard = lock(&state.state);
        if query.model.is_none() && guard.models.len() > 1 {
            return Ok(report_index(guard.models.values()));
        }
        let name = guard.pick(query.model.as_deref())?;
        let w = &guard.models[&name];
        let merged = w.merged();
        (
            w.reference.clone(),
            merged.features.sliding(w.config.sliding_ms),
            w.noise.is_some(),
            // As the scoring sees the window: the same noise thresholds.
            Cadence::sliding(
                w.config.sliding_ms as f64 / 1000.0,
                state.config.score_interval.as_secs_f64(),
            ),
            unseen_view(&w.reference, &merged.unseen),
            quality_section(w),
            w.config.sliding_ms as f64 / 1000.0,
        )
    };
    let result = compare_at(&reference.profile, &current, &reference.rules, cadence);
    let title = format!(
        "{} v{}: the {} events of the last {} s against the reference{}",
        reference.model,
        reference.version,
        current.rows(),
        window_seconds,
        if noise {
            " (noise injection active)"
        } else {
            ""
        }
    );
    let mut page = vigie_drift::report::html(&title, &reference.profile, &current, &result);
    let section = quality + &unseen_section(&unseen);
    match page.rfind("</body>") {
        Some(at) => page.insert_str(at, &section),
        None => page.push_str(&section),
    }
    if let Some(at) = page.find("<body>") {
        page.insert_str(at + "<body>".len(), BACK);
    }
    Ok(page)
}

/// The link from the report back to the overview.
const BACK: &str = "<p><a href=\"/\">&larr; Overview</a></p>";

/// The page `/v1/drift/report` answers when several models are watched and none is named: one
/// link per model, with its reference version and the events in its window. Model names are
/// lowercase letters, digits and `-` (the spec checks it): nothing to escape.
fn report_index<'a>(models: impl Iterator<Item = &'a ModelWatch>) -> String {
    let items: String = models
        .map(|w| {
            let r = &w.reference;
            format!(
                "<li><a href=\"?model={m}\">{m}</a>: reference version {v}, {n} events in the window</li>",
                m = r.model,
                v = r.version,
                n = w.merged().features.sliding(w.config.sliding_ms).rows()
            )
        })
        .collect();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Drift reports</title></head>\
         <body><p><a href=\"/\">&larr; Overview</a></p><h1>Drift reports</h1><p>Several models are watched: pick one.</p><ul>{items}</ul></body></html>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unseen_codes_come_from_requests_and_are_escaped_on_the_page() {
        let unseen = vec![UnseenView {
            feature: "STREET_NAME".into(),
            events: 3,
            top: vec![UnseenCode {
                code: "<script>alert(1)</script>".into(),
                events: 3,
            }],
            distinct: 1,
            other_codes_events: 0,
        }];
        let page = unseen_section(&unseen);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"), "{page}");
        assert!(page.contains("<td>3</td>"), "{page}");
        assert_eq!(unseen_section(&[]), "");
    }
}
