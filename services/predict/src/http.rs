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
    /// `binary_classification` or `regression`.
    pub task: &'static str,
    pub description: String,
    pub algorithm: String,
    /// A classification's decision threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    pub spec_hash: String,
    pub trained_at: DateTime<Utc>,
    pub serving_since: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holdout_roc_auc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holdout_f1: Option<f64>,
    /// A regression's holdout MAE, in the target's unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holdout_mae: Option<f64>,
    /// A regression's interval coverage: the one asked for, and the one measured on the
    /// holdout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_coverage: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holdout_interval_coverage: Option<f64>,
    /// A regression's unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub features: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub positive_label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_label: Option<String>,
}

impl ModelSummary {
    fn of(s: &Served) -> Self {
        let artifact = s.model.artifact();
        let binary = artifact.metrics.holdout.as_binary();
        let regression = artifact.metrics.holdout.as_regression();
        let target = &artifact.spec.target;
        ModelSummary {
            name: s.version.name.clone(),
            version: s.version.version,
            task: artifact.task.as_str(),
            description: artifact.spec.description.clone(),
            algorithm: s.version.algorithm.clone(),
            threshold: binary.map(|_| artifact.threshold),
            spec_hash: artifact.spec_hash.clone(),
            trained_at: artifact.created_at,
            serving_since: s.since,
            holdout_roc_auc: binary.map(|m| m.roc_auc),
            holdout_f1: binary.map(|m| m.f1),
            holdout_mae: regression.map(|m| m.mae),
            interval_coverage: artifact.regression.as_ref().map(|r| r.interval.coverage),
            holdout_interval_coverage: regression.and_then(|m| m.interval_coverage),
            unit: regression.map(|_| target.unit.clone()),
            features: artifact.feature_order.len(),
            positive_label: target.positive_label.clone(),
            negative_label: target.negative_label.clone(),
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
    let artifact = served.model.artifact();
    let spec = &artifact.spec;
    let mut detail = serde_json::json!({
        "model": ModelSummary::of(&served),
        "target": spec.target,
        "features": spec.features,
    });
    // A regression's interval and groups: what its answers' flags stand on.
    if let Some(regression) = &artifact.regression {
        detail["regression"] = serde_json::json!(regression);
    }
    Ok(Json(detail).into_response())
}
