//! The HTTP surface: `/health`, `/ready`, `/metrics`, `/v1/drift` (the state per model and
//! feature), `/v1/drift/report` (the HTML report of the live window), `/config/noise`, the
//! token route, `/openapi.json` and `/docs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rdkafka::consumer::Consumer;
use serde::{Deserialize, Serialize};
use vigie_api::{ApiError, CurrentUser};
use vigie_drift::compare;

use crate::score::{Scored, lock, time};
use crate::service::AppState;
use crate::watch::{ModelWatch, NoiseView, WindowScore};

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/drift", get(drift))
        .route("/v1/drift/report", get(report))
        .route(
            "/config/noise",
            get(crate::noise::show)
                .post(crate::noise::inject)
                .delete(crate::noise::reset),
        )
        .route("/openapi.json", get(crate::openapi::document))
        .merge(vigie_api::auth::routes());
    routes
        .route_layer(from_fn_with_state(
            state.metrics.http.clone(),
            vigie_api::layers::track,
        ))
        .merge(vigie_api::docs::routes("/openapi.json"))
        .fallback(vigie_api::error::not_found)
        .layer(from_fn(vigie_api::layers::request_id))
        .with_state(state)
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// 200 once a reference is loaded: events of models without one are not scored. The
/// consumer's assignment and the dependencies are reported beside.
async fn ready(State(state): State<AppState>) -> Response {
    let models: Vec<serde_json::Value> = lock(&state.state)
        .models
        .values()
        .map(|w| {
            serde_json::json!({
                "model": w.reference.model,
                "reference_version": w.reference.version,
                "since": w.since,
            })
        })
        .collect();
    let partitions: Vec<i32> = state
        .consumer
        .as_ref()
        .and_then(|c| c.assignment().ok())
        .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default();
    let ready = !models.is_empty();
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "reason": if ready { None } else { Some("no production model has a reference loaded; train or promote one") },
        "models": models,
        "consumer": {
            "group": state.config.group,
            "topic": state.config.topic,
            "assigned_partitions": partitions,
        },
        "dependencies": **state.dependencies.load(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    vigie_api::metrics_response(&state.metrics.registry)
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
    sliding_capacity: usize,
    sliding_events: usize,
    tumbling_seconds: f64,
    lateness_seconds: f64,
    tumbling_open: Vec<OpenWindow>,
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
}

fn view(w: &ModelWatch, lateness_ms: i64) -> ModelView {
    let r = &w.reference;
    let width = w.tumbling.width_ms();
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
        events: w.events,
        since: w.since,
        windows: WindowsView {
            sliding_capacity: w.sliding.capacity(),
            sliding_events: w.sliding.len(),
            tumbling_seconds: width as f64 / 1000.0,
            lateness_seconds: lateness_ms as f64 / 1000.0,
            tumbling_open: w
                .tumbling
                .open()
                .map(|(start, h)| OpenWindow {
                    start: time(start),
                    end: time(start + width),
                    events: h.rows(),
                })
                .collect(),
            late_events: w.late,
        },
        sliding: w.last.clone(),
        tumbling: w.tumbling_scores.iter().cloned().collect(),
        noise: w.noise_view(),
    }
}

#[derive(Debug, Deserialize)]
pub struct ModelQuery {
    pub(crate) model: Option<String>,
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
}

/// `GET /v1/drift[?model=NAME]`
async fn drift(
    State(state): State<AppState>,
    _user: CurrentUser,
    Query(query): Query<ModelQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let guard = lock(&state.state);
    let lateness = guard.config.lateness_ms;
    let models: Vec<ModelView> = match &query.model {
        Some(name) => {
            let w = guard
                .models
                .get(name)
                .ok_or_else(|| unknown_model(name, &guard.models))?;
            vec![view(w, lateness)]
        }
        None => guard.models.values().map(|w| view(w, lateness)).collect(),
    };
    let positions = guard.offsets.clone();
    drop(guard);
    let body = DriftView {
        models,
        consumer: ConsumerView {
            group: state.config.group.clone(),
            topic: state.config.topic.clone(),
            positions,
            lag_events: state.metrics.consumer_lag.get(),
        },
    };
    serde_json::to_value(body)
        .map(Json)
        .map_err(|e| ApiError::internal("drift view", &e))
}

pub(crate) fn unknown_model(name: &str, models: &BTreeMap<String, ModelWatch>) -> ApiError {
    let names: Vec<&str> = models.keys().map(String::as_str).collect();
    ApiError::not_found(
        "unknown_model",
        format!(
            "no model named {name:?} is watched; watched: {}",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ),
    )
    .with_field("model")
}

/// The model a request names, or the only one watched.
pub(crate) fn pick_model(
    models: &BTreeMap<String, ModelWatch>,
    name: Option<&str>,
) -> Result<String, ApiError> {
    match name {
        Some(name) if models.contains_key(name) => Ok(name.to_string()),
        Some(name) => Err(unknown_model(name, models)),
        None if models.len() == 1 => Ok(models.keys().next().cloned().unwrap_or_default()),
        None if models.is_empty() => Err(ApiError::unavailable(
            "no_model",
            "no model is watched yet: no production version has a reference",
        )),
        None => Err(ApiError::invalid(
            "model_required",
            format!(
                "several models are watched ({}): name one",
                models.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
        .with_field("model")),
    }
}

/// `GET /v1/drift/report[?model=NAME]`: the live sliding window against the reference.
async fn report(
    State(state): State<AppState>,
    _user: CurrentUser,
    Query(query): Query<ModelQuery>,
) -> Result<Html<String>, ApiError> {
    let (reference, current, noise) = {
        let guard = lock(&state.state);
        let name = pick_model(&guard.models, query.model.as_deref())?;
        let w = &guard.models[&name];
        (
            w.reference.clone(),
            w.sliding.histograms().clone(),
            w.noise.is_some(),
        )
    };
    let result = compare(&reference.profile, &current, &reference.rules);
    let title = format!(
        "{} v{}: the last {} events against the reference{}",
        reference.model,
        reference.version,
        current.rows(),
        if noise {
            " (noise injection active)"
        } else {
            ""
        }
    );
    Ok(Html(vigie_drift::report::html(
        &title,
        &reference.profile,
        &current,
        &result,
    )))
}
