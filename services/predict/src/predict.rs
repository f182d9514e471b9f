//! Single and JSON batch predictions, and the checking of request values against the spec.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use serde::Serialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use vigie_api::{ApiError, CurrentUser, RequestId};
use vigie_core::inference::{Estimate, Prediction};
use vigie_core::schema::{Cell, Feature, Origin, Schema, ValueError};
use vigie_core::spec::UnseenPolicy;
use vigie_core::train::GroupFinding;
use vigie_model::Matrix;
use vigie_stream::Source;
use vigie_stream::event::{
    EstimateRef, Features, OutcomeRef, PredictionEventRef, Value as EventValue,
};

use crate::models::Served;
use crate::state::AppState;

/// Header a caller sets to mark replayed traffic (`replay`) in the events.
pub const SOURCE_HEADER: &str = "x-vigie-source";

/// One feature value as the request's JSON gives it, borrowed from the body when it can be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Raw<'a> {
    Null,
    Number(f64),
    Text(Cow<'a, str>),
    /// A boolean, an array or an object (its JSON type, for the error): never a feature value.
    Other(&'static str),
}

impl Raw<'_> {
    fn json_type(&self) -> &'static str {
        match self {
            Raw::Null => "null",
            Raw::Number(_) => "a number",
            Raw::Text(_) => "a string",
            Raw::Other(kind) => kind,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawVisitor;

        impl<'de> Visitor<'de> for RawVisitor {
            type Value = Raw<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a feature value")
            }
            fn visit_unit<E>(self) -> Result<Raw<'de>, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw<'de>, E> {
                Ok(Raw::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Raw<'de>, E> {
                Ok(Raw::Other("a boolean"))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw<'de>, E> {
                Ok(Raw::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Raw<'de>, E> {
                Ok(Raw::Number(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw<'de>, E> {
                Ok(Raw::Number(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Raw<'de>, E> {
                Ok(Raw::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw<'de>, E> {
                Ok(Raw::Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw<'de>, E> {
                Ok(Raw::Text(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Raw::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Raw::Other("an object"))
            }
        }

        deserializer.deserialize_any(RawVisitor)
    }
}

/// An object key, borrowed from the body unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A field of a row the model does not take: the first one found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stray {
    Unknown(String),
    Duplicate(String),
}

/// One row of features as sent, read straight into model order: no map of names is built.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawRow<'a> {
    /// By the model's feature order; `None` where the field is absent.
    values: Vec<Option<Raw<'a>>>,
    stray: Option<Stray>,
}

/// Reads a JSON object of features against a schema.
#[derive(Clone, Copy)]
pub(crate) struct RowSeed<'s>(pub &'s Schema);

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = RawRow<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawRow<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = RawRow<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of features")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRow<'de>, A::Error> {
        let features = self.0.features();
        let mut row = RawRow {
            values: vec![None; features.len()],
            stray: None,
        };
        let mut seen = 0;
        while let Some(Key(key)) = map.next_key()? {
            // Clients mostly send the features in model order: try the next one first.
            let position = match features.get(seen) {
                Some(f) if f.name() == key => Some(seen),
                _ => self.0.column(&key),
            };
            seen += 1;
            match position {
                Some(i) if row.values[i].is_none() => row.values[i] = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    if row.stray.is_none() {
                        let name = key.into_owned();
                        row.stray = Some(if position.is_some() {
                            Stray::Duplicate(name)
                        } else {
                            Stray::Unknown(name)
                        });
                    }
                }
            }
        }
        Ok(row)
    }
}

/// A request body that is one JSON object with a single field, `name`, read by `seed`.
struct Wrapped<S> {
    /// The field's name, alone in a list (as serde's errors want it).
    name: &'static [&'static str; 1],
    seed: S,
}

impl<'de, S: DeserializeSeed<'de> + Clone> DeserializeSeed<'de> for Wrapped<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, S: DeserializeSeed<'de> + Clone> Visitor<'de> for Wrapped<S> {
    type Value = S::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object with a field `{}`", self.name[0])
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<S::Value, A::Error> {
        let mut value = None;
        while let Some(Key(key)) = map.next_key()? {
            if key != self.name[0] {
                return Err(de::Error::unknown_field(&key, self.name));
            }
            if value.is_some() {
                return Err(de::Error::duplicate_field(self.name[0]));
            }
            value = Some(map.next_value_seed(self.seed.clone())?);
        }
        value.ok_or_else(|| de::Error::missing_field(self.name[0]))
    }
}

/// The rows of a JSON batch, each read by a [`RowSeed`].
#[derive(Clone, Copy)]
struct RowsSeed<'s>(&'s Schema);

