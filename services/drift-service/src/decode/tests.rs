use vigie_core::schema::Schema;
use vigie_core::spec::ModelSpec;
use vigie_core::testing::TOY_SPEC;

use super::*;

fn toy() -> Decoder {
    Decoder::new(&Schema::new(&ModelSpec::from_toml(TOY_SPEC).unwrap()))
}

/// The toy spec with a text-coded third feature.
fn with_text_codes() -> Decoder {
    let text = format!(
        "{TOY_SPEC}\n[[feature]]\nname = \"road\"\ntype = \"categorical\"\nmissing = \"impute\"\ncodes = [\"urban\", \"rural\", \"motorway\"]\n"
    );
    Decoder::new(&Schema::new(&ModelSpec::from_toml(&text).unwrap()))
}

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_string()).unwrap()
}

fn decode(decoder: &Decoder, json: &str) -> Result<Vec<f64>, DecodeError> {
    decode_unseen(decoder, json).map(|(row, _)| row)
}

/// Unseen codes as `(feature, value)`.
type Unseen = Vec<(usize, String)>;

/// The row and the unseen codes found.
fn decode_unseen(decoder: &Decoder, json: &str) -> Result<(Vec<f64>, Unseen), DecodeError> {
    let mut row = vec![-1.0; decoder.len()];
    let mut unseen = vec![(9, "left over".to_string())];
    decoder
        .decode(&raw(json), &mut row, &mut unseen)
        .map(|()| (row, unseen))
}

fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
}

