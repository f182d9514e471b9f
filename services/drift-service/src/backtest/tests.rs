use rand::{Rng, SeedableRng, rngs::StdRng};
use vigie_drift::NullModel;
use vigie_synthetic::NoiseMode;

use super::*;
use crate::quality::QualityConfig;
use crate::watch::tests::{event, reference, speed};

/// The toy model's reference, with its null distributions (as `vigie train` stores them).
fn toy() -> Reference {
    let mut reference = Arc::try_unwrap(reference(1)).expect("a fresh reference");
    let rules = reference.rules.clone();
    reference.profile.null = Some(NullModel::simulate(&reference.profile, &rules, &rules.null));
    reference
}

/// Gaussian noise on `features`.
fn gaussian(features: &[&str], rate: f64, scale: f64) -> NoiseSpec {
    NoiseSpec {
        mode: NoiseMode::Gaussian,
        features: features.iter().map(|f| f.to_string()).collect(),
        rate,
        seed: 3,
        scale: Some(scale),
        code: None,
    }
}

fn config(noise: Option<(NoiseSpec, u64)>) -> BacktestConfig {
    BacktestConfig {
        // Events come every 100 ms: the sliding window holds the last 1,000.
        windows: WindowConfig {
            sliding_ms: 100_000,
            pane_ms: 5_000,
            tumbling_ms: 60_000,
            lateness_ms: 5_000,
            retain: 4,
            quality: QualityConfig::default(),
            ..WindowConfig::default()
        },
        score_ms: 5_000,
        alert_for_ms: 120_000,
        noise,
    }
}

/// `n` events like the reference's, one every `every_ms` from `start_ms`.
fn events(n: usize, seed: u64, start_ms: i64, every_ms: i64) -> Vec<(i64, Vec<u8>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let t = start_ms + i as i64 * every_ms;
            let colour = f64::from(rng.gen_range(1..=2));
            (t, event("toy", "toy-hash", colour, speed(&mut rng), t))
        })
        .collect()
}

fn run(config: BacktestConfig, events: &[(i64, Vec<u8>)]) -> (Vec<WindowRecord>, Summary) {
    let mut backtest = Backtest::new(toy(), config).unwrap();
    let mut out = Vec::new();
    for (offset, (_, payload)) in events.iter().enumerate() {
        backtest.event(0, offset as i64, payload, &mut out);
    }
    let summary = backtest.finish(&mut out);
    (out, summary)
}

#[test]
fn a_backtest_decides_as_the_service_does_at_the_same_scorings() {
    let config = config(None);
    let events = events(3_000, 7, 1_700_000_000_000, 100);
    let (records, summary) = run(config.clone(), &events);

    // The service: events applied as they come, scorings every period of the clock.
    let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
    let mut state = State::new(config.windows, metrics.clone());
    state.set_reference(Arc::new(toy()));
    let state = Mutex::new(state);
    let mut live = Vec::new();
    // One scoring's records, as the backtest writes them.
    let score =
        |live: &mut Vec<WindowRecord>, at: i64, counted: u64| {
            for s in score_at(&state, &metrics, 5.0, time(at)) {
                live.push(WindowRecord::of(
                    "sliding",
                    s.scored.at,
                    None,
                    counted,
                    &s.scored.report,
                ));
                live.extend(s.windows.iter().map(|w| {
                    WindowRecord::of("tumbling", w.end, Some(w.start), w.events, &w.report)
                }));
            }
        };
    let mut next = events[0].0 + config.score_ms;
    let mut counted = 0;
    let mut last = events[0].0;
    for (offset, (t, payload)) in events.iter().enumerate() {
        while *t >= next {
            score(&mut live, next, counted);
            next += config.score_ms;
        }
        lock(&state).apply(0, offset as i64, payload, *t);
        counted += 1;
        last = *t;
    }
    score(&mut live, last + 65_000, counted);

    let stripped: Vec<WindowRecord> = records
        .iter()
        .cloned()
        .map(|mut r| {
            r.alert = None;
            r
        })
        .collect();
    assert_eq!(stripped.len(), live.len());
    assert_eq!(stripped, live);
    // 300 s of events: 59 scorings on the way and one at the end; the events start 20 s into
    // a minute, so they touch 6 tumbling minutes.
    assert_eq!(summary.scorings, 60);
    assert_eq!(summary.tumbling, 6);
    assert_eq!(summary.counted, 3_000);
    assert!(
        records
            .iter()
            .any(|r| r.scored && r.feature_level.is_some())
    );
}

