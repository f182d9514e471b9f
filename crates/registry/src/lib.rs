//! The model registry: model versions in SQL (SQLite by default, PostgreSQL when the database
//! URL says so) and their artifacts in a folder.
//!
//! **Invariant:** a version is visible in the registry only once its artifact is completely on
//! disk, and a failed registration leaves both the table and the folder as they were.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use vigie_core::artifact::{Artifact, Metrics};
use vigie_core::train::TrainedModel;

pub mod checkpoints;
pub mod runs;
#[cfg(feature = "testing")]
pub mod testing;
pub mod users;

pub use checkpoints::Checkpoint;
pub use runs::{Promotion, Run, RunState, RunUpdate, SeenAlert, Started};
pub use users::{Role, User};

/// Lifecycle of a model version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Serves predictions; at most one version per model name.
    Production,
    /// Registered, not serving.
    Candidate,
    /// Served before, replaced since.
    Archived,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Production => "production",
            Status::Candidate => "candidate",
            Status::Archived => "archived",
        }
    }
}

impl FromStr for Status {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "production" => Ok(Status::Production),
            "candidate" => Ok(Status::Candidate),
            "archived" => Ok(Status::Archived),
            other => Err(Error::Corrupt(format!("unknown status {other:?}"))),
        }
    }
}

/// One registered model version, as the registry table holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: u32,
    pub status: Status,
    pub task: String,
    pub algorithm: String,
    pub spec_hash: String,
    pub artifact_path: PathBuf,
    pub artifact_sha256: String,
    pub artifact_bytes: u64,
    pub threshold: f64,
    pub metrics: Metrics,
    pub fit_seconds: f64,
    pub triggered_by: String,
    pub created_at: DateTime<Utc>,
}

impl ModelVersion {
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// A model reference as users write it: `NAME` (the production version, or the latest) or
/// `NAME@VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub name: String,
    pub version: Option<u32>,
}

