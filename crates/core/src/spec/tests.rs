use super::*;

use crate::testing::TOY_SPEC as SMALL;

fn error_of(text: &str) -> String {
    ModelSpec::from_toml(text).unwrap_err().to_string()
}

#[test]
fn the_baac_spec_parses_with_its_28_features() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/baac-severity.toml");
    let spec = ModelSpec::from_file(&path).unwrap();
    assert_eq!(spec.features.len(), 28);
    assert_eq!(spec.name, "baac-severity");
    assert!(spec.data.train_features.ends_with("data/baac/X_train.csv"));
    assert!(
        spec.data.train_features.is_file(),
        "spec paths resolve against the spec's folder"
    );
    let names = spec.feature_names();
    assert_eq!(names.first(), Some(&"place"));
    assert_eq!(names.last(), Some(&"nb_vehicules"));
}

#[test]
fn the_hash_follows_meaning_not_formatting() {
    let a = ModelSpec::from_toml(SMALL).unwrap();
    let b = ModelSpec::from_toml(&SMALL.replace("max = 130", "max   =   130 # km/h")).unwrap();
    assert_eq!(a.hash(), b.hash());
    let c = ModelSpec::from_toml(&SMALL.replace("max = 130", "max = 131")).unwrap();
    assert_ne!(a.hash(), c.hash());
}

#[test]
fn mistakes_in_a_spec_are_named() {
    for (broken, expected) in [
        (
            SMALL.replace("name = \"toy\"", "name = \"Toy Model\""),
            "name \"Toy Model\"",
        ),
        (
            SMALL.replace("name = \"speed\"", "name = \"colour\""),
            "declared twice",
        ),
        (
            SMALL.replace("codes = { 1 = \"red\", 2 = \"green\" }", ""),
            "give `codes` or `code_range`",
        ),
        (
            SMALL.replace("min = 0", "min = 200"),
            "feature \"speed\": range [200, 130]",
        ),
        (
            SMALL.replace("missing = \"impute\"", "missing = \"guess\""),
            "unknown variant `guess`",
        ),
        (
            SMALL.replace("max = 130", "max = 130\nmaximum = 4"),
            "unknown field `maximum`",
        ),
        (
            SMALL.replace(
                "kind = \"decision_tree\"",
                "kind = \"decision_tree\"\nmax_depth = 0",
            ),
            "max_depth",
        ),
        (
            SMALL.replace("kind = \"decision_tree\"", "kind = \"svm\""),
            "unknown variant `svm`",
        ),
        (
            SMALL.replace("column = \"y\"", "column = \"speed\""),
            "target column \"speed\" is also feature",
        ),
        (
            SMALL.replace(
                "codes = { 1 = \"red\", 2 = \"green\" }",
                "codes = [1, \"1.0\"]",
            ),
            "listed twice",
        ),
        (
            SMALL.replace("negative = \"0\"", "negative = \"1.0\""),
            "target.positive and target.negative must differ",
        ),
        (
            SMALL
                .replace("max = 130", "max = 130\nout_of_range = \"missing\"")
                .replace("missing = \"impute\"", "missing = \"reject\""),
            "needs missing = \"impute\"",
        ),
        (
            format!("{SMALL}\n[reference]\nsynthetic_share = 1.0\n"),
            "reference.synthetic_share must be in [0, 0.9]",
        ),
        (
            format!("{SMALL}\n[reference]\ncentral_share = nan\n"),
            "reference.central_share",
        ),
        (
            format!("{SMALL}\n[reference]\nbins = 1000000000\n"),
            "reference.bins must be in 1..=10000",
        ),
        (
            format!(
                "{SMALL}\n[drift]\nfeatures.nope = {{ statistic = \"tvd\", threshold = 0.2 }}\n"
            ),
            "drift.features.nope: the model has no such feature",
        ),
        (
            format!(
                "{SMALL}\n[drift]\nfeatures.colour = {{ statistic = \"ks_p\", threshold = 0.01 }}\n"
            ),
            "drift.features.colour: ks_p applies to numerical features only",
        ),
        (
            format!(
                "{SMALL}\n[drift]\ncategorical = {{ statistic = \"wasserstein\", threshold = 0.1 }}\n"
            ),
            "drift.categorical: wasserstein applies to numerical features only",
        ),
        (
            format!(
                "{SMALL}\n[drift]\nnumerical = {{ statistic = \"correlation\", threshold = nan }}\n"
            ),
            "drift.numerical: the threshold must be a finite number",
        ),
        (
            format!("{SMALL}\n[drift]\ndataset_share = 2.0\n"),
            "drift.dataset_share must be in [0, 1]",
        ),
        (
            format!("{SMALL}\n[drift]\nnumerical = {{ statistic = \"kl\", threshold = 0.1 }}\n"),
            "unknown variant `kl`",
        ),
    ] {
        let message = error_of(&broken);
        assert!(
            message.contains(expected),
            "expected {expected:?} in {message:?}"
        );
    }
}

