use std::sync::Mutex;

use rand::{Rng, SeedableRng, rngs::StdRng};
use vigie_core::spec::ModelSpec;
use vigie_core::testing::TOY_SPEC;
use vigie_drift::{Kind, ProfileParams};
use vigie_stream::event::{Features, OutcomeRef, PredictionEventRef, Value};

use super::*;
use crate::checkpoint::{PartitionCheckpoint, Restored};
use crate::quality::QualityState;
use crate::score::score_all;

/// A speed peaked at 50 km/h, from 20 to 80. (Histogram correlation suits peaked
/// distributions: on a flat one every bin's share is the same and the correlation of two
/// samples is mostly noise.)
pub(crate) fn speed(rng: &mut StdRng) -> f64 {
    20.0 + (rng.gen_range(0.0..20.0) + rng.gen_range(0.0..20.0) + rng.gen_range(0.0..20.0))
}

/// The toy model (colour 1|2, speed 0..130) with a reference of 4,000 rows: colours even,
/// speeds peaked.
pub(crate) fn reference(version: u32) -> Arc<Reference> {
    let spec = ModelSpec::from_toml(TOY_SPEC).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let mut values = Vec::new();
    for _ in 0..4000 {
        values.push(f64::from(rng.gen_range(1..=2)));
        values.push(speed(&mut rng));
    }
    let x = vigie_model::Matrix::from_row_major(values, 4000, 2).unwrap();
    let none = vigie_model::Matrix::from_row_major(Vec::new(), 0, 2).unwrap();
    let kinds = [
        Kind::Categorical {
            codes: Some(vec![1.0, 2.0]),
        },
        Kind::Numerical,
    ];
    let profile = Profile::build(
        &["colour", "speed"],
        &kinds,
        &x,
        &none,
        &ProfileParams::default(),
    );
    let mut reference = Reference::new(&spec, "toy-hash", version, profile);
    // Its answers: probabilities spread from 0 to 1.
    let answers: Vec<f64> = (0..1000).map(|i| f64::from(i) / 1000.0).collect();
    let answers = vigie_model::Matrix::from_row_major(answers, 1000, 1).unwrap();
    let none = vigie_model::Matrix::from_row_major(Vec::new(), 0, 1).unwrap();
    let profile = Profile::build(
        &["prediction"],
        &[Kind::Numerical],
        &answers,
        &none,
        &ProfileParams::default(),
    );
    reference.predictions = Some(Predictions {
        binner: Binner::new(&profile),
        profile,
    });
    Arc::new(reference)
}

/// An event of `model`; its id is made of its values and time, so equal events have one id.
pub(crate) fn event(model: &str, hash: &str, colour: f64, speed: f64, ts_ms: i64) -> Vec<u8> {
    let ts = chrono::DateTime::from_timestamp_millis(ts_ms).unwrap();
    let names = vec!["colour".to_string(), "speed".to_string()];
    let values = [Value::Number(colour), Value::Number(speed)];
    let event_id = format!("e-{ts_ms}-{colour}-{speed}");
    PredictionEventRef {
        event_id: &event_id,
        request_id: "r",
        ts: &ts,
        model,
        model_version: 1,
        schema_hash: hash,
        features: Features {
            names: &names,
            values: &values,
        },
        prediction: OutcomeRef {
            class: 0,
            label: "no",
            probability: 0.2,
            threshold: 0.5,
        }
        .into(),
        latency_us: 5,
        source: vigie_stream::Source::Replay,
        row: None,
    }
    .to_json()
}

/// Every partition's checkpoint of `s`, as saved and read back.
fn saved(s: &State) -> Vec<PartitionCheckpoint> {
    let partitions: std::collections::BTreeSet<i32> = s
        .positions
        .offsets
        .keys()
        .chain(s.label_positions.offsets.keys())
        .copied()
        .collect();
    partitions
        .into_iter()
        .map(|p| {
            let text = serde_json::to_string(&s.partition_checkpoint("t", Some("l"), p)).unwrap();
            serde_json::from_str(&text).unwrap()
        })
        .collect()
}

