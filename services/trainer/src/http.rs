//! The trainer's routes: the Alertmanager webhook, runs, manual retrain / promote / rollback.
//! The shell (`vigie_api::service::router`) adds the operations and account routes.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use vigie_api::{AdminUser, ApiError, CurrentUser};
use vigie_registry::{Role, SeenAlert, Status};
use vigie_stream::ModelAction;

use crate::alert;
use crate::pipeline::{Asked, PromoteError, ask, promote_checked};
use crate::state::{AppState, now_ms, refresh_models};

/// The whole HTTP surface: the trainer's routes inside the shell.
pub fn router(state: AppState) -> Router {
    vigie_api::service::router(state, routes())
}

/// Largest webhook body: Alertmanager sends every alert of a group in one notification.
pub const WEBHOOK_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The trainer's own routes (bodies up to 1 MiB; the webhook's up to 16 MiB).
pub fn routes() -> Router<AppState> {
    let webhook = Router::new()
        .route("/v1/alerts", post(webhook).get(list_alerts))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_BYTES));
    Router::new()
        .route("/v1/runs", get(list_runs))
        .route("/v1/runs/{id}", get(show_run))
        .route("/v1/models/{name}", get(model_history))
        .route("/v1/models/{name}/retrain", post(retrain))
        .route("/v1/models/{name}/promote", post(promote))
        .route("/v1/models/{name}/rollback", post(rollback))
        .merge(crate::pages::routes())
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .merge(webhook)
}

fn unavailable(e: &vigie_registry::Error) -> ApiError {
    tracing::error!(error = %e, "registry");
    ApiError::unavailable(
        "registry_unavailable",
        "the registry database does not answer; try again",
    )
}

/// Compares in time independent of where the texts differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Alertmanager, authenticated by the webhook token before the body is read: a caller without
/// it is refused at once, whatever it sends (or does not send) after its headers.
#[derive(Debug)]
pub struct Alertmanager;

impl FromRequestParts<AppState> for Alertmanager {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        webhook_auth(state, &parts.headers).map(|()| Alertmanager)
    }
}

/// Checks Alertmanager's bearer token.
fn webhook_auth(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |reason: &'static str, message: &str| {
        state
            .metrics
            .webhook_refused
            .with_label_values(&[reason])
            .inc();
        ApiError::unauthorized(reason, message.to_string())
    };
    let token = vigie_api::auth::bearer_token(headers).map_err(|e| {
        let message = if e.error == "missing_token" {
            "send Authorization: Bearer TOKEN (alertmanager.yml: http_config.authorization)"
        } else {
            "the Authorization header must read: Bearer TOKEN"
        };
        refuse(e.error, message)
    })?;
    if !same_secret(token.as_bytes(), state.config.webhook_token.as_bytes()) {
        return Err(refuse("invalid_token", "wrong webhook token"));
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct AlertOutcome {
    fingerprint: String,
    alertname: String,
    model: Option<String>,
    /// started, busy, cooldown, duplicate, resolved, ignored.
    action: &'static str,
    run_id: Option<String>,
    reason: String,
}

/// `POST /v1/alerts`: Alertmanager's webhook. Each alert is recorded once per (fingerprint,
/// startsAt); a new firing alert of a retraining alert name, for a model with a production
/// version, starts a run unless one runs or the cooldown holds.
async fn webhook(
    State(state): State<AppState>,
    _caller: Alertmanager,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::unsupported_media_type("application/json"));
    }
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(
                "body_too_large",
                format!(
                    "the notification is larger than {} MiB; lower max_alerts in alertmanager.yml's webhook_config",
                    WEBHOOK_BODY_BYTES / (1024 * 1024)
                ),
            )
        } else {
            ApiError::from_rejection(r.status(), r.body_text())
        }
    })?;
    let notification = alert::parse(&body, &state.config.retrain_alerts).inspect_err(|_| {
        state
            .metrics
            .webhook_refused
            .with_label_values(&["invalid_payload"])
            .inc();
    })?;
    // What each alert calls for before the registry is asked, then every alert recorded in
    // one transaction.
    let planned: Vec<(&'static str, String)> = notification
        .alerts
        .iter()
        .map(|a| {
            let name = a.name();
            if !a.firing {
                ("resolved", "resolved alerts start nothing".into())
            } else if !state.config.retrain_alerts.iter().any(|r| r == name) {
                (
                    "ignored",
                    format!(
                        "{name} is not an alert that retrains ({})",
                        state.config.retrain_alerts.join(", ")
                    ),
                )
            } else if a.model().is_none() {
                ("ignored", "the alert has no model label".into())
            } else {
                ("received", String::new())
            }
        })
        .collect();
    let received_at = now_ms();
    let seen: Vec<SeenAlert> = notification
        .alerts
        .iter()
        .zip(&planned)
        .map(|(a, (action, _))| SeenAlert {
            fingerprint: a.fingerprint.clone(),
            starts_at: a.starts_at_text.clone(),
            alertname: a.name().to_string(),
            model: a.model().map(str::to_string),
            action: action.to_string(),
            run_id: None,
            received_at,
        })
        .collect();
    let first_seen = state
        .registry()
        .record_alerts(&seen)
        .await
        .map_err(|e| unavailable(&e))?;
    let mut outcomes = Vec::with_capacity(notification.alerts.len());
    for ((a, (mut action, mut reason)), first) in
        notification.alerts.iter().zip(planned).zip(first_seen)
    {
        let name = a.name().to_string();
        let model = a.model().map(str::to_string);
        let mut run_id = None;
        if !first {
            action = "duplicate";
            reason = "this alert (fingerprint and startsAt) was received before".into();
        } else if action == "received"
            && let Some(model) = &model
        {
            let by = format!("alert {name} {}", a.fingerprint);
            let asked = ask(&state, model, "alert", &by, true)
                .await
                .map_err(|e| unavailable(&e))?;
            (action, reason) = match asked {
                Asked::Started(run) => {
                    run_id = Some(run.id);
                    ("started", "retraining started".into())
                }
                Asked::Busy(run) => {
                    run_id = Some(run.id);
                    ("busy", "a retraining of this model is running".into())
                }
                Asked::Cooldown { last, until } => {
                    run_id = Some(last.id);
                    (
                        "cooldown",
                        format!(
                            "the last run started within the cooldown; alerts retrain again from {until}"
                        ),
                    )
                }
                Asked::UnknownModel => (
                    "ignored",
                    format!("{model} has no production version in the registry"),
                ),
            };
            state
                .registry()
                .set_alert_action(&a.fingerprint, &a.starts_at_text, action, run_id.as_deref())
                .await
                .map_err(|e| unavailable(&e))?;
        }
        state
            .metrics
            .alerts
            .with_label_values(&[&name, action])
            .inc();
        tracing::info!(alert = %name, fingerprint = %a.fingerprint, model = ?model, action, "alert");
        outcomes.push(AlertOutcome {
            fingerprint: a.fingerprint.clone(),
            alertname: name,
            model,
            action,
            run_id,
            reason,
        });
    }
    if notification.skipped > 0 {
        state
            .metrics
            .alerts_skipped
            .inc_by(notification.skipped as u64);
        tracing::warn!(
            skipped = notification.skipped,
            kept = notification.alerts.len(),
            "a notification held more alerts than are read at once: the others were skipped"
        );
    }
    Ok(Json(json!({
        "receiver": notification.receiver,
        "alerts": outcomes,
        "skipped": notification.skipped,
    }))
    .into_response())
}

