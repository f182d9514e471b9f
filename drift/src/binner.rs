//! Fast binning of whole events: the per-event hot path of the drift windows.
//!
//! [`FeatureProfile::bin`] is the definition; a [`Binner`] is the same function compiled for
//! speed (a lookup table for whole-number codes, a binary search otherwise), and the tests hold
//! the two equal on every kind of value.

use crate::profile::{FeatureProfile, Profile};

/// Widest span of whole-number codes served by a lookup table (larger vocabularies use a binary
/// search).
const TABLE_SPAN: i64 = 4096;

/// Bins every feature of an event with a profile's edges and vocabularies.
#[derive(Debug, Clone)]
pub struct Binner {
    features: Vec<FeatureBinner>,
    /// Start of each feature's bins in a flat histogram; one more entry for the end.
    offsets: Vec<usize>,
}

#[derive(Debug, Clone)]
pub(crate) enum FeatureBinner {
    /// Whole-number codes in `[min, min + table.len())`.
    Table {
        min: i64,
        table: Vec<u16>,
        other: u16,
        missing: u16,
    },
    /// Codes sorted ascending, with their bins.
    Sorted {
        codes: Vec<(f64, u16)>,
        other: u16,
        missing: u16,
    },
    Edges {
        edges: Vec<f64>,
    },
}

impl FeatureBinner {
    pub(crate) fn new(profile: &FeatureProfile) -> Self {
        match profile {
            FeatureProfile::Categorical { codes, .. } => {
                let other = codes.len() as u16;
                let missing = other + 1;
                let whole = codes.iter().all(|c| c.fract() == 0.0 && c.abs() < 1e15);
                let min = codes.iter().copied().fold(f64::INFINITY, f64::min);
                let max = codes.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if whole && !codes.is_empty() && (max - min) < TABLE_SPAN as f64 {
                    let min = min as i64;
                    let mut table = vec![other; (max as i64 - min + 1) as usize];
                    // The first occurrence wins, as in `FeatureProfile::bin`.
                    for (bin, &code) in codes.iter().enumerate().rev() {
                        table[(code as i64 - min) as usize] = bin as u16;
                    }
                    FeatureBinner::Table {
                        min,
                        table,
                        other,
                        missing,
                    }
                } else {
                    let mut sorted: Vec<(f64, u16)> = codes
                        .iter()
                        .enumerate()
                        .map(|(bin, &c)| (c, bin as u16))
                        .collect();
                    sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    sorted.dedup_by(|later, first| later.0 == first.0);
                    FeatureBinner::Sorted {
                        codes: sorted,
                        other,
                        missing,
                    }
                }
            }
            FeatureProfile::Numerical { edges, .. } => FeatureBinner::Edges {
                edges: edges.clone(),
            },
        }
    }

    #[inline]
    pub(crate) fn bin(&self, value: f64) -> u16 {
        match self {
            FeatureBinner::Table {
                min,
                table,
                other,
                missing,
            } => {
                if value.is_nan() {
                    return *missing;
                }
                // In f64: a huge value must not overflow an integer. `min` is whole, so
                // `value` is whole exactly when `i` is (checked without `fract`, a call to
                // `trunc` on targets without SSE4.1: this runs for every value).
                let i = value - *min as f64;
                if i >= 0.0 && i < table.len() as f64 && (i as usize) as f64 == i {
                    table[i as usize]
                } else {
                    *other
                }
            }
            FeatureBinner::Sorted {
                codes,
                other,
                missing,
            } => {
                if value.is_nan() {
                    return *missing;
                }
                match codes.binary_search_by(|(c, _)| c.total_cmp(&value)) {
                    Ok(i) => codes[i].1,
                    // -0.0 and 0.0 are one code for `==` but not for `total_cmp`.
                    Err(_) if value == 0.0 => codes
                        .iter()
                        .find(|(c, _)| *c == 0.0)
                        .map_or(*other, |(_, b)| *b),
                    Err(_) => *other,
                }
            }
            FeatureBinner::Edges { edges } => {
                let n = edges.len() - 1;
                if value.is_nan() {
                    (n + 2) as u16
                } else if value < edges[0] {
                    0
                } else if value > edges[n] {
                    (n + 1) as u16
                } else {
                    (1 + edges[1..].partition_point(|&e| e <= value).min(n - 1)) as u16
                }
            }
        }
    }
}

