//! Configuration, shared state, metrics and the router of the prediction service.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry as MetricsRegistry};
use serde::Serialize;
use vigie_api::{ApiError, Auth, CurrentUser, HasAuth, HttpMetrics};
use vigie_registry::Registry;
use vigie_stream::EventProducer;
use vigie_stream::producer::ProducerMetrics;

use crate::models::{ModelSet, Served};

/// Limits and periods of the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest JSON body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most rows in a JSON batch (413 beyond).
    pub max_batch_rows: usize,
    /// Most data rows in a CSV upload; the answer ends with an error line beyond.
    pub max_csv_rows: usize,
    /// Longest CSV line, in bytes.
    pub max_csv_line_bytes: usize,
    /// Longest time a JSON request may take (503 `timeout` beyond). CSV uploads stream and
    /// are not bounded by it.
    pub request_timeout: Duration,
    /// How often the registry (models, accounts) and the broker are checked.
    pub poll_interval: Duration,
    /// Serve only these model names (all production models when empty).
    pub models: Vec<String>,
    /// The topic predictions go to.
    pub topic: String,
    /// The topic feedback (ground truth) goes to.
    pub labels_topic: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_body_bytes: 2 * 1024 * 1024,
            max_batch_rows: 10_000,
            max_csv_rows: 1_000_000,
            max_csv_line_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(2),
            models: Vec::new(),
            topic: vigie_stream::PREDICTIONS_TOPIC.to_string(),
            labels_topic: vigie_stream::LABELS_TOPIC.to_string(),
        }
    }
}

/// Everything `/metrics` exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: MetricsRegistry,
    pub http: HttpMetrics,
    pub producer: ProducerMetrics,
    /// Predictions by model, version and class.
    pub predictions: IntCounterVec,
    /// Rows refused by model and error code (422s, and bad CSV rows).
    pub rejected: IntCounterVec,
    /// Labels (ground truth) queued for `vigie.labels`, by model.
    pub labels: IntCounterVec,
    /// 1 for each model version being served.
    pub model_info: IntGaugeVec,
    pub model_switches: IntCounterVec,
    pub model_load_failures: IntCounterVec,
    /// 1 when the broker answered the last check and knows the predictions topic.
    pub broker_up: IntGauge,
    /// 1 when the registry database answered the last check.
    pub database_up: IntGauge,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = MetricsRegistry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<_> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> prometheus::Result<_> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let model_info = IntGaugeVec::new(
            Opts::new(
                "vigie_model_info",
                "The model versions being served (value 1)",
            ),
            &["model", "version"],
        )?;
        registry.register(Box::new(model_info.clone()))?;
        Ok(Metrics {
            http: HttpMetrics::register(&registry)?,
            producer: ProducerMetrics::register(&registry)?,
            predictions: counter(
                "vigie_predictions_total",
                "Predictions served, each batch row counted",
                &["model", "version", "class"],
            )?,
            rejected: counter(
                "vigie_prediction_rejections_total",
                "Prediction rows refused, by error code",
                &["model", "error"],
            )?,
            labels: counter(
                "vigie_labels_total",
                "Labels (ground truth) queued for vigie.labels",
                &["model"],
            )?,
            model_info,
            model_switches: counter(
                "vigie_model_switches_total",
                "Times the served version of a model changed",
                &["model"],
            )?,
            model_load_failures: counter(
                "vigie_model_load_failures_total",
                "Production versions that could not be loaded (the previous one keeps serving)",
                &["model"],
            )?,
            broker_up: gauge(
                "vigie_broker_up",
                "1 when the Kafka broker answered the last check",
            )?,
            database_up: gauge(
                "vigie_database_up",
                "1 when the registry database answered the last check",
            )?,
            registry,
        })
    }
}

/// What the last dependency check found.
#[derive(Debug, Clone, Serialize)]
pub struct Dependencies {
    pub database: String,
    pub broker: String,
    pub checked_at: Option<DateTime<Utc>>,
}

/// The service's shared state: cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub config: Config,
    pub models: ModelSet,
    pub auth: Auth,
    pub producer: Arc<EventProducer>,
    pub metrics: Metrics,
    pub registry: Registry,
    pub dependencies: ArcSwap<Dependencies>,
    /// Wakes the follower before its next tick (a model event arrived).
    pub wake: tokio::sync::Notify,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl HasAuth for AppState {
    fn auth(&self) -> &Auth {
        &self.0.auth
    }
}

