//! `POST /v1/models/{name}/feedback`: ground truth for predictions already served, checked
//! against the requests answered lately (`crate::ledger`), published to `vigie.labels` for the
//! drift service and the trainer, which join it to the predictions by request id and row.

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, body::Bytes};
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;
use vigie_api::{ApiError, CurrentUser};
use vigie_core::spec::Task;
use vigie_stream::LabelEvent;

use crate::ledger::Verdict;
use crate::models::Served;
use crate::predict::{json_body, parse_json};
use crate::state::AppState;

/// The body: one label, or `{"labels": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FeedbackBody {
    Many { labels: Vec<Value> },
    One(Value),
}

/// Longest request id accepted (the service's own are UUIDs).
const MAX_REQUEST_ID: usize = 128;

/// Reads one label object; errors name the field (and the item, for a list).
fn label_of(served: &Served, item: &Value, by: &str) -> Result<LabelEvent, ApiError> {
    let Value::Object(map) = item else {
        return Err(ApiError::invalid(
            "invalid_label",
            "a label is an object: {\"request_id\", \"row\" (batches), \"label\"}",
        ));
    };
    if let Some(unknown) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "request_id" | "row" | "label"))
    {
        return Err(ApiError::invalid(
            "unknown_field",
            format!("unknown field {unknown:?}: a label has request_id, row and label"),
        )
        .with_field(unknown.clone()));
    }
    let request_id = match map.get("request_id") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_REQUEST_ID => s.clone(),
        Some(Value::String(_)) => {
            return Err(ApiError::invalid(
                "invalid_request_id",
                format!("request_id must be 1 to {MAX_REQUEST_ID} characters"),
            )
            .with_field("request_id"));
        }
        Some(_) => {
            return Err(
                ApiError::invalid("invalid_request_id", "request_id must be a string")
                    .with_field("request_id"),
            );
        }
        None => {
            return Err(ApiError::invalid(
                "missing_field",
                "request_id is required: the id the prediction's answer carried",
            )
            .with_field("request_id"));
        }
    };
    let row = match map.get("row") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            ApiError::invalid(
                "invalid_row",
                "row must be a non-negative integer: the row's index in its batch",
            )
            .with_field("row")
        })?),
    };
    let target = &served.model.artifact().spec.target;
    let Some(given) = map.get("label") else {
        return Err(ApiError::invalid("missing_field", "label is required").with_field("label"));
    };
    let (class, label, value) = match served.model.task() {
        Task::BinaryClassification => {
            let class = match given {
                Value::Number(n) if n.as_u64() == Some(1) => Some(1),
                Value::Number(n) if n.as_u64() == Some(0) => Some(0),
                Value::String(s) if s == target.positive() || s == target.positive_label() => {
                    Some(1)
                }
                Value::String(s) if s == target.negative() || s == target.negative_label() => {
                    Some(0)
                }
                _ => None,
            };
            let Some(class) = class else {
                return Err(ApiError::invalid(
                    "invalid_label",
                    format!(
                        "label must be 1 or 0, {:?} or {:?}, or {:?} or {:?}",
                        target.positive(),
                        target.negative(),
                        target.positive_label(),
                        target.negative_label()
                    ),
                )
                .with_field("label"));
            };
            (
                Some(class),
                Some(served.model.label(class).to_string()),
                None,
            )
        }
        Task::Regression => {
            let (min, max) = target.range();
            let unit = if target.unit.is_empty() {
                String::new()
            } else {
                format!(" {}", target.unit)
            };
            match given.as_f64() {
                Some(v) if v.is_finite() && (min..=max).contains(&v) => (None, None, Some(v)),
                Some(v) => {
                    return Err(ApiError::invalid(
                        "invalid_label",
                        format!(
                            "label {v} is outside the target's valid range [{min}, {max}]{unit}"
                        ),
                    )
                    .with_field("label"));
                }
                None => {
                    return Err(ApiError::invalid(
                        "invalid_label",
                        format!(
                            "label must be a number: the observed {} in{unit} ([{min}, {max}])",
                            target.column
                        ),
                    )
                    .with_field("label"));
                }
            }
        }
    };
    Ok(LabelEvent {
        request_id,
        row,
        model: served.name().to_string(),
        class,
        label,
        value,
        ts: Utc::now(),
        by: by.to_string(),
    })
}

