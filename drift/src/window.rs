//! Accumulators: histograms of events binned with a profile's bins, as plain counts.
//!
//! Counts are additive, so [`Histograms::merge`] of two partial windows equals accumulating
//! their events one after the other, whatever the order: drift instances sharing a consumer
//! group can each count their partitions and add the results exactly.
//!
//! - [`SlidingWindow`]: the last N events (a ring of their bins; the oldest leaves as a new one
//!   enters).
//! - [`TumblingWindows`]: fixed, non-overlapping event-time windows that close once the event
//!   time seen has passed their end by an allowed lateness; later events are counted as late
//!   and left out.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::binner::Binner;

/// Counts of every feature's bins, flat: feature `f` owns `counts[offsets[f]..offsets[f + 1]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histograms {
    offsets: Vec<usize>,
    counts: Vec<u64>,
    rows: u64,
}

/// Two histograms over different bins cannot be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinsMismatch;

impl std::fmt::Display for BinsMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("histograms over different bins")
    }
}

impl std::error::Error for BinsMismatch {}

impl Histograms {
    /// Empty histograms over a binner's bins.
    pub fn new(binner: &Binner) -> Self {
        Histograms::with_offsets(binner.offsets().to_vec())
    }

    fn with_offsets(offsets: Vec<usize>) -> Self {
        let total = offsets.last().copied().unwrap_or(0);
        Histograms {
            offsets,
            counts: vec![0; total],
            rows: 0,
        }
    }

    /// Events counted.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Number of features.
    pub fn features(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// The counts of feature `f`'s bins.
    pub fn feature(&self, f: usize) -> &[u64] {
        &self.counts[self.offsets[f]..self.offsets[f + 1]]
    }

    /// Counts one binned event.
    #[inline]
    pub fn add(&mut self, bins: &[u16]) {
        for (offset, &bin) in self.offsets.iter().zip(bins) {
            self.counts[offset + bin as usize] += 1;
        }
        self.rows += 1;
    }

    /// Bins and counts one event (model order, `NaN` = missing).
    pub fn add_row(&mut self, binner: &Binner, row: &[f64]) {
        for (f, &value) in row.iter().enumerate() {
            self.counts[self.offsets[f] + binner.bin(f, value) as usize] += 1;
        }
        self.rows += 1;
    }

    /// Counts events given column by column (one column per feature, model order, all of the
    /// same length): the same counts as adding each row.
    pub fn add_columns(&mut self, binner: &Binner, columns: &[Vec<f64>]) {
        assert_eq!(columns.len(), self.features(), "one column per feature");
        let rows = columns.first().map_or(0, Vec::len);
        for (f, column) in columns.iter().enumerate() {
            assert_eq!(column.len(), rows, "columns of the same length");
            let counts = &mut self.counts[self.offsets[f]..self.offsets[f + 1]];
            for &value in column {
                counts[binner.bin(f, value) as usize] += 1;
            }
        }
        self.rows += rows as u64;
    }

    /// Un-counts one binned event that was counted before.
    #[inline]
    fn remove(&mut self, bins: &[u16]) {
        for (offset, &bin) in self.offsets.iter().zip(bins) {
            self.counts[offset + bin as usize] -= 1;
        }
        self.rows -= 1;
    }

    /// Adds `other`'s counts: the same as having counted its events here.
    pub fn merge(&mut self, other: &Histograms) -> Result<(), BinsMismatch> {
        if self.offsets != other.offsets {
            return Err(BinsMismatch);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.rows += other.rows;
        Ok(())
    }

    /// Whether these histograms are over `binner`'s bins with one count per bin, and their
    /// rows agree with the counts (histograms read back from a checkpoint are checked so).
    pub fn fits(&self, binner: &Binner) -> bool {
        self.offsets == binner.offsets()
            && self.counts.len() == self.offsets.last().copied().unwrap_or(0)
            && self
                .offsets
                .windows(2)
                .all(|w| self.counts[w[0]..w[1]].iter().sum::<u64>() == self.rows)
    }

    /// Forgets every event.
    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.rows = 0;
    }
}

/// A sliding window's events, oldest first, for checkpoints: `bins` holds each event's bins
/// (one per feature) one event after the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlidingState {
    pub capacity: usize,
    pub bins: Vec<u16>,
}

