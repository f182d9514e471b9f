//! Drift statistics: the reference profile of a model's inputs, histograms of new data binned
//! the same way, and the distances between them. Pure functions: no IO, no async, no knowledge
//! of Kafka, HTTP or databases.
//!
//! # Binning
//! - A categorical feature keeps a vocabulary (its declared codes, or the most frequent codes of
//!   the reference when there are too many) plus an "other" bucket (unseen or rare codes) and a
//!   "missing" bucket.
//! - A numerical feature gets equal-width bins over the central range of the reference (by
//!   default from its 1st to its 99th percentile), plus underflow, overflow and missing bins; a
//!   whole-number feature with a short range gets one bin per value. Equal-width bins keep the
//!   reference's shape, so the histogram correlation of two samples of one distribution is close
//!   to 1 (with equal-mass bins every reference bin would hold the same share and the
//!   correlation would be noise).
//!
//! A current window is always binned with the reference's own edges ([`FeatureProfile::bin`],
//! compiled for speed by [`Binner`]), and histograms are plain counts: partial windows add up
//! exactly ([`Histograms::merge`]).
//!
//! # Modules
//! - [`profile`]: reference profiles, versioned and serialisable, stored with each model version.
//! - [`window`]: histograms, the sliding window of the last N events, tumbling event-time windows.
//! - [`stats`]: total variation, histogram correlation, PSI, Jensen-Shannon, normed Wasserstein,
//!   chi-square and Kolmogorov-Smirnov p-values, each defined on degenerate inputs.
//! - [`null`]: each feature's statistic when nothing drifted, by window size: the noise
//!   thresholds.
//! - [`compare`]: decision rules per feature (beyond the noise threshold and the effect floor)
//!   and the dataset score.
//! - [`report`]: the HTML page of a comparison (self-contained, works offline).

pub mod binner;
pub mod compare;
pub mod null;
pub mod profile;
pub mod report;
pub mod stats;
pub mod window;

pub use binner::Binner;
pub use compare::{
    BadRule, Cadence, DriftReport, DriftRules, FeatureDrift, Rule, Statistic, compare,
    compare_after, compare_at, with_noise_fields_form,
};
pub use null::{NullModel, NullParams};
pub use profile::{
    FeatureProfile, Kind, MAX_BINS, MalformedProfile, PROFILE_VERSION, Profile, ProfileParams,
};
pub use stats::{
    Statistics, chi_square_p, histogram_correlation, jensen_shannon, ks_p, psi, total_variation,
    wasserstein_normed,
};
pub use window::{BinsMismatch, ClosedWindow, Histograms, PaneSum, Panes};

#[cfg(test)]
mod tests;
