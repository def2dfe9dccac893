#!/usr/bin/env bash
# Ingest throughput with 1, 2 and 3 nodes on this one machine: N `evidenced run` processes
# (release build) sharing one PostgreSQL catalog (a database of its own, created and dropped
# here) and one S3 store (a private Garage), each watching its own dock. A fixed set of
# body-camera-sized files (random bytes plus a few real recordings of the fixture corpus) is
# split across the docks at once (hard links: instant, no copy); the clock runs from then until
# the catalog holds every file and every dock is empty. Baseline in the same run: the same files
# uploaded plainly to the same store with the same parallelism (bench/s3_put.rs: one process per
# node, `ingest.concurrency` files at a time, evidenced's multipart shape, no hashing). Writes
# docs/benchmarks-nodes.md and the nodes section of docs/benchmarks.md, prints the report.
#
#   bench/nodes.sh                                          # 48 x ~40 MiB + 4 videos, 3 repeats
#   BENCH_FILES=8 BENCH_FILE_MIB=16 BENCH_REPEAT=1 bench/nodes.sh   # quick
#
# Environment: BENCH_NODES ("1 2 3"), BENCH_FILES (48 random files), BENCH_FILE_MIB (40: sizes
# spread from 0.5x to 1.5x of it), BENCH_VIDEOS (4 real recordings from the corpus, 0 for none),
# BENCH_REPEAT (3; medians are reported), BENCH_GARAGE (single | cluster), BENCH_CONCURRENCY (2:
# evidenced's default ingest.concurrency, files at a time per node, and the baseline's),
# BENCH_SETTLE (1s: the docks' settle), BENCH_CACHE (auto | cold | warm), BENCH_DIR, BENCH_PG,
# BENCH_NO_BUILD=1, BENCH_KEEP=1, BENCH_BIN_DIR (prebuilt evidenced, evidenced-media-worker and
# s3_put, with a SOURCE file naming what they were built from, instead of building this tree),
# BENCH_CORPUS (a tests/fixtures/make-corpus.sh output to reuse; default: the one the tests made
# under $CARGO_TARGET_DIR/tmp, else it is generated).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/evidenced-target}"
ENV_USED=
for v in BENCH_BIN_DIR BENCH_NODES BENCH_FILES BENCH_FILE_MIB BENCH_VIDEOS BENCH_REPEAT BENCH_GARAGE BENCH_CONCURRENCY BENCH_SETTLE BENCH_CACHE; do
  if [[ -n ${!v:-} ]]; then if [[ ${!v} == *" "* ]]; then ENV_USED+="$v='${!v}' "; else ENV_USED+="$v=${!v} "; fi; fi