/// The last `capacity` events.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    capacity: usize,
    features: usize,
    /// `capacity` slots of `features` bins; slot `next` is the oldest once the ring is full.
    ring: Vec<u16>,
    next: usize,
    histograms: Histograms,
}

impl SlidingWindow {
    /// An empty window of the last `capacity` events (at least 1).
    pub fn new(binner: &Binner, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        SlidingWindow {
            capacity,
            features: binner.features(),
            ring: Vec::with_capacity(capacity.min(1 << 20) * binner.features()),
            next: 0,
            histograms: Histograms::new(binner),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Events in the window (at most the capacity).
    pub fn len(&self) -> usize {
        self.histograms.rows() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The counts of the events in the window.
    pub fn histograms(&self) -> &Histograms {
        &self.histograms
    }

    /// Adds an event (model order, `NaN` = missing); the oldest one leaves a full window.
    /// Returns the event's bins (other accumulators count them without binning again).
    #[inline]
    pub fn push(&mut self, binner: &Binner, row: &[f64]) -> &[u16] {
        let f = self.features;
        if self.ring.len() < self.capacity * f {
            let start = self.ring.len();
            self.ring.resize(start + f, 0);
            binner.bin_row(row, &mut self.ring[start..]);
            self.histograms.add(&self.ring[start..]);
            &self.ring[start..]
        } else {
            let at = self.next * f;
            let slot = &mut self.ring[at..at + f];
            self.histograms.remove(slot);
            binner.bin_row(row, slot);
            self.histograms.add(slot);
            self.next = (self.next + 1) % self.capacity;
            &self.ring[at..at + f]
        }
    }

    /// The window's events, oldest first, as a value that can be stored and restored.
    pub fn state(&self) -> SlidingState {
        let f = self.features;
        let mut ring = Vec::with_capacity(self.ring.len());
        if self.ring.len() == self.capacity * f {
            ring.extend_from_slice(&self.ring[self.next * f..]);
            ring.extend_from_slice(&self.ring[..self.next * f]);
        } else {
            ring.extend_from_slice(&self.ring);
        }
        SlidingState {
            capacity: self.capacity,
            bins: ring,
        }
    }

    /// The window a [`SlidingWindow::state`] describes, over `binner`'s bins. The counts are
    /// recomputed from the events' bins; a state that does not fit the bins (another
    /// reference, a damaged checkpoint) is refused. A state larger than `capacity` keeps its
    /// newest events.
    pub fn restore(
        binner: &Binner,
        capacity: usize,
        state: &SlidingState,
    ) -> Result<Self, BinsMismatch> {
        let f = binner.features();
        if f == 0 || !state.bins.len().is_multiple_of(f) {
            return Err(BinsMismatch);
        }
        let sizes: Vec<usize> = binner.offsets().windows(2).map(|w| w[1] - w[0]).collect();
        let mut window = SlidingWindow::new(binner, capacity);
        let events = state.bins.len() / f;
        let skip = events.saturating_sub(window.capacity);
        for event in state.bins.chunks_exact(f).skip(skip) {
            if event
                .iter()
                .zip(&sizes)
                .any(|(&bin, &size)| bin as usize >= size)
            {
                return Err(BinsMismatch);
            }
            window.ring.extend_from_slice(event);
            window.histograms.add(event);
        }
        if window.ring.len() == window.capacity * f {
            window.next = 0;
        }
        Ok(window)
    }

    /// Empties the window (the reference changed, say).
    pub fn clear(&mut self) {
        self.ring.clear();
        self.next = 0;
        self.histograms.clear();
    }
}

/// One closed event-time window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedWindow {
    /// Start of the window, inclusive, in milliseconds since the Unix epoch.
    pub start_ms: i64,
    /// End, exclusive.
    pub end_ms: i64,
    pub histograms: Histograms,
}

/// Start of the event-time window `width_ms` wide (at least 1 ms) holding `time_ms`: windows
/// are aligned on the epoch, so every process cuts time the same way.
pub fn window_start(time_ms: i64, width_ms: i64) -> i64 {
    let width = width_ms.max(1);
    time_ms.div_euclid(width).saturating_mul(width)
}

/// Tumbling event-time windows of a fixed width.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TumblingWindows {
    width_ms: i64,
    lateness_ms: i64,
    retain: usize,
    offsets: Vec<usize>,
    open: BTreeMap<i64, Histograms>,
    closed: VecDeque<ClosedWindow>,
    /// Greatest event time seen.
    max_time_ms: Option<i64>,
    /// Windows starting before this are closed: events for them are late.
    closed_before_ms: i64,
    late: u64,
}

impl TumblingWindows {
    /// Windows of `width_ms` (at least 1 ms), closed once an event `lateness_ms` past their
    /// end has been seen; the last `retain` closed windows are kept.
    pub fn new(binner: &Binner, width_ms: i64, lateness_ms: i64, retain: usize) -> Self {
        TumblingWindows {
            width_ms: width_ms.max(1),
            lateness_ms: lateness_ms.max(0),
            retain: retain.max(1),
            offsets: binner.offsets().to_vec(),
            open: BTreeMap::new(),
            closed: VecDeque::new(),
            max_time_ms: None,
            closed_before_ms: i64::MIN,
            late: 0,
        }
    }

