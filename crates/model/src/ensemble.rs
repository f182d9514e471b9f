//! A flat tree ensemble: the one inference structure behind every fitted algorithm.

use serde::{Deserialize, Serialize};

/// How many trees are walked side by side: their node loads overlap instead of waiting on
/// each other, which is what bounds the speed of tree inference.
const LANES: usize = 16;

/// A tree node as an algorithm describes it, the input of [`TreeEnsemble::push_tree`]: an
/// internal node sends a row to `left` when `row[feature] < threshold`, to `right` otherwise, and
/// to `missing` (which may be `left`, `right` or a node of its own) when the value is `NaN`.
/// Child indices are positions in the tree's node list, the root first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NodeSpec {
    Leaf(f64),
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
        missing: usize,
    },
}

/// A stored node, 16 bytes so that a few hundred trees stay in cache.
///
/// The children of a split sit side by side: left at `children`, right at `children + 1`, and a
/// missing-value child of its own at `children + 2` (positions relative to the tree's root). A
/// leaf reads the feature slot `n_features`, which always holds `NaN`, and points to itself:
/// stepping from a leaf stays on it, so several trees can be walked in lock step without
/// branching on whether each one has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The split threshold, or the leaf value.
    value: f64,
    /// Position of the left child (of itself for a leaf), relative to the tree's root.
    children: u32,
    /// The feature split on; `n_features` for a leaf.
    feature: u16,
    /// Where a `NaN` goes: 0 = left child, 1 = right child, 2 = its own child.
    missing: u8,
}

/// How the leaf values of all trees become the model's answer: a probability of the positive
/// class, or an estimate of a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// `sigmoid(base + sum of leaves)`: gradient boosting on the log-loss.
    Logit,
    /// `mean of leaves`: a forest whose leaves hold the share of positives.
    Mean,
    /// `base + sum of leaves`: gradient boosting on the squared loss (regression).
    Identity,
}

/// Trees stored one after the other in a single node array; `roots[t]` is where tree `t` starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeEnsemble {
    n_features: usize,
    link: Link,
    base: f64,
    roots: Vec<u32>,
    nodes: Vec<Node>,
    /// The form predictions walk, derived from the nodes on first use; never stored.
    #[serde(skip)]
    compact: CompactCache,
}

/// The compact form of an ensemble once built (`None` inside: the ensemble does not fit it).
/// Being derived from the rest, it takes no part in comparisons.
#[derive(Debug, Clone, Default)]
struct CompactCache(std::sync::OnceLock<Option<Compact>>);

impl PartialEq for CompactCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Why a tree ensemble read from outside is not usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("malformed tree ensemble: {0}")]
pub struct MalformedEnsemble(String);

impl TreeEnsemble {
    /// An empty ensemble over `n_features` features (at most 65,534).
    pub fn new(n_features: usize, link: Link, base: f64) -> Self {
        assert!(n_features < u16::MAX as usize, "at most 65,534 features");
        TreeEnsemble {
            n_features,
            link,
            base,
            roots: Vec::new(),
            nodes: Vec::new(),
            compact: CompactCache::default(),
        }
    }

    fn leaf(&self, value: f64, position: usize) -> Node {
        Node {
            value,
            children: u32::try_from(position).expect("fewer than 4 billion nodes"),
            feature: self.n_features as u16,
            missing: 0,
        }
    }

