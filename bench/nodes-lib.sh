# Sourced by bench/nodes.sh and bench/soak.sh: a private Garage (one node, or a cluster of three
# like tests/it/cluster.rs), a fresh PostgreSQL database, and `evidenced run` nodes on them, each
# with its own config, state dir, docks, API port and log. Expects W (work dir), EVIDENCED,
# S3_PUT (the bench/s3_put.rs binary, used to probe the store) and log()/die() from the caller.

GARAGE_KEY=GK0123456789abcdef01234567
GARAGE_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
BUCKET=evidence
GARAGE_PIDS=() GARAGE_ENDPOINTS=() NODE_PIDS=() NODE_PORTS=() NODE_CFGS=() NODE_DIRS=() PGDB=""
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}

# bench_workdir MARK SUBDIR...: refuses a work dir W this script did not make (no MARK file in
# it and not empty), installs the EXIT trap that stops every node and Garage and drops the
# database and W (BENCH_KEEP=1 keeps them), then makes W afresh with SUBDIRs and MARK.
bench_workdir() {
  MARK=$1
  shift
  if [[ -e $W ]]; then
    [[ -e $W/$MARK || -z $(ls -A "$W") ]] || die "$W exists and was not made by this script; refusing to clean it"
  fi
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  rm -rf "$W"
  for d in "$@"; do mkdir -p "$W/$d"; done
  touch "$W/$MARK"
}