done
NODES=${BENCH_NODES:-1 2 3}
FILES=${BENCH_FILES:-48}
FILE_MIB=${BENCH_FILE_MIB:-40}
VIDEOS=${BENCH_VIDEOS:-4}
REPEAT=${BENCH_REPEAT:-3}
GARAGE_MODE=${BENCH_GARAGE:-single}
CONC=${BENCH_CONCURRENCY:-2}
SETTLE=${BENCH_SETTLE:-1s}
CACHE_MODE=${BENCH_CACHE:-auto}
W=${BENCH_DIR:-/var/tmp/evidenced-nodes-bench}
OUT_DOC=docs/benchmarks-nodes.md
log() { printf '[nodes-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
for v in FILES FILE_MIB REPEAT CONC; do [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"; done
[[ $VIDEOS =~ ^[0-9]+$ ]] || die "BENCH_VIDEOS must be a number"
for n in $NODES; do [[ $n =~ ^[1-9]$ ]] || die "BENCH_NODES: node counts 1-9 (got '$n')"; done
[[ $W == /* && $W != / && $W != "$HOME" ]] || die "BENCH_DIR must be an absolute path other than / and \$HOME"
command -v psql >/dev/null || die "psql is required"
. bench/nodes-lib.sh
S3_PUT=""
bench_workdir .evidenced-nodes-bench in log
START=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ build
build_binaries

# ------------------------------------------------------------------ inputs
log "generating $FILES random files around $FILE_MIB MiB and $VIDEOS real recordings"
for ((k = 0; k < FILES; k++)); do
  # 0.5x .. 1.5x of FILE_MIB, deterministic, in KiB (every file above the 16 MiB multipart threshold at the default size).
  kib=$((FILE_MIB * 1024 * (50 + (k * 37) % 101) / 100))
  head -c "${kib}K" /dev/urandom >"$W/in/$(printf 'BWC%02d_P%03d_20241201%02d%02d00_%04d.mp4' $((k % 7)) $((100 + k % 13)) $((k % 24)) $((k % 60)) "$k")"
done
if ((VIDEOS > 0)); then
  CORPUS=${BENCH_CORPUS:-}
  [[ -n $CORPUS ]] || CORPUS=$(ls -d "$CARGO_TARGET_DIR"/tmp/corpus-*/ 2>/dev/null | while read -r d; do [[ -f $d/manifest.tsv ]] && echo "$d"; done | head -n 1 || true)
  if [[ -z $CORPUS ]]; then
    log "generating the fixture corpus (tests/fixtures/make-corpus.sh)"
    bash tests/fixtures/make-corpus.sh "$W/corpus" >"$W/log/corpus.log" 2>&1 || { tail "$W/log/corpus.log" >&2; die "make-corpus failed"; }
    CORPUS=$W/corpus
  fi
  # The camera clips (H.264/AAC MP4), largest first.
  mapfile -t VIDS < <(awk -F'\t' '$2 == "ok" && $3 == "h264/aac mp4" && $1 ~ /^dock-/ {print $1}' "$CORPUS/manifest.tsv" |
    while read -r p; do printf '%s\t%s\n' "$(stat -c %s "$CORPUS/$p")" "$p"; done | sort -rn | cut -f2 | head -n "$VIDEOS")
  ((${#VIDS[@]} == VIDEOS)) || die "the corpus has only ${#VIDS[@]} camera clips"
  for p in "${VIDS[@]}"; do cp "$CORPUS/$p" "$W/in/$(basename "$p")"; done
fi
mapfile -t INPUTS < <(ls "$W/in" | sort)
TOTAL_FILES=${#INPUTS[@]}
TOTAL_BYTES=$(du -cb "$W"/in/* | tail -n 1 | cut -f1)
(cd "$W/in" && sha256sum -- *) | cut -d' ' -f1 | sort >"$W/expected.sha256"
[[ $(sort -u "$W/expected.sha256" | wc -l) == "$TOTAL_FILES" ]] || die "two inputs have the same bytes"
VIDEO_BYTES=0
for p in "${VIDS[@]:-}"; do [[ -n $p ]] && VIDEO_BYTES=$((VIDEO_BYTES + $(stat -c %s "$W/in/$(basename "$p")"))); done
sync

# ------------------------------------------------------------------ page cache
if [[ $CACHE_MODE == auto || $CACHE_MODE == cold ]]; then
  if (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then CACHE_MODE=cold
  elif [[ $CACHE_MODE == cold ]]; then die "BENCH_CACHE=cold but /proc/sys/vm/drop_caches is not writable"
  else CACHE_MODE=warm; fi
fi
[[ $CACHE_MODE == cold || $CACHE_MODE == warm ]] || die "BENCH_CACHE must be auto, cold or warm"
prepare_cache() {
  sync
  if [[ $CACHE_MODE == cold ]]; then echo 3 >/proc/sys/vm/drop_caches; else cat "$W"/in/* >/dev/null; fi
}

log "starting Garage ($GARAGE_MODE)"
garage_start "$GARAGE_MODE"
GARAGE_VERSION=$("$(garage_bin)" --version 2>/dev/null | awk '{print $2}' | sed 's/^cargo://')
endpoint_of() { echo "${GARAGE_ENDPOINTS[$(($1 % ${#GARAGE_ENDPOINTS[@]}))]}"; }
# The files of node I among N: every N-th input.
files_of() { local i=$1 n=$2 k; for ((k = i; k < TOTAL_FILES; k += n)); do echo "${INPUTS[$k]}"; done; }

: >"$W/results.jsonl"
# cpu_begin / cpu_end PIDS...: CPU of the daemons (with their media children), Garage,
# PostgreSQL and the whole machine during a step; prints a JSON fragment.
cpu_begin() { C0=$(proc_ticks "$@"); M0=$(child_ticks "$@"); G0=$(proc_ticks "${GARAGE_PIDS[@]}"); P0=$(postgres_ticks); H0=$(host_busy); T0=$(date +%s.%N); }
cpu_end() {
  local c1 m1 g1 p1 h1
  c1=$(proc_ticks "$@"); m1=$(child_ticks "$@"); g1=$(proc_ticks "${GARAGE_PIDS[@]}"); p1=$(postgres_ticks); h1=$(host_busy)
  printf '"cpu_client": %s, "cpu_media": %s, "cpu_garage": %s, "cpu_postgres": %s, "cpu_host": %s, "cpu_window": %s' \
    "$(ticks_s $((c1 - C0 - (m1 - M0))))" "$(ticks_s $((m1 - M0)))" "$(ticks_s $((g1 - G0)))" "$(ticks_s $((p1 - P0)))" "$(ticks_s $((h1 - H0)))" \
    "$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.3f", b - a}')"
}

plain_step() { # REPEAT N
  local r=$1 n=$2 i pids=() t0 t1 files=0 bytes=0 out
  prepare_cache
  log "run $r: plain S3 upload, $n process(es) x $CONC files at a time"
  cpu_begin
  t0=$(date +%s.%N)
  for ((i = 0; i < n; i++)); do
    mapfile -t mine < <(files_of "$i" "$n" | sed "s|^|$W/in/|")
    AWS_ACCESS_KEY_ID=$GARAGE_KEY AWS_SECRET_ACCESS_KEY=$GARAGE_SECRET "$S3_PUT" "$(endpoint_of "$i")" "$BUCKET" "plain-$r-$n/n$i/" "$CONC" "${mine[@]}" \
      >"$W/log/plain-$r-$n-$i.json" 2>"$W/log/plain-$r-$n-$i.err" &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do wait "${pids[$i]}" || { cat "$W/log/plain-$r-$n-$i.err" >&2; die "plain upload $i failed"; }; done
  t1=$(date +%s.%N)
  local cpu
  cpu=$(cpu_end)
  local client=0
  for ((i = 0; i < n; i++)); do
    out=$(cat "$W/log/plain-$r-$n-$i.json")
    read -r f c < <(python3 -c 'import json,sys; j = json.loads(sys.argv[1]); print(j["files"], j["cpu_s"])' "$out")
    files=$((files + f))
    client=$(awk -v a="$client" -v b="$c" 'BEGIN {print a + b}')
  done
  ((files == TOTAL_FILES)) || die "plain upload sent $files files, not $TOTAL_FILES"
  # The upload processes have exited: their CPU is what each reported (getrusage).
  cpu=$(sed -E "s/\"cpu_client\": [0-9.]+/\"cpu_client\": $client/" <<<"$cpu")
  printf '{"method": "plain", "repeat": %s, "nodes": %s, "seconds": %s, %s}\n' "$r" "$n" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')" "$cpu" >>"$W/results.jsonl"
}

evidenced_step() { # REPEAT N
  local r=$1 n=$2 i t0 now t_arch="" t_empty="" count=0 left=0 pids=() lost dup pending warn err panics
  pg_create "evnodes_$$_${r}_$n"
  for ((i = 0; i < n; i++)); do
    node_configure "$i" "$W/run-$r-$n/node$i" "$(endpoint_of "$i")" "nodes-$r-$n/" \
      "[[dock]]
path = \"$W/run-$r-$n/node$i/dock\"
name = \"dock-n$i\"
settle = \"$SETTLE\"" \
      "[ingest]
concurrency = $CONC
scan_interval = \"1s\""
    mkdir -p "$W/run-$r-$n/node$i/dock"
    node_start "$i"
  done
  pids=("${NODE_PIDS[@]}")
  sleep 3 # start-up work (checkpoint at start, retention sweep, node registration) settles
  prepare_cache
  log "run $r: evidenced, $n node(s)"
  cpu_begin "${pids[@]}"
  t0=$(date +%s.%N)
  for ((i = 0; i < n; i++)); do
    files_of "$i" "$n" | while read -r f; do ln "$W/in/$f" "$W/run-$r-$n/node$i/dock/$f"; done
  done
  while :; do
    now=$(date +%s.%N)
    if [[ -z $t_arch ]]; then
      count=$(sql "SELECT count(*) FROM recordings" 2>/dev/null || echo 0)
      ((count >= TOTAL_FILES)) && t_arch=$now
    fi
    if [[ -z $t_empty ]]; then
      left=$(find "$W/run-$r-$n" -path '*/dock/*' -type f | wc -l)
      ((left == 0)) && t_empty=$now
    fi
    [[ -n $t_arch && -n $t_empty ]] && break
    awk -v a="$t0" -v b="$now" 'BEGIN {exit !(b - a > 900)}' && die "evidenced with $n nodes: not done after 900 s (archived $count, $left on docks)"
    for i in "${!pids[@]}"; do kill -0 "${pids[$i]}" 2>/dev/null || die "node $i exited; see $W/run-$r-$n/node$i/daemon.log"; done
    sleep 0.2
  done
  local cpu
  cpu=$(cpu_end "${pids[@]}")
  pending=$(sql "SELECT count(*) FROM recordings WHERE media_state = 'pending'")
  lost=$(comm -23 "$W/expected.sha256" <(sql "SELECT sha256 FROM recordings" | sort) | wc -l)
  dup=$(sql "SELECT count(*) FROM (SELECT recording_id FROM custody_events WHERE kind = 'archived' GROUP BY recording_id HAVING count(*) > 1) d")
  nodes_stop
  warn=0 err=0 panics=0
  local stops=""
  for ((i = 0; i < n; i++)); do
    read -r a b c < <(log_levels "$W/run-$r-$n/node$i/daemon.log")
    warn=$((warn + a)) err=$((err + b)) panics=$((panics + c))
    stops+="${NODE_STOPS[$i]%% *} "
    cp "$W/run-$r-$n/node$i/daemon.log" "$W/log/daemon-$r-$n-$i.log"
    grep -h -E ' (WARN|ERROR) |panicked' "$W/run-$r-$n/node$i/daemon.log" >>"$W/log/warnings.txt" || true
  done
  printf '{"method": "evidenced", "repeat": %s, "nodes": %s, "seconds": %s, "archived_s": %s, "docks_empty_s": %s, "media_pending": %s, "lost": %s, "duplicated": %s, "warn": %s, "error": %s, "panics": %s, "stop_status": "%s", %s}\n' \
    "$r" "$n" "$(awk -v a="$t0" -v b="$now" 'BEGIN {printf "%.3f", b - a}')" \
    "$(awk -v a="$t0" -v b="$t_arch" 'BEGIN {printf "%.3f", b - a}')" "$(awk -v a="$t0" -v b="$t_empty" 'BEGIN {printf "%.3f", b - a}')" \
    "$pending" "$lost" "$dup" "$warn" "$err" "$panics" "${stops% }" "$cpu" >>"$W/results.jsonl"
  ((lost == 0 && dup == 0)) || log "WARNING: $lost lost, $dup duplicated with $n nodes (run $r)"
  [[ ${BENCH_KEEP:-0} == 1 ]] || { pg_drop; rm -rf "$W/run-$r-$n"; }
}

for ((r = 1; r <= REPEAT; r++)); do
  for n in $NODES; do
    plain_step "$r" "$n"
    evidenced_step "$r" "$n"
  done
done
garage_stop
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ report
report=$(mktemp) short=$(mktemp)
[[ -s $W/log/warnings.txt ]] && sed -E 's/^[^ ]+ +//; s/\x1b\[[0-9;]*m//g; s/[0-9a-f]{8}-[0-9a-f-]{27}/<id>/g; s/[0-9a-f]{64}/<sha>/g' "$W/log/warnings.txt" |
  sort | uniq -c | sort -rn | head -n 20 >"$W/log/messages.txt"
python3 - "$W/results.jsonl" "$report" "$short" <<EOF
import json, os, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
report, short = open(sys.argv[2], "w"), open(sys.argv[3], "w")
TOTAL_FILES, TOTAL_BYTES, VIDEO_BYTES, VIDEOS = $TOTAL_FILES, $TOTAL_BYTES, $VIDEO_BYTES, $VIDEOS
nodes = [int(n) for n in "$NODES".split()]
REPEAT, CONC, GARAGE = $REPEAT, $CONC, "$GARAGE_MODE"
med = lambda xs: statistics.median(xs)
def pick(method, n, key):
    return [r[key] for r in rows if r["method"] == method and r["nodes"] == n]
def both(*lines):
    for l in lines:
        print(l, file=report)
        print(l, file=short)
def rep(*lines):
    for l in lines:
        print(l, file=report)
mb = TOTAL_BYTES / 1e6
both("# Ingest with 1, 2 and 3 nodes", "")
both("- **Command:** \`${ENV_USED}bench/nodes.sh\` (CARGO_TARGET_DIR=$CARGO_TARGET_DIR); the whole run took $(( $(date +%s) - START )) s",
     "- **Date:** $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/^Mem:/{print $2}') GiB RAM; "
     "load average $LOAD_BEFORE before the run, $LOAD_AFTER after; evidenced $SRC (release build); "
     "PostgreSQL $(psql -At "$PG/postgres" -c 'SHOW server_version' 2>/dev/null | cut -d' ' -f1) on the same machine; Garage $GARAGE_VERSION")
rep(f"- **Files:** {TOTAL_FILES} files, {TOTAL_BYTES / 2**20:,.0f} MiB in all: $FILES of random bytes from 0.5x to 1.5x of $FILE_MIB MiB "
    f"({'all above' if $FILE_MIB / 2 > 16 else 'not all above'} evidenced's 16 MiB multipart threshold) and {VIDEOS} real H.264/AAC camera clips of the fixture corpus "
    f"({VIDEO_BYTES / 2**20:.1f} MiB), named as cameras name them; file k goes to node k mod N, so every node gets the same share",
    f"- **Store:** " + ("one Garage node (replication factor 1). Not the 3-node cluster of the tests: with replication factor 3 on one "
      "machine every byte is written three times to the same disk and handled by three Garage processes on the same cores, so the "
      "figures would mostly show Garage's replication, equally for every node count (\`BENCH_GARAGE=cluster\` runs it that way; "
      "\`bench/soak.sh\` uses the cluster)" if GARAGE == "single" else
      "a Garage cluster of 3 nodes (replication factor 3, consistency mode \`consistent\`, like \`tests/it/cluster.rs\`); node i uses Garage node i mod 3") +
    ", on the same machine, data and metadata on the same disk",
    "- **Page cache:** " + ("cold: \`sync; echo 3 > /proc/sys/vm/drop_caches\` before every measured step" if "$CACHE_MODE" == "cold" else
      "warm: every input read once before every measured step (dropping caches was not permitted or not asked for)"),
    f"- **Repeats:** {REPEAT}, interleaved (plain then evidenced for 1, 2, 3 nodes, then again); seconds are the median, the range in parentheses")
rep("")
rep("How: for each node count N, a fresh PostgreSQL database and N \`evidenced run\` processes (\`node.id\` bench-n0.., their own state "
    f"dirs and API ports), each with one dock (\`settle = \"$SETTLE\"\`, \`ingest.scan_interval = \"1s\"\`, \`ingest.concurrency = {CONC}\`, the "
    "defaults otherwise: multipart above 16 MiB, 8 MiB parts, 3 in flight, \`release = \"delete\"\`). Once they are up, the files are "
    "hard-linked into the docks all at once and the clock runs until the catalog holds every file (\`archived\`) and every dock is "
    "empty (each dock copy released after its archived copy was verified). The time includes discovery (inotify, or the 1 s rescan) "
    f"and the {'$SETTLE'} settle, paid once at the start. Every archived recording also queues a media derivation, as always "
    "(one job at a time per node; a random file is fetched back from the store, probed and marked unplayable, a camera clip gets "
    "a real proxy); what of it ran inside the window competes for the same cores (the *media* column and the jobs still pending "
    "at the end tell how much). The baseline (*plain*) sends the same files to the same "
    f"bucket with \`bench/s3_put.rs\`: N processes, node i's share each, {CONC} files at a time, the same AWS SDK client settings and "
    "the same multipart shape, but no SHA-256 anywhere, no checksum headers, no HEAD after the upload, no catalog and no dock release.")
both("")
both("| nodes | plain s | plain MB/s | plain files/s | evidenced s | evidenced MB/s | evidenced files/s | evidenced ÷ plain time | MB/s vs 1 node (plain / evidenced) |",
     "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
base = {}
for n in nodes:
    ps, es = pick("plain", n, "seconds"), pick("evidenced", n, "seconds")
    if not ps or not es:
        continue
    p, e = med(ps), med(es)
    base.setdefault("p", p); base.setdefault("e", e)
    rng = lambda xs: f" ({min(xs):.1f}–{max(xs):.1f})" if len(xs) > 1 else ""
    both(f"| {n} | {p:.1f}{rng(ps)} | {mb / p:.0f} | {TOTAL_FILES / p:.1f} | {e:.1f}{rng(es)} | {mb / e:.0f} | {TOTAL_FILES / e:.1f} | {e / p:.2f} | "
         f"{base['p'] / p:.2f}× / {base['e'] / e:.2f}× |")
both("")
rep("## Where the time goes (medians)", "",
    "CPU seconds during the measured window: *client* is the evidenced daemons (plain: the upload processes), *media* the daemons' "
    "media-worker children (counted when a child has ended), *Garage* the store, *PostgreSQL* every postgres process; *machine* all busy CPU time of the host "
    f"(these plus the kernel, writeback and anything else running); *cores busy* is machine CPU ÷ the time it was measured over (the wall time and a few ms), at most $(nproc).", "",
    "| nodes | method | wall s | client CPU s | media CPU s | Garage CPU s | PostgreSQL CPU s | machine CPU s | cores busy | archived at s | docks empty at s | media jobs pending at the end |",
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in nodes:
    for m in ("plain", "evidenced"):
        sel = [r for r in rows if r["method"] == m and r["nodes"] == n]
        if not sel:
            continue
        g = lambda k: med([r[k] for r in sel])
        arch = f"{g('archived_s'):.1f}" if m == "evidenced" else "–"
        empt = f"{g('docks_empty_s'):.1f}" if m == "evidenced" else "–"
        pend = f"{g('media_pending'):.0f}" if m == "evidenced" else "–"
        rep(f"| {n} | {m} | {g('seconds'):.1f} | {g('cpu_client'):.1f} | {g('cpu_media'):.1f} | {g('cpu_garage'):.1f} | {g('cpu_postgres'):.1f} | "
            f"{g('cpu_host'):.1f} | {g('cpu_host') / g('cpu_window'):.2f} | {arch} | {empt} | {pend} |")
rep("")
ev = [r for r in rows if r["method"] == "evidenced"]
lost, dup = sum(r["lost"] for r in ev), sum(r["duplicated"] for r in ev)
warn, err, pan = sum(r["warn"] for r in ev), sum(r["error"] for r in ev), sum(r["panics"] for r in ev)
stops = sorted({s for r in ev for s in r["stop_status"].split()})
both(f"Every run: lost {lost}, duplicated {dup} (catalog against the SHA-256 of every input; \`archived\` custody events per recording); "
     f"daemon logs: {warn} WARN, {err} ERROR lines, {pan} panics over all {len(ev)} runs; exit status after SIGTERM: {', '.join(stops)}; "
     f"media jobs still pending when the docks were empty: {', '.join(str(r['media_pending']) for r in ev)}.")
msgs = [l.rstrip() for l in open("$W/log/messages.txt")] if os.path.exists("$W/log/messages.txt") else []
if msgs:
    rep("", "Distinct WARN/ERROR messages over all runs (count, then the line without its time stamp; ids and hashes elided):", "")
    for m in msgs:
        rep("    " + m)
EOF
cat >>"$report" <<'EOF'

## Reading the figures

The machine has 2 cores, and every process of the deployment shares them: N daemons, the media
workers they start, Garage, PostgreSQL and the kernel's page cache and writeback. More nodes on
one machine cannot add cores, so throughput cannot scale linearly; what the table shows is how
the same bytes are handled when ingest is spread over more processes. The plain upload does the
least CPU work per byte that S3 allows (no hashing on the client) and so bounds what any client
can reach here; the *cores busy* column says how close each run came to the machine's two cores.
evidenced does more per byte by design: SHA-256 of the whole file and of every part (the store
checks the part checksums, and the composite is compared after completion), a HEAD per object,
a manifest object, catalog transactions with custody appends, the dock release, and afterwards
the media derivation, which for every recording fetches the original back from the store. Where
the machine is already busy, those costs show as a longer wall time; on separate machines each
node would bring its own cores and disk, and the shared parts (PostgreSQL, the store) would be
what limits scaling.
EOF
cp "$report" "$OUT_DOC"
. bench/doc-section.sh
{
  cat "$short"
  echo
  echo "All processes share the machine's $(nproc) cores, so more nodes add processes, not cores: the figures show how the same"
  echo "bytes go when ingest is spread over more daemons, not how a deployment with a machine per node scales."
  echo "Details, the CPU breakdown per process and the method: \`docs/benchmarks-nodes.md\`."
} >"$short.md"
replace_section nodes "$short.md"
cat "$report"
rm -f "$report" "$short" "$short.md"
log "wrote $OUT_DOC"
