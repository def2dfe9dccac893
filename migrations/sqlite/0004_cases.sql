-- Cases: the agency's case numbers, and which recordings belong to each. `recordings.case_ids`
-- stays as the sorted JSON list of a recording's linked case ids (search and the API read it).

CREATE TABLE cases (
    id              TEXT PRIMARY KEY,          -- the agency's case number
    title           TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    unit            TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    created_by      TEXT NOT NULL,
    updated_at      INTEGER NOT NULL,
    closed_at       INTEGER
);
CREATE INDEX cases_status ON cases (status, id);

CREATE TABLE case_links (
    case_id         TEXT NOT NULL REFERENCES cases (id),
    recording_id    TEXT NOT NULL REFERENCES recordings (id),
    linked_at       INTEGER NOT NULL,
    linked_by       TEXT NOT NULL,
    PRIMARY KEY (case_id, recording_id)
);
CREATE INDEX case_links_recording ON case_links (recording_id);

-- Backfill: every case id already named by a recording becomes an open case and a link.
INSERT INTO cases (id, status, created_at, created_by, updated_at)
SELECT j.value, 'open', MIN(r.archived_at), 'migration', CAST(strftime('%s', 'now') AS INTEGER) * 1000000
FROM recordings r, json_each(r.case_ids) j
WHERE j.type = 'text' AND j.value <> ''
GROUP BY j.value;

INSERT INTO case_links (case_id, recording_id, linked_at, linked_by)
SELECT DISTINCT j.value, r.id, r.archived_at, 'migration'
FROM recordings r, json_each(r.case_ids) j
WHERE j.type = 'text' AND j.value <> '';
