//! Decoding prediction events on the hot path: the envelope (model, version, schema, event
//! time) borrowed from the message, then the features written straight into the model's row
//! (model order, `NaN` = missing), without a JSON map or a string per value.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
pub use vigie_core::schema::UNSEEN;
use vigie_core::schema::{Cell, Feature, Origin, Schema, ValueError};

/// Why an event cannot be counted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a prediction event: {0}")]
    Envelope(String),
    #[error("feature {feature}: {message}")]
    Feature { feature: String, message: String },
    #[error("unknown feature {0:?}")]
    UnknownFeature(String),
}

/// The fields of an event the drift service routes on; the rest is skipped unread.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    #[serde(borrow)]
    pub event_id: &'a str,
    /// The request's id and the row of a batch: what a label names (an event without one
    /// still counts for drift; no label can name it).
    #[serde(borrow, default)]
    pub request_id: &'a str,
    #[serde(default)]
    pub row: Option<u64>,
    #[serde(borrow)]
    pub model: &'a str,
    pub model_version: u32,
    #[serde(borrow)]
    pub schema_hash: &'a str,
    /// Event time.
    pub ts: chrono::DateTime<chrono::Utc>,
    #[serde(borrow)]
    pub features: &'a RawValue,
    /// The numbers of the model's answer, read in the same pass (the rest of it skipped).
    #[serde(default)]
    pub prediction: AnswerNumbers,
}

/// The numbers an answer stands on: a class outcome's probability and class, an estimate's
/// value, interval and flag.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct AnswerNumbers {
    probability: Option<f64>,
    class: Option<u8>,
    value: Option<f64>,
    lower: Option<f64>,
    upper: Option<f64>,
    underestimation_risk: Option<bool>,
}

impl AnswerNumbers {
    /// The probability or the estimate; `None` when the answer has neither.
    pub fn score(&self) -> Option<f64> {
        self.probability.or(self.value).filter(|v| v.is_finite())
    }

    /// The class answered (1 positive, 0 negative), for a classification.
    pub fn class(&self) -> Option<u8> {
        self.class
    }

    /// The estimate's prediction interval, when the answer has one.
    pub fn interval(&self) -> Option<(f64, f64)> {
        match (self.lower, self.upper) {
            (Some(lo), Some(hi)) if lo.is_finite() && hi.is_finite() => Some((lo, hi)),
            _ => None,
        }
    }

    /// Whether the estimate was flagged as at risk of being underestimated.
    pub fn flagged(&self) -> bool {
        self.underestimation_risk.unwrap_or(false)
    }
}

/// The answer's field names the drift service reads; the others are skipped.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum AnswerField {
    Probability,
    Class,
    Value,
    Lower,
    Upper,
    #[serde(rename = "underestimation_risk")]
    UnderestimationRisk,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for AnswerNumbers {
    /// An object only (a derived struct would read an array too): the numbers above, every
    /// other field (the label, the threshold, the group) skipped without being kept.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AnswerVisitor;

        impl<'de> Visitor<'de> for AnswerVisitor {
            type Value = AnswerNumbers;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an answer object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnswerNumbers, A::Error> {
                let mut numbers = AnswerNumbers::default();
                while let Some(field) = map.next_key::<AnswerField>()? {
                    match field {
                        AnswerField::Probability => numbers.probability = map.next_value()?,
                        AnswerField::Class => numbers.class = map.next_value()?,
                        AnswerField::Value => numbers.value = map.next_value()?,
                        AnswerField::Lower => numbers.lower = map.next_value()?,
                        AnswerField::Upper => numbers.upper = map.next_value()?,
                        AnswerField::UnderestimationRisk => {
                            numbers.underestimation_risk = map.next_value()?
                        }
                        AnswerField::Other => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(numbers)
            }
        }

        deserializer.deserialize_map(AnswerVisitor)
    }
}

impl<'a> Envelope<'a> {
    /// Reads the envelope of a `vigie.predictions` message. Event ids, model names and hashes
    /// are plain text (no escapes), so they are borrowed from the message.
    pub fn parse(payload: &'a [u8]) -> Result<Self, DecodeError> {
        // One UTF-8 check of the whole message (an ASCII fast path), rather than one per
        // string as `from_slice` does: a tenth of the decoding time.
        let text =
            std::str::from_utf8(payload).map_err(|e| DecodeError::Envelope(e.to_string()))?;
        serde_json::from_str(text).map_err(|e| DecodeError::Envelope(e.to_string()))
    }

    /// Event time in milliseconds since the epoch.
    pub fn time_ms(&self) -> i64 {
        self.ts.timestamp_millis()
    }
}

/// A model's features, ready to decode events' feature objects.
#[derive(Debug, Clone)]
pub struct Decoder {
    features: Vec<Feature>,
    positions: HashMap<String, usize>,
}

impl Decoder {
    pub fn new(schema: &Schema) -> Self {
        let features = schema.features().to_vec();
        let positions = features
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name().to_string(), i))
            .collect();
        Decoder {
            features,
            positions,
        }
    }

    pub fn len(&self) -> usize {
        self.features.len()
    }

    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// Writes the features of `raw` (a JSON object) into `row` (one slot per feature, model
    /// order): numbers as the model sees them, `NaN` for `null` and for features the event
    /// lacks. A code the spec does not list (one the prediction service answered as missing,
    /// by the feature's `unseen` policy, or one another producer wrote) is not an error: it
    /// lands in the feature's "other" bin ([`UNSEEN`]), which is what drift should see, and
    /// `(feature, value)` is pushed on `unseen` (cleared first).
    pub fn decode(
        &self,
        raw: &RawValue,
        row: &mut [f64],
        unseen: &mut Vec<(usize, String)>,
    ) -> Result<(), DecodeError> {
        debug_assert_eq!(row.len(), self.features.len());
        row.fill(f64::NAN);
        unseen.clear();
        let mut de = serde_json::Deserializer::from_str(raw.get());
        FeaturesSeed {
            decoder: self,
            row,
            unseen,
        }
        .deserialize(&mut de)
        .map_err(|e| classify(e.to_string()))
    }
}