/// Restores every checkpoint of `saved` into `s`.
fn restore(s: &mut State, saved: Vec<PartitionCheckpoint>) -> Vec<Restored> {
    saved
        .into_iter()
        .flat_map(|c| s.restore_partition(c))
        .collect()
}

/// A sliding window of the last second (events are a millisecond apart), 100 ms panes.
fn config() -> WindowConfig {
    WindowConfig {
        sliding_ms: 1_000,
        pane_ms: 100,
        tumbling_ms: 60_000,
        lateness_ms: 5_000,
        retain: 4,
        quality: QualityConfig::default(),
        ..WindowConfig::default()
    }
}

fn state(version: u32) -> State {
    let mut state = State::new(
        config(),
        Metrics::register(&prometheus::Registry::new()).unwrap(),
    );
    state.set_reference(reference(version));
    state
}

/// `n` events like the reference's, on `partitions` partitions in turn, from offset `from`.
fn feed(state: &mut State, n: usize, seed: u64, from: i64) -> Vec<Applied> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let payload = event(
                "toy",
                "toy-hash",
                f64::from(rng.gen_range(1..=2)),
                speed(&mut rng),
                1_000_000 + i as i64,
            );
            let (partition, offset) = ((i % 3) as i32, from + (i / 3) as i64);
            state.apply(partition, offset, &payload, 2_000_000)
        })
        .collect()
}

#[test]
fn events_fill_the_windows_and_move_the_position() {
    let mut s = state(1);
    let applied = feed(&mut s, 1500, 2, 0);
    assert!(
        applied
            .iter()
            .all(|a| *a == Applied::Counted { noised: false })
    );
    let w = &s.models["toy"];
    assert_eq!(
        sliding(w).rows(),
        1000,
        "the sliding window holds the last second: 1,000 events"
    );
    assert_eq!(w.merged().total.rows(), 1500);
    assert_eq!(w.events(), 1500);
    assert_eq!(
        w.partitions.values().map(|c| c.events).collect::<Vec<_>>(),
        [500, 500, 500],
        "each partition's counts apart"
    );
    assert_eq!(
        s.positions.offsets,
        BTreeMap::from([(0, 500), (1, 500), (2, 500)])
    );
    assert_eq!(s.positions.origins[&2].offset, 0);
    // A partition that delivers events before its position starts again (a new broker, a
    // topic created again): the position is given up once per partition, every event counted.
    let again = feed(&mut s, 30, 2, 490);
    assert!(
        again
            .iter()
            .all(|a| *a == Applied::Counted { noised: false })
    );
    assert_eq!(s.models["toy"].merged().total.rows(), 1530);
    assert_eq!(
        s.positions.offsets,
        BTreeMap::from([(0, 500), (1, 500), (2, 500)])
    );
    let resets =
        |s: &State, reason: &str| s.metrics.offset_resets.with_label_values(&[reason]).get();
    assert_eq!(resets(&s, "restarted"), 3);
    assert_eq!(resets(&s, "replaced"), 0);
}

