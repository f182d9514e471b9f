//! A tree-augmented Bayesian network over the discretised columns, sampled ancestrally.
//!
//! Structure (Chow-Liu, conditioned on the target): every column's states are counted jointly
//! with every other column's and the target's; the maximum spanning tree of the conditional
//! mutual information I(Xi; Xj | Y) gives each column one parent column. Sampling draws the
//! target from its prior, then each column in tree order from P(column | parent, target), then
//! a real value of the drawn state. So every pair of columns joined by the tree, and every
//! column with the target, keeps its joint distribution; other pairs keep what flows through
//! the tree (a commune follows its department, a seat follows the user category, severity
//! follows both). Without a target, the tree is Chow-Liu's on plain mutual information.
//!
//! Tables hold observed counts only (no smoothing): ancestral sampling only reaches observed
//! (parent, target) contexts, so no synthetic row pairs a child with a parent state it never
//! had in the data.

use rand::{Rng, SeedableRng, rngs::StdRng};
use vigie_model::Matrix;

use crate::states::{Column, ColumnKind, StateParams};

/// Why a generator cannot be fitted.
#[derive(Debug, Clone, PartialEq)]
pub enum FitError {
    NoRows,
    /// `kinds` or the target do not match the data's shape.
    Shape(String),
    /// A target value that is not a class.
    Target(String),
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FitError::NoRows => f.write_str("no row to learn from"),
            FitError::Shape(m) | FitError::Target(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for FitError {}

/// Settings of [`Generator::fit`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GeneratorParams {
    pub states: StateParams,
}

/// Cumulative counts of a column's states in each (parent state, target class) context.
#[derive(Debug, Clone)]
struct Table {
    /// Parent column, `None` for the root.
    parent: Option<usize>,
    /// `contexts * states` cumulative counts; context = parent_state * classes + class.
    cumulative: Vec<u32>,
    states: usize,
}

impl Table {
    fn draw(&self, context: usize, rng: &mut impl Rng) -> Option<usize> {
        let row = &self.cumulative[context * self.states..(context + 1) * self.states];
        let total = *row.last()?;
        if total == 0 {
            return None;
        }
        let ticket = rng.gen_range(0..total);
        Some(row.partition_point(|&c| c <= ticket))
    }
}

/// Synthetic rows (and targets, when fitted with one).
#[derive(Debug, Clone)]
pub struct Sample {
    pub x: Matrix,
    pub y: Option<Vec<f64>>,
}

/// A seeded generator of rows that keeps the dependencies between columns and with the target.
#[derive(Debug, Clone)]
pub struct Generator {
    columns: Vec<Column>,
    /// Target classes (one dummy class without a target).
    classes: Vec<f64>,
    class_cumulative: Vec<u32>,
    has_target: bool,
    /// Columns in sampling order (a parent before its children).
    order: Vec<usize>,
    tables: Vec<Table>,
    /// P(column | class), used if a context was never observed.
    fallback: Vec<Table>,
}

/// Most target classes (a classification target; a regression target would be a column).
const MAX_CLASSES: usize = 64;

impl Generator {
    /// Learns the network from rows `x` (`NaN` = missing), the kind of each column, and
    /// optionally the target of each row (class labels as numbers).
    pub fn fit(
        x: &Matrix,
        kinds: &[ColumnKind],
        y: Option<&[f64]>,
        params: &GeneratorParams,
    ) -> Result<Self, FitError> {
        if x.rows() == 0 {
            return Err(FitError::NoRows);
        }
        if kinds.len() != x.cols() {
            return Err(FitError::Shape(format!(
                "{} column kinds for {} columns",
                kinds.len(),
                x.cols()
            )));
        }
        let n = x.rows();
        let (classes, class_of) = match y {
            Some(y) => {
                if y.len() != n {
                    return Err(FitError::Shape(format!("{} targets for {n} rows", y.len())));
                }
                let mut classes: Vec<f64> = y.to_vec();
                if classes.iter().any(|v| !v.is_finite()) {
                    return Err(FitError::Target("a target value is missing".into()));
                }
                classes.sort_by(f64::total_cmp);
                classes.dedup();
                if classes.len() > MAX_CLASSES {
                    return Err(FitError::Target(format!(
                        "{} distinct target values: more than {MAX_CLASSES} classes",
                        classes.len()
                    )));
                }
                let of: Vec<usize> = y
                    .iter()
                    .map(|v| classes.partition_point(|c| c < v))
                    .collect();
                (classes, of)
            }
            None => (vec![0.0], vec![0; n]),
        };
        let k = classes.len();
        let cols = x.cols();
        let columns: Vec<Column> = (0..cols)
            .map(|c| {
                let values: Vec<f64> = x.iter_rows().map(|r| r[c]).collect();
                Column::fit(&values, kinds[c], &params.states)
            })
            .collect();
        // State of every cell, column-major for the pair counts.
        let states: Vec<Vec<u16>> = (0..cols)
            .map(|c| {
                x.iter_rows()
                    .map(|r| columns[c].state_of(r[c]).unwrap_or(0) as u16)
                    .collect()
            })
            .collect();

        // Conditional mutual information of every pair, then Prim's maximum spanning tree.
        let mut weight = vec![0.0f64; cols * cols];
        for i in 0..cols {
            for j in i + 1..cols {
                let w = conditional_mutual_information(
                    &states[i],
                    columns[i].len(),
                    &states[j],
                    columns[j].len(),
                    &class_of,
                    k,
                );
                weight[i * cols + j] = w;
                weight[j * cols + i] = w;
            }
        }
        let mut parent: Vec<Option<usize>> = vec![None; cols];
        let mut order = Vec::with_capacity(cols);
        if cols > 0 {
            let mut in_tree = vec![false; cols];
            let mut best: Vec<(f64, Option<usize>)> = vec![(f64::NEG_INFINITY, None); cols];
            let mut next = 0;
            for _ in 0..cols {
                in_tree[next] = true;
                order.push(next);
                parent[next] = best[next].1;
                for c in 0..cols {
                    if !in_tree[c] && weight[next * cols + c] > best[c].0 {
                        best[c] = (weight[next * cols + c], Some(next));
                    }
                }
                match (0..cols)
                    .filter(|&c| !in_tree[c])
                    .max_by(|&a, &b| best[a].0.total_cmp(&best[b].0).then(b.cmp(&a)))
                {
                    Some(c) => next = c,
                    None => break,
                }
            }
        }

        let mut class_counts = vec![0u32; k];
        for &c in &class_of {
            class_counts[c] += 1;
        }
        let tables = (0..cols)
            .map(|c| {
                let contexts = parent[c].map_or(1, |p| columns[p].len()) * k;
                let s = columns[c].len();
                let mut counts = vec![0u32; contexts * s];
                for row in 0..n {
                    let parent_state = parent[c].map_or(0, |p| states[p][row] as usize);
                    let context = parent_state * k + class_of[row];
                    counts[context * s + states[c][row] as usize] += 1;
                }
                table(parent[c], counts, s)
            })
            .collect();
        let fallback = (0..cols)
            .map(|c| {
                let s = columns[c].len();
                let mut counts = vec![0u32; k * s];
                for row in 0..n {
                    counts[class_of[row] * s + states[c][row] as usize] += 1;
                }
                table(None, counts, s)
            })
            .collect();
        Ok(Generator {
            columns,
            classes,
            class_cumulative: cumulate(&class_counts),
            has_target: y.is_some(),
            order,
            tables,
            fallback,
        })
    }

