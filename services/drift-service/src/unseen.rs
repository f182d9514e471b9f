//! Codes the spec does not list, counted per feature and by value since the reference was
//! loaded: a new category is the most common real drift, and the histograms only show it as
//! a growing "other" bucket. Bounded: at most [`MAX_VALUES`] distinct values per feature (the
//! rest counted together), each value cut to [`MAX_CHARS`] characters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Distinct values kept per feature; later ones are counted in `other_values`.
pub const MAX_VALUES: usize = 100;
/// Characters kept of a value.
pub const MAX_CHARS: usize = 64;

/// One feature's unseen codes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureUnseen {
    /// Events that carried an unseen code.
    pub events: u64,
    /// Value -> events, for the first [`MAX_VALUES`] distinct values.
    pub values: BTreeMap<String, u64>,
    /// Events whose value arrived after [`MAX_VALUES`] distinct ones were kept.
    pub other_values: u64,
}

/// Every feature's unseen codes, in model order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnseenCodes {
    pub features: Vec<FeatureUnseen>,
}

impl UnseenCodes {
    pub fn new(features: usize) -> Self {
        UnseenCodes {
            features: vec![FeatureUnseen::default(); features],
        }
    }

    /// Counts one event's unseen `value` of feature `feature`.
    pub fn add(&mut self, feature: usize, value: &str) {
        let Some(f) = self.features.get_mut(feature) else {
            return;
        };
        f.events += 1;
        let value = cut(value);
        if let Some(n) = f.values.get_mut(value) {
            *n += 1;
        } else if f.values.len() < MAX_VALUES {
            f.values.insert(value.to_string(), 1);
        } else {
            f.other_values += 1;
        }
    }

    /// Adds another partition's counts: values summed, then the most frequent
    /// [`MAX_VALUES`] kept per feature (ties by value) and the rest counted in
    /// `other_values`, so the sum does not depend on the order parts are added in, only on
    /// what each counted.
    pub fn merge(&mut self, other: &UnseenCodes) {
        if self.features.len() < other.features.len() {
            self.features
                .resize(other.features.len(), FeatureUnseen::default());
        }
        for (f, o) in self.features.iter_mut().zip(&other.features) {
            f.events += o.events;
            f.other_values += o.other_values;
            for (value, n) in &o.values {
                *f.values.entry(value.clone()).or_insert(0) += n;
            }
            if f.values.len() > MAX_VALUES {
                let mut values: Vec<(String, u64)> =
                    std::mem::take(&mut f.values).into_iter().collect();
                values.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                f.other_values += values[MAX_VALUES..].iter().map(|(_, n)| n).sum::<u64>();
                values.truncate(MAX_VALUES);
                f.values = values.into_iter().collect();
            }
        }
    }

    /// Events with an unseen code, all features together.
    pub fn events(&self) -> u64 {
        self.features.iter().map(|f| f.events).sum()
    }

    /// Whether these counts fit a model of `features` features (a checkpoint's, say).
    pub fn fits(&self, features: usize) -> bool {
        self.features.len() == features
    }
}

impl FeatureUnseen {
    /// The `n` most frequent values, most frequent first (ties by value).
    pub fn top(&self, n: usize) -> Vec<(&str, u64)> {
        let mut values: Vec<(&str, u64)> =
            self.values.iter().map(|(v, &c)| (v.as_str(), c)).collect();
        values.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        values.truncate(n);
        values
    }
}

/// The first [`MAX_CHARS`] characters of `value`.
fn cut(value: &str) -> &str {
    match value.char_indices().nth(MAX_CHARS) {
        Some((at, _)) => &value[..at],
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_counted_bounded_and_ranked() {
        let mut u = UnseenCodes::new(2);
        for _ in 0..3 {
            u.add(1, "HAIL");
        }
        u.add(1, "SLEET");
        u.add(0, "X");
        u.add(5, "out of range: ignored");
        assert_eq!(u.features[1].top(5), vec![("HAIL", 3), ("SLEET", 1)]);
        assert_eq!(u.events(), 5);
        for i in 0..MAX_VALUES + 10 {
            u.add(0, &format!("v{i}"));
        }
        assert_eq!(u.features[0].values.len(), MAX_VALUES);
        assert_eq!(u.features[0].other_values, 11);
        assert_eq!(u.features[0].events, 1 + MAX_VALUES as u64 + 10);
        let long = "é".repeat(200);
        u.add(1, &long);
        assert!(u.features[1].values.contains_key(&"é".repeat(MAX_CHARS)));
        assert!(u.fits(2) && !u.fits(3));
    }

    #[test]
    fn partitions_counts_add_up_whatever_the_order() {
        let mut a = UnseenCodes::new(1);
        let mut b = UnseenCodes::new(1);
        for i in 0..80 {
            a.add(0, &format!("a{i}"));
            b.add(0, &format!("b{i}"));
            b.add(0, &format!("b{i}"));
        }
        a.add(0, "both");
        b.add(0, "both");
        let mut ab = UnseenCodes::new(1);
        ab.merge(&a);
        ab.merge(&b);
        let mut ba = UnseenCodes::new(1);
        ba.merge(&b);
        ba.merge(&a);
        assert_eq!(ab, ba);
        let f = &ab.features[0];
        assert_eq!(f.events, 81 + 161);
        assert_eq!(f.values.len(), MAX_VALUES);
        assert_eq!(f.values["both"], 2);
        assert_eq!(f.values.values().sum::<u64>() + f.other_values, f.events);
    }
}
