-- Search by unit subtree (measured by bench/search.sh at 1 million recordings; figures and every
-- filter's query plan in docs/benchmarks-search.md).
--
-- Every search of a caller scoped to a unit, and every `unit=` filter, adds
--   AND (unit = $1 OR unit LIKE 'JS/NJ/%' ESCAPE '\')  ...  ORDER BY sort_at DESC, id DESC LIMIT 50
-- `recordings_unit (unit, sort_at DESC)` cannot serve the LIKE: a btree in the database collation
-- (C.UTF-8, en_US.UTF-8, ...: anything but "C") gives LIKE no index range. So the only ordered
-- path was `recordings_sort`, fetching and testing rows newest first until 50 match: the cost
-- grows as the subtree shrinks. Measured before these indexes (EXPLAIN ANALYZE, 1 million rows,
-- 360 stations of 381 to 74 000 recordings): a median station (1 611 recordings) 115 ms, a small
-- one (471) 413 ms, a new station without recordings 2 690 ms (all 1 000 001 rows tested); a
-- city's review queue 220 ms (158 000 rows tested), a station's 597 ms (a sequential scan).

-- recordings_unit_tree: unit with text_pattern_ops, so the LIKE prefix becomes an index range
-- under any collation. The planner now fetches a small subtree's rows by a bitmap scan and sorts
-- them: median station 10-17 ms (1 617 rows), small station 4.5 ms, new station 0.04 ms. For
-- large subtrees (a city, a province) it still walks `recordings_sort`, which stays cheaper there.
-- Equality on unit could use it too; `recordings_unit` is left as it is.
CREATE INDEX recordings_unit_tree ON recordings (unit text_pattern_ops, sort_at DESC);

-- recordings_review_unit: the same key over the recordings that need review only (2 MB at 1
-- million with 5 % flagged), for the review queue of a subtree (`needs_review=true` by a scoped
-- supervisor): a city's queue 1.0-2.8 ms (308 rows, 321 buffers) instead of 21-44 ms with
-- recordings_unit_tree alone (its 6 092 rows fetched, 5 784 thrown away) or 220 ms with neither;
-- a province's 14 ms instead of 62 ms. It is written only for flagged recordings and when the
-- flag changes.
CREATE INDEX recordings_review_unit ON recordings (unit text_pattern_ops, sort_at DESC) WHERE needs_review;