impl AppState {
    /// Builds the state and loads the production models (a service with none starts, and is
    /// not ready until one is registered).
    pub async fn new(
        config: Config,
        registry: Registry,
        auth: Auth,
        producer: Arc<EventProducer>,
        metrics: Metrics,
    ) -> Self {
        let state = AppState(Arc::new(Inner {
            config,
            models: ModelSet::default(),
            auth,
            producer,
            metrics,
            registry,
            dependencies: ArcSwap::from_pointee(Dependencies {
                database: "not checked yet".into(),
                broker: "not checked yet".into(),
                checked_at: None,
            }),
            wake: tokio::sync::Notify::new(),
        }));
        state.sync_models().await;
        state
    }

    /// Loads the production version of each served model when it changed.
    pub async fn sync_models(&self) {
        let only = &self.config.models;
        if let Err(e) = self.models.sync(&self.registry, only, &self.metrics).await {
            tracing::warn!(error = %e, "cannot read the registry; the loaded models keep serving");
        }
    }

    /// One round of the follower: models, accounts, database and broker.
    pub async fn poll(&self) {
        self.sync_models().await;
        let database = match self.auth.refresh().await {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("unreachable: {e}"),
        };
        self.metrics.database_up.set(i64::from(database == "ok"));
        let producer = self.producer.clone();
        let topic = self.config.topic.clone();
        let broker = tokio::task::spawn_blocking(move || {
            producer.topic_available(&topic, Duration::from_secs(2))
        })
        .await
        .unwrap_or(false);
        self.metrics.broker_up.set(i64::from(broker));
        let broker = if broker {
            "ok".to_string()
        } else {
            format!(
                "unreachable, or no topic {}: events wait in the producer's queue ({} now)",
                self.config.topic,
                self.producer.in_flight()
            )
        };
        self.dependencies.store(Arc::new(Dependencies {
            database,
            broker,
            checked_at: Some(Utc::now()),
        }));
    }

    /// Polls every `poll_interval`, and at once when [`Inner::wake`] is notified (a model
    /// event), until the task is dropped.
    pub async fn follow(self) {
        let mut tick = tokio::time::interval(self.config.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.wake.notified() => tracing::info!("model event: reading the registry now"),
            }
            self.poll().await;
        }
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let timeout = state.config.request_timeout;
    let body_limit = state.config.max_body_bytes;
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
        .merge(vigie_api::auth::routes())
        .layer(DefaultBodyLimit::max(body_limit))
        .route_layer(from_fn_with_state(timeout, vigie_api::layers::timeout));
    let streaming_routes = Router::new()
        .route(
            "/v1/models/{name}/predict/csv",
            post(crate::csv::predict_csv),
        )
        .layer(DefaultBodyLimit::disable());
    let open_routes = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(crate::openapi::document));
    Router::new()
        .merge(json_routes)
        .merge(streaming_routes)
        .merge(open_routes)
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

#[derive(Debug, Serialize)]
struct ServedView {
    name: String,
    version: u32,
    serving_since: DateTime<Utc>,
}

/// 200 when at least one model is loaded: predictions work even while the broker or the
/// database is away (events queue, accounts are cached), so only the models decide; the
/// dependencies are reported beside.
async fn ready(State(state): State<AppState>) -> Response {
    let models: Vec<ServedView> = state
        .models
        .all()
        .iter()
        .map(|s| ServedView {
            name: s.version.name.clone(),
            version: s.version.version,
            serving_since: s.since,
        })
        .collect();
    let ready = !models.is_empty();
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "reason": if ready { None } else { Some("no production model is loaded; train or promote one") },
        "models": models,
        "dependencies": **state.dependencies.load(),
        "events_queued": state.producer.in_flight(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    state.producer.update_gauges();
    vigie_api::metrics_response(&state.metrics.registry)
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

/// Serves until `shutdown` resolves, then drains the requests in flight and flushes the
/// producer for up to `flush_timeout`. Returns how many events were still queued at the end
/// (0 unless the broker stayed away through the flush).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    flush_timeout: Duration,
) -> std::io::Result<usize> {
    let follower = tokio::spawn(state.clone().follow());
    let app = router(state.clone());
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    follower.abort();
    let producer = state.producer.clone();
    let queued = producer.in_flight();
    tracing::info!(queued, "requests drained; flushing events");
    let left = tokio::task::spawn_blocking(move || producer.flush(flush_timeout))
        .await
        .unwrap_or(queued);
    if left > 0 {
        tracing::error!(
            left,
            "events still queued after the flush timeout are lost with this process"
        );
    } else {
        tracing::info!("every event delivered");
    }
    served.map(|()| left)
}