impl Binner {
    /// Compiles the binning of a validated profile.
    pub fn new(profile: &Profile) -> Self {
        let mut offsets = Vec::with_capacity(profile.features.len() + 1);
        let mut total = 0;
        for feature in &profile.features {
            offsets.push(total);
            total += feature.bins();
        }
        offsets.push(total);
        Binner {
            features: profile.features.iter().map(FeatureBinner::new).collect(),
            offsets,
        }
    }

    /// Number of features of an event.
    pub fn features(&self) -> usize {
        self.features.len()
    }

    /// Where each feature's bins start in a flat histogram, then the total number of bins.
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }

    /// The bin of one feature's value; equal to [`FeatureProfile::bin`].
    #[inline]
    pub fn bin(&self, feature: usize, value: f64) -> u16 {
        self.features[feature].bin(value)
    }

    /// Bins an event (one value per feature, model order, `NaN` = missing) into `out`.
    #[inline]
    pub fn bin_row(&self, row: &[f64], out: &mut [u16]) {
        debug_assert_eq!(row.len(), self.features.len());
        for ((binner, &value), slot) in self.features.iter().zip(row).zip(out.iter_mut()) {
            *slot = binner.bin(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Kind, ProfileParams};
    use vigie_model::Matrix;

    #[test]
    fn the_binner_agrees_with_the_profile_on_every_kind_of_value() {
        let params = ProfileParams {
            max_categories: 4,
            ..Default::default()
        };
        let kinds = [
            Kind::Categorical {
                codes: Some(vec![3.0, 1.0, 2.0, 1.0]),
            },
            Kind::Categorical { codes: None },
            Kind::Categorical {
                codes: Some(vec![0.5, -2.0, 1e9]),
            },
            Kind::Numerical,
            Kind::Numerical,
        ];
        let rows = 200;
        let data: Vec<f64> = (0..rows)
            .flat_map(|i| {
                let i = i as f64;
                [
                    i % 4.0,
                    (i * 7.0) % 13.0 + 100.0,
                    [0.5, -2.0, 1e9][i as usize % 3],
                    i * 0.37 - 20.0,
                    2021.0,
                ]
            })
            .collect();
        let m = Matrix::from_row_major(data, rows, 5).unwrap();
        let empty = Matrix::from_row_major(vec![], 0, 5).unwrap();
        let profile = Profile::build(&["a", "b", "c", "d", "e"], &kinds, &m, &empty, &params);
        let binner = Binner::new(&profile);
        let probes = [
            f64::NAN,
            0.0,
            -0.0,
            0.5,
            1.0,
            1.5,
            2.0,
            3.0,
            4.0,
            -2.0,
            1e9,
            1e300,
            -1e300,
            100.0,
            106.0,
            112.0,
            4095.0,
            -20.0,
            -19.63,
            50.0,
            53.63,
            2021.0,
            2021.5,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for (f, feature) in profile.features.iter().enumerate() {
            for &v in &probes {
                assert_eq!(
                    binner.bin(f, v) as usize,
                    feature.bin(v),
                    "feature {} value {v}",
                    feature.name()
                );
            }
            for row in m.iter_rows() {
                assert_eq!(binner.bin(f, row[f]) as usize, feature.bin(row[f]));
            }
        }
        let mut out = [0u16; 5];
        binner.bin_row(m.row(3), &mut out);
        assert_eq!(
            out.iter().map(|&b| b as usize).collect::<Vec<_>>(),
            (0..5)
                .map(|f| profile.features[f].bin(m.row(3)[f]))
                .collect::<Vec<_>>()
        );
        assert_eq!(binner.offsets().len(), 6);
        assert_eq!(
            binner.offsets()[5],
            profile.features.iter().map(|f| f.bins()).sum::<usize>()
        );
    }
}
