//! How faithful synthetic rows are to real ones: per-column total-variation distance and, for
//! every pair of columns (the target included), Cramér's V of the real rows against the
//! synthetic ones. Both sides are discretised with states learnt on the real rows.
//! (Train-on-synthetic, test-on-real needs a model: `vigie synthetic` adds it.)

use serde::Serialize;
use vigie_model::Matrix;

use crate::states::{Column, ColumnKind, StateParams};

/// Discretisation of fidelity measures: few states, so that Cramér's V of a many-coded column
/// is not mostly sampling noise.
const FIDELITY_STATES: StateParams = StateParams {
    max_states: 32,
    ranges: 10,
};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnFidelity {
    pub name: String,
    pub tvd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairFidelity {
    pub a: String,
    pub b: String,
    pub real: f64,
    pub synthetic: f64,
}

/// The fidelity of synthetic rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fidelity {
    pub real_rows: usize,
    pub synthetic_rows: usize,
    pub columns: Vec<ColumnFidelity>,
    pub mean_tvd: f64,
    pub max_tvd: f64,
    /// Every pair, the most different first.
    pub pairs: Vec<PairFidelity>,
    /// Mean and largest |V real - V synthetic| over the pairs.
    pub mean_association_gap: f64,
    pub max_association_gap: f64,
    /// Mean and largest V of the real pairs (what an independent sampler would lose).
    pub mean_real_association: f64,
}

/// Compares `synthetic` rows (and targets) with `real` ones; `names` and `kinds` follow the
/// columns, `target` names the target when both sides have one.
pub fn fidelity(
    names: &[&str],
    kinds: &[ColumnKind],
    real: (&Matrix, Option<&[f64]>),
    synthetic: (&Matrix, Option<&[f64]>),
    target: &str,
) -> Fidelity {
    assert_eq!(names.len(), real.0.cols(), "one name per column");
    assert_eq!(synthetic.0.cols(), real.0.cols(), "the same columns");
    let mut columns: Vec<(String, Column, Vec<u16>, Vec<u16>)> = Vec::new();
    for (c, (&name, &kind)) in names.iter().zip(kinds).enumerate() {
        let r: Vec<f64> = real.0.iter_rows().map(|row| row[c]).collect();
        let s: Vec<f64> = synthetic.0.iter_rows().map(|row| row[c]).collect();
        columns.push(discretise(name, kind, &r, &s));
    }
    if let (Some(ry), Some(sy)) = (real.1, synthetic.1) {
        columns.push(discretise(target, ColumnKind::Categorical, ry, sy));
    }
    let column_fidelity: Vec<ColumnFidelity> = columns
        .iter()
        .map(|(name, column, r, s)| ColumnFidelity {
            name: name.clone(),
            tvd: vigie_drift::total_variation(
                &counts(r, column.len() + 1),
                &counts(s, column.len() + 1),
            ),
        })
        .collect();
    let mut pairs = Vec::new();
    for i in 0..columns.len() {
        for j in i + 1..columns.len() {
            let (a, b) = (&columns[i], &columns[j]);
            pairs.push(PairFidelity {
                a: a.0.clone(),
                b: b.0.clone(),
                real: cramers_v(&a.2, a.1.len() + 1, &b.2, b.1.len() + 1),
                synthetic: cramers_v(&a.3, a.1.len() + 1, &b.3, b.1.len() + 1),
            });
        }
    }
    let gap = |p: &PairFidelity| (p.real - p.synthetic).abs();
    pairs.sort_by(|x, y| gap(y).total_cmp(&gap(x)));
    let mean = |v: &mut dyn Iterator<Item = f64>, n: usize| {
        if n == 0 {
            0.0
        } else {
            v.sum::<f64>() / n as f64
        }
    };
    Fidelity {
        real_rows: real.0.rows(),
        synthetic_rows: synthetic.0.rows(),
        mean_tvd: mean(
            &mut column_fidelity.iter().map(|c| c.tvd),
            column_fidelity.len(),
        ),
        max_tvd: column_fidelity.iter().map(|c| c.tvd).fold(0.0, f64::max),
        mean_association_gap: mean(&mut pairs.iter().map(gap), pairs.len()),
        max_association_gap: pairs.iter().map(gap).fold(0.0, f64::max),
        mean_real_association: mean(&mut pairs.iter().map(|p| p.real), pairs.len()),
        columns: column_fidelity,
        pairs,
    }
}

