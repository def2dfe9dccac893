-- Cases: the agency's case numbers, and which recordings belong to each. `recordings.case_ids`
-- stays as the sorted JSON list of a recording's linked case ids (search and the API read it).

CREATE TABLE cases (
    id              TEXT PRIMARY KEY,          -- the agency's case number
    title           TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    unit            TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    created_by      TEXT NOT NULL,
    updated_at      BIGINT NOT NULL,
    closed_at       BIGINT
);
CREATE INDEX cases_status ON cases (status, id);

CREATE TABLE case_links (
    case_id         TEXT NOT NULL REFERENCES cases (id),
    recording_id    TEXT NOT NULL REFERENCES recordings (id),
    linked_at       BIGINT NOT NULL,
    linked_by       TEXT NOT NULL,
    PRIMARY KEY (case_id, recording_id)
);
CREATE INDEX case_links_recording ON case_links (recording_id);

-- Backfill: every case id already named by a recording becomes an open case and a link.
INSERT INTO cases (id, status, created_at, created_by, updated_at)
SELECT c.id, 'open', MIN(r.archived_at), 'migration', (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT
FROM recordings r CROSS JOIN LATERAL jsonb_array_elements_text(r.case_ids::jsonb) AS c(id)
WHERE c.id <> ''
GROUP BY c.id;

INSERT INTO case_links (case_id, recording_id, linked_at, linked_by)
SELECT DISTINCT c.id, r.id, r.archived_at, 'migration'
FROM recordings r CROSS JOIN LATERAL jsonb_array_elements_text(r.case_ids::jsonb) AS c(id)
WHERE c.id <> '';
