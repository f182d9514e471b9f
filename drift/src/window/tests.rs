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
    fn a_sliding_window_holds_exactly_the_last_n_events(
        rows in events(120),
        capacity in 1usize..40,
    ) {
        let binner = binner();
        let mut window = SlidingWindow::new(&binner, capacity);
        for (i, row) in rows.iter().enumerate() {
            window.push(&binner, row);
            let start = (i + 1).saturating_sub(capacity);
            prop_assert_eq!(window.histograms(), &counted(&binner, &rows[start..=i]));
            prop_assert_eq!(window.len(), i + 1 - start);
        }
    }

    #[test]
    fn a_restored_sliding_window_goes_on_as_the_original(
        before in events(90),
        after in events(60),
        capacity in 1usize..40,
    ) {
        let binner = binner();
        let mut window = SlidingWindow::new(&binner, capacity);
        for row in &before {
            window.push(&binner, row);
        }
        let state = window.state();
        prop_assert_eq!(state.bins.len(), window.len() * 2);
        let mut restored = SlidingWindow::restore(&binner, capacity, &state).unwrap();
        prop_assert_eq!(restored.histograms(), window.histograms());
        prop_assert!(restored.histograms().fits(&binner));
        for row in &after {
            let a = window.push(&binner, row).to_vec();
            let b = restored.push(&binner, row).to_vec();
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a, bins(&binner, *row));
            prop_assert_eq!(restored.histograms(), window.histograms());
        }
    }
}

#[test]
fn a_sliding_state_that_does_not_fit_the_bins_is_refused() {
    let binner = binner();
    let mut window = SlidingWindow::new(&binner, 4);
    window.push(&binner, &[1.0, 2.0]);
    let mut state = window.state();
    state.bins.push(0);
    assert_eq!(
        SlidingWindow::restore(&binner, 4, &state).err(),
        Some(BinsMismatch)
    );
    let mut state = window.state();
    state.bins[0] = u16::MAX;
    assert_eq!(
        SlidingWindow::restore(&binner, 4, &state).err(),
        Some(BinsMismatch)
    );
    // A smaller capacity keeps the newest events.
    window.push(&binner, &[2.0, 5.0]);
    let smaller = SlidingWindow::restore(&binner, 1, &window.state()).unwrap();
    assert_eq!(smaller.histograms(), &counted(&binner, &[[2.0, 5.0]]));
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

#[test]
fn a_cleared_sliding_window_starts_over() {
    let binner = binner();
    let mut window = SlidingWindow::new(&binner, 3);
    for i in 0..5 {
        window.push(&binner, &[1.0, i as f64]);
    }
    window.clear();
    assert!(window.is_empty());
    window.push(&binner, &[2.0, 7.0]);
    assert_eq!(window.histograms(), &counted(&binner, &[[2.0, 7.0]]));
}

fn bins(binner: &Binner, row: [f64; 2]) -> Vec<u16> {
    let mut out = vec![0; 2];
    binner.bin_row(&row, &mut out);
    out
}

#[test]
fn tumbling_windows_close_after_their_end_plus_the_lateness() {
    let binner = binner();
    // 10 s windows, 2 s of lateness, keep 2 closed windows.
    let mut w = TumblingWindows::new(&binner, 10_000, 2_000, 2);
    let event = bins(&binner, [1.0, 5.0]);
    assert!(w.add(1_000, &event));
    assert!(w.add(9_999, &event));
    assert!(w.add(11_000, &event), "opens [10 s, 20 s)");
    assert!(w.closed().is_empty(), "[0, 10 s) waits for the lateness");
    assert!(w.add(5_000, &event), "late but within the lateness");
    assert!(w.add(12_000, &event), "12 s closes [0, 10 s)");
    let first = w.last_closed().unwrap();
    assert_eq!((first.start_ms, first.end_ms), (0, 10_000));
    assert_eq!(first.histograms.rows(), 3);
    assert!(!w.add(9_000, &event), "its window has closed");
    assert_eq!(w.late(), 1);
    assert_eq!(
        w.open().map(|(s, h)| (s, h.rows())).collect::<Vec<_>>(),
        [(10_000, 2)]
    );

    // An idle stream: time advances without events.
    w.close_until(40_000);
    assert_eq!(w.last_closed().unwrap().start_ms, 10_000);
    assert_eq!(w.open().count(), 0);
    assert!(
        !w.add(35_000, &event),
        "[30 s, 40 s) ended at the watermark"
    );
    assert!(w.add(40_000, &event));
    w.close_until(100_000);
    assert_eq!(
        w.closed().iter().map(|c| c.start_ms).collect::<Vec<_>>(),
        [10_000, 40_000],
        "two retained"
    );
}

#[test]
fn tumbling_windows_handle_times_before_the_epoch() {
    let binner = binner();
    let w = TumblingWindows::new(&binner, 1_000, 0, 1);
    assert_eq!(w.window_start(-1), -1_000);
    assert_eq!(w.window_start(0), 0);
    assert_eq!(w.window_start(999), 0);
}
