-- Model versions of any task: the classification figures become optional (a regression has no
-- ROC AUC) and a regression's holdout MAE joins them. SQLite cannot drop a NOT NULL, so the
-- table is rebuilt; portable SQL, the same file migrates SQLite and PostgreSQL.
CREATE TABLE model_versions_any_task (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    -- production | candidate | archived
    status TEXT NOT NULL,
    -- binary_classification | regression
    task TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    -- File name inside the registry's artifact folder.
    artifact_path TEXT NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    artifact_bytes BIGINT NOT NULL,
    -- The classification's decision threshold; 0 for a regression.
    threshold DOUBLE PRECISION NOT NULL,
    -- JSON: {"validation": {...}, "holdout": {...}}, the task's figures
    metrics TEXT NOT NULL,
    -- Classification only.
    holdout_roc_auc DOUBLE PRECISION,
    holdout_f1 DOUBLE PRECISION,
    -- Regression only.
    holdout_mae DOUBLE PRECISION,
    fit_seconds DOUBLE PRECISION NOT NULL,
    -- Who or what asked for this version: "cli", "trainer", ...
    triggered_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (name, version)
);

INSERT INTO model_versions_any_task (
    name, version, status, task, algorithm, spec_hash, artifact_path, artifact_sha256,
    artifact_bytes, threshold, metrics, holdout_roc_auc, holdout_f1, holdout_mae, fit_seconds,
    triggered_by, created_at)
SELECT name, version, status, task, algorithm, spec_hash, artifact_path, artifact_sha256,
    artifact_bytes, threshold, metrics, holdout_roc_auc, holdout_f1, NULL, fit_seconds,
    triggered_by, created_at
FROM model_versions;

DROP TABLE model_versions;
ALTER TABLE model_versions_any_task RENAME TO model_versions;
CREATE INDEX model_versions_by_status ON model_versions (name, status);