/// Reads `limit` from a query: 1 to 1000, default 50.
fn limit_of(query: &HashMap<String, String>) -> Result<u32, ApiError> {
    match query.get("limit") {
        None => Ok(50),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| {
                ApiError::invalid(
                    "invalid_query",
                    format!("limit must be 1 to 1000, not {text:?}"),
                )
                .with_field("limit")
            }),
    }
}

/// `GET /v1/alerts`: the alerts the webhook received, newest first.
async fn list_alerts(
    State(state): State<AppState>,
    _user: CurrentUser,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = limit_of(&query)?;
    let alerts = state
        .registry()
        .alerts_seen(limit)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(Json(alerts).into_response())
}

/// `GET /v1/runs?model=&limit=`: runs, newest first.
async fn list_runs(
    State(state): State<AppState>,
    _user: CurrentUser,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(unknown) = query
        .keys()
        .find(|k| !matches!(k.as_str(), "model" | "limit"))
    {
        return Err(ApiError::invalid(
            "invalid_query",
            format!("unknown parameter {unknown:?} (model, limit)"),
        )
        .with_field(unknown.clone()));
    }
    let limit = limit_of(&query)?;
    let runs = state
        .registry()
        .runs(query.get("model").map(String::as_str), limit)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(Json(runs).into_response())
}

/// `GET /v1/runs/{id}`
async fn show_run(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state
        .registry()
        .run(&id)
        .await
        .map_err(|e| unavailable(&e))?
    {
        Some(run) => Ok(Json(run).into_response()),
        None => Err(ApiError::not_found(
            "unknown_run",
            format!("no retraining run {id:?}"),
        )),
    }
}

fn unknown_model(name: &str) -> ApiError {
    ApiError::not_found(
        "unknown_model",
        format!("no model named {name:?} has a production version"),
    )
}

