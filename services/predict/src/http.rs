//! The prediction service's routes: the models, predictions (JSON, batch, streamed CSV) and
//! feedback. The shell (`vigie_api::service::router`) adds the operations and account routes.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use vigie_api::{ApiError, CurrentUser};

use crate::models::Served;
use crate::state::{AppState, Config};

/// The whole HTTP surface: the service's routes inside the shell.
pub fn router(state: AppState) -> Router {
    let routes = routes(&state.config);
    vigie_api::service::router(state, routes)
}

/// The service's own routes. JSON bodies are bounded by `max_body_bytes` and their handling
/// by `request_timeout`; CSV uploads stream, bounded by rows instead.
pub fn routes(config: &Config) -> Router<AppState> {
    let json_routes = Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{name}", get(model_detail))
        .route(
            "/v1/models/{name}/predict",
            post(crate::predict::predict_one),
        )
        .route(
            "/v1/models/{name}/predict/batch",
            post(crate::predict::predict_batch),
        )
        .route(
            "/v1/models/{name}/feedback",
            post(crate::feedback::feedback),
        )
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .route_layer(from_fn_with_state(
            config.request_timeout,
            vigie_api::layers::timeout,
        ));
    let streaming_routes = Router::new()
        .route(
            "/v1/models/{name}/predict/csv",
            post(crate::csv::predict_csv),
        )
        .layer(DefaultBodyLimit::disable());
    json_routes.merge(streaming_routes)
}

/// A served model, as `/v1/models` lists it.
#[derive(Debug, Serialize)]
pub struct ModelSummary {
    pub name: String,
    pub version: u32,
    pub description: String,
    pub algorithm: String,
    pub threshold: f64,
    pub spec_hash: String,
    pub trained_at: DateTime<Utc>,
    pub serving_since: DateTime<Utc>,
    pub holdout_roc_auc: f64,
    pub holdout_f1: f64,
    pub features: usize,
    pub positive_label: String,
    pub negative_label: String,
}

impl ModelSummary {
    fn of(s: &Served) -> Self {
        let artifact = s.model.artifact();
        ModelSummary {
            name: s.version.name.clone(),
            version: s.version.version,
            description: artifact.spec.description.clone(),
            algorithm: s.version.algorithm.clone(),
            threshold: artifact.threshold,
            spec_hash: artifact.spec_hash.clone(),
            trained_at: artifact.created_at,
            serving_since: s.since,
            holdout_roc_auc: artifact.metrics.holdout.roc_auc,
            holdout_f1: artifact.metrics.holdout.f1,
            features: artifact.feature_order.len(),
            positive_label: artifact.spec.target.positive_label.clone(),
            negative_label: artifact.spec.target.negative_label.clone(),
        }
    }
}

async fn list_models(State(state): State<AppState>, _user: CurrentUser) -> Json<Vec<ModelSummary>> {
    Json(
        state
            .models
            .all()
            .iter()
            .map(|s| ModelSummary::of(s))
            .collect(),
    )
}

async fn model_detail(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let served = state.models.get_or_404(&name)?;
    let spec = &served.model.artifact().spec;
    Ok(Json(serde_json::json!({
        "model": ModelSummary::of(&served),
        "target": spec.target,
        "features": spec.features,
    }))
    .into_response())
}
