-- The drift service's state at a consumer position: its windows and the next offset of every
-- partition, written together, so a restarted service resumes exactly where its state stops.
CREATE TABLE drift_checkpoints (
    -- The Kafka consumer group of the drift service.
    consumer_group TEXT NOT NULL PRIMARY KEY,
    -- JSON: {"offsets": {...}, "models": {...}} (format of vigie-drift-service's checkpoint).
    state TEXT NOT NULL,
    -- Unix time in milliseconds.
    updated_at BIGINT NOT NULL
);