/// `POST /v1/models/{name}/feedback`: checks every label first, its fields and then against
/// the [`crate::ledger`] (the first bad one answers 4xx with its index: 422, 404 for a request
/// never answered here, 409 for an answer labelled already), then publishes them all; answers
/// 202 with how many, and how many the ledger could not judge. Every refusal is counted by
/// reason.
pub async fn feedback(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let served = state.models.get_or_404(&name)?;
    accept(&state, &served, &user, &headers, body)
        .await
        .inspect_err(|e| {
            state
                .metrics
                .feedback_refused
                .with_label_values(&[served.name(), e.error])
                .inc();
        })
}

async fn accept(
    state: &AppState,
    served: &Served,
    user: &CurrentUser,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(headers, body)?;
    let items = match parse_json::<FeedbackBody>(&body)? {
        FeedbackBody::Many { labels } => labels,
        FeedbackBody::One(one) => vec![one],
    };
    if items.is_empty() {
        return Err(ApiError::invalid("no_labels", "labels is empty").with_field("labels"));
    }
    if items.len() > state.config.max_batch_rows {
        return Err(ApiError::too_large(
            "too_many_labels",
            format!(
                "{} labels; one request holds at most {}",
                items.len(),
                state.config.max_batch_rows
            ),
        ));
    }
    let many = items.len() > 1;
    let at = |i: usize| move |e: ApiError| if many { e.with_row(i) } else { e };
    let labels = items
        .iter()
        .enumerate()
        .map(|(i, item)| label_of(served, item, &user.0.name).map_err(at(i)))
        .collect::<Result<Vec<_>, _>>()?;
    // Judged by the ledger, all before any is published: the answers judged here are marked
    // labelled, and unmarked again if the request fails after all.
    let mut marked: Vec<(String, Option<u64>)> = Vec::new();
    let mut unverified = 0u64;
    for (i, label) in labels.iter().enumerate() {
        match state
            .ledger
            .check(&label.request_id, served.name(), label.row)
        {
            Ok(Verdict::Known) => marked.push((label.request_id.clone(), label.row)),
            Ok(Verdict::Unverified) => unverified += 1,
            Err(e) => {
                state.ledger.unlabel(&marked);
                return Err(at(i)(e));
            }
        }
    }
    let topic = &state.config.labels_topic;
    let mut queued = 0;
    let mut lost = Vec::new();
    for label in &labels {
        let payload = serde_json::to_vec(label).map_err(|e| ApiError::internal("label", &e))?;
        let version = served.version.version.to_string();
        let headers = [
            ("model", served.name()),
            ("model_version", version.as_str()),
        ];
        if state
            .producer
            .publish(
                topic,
                &vigie_stream::event_key(&label.request_id, label.row),
                &payload,
                &headers,
            )
            .is_ok()
        {
            queued += 1;
        } else {
            lost.push((label.request_id.clone(), label.row));
        }
    }
    state
        .metrics
        .labels
        .with_label_values(&[served.name()])
        .inc_by(queued as u64);
    if !lost.is_empty() {
        // Only a full producer queue refuses an event: say so rather than pretend, and let
        // the labels not queued come again.
        state.ledger.unlabel(&lost);
        return Err(ApiError::unavailable(
            "queue_full",
            format!(
                "{queued} of {} labels queued; the event queue is full, send the rest again",
                labels.len()
            ),
        ));
    }
    state
        .metrics
        .feedback_unverified
        .with_label_values(&[served.name()])
        .inc_by(unverified);
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"accepted": queued, "unverified": unverified, "topic": topic})),
    )
        .into_response())
}