#[test]
fn numeric_codes_are_spelled_one_way() {
    assert_eq!(normalise_token("2.0"), "2");
    assert_eq!(normalise_token(" 02 "), "2");
    assert_eq!(normalise_token("2.5"), "2.5");
    assert_eq!(normalise_token("RAIN"), "RAIN");
}

#[test]
fn drift_rules_come_from_the_spec_with_defaults() {
    let spec = ModelSpec::from_toml(SMALL).unwrap();
    assert_eq!(spec.drift, vigie_drift::DriftRules::default());
    let text = format!(
        "{SMALL}\n[drift]\nmin_rows = 1000\nfeatures.speed = {{ statistic = \"wasserstein\", threshold = 0.1 }}\n"
    );
    let spec = ModelSpec::from_toml(&text).unwrap();
    assert_eq!(spec.drift.min_rows, 1000);
    let rule = spec.drift.features["speed"];
    assert_eq!(rule.statistic, vigie_drift::Statistic::Wasserstein);
    assert!(rule.drifted(0.2) && !rule.drifted(0.05));
    assert_eq!(spec.drift.categorical.threshold, 0.1, "the default stays");
}

#[test]
fn the_lfb_spec_parses_as_a_regression_with_its_group() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/lfb-response-time.toml");
    let spec = ModelSpec::from_file(&path).unwrap();
    assert_eq!(spec.task, Task::Regression);
    assert_eq!(spec.features.len(), 11);
    assert_eq!(spec.target.range(), (0.0, 7200.0));
    assert_eq!(spec.retraining.metric(spec.task), Metric::Mae);
    let regression = spec.regression();
    assert_eq!(regression.interval_coverage, 0.9);
    assert_eq!(
        regression.underestimation.unwrap().group,
        "IncidentStationGround"
    );
    assert!(spec.data.holdout_target.is_file());
}

#[test]
fn the_baac_spec_hashes_as_before_the_regression_fields() {
    // The hash of models/baac-severity.toml when the spec knew only classification: artifacts
    // registered then must still load.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/baac-severity.toml");
    let spec = ModelSpec::from_file(&path).unwrap();
    let json = serde_json::to_value(&spec).unwrap();
    assert!(json.get("regression").is_none());
    assert_eq!(json["target"]["positive"], "1");
    assert!(json["target"].get("unit").is_none() && json["target"].get("min").is_none());
    assert_eq!(spec.retraining.metric(spec.task), Metric::RocAuc);
}

