//! The messages Vigie puts on Kafka. Producers serialise borrowed views
//! ([`PredictionEventRef`]) so the request path copies nothing; consumers read owned
//! [`PredictionEvent`]s.

use chrono::{DateTime, Utc};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

/// What produced a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A single prediction request.
    Api,
    /// One row of a JSON batch or a CSV upload.
    Batch,
    /// Traffic replayed by a tool (tests, load generators), marked so by the caller.
    Replay,
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Batch => "batch",
            Source::Replay => "replay",
        }
    }
}

/// The version of the prediction event's schema this build writes for a regression's answer.
///
/// - 1: the answer is a class (`class`, `label`, `probability`, `threshold`). Version 1
///   events carry no `schema_version` field, and classification events are still written so:
///   a consumer built before version 2 reads them as it always has.
/// - 2: the answer may also be an estimate (`value`, `lower`, `upper`, `underestimation_risk`,
///   `group`); such events say `"schema_version": 2`.
///
/// Consumers read both.
pub const SCHEMA_VERSION_ESTIMATE: u32 = 2;

/// The model's answer, as the event carries it: a class, or an estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Outcome {
    Class(ClassOutcome),
    Estimate(EstimateOutcome),
}

impl Outcome {
    pub fn as_class(&self) -> Option<&ClassOutcome> {
        match self {
            Outcome::Class(c) => Some(c),
            Outcome::Estimate(_) => None,
        }
    }

    pub fn as_estimate(&self) -> Option<&EstimateOutcome> {
        match self {
            Outcome::Estimate(e) => Some(e),
            Outcome::Class(_) => None,
        }
    }
}

/// A binary classification's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassOutcome {
    /// 1 for the positive class, 0 for the negative.
    pub class: u8,
    pub label: String,
    /// Probability of the positive class.
    pub probability: f64,
    /// The decision threshold of the model version that answered.
    pub threshold: f64,
}

/// A regression's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimateOutcome {
    pub value: f64,
    /// The prediction interval's ends.
    pub lower: f64,
    pub upper: f64,
    pub underestimation_risk: bool,
    /// The row's group (the code of the spec's group feature), when the spec names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// One prediction on `vigie.predictions`, as consumers read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictionEvent {
    /// 1 when absent (see [`SCHEMA_VERSION_ESTIMATE`]).
    #[serde(default = "version_one", skip_serializing_if = "is_version_one")]
    pub schema_version: u32,
    /// Unique per event (a UUID v7: time-ordered).
    pub event_id: String,
    /// The request's id: shared by every row of a batch; also the message key.
    pub request_id: String,
    /// When the prediction was made (event time).
    pub ts: DateTime<Utc>,
    pub model: String,
    pub model_version: u32,
    /// The sha256 of the model's spec: the schema the features follow.
    pub schema_hash: String,
    /// Feature name -> value as the model received it, before imputation (`null` = missing).
    pub features: serde_json::Map<String, serde_json::Value>,
    pub prediction: Outcome,
    /// Time from the request's arrival to the prediction, in microseconds.
    pub latency_us: u64,
    pub source: Source,
    /// Position of the row in its batch (0-based); absent for single predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
}

fn version_one() -> u32 {
    1
}

fn is_version_one(v: &u32) -> bool {
    *v == 1
}

/// A feature value in an event: what the request said, once checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Missing,
    Number(f64),
    /// A text code, as the spec spells it.
    Text(&'a str),
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Missing => s.serialize_none(),
            // Whole numbers are written without a fraction: codes read as codes.
            Value::Number(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => s.serialize_i64(*v as i64),
            Value::Number(v) => s.serialize_f64(*v),
            Value::Text(t) => s.serialize_str(t),
        }
    }
}

/// Feature names and values side by side, written as one JSON object in model order.
#[derive(Debug, Clone, Copy)]
pub struct Features<'a> {
    pub names: &'a [String],
    pub values: &'a [Value<'a>],
}

impl Serialize for Features<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.names.len()))?;
        for (name, value) in self.names.iter().zip(self.values) {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// A class outcome, borrowed.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct OutcomeRef<'a> {
    pub class: u8,
    pub label: &'a str,
    pub probability: f64,
    pub threshold: f64,
}

