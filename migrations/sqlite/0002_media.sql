-- Media derivation: probe results, proxy and poster objects, clips.
ALTER TABLE recordings ADD COLUMN media TEXT;
ALTER TABLE recordings ADD COLUMN media_error TEXT;
ALTER TABLE recordings ADD COLUMN media_warning TEXT;
ALTER TABLE recordings ADD COLUMN proxy_key TEXT;
ALTER TABLE recordings ADD COLUMN proxy_sha256 TEXT;
ALTER TABLE recordings ADD COLUMN proxy_size INTEGER;
ALTER TABLE recordings ADD COLUMN proxy_type TEXT;
ALTER TABLE recordings ADD COLUMN poster_key TEXT;
ALTER TABLE recordings ADD COLUMN poster_sha256 TEXT;
ALTER TABLE recordings ADD COLUMN poster_size INTEGER;
ALTER TABLE recordings ADD COLUMN media_ready_at INTEGER;

CREATE TABLE clips (
    id              TEXT PRIMARY KEY,
    recording_id    TEXT NOT NULL REFERENCES recordings (id),
    start_ms        INTEGER NOT NULL,
    end_ms          INTEGER NOT NULL,
    accurate        INTEGER NOT NULL,
    reason          TEXT NOT NULL,
    actor           TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    object_key      TEXT,
    sha256          TEXT,
    size            INTEGER,
    content_type    TEXT,
    error           TEXT,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER
);
CREATE INDEX clips_recording ON clips (recording_id, created_at);
