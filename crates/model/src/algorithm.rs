//! The algorithms Vigie fits, their hyperparameters, and their conversion to a [`TreeEnsemble`].
//!
//! Hyperparameters follow linfa's shape: a plain serialisable `AlgorithmParams` (read from a
//! model spec), [`AlgorithmParams::check`] turns it into [`ValidParams`], and only valid
//! parameters can [`ValidParams::fit`].

use linfa::prelude::*;
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::ensemble::{Link, NodeSpec, TreeEnsemble};
use crate::{Error, Matrix, Result};

/// An algorithm and its hyperparameters, as written in a model spec (`kind = "..."`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AlgorithmParams {
    GradientBoosting(GradientBoostingParams),
    RandomForest(ForestParams),
    DecisionTree(TreeParams),
}

/// Histogram gradient boosting (`forust-ml`): on the log-loss for a classification, on the
/// squared loss for a regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GradientBoostingParams {
    /// Number of boosting rounds (trees).
    pub iterations: usize,
    pub learning_rate: f32,
    pub max_depth: usize,
    /// When set, trees grow best-first (the split with the largest gain anywhere) up to this
    /// many leaves, within `max_depth`; otherwise they grow level by level to `max_depth`.
    pub max_leaves: Option<usize>,
    /// L2 regularisation on leaf weights.
    pub l2: f32,
    /// Minimum loss reduction to make a split.
    pub gamma: f32,
    /// Minimum sum of hessians in a leaf.
    pub min_leaf_weight: f32,
    /// Share of rows drawn (without replacement) for each tree; 1.0 uses them all.
    pub subsample: f32,
    /// Share of features drawn for each tree.
    pub colsample_bytree: f64,
    /// Histogram bins per feature (at most 256).
    pub nbins: u16,
    /// Number of boosters fitted with seeds `seed`, `seed + 1`, ... and averaged (on the log-odds
    /// scale for a classification). Averaging removes much of the variance that row and column sampling add.
    pub bags: usize,
    pub seed: u64,
}

impl Default for GradientBoostingParams {
    fn default() -> Self {
        GradientBoostingParams {
            iterations: 300,
            learning_rate: 0.1,
            max_depth: 6,
            max_leaves: None,
            l2: 1.0,
            gamma: 0.0,
            min_leaf_weight: 1.0,
            subsample: 1.0,
            colsample_bytree: 1.0,
            nbins: 256,
            bags: 1,
            seed: 0,
        }
    }
}

/// Bagged decision trees (`linfa-ensemble`), leaves turned into shares of positives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForestParams {
    pub trees: usize,
    pub max_depth: Option<usize>,
    pub min_weight_leaf: f32,
    /// Share of rows in each bootstrap sample.
    pub bootstrap_proportion: f64,
    /// Share of features each tree sees (linfa draws them per tree, not per split).
    pub feature_proportion: f64,
    pub seed: u64,
}

impl Default for ForestParams {
    fn default() -> Self {
        ForestParams {
            trees: 100,
            max_depth: Some(15),
            min_weight_leaf: 1.0,
            bootstrap_proportion: 1.0,
            feature_proportion: 0.7,
            seed: 0,
        }
    }
}

/// A single CART decision tree (`linfa-trees`), leaves turned into shares of positives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TreeParams {
    pub max_depth: Option<usize>,
    pub min_weight_leaf: f32,
    pub min_weight_split: f32,
}

impl Default for TreeParams {
    fn default() -> Self {
        TreeParams {
            max_depth: Some(12),
            min_weight_leaf: 20.0,
            min_weight_split: 40.0,
        }
    }
}

/// Hyperparameters that passed [`AlgorithmParams::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidParams(AlgorithmParams);

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidParam {
        name,
        reason: reason.into(),
    }
}

fn share(name: &'static str, value: f64) -> Result<()> {
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(invalid(name, format!("must be in (0, 1], got {value}")))
    }
}

fn positive(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(invalid(
            name,
            format!("must be a finite number >= 0, got {value}"),
        ))
    }
}