bench_cleanup() {
  local rc=$?
  nodes_stop 2>/dev/null || true
  garage_stop
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then
    log "kept $W${PGDB:+ and database $PGDB} (BENCH_KEEP=1)"
  else
    pg_drop
    [[ -e $W/$MARK ]] && rm -rf "$W"
  fi
  ((rc == 0)) || log "failed (exit $rc)"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

garage_bin() {
  if [[ -x $HOME/.cargo/bin/garage ]]; then echo "$HOME/.cargo/bin/garage"; else command -v garage || die "garage is required (scripts/test installs it: cargo install garage --locked)"; fi
}

# stop_pid PID [SECONDS]: SIGTERM, wait (10 s), then SIGKILL; sets STOP_RC to the exit status
# (or "killed" when it had to be killed). PID must be a child of this shell (bash keeps the
# status of a child that has already exited and been reaped).
stop_pid() {
  local p=$1 t=${2:-10} i
  STOP_RC=""
  [[ -n $p ]] || return 0
  kill "$p" 2>/dev/null || true
  for ((i = 0; i < t * 10; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$p" 2>/dev/null; then
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    STOP_RC=killed
  else
    STOP_RC=0
    wait "$p" 2>/dev/null || STOP_RC=$?
  fi
}

# Waits until a small object can be written through ENDPOINT (the bucket and key exist there).
garage_wait_writable() {
  local ep=$1 i
  echo probe >"$W/garage/probe"
  for ((i = 0; i < 120; i++)); do
    AWS_ACCESS_KEY_ID=$GARAGE_KEY AWS_SECRET_ACCESS_KEY=$GARAGE_SECRET "$S3_PUT" "$ep" "$BUCKET" "_probe/" 1 "$W/garage/probe" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  tail -n 20 "$W"/garage/*/garage.log >&2 || true
  die "no S3 write through $ep after 60 s"
}

# garage_start single|cluster: starts the store under $W/garage and fills GARAGE_ENDPOINTS (one
# per Garage node; a cluster has 3 nodes, replication_factor 3, consistency_mode "consistent",
# each node in its own zone, as tests/it/harness.rs's GarageCluster).
garage_start() {
  local mode=$1 g i n secret
  g=$(garage_bin)
  mkdir -p "$W/garage"
  if [[ $mode == single ]]; then
    local d=$W/garage/0 port rpc
    mkdir -p "$d"
    port=$(free_port); rpc=$(free_port)
    cat >"$d/garage.toml" <<EOF
metadata_dir = "$d/meta"
data_dir = "$d/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(printf 'ab%.0s' {1..32})"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$port"
root_domain = ".s3.garage.localhost"
EOF
    GARAGE_DEFAULT_ACCESS_KEY=$GARAGE_KEY GARAGE_DEFAULT_SECRET_KEY=$GARAGE_SECRET GARAGE_DEFAULT_BUCKET=$BUCKET RUST_LOG=warn \
      "$g" -c "$d/garage.toml" server --single-node --default-bucket >/dev/null 2>>"$d/garage.log" &
    GARAGE_PIDS=($!)
    GARAGE_ENDPOINTS=("http://127.0.0.1:$port")
  elif [[ $mode == cluster ]]; then
    n=3
    secret=$(printf 'cd%.0s' {1..32})
    local s3p=() rpcp=() ids=()
    for ((i = 0; i < n; i++)); do
      s3p+=("$(free_port)"); rpcp+=("$(free_port)")
    done
    garage_toml() { # I PEERS
      local d=$W/garage/$1
      cat >"$d/garage.toml" <<EOF
metadata_dir = "$d/meta"
data_dir = "$d/data"
db_engine = "sqlite"
replication_factor = 3
consistency_mode = "consistent"
rpc_bind_addr = "127.0.0.1:${rpcp[$1]}"
rpc_public_addr = "127.0.0.1:${rpcp[$1]}"
rpc_secret = "$secret"
bootstrap_peers = [$2]
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:${s3p[$1]}"
root_domain = ".s3.garage.localhost"
EOF
    }
    for ((i = 0; i < n; i++)); do
      mkdir -p "$W/garage/$i"
      garage_toml "$i" ""
      RUST_LOG=warn "$g" -c "$W/garage/$i/garage.toml" server >/dev/null 2>>"$W/garage/$i/garage.log" &
      GARAGE_PIDS+=($!)
      GARAGE_ENDPOINTS+=("http://127.0.0.1:${s3p[$i]}")
    done
    gcli() { # I ARGS...: the garage CLI against node I, retried for 30 s
      local node=$1 t out
      shift
      for ((t = 0; t < 100; t++)); do
        if out=$(RUST_LOG=warn "$g" -c "$W/garage/$node/garage.toml" "$@" 2>&1); then echo "$out"; return 0; fi
        sleep 0.3
      done
      die "garage $* on node $node: $out"
    }
    for ((i = 0; i < n; i++)); do
      ids+=("$(gcli "$i" node id -q | tail -n 1 | cut -d@ -f1)")
      [[ ${#ids[$i]} == 64 ]] || die "garage node id of node $i: '${ids[$i]}'"
    done
    for ((i = 1; i < n; i++)); do gcli 0 node connect "${ids[$i]}@127.0.0.1:${rpcp[$i]}" >/dev/null; done
    for ((i = 0; i < n; i++)); do gcli 0 layout assign -z "dc$((i + 1))" -c 1G "${ids[$i]}" >/dev/null; done
    gcli 0 layout apply --version 1 >/dev/null
    gcli 0 key import --yes "$GARAGE_KEY" "$GARAGE_SECRET" >/dev/null
    gcli 0 bucket create "$BUCKET" >/dev/null
    gcli 0 bucket allow --read --write --owner "$BUCKET" --key "$GARAGE_KEY" >/dev/null
  else
    die "BENCH_GARAGE must be single or cluster (got '$mode')"
  fi
  for ep in "${GARAGE_ENDPOINTS[@]}"; do garage_wait_writable "$ep"; done
}

garage_stop() {
  local p
  for p in "${GARAGE_PIDS[@]}"; do stop_pid "$p"; done
  GARAGE_PIDS=()
}

pg_create() { # NAME
  PGDB=$1
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1 || true
  psql -q "$PG/postgres" -c "CREATE DATABASE $PGDB" >/dev/null || die "cannot create database $PGDB on $PG (PostgreSQL must run there with trust auth)"
}
pg_drop() {
  [[ -n $PGDB ]] && psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1 || true
  PGDB=""
}
sql() { psql -qAt "$PG/$PGDB" -c "$1"; }

# node_configure I DIR ENDPOINT PREFIX DOCKS_TOML EXTRA_TOML: writes DIR/evidenced.toml for node I
# (node id bench-nI, its own state dir and API port) on database $PGDB.
node_configure() {
  local i=$1 d=$2 ep=$3 prefix=$4 docks=$5 extra=$6 port
  port=$(free_port)
  mkdir -p "$d"
  cat >"$d/evidenced.toml" <<EOF
[node]
id = "bench-n$i"
state_dir = "$d/state"
[catalog]
url = "$PG/$PGDB"
[store]
kind = "s3"
bucket = "$BUCKET"
prefix = "$prefix"
endpoint = "$ep"
region = "garage"
force_path_style = true
access_key_id = "$GARAGE_KEY"
secret_access_key = "$GARAGE_SECRET"
[api]
listen = "127.0.0.1:$port"
[log]
format = "human"
filter = "info"
$extra
$docks
EOF
  NODE_CFGS[$i]=$d/evidenced.toml
  NODE_PORTS[$i]=$port
  NODE_DIRS[$i]=$d
}

# node_start I: starts node I (configured above), waits for /healthz (60 s).
node_start() {
  local i=$1 t
  (cd "${NODE_DIRS[$i]}" && exec "$EVIDENCED" --config evidenced.toml run >>daemon.log 2>&1) &
  NODE_PIDS[$i]=$!
  for ((t = 0; t < 600; t++)); do
    curl -sf "http://127.0.0.1:${NODE_PORTS[$i]}/healthz" >/dev/null && return 0
    kill -0 "${NODE_PIDS[$i]}" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 30 "${NODE_DIRS[$i]}/daemon.log" >&2
  die "node $i did not answer /healthz"
}

# nodes_stop: SIGTERM every node; NODE_STOPS gets "exit-status seconds" per node.
NODE_STOPS=()
nodes_stop() {
  local i t0
  NODE_STOPS=()
  for i in "${!NODE_PIDS[@]}"; do
    [[ -n ${NODE_PIDS[$i]} ]] && kill "${NODE_PIDS[$i]}" 2>/dev/null || true
  done
  for i in "${!NODE_PIDS[@]}"; do
    t0=$(date +%s.%N)
    stop_pid "${NODE_PIDS[$i]}" 15
    NODE_STOPS[$i]="$STOP_RC $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')"
  done
  NODE_PIDS=()
}

# Log lines at WARN and ERROR of a daemon log ("human" format), and panics.
log_levels() { # FILE -> "warn error panic"
  printf '%s %s %s\n' "$(grep -c ' WARN ' "$1" || true)" "$(grep -c ' ERROR ' "$1" || true)" "$(grep -c 'panicked' "$1" || true)"
}

CLK_TCK=$(getconf CLK_TCK)
# CPU ticks (user+system, with waited-for children: the media workers) of the given pids.
proc_ticks() {
  local t=0 p v
  for p in "$@"; do
    v=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null) && t=$((t + v))
  done
  echo "$t"
}
# Children's share alone (media worker children the daemon has waited for).
child_ticks() {
  local t=0 p v
  for p in "$@"; do
    v=$(awk '{print $16 + $17}' "/proc/$p/stat" 2>/dev/null) && t=$((t + v))
  done
  echo "$t"
}
postgres_ticks() { # every postgres process (the server and its backends)
  cat /proc/[0-9]*/stat 2>/dev/null | awk '$2 == "(postgres)" {t += $14 + $15} END {print t + 0}'
}
host_busy() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
ticks_s() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", t / hz}'; }

src_state() {
  local st
  st=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  if git status --porcelain -- src Cargo.lock migrations 2>/dev/null | grep -q .; then
    st+=" plus uncommitted changes (\`git diff HEAD -- src migrations | sha256sum\`: $(git diff HEAD -- src migrations | sha256sum | cut -c1-12))"
  fi
  echo "$st"
}

# Sets EVIDENCED, S3_PUT and SRC: builds the release binaries and the s3_put bench binary from
# this tree, or (BENCH_BIN_DIR) takes prebuilt `evidenced`, `evidenced-media-worker` and `s3_put`
# from a directory whose SOURCE file says what they were built from.
build_binaries() {
  if [[ -n ${BENCH_BIN_DIR:-} ]]; then
    EVIDENCED=$BENCH_BIN_DIR/evidenced S3_PUT=$BENCH_BIN_DIR/s3_put
    [[ -x $BENCH_BIN_DIR/evidenced-media-worker ]] || die "no evidenced-media-worker in $BENCH_BIN_DIR"
    SRC=$(cat "$BENCH_BIN_DIR/SOURCE" 2>/dev/null || echo "prebuilt binaries from $BENCH_BIN_DIR")
  else
    SRC=$(src_state)
    if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
      log "cargo build --release --bins; cargo bench --bench s3_put --no-run (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
      cargo build --release --bins -q
      cargo bench --bench s3_put --no-run -q 2>/dev/null
    else
      SRC+=" (BENCH_NO_BUILD=1: the binary was not rebuilt and may be older)"
    fi
    EVIDENCED=$CARGO_TARGET_DIR/release/evidenced
    S3_PUT=$(ls -t "$CARGO_TARGET_DIR"/release/deps/s3_put-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true)
  fi
  [[ -x $EVIDENCED && -x $S3_PUT ]] || die "missing $EVIDENCED or the s3_put bench binary"
}