#[test]
fn a_log_that_starts_again_is_told_apart_from_events_delivered_again() {
    let mut s = state(1);
    let payload = |i: i64| event("toy", "toy-hash", 1.0, 40.0 + i as f64 % 20.0, i);
    for offset in 0..100 {
        assert_eq!(
            s.apply(0, offset, &payload(offset), 0),
            Applied::Counted { noised: false }
        );
    }
    let resets =
        |s: &State, reason: &str| s.metrics.offset_resets.with_label_values(&[reason]).get();
    // The first event counted is the partition's origin, saved with the checkpoint.
    let saved = saved(&s);
    let origin = saved[0].origin.clone().unwrap();
    assert_eq!(origin.offset, 0);
    assert_eq!(origin.event_id, "e-0-1-40");

    // The last events delivered again (tansu answers a fetch at its end with its last batch):
    // already counted.
    for offset in 60..100 {
        assert_eq!(
            s.apply(0, offset, &payload(offset), 0),
            Applied::Skipped(Skip::AlreadyCounted)
        );
    }
    assert_eq!(s.models["toy"].events(), 100);
    assert_eq!(s.positions.offsets[&0], 100);

    // A log that starts again (the embedded broker after a restart, a topic created again):
    // other events before the position. The position is given up once, every event counted.
    for offset in 0..10 {
        assert_eq!(
            s.apply(0, offset, &payload(1000 + offset), 0),
            Applied::Counted { noised: false }
        );
    }
    assert_eq!(s.models["toy"].events(), 110);
    assert_eq!(s.positions.offsets[&0], 10);
    assert_eq!(
        s.positions.origins[&0].event_id,
        format!("e-1000-1-{}", 40.0 + 1000.0 % 20.0)
    );
    assert_eq!((resets(&s, "restarted"), resets(&s, "replaced")), (1, 0));

    // A partition found to be another log (see the consumer): its position is given up.
    s.give_up(Feed::Predictions, 0, Reset::Replaced, 0);
    assert_eq!(s.positions.offsets[&0], 0);
    assert!(!s.positions.origins.contains_key(&0));
    assert_eq!(
        s.apply(0, 0, &payload(5000), 0),
        Applied::Counted { noised: false }
    );
    assert_eq!((resets(&s, "restarted"), resets(&s, "replaced")), (1, 1));
}

#[test]
fn events_read_without_one_counted_are_told_apart_from_other_models() {
    let mut s = state(1);
    let foreign = event("toy", "another-spec", 1.0, 3.0, 0);
    let other = event("another-model", "h", 1.0, 3.0, 0);
    for offset in 0..150 {
        s.apply(0, offset, &other, 0);
    }
    assert_eq!(
        s.uncounted.events, 0,
        "another model's events are not ours to count"
    );
    for offset in 150..250 {
        s.apply(0, offset, &foreign, 0);
    }
    assert_eq!(s.uncounted.events, 100);
    assert_eq!(s.uncounted.reasons, BTreeMap::from([("other_schema", 100)]));
    assert!(s.uncounted.events >= UNCOUNTED_STREAK);
    s.apply(0, 250, &event("toy", "toy-hash", 1.0, 3.0, 0), 0);
    assert_eq!(s.uncounted, Uncounted::default());
}

#[test]
fn events_that_cannot_be_counted_are_skipped_with_their_reason() {
    let mut s = state(1);
    let now = 0;
    assert_eq!(
        s.apply(0, 0, b"not json", now),
        Applied::Skipped(Skip::Unreadable)
    );
    let other = event("other", "toy-hash", 1.0, 3.0, 0);
    assert_eq!(
        s.apply(0, 1, &other, now),
        Applied::Skipped(Skip::UnknownModel)
    );
    let foreign = event("toy", "another-spec", 1.0, 3.0, 0);
    assert_eq!(
        s.apply(0, 2, &foreign, now),
        Applied::Skipped(Skip::OtherSchema)
    );
    let text = String::from_utf8(event("toy", "toy-hash", 1.0, 3.0, 0))
        .unwrap()
        .replace("\"speed\"", "\"altitude\"");
    assert_eq!(
        s.apply(0, 3, text.as_bytes(), now),
        Applied::Skipped(Skip::BadFeatures)
    );
    assert_eq!(s.models["toy"].events(), 0);
    // Skipped events are passed: the position moves on.
    assert_eq!(s.positions.offsets[&0], 4);
}