/// `GET /v1/models/{name}`: versions, promotions and the latest runs of a model. Where the
/// artifacts lie on the server is for admins only.
async fn model_history(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let versions: Vec<_> = state
        .registry()
        .list()
        .await
        .map_err(|e| unavailable(&e))?
        .into_iter()
        .filter(|v| v.name == name)
        .collect();
    if versions.is_empty() {
        return Err(ApiError::not_found(
            "unknown_model",
            format!("no model named {name:?} in the registry"),
        ));
    }
    let promotions = state
        .registry()
        .promotions(&name)
        .await
        .map_err(|e| unavailable(&e))?;
    let runs = state
        .registry()
        .runs(Some(&name), 10)
        .await
        .map_err(|e| unavailable(&e))?;
    let production = versions
        .iter()
        .find(|v| v.status == Status::Production)
        .map(|v| v.version);
    let mut versions = serde_json::to_value(&versions)
        .map_err(|e| ApiError::internal("the model's versions", &e))?;
    if user.role != Role::Admin
        && let Some(list) = versions.as_array_mut()
    {
        for version in list.iter_mut().filter_map(Value::as_object_mut) {
            version.remove("artifact_path");
        }
    }
    Ok(Json(json!({
        "model": name,
        "production_version": production,
        "versions": versions,
        "promotions": promotions,
        "runs": runs,
    }))
    .into_response())
}

/// `POST /v1/models/{name}/retrain` (admin): starts a run now (no cooldown); 409 when one runs.
pub(crate) async fn retrain(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let by = format!("admin {}", admin.name);
    match ask(&state, &name, "manual", &by, false)
        .await
        .map_err(|e| unavailable(&e))?
    {
        Asked::Started(run) => Ok((StatusCode::ACCEPTED, Json(run)).into_response()),
        Asked::Busy(run) => Err(ApiError::conflict(
            "run_in_progress",
            format!(
                "run {} of {name} is {}; wait for it to end",
                run.id,
                run.state.as_str()
            ),
        )),
        Asked::UnknownModel => Err(unknown_model(&name)),
        // Manual runs skip the cooldown.
        Asked::Cooldown { .. } => Err(ApiError::internal("retrain", &"cooldown on a manual run")),
    }
}

/// Reads `{"version": N}`.
fn version_of(body: &[u8]) -> Result<u32, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    let Value::Object(map) = value else {
        return Err(ApiError::invalid("invalid_body", "send {\"version\": N}"));
    };
    if let Some(unknown) = map.keys().find(|k| *k != "version") {
        return Err(
            ApiError::invalid("unknown_field", format!("unknown field {unknown:?}"))
                .with_field(unknown.clone()),
        );
    }
    map.get("version")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .filter(|&v| v > 0)
        .ok_or_else(|| {
            ApiError::invalid("invalid_version", "version must be a positive integer")
                .with_field("version")
        })
}

fn promote_error(e: PromoteError) -> ApiError {
    match e {
        PromoteError::Registry(vigie_registry::Error::UnknownVersion { name, version }) => {
            ApiError::not_found(
                "unknown_version",
                format!("{name} has no version {version}"),
            )
        }
        PromoteError::Registry(vigie_registry::Error::UnknownModel(name)) => unknown_model(&name),
        PromoteError::Registry(e) => unavailable(&e),
        e @ PromoteError::BadArtifact { .. } => {
            tracing::error!(error = %e, "promotion refused");
            ApiError::conflict("bad_artifact", e.to_string())
        }
    }
}

/// `POST /v1/models/{name}/promote` (admin), `{"version": N}`: checks the artifact, makes it
/// production and announces it.
pub(crate) async fn promote(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let version = version_of(&body)?;
    let before = current_version(&state, &name).await?;
    let by = format!("admin {}", admin.name);
    let promoted = promote_checked(state.registry(), &name, version, "promoted", &by)
        .await
        .map_err(promote_error)?;
    if before != Some(version) {
        state.announce(&name, version, ModelAction::Promoted, &by);
    }
    refresh_models(&state).await;
    Ok(Json(json!({"model": name, "version": promoted.version, "previous_version": before, "status": promoted.status}))
        .into_response())
}

async fn current_version(state: &AppState, name: &str) -> Result<Option<u32>, ApiError> {
    Ok(state
        .registry()
        .production_of(name)
        .await
        .map_err(|e| unavailable(&e))?
        .map(|v| v.version))
}

/// `POST /v1/models/{name}/rollback` (admin): back to the version the current one replaced.
pub(crate) async fn rollback(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let target = match state.registry().rollback_target(&name).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            return Err(ApiError::conflict(
                "nothing_to_roll_back",
                format!(
                    "no promotion of {name}'s production version is recorded; promote a version by number"
                ),
            ));
        }
        Err(vigie_registry::Error::UnknownModel(_)) => return Err(unknown_model(&name)),
        Err(e) => return Err(unavailable(&e)),
    };
    let before = current_version(&state, &name).await?;
    let by = format!("admin {}", admin.name);
    let rolled = promote_checked(state.registry(), &name, target, "rolled_back", &by)
        .await
        .map_err(promote_error)?;
    state.announce(&name, target, ModelAction::RolledBack, &by);
    refresh_models(&state).await;
    Ok(Json(json!({"model": name, "version": rolled.version, "previous_version": before, "status": rolled.status}))
        .into_response())
}
