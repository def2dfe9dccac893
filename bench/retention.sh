#!/usr/bin/env bash
# Retention at scale, on SQLite and on PostgreSQL (bench/retention_scale.rs): seed 1 million
# recordings of which 10 000 are past retention (1 % of all held), then plan, queue, approve and
# destroy, each against a plain baseline on the same database (the bare expiry scan; plain
# one-row INSERT transactions; unlink of the same number of files). Writes
# docs/benchmarks-retention.md and the retention section of docs/benchmarks.md.
#
#   bench/retention.sh                                          # 1 000 000 / 10 000
#   BENCH_RECORDINGS=100000 BENCH_EXPIRED=2000 bench/retention.sh  # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/evidenced-target}"
N=${BENCH_RECORDINGS:-1000000}
E=${BENCH_EXPIRED:-10000}
W=${BENCH_DIR:-/var/tmp/evidenced-retention-bench}
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
OUT_DOC=docs/benchmarks-retention.md
[[ $W == /* && $W != / ]] || { echo "BENCH_DIR must be an absolute path" >&2; exit 2; }
PGDB=""
cleanup() {
  chmod -R u+w "$W" 2>/dev/null || true
  rm -rf "$W"
  [ -n "$PGDB" ] && psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $PGDB" >/dev/null 2>&1 || true
}
trap cleanup EXIT
rm -rf "$W"
mkdir -p "$W/sqlite" "$W/postgres"
START=$(date +%s)

echo "== building" >&2
cargo bench --bench retention_scale --no-run -q 2>/dev/null
BIN=$(ls -t "$CARGO_TARGET_DIR"/release/deps/retention_scale-* | grep -v '\.d$' | head -n 1)

echo "== SQLite: $N recordings, $E expired" >&2
"$BIN" "sqlite://$W/sqlite/catalog.db" "$W/sqlite" "$N" "$E" 2>"$W/sqlite.log" >"$W/results"
PGDB="evretention_$$"
psql -q "$PG/postgres" -c "CREATE DATABASE $PGDB" >/dev/null
echo "== PostgreSQL: $N recordings, $E expired" >&2
"$BIN" "$PG/$PGDB" "$W/postgres" "$N" "$E" 2>"$W/postgres.log" >>"$W/results"

report=$(mktemp)
{
  echo "# Retention benchmarks"
  echo
  echo "- **Command:** \`bench/retention.sh\` (CARGO_TARGET_DIR=$CARGO_TARGET_DIR); the whole run took $(( $(date +%s) - START )) s"
  echo "- **Date:** $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); evidenced $(git rev-parse --short HEAD)"
  echo "- **Data:** $N recordings, $E of them archived 400 days ago (past the default 184-day \`uncategorized\` period), the rest within the last 100 days; 1 % of all recordings under legal hold; retention grace 0 and 1 approval so every step runs at once; objects in an \`fs\` store (one small original per expired recording)"
  echo
  echo "| catalog | seed s | plan s | bare scan s | plan ÷ scan | planned | queue s | approve s | $E plain INSERT tx s | queue ÷ plain | destroy s | unlink s | destroyed |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print("| %s | %.1f | %.2f | %.2f | %.1f | %d | %.1f | %.1f | %.1f | %.2f | %.1f | %.2f | %d |" % (
        r["backend"], r["seed_s"], r["plan_s"], r["scan_s"], r["plan_s"] / max(r["scan_s"], 1e-6), r["planned"],
        r["queue_s"], r["approve_s"], r["inserts_s"], r["queue_s"] / max(r["inserts_s"], 1e-6), r["destroy_s"], r["unlink_s"], r["destroyed"]))
' "$W/results"
  echo
  echo "*plan*: \`Policy::plan\` (per category: archived, not held, not in an open case, clock started before the cutoff), against the bare"
  echo "\`SELECT id FROM recordings WHERE archived_at < cutoff\`. *queue*: one transaction per recording that moves it to"
  echo "\`pending_destruction\`, inserts the queue row and appends a hash-chained custody event; *approve*: the same for one approval each."
  echo "*destroy*: per recording, re-check date and holds, delete its objects from the \`fs\` store (directory fsyncs included), write the"
  echo "tombstone and the \`destroyed\` event; *unlink*: \`remove_file\` of the same number of files, no fsync."
} >"$report"
mkdir -p docs
cp "$report" "$OUT_DOC"
. bench/doc-section.sh
replace_section retention "$report"
cat "$report"
