//! Discrete states of a column: what the generator conditions on and what fidelity compares.
//!
//! - A categorical column: one state per frequent code, one "rare" state pooling the other
//!   codes (drawn back with their frequencies), one state for missing values.
//! - A numerical column with few distinct values (whole hours, victim counts): one state per
//!   value; otherwise equal-mass ranges of its sorted values (ties never split), each a pool of
//!   the real values it holds, and one state for missing values.
//!
//! A state draws real values only, so synthetic codes are always valid and numbers always
//! plausible.

use rand::Rng;

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Categorical,
    Numerical,
}

/// Discretisation settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StateParams {
    /// Most states of a column (frequent codes, or value ranges), missing excluded.
    pub max_states: usize,
    /// Equal-mass ranges of a numerical column with more distinct values than `max_states`.
    pub ranges: usize,
}

impl Default for StateParams {
    fn default() -> Self {
        StateParams {
            max_states: 128,
            ranges: 32,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// One value (a code, a whole number, or `NaN` for missing).
    Value(f64),
    /// Real values to draw from (duplicates keep frequencies); sorted, for lookups.
    Pool(Vec<f64>),
}

/// The states of one column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    states: Vec<State>,
    /// Codes of the "rare" pool or upper bounds of the ranges, for [`Column::state_of`].
    lookup: Lookup,
}

#[derive(Debug, Clone, PartialEq)]
enum Lookup {
    /// State of each value (sorted by value); anything else goes to `other`.
    Values {
        values: Vec<(f64, usize)>,
        other: Option<usize>,
    },
    /// Upper bound (inclusive) of each range state, ascending.
    Ranges { upper: Vec<(f64, usize)> },
}

impl Column {
    /// Learns the states of a column of values (`NaN` = missing).
    pub fn fit(values: &[f64], kind: ColumnKind, params: &StateParams) -> Self {
        let mut present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        present.sort_by(f64::total_cmp);
        let has_missing = present.len() < values.len();
        let runs = runs(&present);
        let max = params.max_states.max(2);
        let mut states = Vec::new();
        let lookup = if kind == ColumnKind::Categorical || runs.len() <= max {
            let mut by_count = runs.clone();
            by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.total_cmp(&b.0)));
            let keep = if by_count.len() <= max {
                by_count.len()
            } else {
                max - 1
            };
            let mut values: Vec<(f64, usize)> = by_count[..keep]
                .iter()
                .enumerate()
                .map(|(state, &(v, _))| (v, state))
                .collect();
            states.extend(by_count[..keep].iter().map(|&(v, _)| State::Value(v)));
            let other = (keep < by_count.len()).then(|| {
                let mut pool: Vec<f64> = by_count[keep..]
                    .iter()
                    .flat_map(|&(v, n)| std::iter::repeat_n(v, n))
                    .collect();
                pool.sort_by(f64::total_cmp);
                states.push(State::Pool(pool));
                states.len() - 1
            });
            values.sort_by(|a, b| a.0.total_cmp(&b.0));
            Lookup::Values { values, other }
        } else {
            // Equal-mass ranges whose bounds fall between distinct values.
            let target = present.len().div_ceil(params.ranges.max(1));
            let mut upper = Vec::new();
            let mut start = 0;
            let mut taken = 0;
            for (i, &(v, n)) in runs.iter().enumerate() {
                taken += n;
                if taken - start >= target || i + 1 == runs.len() {
                    upper.push((v, states.len()));
                    states.push(State::Pool(present[start..taken].to_vec()));
                    start = taken;
                }
            }
            Lookup::Ranges { upper }
        };
        if has_missing {
            states.push(State::Value(f64::NAN));
        }
        Column { states, lookup }
    }

    /// Number of states.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// The state of a value; `None` for a value the column cannot place (a missing value in
    /// a column that had none).
    pub fn state_of(&self, value: f64) -> Option<usize> {
        if value.is_nan() {
            return match self.states.last() {
                Some(State::Value(v)) if v.is_nan() => Some(self.states.len() - 1),
                _ => None,
            };
        }
        match &self.lookup {
            Lookup::Values { values, other } => values
                .binary_search_by(|(v, _)| v.total_cmp(&value))
                .ok()
                .map(|i| values[i].1)
                .or(*other),
            Lookup::Ranges { upper } => {
                let i = upper.partition_point(|&(u, _)| u < value);
                Some(upper.get(i).unwrap_or(upper.last()?).1)
            }
        }
    }

    /// A real value of a state.
    pub fn draw(&self, state: usize, rng: &mut impl Rng) -> f64 {
        match &self.states[state] {
            State::Value(v) => *v,
            State::Pool(pool) => pool[rng.gen_range(0..pool.len())],
        }
    }
}