#[test]
fn mistakes_in_a_regression_spec_are_named() {
    use crate::testing::TOY_REGRESSION_SPEC as R;
    ModelSpec::from_toml(R).unwrap();
    for (broken, expected) in [
        (
            R.replace("min = 0\nmax = 3600", "max = 3600"),
            "target.min and target.max are required for a regression",
        ),
        (
            R.replace("min = 0\nmax = 3600", "min = 10\nmax = 5"),
            "target range [10, 5]",
        ),
        (
            R.replace("unit = \"s\"", "unit = \"s\"\npositive = \"1\""),
            "target.positive belongs to a binary_classification, not to a regression",
        ),
        (
            format!("{R}\n[retraining]\nmetric = \"roc_auc\"\n"),
            "retraining.metric \"roc_auc\" does not judge a regression model (use mae or rmse)",
        ),
        (
            R.replace("group = \"station\"", "group = \"depot\""),
            "regression.underestimation.group \"depot\" is not a feature of the spec",
        ),
        (
            R.replace("group = \"station\"", "group = \"distance\""),
            "regression.underestimation.group \"distance\" must be a categorical feature",
        ),
        (
            R.replace("interval_coverage = 0.9", "interval_coverage = 1.0"),
            "regression.interval_coverage must be above 0 and below 1, not 1",
        ),
        (
            R.replace("interval_coverage = 0.9", "interval_coverage = 0"),
            "regression.interval_coverage must be above 0 and below 1, not 0",
        ),
        (
            R.replace("underestimate_margin = 60", "underestimate_margin = -1"),
            "regression.underestimate_margin must be 0 or more",
        ),
        (
            R.replace("min_rows = 20", "min_rows = 1"),
            "regression.underestimation.min_rows must be at least 2",
        ),
        (
            R.replace("kind = \"gradient_boosting\"", "kind = \"random_forest\""),
            "algorithm \"random_forest\" cannot fit a regression: use gradient_boosting",
        ),
        (
            R.replace(
                "interval_coverage = 0.9",
                "interval_coverage = 0.9\nspread = 2",
            ),
            "unknown field `spread`",
        ),
    ] {
        let message = error_of(&broken);
        assert!(
            message.contains(expected),
            "expected {expected:?} in {message:?}"
        );
    }
    // And the reverse: a classification asking for a regression's metric or sections.
    for (broken, expected) in [
        (
            format!("{SMALL}\n[retraining]\nmetric = \"mae\"\n"),
            "retraining.metric \"mae\" does not judge a binary_classification model",
        ),
        (
            format!("{SMALL}\n[regression]\ninterval_coverage = 0.9\n"),
            "[regression] belongs to a regression, not to a binary_classification",
        ),
        (
            SMALL.replace("column = \"y\"", "column = \"y\"\nmin = 0"),
            "target.min belongs to a regression, not to a binary_classification",
        ),
        (
            SMALL.replace("negative_label = \"no\"\n", ""),
            "target.negative_label is required for a binary_classification",
        ),
    ] {
        let message = error_of(&broken);
        assert!(
            message.contains(expected),
            "expected {expected:?} in {message:?}"
        );
    }
}

/// Artifacts record their spec's hash and check it when loaded: a field added to the drift
/// rules must not change the hash of a spec that leaves it at its default, or every model
/// trained before would be refused.
#[test]
fn specs_hash_as_the_versions_that_trained_them_recorded() {
    let spec = |name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../models/{name}.toml"));
        ModelSpec::from_file(&path).unwrap()
    };
    let baac = spec("baac-severity");
    // Recorded by artifacts trained before the noise thresholds (and now), and by those
    // trained between them and hysteresis (the "noise fields" form).
    assert_eq!(
        baac.hashes(),
        [
            "05e48594228151b07001da7de2b9c3c397a49a2433e63d37cf7427b61aa81485".to_string(),
            "e2c291b65e5c15873d00da93b0c683b272dd6f96e0c084b960e772822aa58ffe".to_string(),
        ]
    );
    assert_eq!(
        spec("lfb-response-time").hash(),
        "69ad9f17f8c449940a206f17a3d0b3c2e6f55016e72dda503a146fc6bb965f05"
    );
    // A rule away from its default is part of the hash.
    let mut held = baac.clone();
    held.drift.hysteresis = 0.8;
    assert_ne!(held.hash(), baac.hash());
    let mut strict = baac.clone();
    strict.drift.false_alarms_per_30_days = 0.5;
    assert_ne!(strict.hash(), baac.hash());
}