#[test]
fn noise_changes_the_events_that_enter_and_expires() {
    let mut s = state(1);
    let spec: NoiseSpec = serde_json::from_value(serde_json::json!({
        "mode": "category_swap", "features": ["colour"], "rate": 1.0, "seed": 3
    }))
    .unwrap();
    let injector = Injector::new(spec, &s.models["toy"].reference.profile).unwrap();
    let now = Utc::now();
    s.models.get_mut("toy").unwrap().start_noise(ActiveNoise {
        injector,
        started_at: now,
        expires_at: now + chrono::Duration::seconds(60),
        by: "admin".into(),
        events_noised: 0,
        events_seen: 0,
    });
    let at = now.timestamp_millis();
    let payload = event("toy", "toy-hash", 1.0, 50.0, at);
    assert_eq!(
        s.apply(0, 0, &payload, at),
        Applied::Counted { noised: true }
    );
    // Colour 1 was swapped to 2 before counting.
    let w = &s.models["toy"];
    let binner = &w.reference.binner;
    assert_eq!(w.merged().total.feature(0)[binner.bin(0, 2.0) as usize], 1);
    assert_eq!(w.noise_view().unwrap().events_noised, 1);
    // Past its time to live the noise stops at the next event.
    let later = at + 61_000;
    assert_eq!(
        s.apply(0, 1, &payload, later),
        Applied::Counted { noised: false }
    );
    assert!(s.models["toy"].noise.is_none());
}

#[test]
fn a_checkpoint_restores_the_windows_and_the_position_exactly() {
    let mut s = state(1);
    feed(&mut s, 1300, 4, 0);
    let saved = saved(&s);
    assert_eq!(saved.len(), 3, "a checkpoint per partition");
    let mut restored = state(1);
    assert_eq!(
        restore(&mut restored, saved.clone()),
        [434, 433, 433].map(|events| Restored::Windows {
            model: "toy".into(),
            events
        })
    );
    assert_eq!(restored.positions.offsets, s.positions.offsets);
    let (a, b) = (&s.models["toy"], &restored.models["toy"]);
    assert_eq!(
        a.partitions, b.partitions,
        "every partition's panes and totals"
    );
    assert_eq!(sliding(a), sliding(b));
    let answers = |w: &ModelWatch| {
        let merged = w.merged();
        let newest = merged.features.max_time_ms();
        merged
            .answers
            .unwrap()
            .sliding_to(newest, w.config.sliding_ms)
    };
    assert_eq!(
        answers(a).rows(),
        sliding(a).rows(),
        "an answer per event of the sliding window"
    );
    assert_eq!(answers(a), answers(b));
    // Both go on identically, whatever the offsets they are given.
    let more_a = feed(&mut s, 600, 5, 400);
    let more_b = feed(&mut restored, 600, 5, 400);
    assert_eq!(more_a, more_b);
    assert_eq!(
        s.models["toy"].partitions,
        restored.models["toy"].partitions
    );

    // Windows binned for another version are not reused; the position is.
    let mut promoted = state(2);
    let done = restore(&mut promoted, saved);
    assert!(matches!(&done[0], Restored::Discarded { model, .. } if model == "toy"));
    assert_eq!(promoted.models["toy"].events(), 0);
    assert_eq!(
        promoted.positions.offsets,
        BTreeMap::from([(0, 434), (1, 433), (2, 433)])
    );
}