#[test]
fn traffic_like_the_reference_never_fires_the_alert() {
    let events = events(20_000, 11, 1_700_000_000_000, 100);
    let (records, summary) = run(config(None), &events);
    assert!(summary.scored > 300, "{summary:?}");
    assert!(summary.alerts.is_empty(), "{:?}", summary.alerts);
    assert!(
        records
            .iter()
            .all(|r| r.alert != Some(AlertState::Firing) && !r.noise_active)
    );
}

#[test]
fn noise_fires_the_alert_after_it_starts_and_not_before() {
    let noise = gaussian(&["speed"], 1.0, 3.0);
    let events = events(10_000, 13, 1_700_000_000_000, 100);
    let (records, summary) = run(config(Some((noise, 4_000))), &events);
    assert_eq!(summary.noise_from_event, Some(4_000));
    let first = summary.alerts.first().expect("the alert fires");
    assert!(first.pending_events > 4_000, "{first:?}");
    // Held for two minutes of events, ten a second.
    assert!(
        first.fired_events >= first.pending_events + 1_200,
        "{first:?}"
    );
    assert_eq!(
        summary.alerts.len(),
        1,
        "it stays firing: {:?}",
        summary.alerts
    );
    let firing = records
        .iter()
        .filter(|r| r.alert == Some(AlertState::Firing))
        .count();
    assert!(firing > 10);
    assert!(
        records
            .iter()
            .filter(|r| r.events <= 4_000)
            .all(|r| r.alert == Some(AlertState::Inactive) || r.alert.is_none())
    );
    let speed = summary
        .feature_drifted
        .iter()
        .find(|(n, _)| n == "speed")
        .unwrap();
    assert!(speed.1 > 10);
}

#[test]
fn a_gap_without_events_is_stepped_over() {
    let start = 1_700_000_000_000;
    let mut all = events(600, 17, start, 100);
    // Ten days later, more of the same.
    all.extend(events(600, 19, start + 10 * 86_400_000, 100));
    let (records, summary) = run(config(None), &all);
    // 60 s of events twice: about 12 scorings each, not 170,000 over the gap.
    assert!(summary.scorings <= 30, "{}", summary.scorings);
    assert_eq!(summary.counted, 1_200);
    // The tumbling minutes of both days close.
    assert_eq!(summary.tumbling, 2 + 2);
    assert!(
        records
            .windows(2)
            .all(|w| w[0].at <= w[1].at || w[1].window == "tumbling")
    );
}

#[test]
fn noise_that_does_not_fit_the_model_is_refused() {
    let noise = gaussian(&["weight"], 0.5, 1.0);
    let err = Backtest::new(toy(), config(Some((noise, 0)))).unwrap_err();
    assert!(err.contains("weight"), "{err}");
}

#[test]
fn unreadable_and_foreign_events_are_counted_as_skipped() {
    let mut backtest = Backtest::new(toy(), config(None)).unwrap();
    let mut out = Vec::new();
    let t = 1_700_000_000_000;
    backtest.event(0, 0, b"not json", &mut out);
    backtest.event(0, 1, &event("toy", "other-hash", 1.0, 50.0, t), &mut out);
    backtest.event(0, 2, &event("toy", "toy-hash", 1.0, 50.0, t), &mut out);
    let summary = backtest.finish(&mut out);
    assert_eq!(summary.read, 3);
    assert_eq!(summary.counted, 1);
    assert_eq!(summary.skipped.get("unreadable"), Some(&1));
    assert_eq!(summary.skipped.get("other_schema"), Some(&1));
}

#[test]
fn the_rules_hysteresis_holds_what_drifted_at_the_last_scoring() {
    let events = events(10_000, 13, 1_700_000_000_000, 100);
    let noise = gaussian(&["speed"], 1.0, 3.0);
    let mut reference = toy();
    reference.rules.hysteresis = 0.8;
    let mut backtest = Backtest::new(reference, config(Some((noise, 4_000)))).unwrap();
    let mut records = Vec::new();
    for (offset, (_, payload)) in events.iter().enumerate() {
        backtest.event(0, offset as i64, payload, &mut records);
    }
    backtest.finish(&mut records);
    let speed = |r: &WindowRecord| r.features.iter().find(|f| f.name == "speed").cloned();
    let sliding: Vec<FeatureDecision> = records
        .iter()
        .filter(|r| r.window == "sliding")
        .filter_map(speed)
        .collect();
    // Held exactly when it drifted at the scoring before.
    for pair in sliding.windows(2) {
        assert_eq!(pair[1].held, pair[0].drifted, "{pair:?}");
    }
    assert!(sliding.iter().any(|f| f.held && f.drifted));
    // Tumbling windows are judged alone.
    assert!(
        records
            .iter()
            .filter(|r| r.window == "tumbling")
            .all(|r| r.features.iter().all(|f| !f.held))
    );
}
