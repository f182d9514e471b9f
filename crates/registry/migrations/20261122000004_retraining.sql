-- The trainer's retraining runs: each a state machine, triggered -> training -> evaluated ->
-- promoted | rejected | failed, persisted at every step.
CREATE TABLE retraining_runs (
    -- A UUID v7 (time-ordered).
    id TEXT NOT NULL PRIMARY KEY,
    model TEXT NOT NULL,
    state TEXT NOT NULL,
    -- 'alert' or 'manual'; and who: the alert's name and fingerprint, or an admin's name.
    trigger_kind TEXT NOT NULL,
    triggered_by TEXT NOT NULL,
    -- The production version when the run started, and the candidate it registered.
    production_version BIGINT,
    candidate_version BIGINT,
    -- JSON: training data summary, holdout figures of both models, the bootstrap comparison.
    detail TEXT NOT NULL,
    error TEXT,
    -- Unix time in milliseconds.
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX retraining_runs_by_model ON retraining_runs (model, created_at);
-- Single flight, across processes: at most one unfinished run per model.
CREATE UNIQUE INDEX retraining_runs_one_active ON retraining_runs (model) WHERE finished_at IS NULL;

-- Every alert the trainer's webhook received, once per (fingerprint, startsAt): Alertmanager
-- sends the same alert again on repeat_interval and when its group changes.
CREATE TABLE alerts_seen (
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    alertname TEXT NOT NULL,
    model TEXT,
    -- What the trainer did: started, busy, cooldown, resolved, ignored.
    action TEXT NOT NULL,
    run_id TEXT,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
);

-- Who moved which version to production, and from which: the history rollbacks follow.
CREATE TABLE model_promotions (
    model TEXT NOT NULL,
    version BIGINT NOT NULL,
    previous_version BIGINT,
    -- 'promoted' or 'rolled_back'.
    action TEXT NOT NULL,
    by_whom TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX model_promotions_by_model ON model_promotions (model, at);
