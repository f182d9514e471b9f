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
            "target column \"speed\" is also a feature",
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
