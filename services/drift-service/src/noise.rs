//! `/config/noise` (admin only): testers inject seeded noise into a model's events before
//! they enter the windows, to prove the loop reacts. The score is measured on the changed
//! events, never set; the injection is visible in `/metrics`, `/v1/drift` and here, and ends
//! with its time to live or a `DELETE`.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Map, Value};
use vigie_api::{AdminUser, ApiError};
use vigie_synthetic::{Injector, NoiseMode, NoiseSpec};

use crate::state::AppState;
use crate::watch::{ActiveNoise, ModelQuery, NoiseView, lock};

const FIELDS: [&str; 8] = [
    "model",
    "mode",
    "features",
    "rate",
    "seed",
    "scale",
    "code",
    "ttl_seconds",
];

/// A noise request, read field by field so that every mistake names its field.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseRequest {
    pub model: Option<String>,
    pub spec: NoiseSpec,
    pub ttl: Option<Duration>,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid("invalid_noise", message).with_field(field)
}

fn number(body: &Map<String, Value>, field: &str) -> Result<Option<f64>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| invalid(field, format!("{field} must be a number, got {v}"))),
    }
}

fn whole(body: &Map<String, Value>, field: &str) -> Result<Option<u64>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            invalid(
                field,
                format!("{field} must be a whole number >= 0, got {v}"),
            )
        }),
    }
}

impl NoiseRequest {
    /// Reads a JSON body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid("invalid_body", format!("the body is not JSON: {e}")))?;
        let Value::Object(body) = value else {
            return Err(ApiError::invalid(
                "invalid_body",
                "the body must be a JSON object",
            ));
        };
        // The seed project's form: a bare level. Refused with the request that says it.
        if let Some(level) = body.get("noise") {
            let rate = level
                .as_f64()
                .filter(|r| *r > 0.0 && *r <= 1.0)
                .unwrap_or(0.5);
            return Err(invalid(
                "noise",
                format!(
                    "{{\"noise\": {level}}} is not a noise request here: name the mode and the share of events it changes, e.g. {{\"mode\": \"gaussian\", \"rate\": {rate}, \"scale\": 1}}; modes: gaussian, category_swap, prior_shift, new_category, missing"
                ),
            ));
        }
        if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(invalid(
                unknown,
                format!("unknown field {unknown:?}; fields: {}", FIELDS.join(", ")),
            ));
        }
        let model = match body.get("model") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => return Err(invalid("model", format!("model must be a name, got {v}"))),
        };
        let modes = [
            "gaussian",
            "category_swap",
            "prior_shift",
            "new_category",
            "missing",
        ];
        let mode: NoiseMode = match body.get("mode") {
            None => {
                return Err(invalid(
                    "mode",
                    format!("mode is required: one of {}", modes.join(", ")),
                ));
            }
            Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
                invalid(
                    "mode",
                    format!("unknown mode {v}; modes: {}", modes.join(", ")),
                )
            })?,
        };
        let features = match body.get("features") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid("features", "features must be a list of feature names"))?,
            Some(v) => {
                return Err(invalid(
                    "features",
                    format!("features must be a list of feature names, got {v}"),
                ));
            }
        };
        let rate = number(&body, "rate")?.ok_or_else(|| {
            invalid(
                "rate",
                "rate is required: the share of events changed, in (0, 1]",
            )
        })?;
        let seed = whole(&body, "seed")?.unwrap_or(0);
        let ttl = match whole(&body, "ttl_seconds")? {
            Some(0) => return Err(invalid("ttl_seconds", "ttl_seconds must be at least 1")),
            Some(s) => Some(Duration::from_secs(s)),
            None => None,
        };
        Ok(NoiseRequest {
            model,
            spec: NoiseSpec {
                mode,
                features,
                rate,
                seed,
                scale: number(&body, "scale")?,
                code: number(&body, "code")?,
            },
            ttl,
        })
    }
}

/// `GET /config/noise`: the active injections.
pub async fn show(State(state): State<AppState>, _admin: AdminUser) -> Json<Value> {
    let active: Vec<NoiseView> = {
        let mut guard = lock(&state.state);
        guard.expire_noise(Utc::now());
        guard
            .models
            .values()
            .filter_map(|w| w.noise_view())
            .collect()
    };
    Json(serde_json::json!({ "active": active }))
}

/// `POST /config/noise`: starts (or replaces) a model's injection.
pub async fn inject(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = NoiseRequest::parse(&body)?;
    let ttl = request.ttl.unwrap_or(state.config.default_noise_ttl);
    if ttl > state.config.max_noise_ttl {
        return Err(invalid(
            "ttl_seconds",
            format!(
                "ttl_seconds is at most {} here",
                state.config.max_noise_ttl.as_secs()
            ),
        ));
    }
    let (view, replaced) = {
        let mut guard = lock(&state.state);
        let model = guard.pick(request.model.as_deref())?;
        let watch = guard
            .models
            .get_mut(&model)
            .ok_or_else(|| ApiError::internal("noise", &"model vanished under the lock"))?;
        let injector = Injector::new(request.spec, &watch.reference.profile)
            .map_err(|e| invalid(e.field, e.message))?;
        let now = Utc::now();
        let expires_at = now
            + chrono::Duration::from_std(ttl)
                .map_err(|_| invalid("ttl_seconds", "ttl_seconds is too large"))?;
        let replaced = watch.start_noise(ActiveNoise {
            injector,
            started_at: now,
            expires_at,
            by: admin.name.clone(),
            events_noised: 0,
            events_seen: 0,
        });
        let view = watch.noise_view();
        state.share_noise(
            &model,
            watch.noise.as_ref().map(|n| n.injector.spec().clone()),
            now,
            expires_at,
            &admin.name,
        );
        (view, replaced.is_some())
    };
    tracing::info!(by = %admin.name, noise = ?view, replaced, "noise injection started");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "noise": view, "replaced": replaced })),
    )
        .into_response())
}

/// `DELETE /config/noise[?model=NAME]`: stops the injection of one model, or of all.
pub async fn reset(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Query(query): Query<ModelQuery>,
) -> Result<Json<Value>, ApiError> {
    let removed: Vec<NoiseView> = {
        let mut guard = lock(&state.state);
        let names: Vec<String> = match query.model.as_deref() {
            Some(name) => vec![guard.pick(Some(name))?],
            None => guard.models.keys().cloned().collect(),
        };
        let mut removed = Vec::new();
        let now = Utc::now();
        for name in names {
            if let Some(watch) = guard.models.get_mut(&name) {
                if let Some(view) = watch.noise_view() {
                    removed.push(view);
                }
                watch.stop_noise("reset by an admin");
                state.share_noise(&name, None, now, now, &admin.name);
            }
        }
        removed
    };
    tracing::info!(by = %admin.name, removed = removed.len(), "noise injection reset");
    Ok(Json(serde_json::json!({ "removed": removed })))
}