    pub fn width_ms(&self) -> i64 {
        self.width_ms
    }

    /// Start of the window holding an event time.
    pub fn window_start(&self, time_ms: i64) -> i64 {
        window_start(time_ms, self.width_ms)
    }

    /// Counts a binned event at its event time; returns `false` (and counts it as late) when
    /// its window has already closed.
    pub fn add(&mut self, time_ms: i64, bins: &[u16]) -> bool {
        let start = self.window_start(time_ms);
        if start < self.closed_before_ms {
            self.late += 1;
            return false;
        }
        let offsets = &self.offsets;
        self.open
            .entry(start)
            .or_insert_with(|| Histograms::with_offsets(offsets.clone()))
            .add(bins);
        if self.max_time_ms.is_none_or(|m| time_ms > m) {
            self.max_time_ms = Some(time_ms);
            self.close_until(time_ms.saturating_sub(self.lateness_ms));
        }
        true
    }

    /// Closes every window that ends at or before `watermark_ms` (idle streams: the caller
    /// may advance time without events).
    pub fn close_until(&mut self, watermark_ms: i64) {
        // [s, s + width) closes when s + width <= watermark: every window before the one
        // holding the watermark.
        let first_open = self.window_start(watermark_ms);
        let still_open = self.open.split_off(&first_open);
        for (start, histograms) in std::mem::replace(&mut self.open, still_open) {
            self.closed.push_back(ClosedWindow {
                start_ms: start,
                end_ms: start + self.width_ms,
                histograms,
            });
        }
        while self.closed.len() > self.retain {
            self.closed.pop_front();
        }
        self.closed_before_ms = self.closed_before_ms.max(first_open);
    }

    /// Windows still receiving events, oldest first.
    pub fn open(&self) -> impl Iterator<Item = (i64, &Histograms)> {
        self.open.iter().map(|(&start, h)| (start, h))
    }

    /// The retained closed windows, oldest first.
    pub fn closed(&self) -> &VecDeque<ClosedWindow> {
        &self.closed
    }

    /// The most recent closed window.
    pub fn last_closed(&self) -> Option<&ClosedWindow> {
        self.closed.back()
    }

    /// Events that arrived after their window had closed.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Whether every window is over `binner`'s bins (windows read back from a checkpoint are
    /// checked before use).
    pub fn fits(&self, binner: &Binner) -> bool {
        self.offsets == binner.offsets()
            && self.open.values().all(|h| h.fits(binner))
            && self.closed.iter().all(|c| c.histograms.fits(binner))
    }
}

#[cfg(test)]
mod tests;