impl FromStr for ModelRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (name, version) = match s.split_once('@') {
            Some((name, v)) => {
                let version = v.parse::<u32>().ok().filter(|&v| v > 0).ok_or_else(|| {
                    Error::BadReference(format!("{s:?}: version {v:?} is not a positive integer"))
                })?;
                (name, Some(version))
            }
            None => (s, None),
        };
        if name.is_empty() {
            return Err(Error::BadReference(format!("{s:?}: empty model name")));
        }
        Ok(ModelRef {
            name: name.to_string(),
            version,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the artifact folder {}: {source}", path.display())]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no model named {0:?} in the registry")]
    UnknownModel(String),
    #[error("{name} has no version {version}")]
    UnknownVersion { name: String, version: u32 },
    #[error("invalid model reference {0}; write NAME or NAME@VERSION")]
    BadReference(String),
    #[error("the registry holds an unreadable row: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Artifact(#[from] vigie_core::Error),
    #[error("a user named {0:?} already exists")]
    UserExists(String),
    #[error("no user named {0:?}")]
    UnknownUser(String),
    #[error("{0:?} is the last admin: create another admin before deleting this one")]
    LastAdmin(String),
    #[error("invalid user name: {0}")]
    BadUserName(String),
    #[error("no retraining run {0:?}")]
    UnknownRun(String),
    #[error("run {run} cannot go from {from} to {to}")]
    BadTransition {
        run: String,
        from: &'static str,
        to: &'static str,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The registry: a database pool and the artifact folder.
#[derive(Debug, Clone)]
pub struct Registry {
    pool: AnyPool,
    artifacts: PathBuf,
    /// SQLite: writes take the write lock when their transaction begins (`BEGIN IMMEDIATE`),
    /// so that two writers wait for each other (the busy timeout) instead of one failing with
    /// "database is locked" when its read lock cannot be upgraded.
    sqlite: bool,
}

/// The columns read into a [`ModelVersion`], as a literal for `concat!` (sqlx takes only literal SQL).
macro_rules! columns {
    () => {
        "name, version, status, task, algorithm, spec_hash, artifact_path, artifact_sha256, \
         artifact_bytes, threshold, metrics, fit_seconds, triggered_by, created_at"
    };
}

impl Registry {
    /// Connects to `database_url` (`sqlite://...` or `postgres://...`), applies the
    /// migrations, and keeps artifacts in `artifacts` (created if needed).
    pub async fn open(database_url: &str, artifacts: &Path) -> Result<Self> {
        sqlx::any::install_default_drivers();
        std::fs::create_dir_all(artifacts).map_err(|source| Error::Folder {
            path: artifacts.to_path_buf(),
            source,
        })?;
        if let Some(file) = sqlite_file(database_url)
            && let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|source| Error::Folder {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let url = with_sqlite_create(database_url);
        let sqlite = sqlite_file(database_url).is_some();
        let pool = AnyPoolOptions::new()
            .max_connections(5)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // Readers never wait for the writer, and a writer waits up to 10 s for
                        // another: the write-ahead log is kept in the database file.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Registry {
            pool,
            artifacts: artifacts.to_path_buf(),
            sqlite,
        })
    }

    /// A transaction that will write: on SQLite it takes the write lock at once.
    pub(crate) async fn write_transaction(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let begin = if self.sqlite {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN"
        };
        Ok(self.pool.begin_with(begin).await?)
    }

    pub fn artifacts_dir(&self) -> &Path {
        &self.artifacts
    }

    /// Gives a trained model the next version number of its name, writes its artifact and
    /// records it. A version goes to production when its model has none there (its first
    /// version, in practice); otherwise it is a candidate until promoted.
    pub async fn register(
        &self,
        model: TrainedModel,
        triggered_by: &str,
    ) -> Result<(ModelVersion, Artifact)> {
        let mut tx = self.write_transaction().await?;
        let latest: Option<i64> =
            sqlx::query("SELECT MAX(version) FROM model_versions WHERE name = $1")
                .bind(&model.spec.name)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        let has_production: i64 = sqlx::query(
            "SELECT COUNT(*) FROM model_versions WHERE name = $1 AND status = 'production'",
        )
        .bind(&model.spec.name)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let version = u32::try_from(latest.unwrap_or(0) + 1)
            .map_err(|_| Error::Corrupt("version overflow".into()))?;
        let status = if has_production == 0 {
            Status::Production
        } else {
            Status::Candidate
        };
        let artifact = Artifact::new(model, version, Utc::now());
        let stem = format!("{}-v{}", artifact.name, artifact.version);
        let written = artifact.write_atomic(&self.artifacts, &stem)?;

        let metrics = serde_json::to_string(&artifact.metrics).expect("metrics always serialise");
        let insert = sqlx::query(concat!(
            "INSERT INTO model_versions (",
            columns!(),
            ", holdout_roc_auc, holdout_f1, holdout_mae) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        ))
        // Not a cached prepared statement: sqlx keys its cache on the SQL text alone, and the
        // holdout figures are absent or present by task. On PostgreSQL a statement prepared
        // for a regression's row (no ROC AUC) refused a classification's ROC AUC next on the
        // same connection (22P03, "incorrect binary data format in bind parameter 15"; a test
        // in tests/registry.rs registers both kinds in turn).
        .persistent(false)
        .bind(&artifact.name)
        .bind(i64::from(version))
        .bind(status.as_str())
        .bind(artifact.task.as_str())
        .bind(&artifact.algorithm)
        .bind(&artifact.spec_hash)
        .bind(file_name(&written.path))
        .bind(&written.sha256)
        .bind(written.bytes as i64)
        .bind(artifact.threshold)
        .bind(&metrics)
        .bind(artifact.training.fit_seconds)
        .bind(triggered_by)
        .bind(artifact.created_at.to_rfc3339())
        .bind(artifact.metrics.holdout.as_binary().map(|m| m.roc_auc))
        .bind(artifact.metrics.holdout.as_binary().map(|m| m.f1))
        .bind(artifact.metrics.holdout.as_regression().map(|m| m.mae))
        .execute(&mut *tx)
        .await;
        let committed = match insert {
            Ok(_) => tx.commit().await,
            Err(e) => Err(e),
        };
        if let Err(e) = committed {
            // The row is not there: the file must not be either.
            let _ = std::fs::remove_file(&written.path);
            return Err(e.into());
        }
        let row = self.version(&artifact.name, version).await?;
        Ok((row, artifact))
    }

    /// Every version of every model, by name then version.
    pub async fn list(&self) -> Result<Vec<ModelVersion>> {
        let rows = sqlx::query(concat!("SELECT ", columns!(), " FROM model_versions"))
            .fetch_all(&self.pool)
            .await?;
        self.sorted_versions(&rows)
    }

    /// Rows as versions, by name then version; sorted here, not in SQL: PostgreSQL's collation
    /// and SQLite's byte order differ.
    fn sorted_versions(&self, rows: &[AnyRow]) -> Result<Vec<ModelVersion>> {
        let mut versions = rows
            .iter()
            .map(|r| self.version_of_row(r))
            .collect::<Result<Vec<_>>>()?;
        versions.sort_by(|a, b| {
            a.name
                .as_bytes()
                .cmp(b.name.as_bytes())
                .then(a.version.cmp(&b.version))
        });
        Ok(versions)
    }

    /// One version of a model.
    pub async fn version(&self, name: &str, version: u32) -> Result<ModelVersion> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM model_versions WHERE name = $1 AND version = $2"
        ))
        .bind(name)
        .bind(i64::from(version))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => self.version_of_row(&row),
            None if self.has_model(name).await? => Err(Error::UnknownVersion {
                name: name.to_string(),
                version,
            }),
            None => Err(Error::UnknownModel(name.to_string())),
        }
    }

    async fn has_model(&self, name: &str) -> Result<bool> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM model_versions WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(n > 0)
    }

    /// Resolves `NAME@VERSION`, or `NAME` to its production version (its latest if none is in
    /// production).
    pub async fn resolve(&self, reference: &ModelRef) -> Result<ModelVersion> {
        if let Some(version) = reference.version {
            return self.version(&reference.name, version).await;
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM model_versions WHERE name = $1 \
             ORDER BY CASE WHEN status = 'production' THEN 0 ELSE 1 END, version DESC LIMIT 1"
        ))
        .bind(&reference.name)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => self.version_of_row(&row),
            None => Err(Error::UnknownModel(reference.name.clone())),
        }
    }

    /// Reads a version's artifact, checking the whole file against the sha256 the registry
    /// recorded and the artifact's own checks; an artifact that names another model or
    /// version is refused.
    pub fn load(&self, version: &ModelVersion) -> Result<Artifact> {
        let artifact = Artifact::read_verified(&version.artifact_path, &version.artifact_sha256)?;
        if artifact.name != version.name
            || artifact.version != version.version
            || artifact.spec_hash != version.spec_hash
        {
            return Err(vigie_core::Error::Artifact {
                path: version.artifact_path.clone(),
                message: format!(
                    "holds {} (spec {}), the registry expects {} (spec {})",
                    artifact.id(),
                    artifact.spec_hash,
                    version.id(),
                    version.spec_hash
                ),
            }
            .into());
        }
        Ok(artifact)
    }

    /// Makes `version` the production version of its model; the version it replaces is
    /// archived, and the move recorded as done by `by`. Promoting the production version again
    /// changes nothing.
    pub async fn promote(&self, name: &str, version: u32, by: &str) -> Result<ModelVersion> {
        self.promote_by(
            name,
            version,
            "promoted",
            by,
            chrono::Utc::now().timestamp_millis(),
        )
        .await
    }

    /// The production version of every model, by name. The services poll it: only those rows
    /// are read.
    pub async fn production(&self) -> Result<Vec<ModelVersion>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM model_versions WHERE status = 'production'"
        ))
        .fetch_all(&self.pool)
        .await?;
        self.sorted_versions(&rows)
    }

    /// The production version of `name`, if it has one.
    pub async fn production_of(&self, name: &str) -> Result<Option<ModelVersion>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM model_versions WHERE name = $1 AND status = 'production'"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.version_of_row(r)).transpose()
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn version_of_row(&self, row: &AnyRow) -> Result<ModelVersion> {
        let corrupt =
            |what: &str, e: &dyn std::fmt::Display| Error::Corrupt(format!("{what}: {e}"));
        let version: i64 = row.try_get("version")?;
        let bytes: i64 = row.try_get("artifact_bytes")?;
        let status: String = row.try_get("status")?;
        let metrics: String = row.try_get("metrics")?;
        let created_at: String = row.try_get("created_at")?;
        let artifact_path: String = row.try_get("artifact_path")?;
        Ok(ModelVersion {
            name: row.try_get("name")?,
            version: u32::try_from(version).map_err(|e| corrupt("version", &e))?,
            status: status.parse()?,
            task: row.try_get("task")?,
            algorithm: row.try_get("algorithm")?,
            spec_hash: row.try_get("spec_hash")?,
            // The row holds the file name: the folder is this registry's, wherever it runs.
            artifact_path: self.artifacts.join(artifact_path),
            artifact_sha256: row.try_get("artifact_sha256")?,
            artifact_bytes: u64::try_from(bytes).map_err(|e| corrupt("artifact_bytes", &e))?,
            threshold: row.try_get("threshold")?,
            metrics: serde_json::from_str(&metrics).map_err(|e| corrupt("metrics", &e))?,
            fit_seconds: row.try_get("fit_seconds")?,
            triggered_by: row.try_get("triggered_by")?,
            created_at: DateTime::parse_from_rfc3339(&created_at)
                .map_err(|e| corrupt("created_at", &e))?
                .with_timezone(&Utc),
        })
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The file behind a `sqlite:` URL, if it is one (not `:memory:`).
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// SQLite files are created on first use unless the URL sets a mode itself.
fn with_sqlite_create(url: &str) -> String {
    if sqlite_file(url).is_some() && !url.contains("mode=") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}mode=rwc")
    } else {
        url.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_references_parse() {
        assert_eq!(
            "baac-severity@3".parse::<ModelRef>().unwrap(),
            ModelRef {
                name: "baac-severity".into(),
                version: Some(3)
            }
        );
        assert_eq!("m".parse::<ModelRef>().unwrap().version, None);
        for bad in ["m@", "m@0", "m@x", "@2", ""] {
            assert!(
                bad.parse::<ModelRef>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn sqlite_urls() {
        assert_eq!(
            sqlite_file("sqlite://var/r.db"),
            Some(PathBuf::from("var/r.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://x@h/db"), None);
        assert_eq!(
            with_sqlite_create("sqlite://a.db"),
            "sqlite://a.db?mode=rwc"
        );
        assert_eq!(
            with_sqlite_create("sqlite://a.db?mode=ro"),
            "sqlite://a.db?mode=ro"
        );
    }
}