    /// Appends a tree given as its nodes, the root first. Nodes no path reaches are dropped.
    ///
    /// Panics when a child index is out of the list, a node is reached twice or a feature is out
    /// of range: the algorithms of this crate always give proper trees.
    pub fn push_tree(&mut self, nodes: &[NodeSpec]) {
        self.compact = CompactCache::default();
        let start = self.nodes.len();
        self.roots
            .push(u32::try_from(start).expect("fewer than 4 billion nodes"));
        // Breadth-first relayout: the children of each split get consecutive slots.
        let mut queue = std::collections::VecDeque::from([(0usize, start)]);
        self.nodes.push(self.leaf(0.0, 0));
        let mut seen = vec![false; nodes.len()];
        while let Some((source, slot)) = queue.pop_front() {
            assert!(
                !std::mem::replace(&mut seen[source], true),
                "node {source} reached twice"
            );
            self.nodes[slot] = match nodes[source] {
                NodeSpec::Leaf(value) => self.leaf(value, slot - start),
                NodeSpec::Split {
                    feature,
                    threshold,
                    left,
                    right,
                    missing,
                } => {
                    assert!(feature < self.n_features, "feature {feature} out of range");
                    let first = self.nodes.len();
                    let mut children = vec![left, right];
                    let missing = if missing == left {
                        0
                    } else if missing == right {
                        1
                    } else {
                        children.push(missing);
                        2
                    };
                    for (k, child) in children.into_iter().enumerate() {
                        self.nodes.push(self.leaf(0.0, 0));
                        queue.push_back((child, first + k));
                    }
                    Node {
                        value: threshold,
                        children: u32::try_from(first - start).expect("fewer than 4 billion nodes"),
                        feature: feature as u16,
                        missing,
                    }
                }
            };
        }
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    pub fn link(&self) -> Link {
        self.link
    }

    /// Checks every index and feature number, so that prediction cannot go out of bounds or
    /// loop on an ensemble read from a file.
    pub fn validate(&self) -> Result<(), MalformedEnsemble> {
        if self.roots.is_empty() {
            return Err(MalformedEnsemble("no tree".into()));
        }
        if !self.base.is_finite() {
            return Err(MalformedEnsemble("the base value is not finite".into()));
        }
        if self.n_features >= u16::MAX as usize {
            return Err(MalformedEnsemble(format!(
                "{} features, at most 65,534",
                self.n_features
            )));
        }
        let total = self.nodes.len();
        for (t, (start, end)) in self.tree_spans().enumerate() {
            if start >= end || end > total {
                return Err(MalformedEnsemble(format!("tree {t} has no node")));
            }
            let size = end - start;
            for (i, node) in self.nodes[start..end].iter().enumerate() {
                let bad =
                    |what: String| Err(MalformedEnsemble(format!("tree {t} node {i}: {what}")));
                let feature = node.feature as usize;
                if feature == self.n_features {
                    if !node.value.is_finite() {
                        return bad("leaf value is not finite".into());
                    }
                    if node.children as usize != i || node.missing != 0 {
                        return bad("a leaf must point to itself".into());
                    }
                    continue;
                }
                if feature > self.n_features {
                    return bad(format!(
                        "feature {feature} out of {} features",
                        self.n_features
                    ));
                }
                if node.missing > 2 || node.value.is_nan() {
                    return bad("invalid split".into());
                }
                // Children come after their parent (so no cycle) and inside the tree.
                let first = node.children as usize;
                let last = first + if node.missing == 2 { 2 } else { 1 };
                if first <= i || last >= size {
                    return bad(format!("children at {first} out of order"));
                }
            }
        }
        Ok(())
    }

    /// Where each tree's nodes start and end in the node array.
    fn tree_spans(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let ends = self.roots.iter().skip(1).map(|&r| r as usize);
        self.roots
            .iter()
            .map(|&r| r as usize)
            .zip(ends.chain([self.nodes.len()]))
    }

    /// The compact form, built on first use; `None` when the ensemble does not fit it.
    fn compact(&self) -> Option<&Compact> {
        self.compact.0.get_or_init(|| Compact::build(self)).as_ref()
    }

    /// The sum of the leaves one row reaches.
    fn raw(&self, row: &[f64]) -> f64 {
        // A row of another width would read the NaN slot as a feature: refuse it loudly.
        assert_eq!(row.len(), self.n_features, "one value per feature");
        match self.compact() {
            Some(compact) => compact.raw(&self.roots, row),
            None => self.raw_wide(row),
        }
    }

    /// Whether predictions use the compact 4-byte nodes (every feature index below 255, at
    /// most 254 distinct thresholds per feature, at most 16,384 nodes per tree).
    pub fn is_compact(&self) -> bool {
        self.compact().is_some()
    }

    /// [`TreeEnsemble::raw`] on the 16-byte nodes.
    fn raw_wide(&self, row: &[f64]) -> f64 {
        // The row, plus the NaN slot that leaves read.
        let mut stack = [f64::NAN; 64];
        let heap: Vec<f64>;
        let x: &[f64] = if self.n_features < stack.len() {
            stack[..self.n_features].copy_from_slice(row);
            &stack[..=self.n_features]
        } else {
            heap = row.iter().copied().chain([f64::NAN]).collect();
            &heap
        };
        let leaf = self.n_features as u16;
        walk_in_lock_step(
            &self.roots,
            |at| {
                let node = &self.nodes[at];
                let v = x[node.feature as usize];
                let ge = usize::from(v >= node.value);
                let lt = usize::from(v < node.value);
                // NaN is neither: it takes the node's missing branch.
                let step = ge + (1 - ge - lt) * node.missing as usize;
                node.children as usize + step
            },
            |at| self.nodes[at].feature == leaf,
            |at| self.nodes[at].value,
        )
    }

    /// The model's answer for one row of `n_features` values: the probability of the positive
    /// class (links `Logit` and `Mean`) or the estimate (link `Identity`).
    pub fn predict_proba(&self, row: &[f64]) -> f64 {
        self.apply_link(self.raw(row))
    }

    /// The estimate of a regression ensemble for one row: [`TreeEnsemble::predict_proba`]
    /// under the name that says what it is.
    pub fn predict_value(&self, row: &[f64]) -> f64 {
        self.predict_proba(row)
    }

    /// The answer from the sum of the leaves.
    fn apply_link(&self, raw: f64) -> f64 {
        match self.link {
            Link::Logit => sigmoid(self.base + raw),
            Link::Mean => raw / self.roots.len() as f64,
            Link::Identity => self.base + raw,
        }
    }

    /// [`TreeEnsemble::predict_proba`] on the 16-byte nodes, whatever the ensemble fits: to
    /// compare the two layouts (tests, benchmarks).
    pub fn predict_proba_wide(&self, row: &[f64]) -> f64 {
        assert_eq!(row.len(), self.n_features, "one value per feature");
        self.apply_link(self.raw_wide(row))
    }

    /// Probabilities for every row of `matrix`.
    pub fn predict_proba_batch(&self, matrix: &crate::Matrix) -> Vec<f64> {
        matrix
            .iter_rows()
            .map(|row| self.predict_proba(row))
            .collect()
    }
}

/// The ensemble in 4 bytes a node, for models whose splits fit: the form single rows are
/// predicted with.
///
/// A split compares a value with one of its feature's thresholds; with each feature's distinct
/// thresholds sorted, `v < thresholds[j]` exactly when fewer than `j + 1` of them are `<= v`. So a
/// row is first turned into one byte per feature, the count of its feature's thresholds at or
/// below the value (`NAN_CODE` for a missing value), and each node keeps a threshold's index
/// instead of the threshold: the same decisions, exactly, from nodes a quarter of the size. The
/// spec's 600 trees take 254 KB instead of 1 MB, which stays in a core's L2 cache while the
/// server does everything else a request needs.
#[derive(Debug, Clone)]
struct Compact {
    /// Per feature, its distinct split thresholds, ascending.
    thresholds: Vec<Vec<f64>>,
    /// `feature | threshold index << 8 | missing << 16 | children << 18`; a leaf has feature
    /// `LEAF_FEATURE`, missing 0 and points to itself.
    nodes: Vec<u32>,
    /// The leaf value at each leaf's position (0 at splits).
    values: Vec<f64>,
}

/// The feature byte of a leaf; it reads the row's code slot 255, which always holds `NAN_CODE`.
const LEAF_FEATURE: u32 = 255;
/// The code of a missing value; real codes go up to 254.
const NAN_CODE: u8 = 255;
/// Children offsets have 14 bits.
const MAX_COMPACT_TREE: usize = 1 << 14;

impl Compact {
    /// The compact form, when every feature index, threshold count and tree size fits.
    fn build(ensemble: &TreeEnsemble) -> Option<Compact> {
        if ensemble.n_features >= LEAF_FEATURE as usize {
            return None;
        }
        let leaf = ensemble.n_features as u16;
        let mut thresholds = vec![Vec::new(); ensemble.n_features];
        for node in ensemble.nodes.iter().filter(|n| n.feature != leaf) {
            thresholds[node.feature as usize].push(node.value);
        }
        for t in &mut thresholds {
            t.sort_by(f64::total_cmp);
            // -0.0 and 0.0 split alike: keep one of them.
            t.dedup_by(|a, b| a == b);
            if t.len() >= NAN_CODE as usize {
                return None;
            }
        }
        if ensemble
            .tree_spans()
            .any(|(start, end)| end - start > MAX_COMPACT_TREE)
        {
            return None;
        }
        let mut nodes = Vec::with_capacity(ensemble.nodes.len());
        let mut values = Vec::with_capacity(ensemble.nodes.len());
        for node in &ensemble.nodes {
            let children = node.children << 18;
            if node.feature == leaf {
                nodes.push(LEAF_FEATURE | children);
                values.push(node.value);
            } else {
                let feature = u32::from(node.feature);
                let index =
                    thresholds[node.feature as usize].partition_point(|&t| t < node.value) as u32;
                nodes.push(feature | index << 8 | u32::from(node.missing) << 16 | children);
                values.push(0.0);
            }
        }
        Some(Compact {
            thresholds,
            nodes,
            values,
        })
    }