/// An estimate outcome, borrowed.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EstimateRef<'a> {
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
    pub underestimation_risk: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<&'a str>,
}

/// The outcome, borrowed: a class or an estimate.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
pub enum AnswerRef<'a> {
    Class(OutcomeRef<'a>),
    Estimate(EstimateRef<'a>),
}

impl<'a> From<OutcomeRef<'a>> for AnswerRef<'a> {
    fn from(outcome: OutcomeRef<'a>) -> Self {
        AnswerRef::Class(outcome)
    }
}

impl<'a> From<EstimateRef<'a>> for AnswerRef<'a> {
    fn from(estimate: EstimateRef<'a>) -> Self {
        AnswerRef::Estimate(estimate)
    }
}

/// One prediction event, borrowed from the request being answered: what producers serialise.
/// Its JSON is exactly a [`PredictionEvent`]'s; the schema version is written for an estimate
/// only (see [`SCHEMA_VERSION_ESTIMATE`]).
#[derive(Debug, Clone, Copy)]
pub struct PredictionEventRef<'a> {
    pub event_id: &'a str,
    pub request_id: &'a str,
    pub ts: &'a DateTime<Utc>,
    pub model: &'a str,
    pub model_version: u32,
    pub schema_hash: &'a str,
    pub features: Features<'a>,
    pub prediction: AnswerRef<'a>,
    pub latency_us: u64,
    pub source: Source,
    pub row: Option<u64>,
}

impl Serialize for PredictionEventRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let estimate = matches!(self.prediction, AnswerRef::Estimate(_));
        let fields = 10 + usize::from(estimate) + usize::from(self.row.is_some());
        let mut map = s.serialize_map(Some(fields))?;
        if estimate {
            map.serialize_entry("schema_version", &SCHEMA_VERSION_ESTIMATE)?;
        }
        map.serialize_entry("event_id", self.event_id)?;
        map.serialize_entry("request_id", self.request_id)?;
        map.serialize_entry("ts", self.ts)?;
        map.serialize_entry("model", self.model)?;
        map.serialize_entry("model_version", &self.model_version)?;
        map.serialize_entry("schema_hash", self.schema_hash)?;
        map.serialize_entry("features", &self.features)?;
        map.serialize_entry("prediction", &self.prediction)?;
        map.serialize_entry("latency_us", &self.latency_us)?;
        map.serialize_entry("source", &self.source)?;
        if let Some(row) = self.row {
            map.serialize_entry("row", &row)?;
        }
        map.end()
    }
}

impl PredictionEventRef<'_> {
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(768);
        // Serialising plain strings, numbers and maps cannot fail.
        serde_json::to_writer(&mut out, self).expect("an event always serialises");
        out
    }
}

/// What happened to a model, on `vigie.models`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelAction {
    Promoted,
    RolledBack,
}

/// A model lifecycle event: every prediction replica reloads the production version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEvent {
    pub model: String,
    pub version: u32,
    pub action: ModelAction,
    pub ts: DateTime<Utc>,
    /// Who asked: "cli", "trainer", an admin's name.
    pub by: String,
}

/// Ground truth for a prediction, on `vigie.labels` (key: the request id). The trainer joins
/// it to the prediction's event by request id and row. A classification's label carries
/// `class` and `label`, a regression's `value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelEvent {
    pub request_id: String,
    /// The row of a batch the label is for; absent for a single prediction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
    pub model: String,
    /// A classification's truth: 1 for the positive class, 0 for the negative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<u8>,
    /// The class as the spec names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// A regression's truth: the observed number, in the target's unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// When the label was given.
    pub ts: DateTime<Utc>,
    /// Who gave it (the account's name).
    pub by: String,
}

