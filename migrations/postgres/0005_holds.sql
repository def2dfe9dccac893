-- Legal holds on recordings (the reason is kept; every change is a custody event).
ALTER TABLE recordings ADD COLUMN legal_hold BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE recordings ADD COLUMN hold_reason TEXT;
