//! The regression pipeline on the London Fire Brigade split: the spec's model trains, its
//! figures are the library's own definitions recomputed from its answers, its interval is
//! calibrated on the validation slice and measured on the holdout, and its artifact reads back
//! and answers as the trained model did.

use std::path::Path;

use vigie_core::artifact::Artifact;
use vigie_core::inference::Model;
use vigie_core::spec::ModelSpec;
use vigie_core::train::{self, PreparedData};
use vigie_model::regression::RegressionMetrics;

fn spec() -> ModelSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/lfb-response-time.toml");
    ModelSpec::from_file(&path).expect("the LFB spec loads")
}

#[test]
fn the_lfb_model_trains_calibrates_and_answers_as_its_figures_say() {
    let spec = spec();
    let data = PreparedData::load(&spec, &mut |_| {}).expect("the LFB split loads");
    assert_eq!(data.fit.y.len() + data.validation.y.len(), 7_578);
    assert_eq!(data.holdout.y.len(), 1_895);
    let trained = train::fit_and_evaluate(&spec, &data, &spec.algorithm, &mut |_| {}).unwrap();
    let holdout = trained.holdout.as_regression().unwrap().clone();
    let regression = trained.regression.clone().unwrap();

    // The figures are those of the model's own answers on the holdout, as served.
    let model = Model::new(Artifact::new(trained.clone(), 1, chrono::Utc::now()));
    let answers = model.predict_batch(&data.holdout_raw);
    let estimates: Vec<f64> = answers.iter().map(|p| p.score()).collect();
    let again = RegressionMetrics::compute(&data.holdout.y, &estimates, 60.0).with_interval(
        &data.holdout.y,
        &estimates,
        &regression.interval,
    );
    assert_eq!(again, holdout);

    // Better than answering the training median to everyone.
    let mut sorted = data.fit.y.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let constant = RegressionMetrics::compute(&data.holdout.y, &vec![median; 1_895], 60.0);
    assert!(
        holdout.mae < constant.mae,
        "MAE {} against {} for the median",
        holdout.mae,
        constant.mae
    );

    // The interval: calibrated on every validation row, each answer's ends around its
    // estimate and inside the target's range.
    let interval = &regression.interval;
    assert_eq!(interval.calibration_rows as usize, data.validation.y.len());
    assert_eq!(interval.coverage, 0.9);
    assert!(interval.lower_offset < 0.0 && interval.upper_offset > 0.0);
    for p in &answers {
        let e = p.as_estimate().unwrap();
        assert!(e.interval[0] <= e.value && e.value <= e.interval[1]);
        assert!(e.interval[0] >= 0.0 && e.interval[1] <= 7_200.0);
    }
    let coverage = holdout.interval_coverage.unwrap();
    assert!(
        coverage > 0.8 && coverage < 0.97,
        "holdout coverage {coverage}"
    );

    // The groups: every station ground of the validation slice, judged once; an answer is
    // flagged exactly when its station ground is.
    let u = regression.underestimation.as_ref().unwrap();
    assert_eq!(u.feature, "IncidentStationGround");
    assert!(u.groups.len() > 90, "{} groups", u.groups.len());
    let judged_rows: u64 = u.groups.iter().map(|g| g.rows).sum();
    assert_eq!(judged_rows as usize, data.validation.y.len());
    for g in &u.groups {
        assert_eq!(g.lower_bound.is_some(), g.rows >= u.min_rows, "{g:?}");
        assert_eq!(g.flagged, g.lower_bound.is_some_and(|b| b > 0.0), "{g:?}");
    }
    let column = data.schema.position("IncidentStationGround").unwrap();
    for (row, p) in data.holdout.x.iter_rows().zip(&answers) {
        let flagged = u.group(row[column]).is_some_and(|g| g.flagged);
        assert_eq!(p.as_estimate().unwrap().underestimation_risk, flagged);
    }
    let check = &u.holdout;
    assert_eq!(
        (check.flagged.rows + check.unflagged.rows) as usize,
        data.holdout.y.len()
    );

    // The artifact reads back and answers the same.
    let bytes = Artifact::new(trained, 1, chrono::Utc::now()).to_bytes();
    let read = Artifact::from_bytes(&bytes, Path::new("lfb.vigie")).unwrap();
    let reread = Model::new(read).predict_batch(&data.holdout_raw);
    assert_eq!(reread, answers);
}