impl<'de> DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = Vec<RawRow<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_> {
    type Value = Vec<RawRow<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(row) = seq.next_element_seed(RowSeed(self.0))? {
            rows.push(row);
        }
        Ok(rows)
    }
}

/// A single prediction request, `{"features": {"name": value, ...}}`: every feature of the
/// model present, `null` for an unknown value where the spec allows it.
pub(crate) fn parse_single<'a>(schema: &Schema, body: &'a [u8]) -> Result<RawRow<'a>, ApiError> {
    parse_json_seed(
        body,
        Wrapped {
            name: &["features"],
            seed: RowSeed(schema),
        },
    )
}

/// A JSON batch, `{"rows": [{...features...}, ...]}`.
pub(crate) fn parse_batch<'a>(
    schema: &Schema,
    body: &'a [u8],
) -> Result<Vec<RawRow<'a>>, ApiError> {
    parse_json_seed(
        body,
        Wrapped {
            name: &["rows"],
            seed: RowsSeed(schema),
        },
    )
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum PredictResponse<'a> {
    Class {
        request_id: &'a str,
        model: &'a str,
        model_version: u32,
        class: u8,
        label: &'a str,
        probability: f64,
        threshold: f64,
    },
    Estimate {
        request_id: &'a str,
        model: &'a str,
        model_version: u32,
        #[serde(flatten)]
        estimate: EstimateAnswer<'a>,
        unit: &'a str,
        coverage: f64,
    },
}

/// A regression's answer for one row.
#[derive(Debug, Serialize)]
pub(crate) struct EstimateAnswer<'a> {
    prediction: f64,
    interval: [f64; 2],
    underestimation_risk: bool,
    /// The row's group and what the validation slice showed of it; null when the spec names
    /// no group or the validation slice never saw this one.
    underestimation_group: Option<GroupAnswer<'a>>,
}

/// Why an answer is (or is not) flagged: its group's residuals on the validation slice.
#[derive(Debug, Serialize)]
pub(crate) struct GroupAnswer<'a> {
    feature: &'a str,
    group: &'a str,
    /// Validation rows of the group.
    rows: u64,
    /// Their mean of truth minus estimate (positive: underestimated).
    mean_residual: f64,
    /// Its one-sided lower confidence bound: above 0 flags the group; null when the group has
    /// too few validation rows to be judged.
    lower_bound: Option<f64>,
    flagged: bool,
}

impl<'a> EstimateAnswer<'a> {
    pub(crate) fn of(served: &'a Served, e: &Estimate) -> Self {
        let group = served
            .model
            .group_finding(e)
            .map(|(feature, g): (&str, &GroupFinding)| GroupAnswer {
                feature,
                group: &g.code,
                rows: g.rows,
                mean_residual: g.mean_residual,
                lower_bound: g.lower_bound,
                flagged: g.flagged,
            });
        EstimateAnswer {
            prediction: e.value,
            interval: e.interval,
            underestimation_risk: e.underestimation_risk,
            underestimation_group: group,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum RowPrediction<'a> {
    Class {
        class: u8,
        label: &'a str,
        probability: f64,
    },
    Estimate(EstimateAnswer<'a>),
}

#[derive(Debug, Serialize)]
struct BatchResponse<'a> {
    request_id: &'a str,
    model: &'a str,
    model_version: u32,
    /// A classification's decision threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold: Option<f64>,
    /// A regression's unit and interval coverage.
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    coverage: Option<f64>,
    predictions: Vec<RowPrediction<'a>>,
}

impl<'a> RowPrediction<'a> {
    fn of(served: &'a Served, p: &Prediction) -> Self {
        match p {
            Prediction::Class(p) => RowPrediction::Class {
                class: p.class,
                label: served.model.label(p.class),
                probability: p.probability,
            },
            Prediction::Estimate(e) => RowPrediction::Estimate(EstimateAnswer::of(served, e)),
        }
    }
}

/// The request's media type, without its parameters (`text/csv` of `text/csv; charset=utf-8`).
pub(crate) fn media_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
}

/// The event value of a value the schema read as `v` (`NaN` = missing). `text` is the value as
/// sent, when it was sent as text: a text code is recorded as spelled, a number as parsed.
/// Replays and backtests build their events with it too.
pub fn event_value<'a>(feature: &Feature, v: f64, text: Option<&'a str>) -> EventValue<'a> {
    if v.is_nan() {
        // A code the spec does not list, answered as missing by the feature's unseen policy,
        // is published as sent: the drift service counts it by value.
        if let Some(t) = text.map(str::trim).filter(|t| !t.is_empty())
            && feature.unseen_policy() == UnseenPolicy::Missing
        {
            return match t.parse::<f64>() {
                Ok(n) if feature.is_numeric() && n.is_finite() => EventValue::Number(n),
                _ => EventValue::Text(t),
            };
        }
        return EventValue::Missing;
    }
    match text {
        Some(t) if !feature.is_numeric() => EventValue::Text(t.trim()),
        _ => EventValue::Number(v),
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
    serde_json::from_slice(body).map_err(json_error)
}