/// serde_json's errors are text: the seeds below prefix theirs so they come back typed.
fn classify(message: String) -> DecodeError {
    if let Some(name) = message.strip_prefix("unknown feature ") {
        let name = name.split(" at line").next().unwrap_or(name);
        return DecodeError::UnknownFeature(name.trim_matches('"').to_string());
    }
    if let Some(rest) = message.strip_prefix("feature ")
        && let Some((feature, msg)) = rest.split_once(": ")
    {
        let msg = msg.split(" at line").next().unwrap_or(msg);
        return DecodeError::Feature {
            feature: feature.to_string(),
            message: msg.to_string(),
        };
    }
    DecodeError::Envelope(format!("features: {message}"))
}

struct FeaturesSeed<'d, 'r> {
    decoder: &'d Decoder,
    row: &'r mut [f64],
    unseen: &'r mut Vec<(usize, String)>,
}

impl<'de> DeserializeSeed<'de> for FeaturesSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FeaturesSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of feature values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Producers write features in model order: the expected position is tried first.
        let mut expected = 0;
        while let Some(i) = map.next_key_seed(KeySeed {
            decoder: self.decoder,
            expected,
        })? {
            self.row[i] = map.next_value_seed(ValueSeed {
                feature: &self.decoder.features[i],
                index: i,
                unseen: &mut *self.unseen,
            })?;
            expected = i + 1;
        }
        Ok(())
    }
}

struct KeySeed<'d> {
    decoder: &'d Decoder,
    expected: usize,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a feature name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<usize, E> {
        let features = &self.decoder.features;
        if features
            .get(self.expected)
            .is_some_and(|f| f.name() == name)
        {
            return Ok(self.expected);
        }
        self.decoder
            .positions
            .get(name)
            .copied()
            .ok_or_else(|| E::custom(format!("unknown feature {name:?}")))
    }
}

struct ValueSeed<'f, 'u> {
    feature: &'f Feature,
    index: usize,
    unseen: &'u mut Vec<(usize, String)>,
}

impl ValueSeed<'_, '_> {
    fn number<E: de::Error>(self, v: f64) -> Result<f64, E> {
        let feature = self.feature;
        if !feature.has_text_codes() {
            if feature.is_categorical() && !feature.knows(v) {
                self.unseen.push((self.index, format_number(v)));
            }
            return Ok(v);
        }
        // Text codes: the model sees the code's position.
        self.cell(feature.parse_number(v, Origin::Data), || format_number(v))
    }

    /// The row's value for a parsed cell; an unlisted code is [`UNSEEN`], and recorded.
    fn cell<E: de::Error>(
        self,
        cell: Result<Cell, ValueError>,
        text: impl FnOnce() -> String,
    ) -> Result<f64, E> {
        match cell {
            Ok(Cell::Value(x)) => Ok(x),
            Ok(Cell::Unseen) | Err(ValueError::UnknownCode(_)) => {
                self.unseen.push((self.index, text()));
                Ok(UNSEEN)
            }
            Ok(_) => Ok(f64::NAN),
            Err(e) => Err(E::custom(format!("feature {}: {e}", self.feature.name()))),
        }
    }
}

/// A number as a code is spelled: whole numbers without a fraction.
fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = f64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<f64, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Visitor<'_> for ValueSeed<'_, '_> {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a value of feature {}", self.feature.name())
    }

    fn visit_unit<E: de::Error>(self) -> Result<f64, E> {
        Ok(f64::NAN)
    }

    fn visit_none<E: de::Error>(self) -> Result<f64, E> {
        Ok(f64::NAN)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        self.number(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        self.number(v as f64)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        self.number(v)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<f64, E> {
        let cell = self.feature.parse(Some(text), Origin::Data);
        self.cell(cell, || text.trim().to_string())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<f64, E> {
        Err(E::custom(format!(
            "feature {}: a boolean is not a value",
            self.feature.name()
        )))
    }
}

#[cfg(test)]
mod tests;