/// (value, count) of each distinct value of sorted values.
fn runs(sorted: &[f64]) -> Vec<(f64, usize)> {
    let mut runs: Vec<(f64, usize)> = Vec::new();
    for &v in sorted {
        match runs.last_mut() {
            Some((last, n)) if *last == v => *n += 1,
            _ => runs.push((v, 1)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn rare_codes_share_a_pool_and_missing_has_its_own_state() {
        let values = [1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 4.0, f64::NAN];
        let params = StateParams {
            max_states: 3,
            ranges: 4,
        };
        let c = Column::fit(&values, ColumnKind::Categorical, &params);
        assert_eq!(c.len(), 4, "1, 2, the pool of 3 and 4, missing");
        assert_eq!(c.state_of(1.0), Some(0));
        assert_eq!(c.state_of(2.0), Some(1));
        assert_eq!(c.state_of(3.0), Some(2));
        assert_eq!(c.state_of(99.0), Some(2), "unseen codes are rare");
        assert_eq!(c.state_of(f64::NAN), Some(3));
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..20 {
            assert!([3.0, 4.0].contains(&c.draw(2, &mut rng)));
        }
        assert!(c.draw(3, &mut rng).is_nan());
    }

    #[test]
    fn numerical_columns_get_equal_mass_ranges_of_real_values() {
        let values: Vec<f64> = (0..1000).map(|i| i as f64 * 0.5).collect();
        let params = StateParams {
            max_states: 10,
            ranges: 4,
        };
        let c = Column::fit(&values, ColumnKind::Numerical, &params);
        assert_eq!(c.len(), 4);
        assert_eq!(c.state_of(0.0), Some(0));
        assert_eq!(c.state_of(124.5), Some(0));
        assert_eq!(c.state_of(125.0), Some(1));
        assert_eq!(c.state_of(499.5), Some(3));
        assert_eq!(c.state_of(1e9), Some(3), "beyond the data: the last range");
        assert_eq!(c.state_of(f64::NAN), None, "no missing value was seen");
        let mut rng = StdRng::seed_from_u64(2);
        let v = c.draw(1, &mut rng);
        assert!((125.0..250.0).contains(&v) && values.contains(&v));
        // Few distinct values: one state each.
        let hours: Vec<f64> = (0..240).map(|i| (i % 24) as f64).collect();
        let c = Column::fit(&hours, ColumnKind::Numerical, &StateParams::default());
        assert_eq!(c.len(), 24);
        assert_eq!(c.state_of(5.0).map(|s| c.draw(s, &mut rng)), Some(5.0));
    }

    #[test]
    fn ties_never_split_a_range() {
        let mut values = vec![7.0; 600];
        values.extend((0..400).map(|i| i as f64 + 100.0));
        let params = StateParams {
            max_states: 10,
            ranges: 5,
        };
        let c = Column::fit(&values, ColumnKind::Numerical, &params);
        let s = c.state_of(7.0).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        assert!((0..50).all(|_| c.draw(s, &mut rng) == 7.0));
    }
}
