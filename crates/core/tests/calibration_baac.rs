//! Calibration on the BAAC split: a deliberately weak model (3 shallow boosting rounds) answers
//! probabilities squeezed toward the base rate; training measures it on the validation slice,
//! maps its probabilities, and the holdout shows the map made them frequencies without changing
//! the model's ranking. The map is the one served.

use std::path::Path;

use vigie_core::artifact::Artifact;
use vigie_core::inference::Model;
use vigie_core::spec::{Calibration, ModelSpec};
use vigie_core::train::{PreparedData, fit_and_evaluate};
use vigie_model::AlgorithmParams;
use vigie_model::bootstrap::Evaluation;
use vigie_model::calibration::Method;

fn weak_spec() -> ModelSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/baac-severity.toml");
    let mut spec = ModelSpec::from_file(&path).expect("the BAAC spec loads");
    let AlgorithmParams::GradientBoosting(params) = &mut spec.algorithm else {
        panic!("the BAAC spec boosts")
    };
    params.iterations = 3;
    params.max_depth = 2;
    params.bags = 1;
    spec
}

fn binary(e: &Evaluation) -> &vigie_model::metrics::BinaryMetrics {
    match e {
        Evaluation::Binary(m) => m,
        Evaluation::Regression(_) => panic!("a classification"),
    }
}

#[test]
fn a_weak_models_probabilities_are_mapped_to_frequencies_without_changing_its_ranking() {
    let spec = weak_spec();
    let data = PreparedData::load(&spec, &mut |_| {}).expect("the split loads");
    let model = fit_and_evaluate(&spec, &data, &spec.algorithm, &mut |_| {}).expect("fitted");
    let report = model
        .calibration
        .clone()
        .expect("a classification is calibrated");
    assert_eq!(report.asked, Calibration::Auto);
    assert_ne!(report.figures.method, Method::None, "{report:?}");
    let holdout = binary(&model.holdout);
    let served_ece = holdout.ece.expect("measured");
    assert!(
        served_ece < report.figures.holdout_ece_raw / 2.0,
        "holdout ECE {} raw, {served_ece} served",
        report.figures.holdout_ece_raw
    );
    assert_eq!(
        holdout.roc_auc, report.figures.holdout_roc_auc_raw,
        "the ranking is kept"
    );
    assert_eq!(report.figures.cross_fitted.len(), 3);
    assert_eq!(report.holdout_reliability.len(), 10);

    // What the prediction service answers is the mapped probability, thresholded.
    let artifact = Artifact::new(model.clone(), 1, chrono::Utc::now());
    let figures = artifact
        .metrics
        .calibration
        .clone()
        .expect("version figures");
    assert_eq!(figures.method, report.figures.method);
    let served = Model::new(artifact);
    let mut row = data.holdout.x.row(0).to_vec();
    let raw = model.ensemble.predict_proba(&row);
    let answer = served.predict_parsed(&mut row);
    let class = answer.as_class().expect("a class");
    assert!((class.probability - report.apply(raw)).abs() < 1e-12);
    assert_eq!(class.class, u8::from(class.probability >= model.threshold));

    // Asked for none, the same model serves its raw probabilities.
    let mut raw_spec = spec.clone();
    raw_spec.training.calibration = Calibration::None;
    let raw_model =
        fit_and_evaluate(&raw_spec, &data, &raw_spec.algorithm, &mut |_| {}).expect("fitted");
    let raw_report = raw_model.calibration.expect("reported");
    assert_eq!(raw_report.figures.method, Method::None);
    assert_eq!(
        binary(&raw_model.holdout).ece,
        Some(raw_report.figures.holdout_ece_raw)
    );
}