#[test]
fn features_land_in_model_order_whatever_their_order_in_the_event() {
    let d = toy();
    let row = decode(&d, r#"{"colour": 2, "speed": 47.5}"#).unwrap();
    assert!(same(&row, &[2.0, 47.5]));
    let row = decode(&d, r#"{"speed": 130, "colour": 1}"#).unwrap();
    assert!(same(&row, &[1.0, 130.0]));
}

#[test]
fn null_and_absent_features_are_missing() {
    let d = toy();
    let row = decode(&d, r#"{"colour": 1, "speed": null}"#).unwrap();
    assert!(same(&row, &[1.0, f64::NAN]));
    let row = decode(&d, r#"{"speed": 3}"#).unwrap();
    assert!(same(&row, &[f64::NAN, 3.0]), "{row:?}");
}

#[test]
fn codes_outside_the_spec_are_kept_for_the_other_bin() {
    let d = toy();
    // Noise and newer producers may send codes the reference never saw: drift must see them.
    let (row, unseen) = decode_unseen(&d, r#"{"colour": 9, "speed": 400}"#).unwrap();
    assert!(same(&row, &[9.0, 400.0]));
    assert_eq!(unseen, vec![(0, "9".to_string())], "counted by value");
    let (_, unseen) = decode_unseen(&d, r#"{"colour": 2, "speed": 400}"#).unwrap();
    assert!(unseen.is_empty(), "{unseen:?}");
}

#[test]
fn text_codes_become_their_position_as_in_training() {
    let d = with_text_codes();
    let row = decode(&d, r#"{"colour": "2", "speed": "12", "road": "motorway"}"#).unwrap();
    assert!(same(&row, &[2.0, 12.0, 2.0]), "{row:?}");
    let row = decode(&d, r#"{"colour": 1, "speed": 1, "road": ""}"#).unwrap();
    assert!(same(&row, &[1.0, 1.0, f64::NAN]), "{row:?}");
    // A text code the spec does not list lands in the other bin, and is recorded as sent.
    let (row, unseen) =
        decode_unseen(&d, r#"{"colour": "7", "speed": 1, "road": " canal "}"#).unwrap();
    assert!(same(&row, &[UNSEEN, 1.0, UNSEEN]), "{row:?}");
    assert_eq!(unseen, vec![(0, "7".to_string()), (2, "canal".to_string())]);
    let (row, unseen) = decode_unseen(&d, r#"{"colour": 1, "speed": 1, "road": 4}"#).unwrap();
    assert!(same(&row, &[1.0, 1.0, UNSEEN]), "{row:?}");
    assert_eq!(unseen, vec![(2, "4".to_string())]);
}

#[test]
fn foreign_features_and_malformed_objects_are_refused_with_a_reason() {
    let d = toy();
    assert_eq!(
        decode(&d, r#"{"colour": 1, "altitude": 3}"#),
        Err(DecodeError::UnknownFeature("altitude".into()))
    );
    assert!(matches!(
        decode(&d, r#"{"colour": true}"#),
        Err(DecodeError::Feature { feature, .. }) if feature == "colour"
    ));
    assert!(matches!(
        decode(&d, "[1, 2]"),
        Err(DecodeError::Envelope(_))
    ));
    assert!(matches!(
        decode(&d, r#"{"colour": {"a": 1}}"#),
        Err(DecodeError::Envelope(_))
    ));
}

#[test]
fn the_envelope_of_a_published_event_is_read_without_copies() {
    let ts = chrono::Utc::now();
    let names = vec!["colour".to_string(), "speed".to_string()];
    let values = [
        vigie_stream::event::Value::Number(2.0),
        vigie_stream::event::Value::Missing,
    ];
    let event = vigie_stream::event::PredictionEventRef {
        event_id: "e",
        request_id: "r",
        ts: &ts,
        model: "toy",
        model_version: 7,
        schema_hash: "abc",
        features: vigie_stream::event::Features {
            names: &names,
            values: &values,
        },
        prediction: vigie_stream::event::OutcomeRef {
            class: 1,
            label: "yes",
            probability: 0.8,
            threshold: 0.5,
        }
        .into(),
        latency_us: 12,
        source: vigie_stream::Source::Api,
        row: None,
    };
    let bytes = event.to_json();
    let envelope = Envelope::parse(&bytes).unwrap();
    assert_eq!(
        (envelope.model, envelope.model_version, envelope.schema_hash),
        ("toy", 7, "abc")
    );
    assert_eq!(envelope.time_ms(), ts.timestamp_millis());
    let mut row = vec![0.0; 2];
    toy()
        .decode(envelope.features, &mut row, &mut Vec::new())
        .unwrap();
    assert!(same(&row, &[2.0, f64::NAN]));
    assert!(matches!(
        Envelope::parse(br#"{"model": "toy"}"#),
        Err(DecodeError::Envelope(_))
    ));
    assert!(matches!(
        Envelope::parse(b"\xff"),
        Err(DecodeError::Envelope(_))
    ));
}

#[test]
fn an_answer_gives_its_probability_or_its_estimate() {
    let score = |json: &str| serde_json::from_str::<AnswerNumbers>(json).map(|a| a.score());
    let class = r#"{"class":1,"label":"yes","probability":0.75,"threshold":0.5}"#;
    assert_eq!(score(class).unwrap(), Some(0.75));
    let estimate =
        r#"{"value":412.5,"lower":350,"upper":560,"underestimation_risk":true,"group":"south"}"#;
    assert_eq!(score(estimate).unwrap(), Some(412.5));
    assert_eq!(score(r#"{"class":1}"#).unwrap(), None);
    assert!(score("[1, 2]").is_err(), "an array is no answer");
    // In an envelope: read in the same pass; absent, no number.
    let answer = r#","prediction":{"class":0,"label":"no","probability":0.25,"threshold":0.5}"#;
    let event = format!(
        r#"{{"event_id":"e","model":"m","model_version":1,"schema_hash":"h","ts":"2026-11-30T10:00:00Z","features":{{}}{answer}}}"#
    );
    let parsed = Envelope::parse(event.as_bytes()).unwrap();
    assert_eq!(parsed.prediction.score(), Some(0.25));
    let without = event.replace(answer, "");
    let parsed = Envelope::parse(without.as_bytes()).unwrap();
    assert_eq!(parsed.prediction.score(), None);
}