impl AlgorithmParams {
    /// The algorithm's name as written in specs, artifacts and the registry.
    pub fn kind(&self) -> &'static str {
        match self {
            AlgorithmParams::GradientBoosting(_) => "gradient_boosting",
            AlgorithmParams::RandomForest(_) => "random_forest",
            AlgorithmParams::DecisionTree(_) => "decision_tree",
        }
    }

    pub fn check(self) -> Result<ValidParams> {
        match &self {
            AlgorithmParams::GradientBoosting(p) => {
                if p.iterations == 0 {
                    return Err(invalid("iterations", "must be at least 1"));
                }
                if p.max_depth == 0 {
                    return Err(invalid("max_depth", "must be at least 1"));
                }
                if p.bags == 0 {
                    return Err(invalid("bags", "must be at least 1"));
                }
                if p.max_leaves.is_some_and(|n| n < 2) {
                    return Err(invalid("max_leaves", "must be at least 2"));
                }
                if !(p.learning_rate > 0.0 && p.learning_rate <= 1.0) {
                    return Err(invalid(
                        "learning_rate",
                        format!("must be in (0, 1], got {}", p.learning_rate),
                    ));
                }
                positive("l2", p.l2.into())?;
                positive("gamma", p.gamma.into())?;
                positive("min_leaf_weight", p.min_leaf_weight.into())?;
                share("subsample", p.subsample.into())?;
                share("colsample_bytree", p.colsample_bytree)?;
                if !(2..=256).contains(&p.nbins) {
                    return Err(invalid(
                        "nbins",
                        format!("must be in 2..=256, got {}", p.nbins),
                    ));
                }
            }
            AlgorithmParams::RandomForest(p) => {
                if p.trees == 0 {
                    return Err(invalid("trees", "must be at least 1"));
                }
                if p.max_depth == Some(0) {
                    return Err(invalid("max_depth", "must be at least 1"));
                }
                positive("min_weight_leaf", p.min_weight_leaf.into())?;
                share("bootstrap_proportion", p.bootstrap_proportion)?;
                share("feature_proportion", p.feature_proportion)?;
            }
            AlgorithmParams::DecisionTree(p) => {
                if p.max_depth == Some(0) {
                    return Err(invalid("max_depth", "must be at least 1"));
                }
                positive("min_weight_leaf", p.min_weight_leaf.into())?;
                positive("min_weight_split", p.min_weight_split.into())?;
            }
        }
        Ok(ValidParams(self))
    }
}

impl ValidParams {
    pub fn params(&self) -> &AlgorithmParams {
        &self.0
    }

    /// Whether the algorithm can fit a regression (only gradient boosting can, today: the
    /// linfa trees are classifiers).
    pub fn fits_regression(&self) -> bool {
        matches!(self.0, AlgorithmParams::GradientBoosting(_))
    }

    /// Fits the algorithm on `x` and numeric targets `y` (finite), on the squared loss.
    pub fn fit_regression(&self, x: &Matrix, y: &[f64]) -> Result<TreeEnsemble> {
        check_shape(x, y)?;
        if let Some(row) = y.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteTarget { row });
        }
        usable(match &self.0 {
            AlgorithmParams::GradientBoosting(p) => {
                fit_gradient_boosting(p, x, y, Objective::Squared)
            }
            other => Err(Error::NoRegression(other.kind())),
        }?)
    }

    /// Fits the algorithm on `x` and binary targets `y` (0.0 or 1.0).
    pub fn fit(&self, x: &Matrix, y: &[f64]) -> Result<TreeEnsemble> {
        check_shape(x, y)?;
        let positives = y.iter().filter(|&&v| v == 1.0).count();
        if positives == 0 || positives == y.len() {
            return Err(Error::SingleClass(y[0]));
        }
        usable(match &self.0 {
            AlgorithmParams::GradientBoosting(p) => fit_gradient_boosting(p, x, y, Objective::Log),
            AlgorithmParams::RandomForest(p) => fit_forest(p, x, y),
            AlgorithmParams::DecisionTree(p) => fit_tree(p, x, y),
        }?)
    }
}

