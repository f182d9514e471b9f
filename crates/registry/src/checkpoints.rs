//! The drift service's checkpoints: one row per consumer group holding its windows and the
//! offsets they stop at. The registry only stores the text; its format is the drift
//! service's.

use sqlx::Row;

use crate::{Registry, Result};

/// A stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub state: String,
    /// Unix time in milliseconds.
    pub updated_at: i64,
}

impl Registry {
    /// Replaces the checkpoint of `group` (one statement: a reader sees the old one or the new
    /// one, never a mix).
    pub async fn save_checkpoint(&self, group: &str, state: &str, updated_at: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO drift_checkpoints (consumer_group, state, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (consumer_group) DO UPDATE SET state = excluded.state, \
             updated_at = excluded.updated_at",
        )
        .bind(group)
        .bind(state)
        .bind(updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The checkpoint of `group`, if one was saved.
    pub async fn checkpoint(&self, group: &str) -> Result<Option<Checkpoint>> {
        let row = sqlx::query(
            "SELECT state, updated_at FROM drift_checkpoints WHERE consumer_group = $1",
        )
        .bind(group)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some(Checkpoint {
                state: row.try_get("state")?,
                updated_at: row.try_get("updated_at")?,
            })),
            None => Ok(None),
        }
    }

    /// Forgets the checkpoint of `group` (the service then starts from empty windows).
    pub async fn delete_checkpoint(&self, group: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM drift_checkpoints WHERE consumer_group = $1")
            .bind(group)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
