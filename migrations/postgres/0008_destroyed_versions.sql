-- The S3 version ids each destruction deleted (store key -> [version id]), kept with the
-- tombstone; empty for stores without versions.
ALTER TABLE destructions ADD COLUMN versions TEXT NOT NULL DEFAULT '{}';