#[test]
fn scores_are_published_only_from_the_minimum_sample_size() {
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    let mut s = State::new(config(), metrics.clone());
    s.set_reference(reference(1));
    let state = Mutex::new(s);
    let text = || vigie_api::encode_metrics(&registry);
    feed(&mut state.lock().unwrap(), 300, 6, 0);
    score_all(&state, &metrics, 1.0);
    assert!(!text().contains("ml_data_drift_score{"), "{}", text());
    let last = state.lock().unwrap().models["toy"].last.clone().unwrap();
    assert!(!last.report.scored);

    feed(&mut state.lock().unwrap(), 900, 7, 100);
    score_all(&state, &metrics, 1.0);
    assert!(
        text().contains("ml_data_drift_score{model=\"toy\"} 0\n"),
        "{}",
        text()
    );
    // The second feed's events are as old as the first's: the last second holds both.
    assert!(text().contains("vigie_drift_window_events{model=\"toy\",window=\"sliding\"} 1200"));
    assert!(
        text().contains("vigie_drift_window_width_seconds{model=\"toy\",window=\"sliding\"} 1")
    );

    // Every colour swapped: the colour feature drifts, half the features.
    {
        let mut guard = state.lock().unwrap();
        let spec: NoiseSpec = serde_json::from_value(serde_json::json!({
            "mode": "prior_shift", "features": ["colour"], "rate": 1.0, "code": 2
        }))
        .unwrap();
        let injector = Injector::new(spec, &guard.models["toy"].reference.profile).unwrap();
        let now = Utc::now();
        guard
            .models
            .get_mut("toy")
            .unwrap()
            .start_noise(ActiveNoise {
                injector,
                started_at: now,
                expires_at: now + chrono::Duration::seconds(600),
                by: "t".into(),
                events_noised: 0,
                events_seen: 0,
            });
    }
    feed(&mut state.lock().unwrap(), 3000, 8, 1000);
    score_all(&state, &metrics, 1.0);
    assert!(
        text().contains("ml_data_drift_score{model=\"toy\"} 0.5\n"),
        "{}",
        text()
    );
    assert!(text().contains("vigie_drift_feature_drifted{feature=\"colour\",model=\"toy\"} 1"));
    assert!(text().contains("vigie_drift_noise_active{model=\"toy\"} 1"));
}

#[test]
fn events_removed_from_the_log_before_they_were_read_are_counted_as_missed() {
    let mut s = state(1);
    let payload = |i: i64| event("toy", "toy-hash", 1.0, 40.0 + i as f64 % 20.0, i);
    for offset in 0..50 {
        s.apply(0, offset, &payload(offset), 0);
    }
    // The broker's retention removed offsets 50..120 while the service was behind: the log
    // resumes at 120 (librdkafka resets a position out of range to the log's start).
    assert_eq!(
        s.apply(0, 120, &payload(120), 0),
        Applied::Counted { noised: false }
    );
    assert_eq!(s.metrics.missed.get(), 70);
    assert_eq!(s.models["toy"].events(), 51);
    assert_eq!(s.positions.offsets[&0], 121);
    let resets =
        |s: &State, reason: &str| s.metrics.offset_resets.with_label_values(&[reason]).get();
    assert_eq!((resets(&s, "restarted"), resets(&s, "replaced")), (0, 0));
    // A partition read for the first time, or given up, may start past offset 0 (retention
    // before the service ever read it): nothing it was owed is missing.
    s.apply(1, 300, &payload(300), 0);
    s.give_up(Feed::Predictions, 0, Reset::Replaced, 0);
    s.apply(0, 500, &payload(500), 0);
    assert_eq!(s.metrics.missed.get(), 70);
}

#[test]
fn an_answer_without_a_number_is_counted_apart_and_its_event_still_counts() {
    let mut s = state(1);
    let good = event("toy", "toy-hash", 1.0, 50.0, 1_000);
    let text = String::from_utf8(event("toy", "toy-hash", 2.0, 50.0, 1_050)).unwrap();
    let without = text.replace("\"probability\":0.2,", "");
    assert_ne!(text, without);
    assert_eq!(
        s.apply(0, 0, &good, 3_000),
        Applied::Counted { noised: false }
    );
    assert_eq!(
        s.apply(0, 1, without.as_bytes(), 3_000),
        Applied::Counted { noised: false }
    );
    let watch = &s.models["toy"];
    assert_eq!(watch.events(), 2);
    assert_eq!(sliding(watch).rows(), 2);
    let answers = watch.merged().answers.unwrap();
    assert_eq!(answers.sliding(watch.config.sliding_ms).rows(), 1);
    assert_eq!(s.metrics.answers_unreadable.get(), 1);
}

