-- evidenced catalog, PostgreSQL. Times are integer microseconds since the Unix epoch, UTC.
-- Raw dock path bytes are BYTEAs (names need not be UTF-8); sort keys are NOT NULL.

CREATE TABLE recordings (
    id              TEXT PRIMARY KEY,
    sha256          TEXT NOT NULL UNIQUE,
    size            BIGINT NOT NULL,
    object_key      TEXT NOT NULL,
    manifest_key    TEXT NOT NULL,
    original_name   TEXT NOT NULL,
    extension       TEXT NOT NULL,
    device          TEXT,
    officer         TEXT,
    unit            TEXT,
    started_at      BIGINT,
    ended_at        BIGINT,
    duration_ms     BIGINT,
    gps_lat         DOUBLE PRECISION,
    gps_lon         DOUBLE PRECISION,
    case_ids        TEXT NOT NULL DEFAULT '[]',
    category        TEXT NOT NULL DEFAULT 'uncategorized',
    classification  TEXT NOT NULL DEFAULT 'normal',
    needs_review    BOOLEAN NOT NULL DEFAULT FALSE,
    review_reasons  TEXT NOT NULL DEFAULT '[]',
    attribution     TEXT NOT NULL DEFAULT '{}',
    state           TEXT NOT NULL DEFAULT 'archived',
    media_state     TEXT NOT NULL DEFAULT 'pending',
    archived_at     BIGINT NOT NULL,
    sort_at         BIGINT NOT NULL,
    node            TEXT NOT NULL
);
CREATE INDEX recordings_sort ON recordings (sort_at DESC, id DESC);
CREATE INDEX recordings_officer ON recordings (officer, sort_at DESC);
CREATE INDEX recordings_device ON recordings (device, sort_at DESC);
CREATE INDEX recordings_unit ON recordings (unit, sort_at DESC);

CREATE TABLE sightings (
    id              TEXT PRIMARY KEY,
    recording_id    TEXT REFERENCES recordings (id),
    node            TEXT NOT NULL,
    dock            TEXT NOT NULL,
    path            BYTEA NOT NULL,
    path_display    TEXT NOT NULL,
    dev             BIGINT NOT NULL,
    ino             BIGINT NOT NULL,
    size            BIGINT NOT NULL,
    mtime_ns        BIGINT NOT NULL,
    ctime_ns        BIGINT NOT NULL,
    state           TEXT NOT NULL,
    object_key      TEXT,
    upload_id       TEXT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    seen_at         BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    release_after   BIGINT,
    released_at     BIGINT,
    UNIQUE (dock, path, dev, ino, size, mtime_ns, ctime_ns)
);
CREATE INDEX sightings_state ON sightings (node, state, next_attempt_at);
CREATE INDEX sightings_recording ON sightings (recording_id);

CREATE TABLE custody_events (
    seq             BIGINT PRIMARY KEY,
    at              BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    actor           TEXT NOT NULL,
    recording_id    TEXT,
    details         TEXT NOT NULL,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL UNIQUE
);
CREATE INDEX custody_recording ON custody_events (recording_id, seq);

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    dedupe_key      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    priority        BIGINT NOT NULL DEFAULT 0,
    state           TEXT NOT NULL DEFAULT 'queued',
    run_at          BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_token     TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (kind, dedupe_key)
);
CREATE INDEX jobs_claim ON jobs (state, run_at);

CREATE TABLE principals (
    name            TEXT PRIMARY KEY,
    role            TEXT NOT NULL,
    unit            TEXT NOT NULL DEFAULT '',
    officer         TEXT,
    token_sha256    TEXT NOT NULL UNIQUE,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT,
    revoked_at      BIGINT
);
