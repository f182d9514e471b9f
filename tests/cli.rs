//! Black-box tests of the `vigie` binary: training on the real BAAC data, the registry commands,
//! and every kind of bad input, each of which must fail with one clear message, a non-zero exit
//! and no change to the registry or the artifact folder.

#![allow(clippy::unwrap_used)] // Test helpers: a failed setup should panic loudly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VIGIE: &str = env!("CARGO_BIN_EXE_vigie");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch home for `vigie` and, optionally, a PostgreSQL database for its registry.
struct Home {
    dir: tempfile::TempDir,
    database_url: Option<String>,
}

impl Home {
    fn new(database_url: Option<String>) -> Self {
        Home {
            dir: tempfile::tempdir().unwrap(),
            database_url,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn vigie(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(VIGIE);
        cmd.args(args)
            .env("VIGIE_HOME", self.path())
            .env_remove("DATABASE_URL");
        if let Some(url) = &self.database_url {
            cmd.env("DATABASE_URL", url);
        }
        cmd.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.vigie(args);
        assert!(
            out.status.success(),
            "vigie {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail and returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.vigie(args);
        assert!(!out.status.success(), "vigie {args:?} should have failed");
        assert_eq!(
            out.status.code(),
            Some(1),
            "a clean error exit, not a crash"
        );
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }

    /// What a failed command must not change: the registry's rows and the artifact files.
    fn state(&self) -> (String, Vec<(String, Vec<u8>)>) {
        let rows = self.ok(&["models", "list", "--json"]);
        let artifacts = self.path().join("artifacts");
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&artifacts)
            .map(|entries| {
                entries
                    .map(|e| {
                        let e = e.unwrap();
                        (
                            e.file_name().to_string_lossy().into_owned(),
                            std::fs::read(e.path()).unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        (rows, files)
    }

    /// Writes a copy of the BAAC spec into the home with its data paths made absolute, fewer
    /// boosting rounds (to keep the tests quick) and `edit` applied.
    fn spec(&self, file: &str, edit: impl Fn(String) -> String) -> PathBuf {
        let text = std::fs::read_to_string(repo().join("models/baac-severity.toml")).unwrap();
        let data = repo().join("data/baac");
        let text = text
            .replace("\"../data/baac/", &format!("\"{}/", data.display()))
            .replace("iterations = 200", "iterations = 20");
        let path = self.path().join(file);
        std::fs::write(&path, edit(text)).unwrap();
        path
    }

    /// Writes `X_train.csv` from the first `rows` rows of the real file, with `edit` applied to
    /// its text, and points a spec at it (target files stay the real ones, cut to `rows`).
    fn spec_with_training_data(
        &self,
        case: &str,
        rows: usize,
        edit: impl Fn(String) -> String,
    ) -> PathBuf {
        let cut = |name: &str| -> String {
            let text = std::fs::read_to_string(repo().join("data/baac").join(name)).unwrap();
            text.lines()
                .take(rows + 1)
                .map(|l| format!("{l}\n"))
                .collect()
        };
        let dir = self.path().join(case);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("X_train.csv"), edit(cut("X_train.csv"))).unwrap();
        std::fs::write(dir.join("y_train.csv"), cut("y_train.csv")).unwrap();
        let dir = dir.display().to_string();
        self.spec(&format!("{case}.toml"), |t| {
            t.replace(
                &format!("{}/X_train.csv", repo().join("data/baac").display()),
                &format!("{dir}/X_train.csv"),
            )
            .replace(
                &format!("{}/y_train.csv", repo().join("data/baac").display()),
                &format!("{dir}/y_train.csv"),
            )
        })
    }
}

fn train_list_show_and_verify(home: &Home) {
    let spec = home.spec("baac.toml", |t| t);
    let spec = spec.to_str().unwrap();
    let out = home.ok(&["train", "--spec", spec]);
    assert!(
        out.contains("Trained baac-severity@1 (gradient_boosting)"),
        "{out}"
    );
    assert!(out.contains(": production"), "{out}");
    assert!(out.contains("Rows: 30630 fit, 7658 validation"), "{out}");
    assert!(out.contains("16410 holdout"), "{out}");
    assert!(out.contains("refitted on all 38288 training rows"), "{out}");
    assert!(
        out.contains("Drift reference: 38288 training rows + 38288 synthetic rows, 28 features"),
        "{out}"
    );
    assert!(
        out.contains("values of vma out of range, treated as missing"),
        "{out}"
    );
    assert!(out.contains("ROC AUC"), "{out}");

    let out = home.ok(&["train", "--spec", spec, "--triggered-by", "test"]);
    assert!(out.contains("Trained baac-severity@2"), "{out}");
    assert!(out.contains(": candidate"), "{out}");

    let list = home.ok(&["models", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(
        lines[1].starts_with("baac-severity") && lines[1].contains("production"),
        "{list}"
    );
    assert!(lines[2].contains("candidate"), "{list}");

    let json: serde_json::Value =
        serde_json::from_str(&home.ok(&["models", "list", "--json"])).unwrap();
    let auc = json[0]["metrics"]["holdout"]["roc_auc"].as_f64().unwrap();
    assert!(auc > 0.8, "even 3 x 20 rounds learn something: AUC {auc}");
    assert_eq!(json[1]["triggered_by"], "test");

    let show = home.ok(&["models", "show", "baac-severity", "--verify"]);
    assert!(show.starts_with("baac-severity@1 (production"), "{show}");
    assert!(show.contains("Artifact verified"), "{show}");
    let show = home.ok(&["models", "show", "baac-severity@2"]);
    assert!(show.starts_with("baac-severity@2 (candidate"), "{show}");

    // Tamper with version 1's artifact: loading it must refuse, naming the file.
    let path = PathBuf::from(json[0]["artifact_path"].as_str().unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let err = home.fails(&["models", "show", "baac-severity@1", "--verify"]);
    assert!(
        err.contains(&path.display().to_string()) && err.contains("the registry recorded"),
        "{err}"
    );

    let err = home.fails(&["models", "show", "nope"]);
    assert!(err.contains("no model named \"nope\""), "{err}");
    let err = home.fails(&["models", "show", "baac-severity@7"]);
    assert!(err.contains("baac-severity has no version 7"), "{err}");
    let err = home.fails(&["models", "show", "baac-severity@x"]);
    assert!(err.contains("NAME@VERSION"), "{err}");
}

#[test]
fn train_registers_versions_on_sqlite() {
    train_list_show_and_verify(&Home::new(None));
}

#[tokio::test(flavor = "multi_thread")]
async fn train_registers_versions_on_postgres() {
    let Some(url) = vigie_registry::testing::fresh_postgres_database().await else {
        eprintln!("VIGIE_TEST_POSTGRES_URL is not set: PostgreSQL run skipped (SQLite ran)");
        return;
    };
    tokio::task::spawn_blocking(move || train_list_show_and_verify(&Home::new(Some(url))))
        .await
        .unwrap();
}

/// Each bad input fails with its message and leaves what a first, good training made intact.
#[test]
fn bad_input_fails_clearly_and_changes_nothing() {
    let home = Home::new(None);
    let good = home.spec("good.toml", |t| {
        t.replace("iterations = 20", "iterations = 5")
    });
    home.ok(&["train", "--spec", good.to_str().unwrap()]);
    let before = home.state();
    let x_train = |case: &str| {
        home.path()
            .join(case)
            .join("X_train.csv")
            .display()
            .to_string()
    };

    let cases: Vec<(&str, PathBuf, Vec<String>)> = vec![
        (
            "malformed CSV",
            home.spec_with_training_data("malformed", 50, |t| {
                t.replacen("\n1,1,1,2.0,2021", "\n1,1,1,2.0", 1)
            }),
            vec![format!(
                "{} line 3: 27 fields where the header has 28",
                x_train("malformed")
            )],
        ),
        (
            "missing column",
            home.spec_with_training_data("missing", 50, |t| {
                t.replacen("place,catu", "seat,catu", 1)
            }),
            vec![format!(
                "{} line 1 column place: missing column",
                x_train("missing")
            )],
        ),
        (
            "wrong type",
            home.spec_with_training_data("type", 50, |t| {
                let mut lines: Vec<String> = t.lines().map(String::from).collect();
                let mut cells: Vec<String> = lines[3].split(',').map(String::from).collect();
                cells[5] = "thirty".into();
                lines[3] = cells.join(",");
                lines.join("\n") + "\n"
            }),
            vec![format!(
                "{} line 4 column victim_age: \"thirty\" is not a number",
                x_train("type")
            )],
        ),
        (
            "unknown category code",
            home.spec_with_training_data("code", 50, |t| {
                let mut lines: Vec<String> = t.lines().map(String::from).collect();
                let mut cells: Vec<String> = lines[2].split(',').map(String::from).collect();
                cells[1] = "7".into();
                lines[2] = cells.join(",");
                lines.join("\n") + "\n"
            }),
            vec![format!(
                "{} line 3 column catu: unknown code \"7\"",
                x_train("code")
            )],
        ),
        (
            "spec that contradicts the data",
            home.spec("contradicts.toml", |t| {
                t.replace("out_of_range = \"missing\"", "out_of_range = \"reject\"")
            }),
            vec![
                "X_train.csv line ".into(),
                "column vma: 901 is outside the valid range [1, 130]".into(),
                "X_test.csv line ".into(),
            ],
        ),
        (
            "invalid spec",
            home.spec("invalid.toml", |t| {
                t.replace("learning_rate = 0.1", "learning_rate = 5.0")
            }),
            vec!["invalid model spec".into(), "learning_rate".into()],
        ),
        (
            "missing spec",
            home.path().join("absent.toml"),
            vec!["cannot read".into(), "absent.toml".into()],
        ),
    ];
    for (case, spec, expected) in cases {
        let err = home.fails(&["train", "--spec", spec.to_str().unwrap()]);
        for e in &expected {
            assert!(
                err.contains(e.as_str()),
                "{case}: expected {e:?} in:\n{err}"
            );
        }
        assert_eq!(
            home.state(),
            before,
            "{case}: the registry or the artifacts changed"
        );
    }
}

#[test]
fn a_corrupt_registry_database_url_is_refused_before_training() {
    let home = Home::new(Some("mysql://nobody@127.0.0.1:1/none".into()));
    let spec = home.spec("baac.toml", |t| t);
    let err = home.fails(&["train", "--spec", spec.to_str().unwrap()]);
    assert!(err.contains("Failed to open the model registry"), "{err}");
}

#[test]
fn bootstrap_trains_what_has_no_production_version_and_makes_the_first_admin_once() {
    let home = Home::new(None);
    let specs = home.path().join("specs");
    std::fs::create_dir_all(&specs).unwrap();
    let spec = home.spec("baac-severity.toml", |t| t);
    std::fs::rename(&spec, specs.join("baac-severity.toml")).unwrap();
    let specs = specs.to_str().unwrap();
    let run = |password: Option<&str>| {
        let mut cmd = Command::new(VIGIE);
        cmd.args(["bootstrap", "--models-dir", specs])
            .env("VIGIE_HOME", home.path())
            .env_remove("DATABASE_URL")
            .env_remove("VIGIE_ADMIN")
            .env_remove("VIGIE_ADMIN_PASSWORD");
        if let Some(p) = password {
            cmd.env("VIGIE_ADMIN_PASSWORD", p);
        }
        cmd.output().unwrap()
    };

    // Runs it and returns its stdout, checking it succeeded.
    let ok = |password: Option<&str>| {
        let out = run(password);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        String::from_utf8(out.stdout).unwrap()
    };

    // An empty registry and no password: refused, naming the variable, before any account.
    let out = run(None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("VIGIE_ADMIN_PASSWORD"), "{stderr}");
    // A password the accounts refuse: named too.
    let out = run(Some("short"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("VIGIE_ADMIN_PASSWORD refused"));

    let stdout = ok(Some("the first admin's password"));
    assert!(stdout.contains("production: baac-severity@1"), "{stdout}");
    assert!(
        stdout.contains("created the first admin: admin"),
        "{stdout}"
    );
    let users = home.ok(&["users", "list"]);
    assert!(
        users.contains("admin") && users.contains("vigie-bootstrap"),
        "{users}"
    );

    // Again, with no password: nothing to train, an account exists, nothing changes.
    let before = home.state();
    let stdout = ok(None);
    assert!(stdout.contains("production: baac-severity@1"), "{stdout}");
    assert!(stdout.contains("none created"), "{stdout}");
    assert_eq!(home.state(), before, "a second bootstrap changes nothing");
}