/// Rows to fit on, one target each.
fn check_shape(x: &Matrix, y: &[f64]) -> Result<()> {
    if x.rows() == 0 {
        return Err(Error::EmptyTrainingSet);
    }
    if x.rows() != y.len() {
        return Err(Error::LengthMismatch {
            rows: x.rows(),
            targets: y.len(),
        });
    }
    Ok(())
}

/// What is registered must load again: a fitted ensemble passes the checks a loaded artifact
/// goes through.
fn usable(ensemble: TreeEnsemble) -> Result<TreeEnsemble> {
    ensemble
        .validate()
        .map_err(|e| Error::Unusable(e.to_string()))?;
    Ok(ensemble)
}

/// The loss gradient boosting minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Objective {
    /// Log-loss on 0/1 targets; the booster starts from a log-odds of 0.5 (as it always has).
    Log,
    /// Squared error on numeric targets; the booster starts from their mean.
    Squared,
}

fn fit_gradient_boosting(
    p: &GradientBoostingParams,
    x: &Matrix,
    y: &[f64],
    objective: Objective,
) -> Result<TreeEnsemble> {
    let columns = x.to_column_major();
    let data = forust_ml::Matrix::new(&columns, x.rows(), x.cols());
    let boosters = (0..p.bags as u64)
        .map(|bag| fit_booster(p, p.seed.wrapping_add(bag), &data, y, objective))
        .collect::<Result<Vec<_>>>()?;
    // The mean of the boosters' raw scores (log-odds, or estimates): every leaf scaled by
    // 1/bags, bases averaged.
    let scale = 1.0 / boosters.len() as f64;
    let base = boosters.iter().map(|b| b.base_score).sum::<f64>() * scale;
    let link = match objective {
        Objective::Log => Link::Logit,
        Objective::Squared => Link::Identity,
    };
    let mut ensemble = TreeEnsemble::new(x.cols(), link, base);
    for booster in &boosters {
        let n_trees = booster.prediction_iteration.unwrap_or(booster.trees.len());
        for tree in &booster.trees[..n_trees] {
            let nodes: Vec<NodeSpec> = tree
                .nodes
                .iter()
                .map(|n| {
                    if n.is_leaf {
                        NodeSpec::Leaf(f64::from(n.weight_value) * scale)
                    } else {
                        NodeSpec::Split {
                            feature: n.split_feature,
                            threshold: n.split_value,
                            left: n.left_child,
                            right: n.right_child,
                            missing: n.missing_node,
                        }
                    }
                })
                .collect();
            ensemble.push_tree(&nodes);
        }
    }
    Ok(ensemble)
}

fn fit_booster(
    p: &GradientBoostingParams,
    seed: u64,
    data: &forust_ml::Matrix<f64>,
    y: &[f64],
    objective: Objective,
) -> Result<forust_ml::GradientBooster> {
    use forust_ml::GradientBooster;
    use forust_ml::objective::ObjectiveType;
    use forust_ml::sampler::SampleMethod;

    let mut booster = GradientBooster::default()
        .set_iterations(p.iterations)
        .set_learning_rate(p.learning_rate)
        .set_max_depth(p.max_depth)
        .set_l2(p.l2)
        .set_gamma(p.gamma)
        .set_min_leaf_weight(p.min_leaf_weight)
        .set_colsample_bytree(p.colsample_bytree)
        .set_nbins(p.nbins)
        .set_seed(seed)
        .set_parallel(true);
    if objective == Objective::Squared {
        booster = booster
            .set_objective_type(ObjectiveType::SquaredLoss)
            .set_initialize_base_score(true);
    }
    if let Some(leaves) = p.max_leaves {
        booster = booster.set_max_leaves(leaves);
        booster.grow_policy = forust_ml::gradientbooster::GrowPolicy::LossGuide;
    }
    if p.subsample < 1.0 {
        booster = booster
            .set_sample_method(SampleMethod::Random)
            .set_subsample(p.subsample);
    }
    booster
        .fit_unweighted(data, y, None)
        .map_err(|e| Error::GradientBoosting(e.to_string()))?;
    Ok(booster)
}

