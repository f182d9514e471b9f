//! Accumulators: histograms of events binned with a profile's bins, as plain counts.
//!
//! Counts are additive, so [`Histograms::merge`] of two partial windows equals accumulating
//! their events one after the other, whatever the order: drift instances sharing a consumer
//! group each count their partitions and add the results exactly.
//!
//! Every window is made of event-time panes, so that windows merge exactly across partitions
//! (a window of "the last N events" of several partitions depends on how their events
//! interleave, which no instance reading some of them knows):
//!
//! - [`Panes`]: one stream's events (a partition's, of one model) counted per pane of event
//!   time, `pane_ms` wide and aligned on the epoch. A pane closes once the stream's newest
//!   event time has passed its end by the allowed lateness; an event for a closed pane is
//!   late, counted as such and left out. What a stream's panes hold depends only on its own
//!   events, in its own order. Old panes are forgotten when their owner says
//!   ([`Panes::forget_before`]: once the windows they make are scored).
//! - [`PaneSum`]: the panes of several streams added up. Its sliding window is the panes of
//!   the last `width` of event time (up to the newest event of any stream); its tumbling
//!   windows are the panes of fixed, aligned spans, closed once every stream has closed
//!   their panes. One process counting every partition and three processes counting two each
//!   give the same sums.

use std::collections::BTreeMap;

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

/// One stream's events, counted per pane of event time (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "PanesWire", try_from = "PanesWire")]
pub struct Panes {
    pane_ms: i64,
    lateness_ms: i64,
    offsets: Vec<usize>,
    /// By start, ms.
    panes: BTreeMap<i64, Histograms>,
    /// Greatest event time seen.
    max_time_ms: Option<i64>,
    /// Panes starting before this are closed: events for them are late.
    closed_before_ms: i64,
    late: u64,
}

impl Panes {
    /// Panes `pane_ms` wide (at least 1 ms), closed once an event `lateness_ms` past their end
    /// has been seen.
    pub fn new(binner: &Binner, pane_ms: i64, lateness_ms: i64) -> Self {
        Panes {
            pane_ms: pane_ms.max(1),
            lateness_ms: lateness_ms.max(0),
            offsets: binner.offsets().to_vec(),
            panes: BTreeMap::new(),
            max_time_ms: None,
            closed_before_ms: i64::MIN,
            late: 0,
        }
    }

    pub fn pane_ms(&self) -> i64 {
        self.pane_ms
    }

    /// Counts a binned event at its event time; returns `false` (and counts it as late) when
    /// its pane has closed.
    #[inline]
    pub fn add(&mut self, time_ms: i64, bins: &[u16]) -> bool {
        let start = window_start(time_ms, self.pane_ms);
        if start < self.closed_before_ms {
            self.late += 1;
            return false;
        }
        match self.panes.get_mut(&start) {
            Some(pane) => pane.add(bins),
            None => {
                let mut pane = Histograms::with_offsets(self.offsets.clone());
                pane.add(bins);
                self.panes.insert(start, pane);
            }
        }
        if self.max_time_ms.is_none_or(|m| time_ms > m) {
            self.max_time_ms = Some(time_ms);
            let closed_before =
                window_start(time_ms.saturating_sub(self.lateness_ms), self.pane_ms);
            self.closed_before_ms = self.closed_before_ms.max(closed_before);
        }
        true
    }

    /// Forgets the panes that start before `start_ms`, closed ones only (an open pane still
    /// takes events). Returns the events forgotten.
    pub fn forget_before(&mut self, start_ms: i64) -> u64 {
        let before = start_ms.min(self.closed_before_ms);
        let mut forgotten = 0;
        while let Some(entry) = self.panes.first_entry() {
            if *entry.key() >= before {
                break;
            }
            forgotten += entry.remove().rows();
        }
        forgotten
    }

    /// The panes held, oldest first.
    pub fn panes(&self) -> impl Iterator<Item = (i64, &Histograms)> {
        self.panes.iter().map(|(&start, h)| (start, h))
    }

    /// Greatest event time seen.
    pub fn max_time_ms(&self) -> Option<i64> {
        self.max_time_ms
    }

    /// Panes starting before this are closed (`i64::MIN` before the first event).
    pub fn closed_before_ms(&self) -> i64 {
        self.closed_before_ms
    }