/// An answer of the toy model to request `request_id`: class 1 when `probability` >= 0.5.
fn answered(request_id: &str, probability: f64, ts_ms: i64) -> Vec<u8> {
    let ts = chrono::DateTime::from_timestamp_millis(ts_ms).unwrap();
    let names = vec!["colour".to_string(), "speed".to_string()];
    let values = [Value::Number(1.0), Value::Number(50.0)];
    let event_id = format!("e-{request_id}");
    PredictionEventRef {
        event_id: &event_id,
        request_id,
        ts: &ts,
        model: "toy",
        model_version: 1,
        schema_hash: "toy-hash",
        features: Features {
            names: &names,
            values: &values,
        },
        prediction: OutcomeRef {
            class: u8::from(probability >= 0.5),
            label: "",
            probability,
            threshold: 0.5,
        }
        .into(),
        latency_us: 5,
        source: vigie_stream::Source::Api,
        row: None,
    }
    .to_json()
}

fn label(request_id: &str, model: &str, class: Option<u8>, value: Option<f64>) -> Vec<u8> {
    serde_json::to_vec(&vigie_stream::LabelEvent {
        request_id: request_id.into(),
        row: None,
        model: model.into(),
        class,
        label: None,
        value,
        ts: chrono::DateTime::from_timestamp_millis(1_060_000).unwrap(),
        by: "test".into(),
    })
    .unwrap()
}

#[test]
fn labels_join_their_answers_whichever_topic_is_read_first_and_survive_a_checkpoint() {
    let mut s = state(1);
    let now = 2_000_000;
    // Four answers; then their labels (class 1 for r0 and r1), one label before its answer.
    for (i, p) in [0.9, 0.2, 0.1, 0.7].into_iter().enumerate() {
        let applied = s.apply(0, i as i64, &answered(&format!("r{i}"), p, 1_000_000), now);
        assert_eq!(applied, Applied::Counted { noised: false });
    }
    let labels: Vec<(Vec<u8>, Result<LabelOutcome, LabelSkip>)> = vec![
        (label("r0", "toy", Some(1), None), Ok(LabelOutcome::Joined)),
        (label("r1", "toy", Some(1), None), Ok(LabelOutcome::Joined)),
        (label("r2", "toy", Some(0), None), Ok(LabelOutcome::Joined)),
        (
            label("r2", "toy", Some(1), None),
            Ok(LabelOutcome::Relabelled),
        ),
        (label("r4", "toy", Some(0), None), Ok(LabelOutcome::Early)),
        (
            label("r3", "toy", None, Some(3.5)),
            Ok(LabelOutcome::WrongType),
        ),
        (
            label("r3", "other", Some(1), None),
            Err(LabelSkip::UnknownModel),
        ),
        (b"not json".to_vec(), Err(LabelSkip::Unreadable)),
    ];
    for (offset, (payload, expected)) in labels.iter().enumerate() {
        let got = s.apply_label(0, offset as i64, payload, now);
        assert_eq!(got, *expected, "label {offset}");
    }
    // The first label delivered again: read once.
    assert_eq!(
        s.apply_label(0, 0, &labels[0].0, now),
        Err(LabelSkip::AlreadyRead)
    );
    assert_eq!(s.label_positions.offsets[&0], labels.len() as i64);
    // The early label's answer arrives: joined.
    s.apply(0, 4, &answered("r4", 0.4, 1_000_000), now);
    let quality = s.models["toy"].quality_sum();
    assert_eq!(
        quality.waiting(),
        (1, 0),
        "r3 waits for a label of its type"
    );
    let realised = quality.realised(None);
    assert_eq!(realised.labels, 4);
    // r0 right, r1 wrong (0.2 < 0.5), r2 right, r4 right.
    assert_eq!(realised.accuracy, Some(0.75));
    let brier = (0.01 + 0.64 + 0.01 + 0.16) / 4.0;
    assert!((realised.brier.unwrap() - brier).abs() < 1e-12);
    assert_eq!(realised.median_label_delay_seconds, 60.0);

    // A checkpoint carries the join and both positions.
    let mut back = state(1);
    restore(&mut back, saved(&s));
    assert_eq!(back.label_positions.offsets, s.label_positions.offsets);
    let states = |s: &State| -> Vec<(i32, QualityState)> {
        s.models["toy"]
            .quality
            .iter()
            .map(|(&p, q)| (p, q.state()))
            .collect()
    };
    assert_eq!(states(&back), states(&s));
    // r3's label comes, now of the right type.
    assert_eq!(
        back.apply_label(0, 8, &label("r3", "toy", Some(1), None), now),
        Ok(LabelOutcome::Joined)
    );
    // A promotion starts the window again; the old version's answers are counted apart.
    back.apply(0, 5, &answered("r5", 0.9, 1_000_000), now);
    back.set_reference(reference(2));
    assert_eq!(back.models["toy"].quality_sum().realised(None).labels, 0);
    assert_eq!(
        back.apply_label(0, 9, &label("r5", "toy", Some(1), None), now),
        Ok(LabelOutcome::OldVersion)
    );
}

