#!/usr/bin/env bash
# Soak: several `evidenced run` nodes (release build) on one PostgreSQL catalog and one Garage
# store (a 3-node cluster like tests/it/cluster.rs, or one node), docking continuously on every
# node while supervisors search, open details and make Range reads of proxies through every
# node's API (bench/soak.py), for a bounded time. Reports throughput, dock-to-archived latency,
# request latency percentiles, the RSS of every daemon over time with a no-growth check, and
# afterwards lost = 0, duplicated = 0, `evidenced verify` and `evidenced reconcile` clean, clean
# stops and the daemons' WARN/ERROR lines. Writes docs/benchmarks-soak.md and the soak section of
# docs/benchmarks.md, prints the report.
#
#   bench/soak.sh                                   # 3 nodes, 10 minutes
#   BENCH_SOAK_SECONDS=60 BENCH_SOAK_SAMPLE=5 bench/soak.sh   # a quick check
#
# Environment: BENCH_SOAK_SECONDS (600), BENCH_SOAK_NODES (3), BENCH_SOAK_INTERVAL (3: seconds
# between files per dock), BENCH_SOAK_VIDEO_EVERY (10: every n-th file a real recording),
# BENCH_SOAK_READERS (4), BENCH_SOAK_RANGES (3 Range reads per cycle), BENCH_SOAK_SAMPLE (15:
# seconds between RSS samples), BENCH_SOAK_WARMUP (default a fifth of the run, at most 120 s),
# BENCH_GARAGE (cluster | single), BENCH_DIR, BENCH_PG, BENCH_NO_BUILD=1, BENCH_KEEP=1, BENCH_BIN_DIR
# (prebuilt binaries) and BENCH_CORPUS as for bench/nodes.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/evidenced-target}"
ENV_USED=
for v in BENCH_BIN_DIR BENCH_SOAK_SECONDS BENCH_SOAK_NODES BENCH_SOAK_INTERVAL BENCH_SOAK_VIDEO_EVERY BENCH_SOAK_READERS BENCH_SOAK_RANGES BENCH_SOAK_SAMPLE BENCH_SOAK_WARMUP BENCH_GARAGE; do
  if [[ -n ${!v:-} ]]; then if [[ ${!v} == *" "* ]]; then ENV_USED+="$v='${!v}' "; else ENV_USED+="$v=${!v} "; fi; fi