/// [`parse_json`] through a seed, which may borrow from the body.
fn parse_json_seed<'de, S: DeserializeSeed<'de>>(
    body: &'de [u8],
    seed: S,
) -> Result<S::Value, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = seed.deserialize(&mut deserializer).map_err(json_error)?;
    deserializer.end().map_err(json_error)?;
    Ok(value)
}

fn json_error(e: serde_json::Error) -> ApiError {
    match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid("invalid_body", e.to_string()),
        _ => ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")),
    }
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

/// Checks one row of features against the model's schema. Fills `row` (model order,
/// `NaN` = missing) and `values` (what the event records).
pub(crate) fn parse_features<'a>(
    served: &Served,
    raw: &'a RawRow<'a>,
    row: &mut [f64],
    values: &mut Vec<EventValue<'a>>,
) -> Result<(), ApiError> {
    match &raw.stray {
        Some(Stray::Unknown(name)) => {
            return Err(ApiError::invalid(
                "unknown_field",
                format!(
                    "{name:?} is not a feature of {}; GET /v1/models/{} lists them",
                    served.name(),
                    served.name()
                ),
            )
            .with_field(name.as_str()));
        }
        Some(Stray::Duplicate(name)) => {
            return Err(ApiError::invalid(
                "duplicate_field",
                format!("feature {name} is given twice"),
            )
            .with_field(name.as_str()));
        }
        None => {}
    }
    let schema = served.model.schema();
    values.clear();
    for ((slot, feature), value) in row.iter_mut().zip(schema.features()).zip(&raw.values) {
        let name = feature.name();
        let value = value.as_ref().ok_or_else(|| {
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
                    value.json_type()
                ),
            )
            .with_field(name)
        };
        let (cell, text) = match value {
            Raw::Null => (feature.parse(None, Origin::Request), None),
            Raw::Number(v) if feature.is_numeric() => {
                (feature.parse_number(*v, Origin::Request), None)
            }
            Raw::Text(s) if !feature.is_numerical() => {
                (feature.parse(Some(s), Origin::Request), Some(s.as_ref()))
            }
            _ if feature.is_numerical() => return Err(wrong_type("a number")),
            _ if feature.is_numeric() => return Err(wrong_type("a code (number or string)")),
            _ => return Err(wrong_type("a text code (string)")),
        };
        let cell = cell.map_err(|e| value_error(name, &e))?;
        *slot = cell.value();
        values.push(match (cell, value) {
            // Answered as missing, published as sent (text goes through `event_value`).
            (Cell::Unseen, Raw::Number(v)) => EventValue::Number(*v),
            _ => event_value(feature, *slot, text),
        });
    }
    Ok(())
}

/// A request being answered by one served version: what each event it publishes shares.
pub(crate) struct Answering<'a> {
    pub state: &'a AppState,
    pub served: &'a Served,
    pub request: &'a RequestId,
    pub source: Source,
}