    /// Events that arrived after their pane had closed.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Events in the panes held.
    pub fn rows(&self) -> u64 {
        self.panes.values().map(Histograms::rows).sum()
    }

    /// Whether every pane is over `binner`'s bins (panes read back from a checkpoint or from
    /// another instance are checked before use).
    pub fn fits(&self, binner: &Binner) -> bool {
        self.offsets == binner.offsets() && self.panes.values().all(|h| h.fits(binner))
    }

    /// Whether these panes are cut and closed as `pane_ms` and `lateness_ms` say, once
    /// normalised as [`Panes::new`] does (panes saved under another configuration are not
    /// counted into).
    pub fn is_shaped(&self, pane_ms: i64, lateness_ms: i64) -> bool {
        (self.pane_ms, self.lateness_ms) == (pane_ms.max(1), lateness_ms.max(0))
    }
}

/// How [`Panes`] are saved and sent: each pane's counts sparse (a pane of a few events
/// touches few of the bins), as `[bin, count]` pairs over the flat bins.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PanesWire {
    pane_ms: i64,
    lateness_ms: i64,
    offsets: Vec<usize>,
    panes: Vec<PaneWire>,
    max_time_ms: Option<i64>,
    closed_before_ms: i64,
    late: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PaneWire {
    start_ms: i64,
    rows: u64,
    counts: Vec<(u32, u64)>,
}

impl From<Panes> for PanesWire {
    fn from(p: Panes) -> Self {
        PanesWire {
            pane_ms: p.pane_ms,
            lateness_ms: p.lateness_ms,
            panes: p
                .panes
                .iter()
                .map(|(&start_ms, h)| PaneWire {
                    start_ms,
                    rows: h.rows,
                    counts: h
                        .counts
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| **c > 0)
                        .map(|(i, &c)| (i as u32, c))
                        .collect(),
                })
                .collect(),
            offsets: p.offsets,
            max_time_ms: p.max_time_ms,
            closed_before_ms: p.closed_before_ms,
            late: p.late,
        }
    }
}

impl TryFrom<PanesWire> for Panes {
    type Error = String;

    fn try_from(w: PanesWire) -> Result<Self, String> {
        if w.pane_ms < 1 || w.lateness_ms < 0 {
            return Err(format!(
                "panes of {} ms, lateness {} ms",
                w.pane_ms, w.lateness_ms
            ));
        }
        if w.offsets.first().is_some_and(|&o| o != 0) || w.offsets.windows(2).any(|p| p[0] > p[1]) {
            return Err("bin offsets out of order".into());
        }
        let bins = w.offsets.last().copied().unwrap_or(0);
        let features = w.offsets.len().saturating_sub(1);
        let mut panes = BTreeMap::new();
        for pane in w.panes {
            let mut h = Histograms::with_offsets(w.offsets.clone());
            for (bin, count) in pane.counts {
                let slot = h
                    .counts
                    .get_mut(bin as usize)
                    .ok_or_else(|| format!("bin {bin} of {bins}"))?;
                *slot = count;
            }
            h.rows = pane.rows;
            let consistent = (0..features).all(|f| h.feature(f).iter().sum::<u64>() == h.rows);
            if !consistent || window_start(pane.start_ms, w.pane_ms) != pane.start_ms {
                return Err(format!("pane at {} ms does not add up", pane.start_ms));
            }
            panes.insert(pane.start_ms, h);
        }
        Ok(Panes {
            pane_ms: w.pane_ms,
            lateness_ms: w.lateness_ms,
            offsets: w.offsets,
            panes,
            max_time_ms: w.max_time_ms,
            closed_before_ms: w.closed_before_ms,
            late: w.late,
        })
    }
}

/// The panes of several streams added up (see the module's documentation).
#[derive(Debug, Clone)]
pub struct PaneSum {
    pane_ms: i64,
    offsets: Vec<usize>,
    panes: BTreeMap<i64, Histograms>,
    max_time_ms: Option<i64>,
    /// The least of the streams' (`None` before the first stream is added).
    closed_before_ms: Option<i64>,
    late: u64,
}

impl PaneSum {
    /// An empty sum of panes `pane_ms` wide over `binner`'s bins.
    pub fn new(binner: &Binner, pane_ms: i64) -> Self {
        PaneSum {
            pane_ms: pane_ms.max(1),
            offsets: binner.offsets().to_vec(),
            panes: BTreeMap::new(),
            max_time_ms: None,
            closed_before_ms: None,
            late: 0,
        }
    }