done
SECONDS_=${BENCH_SOAK_SECONDS:-600}
N=${BENCH_SOAK_NODES:-3}
INTERVAL=${BENCH_SOAK_INTERVAL:-3}
VIDEO_EVERY=${BENCH_SOAK_VIDEO_EVERY:-10}
READERS=${BENCH_SOAK_READERS:-4}
RANGES=${BENCH_SOAK_RANGES:-3}
SAMPLE=${BENCH_SOAK_SAMPLE:-15}
WARMUP=${BENCH_SOAK_WARMUP:-$((SECONDS_ / 5 < 120 ? SECONDS_ / 5 : 120))}
GARAGE_MODE=${BENCH_GARAGE:-cluster}
W=${BENCH_DIR:-/var/tmp/evidenced-soak-bench}
OUT_DOC=docs/benchmarks-soak.md
log() { printf '[soak-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
for v in SECONDS_ N INTERVAL READERS SAMPLE; do [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"; done
for v in VIDEO_EVERY RANGES WARMUP; do [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number (got '${!v}')"; done
[[ $W == /* && $W != / && $W != "$HOME" ]] || die "BENCH_DIR must be an absolute path other than / and \$HOME"
command -v psql >/dev/null || die "psql is required"
command -v ffmpeg >/dev/null || die "ffmpeg is required"
. bench/nodes-lib.sh
S3_PUT=""
bench_workdir .evidenced-soak-bench log
START=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ build
build_binaries

# ------------------------------------------------------------------ real recordings
VIDEOS_JSON="[]"
if ((VIDEO_EVERY > 0)); then
  CORPUS=${BENCH_CORPUS:-}
  [[ -n $CORPUS ]] || CORPUS=$(ls -d "$CARGO_TARGET_DIR"/tmp/corpus-*/ 2>/dev/null | while read -r d; do [[ -f $d/manifest.tsv ]] && echo "$d"; done | head -n 1 || true)
  if [[ -z $CORPUS ]]; then
    log "generating the fixture corpus (tests/fixtures/make-corpus.sh)"
    bash tests/fixtures/make-corpus.sh "$W/corpus" >"$W/log/corpus.log" 2>&1 || { tail "$W/log/corpus.log" >&2; die "make-corpus failed"; }
    CORPUS=${W}/corpus
  fi
  # Short recordings: the 3 s 640x360 MP4, a 5 s 720p camera clip, the 5 s QuickTime clip, the 30 s WAV.
  VIDEOS_JSON=$(cd "$CORPUS" && python3 -c '
import json, os, sys
want = ["edge-cases/证据 视频 2024-03-15 第1段.mp4", "dock-02/BWC1E55A0/BWC1E55A0_P33005_20240317221009_0001.mp4",
        "import/handheld/IMG_0042.MOV", "interview-room/ROOM-3/ROOM-3_20240315093000_0001.wav"]
print(json.dumps([os.path.abspath(p) for p in want if os.path.exists(p)]))')
  [[ $VIDEOS_JSON != "[]" ]] || die "no corpus recordings found in $CORPUS"
fi

# ------------------------------------------------------------------ services
log "starting Garage ($GARAGE_MODE)"
garage_start "$GARAGE_MODE"
GARAGE_VERSION=$("$(garage_bin)" --version 2>/dev/null | awk '{print $2}' | sed 's/^cargo://')
pg_create "evsoak_$$"
for ((i = 0; i < N; i++)); do
  node_configure "$i" "$W/node$i" "${GARAGE_ENDPOINTS[$((i % ${#GARAGE_ENDPOINTS[@]}))]}" "soak/" \
    "[[dock]]
path = \"$W/node$i/dock\"
name = \"dock-n$i\"
pattern = \"{device}/{device}_{officer}_{start:%Y%m%d%H%M%S}_{seq}.{ext}\"
unit = \"JS/SOAK/S$i\"" ""
  mkdir -p "$W/node$i/dock"
done
TOKEN=$(cd "$W/node0" && "$EVIDENCED" --config evidenced.toml token create --name soak-supervisor --role supervisor 2>>"$W/log/token.log" | tail -n 1)
[[ $TOKEN == evd_* ]] || die "token create did not print a token: '$TOKEN'"
for ((i = 0; i < N; i++)); do node_start "$i"; done
log "$N nodes up (pids ${NODE_PIDS[*]}), Garage pids ${GARAGE_PIDS[*]}"

python3 - "$W/config.json" <<EOF
import json, sys
nodes = []
for port, dock, pid in zip("${NODE_PORTS[*]}".split(), ["$W/node%d/dock" % i for i in range($N)], "${NODE_PIDS[*]}".split()):
    nodes.append({"port": int(port), "dock": dock, "pid": int(pid)})
cfg = {"work": "$W", "nodes": nodes, "garage_pids": [int(p) for p in "${GARAGE_PIDS[*]}".split()], "garage": "$GARAGE_MODE",
       "token": "$TOKEN", "duration": $SECONDS_, "interval": $INTERVAL, "video_every": $VIDEO_EVERY, "videos": json.loads('''$VIDEOS_JSON'''),
       "readers": $READERS, "ranges": $RANGES, "sample": $SAMPLE, "warmup": $WARMUP, "seed": $$, "header": []}
json.dump(cfg, open(sys.argv[1], "w"), indent=1)
EOF

# ------------------------------------------------------------------ the soak
log "soaking for $SECONDS_ s: a file every $INTERVAL s on each of $N docks, $READERS readers"
python3 bench/soak.py run "$W/config.json" || die "the load generator failed (a node exited?)"

# ------------------------------------------------------------------ drain and check
log "feeding stopped; waiting for the docks to drain"
mapfile -t FED < <(python3 -c 'import json,sys; [print(json.loads(l)["sha256"]) for l in open(sys.argv[1])]' "$W/fed.jsonl")
printf '%s\n' "${FED[@]}" | sort >"$W/fed.sha256"
t0=$(date +%s.%N)
while :; do
  left=$(find "$W" -path '*/dock/*' -type f | wc -l)
  missing=$(comm -23 "$W/fed.sha256" <(sql "SELECT sha256 FROM recordings" | sort) | wc -l)
  ((left == 0 && missing == 0)) && break
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {exit !(b - a > 600)}' && { log "not drained after 600 s: $left on docks, $missing missing"; break; }
  sleep 1
done
DRAIN_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
log "drained in $DRAIN_S s; waiting for every job (media derivations) to finish"
while :; do
  open=$(sql "SELECT count(*) FROM jobs WHERE state <> 'done'")
  ((open == 0)) && break
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {exit !(b - a > 1200)}' && { log "jobs still open after 1200 s: $open"; break; }
  sleep 2
done
JOBS_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
OPEN_JOBS=$(sql "SELECT kind || ':' || state || ':' || count(*) FROM jobs WHERE state <> 'done' GROUP BY kind, state" | tr '\n' ' ')
# One more memory sample after the drain, for the record.
for ((i = 0; i < N; i++)); do
  printf '{"t": %s, "what": "node%s", "VmRSS": %s, "RssAnon": %s, "RssFile": %s, "after_drain": true}\n' \
    "$(($(date +%s) - ${START}))" "$i" "$(awk '/^VmRSS/{print $2}' /proc/"${NODE_PIDS[$i]}"/status)" \
    "$(awk '/^RssAnon/{print $2}' /proc/"${NODE_PIDS[$i]}"/status)" "$(awk '/^RssFile/{print $2}' /proc/"${NODE_PIDS[$i]}"/status)" >>"$W/after-drain.jsonl"
done
nodes_stop
STOPS=()
for ((i = 0; i < N; i++)); do STOPS+=("${NODE_STOPS[$i]%% *}"); done
sql "SELECT sha256, archived_at, media_state FROM recordings" | tr '|' '\t' >"$W/catalog.tsv"
DUP=$(sql "SELECT count(*) FROM (SELECT recording_id FROM custody_events WHERE kind = 'archived' GROUP BY recording_id HAVING count(*) > 1) d")
EVENTS=$(sql "SELECT count(*) FROM custody_events")
CHECKPOINTS=$(sql "SELECT count(*) FROM checkpoints")
LEFT=$(find "$W" -path '*/dock/*' -type f | wc -l)
log "evidenced verify"
vt0=$(date +%s.%N)
set +e
(cd "$W/node0" && "$EVIDENCED" --config evidenced.toml verify --json >"$W/verify.json" 2>"$W/log/verify.err")
VERIFY_RC=$?
VERIFY_S=$(awk -v a="$vt0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
log "evidenced reconcile"
(cd "$W/node0" && "$EVIDENCED" --config evidenced.toml reconcile --json >"$W/reconcile.json" 2>"$W/log/reconcile.err")
RECONCILE_RC=$?
set -e
LOGS_JSON=$(for ((i = 0; i < N; i++)); do read -r a b c < <(log_levels "$W/node$i/daemon.log"); printf '{"warn": %s, "error": %s, "panics": %s}\n' "$a" "$b" "$c"; cp "$W/node$i/daemon.log" "$W/log/daemon-$i.log"; done | paste -sd, -)
# Distinct WARN/ERROR messages: drop the timestamp, the span fields and ids.
grep -h -E ' (WARN|ERROR) |panicked' "$W"/node*/daemon.log 2>/dev/null |
  sed -E 's/^[^ ]+ +//; s/\x1b\[[0-9;]*m//g; s/[0-9a-f]{8}-[0-9a-f-]{27}/<id>/g; s/[0-9a-f]{64}/<sha>/g; s/[0-9]+(\.[0-9]+)?(ms|s|µs)\b/<t>/g' |
  sort | uniq -c | sort -rn | head -n 25 >"$W/log-messages.txt" || true
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$W" <<EOF
import json, sys
w = sys.argv[1]
def load(p, default):
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return default
v = load(f"{w}/verify.json", {})
r = load(f"{w}/reconcile.json", {})
post = {
    "drain_s": $DRAIN_S, "jobs_s": $JOBS_S, "open_jobs": "$OPEN_JOBS".strip(), "duplicated": $DUP, "custody_events": $EVENTS,
    "checkpoints": $CHECKPOINTS, "left_on_docks": $LEFT, "verify_exit": $VERIFY_RC, "verify_s": $VERIFY_S,
    "verify_checked": v.get("checked", "?"), "verify_discrepancies": len(v.get("discrepancies", [])) if v else -1,
    "verify_warnings": len(v.get("warnings", [])) if v else 0, "reconcile_exit": $RECONCILE_RC,
    "stray": len(r.get("orphans", [])) if r else -1, "missing": len(r.get("missing", [])) if r else -1,
    "stops": "${STOPS[*]}".split(), "logs": [$LOGS_JSON],
    "log_messages": [l.rstrip() for l in open(f"{w}/log-messages.txt")][:25],
}
json.dump(post, open(f"{w}/post.json", "w"), indent=1)
cfg = json.load(open(f"{w}/config.json"))
cfg["header"] = [
    "- **Command:** \`${ENV_USED}bench/soak.sh\` (CARGO_TARGET_DIR=$CARGO_TARGET_DIR); the whole run took $(( $(date +%s) - START )) s",
    "- **Date:** $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), "
    "$(free -g | awk '/^Mem:/{print $2}') GiB RAM; load average $LOAD_BEFORE before the run, $LOAD_AFTER after; evidenced $SRC "
    "(release build); PostgreSQL $(psql -At "$PG/postgres" -c 'SHOW server_version' 2>/dev/null | cut -d' ' -f1); Garage $GARAGE_VERSION "
    + ("(3 nodes, replication factor 3)" if "$GARAGE_MODE" == "cluster" else "(one node)") + ", all on this machine",
]
if post["open_jobs"]:
    cfg["header"].append(f"- **Jobs still open at the end:** {post['open_jobs']}")
json.dump(cfg, open(f"{w}/config.json", "w"), indent=1)
EOF
report=$(mktemp)
python3 bench/soak.py report "$W/config.json" >"$report"
# Memory after the drain, for the record (not part of the check).
{
  echo
  echo "RSS after the drain, before the stop (MiB): $(python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(", ".join("%s %.1f (anon %.1f)" % (r["what"], r["VmRSS"] / 1024, r["RssAnon"] / 1024) for r in rows))' "$W/after-drain.jsonl")."
} >>"$report"
cp "$report" "$OUT_DOC"
short=$(mktemp)
python3 - "$W/headline.json" >"$short" <<EOF
import json, sys
h = json.load(open(sys.argv[1]))
print("# Soak")
print()
print("- **Command:** \`${ENV_USED}bench/soak.sh\`; $(date -u '+%Y-%m-%d %H:%M UTC'); load average $LOAD_BEFORE before, $LOAD_AFTER after; "
      "$N nodes, " + ("a 3-node Garage cluster" if "$GARAGE_MODE" == "cluster" else "one Garage node") + ", one PostgreSQL catalog, $SECONDS_ s")
print(f"- **Ingest:** {h['files']} files ({h['mib']:,.0f} MiB), {h['files_min']:.1f} files/min; dock → archived p50 {h['lat_p50']:.1f} s, p99 {h['lat_p99']:.1f} s")
for k in ("search", "details", "range"):
    n, errs, p50, p95, p99 = h[k]
    print(f"- **{k}:** {n} requests, {errs} errors; p50 / p95 / p99 {p50:.1f} / {p95:.1f} / {p99:.1f} ms")
print(f"- **Afterwards:** lost {h['lost']}, duplicated {h['duplicated']}, verify {'clean' if h['verify_clean'] else '**not clean**'}; "
      f"memory: {'no growth on any node' if h['no_growth'] else '**growth on at least one node**'}")
print()
print("Details (throughput, latency over time, RSS of every node over time, logs): \`docs/benchmarks-soak.md\`.")
EOF
. bench/doc-section.sh
replace_section soak "$short"
cat "$report"
rm -f "$report" "$short"
log "wrote $OUT_DOC"