#[test]
fn panes_are_chosen_to_divide_both_windows() {
    assert_eq!(auto_pane_ms(300_000, 60_000), 5_000);
    assert_eq!(auto_pane_ms(60_000, 60_000), 5_000);
    assert_eq!(auto_pane_ms(3_000, 60_000), 600);
    assert_eq!(auto_pane_ms(5_000, 5_000), 1_000);
    assert_eq!(auto_pane_ms(7_000, 60_000), 1_000);
    assert_eq!(auto_pane_ms(86_400_000, 3_600_000), 300_000);
    assert_eq!(auto_pane_ms(86_400_000, 86_400_000), 7_200_000);
    for (sliding, tumbling) in [(1_000, 1_000), (61_000, 60_000), (3_600_000, 60_000)] {
        let pane = auto_pane_ms(sliding, tumbling);
        let config = WindowConfig {
            sliding_ms: sliding,
            tumbling_ms: tumbling,
            pane_ms: pane,
            ..WindowConfig::default()
        };
        assert_eq!(config.check(), Ok(()), "{sliding} {tumbling} {pane}");
    }
    let uneven = WindowConfig {
        pane_ms: 7_000,
        ..WindowConfig::default()
    };
    assert!(
        uneven
            .check()
            .unwrap_err()
            .contains("whole number of panes")
    );
}

