//! Retraining runs, alerts seen and promotions against SQLite and, when
//! `VIGIE_TEST_POSTGRES_URL` is set, PostgreSQL: the same assertions on both.

#![allow(clippy::unwrap_used)] // Test helpers: a failed setup should panic loudly.

use std::path::PathBuf;

use vigie_core::testing::toy_model;
use vigie_registry::testing::fresh_postgres_database;
use vigie_registry::{Error, Registry, RunState, RunUpdate, SeenAlert, Started, Status};

async fn on_each_backend<F, Fut>(test: F)
where
    F: Fn(&'static str, String, PathBuf) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("s/registry.db").display());
    test("sqlite", sqlite, dir.path().join("s/artifacts")).await;
    if let Some(url) = fresh_postgres_database().await {
        test("postgres", url, dir.path().join("p/artifacts")).await;
    }
}

#[tokio::test]
async fn a_run_walks_its_states_and_only_one_per_model_is_unfinished() {
    on_each_backend(|backend, url, artifacts| async move {
        let registry = Registry::open(&url, &artifacts).await.unwrap();
        let Started::Started(run) = registry
            .start_run("r1", "toy", "alert", "VigieDataDrift/abc", Some(1), 1_000)
            .await
            .unwrap()
        else {
            panic!("{backend}: the first run must start")
        };
        assert_eq!(run.state, RunState::Triggered, "{backend}");
        assert_eq!(run.production_version, Some(1));
        assert_eq!(run.finished_at, None);

        // A second run of the same model waits; another model's may start.
        match registry
            .start_run("r2", "toy", "manual", "admin", Some(1), 1_001)
            .await
            .unwrap()
        {
            Started::Busy(active) => assert_eq!(active.id, "r1", "{backend}"),
            other => panic!("{backend}: {other:?}"),
        }
        assert!(registry.run("r2").await.unwrap().is_none());
        assert!(matches!(
            registry
                .start_run("o1", "other", "manual", "admin", None, 1_002)
                .await
                .unwrap(),
            Started::Started(_)
        ));

        // Skipping a state is refused and changes nothing.
        let err = registry
            .advance_run("r1", RunState::Promoted, RunUpdate::default(), 1_003)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::BadTransition { .. }),
            "{backend}: {err}"
        );
        assert_eq!(
            registry.run("r1").await.unwrap().unwrap().state,
            RunState::Triggered
        );

        registry
            .advance_run(
                "r1",
                RunState::Training,
                RunUpdate {
                    detail: Some(serde_json::json!({"data": {"rows": 10}})),
                    ..RunUpdate::default()
                },
                1_010,
            )
            .await
            .unwrap();
        registry
            .advance_run(
                "r1",
                RunState::Evaluated,
                RunUpdate {
                    candidate_version: Some(2),
                    detail: Some(serde_json::json!({"comparison": {"better": false}})),
                    ..RunUpdate::default()
                },
                1_020,
            )
            .await
            .unwrap();
        let done = registry
            .advance_run("r1", RunState::Rejected, RunUpdate::default(), 1_030)
            .await
            .unwrap();
        assert_eq!(done.state, RunState::Rejected, "{backend}");
        assert_eq!(done.candidate_version, Some(2));
        assert_eq!(done.finished_at, Some(1_030));
        assert_eq!(
            done.detail,
            serde_json::json!({"data": {"rows": 10}, "comparison": {"better": false}}),
            "{backend}: details merge"
        );
        // A finished run is final.
        assert!(
            registry
                .advance_run("r1", RunState::Failed, RunUpdate::default(), 1_040)
                .await
                .is_err()
        );

        // Now the model may run again.
        assert!(matches!(
            registry
                .start_run("r3", "toy", "manual", "admin", Some(1), 2_000)
                .await
                .unwrap(),
            Started::Started(_)
        ));
        let listed: Vec<String> = registry
            .runs(Some("toy"), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(listed, ["r3", "r1"], "{backend}: newest first");
        assert_eq!(registry.runs(None, 10).await.unwrap().len(), 3);

        // A restarted trainer fails what it cannot resume.
        assert_eq!(
            registry
                .fail_unfinished_runs("interrupted", 3_000)
                .await
                .unwrap(),
            2
        );
        let r3 = registry.run("r3").await.unwrap().unwrap();
        assert_eq!(r3.state, RunState::Failed);
        assert_eq!(r3.error.as_deref(), Some("interrupted"));
        assert!(registry.active_run("toy").await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn an_alert_is_recorded_once_per_fingerprint_and_start() {
    on_each_backend(|backend, url, artifacts| async move {
        let registry = Registry::open(&url, &artifacts).await.unwrap();
        let alert = SeenAlert {
            fingerprint: "f1".into(),
            starts_at: "2026-11-22T10:00:00Z".into(),
            alertname: "VigieDataDrift".into(),
            model: Some("toy".into()),
            action: "started".into(),
            run_id: Some("r1".into()),
            received_at: 5,
        };
        assert!(registry.record_alert(&alert).await.unwrap(), "{backend}");
        assert!(!registry.record_alert(&alert).await.unwrap(), "{backend}");
        // The same alert firing again later is a new alert.
        let again = SeenAlert {
            starts_at: "2026-11-22T11:00:00Z".into(),
            action: "cooldown".into(),
            run_id: None,
            received_at: 6,
            ..alert.clone()
        };
        assert!(registry.record_alert(&again).await.unwrap());
        registry
            .set_alert_action("f1", "2026-11-22T11:00:00Z", "busy", Some("r1"))
            .await
            .unwrap();
        let seen = registry.alerts_seen(10).await.unwrap();
        assert_eq!(seen.len(), 2, "{backend}");
        assert_eq!(seen[0].action, "busy");
        assert_eq!(seen[0].run_id.as_deref(), Some("r1"));
        assert_eq!(seen[1], alert);
    })
    .await;
}

#[tokio::test]
async fn promotions_are_recorded_and_a_rollback_returns_to_the_replaced_version() {
    on_each_backend(|backend, url, artifacts| async move {
        let registry = Registry::open(&url, &artifacts).await.unwrap();
        for _ in 0..3 {
            registry.register(toy_model(), "test").await.unwrap();
        }
        // Version 1 went to production on registration: no history to roll back along.
        assert_eq!(registry.rollback_target("toy").await.unwrap(), None);
        registry
            .promote_by("toy", 3, "promoted", "trainer", 10)
            .await
            .unwrap();
        assert_eq!(
            registry.rollback_target("toy").await.unwrap(),
            Some(1),
            "{backend}"
        );
        registry.promote("toy", 2, "admin").await.unwrap();
        assert_eq!(registry.rollback_target("toy").await.unwrap(), Some(3));
        let rolled = registry
            .promote_by("toy", 3, "rolled_back", "admin", i64::MAX / 2)
            .await
            .unwrap();
        assert_eq!(rolled.status, Status::Production);
        assert_eq!(
            registry
                .production_of("toy")
                .await
                .unwrap()
                .map(|v| v.version),
            Some(3),
            "{backend}"
        );
        assert!(registry.production_of("nope").await.unwrap().is_none());
        assert_eq!(
            registry.version("toy", 2).await.unwrap().status,
            Status::Archived
        );
        let history = registry.promotions("toy").await.unwrap();
        assert_eq!(history.len(), 3, "{backend}");
        assert_eq!(
            (
                history[0].version,
                history[0].previous_version,
                history[0].action.as_str()
            ),
            (3, Some(2), "rolled_back")
        );
        // Promoting the production version again records nothing.
        registry.promote("toy", 3, "admin").await.unwrap();
        assert_eq!(registry.promotions("toy").await.unwrap().len(), 3);
        assert!(matches!(
            registry.rollback_target("nope").await.unwrap_err(),
            Error::UnknownModel(_)
        ));
    })
    .await;
}
