use proptest::prelude::*;
use vigie_model::Matrix;

use super::*;
use crate::profile::{Kind, Profile, ProfileParams};

/// Two features: a code in 0..4 (declared 0..3, so 3 lands in "other") and a number.
fn binner() -> Binner {
    let rows: Vec<f64> = (0..100).flat_map(|i| [(i % 3) as f64, i as f64]).collect();
    let x = Matrix::from_row_major(rows, 100, 2).unwrap();
    let empty = Matrix::from_row_major(vec![], 0, 2).unwrap();
    let kinds = [
        Kind::Categorical {
            codes: Some(vec![0.0, 1.0, 2.0]),
        },
        Kind::Numerical,
    ];
    let profile = Profile::build(&["c", "x"], &kinds, &x, &empty, &ProfileParams::default());
    Binner::new(&profile)
}

fn counted(binner: &Binner, rows: &[[f64; 2]]) -> Histograms {
    let mut h = Histograms::new(binner);
    for row in rows {
        h.add_row(binner, row);
    }
    h
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u8..4).prop_map(f64::from),
        -50.0f64..150.0,
        Just(f64::NAN),
    ]
}

fn events(max: usize) -> impl Strategy<Value = Vec<[f64; 2]>> {
    prop::collection::vec((value(), value()).prop_map(|(a, b)| [a, b]), 0..max)
}

proptest! {
    #[test]
    fn merging_equals_counting_one_after_the_other(a in events(60), b in events(60)) {
        let binner = binner();
        let mut merged = counted(&binner, &a);
        merged.merge(&counted(&binner, &b)).unwrap();
        let all: Vec<[f64; 2]> = a.iter().chain(&b).copied().collect();
        prop_assert_eq!(&merged, &counted(&binner, &all));
        // And the order does not matter.
        let mut other_way = counted(&binner, &b);
        other_way.merge(&counted(&binner, &a)).unwrap();
        prop_assert_eq!(merged, other_way);
    }

    #[test]
    fn counting_columns_equals_counting_rows(rows in events(80)) {
        let binner = binner();
        let columns = vec![
            rows.iter().map(|r| r[0]).collect::<Vec<f64>>(),
            rows.iter().map(|r| r[1]).collect(),
        ];
        let mut h = Histograms::new(&binner);
        h.add_columns(&binner, &columns);
        prop_assert_eq!(h, counted(&binner, &rows));
    }

    #[test]
    fn panes_summed_equal_the_events_counted_whatever_the_split(
        stream in timed_events(300),
        partitions in 1usize..5,
        order in prop::collection::vec(any::<u8>(), 5),
        width_panes in 1i64..6,
    ) {
        // One stream per partition; an event goes to its partition by a key.
        let binner = binner();
        let (pane, lateness) = (1_000, 1_500);
        let mut streams: Vec<Panes> = (0..partitions)
            .map(|_| Panes::new(&binner, pane, lateness))
            .collect();
        let mut counted_events: Vec<Vec<(i64, [f64; 2])>> = vec![Vec::new(); partitions];
        for (key, time, row) in &stream {
            let p = *key as usize % partitions;
            if streams[p].add(*time, &bins(&binner, *row)) {
                counted_events[p].push((*time, *row));
            }
        }
        // The streams added in any order give the same sums.
        let mut sum = PaneSum::new(&binner, pane);
        let mut shuffled: Vec<usize> = (0..partitions).collect();
        shuffled.sort_by_key(|&i| order[i]);
        for &p in &shuffled {
            sum.add(&streams[p]).unwrap();
        }
        let mut in_order = PaneSum::new(&binner, pane);
        for s in &streams {
            in_order.add(s).unwrap();
        }
        let width = width_panes * pane;
        prop_assert_eq!(sum.sliding(width), in_order.sliding(width));
        prop_assert_eq!(sum.closed(2 * pane, i64::MIN, i64::MIN), in_order.closed(2 * pane, i64::MIN, i64::MIN));
        prop_assert_eq!(sum.late(), streams.iter().map(Panes::late).sum::<u64>());
        // The sliding window holds exactly the counted events of its panes.
        if let Some(newest) = sum.max_time_ms() {
            let last = window_start(newest, pane);
            let first = last - (width_panes - 1) * pane;
            let rows: Vec<[f64; 2]> = (0..partitions)
                .flat_map(|p| {
                    counted_events[p]
                        .iter()
                        .filter(move |(t, _)| {
                            let s = window_start(*t, pane);
                            s >= first && s <= last
                        })
                        .map(|(_, r)| *r)
                        .collect::<Vec<_>>()
                })
                .collect();
            prop_assert_eq!(sum.sliding(width), counted(&binner, &rows));
        }
    }

    #[test]
    fn panes_go_through_their_saved_form_unchanged(stream in timed_events(120)) {
        let binner = binner();
        let mut panes = Panes::new(&binner, 1_000, 2_000);
        for (_, time, row) in &stream {
            panes.add(*time, &bins(&binner, *row));
        }
        let text = serde_json::to_string(&panes).unwrap();
        let back: Panes = serde_json::from_str(&text).unwrap();
        prop_assert!(back.fits(&binner));
        prop_assert_eq!(back, panes);
    }
}

/// Events with a partition key, an event time (mostly increasing, some a few seconds late)
/// and a row.
fn timed_events(max: usize) -> impl Strategy<Value = Vec<(u8, i64, [f64; 2])>> {
    prop::collection::vec(
        (any::<u8>(), 0i64..400, -3_000i64..100, value(), value()),
        0..max,
    )
    .prop_map(|steps| {
        let mut now = 50_000i64;
        steps
            .into_iter()
            .map(|(key, step, jitter, a, b)| {
                now += step;
                (key, now + jitter.min(0), [a, b])
            })
            .collect()
    })
}