/// 300,000 events on six partitions, read by one instance and by three instances of two
/// partitions each: every partition's counts are the same, and so is the sum scored.
#[test]
fn three_instances_count_what_one_counts_and_score_the_same() {
    let config = WindowConfig {
        sliding_ms: 5_000,
        pane_ms: 500,
        tumbling_ms: 10_000,
        lateness_ms: 2_000,
        ..config()
    };
    let new_state = || {
        let mut state = State::new(
            config,
            Metrics::register(&prometheus::Registry::new()).unwrap(),
        );
        state.set_reference(reference(1));
        state
    };
    let mut one = new_state();
    let mut three: Vec<State> = (0..3).map(|_| new_state()).collect();
    let mut rng = StdRng::seed_from_u64(23);
    let start = 1_700_000_000_000i64;
    let mut offsets = [0i64; 6];
    for i in 0..300_000i64 {
        // 10,000 events a second; a fifth of them up to 3 s late (some past the lateness).
        let late = if rng.gen_range(0..5) == 0 {
            rng.gen_range(0..3_000)
        } else {
            0
        };
        let time = start + i / 10 - late;
        let colour = f64::from(rng.gen_range(1..=2));
        // Speeds drift as time goes, so windows differ.
        let payload = event(
            "toy",
            "toy-hash",
            colour,
            speed(&mut rng) + (i / 50_000) as f64,
            time,
        );
        let partition = rng.gen_range(0..6);
        let offset = offsets[partition];
        offsets[partition] += 1;
        let now = time + 5;
        let a = one.apply(partition as i32, offset, &payload, now);
        let b = three[partition / 2].apply(partition as i32, offset, &payload, now);
        assert_eq!(a, b);
    }
    let whole = &one.models["toy"];
    let mut merged = BTreeMap::new();
    for (k, instance) in three.iter().enumerate() {
        let parts = &instance.models["toy"].partitions;
        assert_eq!(
            parts.keys().copied().collect::<Vec<_>>(),
            [2 * k as i32, 2 * k as i32 + 1]
        );
        merged.extend(parts.clone());
    }
    assert_eq!(
        whole.partitions, merged,
        "each partition's counts, to the event"
    );
    assert_eq!(whole.events(), 300_000);
    assert!(whole.late() > 0, "some events came past the lateness");

    // Each instance publishes its partials and reads the others' (and its own): each scores
    // what the single instance scores.
    let published: Vec<Vec<u8>> = three
        .iter()
        .enumerate()
        .flat_map(|(k, instance)| {
            let all = (0..6).collect();
            instance.partials("g", &format!("i{k}"), &all)
        })
        .map(|p| serde_json::to_vec(&p).unwrap())
        .collect();
    assert_eq!(published.len(), 6, "one per model and partition");
    for instance in &mut three {
        for payload in &published {
            instance.apply_partial("g", payload);
        }
        assert_eq!(
            instance
                .metrics
                .partials
                .with_label_values(&["added"])
                .get(),
            4
        );
        assert_eq!(
            instance.metrics.partials.with_label_values(&["own"]).get(),
            2
        );
        // Another group's partials are not added.
        assert_eq!(
            instance.apply_partial("other", &published[0]),
            crate::partials::Outcome::Foreign
        );
    }
    let now = time_of(start + 30_000 + 5_000);
    let registry = || Metrics::register(&prometheus::Registry::new()).unwrap();
    let one = Mutex::new(one);
    let a = crate::score::score_at(&one, &registry(), 1.0, now);
    assert!(a[0].scored.report.scored);
    assert!(a[0].windows.len() >= 3, "the tumbling windows closed");
    assert_eq!(
        a[0].windows.iter().map(|w| w.events).sum::<u64>() + lock(&one).models["toy"].late(),
        300_000,
        "every event in a window, or late"
    );
    let guard = lock(&one);
    let whole = &guard.models["toy"];
    for instance in three {
        let watch = &instance.models["toy"];
        assert_eq!(watch.events(), 300_000);
        let (q1, q3) = (whole.quality_sum(), watch.quality_sum());
        assert_eq!(
            q1.estimate(whole.newest_ms()),
            q3.estimate(watch.newest_ms())
        );
        assert!(q1.estimate(whole.newest_ms()).is_some());
        assert_eq!(q1.periods(), q3.periods());
        let instance = Mutex::new(instance);
        let b = crate::score::score_at(&instance, &registry(), 1.0, now);
        assert_eq!(a[0].scored.report, b[0].scored.report);
        assert_eq!(
            a[0].windows.iter().map(|w| &w.report).collect::<Vec<_>>(),
            b[0].windows.iter().map(|w| &w.report).collect::<Vec<_>>()
        );
    }
    // A partial counted against another reference is left out.
    let mut promoted = new_state();
    promoted.set_reference(reference(2));
    assert_eq!(
        promoted.apply_partial("g", &published[0]),
        crate::partials::Outcome::OtherReference
    );
    assert_eq!(
        promoted.apply_partial("g", b"{not json"),
        crate::partials::Outcome::Unreadable
    );
}

fn time_of(ms: i64) -> DateTime<Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap()
}

/// The sliding window of every partition's panes added up.
fn sliding(w: &ModelWatch) -> Histograms {
    w.merged().features.sliding(w.config.sliding_ms)
}
