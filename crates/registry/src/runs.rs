//! The trainer's records: retraining runs (a state machine persisted at every step), the alerts
//! its webhook saw (once per fingerprint and start), and the history of promotions that
//! rollbacks follow.

use std::str::FromStr;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Error, Registry, Result, Status};

/// Where a retraining run is: triggered -> training -> evaluated -> promoted | rejected |
/// failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Triggered,
    Training,
    Evaluated,
    Promoted,
    Rejected,
    Failed,
}

impl RunState {
    pub const ALL: [RunState; 6] = [
        RunState::Triggered,
        RunState::Training,
        RunState::Evaluated,
        RunState::Promoted,
        RunState::Rejected,
        RunState::Failed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            RunState::Triggered => "triggered",
            RunState::Training => "training",
            RunState::Evaluated => "evaluated",
            RunState::Promoted => "promoted",
            RunState::Rejected => "rejected",
            RunState::Failed => "failed",
        }
    }

    /// Whether the run is over.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            RunState::Promoted | RunState::Rejected | RunState::Failed
        )
    }

    /// The states a run may go to from this one.
    pub fn can_go_to(&self, next: RunState) -> bool {
        use RunState::*;
        matches!(
            (self, next),
            (Triggered, Training | Failed)
                | (Training, Evaluated | Failed)
                | (Evaluated, Promoted | Rejected | Failed)
        )
    }
}

impl FromStr for RunState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RunState::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::Corrupt(format!("unknown run state {s:?}")))
    }
}

/// One retraining run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Run {
    pub id: String,
    pub model: String,
    pub state: RunState,
    /// `alert` or `manual`.
    pub trigger: String,
    /// The alert (name and fingerprint) or the admin that started it.
    pub triggered_by: String,
    pub production_version: Option<u32>,
    pub candidate_version: Option<u32>,
    /// Training data summary, holdout figures, the bootstrap comparison (JSON).
    pub detail: serde_json::Value,
    pub error: Option<String>,
    /// Unix time in milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// What [`Registry::start_run`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    /// The run is recorded, in state `triggered`.
    Started(Run),
    /// Another run of the model is not finished: nothing was recorded.
    Busy(Run),
}

/// A change of a run's state, with what the step learnt.
#[derive(Debug, Clone, Default)]
pub struct RunUpdate {
    pub candidate_version: Option<u32>,
    /// Merged into the run's detail (top-level keys replace).
    pub detail: Option<serde_json::Value>,
    pub error: Option<String>,
}

/// An alert as the webhook saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SeenAlert {
    pub fingerprint: String,
    pub starts_at: String,
    pub alertname: String,
    pub model: Option<String>,
    pub action: String,
    pub run_id: Option<String>,
    pub received_at: i64,
}

/// One move of a version to production.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Promotion {
    pub model: String,
    pub version: u32,
    pub previous_version: Option<u32>,
    /// `promoted` or `rolled_back`.
    pub action: String,
    pub by: String,
    pub at: i64,
}

/// The columns read into a [`Run`], as a literal for `concat!` (sqlx takes only literal SQL).
macro_rules! run_columns {
    () => {
        "id, model, state, trigger_kind, triggered_by, production_version, candidate_version, \
         detail, error, created_at, updated_at, finished_at"
    };
}

fn version_of(v: Option<i64>) -> Result<Option<u32>> {
    v.map(|v| u32::try_from(v).map_err(|_| Error::Corrupt(format!("version {v}"))))
        .transpose()
}

