//! Single and JSON batch predictions, and the checking of request values against the spec.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use vigie_api::{ApiError, CurrentUser, RequestId};
use vigie_core::inference::Prediction;
use vigie_core::schema::{Cell, Feature, Origin, ValueError};
use vigie_model::Matrix;
use vigie_stream::Source;
use vigie_stream::event::{Features, OutcomeRef, PredictionEventRef, Value as EventValue};

use crate::models::Served;
use crate::state::AppState;

/// Header a caller sets to mark replayed traffic (`replay`) in the events.
pub const SOURCE_HEADER: &str = "x-vigie-source";

/// A single prediction request: `{"features": {"name": value, ...}}`, every feature of the
/// model present, `null` for an unknown value where the spec allows it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    pub features: Map<String, Value>,
}

/// A JSON batch: `{"rows": [{...features...}, ...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub rows: Vec<Map<String, Value>>,
}

#[derive(Debug, Serialize)]
struct PredictResponse<'a> {
    request_id: &'a str,
    model: &'a str,
    model_version: u32,
    class: u8,
    label: &'a str,
    probability: f64,
    threshold: f64,
}

#[derive(Debug, Serialize)]
struct RowPrediction<'a> {
    class: u8,
    label: &'a str,
    probability: f64,
}

#[derive(Debug, Serialize)]
struct BatchResponse<'a> {
    request_id: &'a str,
    model: &'a str,
    model_version: u32,
    threshold: f64,
    predictions: Vec<RowPrediction<'a>>,
}

/// The request's media type, without its parameters (`text/csv` of `text/csv; charset=utf-8`).
pub(crate) fn media_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
}

/// The model input and the event value of a value the schema accepted. `text` is the value as
/// sent, when it was sent as text: a text code is recorded as spelled, a number as parsed.
pub(crate) fn accepted<'a>(
    feature: &Feature,
    cell: Cell,
    text: Option<&'a str>,
) -> (f64, EventValue<'a>) {
    match cell {
        Cell::Value(v) => match text {
            Some(t) if !feature.is_numeric() => (v, EventValue::Text(t.trim())),
            _ => (v, EventValue::Number(v)),
        },
        Cell::Missing | Cell::OutOfRangeAsMissing => (f64::NAN, EventValue::Missing),
    }
}

/// The body of a JSON endpoint: the right content type, within the size limit.
pub(crate) fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    let is_json = media_type(headers)
        .is_some_and(|m| m.eq_ignore_ascii_case("application/json") || m.ends_with("+json"));
    if !is_json {
        return Err(ApiError::unsupported_media_type("application/json"));
    }
    body.map_err(|r| {
        if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(
                "body_too_large",
                "the body is larger than this service accepts; send smaller batches or use the CSV endpoint",
            )
        } else {
            ApiError::from_rejection(r.status(), r.body_text())
        }
    })
}

/// Parses a JSON body: 400 for broken JSON, 422 for JSON of the wrong shape.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid("invalid_body", e.to_string()),
        _ => ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")),
    })
}

