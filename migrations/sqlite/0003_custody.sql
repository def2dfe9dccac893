-- Custody: node signing keys, signed checkpoints of the chain head, RFC 3161 time-stamps,
-- and the fixity schedule.

CREATE TABLE node_keys (
    key_id          TEXT PRIMARY KEY,          -- hex SHA-256 of the public key's SPKI DER
    node            TEXT NOT NULL,
    public_pem      TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);

CREATE TABLE checkpoints (
    id              TEXT PRIMARY KEY,
    node            TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    seq             INTEGER NOT NULL,          -- the chain head that was signed
    hash            TEXT NOT NULL,
    at              INTEGER NOT NULL,
    body            TEXT NOT NULL,             -- the exact signed bytes (canonical JSON)
    signature       TEXT NOT NULL,             -- base64 of the 64-byte Ed25519 signature
    object_key      TEXT NOT NULL
);
CREATE INDEX checkpoints_seq ON checkpoints (seq, at);

CREATE TABLE timestamps (
    id              TEXT PRIMARY KEY,
    subject         TEXT NOT NULL,             -- 'recording' or 'checkpoint'
    subject_id      TEXT NOT NULL,
    sha256          TEXT NOT NULL,             -- the message imprint
    token_key       TEXT NOT NULL,             -- the TimeStampResp (DER) in the store
    token_sha256    TEXT NOT NULL,
    gen_time        INTEGER NOT NULL,
    serial          TEXT NOT NULL,
    tsa             TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    UNIQUE (subject, subject_id)
);

ALTER TABLE recordings ADD COLUMN timestamped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE recordings ADD COLUMN fixity_checked_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX recordings_fixity ON recordings (fixity_checked_at, id);
