//! The registry against SQLite and, when `VIGIE_TEST_POSTGRES_URL` is set, PostgreSQL: the same
//! assertions on both.

#![allow(clippy::unwrap_used)] // Test helpers: a failed setup should panic loudly.

use std::path::{Path, PathBuf};

use vigie_core::testing::toy_model;
use vigie_registry::testing::fresh_postgres_database;
use vigie_registry::{Error, ModelRef, Registry, Status};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `test` once per configured backend, each with a new database and artifact folder.
async fn on_each_backend<F, Fut>(test: F)
where
    F: Fn(Backend, String, PathBuf) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!(
        "sqlite://{}",
        dir.path().join("sqlite/registry.db").display()
    );
    test(Backend::Sqlite, sqlite, dir.path().join("sqlite/artifacts")).await;
    if let Some(url) = fresh_postgres_database().await {
        test(
            Backend::Postgres,
            url,
            dir.path().join("postgres/artifacts"),
        )
        .await;
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn versions_are_numbered_listed_resolved_and_loaded() {
    on_each_backend(|backend, url, artifacts| async move {
        let registry = Registry::open(&url, &artifacts).await.unwrap();
        assert!(registry.list().await.unwrap().is_empty(), "{backend:?}");

        let (v1, a1) = registry.register(toy_model(), "test").await.unwrap();
        let (v2, _) = registry.register(toy_model(), "trainer").await.unwrap();
        assert_eq!(
            (v1.version, v1.status),
            (1, Status::Production),
            "{backend:?}"
        );
        assert_eq!(
            (v2.version, v2.status),
            (2, Status::Candidate),
            "{backend:?}"
        );
        assert_eq!(v2.triggered_by, "trainer");
        assert_eq!(v1.metrics, a1.metrics);
        assert_eq!(files_in(&artifacts).len(), 2);

        let listed = registry.list().await.unwrap();
        assert_eq!(listed, vec![v1.clone(), v2.clone()], "{backend:?}");
        let by_name = registry.resolve(&"toy".parse().unwrap()).await.unwrap();
        assert_eq!(
            by_name.version, 1,
            "NAME resolves to the production version"
        );
        let exact = registry.resolve(&"toy@2".parse().unwrap()).await.unwrap();
        assert_eq!(exact, v2);
        assert_eq!(registry.load(&v1).unwrap(), a1);

        let missing = registry
            .resolve(&"nope".parse::<ModelRef>().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(missing, Error::UnknownModel(_)), "{missing}");
        let missing = registry
            .resolve(&"toy@9".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(missing.to_string(), "toy has no version 9");
        registry.close().await;

        // Reopening runs the migrations again (a no-op) and finds the same rows.
        let reopened = Registry::open(&url, &artifacts).await.unwrap();
        assert_eq!(reopened.list().await.unwrap(), listed, "{backend:?}");
        reopened.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_tampered_or_swapped_artifact_is_refused() {
    on_each_backend(|backend, url, artifacts| async move {
        let registry = Registry::open(&url, &artifacts).await.unwrap();
        let (v1, _) = registry.register(toy_model(), "test").await.unwrap();
        let (v2, _) = registry.register(toy_model(), "test").await.unwrap();

        // Swap v1's file for v2's: each is a valid artifact, but not the one recorded.
        let v1_bytes = std::fs::read(&v1.artifact_path).unwrap();
        std::fs::copy(&v2.artifact_path, &v1.artifact_path).unwrap();
        let err = registry.load(&v1).unwrap_err().to_string();
        assert!(err.contains("the registry recorded"), "{backend:?}: {err}");

        // Flip one byte of the payload.
        let mut bytes = v1_bytes;
        let n = bytes.len();
        bytes[n - 5] ^= 0x01;
        std::fs::write(&v1.artifact_path, &bytes).unwrap();
        let err = registry.load(&v1).unwrap_err().to_string();
        assert!(err.contains("invalid model artifact"), "{backend:?}: {err}");

        std::fs::remove_file(&v1.artifact_path).unwrap();
        let err = registry.load(&v1).unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{backend:?}: {err}");
        registry.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_failed_registration_leaves_table_and_folder_as_they_were() {
    on_each_backend(|backend, url, artifacts| async move {
        let registry = Registry::open(&url, &artifacts).await.unwrap();
        registry.register(toy_model(), "test").await.unwrap();
        let rows_before = registry.list().await.unwrap();
        let files_before = files_in(&artifacts);

        // Make the insert fail after the artifact is written, as a lost connection or a
        // constraint would.
        let refuse = match backend {
            Backend::Sqlite => vec![
                "CREATE TRIGGER refuse BEFORE INSERT ON model_versions BEGIN SELECT RAISE(ABORT, 'refused by test'); END",
            ],
            Backend::Postgres => vec![
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused by test'; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER refuse BEFORE INSERT ON model_versions FOR EACH ROW EXECUTE FUNCTION refuse()",
            ],
        };
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        for statement in refuse {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;

        let err = registry.register(toy_model(), "test").await.unwrap_err().to_string();
        assert!(err.contains("refused by test"), "{backend:?}: {err}");
        assert_eq!(registry.list().await.unwrap(), rows_before, "{backend:?}");
        assert_eq!(files_in(&artifacts), files_before, "{backend:?}: no artifact, no temporary file");
        registry.close().await;
    })
    .await;
}

#[tokio::test]
async fn promotion_archives_the_previous_production_version() {
    on_each_backend(|backend, url, artifacts| async move {
        let registry = Registry::open(&url, &artifacts).await.unwrap();
        registry.register(toy_model(), "test").await.unwrap();
        registry.register(toy_model(), "test").await.unwrap();
        let promoted = registry.promote("toy", 2, "test").await.unwrap();
        assert_eq!(promoted.status, Status::Production, "{backend:?}");
        let statuses: Vec<(u32, Status)> = registry
            .list()
            .await
            .unwrap()
            .iter()
            .map(|v| (v.version, v.status))
            .collect();
        assert_eq!(
            statuses,
            vec![(1, Status::Archived), (2, Status::Production)],
            "{backend:?}"
        );
        let production = registry.production().await.unwrap();
        assert_eq!(production.len(), 1);
        assert_eq!(production[0].version, 2);
        // Rolling back is promoting the older version again.
        registry.promote("toy", 1, "test").await.unwrap();
        assert_eq!(registry.production().await.unwrap()[0].version, 1);
        assert_eq!(
            registry.promote("toy", 1, "test").await.unwrap().status,
            Status::Production,
            "promoting the production version is a no-op"
        );
        let err = registry.promote("toy", 7, "test").await.unwrap_err();
        assert!(matches!(err, Error::UnknownVersion { .. }), "{err}");
        let err = registry.promote("nope", 1, "test").await.unwrap_err();
        assert!(matches!(err, Error::UnknownModel(_)), "{err}");
        registry.ping().await.unwrap();
        registry.close().await;
    })
    .await;
}

#[tokio::test]
async fn users_are_added_listed_and_deleted_but_never_the_last_admin() {
    use vigie_registry::{Role, User};
    let user = |name: &str, role| User {
        name: name.into(),
        role,
        password_hash: format!("hash-of-{name}"),
        created_at: 1_700_000_000,
        created_by: "cli".into(),
    };
    on_each_backend(|backend, url, artifacts| async move {
        let registry = Registry::open(&url, &artifacts).await.unwrap();
        assert!(registry.users().await.unwrap().is_empty());
        registry.add_user(&user("root", Role::Admin)).await.unwrap();
        registry.add_user(&user("amy", Role::User)).await.unwrap();
        let err = registry
            .add_user(&user("amy", Role::Admin))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UserExists(_)), "{backend:?}: {err}");
        let err = registry
            .add_user(&user("a b", Role::User))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::BadUserName(_)), "{err}");

        let names: Vec<String> = registry
            .users()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["amy", "root"], "{backend:?}");
        assert_eq!(
            registry.user("amy").await.unwrap(),
            Some(user("amy", Role::User))
        );
        assert_eq!(registry.user("zed").await.unwrap(), None);

        let err = registry.delete_user("root").await.unwrap_err();
        assert!(matches!(err, Error::LastAdmin(_)), "{backend:?}: {err}");
        registry.add_user(&user("ops", Role::Admin)).await.unwrap();
        assert_eq!(
            registry.delete_user("root").await.unwrap().role,
            Role::Admin
        );
        registry.delete_user("amy").await.unwrap();
        let err = registry.delete_user("amy").await.unwrap_err();
        assert!(matches!(err, Error::UnknownUser(_)), "{err}");
        registry.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_checkpoint_is_saved_replaced_read_and_deleted_per_group() {
    on_each_backend(|backend, url, artifacts| async move {
        let registry = Registry::open(&url, &artifacts).await.unwrap();
        assert_eq!(registry.checkpoint("g").await.unwrap(), None, "{backend:?}");
        registry
            .save_checkpoint("g", r#"{"a":1}"#, 10)
            .await
            .unwrap();
        registry
            .save_checkpoint("h", r#"{"b":2}"#, 11)
            .await
            .unwrap();
        let big = "x".repeat(3_000_000);
        registry.save_checkpoint("g", &big, 12).await.unwrap();
        let g = registry.checkpoint("g").await.unwrap().unwrap();
        assert_eq!(
            (g.state.len(), g.updated_at),
            (big.len(), 12),
            "{backend:?}"
        );
        let h = registry.checkpoint("h").await.unwrap().unwrap();
        assert_eq!(
            (h.state.as_str(), h.updated_at),
            (r#"{"b":2}"#, 11),
            "{backend:?}"
        );
        assert!(registry.delete_checkpoint("g").await.unwrap());
        assert!(!registry.delete_checkpoint("g").await.unwrap());
        assert_eq!(registry.checkpoint("g").await.unwrap(), None, "{backend:?}");
        assert!(registry.checkpoint("h").await.unwrap().is_some());
        // Per-partition keys, found by their group's prefix (a `_` or `%` in it is no pattern).
        for key in ["g_1/0", "g_1/1", "gx1/0", "g_10/0"] {
            registry.save_checkpoint(key, key, 3).await.unwrap();
        }
        let found: Vec<String> = registry
            .checkpoints_with_prefix("g_1/")
            .await
            .unwrap()
            .into_iter()
            .map(|(k, c)| {
                assert_eq!(k, c.state);
                k
            })
            .collect();
        assert_eq!(found, ["g_1/0", "g_1/1"], "{backend:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_wait_for_each_other_instead_of_failing() {
    on_each_backend(|backend, url, artifacts| async move {
        let registry = Registry::open(&url, &artifacts).await.unwrap();
        let user = |name: String, role: vigie_registry::Role| vigie_registry::User {
            name,
            role,
            password_hash: "unused".into(),
            created_at: 0,
            created_by: "test".into(),
        };
        registry
            .add_user(&user("root".into(), vigie_registry::Role::Admin))
            .await
            .unwrap();
        // Forty accounts added at once, then deleted at once: every call succeeds (SQLite in
        // rollback-journal mode without a busy timeout failed up to 9 in 10 with "database is
        // locked").
        let adds: Vec<_> = (0..40)
            .map(|i| {
                let (registry, u) = (
                    registry.clone(),
                    user(format!("user{i}"), vigie_registry::Role::User),
                );
                tokio::spawn(async move { registry.add_user(&u).await })
            })
            .collect();
        for add in adds {
            add.await
                .unwrap()
                .unwrap_or_else(|e| panic!("{backend:?}: add: {e}"));
        }
        let deletes: Vec<_> = (0..40)
            .map(|i| {
                let registry = registry.clone();
                tokio::spawn(async move { registry.delete_user(&format!("user{i}")).await })
            })
            .collect();
        for delete in deletes {
            delete
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{backend:?}: delete: {e}"));
        }
        let names: Vec<String> = registry
            .users()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["root"], "{backend:?}");
        // Names are one account in any case.
        assert!(matches!(
            registry.add_user(&user("ROOT".into(), vigie_registry::Role::User)).await,
            Err(Error::UserExists(name)) if name == "root"
        ));
        assert_eq!(registry.user("Root").await.unwrap().unwrap().name, "root");
    })
    .await;
}

#[tokio::test]
async fn a_classification_and_a_regression_register_one_after_the_other() {
    use vigie_core::testing::toy_regression_model;
    on_each_backend(|_, url, artifacts| async move {
        let registry = Registry::open(&url, &artifacts).await.unwrap();
        // Either order, several times: every insert binds the three holdout figures, some
        // absent, on whichever pooled connection comes.
        for _ in 0..3 {
            registry
                .register(toy_regression_model(), "test")
                .await
                .unwrap();
            registry.register(toy_model(), "test").await.unwrap();
        }
        registry.register(toy_model(), "test").await.unwrap();
        registry
            .register(toy_regression_model(), "test")
            .await
            .unwrap();
    })
    .await;
}