/// The event source a request asks for: `api`/`batch` by endpoint, or `replay`.
pub(crate) fn source_of(headers: &HeaderMap, default: Source) -> Result<Source, ApiError> {
    match headers.get(SOURCE_HEADER).map(|v| v.to_str().unwrap_or("")) {
        None => Ok(default),
        Some("replay") => Ok(Source::Replay),
        Some(other) => Err(ApiError::invalid(
            "invalid_value",
            format!("{SOURCE_HEADER} may only be \"replay\", not {other:?}"),
        )
        .with_field(SOURCE_HEADER)),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The 422 for a value the schema refuses.
pub(crate) fn value_error(feature: &str, error: &ValueError) -> ApiError {
    let code = match error {
        ValueError::Missing => "missing_value",
        ValueError::NotANumber(_) => "wrong_type",
        ValueError::NotAnInteger(_) => "invalid_value",
        ValueError::UnknownCode(_) => "unknown_code",
        ValueError::OutOfRange { .. } => "out_of_range",
    };
    ApiError::invalid(code, format!("feature {feature}: {error}")).with_field(feature)
}

/// Checks one object of features against the model's schema. Fills `row` (model order,
/// `NaN` = missing) and `values` (what the event records).
pub(crate) fn parse_features<'a>(
    served: &Served,
    object: &'a Map<String, Value>,
    row: &mut [f64],
    values: &mut Vec<EventValue<'a>>,
) -> Result<(), ApiError> {
    let schema = served.model.schema();
    if let Some(unknown) = object.keys().find(|k| schema.position(k).is_none()) {
        return Err(ApiError::invalid(
            "unknown_field",
            format!(
                "{unknown:?} is not a feature of {}; GET /v1/models/{} lists them",
                served.name(),
                served.name()
            ),
        )
        .with_field(unknown.as_str()));
    }
    values.clear();
    for (slot, feature) in row.iter_mut().zip(schema.features()) {
        let name = feature.name();
        let value = object.get(name).ok_or_else(|| {
            ApiError::invalid(
                "missing_field",
                format!("feature {name} is missing; send null when it is not known"),
            )
            .with_field(name)
        })?;
        let wrong_type = |expected: &str| {
            ApiError::invalid(
                "wrong_type",
                format!(
                    "feature {name}: expected {expected}, got {}",
                    json_type(value)
                ),
            )
            .with_field(name)
        };
        let cell = match value {
            Value::Null => feature.parse(None, Origin::Request),
            Value::Number(n) if feature.is_numeric() => match n.as_f64() {
                Some(v) => feature.parse_number(v, Origin::Request),
                None => Err(ValueError::NotANumber(n.to_string())),
            },
            Value::String(s) if !feature.is_numerical() => feature.parse(Some(s), Origin::Request),
            _ if feature.is_numerical() => return Err(wrong_type("a number")),
            _ if feature.is_numeric() => return Err(wrong_type("a code (number or string)")),
            _ => return Err(wrong_type("a text code (string)")),
        }
        .map_err(|e| value_error(name, &e))?;
        let (input, event_value) = accepted(feature, cell, value.as_str());
        *slot = input;
        values.push(event_value);
    }
    Ok(())
}

/// Queues the event of one prediction. Never fails the request: a refused event is counted
/// and logged by the producer.
#[allow(clippy::too_many_arguments)]
pub(crate) fn publish(
    state: &AppState,
    served: &Served,
    request: &RequestId,
    source: Source,
    row: Option<u64>,
    values: &[EventValue<'_>],
    prediction: Prediction,
) {
    let event_id = uuid::Uuid::now_v7().to_string();
    let ts = Utc::now();
    let artifact = served.model.artifact();
    let event = PredictionEventRef {
        event_id: &event_id,
        request_id: &request.id,
        ts: &ts,
        model: served.name(),
        model_version: served.version.version,
        schema_hash: &artifact.spec_hash,
        features: Features {
            names: served.feature_names(),
            values,
        },
        prediction: OutcomeRef {
            class: prediction.class,
            label: served.model.label(prediction.class),
            probability: prediction.probability,
            threshold: artifact.threshold,
        },
        latency_us: request.arrived.elapsed().as_micros() as u64,
        source,
        row,
    };
    let _ = state.producer.publish(
        &state.config.topic,
        &request.id,
        &event.to_json(),
        &[
            ("model", served.name()),
            ("model_version", &served.version_label),
        ],
    );
    state
        .metrics
        .predictions
        .with_label_values(&[
            served.name(),
            &served.version_label,
            if prediction.class == 1 { "1" } else { "0" },
        ])
        .inc();
}

fn rejected(state: &AppState, served: &Served, error: ApiError) -> ApiError {
    state
        .metrics
        .rejected
        .with_label_values(&[served.name(), error.error])
        .inc();
    error
}

/// `POST /v1/models/{name}/predict`
pub async fn predict_one(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(name): Path<String>,
    Extension(request): Extension<RequestId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let served = state.models.get_or_404(&name)?;
    let source = source_of(&headers, Source::Api)?;
    let body = json_body(&headers, body)?;
    let parsed: PredictRequest = parse_json(&body).map_err(|e| rejected(&state, &served, e))?;
    let mut row = vec![f64::NAN; served.model.schema().len()];
    let mut values = Vec::with_capacity(row.len());
    parse_features(&served, &parsed.features, &mut row, &mut values)
        .map_err(|e| rejected(&state, &served, e))?;
    let prediction = served.model.predict_parsed(&mut row);
    publish(&state, &served, &request, source, None, &values, prediction);
    Ok(Json(PredictResponse {
        request_id: &request.id,
        model: served.name(),
        model_version: served.version.version,
        class: prediction.class,
        label: served.model.label(prediction.class),
        probability: prediction.probability,
        threshold: served.model.artifact().threshold,
    })
    .into_response())
}

/// Rows from which a batch is predicted on the blocking pool rather than inline.
const BLOCKING_BATCH_ROWS: usize = 64;

/// `POST /v1/models/{name}/predict/batch`: every row is checked before any is predicted; the
/// first bad row answers 422 with its index.
pub async fn predict_batch(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(name): Path<String>,
    Extension(request): Extension<RequestId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let served = state.models.get_or_404(&name)?;
    let source = source_of(&headers, Source::Batch)?;
    let body = json_body(&headers, body)?;
    let parsed: BatchRequest = parse_json(&body).map_err(|e| rejected(&state, &served, e))?;
    let n = parsed.rows.len();
    if n > state.config.max_batch_rows {
        return Err(rejected(
            &state,
            &served,
            ApiError::too_large(
                "batch_too_large",
                format!(
                    "{n} rows; a batch holds at most {} (use the CSV endpoint for files)",
                    state.config.max_batch_rows
                ),
            ),
        ));
    }
    let cols = served.model.schema().len();
    let mut data = vec![f64::NAN; n * cols];
    let mut values: Vec<Vec<EventValue<'_>>> = Vec::with_capacity(n);
    for (i, (object, row)) in parsed
        .rows
        .iter()
        .zip(data.chunks_mut(cols.max(1)))
        .enumerate()
    {
        let mut row_values = Vec::with_capacity(cols);
        parse_features(&served, object, row, &mut row_values).map_err(|e| {
            let e = ApiError {
                message: format!("row {i}: {}", e.message),
                ..e
            }
            .with_row(i);
            rejected(&state, &served, e)
        })?;
        values.push(row_values);
    }
    let x = Matrix::from_row_major(data, n, cols)
        .map_err(|e| ApiError::internal("cannot build the batch", &e))?;
    let predictions = if n >= BLOCKING_BATCH_ROWS {
        let model = Arc::clone(&served);
        tokio::task::spawn_blocking(move || model.model.predict_batch(&x))
            .await
            .map_err(|e| ApiError::internal("batch prediction failed", &e))?
    } else {
        served.model.predict_batch(&x)
    };
    for (i, (p, row_values)) in predictions.iter().zip(&values).enumerate() {
        publish(
            &state,
            &served,
            &request,
            source,
            Some(i as u64),
            row_values,
            *p,
        );
    }
    Ok(Json(BatchResponse {
        request_id: &request.id,
        model: served.name(),
        model_version: served.version.version,
        threshold: served.model.artifact().threshold,
        predictions: predictions
            .iter()
            .map(|p| RowPrediction {
                class: p.class,
                label: served.model.label(p.class),
                probability: p.probability,
            })
            .collect(),
    })
    .into_response())
}