impl Answering<'_> {
    /// Queues the event of one prediction (`row`: its index in a batch or an upload). Never
    /// fails the request: a refused event is counted and logged by the producer.
    pub(crate) fn publish(
        &self,
        row: Option<u64>,
        values: &[EventValue<'_>],
        prediction: Prediction,
    ) {
        let Answering {
            state,
            served,
            request,
            source,
        } = self;
        let event_id = uuid::Uuid::now_v7().to_string();
        let ts = Utc::now();
        let artifact = served.model.artifact();
        let (answer, class) = match &prediction {
            Prediction::Class(p) => (
                OutcomeRef {
                    class: p.class,
                    label: served.model.label(p.class),
                    probability: p.probability,
                    threshold: artifact.threshold,
                }
                .into(),
                if p.class == 1 { "1" } else { "0" },
            ),
            Prediction::Estimate(e) => (
                EstimateRef {
                    value: e.value,
                    lower: e.interval[0],
                    upper: e.interval[1],
                    underestimation_risk: e.underestimation_risk,
                    group: served.model.group_finding(e).map(|(_, g)| g.code.as_str()),
                }
                .into(),
                crate::metrics::ESTIMATE_CLASS,
            ),
        };
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
            prediction: answer,
            latency_us: request.arrived.elapsed().as_micros() as u64,
            source: *source,
            row,
        };
        state.ledger.answered(&request.id, served.name(), row);
        let _ = state.producer.publish(
            &state.config.topic,
            &vigie_stream::event_key(&request.id, row),
            &event.to_json(),
            &[
                ("model", served.name()),
                ("model_version", &served.version_label),
            ],
        );
        state
            .metrics
            .predictions
            .with_label_values(&[served.name(), &served.version_label, class])
            .inc();
        if let Prediction::Estimate(e) = &prediction
            && e.underestimation_risk
        {
            state
                .metrics
                .flagged
                .with_label_values(&[served.name(), &served.version_label])
                .inc();
        }
    }

    /// Records a row of an upload that got no answer (refused for its values): feedback for
    /// it is refused.
    pub(crate) fn unanswered(&self, row: u64) {
        self.state
            .ledger
            .refused(&self.request.id, self.served.name(), row);
    }

    /// Counts a refused row (by its error code) and passes the error on.
    pub(crate) fn rejected(&self, error: ApiError) -> ApiError {
        self.state
            .metrics
            .rejected
            .with_label_values(&[self.served.name(), error.error])
            .inc();
        error
    }
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
    let answering = Answering {
        state: &state,
        served: &served,
        request: &request,
        source: source_of(&headers, Source::Api)?,
    };
    let body = json_body(&headers, body).map_err(|e| answering.rejected(e))?;
    let parsed = parse_single(served.model.schema(), &body).map_err(|e| answering.rejected(e))?;
    let mut row = vec![f64::NAN; served.model.schema().len()];
    let mut values = Vec::with_capacity(row.len());
    parse_features(&served, &parsed, &mut row, &mut values).map_err(|e| answering.rejected(e))?;
    let prediction = served.model.predict_parsed(&mut row);
    answering.publish(None, &values, prediction);
    let artifact = served.model.artifact();
    let answer = match &prediction {
        Prediction::Class(p) => PredictResponse::Class {
            request_id: &request.id,
            model: served.name(),
            model_version: served.version.version,
            class: p.class,
            label: served.model.label(p.class),
            probability: p.probability,
            threshold: artifact.threshold,
        },
        Prediction::Estimate(e) => PredictResponse::Estimate {
            request_id: &request.id,
            model: served.name(),
            model_version: served.version.version,
            estimate: EstimateAnswer::of(&served, e),
            unit: &artifact.spec.target.unit,
            coverage: artifact
                .regression
                .as_ref()
                .map_or(0.0, |r| r.interval.coverage),
        },
    };
    Ok(Json(answer).into_response())
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
    let answering = Answering {
        state: &state,
        served: &served,
        request: &request,
        source: source_of(&headers, Source::Batch)?,
    };
    let body = json_body(&headers, body).map_err(|e| answering.rejected(e))?;
    let parsed = parse_batch(served.model.schema(), &body).map_err(|e| answering.rejected(e))?;
    let n = parsed.len();
    if n > state.config.max_batch_rows {
        return Err(answering.rejected(ApiError::too_large(
            "batch_too_large",
            format!(
                "{n} rows; a batch holds at most {} (use the CSV endpoint for files)",
                state.config.max_batch_rows
            ),
        )));
    }
    let cols = served.model.schema().len();
    let mut data = vec![f64::NAN; n * cols];
    let mut values: Vec<Vec<EventValue<'_>>> = Vec::with_capacity(n);
    for (i, (object, row)) in parsed.iter().zip(data.chunks_mut(cols.max(1))).enumerate() {
        let mut row_values = Vec::with_capacity(cols);
        parse_features(&served, object, row, &mut row_values).map_err(|e| {
            let e = ApiError {
                message: format!("row {i}: {}", e.message),
                ..e
            }
            .with_row(i);
            answering.rejected(e)
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
        answering.publish(Some(i as u64), row_values, *p);
    }
    let artifact = served.model.artifact();
    let regression = artifact.regression.as_ref();
    Ok(Json(BatchResponse {
        request_id: &request.id,
        model: served.name(),
        model_version: served.version.version,
        threshold: regression.is_none().then_some(artifact.threshold),
        unit: regression.map(|_| artifact.spec.target.unit.as_str()),
        coverage: regression.map(|r| r.interval.coverage),
        predictions: predictions
            .iter()
            .map(|p| RowPrediction::of(&served, p))
            .collect(),
    })
    .into_response())
}