#[test]
fn name_matching_unseen_codes_and_missing_values_are_checked() {
    let categorical_open = "\n[[feature]]\nname = \"street\"\ntype = \"categorical\"\nmissing = \"reject\"\nunseen = \"missing\"\ncodes = [\"A\"]\n";
    for (broken, expected) in [
        (
            format!("{SMALL}{categorical_open}"),
            "unseen = \"missing\" needs missing = \"impute\"",
        ),
        (
            format!(
                "{SMALL}{}",
                categorical_open
                    .replace("missing = \"reject\"", "missing = \"impute\"")
                    .replace("codes = [\"A\"]", "code_range = [1, 9]")
            ),
            "unseen = \"missing\" needs `codes`",
        ),
        (
            SMALL
                .replace("max = 130\n", "max = 130\nmissing_values = [0]\n")
                .replace("missing = \"impute\"", "missing = \"reject\""),
            "missing_values needs missing = \"impute\"",
        ),
        (
            SMALL.replace("max = 130\n", "max = 130\naliases = [\"colour\"]\n"),
            "the name \"colour\" also names feature \"colour\"",
        ),
        (
            SMALL
                .replace(
                    "task = \"binary_classification\"",
                    "task = \"binary_classification\"\ncolumn_names = \"case_insensitive\"",
                )
                .replace("max = 130\n", "max = 130\naliases = [\"Colour\"]\n"),
            "(names are matched ignoring case)",
        ),
        (
            SMALL.replace("max = 130\n", "max = 130\naliases = [\"y\"]\n"),
            "the target column \"y\" is also feature \"speed\"",
        ),
        (
            SMALL.replace(
                "task = \"binary_classification\"",
                "task = \"binary_classification\"\ncolumn_names = \"loose\"",
            ),
            "unknown variant `loose`",
        ),
    ] {
        let error = error_of(&broken);
        assert!(error.contains(expected), "{error} should say {expected}");
    }
    // Defaults are left out of the serialised spec: the hashes of specs written before stay.
    let spec = ModelSpec::from_toml(SMALL).unwrap();
    let json = serde_json::to_string(&spec).unwrap();
    for field in ["column_names", "unseen", "aliases", "missing_values"] {
        assert!(!json.contains(field), "{json}");
    }
}

#[test]
fn the_chicago_spec_parses_with_its_22_features_and_text_target() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/chicago-crash-type.toml");
    let spec = ModelSpec::from_file(&path).unwrap();
    assert_eq!(spec.features.len(), 22);
    assert_eq!(spec.column_names, ColumnNames::CaseInsensitive);
    assert_eq!(spec.target.positive(), "INJURY AND / OR TOW DUE TO CRASH");
    for leak in [
        "DAMAGE",
        "MOST_SEVERE_INJURY",
        "INJURIES_TOTAL",
        "CRASH_TYPE",
    ] {
        assert!(!spec.feature_names().contains(&leak), "{leak}");
    }
}

#[test]
fn quality_tolerances_and_calibration_are_read_checked_and_left_out_of_the_hash_by_default() {
    let plain = ModelSpec::from_toml(SMALL).unwrap();
    assert_eq!(plain.training.calibration, Calibration::Auto);
    let tolerances = plain.quality.tolerances(plain.task);
    assert_eq!(tolerances.get("roc_auc"), Some(&0.05));
    assert_eq!(tolerances.get("f1"), Some(&0.05));
    assert_eq!(plain.quality.min_labels(), 200);
    // Written out at their defaults, they hash as a spec without them.
    let spelled = format!("{SMALL}\n[quality]\n[training]\ncalibration = \"auto\"\n");
    assert_eq!(ModelSpec::from_toml(&spelled).unwrap().hash(), plain.hash());
    let with = ModelSpec::from_toml(&format!(
        "{SMALL}\n[quality]\ntolerance = {{ f1 = 0.03 }}\nmin_labels = 50\n"
    ))
    .unwrap();
    assert_eq!(with.quality.tolerances(with.task).len(), 1);
    assert_eq!(with.quality.min_labels(), 50);
    assert_ne!(with.hash(), plain.hash());
    for (quality, expected) in [
        (
            "tolerance = { mae = 30 }",
            "quality.tolerance.mae: not a metric of a",
        ),
        ("tolerance = { f1 = -0.1 }", "a tolerance is a number >= 0"),
        ("min_labels = 0", "quality.min_labels must be at least 1"),
        ("tolerence = { f1 = 0.1 }", "unknown field `tolerence`"),
    ] {
        let error = error_of(&format!("{SMALL}\n[quality]\n{quality}\n"));
        assert!(error.contains(expected), "{quality}: {error}");
    }
}
