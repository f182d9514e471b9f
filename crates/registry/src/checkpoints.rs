//! The drift service's checkpoints: rows of text under a key (a consumer group's partition,
//! `group/partition`; a whole group's, from before partitions were saved apart) holding
//! windows and the offsets they stop at. The registry only stores the text; its format is the
//! drift service's.

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

    /// Every checkpoint whose key starts with `prefix`, by key.
    pub async fn checkpoints_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Checkpoint)>> {
        let rows = sqlx::query(
            "SELECT consumer_group, state, updated_at FROM drift_checkpoints \
             WHERE substr(consumer_group, 1, length($1)) = $1 ORDER BY consumer_group",
        )
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok((
                    row.try_get("consumer_group")?,
                    Checkpoint {
                        state: row.try_get("state")?,
                        updated_at: row.try_get("updated_at")?,
                    },
                ))
            })
            .collect()
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
