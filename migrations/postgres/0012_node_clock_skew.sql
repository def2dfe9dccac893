-- How far each node's system clock was from the catalog's at its last heartbeat (system −
-- catalog, milliseconds; NULL before the first measurement and on SQLite). A node whose clock is
-- off by more than `node.max_clock_skew` pauses retention and fixity until it is fixed.
ALTER TABLE nodes ADD COLUMN clock_skew_ms BIGINT;