/// States learnt on the real values; a value they cannot place gets an extra last state.
fn discretise(
    name: &str,
    kind: ColumnKind,
    real: &[f64],
    synthetic: &[f64],
) -> (String, Column, Vec<u16>, Vec<u16>) {
    let column = Column::fit(real, kind, &FIDELITY_STATES);
    let extra = column.len();
    let states = |values: &[f64]| -> Vec<u16> {
        values
            .iter()
            .map(|&v| column.state_of(v).unwrap_or(extra) as u16)
            .collect()
    };
    let (r, s) = (states(real), states(synthetic));
    (name.to_string(), column, r, s)
}

fn counts(states: &[u16], n: usize) -> Vec<u64> {
    let mut c = vec![0; n];
    for &s in states {
        c[s as usize] += 1;
    }
    c
}

/// Cramér's V of two paired state sequences: sqrt(chi2 / (n (min(r, c) - 1))), over the
/// states that occur; 0 when either side has a single state.
pub fn cramers_v(a: &[u16], sa: usize, b: &[u16], sb: usize) -> f64 {
    let n = a.len();
    if n == 0 {
        return 0.0;
    }
    let mut joint = vec![0u64; sa * sb];
    let (mut ra, mut rb) = (vec![0u64; sa], vec![0u64; sb]);
    for (&x, &y) in a.iter().zip(b) {
        joint[x as usize * sb + y as usize] += 1;
        ra[x as usize] += 1;
        rb[y as usize] += 1;
    }
    let (used_a, used_b) = (
        ra.iter().filter(|&&c| c > 0).count(),
        rb.iter().filter(|&&c| c > 0).count(),
    );
    let k = used_a.min(used_b);
    if k < 2 {
        return 0.0;
    }
    let n = n as f64;
    let mut chi2 = 0.0;
    for x in 0..sa {
        if ra[x] == 0 {
            continue;
        }
        for y in 0..sb {
            if rb[y] == 0 {
                continue;
            }
            let expected = ra[x] as f64 * rb[y] as f64 / n;
            chi2 += (joint[x * sb + y] as f64 - expected).powi(2) / expected;
        }
    }
    (chi2 / (n * (k - 1) as f64)).sqrt().min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Generator, GeneratorParams, MarginalSampler};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    #[test]
    fn cramers_v_of_copies_and_independent_columns() {
        let a: Vec<u16> = (0..1000).map(|i| (i % 3) as u16).collect();
        let independent: Vec<u16> = (0..1000).map(|i| ((i / 3) % 2) as u16).collect();
        assert!((cramers_v(&a, 3, &a, 3) - 1.0).abs() < 1e-12);
        assert!(cramers_v(&a, 3, &independent, 2) < 0.01);
        assert_eq!(cramers_v(&a, 3, &vec![0; 1000], 1), 0.0);
    }

    #[test]
    fn the_network_keeps_associations_that_independent_resampling_loses() {
        let mut rng = StdRng::seed_from_u64(5);
        let rows = 10_000;
        let mut data = Vec::new();
        let mut y = Vec::new();
        for _ in 0..rows {
            let a = rng.gen_range(0..5) as f64;
            let b = if rng.gen_bool(0.8) { a } else { 9.0 };
            let x = a * 3.0 + rng.r#gen::<f64>();
            data.extend([a, b, x]);
            y.push(if a > 2.0 { 1.0 } else { 0.0 });
        }
        let real = Matrix::from_row_major(data, rows, 3).unwrap();
        let kinds = [
            ColumnKind::Categorical,
            ColumnKind::Categorical,
            ColumnKind::Numerical,
        ];
        let g = Generator::fit(&real, &kinds, Some(&y), &GeneratorParams::default()).unwrap();
        let s = g.sample(rows, 1);
        let names = ["a", "b", "x"];
        let ours = fidelity(
            &names,
            &kinds,
            (&real, Some(&y)),
            (&s.x, s.y.as_deref()),
            "y",
        );
        let naive = MarginalSampler::fit(&real).unwrap().sample(rows, 1);
        let theirs = fidelity(&names, &kinds, (&real, None), (&naive, None), "y");
        assert_eq!(ours.pairs.len(), 6, "3 columns and the target");
        assert!(ours.max_tvd < 0.03, "{ours:?}");
        assert!(theirs.max_tvd < 0.03, "marginals are fine either way");
        assert!(ours.max_association_gap < 0.05, "{:?}", ours.pairs[0]);
        assert!(theirs.max_association_gap > 0.5, "{:?}", theirs.pairs[0]);
    }
}
