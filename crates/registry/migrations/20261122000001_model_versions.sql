-- Model versions: one row per trained and registered model version.
-- Portable SQL: the same file migrates SQLite and PostgreSQL.
CREATE TABLE model_versions (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    -- production | candidate | archived
    status TEXT NOT NULL,
    task TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    -- File name inside the registry's artifact folder.
    artifact_path TEXT NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    artifact_bytes BIGINT NOT NULL,
    threshold DOUBLE PRECISION NOT NULL,
    -- JSON: {"validation": {...}, "holdout": {...}}
    metrics TEXT NOT NULL,
    holdout_roc_auc DOUBLE PRECISION NOT NULL,
    holdout_f1 DOUBLE PRECISION NOT NULL,
    fit_seconds DOUBLE PRECISION NOT NULL,
    -- Who or what asked for this version: "cli", "trainer", ...
    triggered_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE INDEX model_versions_by_status ON model_versions (name, status);