impl LabelEvent {
    /// The truth as a model's target: the class (1.0 / 0.0) or the number.
    pub fn target(&self) -> Option<f64> {
        match (self.class, self.value) {
            (Some(class), None) => Some(f64::from(class)),
            (None, Some(value)) if value.is_finite() => Some(value),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_event_reads_back_as_an_owned_one() {
        let ts = Utc::now();
        let names = vec!["place".to_string(), "lat".into(), "colour".into()];
        let values = [Value::Number(1.0), Value::Number(45.25), Value::Missing];
        let event = PredictionEventRef {
            event_id: "e1",
            request_id: "r1",
            ts: &ts,
            model: "m",
            model_version: 3,
            schema_hash: "abc",
            features: Features {
                names: &names,
                values: &values,
            },
            prediction: OutcomeRef {
                class: 1,
                label: "yes",
                probability: 0.75,
                threshold: 0.5,
            }
            .into(),
            latency_us: 17,
            source: Source::Batch,
            row: Some(4),
        };
        let json = event.to_json();
        let text = std::str::from_utf8(&json).unwrap();
        assert!(
            text.contains(r#""features":{"place":1,"lat":45.25,"colour":null}"#),
            "{text}"
        );
        let owned: PredictionEvent = serde_json::from_slice(&json).unwrap();
        assert_eq!(owned.ts, ts);
        assert_eq!(owned.model_version, 3);
        assert_eq!(owned.features["place"], serde_json::json!(1));
        assert_eq!(owned.features["colour"], serde_json::Value::Null);
        assert_eq!(owned.prediction.as_class().unwrap().label, "yes");
        assert_eq!(owned.schema_version, 1);
        assert!(
            !text.contains("schema_version"),
            "a class event stays version 1: {text}"
        );
        assert_eq!(owned.source, Source::Batch);
        assert_eq!(owned.row, Some(4));
        // The owned form writes the same fields back.
        let again: PredictionEvent =
            serde_json::from_str(&serde_json::to_string(&owned).unwrap()).unwrap();
        assert_eq!(again, owned);
    }

    #[test]
    fn an_estimate_is_a_version_2_event_and_both_versions_read() {
        let ts = Utc::now();
        let names = vec!["station".to_string(), "distance".into()];
        let values = [Value::Text("south"), Value::Number(12.5)];
        let event = PredictionEventRef {
            event_id: "e2",
            request_id: "r2",
            ts: &ts,
            model: "lfb",
            model_version: 1,
            schema_hash: "def",
            features: Features {
                names: &names,
                values: &values,
            },
            prediction: EstimateRef {
                value: 412.5,
                lower: 350.0,
                upper: 560.0,
                underestimation_risk: true,
                group: Some("south"),
            }
            .into(),
            latency_us: 9,
            source: Source::Api,
            row: None,
        };
        let json = event.to_json();
        let text = std::str::from_utf8(&json).unwrap();
        assert!(text.starts_with(r#"{"schema_version":2,"#), "{text}");
        let owned: PredictionEvent = serde_json::from_slice(&json).unwrap();
        assert_eq!(owned.schema_version, 2);
        let estimate = owned.prediction.as_estimate().unwrap();
        assert_eq!(
            (estimate.value, estimate.lower, estimate.upper),
            (412.5, 350.0, 560.0)
        );
        assert!(estimate.underestimation_risk);
        assert_eq!(estimate.group.as_deref(), Some("south"));
        let again: PredictionEvent =
            serde_json::from_str(&serde_json::to_string(&owned).unwrap()).unwrap();
        assert_eq!(again, owned);

        // A version 1 event, as builds before version 2 wrote it.
        let v1 = r#"{"event_id":"e","request_id":"r","ts":"2026-11-20T10:00:00Z","model":"m","model_version":1,"schema_hash":"h","features":{"a":1},"prediction":{"class":0,"label":"no","probability":0.1,"threshold":0.5},"latency_us":3,"source":"api"}"#;
        let old: PredictionEvent = serde_json::from_str(v1).unwrap();
        assert_eq!(old.schema_version, 1);
        assert_eq!(old.prediction.as_class().unwrap().class, 0);
        // An outcome that is neither is refused.
        let bad = v1.replace(r#""class":0,"#, "");
        assert!(serde_json::from_str::<PredictionEvent>(&bad).is_err());
    }
}
