-- The nodes sharing this catalog: identity and liveness. Each `evidenced run` registers its
-- node id with a random instance id at start, refreshes `heartbeat_at` every
-- `heartbeat_every_ms`, and sets `stopped_at` on a clean stop. A second live process with the
-- same node id is refused at start (it would release the first one's job leases).
CREATE TABLE nodes (
    id                  TEXT PRIMARY KEY,
    instance            TEXT NOT NULL,
    version             TEXT NOT NULL,
    hostname            TEXT NOT NULL,
    api_listen          TEXT NOT NULL,
    started_at          INTEGER NOT NULL,
    heartbeat_at        INTEGER NOT NULL,
    heartbeat_every_ms  INTEGER NOT NULL,
    stopped_at          INTEGER
);