    /// One byte per feature, then `NAN_CODE` up to slot 255.
    fn codes(&self, row: &[f64]) -> [u8; 256] {
        let mut codes = [NAN_CODE; 256];
        for ((code, &v), thresholds) in codes.iter_mut().zip(row).zip(&self.thresholds) {
            if !v.is_nan() {
                *code = thresholds.partition_point(|&t| t <= v) as u8;
            }
        }
        codes
    }

    /// The sum of the leaves one row reaches, added in the same order as the wide form's.
    fn raw(&self, roots: &[u32], row: &[f64]) -> f64 {
        let codes = self.codes(row);
        walk_in_lock_step(
            roots,
            |at| {
                let node = self.nodes[at];
                let code = u32::from(codes[(node & 0xFF) as usize]);
                let index = (node >> 8) & 0xFF;
                let missing = (node >> 16) & 0b11;
                let nan = u32::from(code == u32::from(NAN_CODE));
                let right = u32::from(code > index);
                // A missing value takes the node's missing branch; a leaf reads a missing
                // code and has missing branch 0, so it stays where it is.
                let step = nan * missing + (1 - nan) * right;
                (node >> 18) as usize + step as usize
            },
            |at| self.nodes[at] & 0xFF == LEAF_FEATURE,
            |at| self.values[at],
        )
    }
}

/// Walks the trees starting at `roots`, [`LANES`] side by side, and sums the leaves they reach,
/// chunk by chunk in tree order. `next(node)` is where a node sends the row, relative to its
/// tree's root (a leaf sends it to itself); `is_leaf` and `value` read the node arrived at.
#[inline(always)]
fn walk_in_lock_step(
    roots: &[u32],
    next: impl Fn(usize) -> usize,
    is_leaf: impl Fn(usize) -> bool,
    value: impl Fn(usize) -> f64,
) -> f64 {
    let mut sum = 0.0;
    for roots in roots.chunks(LANES) {
        let mut at = [0usize; LANES];
        for (a, &root) in at.iter_mut().zip(roots) {
            *a = root as usize;
        }
        let lanes = &mut at[..roots.len()];
        loop {
            let mut arrived = true;
            for (a, &root) in lanes.iter_mut().zip(roots) {
                *a = root as usize + next(*a);
                arrived &= is_leaf(*a);
            }
            if arrived {
                break;
            }
        }
        sum += lanes.iter().map(|&a| value(a)).sum::<f64>();
    }
    sum
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stump(feature: usize, threshold: f64, left: f64, right: f64, missing: f64) -> Vec<NodeSpec> {
        vec![
            NodeSpec::Split {
                feature,
                threshold,
                left: 1,
                right: 2,
                missing: 3,
            },
            NodeSpec::Leaf(left),
            NodeSpec::Leaf(right),
            NodeSpec::Leaf(missing),
        ]
    }

    #[test]
    fn routes_left_right_and_missing() {
        let mut e = TreeEnsemble::new(2, Link::Mean, 0.0);
        e.push_tree(&stump(1, 5.0, 0.1, 0.9, 0.5));
        e.validate().unwrap();
        assert_eq!(e.predict_proba(&[0.0, 4.9]), 0.1);
        assert_eq!(e.predict_proba(&[0.0, 5.0]), 0.9);
        assert_eq!(e.predict_proba(&[0.0, f64::NAN]), 0.5);
    }

    #[test]
    fn trees_of_every_depth_walk_in_lock_step() {
        // Eleven trees (more than one block of lanes), of depth 0 to 10: tree d adds 1 when
        // x0 >= d at each of d levels, so the row [5] reaches leaf value 5 in trees 5..=10.
        let mut e = TreeEnsemble::new(1, Link::Mean, 0.0);
        for depth in 0..=10usize {
            let mut nodes = Vec::new();
            for level in 0..depth {
                let here = nodes.len();
                nodes.push(NodeSpec::Split {
                    feature: 0,
                    threshold: level as f64 + 0.5,
                    left: here + 1,
                    right: here + 2,
                    missing: here + 1,
                });
                nodes.push(NodeSpec::Leaf(level as f64));
            }
            nodes.push(NodeSpec::Leaf(depth as f64));
            e.push_tree(&nodes);
        }
        e.validate().unwrap();
        // Tree d gives min(d, 5) for x = 5: 0+1+2+3+4+5*6 = 40.
        assert!((e.predict_proba(&[5.0]) - 40.0 / 11.0).abs() < 1e-12);
        assert_eq!(e.predict_proba(&[f64::NAN]), 0.0);
    }

    #[test]
    fn relayout_keeps_deep_trees_and_shared_missing_branches() {
        // Children listed before parents and a missing branch that is the right child.
        let nodes = [
            NodeSpec::Split {
                feature: 0,
                threshold: 1.0,
                left: 3,
                right: 1,
                missing: 1,
            },
            NodeSpec::Split {
                feature: 1,
                threshold: 2.0,
                left: 2,
                right: 4,
                missing: 2,
            },
            NodeSpec::Leaf(0.3),
            NodeSpec::Leaf(0.1),
            NodeSpec::Leaf(0.7),
            NodeSpec::Leaf(99.0), // reached by no path
        ];
        let mut e = TreeEnsemble::new(2, Link::Mean, 0.0);
        e.push_tree(&nodes);
        e.validate().unwrap();
        assert_eq!(e.n_nodes(), 5);
        assert_eq!(e.predict_proba(&[0.0, 0.0]), 0.1);
        assert_eq!(e.predict_proba(&[1.0, 1.0]), 0.3);
        assert_eq!(e.predict_proba(&[1.0, 2.0]), 0.7);
        assert_eq!(e.predict_proba(&[f64::NAN, f64::NAN]), 0.3);
    }

    /// A random tree over `n_features`, thresholds and leaves from small pools so that rows hit
    /// thresholds exactly, missing branches of all three kinds.
    fn random_tree(rng: &mut impl rand::Rng, n_features: usize, pool: &[f64]) -> Vec<NodeSpec> {
        fn grow(
            rng: &mut impl rand::Rng,
            n_features: usize,
            pool: &[f64],
            depth: usize,
            nodes: &mut Vec<NodeSpec>,
        ) -> usize {
            let here = nodes.len();
            nodes.push(NodeSpec::Leaf(0.0));
            if depth == 0 || rng.gen_bool(0.2) {
                nodes[here] = NodeSpec::Leaf(rng.gen_range(-4..=4) as f64 * 0.125);
                return here;
            }
            let feature = rng.gen_range(0..n_features);
            let threshold = pool[rng.gen_range(0..pool.len())];
            let left = grow(rng, n_features, pool, depth - 1, nodes);
            let right = grow(rng, n_features, pool, depth - 1, nodes);
            let missing = match rng.gen_range(0..3) {
                0 => left,
                1 => right,
                _ => grow(rng, n_features, pool, depth - 1, nodes),
            };
            nodes[here] = NodeSpec::Split {
                feature,
                threshold,
                left,
                right,
                missing,
            };
            here
        }
        let mut nodes = Vec::new();
        let depth = rng.gen_range(0..8);
        grow(rng, n_features, pool, depth, &mut nodes);
        nodes
    }

    #[test]
    fn compact_nodes_route_every_row_as_the_wide_ones() {
        use rand::{Rng, SeedableRng};
        let pool = [
            -3.5,
            -1.0,
            -0.0,
            0.0,
            0.5,
            1.0,
            2.0,
            7.25,
            1e300,
            f64::INFINITY,
        ];
        // Rows take the thresholds themselves (exact ties) and values around and beyond them.
        let values: Vec<f64> = pool
            .into_iter()
            .chain([
                f64::NEG_INFINITY,
                f64::NAN,
                0.999_999_999_999_999_9,
                1.000_000_000_000_000_2,
                -1e-300,
                3.0,
                f64::MAX,
            ])
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for case in 0..300 {
            let n_features = rng.gen_range(1..6);
            let link = [Link::Logit, Link::Mean, Link::Identity][case % 3];
            let mut e = TreeEnsemble::new(n_features, link, 0.25);
            for _ in 0..rng.gen_range(1..40) {
                e.push_tree(&random_tree(&mut rng, n_features, &pool));
            }
            e.validate().unwrap();
            assert!(e.is_compact());
            for _ in 0..50 {
                let row: Vec<f64> = (0..n_features)
                    .map(|_| values[rng.gen_range(0..values.len())])
                    .collect();
                assert_eq!(
                    e.raw(&row).to_bits(),
                    e.raw_wide(&row).to_bits(),
                    "case {case}, row {row:?}"
                );
            }
        }
    }

    #[test]
    fn ensembles_that_do_not_fit_the_compact_nodes_use_the_wide_ones() {
        // 300 distinct thresholds on one feature: more than a byte can index.
        let mut e = TreeEnsemble::new(1, Link::Mean, 0.0);
        for i in 0..300 {
            e.push_tree(&stump(0, i as f64, 0.0, 1.0, 0.5));
        }
        assert!(!e.is_compact());
        assert_eq!(e.predict_proba(&[149.5]), 150.0 / 300.0);
        assert_eq!(e.predict_proba(&[f64::NAN]), 0.5);
        // 255 features: the leaf marker's byte is taken.
        let mut e = TreeEnsemble::new(255, Link::Mean, 0.0);
        e.push_tree(&stump(254, 1.0, 0.25, 0.75, 0.5));
        assert!(!e.is_compact());
        let mut row = vec![0.0; 255];
        assert_eq!(e.predict_proba(&row), 0.25);
        row[254] = 1.0;
        assert_eq!(e.predict_proba(&row), 0.75);
    }

    #[test]
    fn adding_a_tree_after_predicting_rebuilds_the_compact_nodes() {
        let mut e = TreeEnsemble::new(1, Link::Mean, 0.0);
        e.push_tree(&stump(0, 1.0, 0.0, 1.0, 0.5));
        assert_eq!(e.predict_proba(&[2.0]), 1.0);
        e.push_tree(&stump(0, 3.0, 0.0, 1.0, 0.5));
        assert!(e.is_compact());
        assert_eq!(e.predict_proba(&[2.0]), 0.5);
        assert_eq!(e.predict_proba(&[3.0]), 1.0);
    }

    #[test]
    fn logit_link_adds_base_and_trees() {
        let mut e = TreeEnsemble::new(1, Link::Logit, 0.5);
        e.push_tree(&stump(0, 0.0, -1.0, 1.0, 0.0));
        e.push_tree(&stump(0, 1.0, -0.5, 0.5, 0.0));
        let p = e.predict_proba(&[2.0]);
        assert!((p - sigmoid(2.0)).abs() < 1e-12);
    }

    #[test]
    fn rejects_out_of_range_children_and_features() {
        let mut e = TreeEnsemble::new(1, Link::Mean, 0.0);
        e.push_tree(&stump(0, 1.0, 0.0, 1.0, 0.0));
        e.validate().unwrap();
        e.nodes[0].children = 7;
        assert!(e.validate().is_err());
        e.nodes[0].children = 0;
        assert!(e.validate().is_err(), "a self-loop must be refused");
        e.nodes[0].children = 1;
        e.nodes[0].feature = 3;
        assert!(e.validate().is_err(), "feature out of range");
        e.nodes[0].feature = 0;
        e.nodes[2].children = 0;
        assert!(e.validate().is_err(), "a leaf must point to itself");
        let mut e = TreeEnsemble::new(1, Link::Mean, 0.0);
        e.push_tree(&[NodeSpec::Leaf(f64::INFINITY)]);
        assert!(e.validate().is_err());
        assert!(TreeEnsemble::new(1, Link::Mean, 0.0).validate().is_err());
    }
}