    /// Adds a stream's panes. Panes of another width or over other bins are refused.
    pub fn add(&mut self, stream: &Panes) -> Result<(), BinsMismatch> {
        if stream.pane_ms != self.pane_ms || stream.offsets != self.offsets {
            return Err(BinsMismatch);
        }
        for (&start, h) in &stream.panes {
            match self.panes.get_mut(&start) {
                Some(sum) => sum.merge(h)?,
                None => {
                    self.panes.insert(start, h.clone());
                }
            }
        }
        self.max_time_ms = self.max_time_ms.max(stream.max_time_ms);
        if stream.max_time_ms.is_some() {
            self.closed_before_ms = Some(
                self.closed_before_ms
                    .map_or(stream.closed_before_ms, |c| c.min(stream.closed_before_ms)),
            );
        }
        self.late += stream.late;
        Ok(())
    }

    /// Greatest event time of any stream.
    pub fn max_time_ms(&self) -> Option<i64> {
        self.max_time_ms
    }

    /// Panes starting before this are closed in every stream (`None` before any event).
    pub fn closed_before_ms(&self) -> Option<i64> {
        self.closed_before_ms
    }

    /// Events late for their pane, in every stream.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// The counts of the panes that start in `[start_ms, end_ms)`.
    pub fn span(&self, start_ms: i64, end_ms: i64) -> Histograms {
        let mut sum = Histograms::with_offsets(self.offsets.clone());
        if start_ms < end_ms {
            for h in self.panes.range(start_ms..end_ms).map(|(_, h)| h) {
                // Same offsets by construction.
                let _ = sum.merge(h);
            }
        }
        sum
    }

    /// The sliding window: the panes of the last `width_ms` of event time (whole panes, at
    /// least one), up to the pane of the newest event; empty before any event.
    pub fn sliding(&self, width_ms: i64) -> Histograms {
        self.sliding_to(self.max_time_ms, width_ms)
    }

    /// The sliding window that ends with the pane of `newest_ms` (another sum's newest event:
    /// a model's answers are windowed as its features are).
    pub fn sliding_to(&self, newest_ms: Option<i64>, width_ms: i64) -> Histograms {
        match newest_ms {
            Some(newest) => {
                let last = window_start(newest, self.pane_ms);
                let panes = (width_ms.max(1) + self.pane_ms - 1) / self.pane_ms;
                let first = last.saturating_sub((panes - 1).saturating_mul(self.pane_ms));
                self.span(first, last.saturating_add(self.pane_ms))
            }
            None => self.span(0, 0),
        }
    }

    /// The tumbling windows `width_ms` wide (aligned on the epoch) that hold events and end
    /// after `after_ms`, closed or not, oldest first.
    pub fn windows(&self, width_ms: i64, after_ms: i64) -> Vec<ClosedWindow> {
        let width = width_ms.max(1);
        let mut starts: Vec<i64> = self.panes.keys().map(|&s| window_start(s, width)).collect();
        starts.dedup();
        starts
            .into_iter()
            .filter(|&s| s.saturating_add(width) > after_ms)
            .map(|s| ClosedWindow {
                start_ms: s,
                end_ms: s.saturating_add(width),
                histograms: self.span(s, s.saturating_add(width)),
            })
            .collect()
    }

    /// The tumbling windows of [`PaneSum::windows`] that are closed: every pane in them is,
    /// in every stream, or they end at or before `watermark_ms` (the wall clock's
    /// lateness-old time: streams gone idle do not hold their windows open). Oldest first.
    pub fn closed(&self, width_ms: i64, after_ms: i64, watermark_ms: i64) -> Vec<ClosedWindow> {
        let closed_before = self.closed_before_ms.unwrap_or(i64::MIN);
        let mut windows = self.windows(width_ms, after_ms);
        windows.retain(|w| w.end_ms <= closed_before || w.end_ms <= watermark_ms);
        windows
    }

    /// Events in the panes that start at `start_ms` or after.
    pub fn rows_from(&self, start_ms: i64) -> u64 {
        self.panes.range(start_ms..).map(|(_, h)| h.rows()).sum()
    }
}

#[cfg(test)]
mod tests;
