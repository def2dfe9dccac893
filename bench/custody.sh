#!/usr/bin/env bash
# Custody benchmarks, each against a baseline in the same run:
#  1. `evidenced verify` (chain, checkpoints, and every stored object re-read and hashed) against
#     `sha256sum` over the same archived originals, both from a cold page cache: GiB/s and ratio.
#  2. Custody appends per second on SQLite and on PostgreSQL (chain-head lock, RFC 8785, SHA-256,
#     insert, commit) against plain one-row INSERT transactions on the same database, with 1 and
#     4 writers (bench/custody_append.rs).
# Writes docs/benchmarks-custody.md and the custody section of docs/benchmarks.md.
#
#   bench/custody.sh                                        # 8 x 256 MiB, 3 repeats, 2000 appends
#   BENCH_VERIFY_FILES=4 BENCH_VERIFY_MIB=64 BENCH_APPENDS=500 bench/custody.sh   # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/evidenced-target}"
FILES=${BENCH_VERIFY_FILES:-8}
MIB=${BENCH_VERIFY_MIB:-256}
REPEATS=${BENCH_REPEATS:-3}
APPENDS=${BENCH_APPENDS:-2000}
W=${BENCH_DIR:-/var/tmp/evidenced-custody-bench}
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
OUT_DOC=docs/benchmarks-custody.md
[[ $W == /* && $W != / ]] || { echo "BENCH_DIR must be an absolute path" >&2; exit 2; }

PGDB=""
cleanup() {
  chmod -R u+w "$W" 2>/dev/null || true
  rm -rf "$W"
  [ -n "$PGDB" ] && psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $PGDB" >/dev/null 2>&1 || true
}
trap cleanup EXIT
rm -rf "$W"
mkdir -p "$W/in"
START=$(date +%s)

echo "== building release binaries" >&2
cargo build --release --bins -q
cargo bench --bench custody_append --no-run -q 2>/dev/null
APPEND_BIN=$(ls -t "$CARGO_TARGET_DIR"/release/deps/custody_append-* | grep -v '\.d$' | head -n 1)
EVIDENCED=$CARGO_TARGET_DIR/release/evidenced

cold() {
  sync
  if [ -w /proc/sys/vm/drop_caches ]; then echo 3 >/proc/sys/vm/drop_caches; CACHE=cold; else CACHE="warm (cannot drop caches)"; fi
}
secs() { /usr/bin/time -f %e -o "$W/t" "$@" >"$W/out" 2>"$W/err" || { cat "$W/out" "$W/err" >&2; return 1; }; cat "$W/t"; }
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

echo "== archiving $FILES x $MIB MiB" >&2
for i in $(seq 1 "$FILES"); do head -c $((MIB << 20)) /dev/urandom >"$W/in/f$i.mp4"; done
cat >"$W/evidenced.toml" <<EOF
[node]
id = "bench"
state_dir = "$W/state"
[catalog]
url = "sqlite://$W/catalog.db"
[store]
kind = "fs"
path = "$W/archive"
EOF
"$EVIDENCED" --config "$W/evidenced.toml" ingest --quiet "$W/in" >/dev/null
rm -rf "$W/in"
BYTES=$((FILES * (MIB << 20)))

echo "== verify vs sha256sum ($REPEATS repeats, cold cache)" >&2
: >"$W/s_sum"; : >"$W/s_ver"
for _ in $(seq 1 "$REPEATS"); do
  cold
  secs bash -c "find '$W/archive/originals' -name original -print0 | xargs -0 sha256sum" >>"$W/s_sum"
  [ "$(wc -l <"$W/out")" = "$FILES" ] || { echo "sha256sum saw the wrong number of files" >&2; exit 1; }
  cold
  secs "$EVIDENCED" --config "$W/evidenced.toml" verify --json >>"$W/s_ver"
  grep -q '"ok": true' "$W/out" || { echo "verify did not pass" >&2; cat "$W/out" >&2; exit 1; }
done
OBJECTS=$(python3 -c "import json,sys; print(json.load(open('$W/out'))['checked']['objects'])")
T_SUM=$(median <"$W/s_sum")
T_VER=$(median <"$W/s_ver")
gibs() { awk -v b="$BYTES" -v s="$1" 'BEGIN {printf "%.2f", b / s / 1073741824}'; }

echo "== custody appends ($APPENDS per measurement)" >&2
"$APPEND_BIN" "sqlite://$W/append.db" "$APPENDS" >"$W/appends"
PGDB="evbench_$$"
psql -q "$PG/postgres" -c "CREATE DATABASE $PGDB" >/dev/null
"$APPEND_BIN" "$PG/$PGDB" "$APPENDS" >>"$W/appends"

report=$(mktemp)
{
  echo "# Custody benchmarks"
  echo
  echo "- **Command:** \`bench/custody.sh\` (CARGO_TARGET_DIR=$CARGO_TARGET_DIR); the whole run took $(( $(date +%s) - START )) s"
  echo "- **Date:** $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(df -T "$(dirname "$W")" | awk 'NR==2 {print $2}') on $(df "$(dirname "$W")" | awk 'NR==2 {print $1}'); evidenced $(git rev-parse --short HEAD)"
  echo
  echo "## verify throughput"
  echo
  echo "$FILES originals of $MIB MiB (random bytes) in the \`fs\` store, $REPEATS repeats, median wall time, page cache: $CACHE before every step."
  echo "\`evidenced verify\` also walks the custody chain, checks the checkpoint signatures and reads the $((OBJECTS - FILES)) other objects (manifests); \`sha256sum\` reads only the originals."
  echo
  echo "| method | seconds | GiB/s | × sha256sum time |"
  echo "|---|---:|---:|---:|"
  echo "| \`sha256sum\` (coreutils, one process) | $T_SUM | $(gibs "$T_SUM") | 1.00 |"
  echo "| \`evidenced verify\` | $T_VER | $(gibs "$T_VER") | $(awk -v a="$T_VER" -v b="$T_SUM" 'BEGIN {printf "%.2f", a / b}') |"
  echo
  echo "## Custody appends"
  echo
  echo "$APPENDS entries per measurement. *plain* is the same number of one-row INSERT transactions of the same row shape on the same"
  echo "database (the price of a durable commit alone); *evidenced* is \`append_custody\`: chain-head lock (\`BEGIN IMMEDIATE\` on SQLite,"
  echo "an advisory transaction lock on PostgreSQL), head read, RFC 8785 canonical JSON, SHA-256, insert, commit."
  echo
  echo "| catalog | writers | plain appends/s | evidenced appends/s | evidenced ÷ plain time |"
  echo "|---|---:|---:|---:|---:|"
  python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print("| %s | %d | %.0f | %.0f | %.2f |" % (r["backend"], r["writers"], r["plain_per_sec"], r["evidenced_per_sec"], r["ratio"]))
' "$W/appends"
} >"$report"
mkdir -p docs
cp "$report" "$OUT_DOC"
. bench/doc-section.sh
replace_section custody "$report"
cat "$report"