fn run_of_row(row: &AnyRow) -> Result<Run> {
    let state: String = row.try_get("state")?;
    let detail: String = row.try_get("detail")?;
    Ok(Run {
        id: row.try_get("id")?,
        model: row.try_get("model")?,
        state: state.parse()?,
        trigger: row.try_get("trigger_kind")?,
        triggered_by: row.try_get("triggered_by")?,
        production_version: version_of(row.try_get("production_version")?)?,
        candidate_version: version_of(row.try_get("candidate_version")?)?,
        detail: serde_json::from_str(&detail)
            .map_err(|e| Error::Corrupt(format!("run detail: {e}")))?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

impl Registry {
    /// Records a new run of `model` in state `triggered`, unless one of its runs is not finished
    /// (a unique index holds this across processes).
    pub async fn start_run(
        &self,
        id: &str,
        model: &str,
        trigger: &str,
        triggered_by: &str,
        production_version: Option<u32>,
        now_ms: i64,
    ) -> Result<Started> {
        let inserted = sqlx::query(
            "INSERT INTO retraining_runs (id, model, state, trigger_kind, triggered_by, \
             production_version, candidate_version, detail, error, created_at, updated_at, \
             finished_at) VALUES ($1, $2, 'triggered', $3, $4, $5, NULL, '{}', NULL, $6, $6, NULL)",
        )
        .bind(id)
        .bind(model)
        .bind(trigger)
        .bind(triggered_by)
        .bind(production_version.map(i64::from))
        .bind(now_ms)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(Started::Started(self.run(id).await?.ok_or_else(|| {
                Error::Corrupt(format!("run {id} vanished after its insertion"))
            })?)),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                match self.active_run(model).await? {
                    Some(run) => Ok(Started::Busy(run)),
                    // Finished in between: try once more.
                    None => {
                        Box::pin(self.start_run(
                            id,
                            model,
                            trigger,
                            triggered_by,
                            production_version,
                            now_ms,
                        ))
                        .await
                    }
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Moves a run to `next`, if its current state allows it. Fails with
    /// [`Error::BadTransition`] otherwise (the run is left as it was).
    pub async fn advance_run(
        &self,
        id: &str,
        next: RunState,
        update: RunUpdate,
        now_ms: i64,
    ) -> Result<Run> {
        let run = self
            .run(id)
            .await?
            .ok_or_else(|| Error::UnknownRun(id.to_string()))?;
        if !run.state.can_go_to(next) {
            return Err(Error::BadTransition {
                run: id.to_string(),
                from: run.state.as_str(),
                to: next.as_str(),
            });
        }
        let mut detail = run.detail.clone();
        if let (Some(serde_json::Value::Object(add)), serde_json::Value::Object(into)) =
            (update.detail, &mut detail)
        {
            into.extend(add);
        }
        let done = sqlx::query(
            "UPDATE retraining_runs SET state = $1, candidate_version = $2, detail = $3, \
             error = $4, updated_at = $5, finished_at = $6 WHERE id = $7 AND state = $8",
        )
        .bind(next.as_str())
        .bind(
            update
                .candidate_version
                .or(run.candidate_version)
                .map(i64::from),
        )
        .bind(detail.to_string())
        .bind(update.error.or(run.error))
        .bind(now_ms)
        .bind(next.is_final().then_some(now_ms))
        .bind(id)
        .bind(run.state.as_str())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() != 1 {
            return Err(Error::BadTransition {
                run: id.to_string(),
                from: run.state.as_str(),
                to: next.as_str(),
            });
        }
        self.run(id)
            .await?
            .ok_or_else(|| Error::UnknownRun(id.to_string()))
    }

    pub async fn run(&self, id: &str) -> Result<Option<Run>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM retraining_runs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(run_of_row).transpose()
    }

    /// The unfinished run of `model`, if any.
    pub async fn active_run(&self, model: &str) -> Result<Option<Run>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM retraining_runs WHERE model = $1 AND finished_at IS NULL"
        ))
        .bind(model)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(run_of_row).transpose()
    }

    /// The latest runs, newest first, of one model or of all.
    pub async fn runs(&self, model: Option<&str>, limit: u32) -> Result<Vec<Run>> {
        let rows = match model {
            Some(model) => {
                sqlx::query(concat!(
                    "SELECT ",
                    run_columns!(),
                    " FROM retraining_runs WHERE model = $1 \
                     ORDER BY created_at DESC, id DESC LIMIT $2"
                ))
                .bind(model)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    run_columns!(),
                    " FROM retraining_runs \
                     ORDER BY created_at DESC, id DESC LIMIT $1"
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(run_of_row).collect()
    }

    /// Marks every unfinished run failed with `reason` (a trainer that restarts cannot resume
    /// a training that died with it). Returns how many.
    pub async fn fail_unfinished_runs(&self, reason: &str, now_ms: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE retraining_runs SET state = 'failed', error = $1, updated_at = $2, \
             finished_at = $2 WHERE finished_at IS NULL",
        )
        .bind(reason)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Records an alert the first time its (fingerprint, startsAt) is seen: true then, false
    /// for a repeat (which changes nothing).
    pub async fn record_alert(&self, alert: &SeenAlert) -> Result<bool> {
        Ok(self
            .record_alerts(std::slice::from_ref(alert))
            .await?
            .first()
            .copied()
            .unwrap_or(false))
    }

    /// [`Registry::record_alert`] for every alert of a notification, in one transaction: for
    /// each, whether it was seen for the first time.
    pub async fn record_alerts(&self, alerts: &[SeenAlert]) -> Result<Vec<bool>> {
        let mut tx = self.write_transaction().await?;
        let mut first = Vec::with_capacity(alerts.len());
        for alert in alerts {
            let inserted = sqlx::query(
                "INSERT INTO alerts_seen (fingerprint, starts_at, alertname, model, action, \
                 run_id, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (fingerprint, starts_at) DO NOTHING",
            )
            .bind(&alert.fingerprint)
            .bind(&alert.starts_at)
            .bind(&alert.alertname)
            .bind(alert.model.as_deref())
            .bind(&alert.action)
            .bind(alert.run_id.as_deref())
            .bind(alert.received_at)
            .execute(&mut *tx)
            .await?;
            first.push(inserted.rows_affected() == 1);
        }
        tx.commit().await?;
        Ok(first)
    }

    /// Sets what the trainer did about a recorded alert.
    pub async fn set_alert_action(
        &self,
        fingerprint: &str,
        starts_at: &str,
        action: &str,
        run_id: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE alerts_seen SET action = $1, run_id = $2 WHERE fingerprint = $3 AND starts_at = $4",
        )
        .bind(action)
        .bind(run_id)
        .bind(fingerprint)
        .bind(starts_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest alerts seen, newest first.
    pub async fn alerts_seen(&self, limit: u32) -> Result<Vec<SeenAlert>> {
        let rows = sqlx::query(
            "SELECT fingerprint, starts_at, alertname, model, action, run_id, received_at \
             FROM alerts_seen ORDER BY received_at DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SeenAlert {
                    fingerprint: row.try_get("fingerprint")?,
                    starts_at: row.try_get("starts_at")?,
                    alertname: row.try_get("alertname")?,
                    model: row.try_get("model")?,
                    action: row.try_get("action")?,
                    run_id: row.try_get("run_id")?,
                    received_at: row.try_get("received_at")?,
                })
            })
            .collect()
    }

    /// Makes `version` the production version of `name` and records who did it, in one
    /// transaction; the version it replaces is archived. Promoting the production version again
    /// changes and records nothing.
    pub async fn promote_by(
        &self,
        name: &str,
        version: u32,
        action: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<crate::ModelVersion> {
        let target = self.version(name, version).await?;
        if target.status == Status::Production {
            return Ok(target);
        }
        let previous = self.production_of(name).await?.map(|v| v.version);
        let mut tx = self.write_transaction().await?;
        sqlx::query(
            "UPDATE model_versions SET status = 'archived' \
             WHERE name = $1 AND status = 'production'",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE model_versions SET status = 'production' WHERE name = $1 AND version = $2",
        )
        .bind(name)
        .bind(i64::from(version))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO model_promotions (model, version, previous_version, action, by_whom, at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(name)
        .bind(i64::from(version))
        .bind(previous.map(i64::from))
        .bind(action)
        .bind(by)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.version(name, version).await
    }

    /// The promotions of `name`, newest first.
    pub async fn promotions(&self, name: &str) -> Result<Vec<Promotion>> {
        let rows = sqlx::query(
            "SELECT model, version, previous_version, action, by_whom, at FROM model_promotions \
             WHERE model = $1 ORDER BY at DESC",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Promotion {
                    model: row.try_get("model")?,
                    version: version_of(Some(row.try_get("version")?))?.unwrap_or_default(),
                    previous_version: version_of(row.try_get("previous_version")?)?,
                    action: row.try_get("action")?,
                    by: row.try_get("by_whom")?,
                    at: row.try_get("at")?,
                })
            })
            .collect()
    }

    /// The version a rollback of `name` returns to: the one the current production version
    /// replaced, by the latest promotion to it. None when the history does not say.
    pub async fn rollback_target(&self, name: &str) -> Result<Option<u32>> {
        let Some(current) = self.production_of(name).await? else {
            return Err(Error::UnknownModel(name.to_string()));
        };
        Ok(self
            .promotions(name)
            .await?
            .into_iter()
            .find(|p| p.version == current.version)
            .and_then(|p| p.previous_version))
    }
}
