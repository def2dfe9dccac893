#!/usr/bin/env bash
# Search and playback at scale, through the real daemon. For each catalog (PostgreSQL, then
# SQLite): seed 1 million recordings through the catalog's migrations (bench/search_scale.rs),
# ingest one real 720p H.264/AAC MP4 with `evidenced ingest` so the daemon derives a real proxy,
# start `evidenced run` (release build) on it, and measure
#   - search latency (p50/p99/max) of common filters of `GET /api/v1/recordings`: in-process
#     (`Catalog::list_recordings`, the baseline), over HTTP from one client, and from 8 clients;
#   - Range reads of the proxy (`GET /api/v1/recordings/{id}/proxy`, a random 1 MiB window per
#     request) with `wrk`, 64 connections, against nginx serving the same file from the `fs`
#     store directory with the same requests (the ceiling).
# Writes docs/benchmarks-search.md and the search section of docs/benchmarks.md, prints the report.
#
#   bench/search.sh                                         # 1 000 000 recordings, both catalogs
#   BENCH_RECORDINGS=20000 BENCH_BACKENDS=postgres bench/search.sh   # quick
#
# Environment: BENCH_RECORDINGS (1000000), BENCH_BACKENDS ("postgres sqlite"), BENCH_REQUESTS
# (300 sequential requests per filter after 20 warm-up ones), BENCH_CLIENTS (8), BENCH_PHASE_SECONDS
# (30: a slow filter's phase stops after this long with at least 10 samples),
# BENCH_RANGE_SECONDS (15), BENCH_RANGE_CONNECTIONS (64), BENCH_PROXY_SECONDS (60: length of the
# test video, about 0.6 MiB per second), BENCH_DIR, BENCH_PG (postgres://postgres@127.0.0.1:5432),
# BENCH_NO_BUILD=1, BENCH_KEEP=1 (keep the work dir and database).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/evidenced-target}"
N=${BENCH_RECORDINGS:-1000000}
BACKENDS=${BENCH_BACKENDS:-postgres sqlite}
W=${BENCH_DIR:-/var/tmp/evidenced-search-bench}
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
RANGE_SECONDS=${BENCH_RANGE_SECONDS:-15}
CONNS=${BENCH_RANGE_CONNECTIONS:-64}
VIDEO_SECONDS=${BENCH_PROXY_SECONDS:-60}
export BENCH_REQUESTS=${BENCH_REQUESTS:-300} BENCH_CLIENTS=${BENCH_CLIENTS:-8} BENCH_PHASE_SECONDS=${BENCH_PHASE_SECONDS:-30}
OUT_DOC=docs/benchmarks-search.md
[[ $W == /* && $W != / && $W != "$HOME" ]] || { echo "BENCH_DIR must be an absolute path other than / and \$HOME" >&2; exit 2; }
for v in N RANGE_SECONDS CONNS VIDEO_SECONDS BENCH_REQUESTS BENCH_CLIENTS BENCH_PHASE_SECONDS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive integer (got '${!v}')" >&2; exit 2; }
done
for b in $BACKENDS; do [[ $b == postgres || $b == sqlite ]] || { echo "BENCH_BACKENDS: postgres and/or sqlite, not '$b'" >&2; exit 2; }; done
log() { printf '[search-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
command -v wrk >/dev/null || die "wrk is required (apt-get install -y wrk)"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || die "nginx is required (apt-get install -y nginx-light)"
command -v ffmpeg >/dev/null || die "ffmpeg is required"

MARK=.evidenced-search-bench
if [[ -e $W ]]; then
  [[ -e $W/$MARK || -z $(ls -A "$W") ]] || die "$W exists and was not made by this script; refusing to clean it"
fi
DAEMON_PID="" NGINX_PID="" PGDB=""
stop_pid() { # pid: TERM, wait up to 10 s, then KILL
  local p=$1
  [[ -n $p ]] && kill -0 "$p" 2>/dev/null || return 0
  kill "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  stop_pid "$DAEMON_PID"; DAEMON_PID=""
  stop_pid "$NGINX_PID"; NGINX_PID=""
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then
    log "kept $W${PGDB:+ and database $PGDB} (BENCH_KEEP=1)"
  else
    [[ -n $PGDB ]] && psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1 || true
    [[ -e $W/$MARK ]] && { chmod -R u+w "$W" 2>/dev/null; rm -rf "$W"; }
  fi
  ((rc == 0)) || log "failed (exit $rc)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$W"
mkdir -p "$W/media"
touch "$W/$MARK"
START=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ build
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
  log "cargo build --release --bins; cargo bench --bench search_scale --no-run (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  cargo build --release --bins -q
  cargo bench --bench search_scale --no-run -q 2>/dev/null
fi
EVIDENCED=$CARGO_TARGET_DIR/release/evidenced
SCALE=$(ls -t "$CARGO_TARGET_DIR"/release/deps/search_scale-* | grep -v '\.d$' | head -n 1)
[[ -x $EVIDENCED && -x $SCALE ]] || die "missing $EVIDENCED or the search_scale bench binary"
SRC=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if git status --porcelain -- src Cargo.toml migrations 2>/dev/null | grep -q .; then
  SRC+=" plus uncommitted changes (\`git diff HEAD -- src migrations | sha256sum\`: $(git diff HEAD -- src migrations | sha256sum | cut -c1-12))"
fi

# ------------------------------------------------------------------ the test video
# 720p30 H.264 (yuv420p, 8-bit) + AAC, faststart: browser-safe, so the media worker keeps it as
# the proxy by stream copy. Noise keeps the encoder at its 5 Mb/s cap (about 0.6 MiB/s).
VIDEO=$W/media/search-bench-proxy.mp4
log "generating a ${VIDEO_SECONDS} s 720p H.264/AAC MP4"
ffmpeg -v error -f lavfi -i "testsrc2=size=1280x720:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
  -t "$VIDEO_SECONDS" -vf "noise=alls=12:allf=t+u,format=yuv420p" -c:v libx264 -preset ultrafast -b:v 5M -maxrate 5M \
  -bufsize 10M -c:a aac -b:a 128k -movflags +faststart "$VIDEO"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { # total utime+stime of the given pids, in clock ticks
  local t=0 p
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
machine_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat; } # busy idle (ticks)
HZ=$(getconf CLK_TCK)

# wrk: a random 1 MiB window per request (never from byte 0, so no request is an audited access).
cat >"$W/range.lua" <<'EOF'
local size = tonumber(os.getenv("RANGE_SIZE"))
local token = os.getenv("RANGE_TOKEN")
local win = 1048576
local counter = 0
function setup(thread) counter = counter + 1; thread:set("id", counter) end
function init(args) math.randomseed(os.time() * 1000 + (id or 0)) end
function request()
  local start = math.random(1, size - win - 1)
  local h = { ["Range"] = "bytes=" .. start .. "-" .. (start + win - 1) }
  if token and token ~= "" then h["Authorization"] = "Bearer " .. token end
  return wrk.format("GET", nil, h)
end
EOF
# Runs wrk against URL (token, file size) with the CPU of PIDS measured; prints one JSON line.
range_run() {
  local label=$1 url=$2 token=$3 size=$4; shift 4
  local c0 c1 m0 m1
  # Check one request first: 206 and exactly 1 MiB.
  local got
  got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -H "Range: bytes=1000-1049575" ${token:+-H "Authorization: Bearer $token"} "$url")
  [[ $got == "206 1048576" ]] || die "$label: a Range request answered '$got', not '206 1048576'"
  c0=$(cpu_ticks "$@"); m0=$(machine_busy)
  RANGE_SIZE=$size RANGE_TOKEN=$token wrk -t2 -c"$CONNS" -d"${RANGE_SECONDS}s" --latency -s "$W/range.lua" "$url" >"$W/wrk-$label.txt"
  c1=$(cpu_ticks "$@"); m1=$(machine_busy)
  python3 - "$W/wrk-$label.txt" "$label" "$((c1 - c0))" "$HZ" "$RANGE_SECONDS" "$m0" "$m1" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read()
label, ticks, hz, secs = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
b0, i0 = map(float, sys.argv[6].split()); b1, i1 = map(float, sys.argv[7].split())
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[u]
reqs = int(re.search(r"(\d+) requests in ([\d.]+)(m?s)", text).group(1))
dur = re.search(r"requests in ([\d.]+)(ms|s|m)", text)
dur = float(dur.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[dur.group(2)]
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errs = re.search(r"Socket errors: (.*)", text)
lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
if bad:
    sys.exit(f"{label}: {bad.group(1)} responses were not 2xx")
print(json.dumps({"target": label, "requests": reqs, "seconds": dur, "rps": reqs / dur, "mib_s": reqs / dur,
    "p50_ms": ms(lat["50"]), "p99_ms": ms(lat["99"]), "server_cores": ticks / hz / secs,
    "machine_busy": (b1 - b0) / max((b1 - b0) + (i1 - i0), 1), "socket_errors": errs.group(1) if errs else None}))
EOF
}

# ------------------------------------------------------------------ per catalog
: >"$W/seed.jsonl"; : >"$W/search.jsonl"; : >"$W/range.jsonl"
NGINX_DONE=0
for b in $BACKENDS; do
  D=$W/$b; mkdir -p "$D"
  if [[ $b == postgres ]]; then
    PGDB="evsearch_$$"
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $PGDB" >/dev/null 2>&1 || true
    psql -q "$PG/postgres" -c "CREATE DATABASE $PGDB" >/dev/null
    URL=$PG/$PGDB
  else
    URL=sqlite://$D/catalog.db
  fi
  log "$b: seeding $N recordings"
  "$SCALE" seed "$URL" "$N" >"$D/samples.json" 2>"$D/seed.log" || { cat "$D/seed.log" >&2; die "$b: seeding failed"; }
  cat "$D/samples.json" >>"$W/seed.jsonl"
  sample() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$D/samples.json" "$1"; }
  PORT=$(free_port)
  cat >"$D/evidenced.toml" <<EOF
[node]
id = "search-bench"
state_dir = "$D/state"
[catalog]
url = "$URL"
[store]
kind = "fs"
path = "$D/archive"
[api]
listen = "127.0.0.1:$PORT"
[custody]
# The seeded recordings have no objects: fixity checks would only report them missing.
fixity_per_day = 0
[retention.categories]
# Nothing of the seeded two years expires while the benchmark runs.
uncategorized = "10y"
traffic = "10y"
complaint = "10y"
training = "10y"
[log]
format = "human"
EOF
  ev() { "$EVIDENCED" --config "$D/evidenced.toml" "$@"; }
  log "$b: ingesting the test video"
  ev ingest --quiet "$VIDEO" >"$D/ingest.log" 2>&1 || { cat "$D/ingest.log" >&2; die "$b: ingest failed"; }
  export BENCH_TOKEN_SUPERVISOR BENCH_TOKEN_OFFICER BENCH_TOKEN_CITY
  BENCH_TOKEN_SUPERVISOR=$(ev token create --name "bench-supervisor" --role supervisor 2>/dev/null | tail -n1)
  BENCH_TOKEN_OFFICER=$(ev token create --name "bench-officer" --role officer --officer "$(sample officer)" \
    --unit "$(sample officer_station)" 2>/dev/null | tail -n1)
  BENCH_TOKEN_CITY=$(ev token create --name "bench-city" --role supervisor --unit "$(sample city)" 2>/dev/null | tail -n1)
  log "$b: starting evidenced run on 127.0.0.1:$PORT"
  "$EVIDENCED" --config "$D/evidenced.toml" run >"$D/daemon.log" 2>&1 & # not via ev(): $! must be the daemon
  DAEMON_PID=$!
  BASE=http://127.0.0.1:$PORT
  for _ in $(seq 300); do curl -sf "$BASE/healthz" >/dev/null && break; kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
  curl -sf "$BASE/healthz" >/dev/null || { tail -20 "$D/daemon.log" >&2; die "$b: the daemon did not come up"; }
  log "$b: waiting for the proxy (the daemon's media worker)"
  PROXY=""
  for _ in $(seq 600); do
    PROXY=$("$SCALE" proxy-of "$URL" "$(basename "$VIDEO")" 2>/dev/null) && break
    kill -0 "$DAEMON_PID" 2>/dev/null || { tail -20 "$D/daemon.log" >&2; die "$b: the daemon exited"; }
    sleep 1
  done
  [[ -n $PROXY ]] || die "$b: no proxy after 10 minutes"
  read -r REC_ID PROXY_KEY PROXY_SIZE <<<"$PROXY"
  sleep 5 # the start-up work (checkpoint, retention sweep) settles

  log "$b: search latency ($BENCH_REQUESTS requests per filter, then $BENCH_CLIENTS clients)"
  "$SCALE" measure "$URL" "$BASE" "$D/samples.json" "$D/plans.md" >"$D/search.jsonl" 2>"$D/measure.log" ||
    { cat "$D/measure.log" >&2; die "$b: measuring failed"; }
  cat "$D/search.jsonl" >>"$W/search.jsonl"

  log "$b: Range reads of the proxy ($PROXY_SIZE bytes), $CONNS connections, ${RANGE_SECONDS} s"
  cat "$D/archive/$PROXY_KEY" >/dev/null # the same page-cache state for both servers
  range_run "evidenced-$b" "$BASE/api/v1/recordings/$REC_ID/proxy" "$BENCH_TOKEN_SUPERVISOR" "$PROXY_SIZE" "$DAEMON_PID" >>"$W/range.jsonl"
  stop_pid "$DAEMON_PID"; DAEMON_PID=""

  if [[ $NGINX_DONE == 0 ]]; then
    NPORT=$(free_port)
    mkdir -p "$W/nginx"
    cat >"$W/nginx/nginx.conf" <<EOF
daemon off;
user root;
worker_processes auto;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path $W/nginx/body;
  proxy_temp_path $W/nginx/proxy;
  fastcgi_temp_path $W/nginx/fastcgi;
  uwsgi_temp_path $W/nginx/uwsgi;
  scgi_temp_path $W/nginx/scgi;
  types { video/mp4 mp4; }
  server {
    listen 127.0.0.1:$NPORT;
    root $D/archive;
  }
}
EOF
    "$NGINX" -c "$W/nginx/nginx.conf" -p "$W/nginx" 2>"$W/nginx/stderr" &
    NGINX_PID=$!
    for _ in $(seq 50); do curl -sf -o /dev/null -r 0-0 "http://127.0.0.1:$NPORT/$PROXY_KEY" && break; sleep 0.1; done
    log "nginx: the same Range reads of the same file"
    range_run "nginx" "http://127.0.0.1:$NPORT/$PROXY_KEY" "" "$PROXY_SIZE" "$NGINX_PID" $(pgrep -P "$NGINX_PID") >>"$W/range.jsonl"
    stop_pid "$NGINX_PID"; NGINX_PID=""
    NGINX_DONE=1
  fi
  if [[ $b == postgres && ${BENCH_KEEP:-0} != 1 ]]; then
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null; PGDB=""
  fi
done

# ------------------------------------------------------------------ report
report=$(mktemp)
python3 - "$W" "$N" "$BENCH_REQUESTS" "$BENCH_CLIENTS" "$CONNS" "$RANGE_SECONDS" "$(( $(date +%s) - START ))" \
  "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/^Mem:/{print $2}') GiB RAM" \
  "$SRC" "$LOAD_BEFORE" "$(psql -At "$PG/postgres" -c 'SHOW server_version' 2>/dev/null || echo '?')" \
  "$(psql -At "$PG/postgres" -c 'SHOW shared_buffers' 2>/dev/null || echo '?')" "$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)" \
  "$("$NGINX" -v 2>&1 | cut -d/ -f2)" "$VIDEO_SECONDS" "${BENCH_NOTE:-}" "$BENCH_PHASE_SECONDS" >"$report" <<'EOF'
import json, sys
w, n, reqs, clients, conns, rsecs, took, date, machine, src, load, pgver, shbuf, wrkver, nginxver, vsecs, note, phase = sys.argv[1:]
seeds = [json.loads(l) for l in open(f"{w}/seed.jsonl")]
rows = [json.loads(l) for l in open(f"{w}/search.jsonl")]
ranges = [json.loads(l) for l in open(f"{w}/range.jsonl")]
N = int(n)
p = print
p("# Search and playback benchmarks")
p()
p(f"- **Command:** `bench/search.sh` ({'BENCH_RECORDINGS=' + n + ', ' if N != 1000000 else ''}BENCH_REQUESTS={reqs}, BENCH_CLIENTS={clients}); the whole run took {took} s")
p(f"- **Date:** {date}; machine: {machine}; load average before the run {load}; evidenced {src}; PostgreSQL {pgver} (stock settings: shared_buffers {shbuf}, on the same machine); {wrkver}; nginx {nginxver}")
def shares(d):
    tot = sum(d.values())
    return ", ".join(f"`{k}` {v * 100 / tot:.1f} %" for k, v in sorted(d.items(), key=lambda kv: -kv[1]))
for s in seeds:
    sh = s["shares"]
    review = sum(v for k, v in sh["needs_review"].items() if k in ("true", "1"))
    p(f"- **Data ({s['backend']}):** {s['recordings']:,} recordings seeded through the catalog's migrations in {s['seed_s']:.0f} s "
      f"(multi-row INSERTs), then `{'VACUUM ANALYZE' if s['backend'] == 'postgres' else 'ANALYZE'}` ({s['analyze_s']:.1f} s)"
      + (f"; the table with its indexes {s['recordings_bytes'] / 2**20:,.0f} MiB" if s['recordings_bytes'] else "") + ". "
      f"{s['officers']:,} officers (skewed: some record far more), {s['devices']} devices, units `PROVINCE/CITY/STATION` "
      f"(30 × 4 × 3 = {s['leaf_units']} stations; each officer and device at one station; stations of very different sizes, from "
      f"{s['station_min_rows']:,} to {s['station_max_rows']:,} recordings, {s['empty_stations']} without any), start times uniform over 2 years, inserted in roughly chronological order (as an archive fills: the table's physical order follows time); "
      f"`needs_review` {review * 100 / s['recordings']:.1f} % (half without officer, half without start time); categories {shares(sh['category'])}; classifications {shares(sh['classification'])}; "
      f"states {shares(sh['state'])}; {s['case_links']:,} recordings linked to {s['cases']:,} cases; every row with probe JSON, "
      f"proxy and poster keys like a real one. The filters use typical values: the officer, device, city and case at the median "
      f"by row count. Catalog migrations applied: {', '.join(s['migrations'])}.")
if note:
    p(f"- **Note:** {note}")
p()
p("How: the filters go to the running `evidenced run` (release build, default `[catalog] max_connections` = 8, `fs` store, no docks) "
  f"as `GET /api/v1/recordings?…` with a bearer token (a supervisor at the root unit unless the row says otherwise; "
  f"as for every officer and supervisor, the search also hides `state_secret` recordings without a grant), {reqs} requests "
  f"one after another after 20 warm-up requests (*HTTP*), then {2 * int(reqs)} requests from {clients} concurrent clients (*{clients} clients*), "
  "from a reqwest client on the same machine (keep-alive). *in-process* runs the same filter through `Catalog::list_recordings` "
  f"in the bench process ({reqs} times, sequential): the catalog's share; *HTTP ÷ in-process* is the ratio of the p50s. Pages are 50 "
  "recordings (the default); *matching* counts all rows the filter matches; a phase stops after "
  f"{phase} s with at least 10 samples (then *n=* says how many it has). The target is a p99 under 50 ms on PostgreSQL; "
  "*p99 < 50 ms* judges the one-client p99 (and, after the slash, the p99 with "
  f"{clients} clients on 2 cores shared with the client).")
for backend in [s["backend"] for s in seeds]:
    p()
    p(f"## Search, {backend}, {N:,} recordings")
    p()
    p(f"| filter | matching | in-process p50 / p99 ms | HTTP p50 / p99 / max ms | HTTP ÷ in-process | {clients} clients p50 / p99 ms | {clients} clients req/s | p99 < 50 ms |")
    p("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        if r["backend"] != backend:
            continue
        i, h, c = r["inproc"], r["http"], r["conc"]
        ok = lambda v: "yes" if v < 50 else "**no**"
        # Phases cut short by BENCH_PHASE_SECONDS say how many samples they have.
        few = lambda st, want: f" (n={st['n']})" if st["n"] < want else ""
        err = lambda k: f", **{r[k]} answered {'/'.join(r['error_statuses'])}**" if r[k] else ""
        p(f"| {r['filter']} | {r['matches']:,} | {i['p50_ms']:.2f} / {i['p99_ms']:.2f}{few(i, int(reqs))} "
          f"| {h['p50_ms']:.2f} / {h['p99_ms']:.2f} / {h['max_ms']:.1f}{few(h, int(reqs))}{err('http_errors')} "
          f"| {h['p50_ms'] / max(i['p50_ms'], 1e-3):.1f} | {c['p50_ms']:.1f} / {c['p99_ms']:.1f}{few(c, 2 * int(reqs))}{err('conc_errors')} "
          f"| {r['conc_rps']:.0f} | {ok(h['p99_ms']) if not r['http_errors'] else '**no**'} / {ok(c['p99_ms']) if not r['conc_errors'] else '**no**'} |")
p()
p(f"## Range reads of a proxy, {conns} connections, {rsecs} s")
p()
size = None
p(f"`wrk -t2 -c{conns} -d{rsecs}s` with a Lua script that asks each request for a random 1 MiB window "
  f"(`Range: bytes=S-S+1048575`, S never 0 so no request is an audited first access) of a {vsecs} s 720p H.264/AAC MP4 that "
  "`evidenced ingest` archived and the daemon's media worker kept as the recording's proxy (stream copy). Against "
  "`GET /api/v1/recordings/{id}/proxy` with a supervisor's bearer token (each request: token lookup, recording lookup, scope "
  "check, a read of the `fs` store's file), and against nginx (`sendfile on`, `worker_processes auto`, no auth) serving the same "
  "file from the store directory: the ceiling. wrk runs on the same 2 cores. *server CPU* is the server's own user+system time "
  "per second of the run (cores), *machine busy* all CPUs' share.")
p()
p("| server | req/s | MiB/s | p50 ms | p99 ms | server CPU (cores) | machine busy | ÷ nginx |")
p("|---|---:|---:|---:|---:|---:|---:|---:|")
ng = next((r for r in ranges if r["target"] == "nginx"), None)
for r in ranges:
    ratio = f"{r['rps'] / ng['rps']:.2f}" if ng else "–"
    p(f"| {r['target']} | {r['rps']:,.0f} | {r['mib_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['server_cores']:.2f} | {r['machine_busy'] * 100:.0f} % | {ratio} |")
p()
p("Query plans of every filter (the statement `list_recordings` builds, `EXPLAIN (ANALYZE, BUFFERS)` on PostgreSQL, "
  "`EXPLAIN QUERY PLAN` on SQLite) are in `docs/benchmarks-search.md`.")
EOF
# The detailed document: the report and the query plans.
{
  cat "$report"
  for b in $BACKENDS; do
    echo
    echo "## Query plans, $b"
    echo
    cat "$W/$b/plans.md"
  done
} >"$OUT_DOC"
. bench/doc-section.sh
replace_section search "$report"
cat "$report"
rm -f "$report"