    /// The parent of each column in the learnt tree (`None` for the root).
    pub fn parents(&self) -> Vec<Option<usize>> {
        self.tables.iter().map(|t| t.parent).collect()
    }

    /// `n` synthetic rows, the same for the same seed.
    pub fn sample(&self, n: usize, seed: u64) -> Sample {
        let mut rng = StdRng::seed_from_u64(seed);
        let cols = self.columns.len();
        let k = self.classes.len();
        let mut data = vec![0.0; n * cols];
        let mut y = Vec::with_capacity(if self.has_target { n } else { 0 });
        let mut drawn = vec![0usize; cols];
        let total = *self.class_cumulative.last().unwrap_or(&1);
        for row in data.chunks_mut(cols.max(1)).take(n) {
            let ticket = rng.gen_range(0..total.max(1));
            let class = self
                .class_cumulative
                .partition_point(|&c| c <= ticket)
                .min(k - 1);
            for &c in &self.order {
                let table = &self.tables[c];
                let context = table.parent.map_or(0, |p| drawn[p]) * k + class;
                let state = table
                    .draw(context, &mut rng)
                    .or_else(|| self.fallback[c].draw(class, &mut rng))
                    .unwrap_or(0);
                drawn[c] = state;
                if cols > 0 {
                    row[c] = self.columns[c].draw(state, &mut rng);
                }
            }
            if self.has_target {
                y.push(self.classes[class]);
            }
        }
        Sample {
            x: Matrix::from_row_major(data, n, cols).expect("n rows of every column"),
            y: self.has_target.then_some(y),
        }
    }
}

fn cumulate(counts: &[u32]) -> Vec<u32> {
    counts
        .iter()
        .scan(0u32, |acc, &c| {
            *acc += c;
            Some(*acc)
        })
        .collect()
}

fn table(parent: Option<usize>, counts: Vec<u32>, states: usize) -> Table {
    let mut cumulative = counts;
    for row in cumulative.chunks_mut(states.max(1)) {
        let mut acc = 0;
        for c in row.iter_mut() {
            acc += *c;
            *c = acc;
        }
    }
    Table {
        parent,
        cumulative,
        states,
    }
}

/// I(A; B | C) in nats, from paired state sequences.
pub(crate) fn conditional_mutual_information(
    a: &[u16],
    sa: usize,
    b: &[u16],
    sb: usize,
    c: &[usize],
    sc: usize,
) -> f64 {
    let n = a.len() as f64;
    let mut joint = vec![0u32; sa * sb * sc];
    let mut ac = vec![0u32; sa * sc];
    let mut bc = vec![0u32; sb * sc];
    let mut cc = vec![0u32; sc];
    for i in 0..a.len() {
        let (x, y, z) = (a[i] as usize, b[i] as usize, c[i]);
        joint[(z * sa + x) * sb + y] += 1;
        ac[z * sa + x] += 1;
        bc[z * sb + y] += 1;
        cc[z] += 1;
    }
    let mut mi = 0.0;
    for z in 0..sc {
        for x in 0..sa {
            let nxz = ac[z * sa + x];
            if nxz == 0 {
                continue;
            }
            for y in 0..sb {
                let nxyz = joint[(z * sa + x) * sb + y];
                if nxyz == 0 {
                    continue;
                }
                let nyz = bc[z * sb + y] as f64;
                let nxyz = nxyz as f64;
                mi += nxyz / n * (nxyz * cc[z] as f64 / (nxz as f64 * nyz)).ln();
            }
        }
    }
    mi.max(0.0)
}

#[cfg(test)]
mod tests;
