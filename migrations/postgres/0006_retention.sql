-- The destruction queue. A recording enters it when its retention ends ('pending'), leaves it
-- destroyed (objects deleted, the recording row kept as the tombstone) or cancelled (a hold, an
-- open case or a longer category came first).
CREATE TABLE destructions (
    id              TEXT PRIMARY KEY,
    recording_id    TEXT NOT NULL REFERENCES recordings (id),
    state           TEXT NOT NULL,                 -- pending | destroyed | cancelled
    rule            TEXT NOT NULL,                 -- category and period, e.g. "uncategorized: 184d"
    retention_until BIGINT NOT NULL,
    queued_at       BIGINT NOT NULL,
    eligible_at     BIGINT NOT NULL,              -- queued_at + grace
    approvals       TEXT NOT NULL DEFAULT '[]',    -- [{"archivist","at","reason"}]
    approval_count  BIGINT NOT NULL DEFAULT 0,
    finished_at     BIGINT,
    objects         TEXT NOT NULL DEFAULT '[]'     -- store keys deleted
);
CREATE INDEX destructions_state ON destructions (state, eligible_at);
CREATE UNIQUE INDEX destructions_one_pending ON destructions (recording_id) WHERE state = 'pending';
CREATE INDEX recordings_retention ON recordings (state, category, archived_at);
