-- Access control for supervisors and the web console.

-- Explicit grants to state-secret recordings (PUT /recordings/{id}/grants/{principal}); the
-- grant and its removal are custody events (`granted`, `grant_revoked`).
CREATE TABLE grants (
    recording_id    TEXT NOT NULL REFERENCES recordings (id),
    principal       TEXT NOT NULL,
    reason          TEXT NOT NULL,
    granted_by      TEXT NOT NULL,
    granted_at      INTEGER NOT NULL,
    PRIMARY KEY (recording_id, principal)
);

-- Console sessions (an HttpOnly cookie holds the random id; only its SHA-256 is stored). A
-- session opened with a token re-checks that token's principal on every request, so revoking
-- the token ends the session; an OIDC session keeps the verified principal as JSON.
CREATE TABLE sessions (
    id_sha256       TEXT PRIMARY KEY,
    principal       TEXT NOT NULL,
    token_sha256    TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    ended_at        INTEGER
);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Secrets shared by every node of one catalog (the key that signs access-grant URLs), created
-- once by whichever node needs one first.
CREATE TABLE secrets (
    name            TEXT PRIMARY KEY,
    value           TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);

-- The audit route filters the custody log by actor and by kind, newest first.
CREATE INDEX custody_actor ON custody_events (actor, seq);
CREATE INDEX custody_kind ON custody_events (kind, seq);