type LinfaTree = linfa_trees::DecisionTree<f64, usize>;

fn linfa_dataset(x: &Matrix, y: &[f64]) -> Result<Dataset<f64, usize, ndarray::Ix1>> {
    let records = Array2::from_shape_vec((x.rows(), x.cols()), x.as_slice().to_vec())
        .map_err(|e| Error::Linfa(e.to_string()))?;
    let targets = Array1::from_iter(y.iter().map(|&v| usize::from(v == 1.0)));
    Ok(Dataset::new(records, targets))
}

fn tree_params(
    max_depth: Option<usize>,
    min_weight_leaf: f32,
    min_weight_split: f32,
) -> linfa_trees::DecisionTreeParams<f64, usize> {
    linfa_trees::DecisionTree::params()
        .max_depth(max_depth)
        .min_weight_leaf(min_weight_leaf)
        .min_weight_split(min_weight_split)
}

fn fit_tree(p: &TreeParams, x: &Matrix, y: &[f64]) -> Result<TreeEnsemble> {
    let dataset = linfa_dataset(x, y)?;
    let tree = tree_params(p.max_depth, p.min_weight_leaf, p.min_weight_split)
        .fit(&dataset)
        .map_err(|e| Error::Linfa(e.to_string()))?;
    let all: Vec<usize> = (0..x.cols()).collect();
    let mut ensemble = TreeEnsemble::new(x.cols(), Link::Mean, 0.0);
    ensemble.push_tree(&flatten_linfa_tree(&tree, &all, x, y));
    Ok(ensemble)
}

fn fit_forest(p: &ForestParams, x: &Matrix, y: &[f64]) -> Result<TreeEnsemble> {
    let dataset = linfa_dataset(x, y)?;
    let rng = StdRng::seed_from_u64(p.seed);
    let forest = linfa_ensemble::EnsembleLearnerParams::new_fixed_rng(
        tree_params(p.max_depth, p.min_weight_leaf, 2.0 * p.min_weight_leaf),
        rng,
    )
    .ensemble_size(p.trees)
    .bootstrap_proportion(p.bootstrap_proportion)
    .feature_proportion(p.feature_proportion)
    .fit(&dataset)
    .map_err(|e| Error::Linfa(e.to_string()))?;
    let mut ensemble = TreeEnsemble::new(x.cols(), Link::Mean, 0.0);
    for (tree, features) in forest.models.iter().zip(&forest.model_features) {
        ensemble.push_tree(&flatten_linfa_tree(tree, features, x, y));
    }
    Ok(ensemble)
}

