//! A flat tree ensemble: the one inference structure behind every fitted algorithm.

use serde::{Deserialize, Serialize};

/// Marks a leaf in [`Node::feature`].
const LEAF: u32 = u32::MAX;

/// One node of a binary decision tree.
///
/// An internal node sends a row to `left` when `row[feature] < threshold`, to `right` otherwise,
/// and to `missing` when the value is `NaN`. A leaf (`feature == u32::MAX`) holds `value`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub feature: u32,
    pub threshold: f64,
    pub left: u32,
    pub right: u32,
    pub missing: u32,
    pub value: f64,
}

impl Node {
    pub fn leaf(value: f64) -> Self {
        Node {
            feature: LEAF,
            threshold: 0.0,
            left: 0,
            right: 0,
            missing: 0,
            value,
        }
    }

    pub fn split(feature: u32, threshold: f64, left: u32, right: u32, missing: u32) -> Self {
        Node {
            feature,
            threshold,
            left,
            right,
            missing,
            value: 0.0,
        }
    }

    pub fn is_leaf(&self) -> bool {
        self.feature == LEAF
    }
}

/// How the leaf values of all trees become a probability of the positive class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// `sigmoid(base + sum of leaves)`: gradient boosting on the log-loss.
    Logit,
    /// `mean of leaves`: a forest whose leaves hold the share of positives.
    Mean,
}

/// Trees stored one after the other in a single node array; `roots[t]` is where tree `t` starts
/// and child indices are relative to that start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeEnsemble {
    n_features: usize,
    link: Link,
    base: f64,
    roots: Vec<u32>,
    nodes: Vec<Node>,
}

/// Why a tree ensemble read from outside is not usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("malformed tree ensemble: {0}")]
pub struct MalformedEnsemble(String);

impl TreeEnsemble {
    pub fn new(n_features: usize, link: Link, base: f64) -> Self {
        TreeEnsemble {
            n_features,
            link,
            base,
            roots: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// Appends a tree given as its nodes, the root first, child indices relative to the root.
    pub fn push_tree(&mut self, nodes: impl IntoIterator<Item = Node>) {
        let start = u32::try_from(self.nodes.len()).expect("fewer than 4 billion nodes");
        self.roots.push(start);
        self.nodes.extend(nodes);
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

    /// Checks every index and feature number, so that prediction cannot go out of bounds on an
    /// ensemble read from a file.
    pub fn validate(&self) -> Result<(), MalformedEnsemble> {
        if self.roots.is_empty() {
            return Err(MalformedEnsemble("no tree".into()));
        }
        let total = self.nodes.len();
        for (t, &root) in self.roots.iter().enumerate() {
            let start = root as usize;
            let end = self.roots.get(t + 1).map_or(total, |&r| r as usize);
            if start >= end || end > total {
                return Err(MalformedEnsemble(format!("tree {t} has no node")));
            }
            let size = end - start;
            for (i, node) in self.nodes[start..end].iter().enumerate() {
                if node.is_leaf() {
                    if !node.value.is_finite() {
                        return Err(MalformedEnsemble(format!(
                            "tree {t} node {i}: leaf value is not finite"
                        )));
                    }
                    continue;
                }
                if node.feature as usize >= self.n_features {
                    return Err(MalformedEnsemble(format!(
                        "tree {t} node {i}: feature {} out of {} features",
                        node.feature, self.n_features
                    )));
                }
                // Children must come after their parent: this also rules out cycles.
                for child in [node.left, node.right, node.missing] {
                    let child = child as usize;
                    if child <= i || child >= size {
                        return Err(MalformedEnsemble(format!(
                            "tree {t} node {i}: child {child} out of order"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// The raw score of one row: the sum (or mean) of the leaves it reaches, before the link.
    fn raw(&self, row: &[f64]) -> f64 {
        debug_assert_eq!(row.len(), self.n_features);
        let mut sum = 0.0;
        for &root in &self.roots {
            let tree = &self.nodes[root as usize..];
            let mut node = &tree[0];
            while !node.is_leaf() {
                let value = row[node.feature as usize];
                let next = if value < node.threshold {
                    node.left
                } else if value >= node.threshold {
                    node.right
                } else {
                    node.missing
                };
                node = &tree[next as usize];
            }
            sum += node.value;
        }
        sum
    }

    /// The probability of the positive class for one row of `n_features` values.
    pub fn predict_proba(&self, row: &[f64]) -> f64 {
        let raw = self.raw(row);
        match self.link {
            Link::Logit => sigmoid(self.base + raw),
            Link::Mean => raw / self.roots.len() as f64,
        }
    }

    /// Probabilities for every row of `matrix`.
    pub fn predict_proba_batch(&self, matrix: &crate::Matrix) -> Vec<f64> {
        matrix
            .iter_rows()
            .map(|row| self.predict_proba(row))
            .collect()
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stump(feature: u32, threshold: f64, left: f64, right: f64, missing: f64) -> Vec<Node> {
        vec![
            Node::split(feature, threshold, 1, 2, 3),
            Node::leaf(left),
            Node::leaf(right),
            Node::leaf(missing),
        ]
    }

    #[test]
    fn routes_left_right_and_missing() {
        let mut e = TreeEnsemble::new(2, Link::Mean, 0.0);
        e.push_tree(stump(1, 5.0, 0.1, 0.9, 0.5));
        e.validate().unwrap();
        assert_eq!(e.predict_proba(&[0.0, 4.9]), 0.1);
        assert_eq!(e.predict_proba(&[0.0, 5.0]), 0.9);
        assert_eq!(e.predict_proba(&[0.0, f64::NAN]), 0.5);
    }

    #[test]
    fn logit_link_adds_base_and_trees() {
        let mut e = TreeEnsemble::new(1, Link::Logit, 0.5);
        e.push_tree(stump(0, 0.0, -1.0, 1.0, 0.0));
        e.push_tree(stump(0, 1.0, -0.5, 0.5, 0.0));
        let p = e.predict_proba(&[2.0]);
        assert!((p - sigmoid(2.0)).abs() < 1e-12);
    }

    #[test]
    fn rejects_out_of_range_children_and_features() {
        let mut e = TreeEnsemble::new(1, Link::Mean, 0.0);
        e.push_tree(vec![Node::split(0, 1.0, 1, 7, 1), Node::leaf(0.0)]);
        assert!(e.validate().is_err());
        let mut e = TreeEnsemble::new(1, Link::Mean, 0.0);
        e.push_tree(stump(3, 1.0, 0.0, 1.0, 0.0));
        assert!(e.validate().is_err());
        let mut e = TreeEnsemble::new(1, Link::Mean, 0.0);
        e.push_tree(vec![Node::split(0, 1.0, 0, 0, 0)]);
        assert!(e.validate().is_err(), "a self-loop must be refused");
        assert!(TreeEnsemble::new(1, Link::Mean, 0.0).validate().is_err());
    }
}
