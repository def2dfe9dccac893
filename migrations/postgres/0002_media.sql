-- Media derivation: probe results, proxy and poster objects, clips.
ALTER TABLE recordings ADD COLUMN media TEXT;
ALTER TABLE recordings ADD COLUMN media_error TEXT;
ALTER TABLE recordings ADD COLUMN media_warning TEXT;
ALTER TABLE recordings ADD COLUMN proxy_key TEXT;
ALTER TABLE recordings ADD COLUMN proxy_sha256 TEXT;
ALTER TABLE recordings ADD COLUMN proxy_size BIGINT;
ALTER TABLE recordings ADD COLUMN proxy_type TEXT;
ALTER TABLE recordings ADD COLUMN poster_key TEXT;
ALTER TABLE recordings ADD COLUMN poster_sha256 TEXT;
ALTER TABLE recordings ADD COLUMN poster_size BIGINT;
ALTER TABLE recordings ADD COLUMN media_ready_at BIGINT;

CREATE TABLE clips (
    id              TEXT PRIMARY KEY,
    recording_id    TEXT NOT NULL REFERENCES recordings (id),
    start_ms        BIGINT NOT NULL,
    end_ms          BIGINT NOT NULL,
    accurate        BOOLEAN NOT NULL,
    reason          TEXT NOT NULL,
    actor           TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    object_key      TEXT,
    sha256          TEXT,
    size            BIGINT,
    content_type    TEXT,
    error           TEXT,
    created_at      BIGINT NOT NULL,
    finished_at     BIGINT
);
CREATE INDEX clips_recording ON clips (recording_id, created_at);
