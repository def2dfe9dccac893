-- Destruction certificates and annual statistics. Every destruction finished by one pass of the
-- retention worker carries that pass's batch id (a UUIDv7); a certificate is issued per batch.
ALTER TABLE destructions ADD COLUMN batch_id TEXT;
CREATE INDEX destructions_batch ON destructions (batch_id, finished_at);
-- The annual report counts custody events of some kinds within a year, and recordings and clips
-- by the time they were archived or made.
CREATE INDEX custody_kind_at ON custody_events (kind, at);
CREATE INDEX recordings_archived ON recordings (archived_at);
CREATE INDEX clips_created ON clips (created_at);