#[test]
fn panes_that_do_not_add_up_are_refused() {
    let binner = binner();
    let mut panes = Panes::new(&binner, 1_000, 0);
    panes.add(1_500, &bins(&binner, [1.0, 2.0]));
    let mut wire: serde_json::Value = serde_json::to_value(&panes).unwrap();
    wire["panes"][0]["rows"] = 2.into();
    assert!(serde_json::from_value::<Panes>(wire).is_err(), "rows");
    let mut wire: serde_json::Value = serde_json::to_value(&panes).unwrap();
    wire["panes"][0]["counts"][0][0] = 9_999.into();
    assert!(
        serde_json::from_value::<Panes>(wire).is_err(),
        "a bin out of range"
    );
    let mut wire: serde_json::Value = serde_json::to_value(&panes).unwrap();
    wire["panes"][0]["start_ms"] = 1_500.into();
    assert!(
        serde_json::from_value::<Panes>(wire).is_err(),
        "a pane not aligned"
    );
}

#[test]
fn histograms_over_other_bins_do_not_merge() {
    let binner = binner();
    let other = {
        let x = Matrix::from_row_major(vec![1.0, 2.0], 2, 1).unwrap();
        let empty = Matrix::from_row_major(vec![], 0, 1).unwrap();
        let p = Profile::build(
            &["c"],
            &[Kind::Numerical],
            &x,
            &empty,
            &ProfileParams::default(),
        );
        Binner::new(&p)
    };
    let mut h = Histograms::new(&binner);
    assert_eq!(h.merge(&Histograms::new(&other)), Err(BinsMismatch));
}

fn bins(binner: &Binner, row: [f64; 2]) -> Vec<u16> {
    let mut out = vec![0; 2];
    binner.bin_row(&row, &mut out);
    out
}

#[test]
fn panes_close_after_their_end_plus_the_lateness_and_old_ones_are_forgotten() {
    let binner = binner();
    // 10 s panes, 2 s of lateness.
    let mut p = Panes::new(&binner, 10_000, 2_000);
    let event = bins(&binner, [1.0, 5.0]);
    assert!(p.add(1_000, &event));
    assert!(p.add(9_999, &event));
    assert!(p.add(11_000, &event), "opens [10 s, 20 s)");
    assert_eq!(p.closed_before_ms(), 0, "[0, 10 s) waits for the lateness");
    assert!(p.add(5_000, &event), "late but within the lateness");
    assert!(p.add(12_000, &event), "12 s closes [0, 10 s)");
    assert_eq!(p.closed_before_ms(), 10_000);
    assert!(!p.add(9_000, &event), "its pane has closed");
    assert_eq!(p.late(), 1);
    assert_eq!(
        p.panes().map(|(s, h)| (s, h.rows())).collect::<Vec<_>>(),
        [(0, 3), (10_000, 2)]
    );
    assert!(p.add(41_000, &event));
    assert_eq!(p.forget_before(10_000), 3, "[0, 10 s) forgotten");
    assert_eq!(
        p.forget_before(i64::MAX),
        2,
        "[10 s, 20 s) closed; [40 s, 50 s) open"
    );
    assert_eq!(
        p.panes().map(|(s, _)| s).collect::<Vec<_>>(),
        [40_000],
        "an open pane is never forgotten"
    );
    // The counts again, for the sums below.
    let mut p = Panes::new(&binner, 10_000, 2_000);
    for t in [1_000, 9_999, 11_000, 5_000, 12_000, 41_000] {
        assert!(p.add(t, &event));
    }
    assert!(!p.add(9_000, &event));

    // Summed with an idle stream: windows close on the slowest stream, or on the watermark.
    let mut idle = Panes::new(&binner, 10_000, 2_000);
    assert!(idle.add(15_000, &event));
    let mut sum = PaneSum::new(&binner, 10_000);
    sum.add(&p).unwrap();
    sum.add(&idle).unwrap();
    assert_eq!(sum.closed_before_ms(), Some(10_000));
    let starts = |w: &[ClosedWindow]| {
        w.iter()
            .map(|c| (c.start_ms, c.histograms.rows()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        starts(&sum.closed(20_000, i64::MIN, i64::MIN)),
        [],
        "[0, 20 s) waits for the idle stream"
    );
    assert_eq!(
        starts(&sum.closed(10_000, i64::MIN, i64::MIN)),
        [(0, 3)],
        "[0, 10 s) is closed in both"
    );
    assert_eq!(
        starts(&sum.closed(20_000, i64::MIN, 40_000)),
        [(0, 6)],
        "the wall clock's watermark closes it; [40 s, 60 s) stays open"
    );
    assert_eq!(
        starts(&sum.closed(20_000, 20_000, 40_000)),
        [],
        "scored already"
    );
    assert_eq!(sum.sliding(10_000).rows(), 1, "the newest pane");
    assert_eq!(sum.sliding(40_000).rows(), 4, "[10 s, 50 s)");
    assert_eq!(sum.rows_from(10_000), 4);

    // Panes of another width are not added.
    let other = Panes::new(&binner, 5_000, 0);
    assert_eq!(sum.add(&other), Err(BinsMismatch));
}

#[test]
fn windows_handle_times_before_the_epoch() {
    assert_eq!(window_start(-1, 1_000), -1_000);
    assert_eq!(window_start(0, 1_000), 0);
    assert_eq!(window_start(999, 1_000), 0);
}
