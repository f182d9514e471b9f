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

/// The model's answer, as the event carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// 1 for the positive class, 0 for the negative.
    pub class: u8,
    pub label: String,
    /// Probability of the positive class.
    pub probability: f64,
    /// The decision threshold of the model version that answered.
    pub threshold: f64,
}

/// One prediction on `vigie.predictions`, as consumers read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictionEvent {
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

/// The outcome, borrowed.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct OutcomeRef<'a> {
    pub class: u8,
    pub label: &'a str,
    pub probability: f64,
    pub threshold: f64,
}

/// One prediction event, borrowed from the request being answered: what producers serialise.
/// Its JSON is exactly a [`PredictionEvent`]'s.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PredictionEventRef<'a> {
    pub event_id: &'a str,
    pub request_id: &'a str,
    pub ts: &'a DateTime<Utc>,
    pub model: &'a str,
    pub model_version: u32,
    pub schema_hash: &'a str,
    pub features: Features<'a>,
    pub prediction: OutcomeRef<'a>,
    pub latency_us: u64,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
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
/// it to the prediction's event by request id and row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelEvent {
    pub request_id: String,
    /// The row of a batch the label is for; absent for a single prediction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
    pub model: String,
    /// 1 for the positive class, 0 for the negative.
    pub class: u8,
    /// The class as the spec names it.
    pub label: String,
    /// When the label was given.
    pub ts: DateTime<Utc>,
    /// Who gave it (the account's name).
    pub by: String,
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
            },
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
        assert_eq!(owned.prediction.label, "yes");
        assert_eq!(owned.source, Source::Batch);
        assert_eq!(owned.row, Some(4));
        // The owned form writes the same fields back.
        let again: PredictionEvent =
            serde_json::from_str(&serde_json::to_string(&owned).unwrap()).unwrap();
        assert_eq!(again, owned);
    }
}