/// Converts a linfa tree into flat nodes over the full feature set (`features` maps the tree's
/// own columns to the matrix columns), then replaces each leaf's majority class by the share of
/// positives among the training rows that reach it, so the forest gives probabilities and not
/// only votes.
fn flatten_linfa_tree(
    tree: &LinfaTree,
    features: &[usize],
    x: &Matrix,
    y: &[f64],
) -> Vec<NodeSpec> {
    let mut nodes = vec![NodeSpec::Leaf(0.0)];
    let mut stack = vec![(tree.root_node(), 0usize)];
    while let Some((node, slot)) = stack.pop() {
        let children = node.children();
        let (false, Some(left), Some(right)) = (
            node.is_leaf(),
            children[0].as_deref(),
            children[1].as_deref(),
        ) else {
            // A leaf (linfa gives internal nodes both children): its majority class for now.
            nodes[slot] = NodeSpec::Leaf(node.prediction().unwrap_or_default() as f64);
            continue;
        };
        let (feature, threshold, _) = node.split();
        let (l, r) = (nodes.len(), nodes.len() + 1);
        nodes.extend([NodeSpec::Leaf(0.0), NodeSpec::Leaf(0.0)]);
        // linfa cannot route a missing value; Vigie imputes them before the model, so the
        // missing branch only has to be valid: it follows the right side as linfa would.
        nodes[slot] = NodeSpec::Split {
            feature: features[feature],
            threshold,
            left: l,
            right: r,
            missing: r,
        };
        stack.push((left, l));
        stack.push((right, r));
    }

    // Leaf probabilities: share of positives of the training rows reaching each leaf, with the
    // majority class as the fallback of a leaf no row reaches.
    let mut counts = vec![(0.0f64, 0.0f64); nodes.len()];
    for (row, &target) in x.iter_rows().zip(y) {
        let mut i = 0usize;
        while let NodeSpec::Split {
            feature,
            threshold,
            left,
            right,
            ..
        } = nodes[i]
        {
            i = if row[feature] < threshold {
                left
            } else {
                right
            };
        }
        counts[i].0 += target;
        counts[i].1 += 1.0;
    }
    for (node, (positives, total)) in nodes.iter_mut().zip(counts) {
        if let NodeSpec::Leaf(value) = node
            && total > 0.0
        {
            *value = positives / total;
        }
    }
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded toy problem: the label is 1 when x0 + noise > x1.
    fn toy(n: usize, seed: u64) -> (Matrix, Vec<f64>) {
        use rand::Rng;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut data = Vec::with_capacity(n * 3);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let a: f64 = rng.gen_range(0.0..10.0);
            let b: f64 = rng.gen_range(0.0..10.0);
            let c: f64 = rng.gen_range(0.0..1.0);
            data.extend([a, b, c]);
            y.push(f64::from(u8::from(a + rng.gen_range(-1.0..1.0) > b)));
        }
        (Matrix::from_row_major(data, n, 3).unwrap(), y)
    }

    fn auc_of(params: AlgorithmParams) -> f64 {
        let (x, y) = toy(2000, 1);
        let (xt, yt) = toy(1000, 2);
        let model = params.check().unwrap().fit(&x, &y).unwrap();
        model.validate().unwrap();
        let p = model.predict_proba_batch(&xt);
        crate::metrics::roc_auc(&yt, &p)
    }

    #[test]
    fn every_algorithm_learns_the_toy_problem() {
        let gb = auc_of(AlgorithmParams::GradientBoosting(GradientBoostingParams {
            iterations: 50,
            ..Default::default()
        }));
        let rf = auc_of(AlgorithmParams::RandomForest(ForestParams {
            trees: 20,
            feature_proportion: 1.0,
            ..Default::default()
        }));
        let dt = auc_of(AlgorithmParams::DecisionTree(TreeParams::default()));
        assert!(gb > 0.95, "gradient boosting AUC {gb}");
        assert!(rf > 0.9, "random forest AUC {rf}");
        assert!(dt > 0.85, "decision tree AUC {dt}");
    }

    #[test]
    fn converted_boosting_matches_forust_predictions() {
        let (x, y) = toy(500, 3);
        let params = GradientBoostingParams {
            iterations: 20,
            ..Default::default()
        };
        let model = AlgorithmParams::GradientBoosting(params.clone())
            .check()
            .unwrap()
            .fit(&x, &y)
            .unwrap();
        let columns = x.to_column_major();
        let data = forust_ml::Matrix::new(&columns, x.rows(), x.cols());
        let mut booster = forust_ml::GradientBooster::default()
            .set_iterations(params.iterations)
            .set_learning_rate(params.learning_rate)
            .set_max_depth(params.max_depth)
            .set_l2(params.l2)
            .set_nbins(params.nbins)
            .set_seed(params.seed)
            .set_parallel(true);
        booster.fit_unweighted(&data, &y, None).unwrap();
        let theirs = booster.predict(&data, false);
        for (row, raw) in x.iter_rows().zip(theirs) {
            let expected = 1.0 / (1.0 + (-raw).exp());
            assert!((model.predict_proba(row) - expected).abs() < 1e-9);
        }
    }

    /// A seeded regression: y = 3 x0 - 2 x1 + noise, with missing values in x2.
    fn toy_regression(n: usize, seed: u64) -> (Matrix, Vec<f64>) {
        use rand::Rng;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut data = Vec::with_capacity(n * 3);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let a: f64 = rng.gen_range(0.0..10.0);
            let b: f64 = rng.gen_range(0.0..10.0);
            let c = if i % 7 == 0 {
                f64::NAN
            } else {
                rng.gen_range(0.0..1.0)
            };
            data.extend([a, b, c]);
            y.push(300.0 + 3.0 * a - 2.0 * b + rng.gen_range(-1.0..1.0));
        }
        (Matrix::from_row_major(data, n, 3).unwrap(), y)
    }

    #[test]
    fn gradient_boosting_fits_a_regression_and_matches_forust() {
        let (x, y) = toy_regression(2000, 5);
        let (xt, yt) = toy_regression(500, 6);
        let params = GradientBoostingParams {
            iterations: 200,
            bags: 2,
            ..Default::default()
        };
        let valid = AlgorithmParams::GradientBoosting(params.clone())
            .check()
            .unwrap();
        assert!(valid.fits_regression());
        let model = valid.fit_regression(&x, &y).unwrap();
        assert_eq!(model.link(), Link::Identity);
        let mae = xt
            .iter_rows()
            .zip(&yt)
            .map(|(row, t)| (model.predict_value(row) - t).abs())
            .sum::<f64>()
            / yt.len() as f64;
        // The noise alone gives 0.5; a constant would give about 8.
        assert!(mae < 1.0, "MAE {mae}");

        // One bag: the converted ensemble answers as forust does, base score included.
        let one = AlgorithmParams::GradientBoosting(GradientBoostingParams { bags: 1, ..params })
            .check()
            .unwrap()
            .fit_regression(&x, &y)
            .unwrap();
        let columns = xt.to_column_major();
        let data = forust_ml::Matrix::new(&columns, xt.rows(), xt.cols());
        let train_columns = x.to_column_major();
        let train = forust_ml::Matrix::new(&train_columns, x.rows(), x.cols());
        let mut booster = forust_ml::GradientBooster::default()
            .set_objective_type(forust_ml::objective::ObjectiveType::SquaredLoss)
            .set_initialize_base_score(true)
            .set_iterations(200)
            .set_learning_rate(0.1)
            .set_max_depth(6)
            .set_l2(1.0)
            .set_nbins(256)
            .set_seed(0)
            .set_parallel(true);
        booster.fit_unweighted(&train, &y, None).unwrap();
        for (row, theirs) in xt.iter_rows().zip(booster.predict(&data, false)) {
            assert!((one.predict_value(row) - theirs).abs() < 1e-6);
        }
    }

    #[test]
    fn a_regression_is_refused_by_the_classifiers_and_for_non_finite_targets() {
        let (x, mut y) = toy_regression(50, 7);
        let err = AlgorithmParams::RandomForest(ForestParams::default())
            .check()
            .unwrap()
            .fit_regression(&x, &y)
            .unwrap_err();
        assert!(err.to_string().contains("random_forest"), "{err}");
        y[17] = f64::NAN;
        let err = AlgorithmParams::GradientBoosting(GradientBoostingParams::default())
            .check()
            .unwrap()
            .fit_regression(&x, &y)
            .unwrap_err();
        assert!(matches!(err, Error::NonFiniteTarget { row: 17 }), "{err}");
    }

    #[test]
    fn bad_hyperparameters_are_named() {
        let err = AlgorithmParams::GradientBoosting(GradientBoostingParams {
            learning_rate: 0.0,
            ..Default::default()
        })
        .check()
        .unwrap_err();
        assert!(err.to_string().contains("learning_rate"), "{err}");
        let err = AlgorithmParams::RandomForest(ForestParams {
            feature_proportion: 1.5,
            ..Default::default()
        })
        .check()
        .unwrap_err();
        assert!(err.to_string().contains("feature_proportion"), "{err}");
    }

    #[test]
    fn single_class_targets_are_refused() {
        let (x, _) = toy(10, 4);
        let y = vec![0.0; 10];
        let err = AlgorithmParams::DecisionTree(TreeParams::default())
            .check()
            .unwrap()
            .fit(&x, &y)
            .unwrap_err();
        assert!(matches!(err, Error::SingleClass(_)));
    }
}
