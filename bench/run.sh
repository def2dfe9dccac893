#!/usr/bin/env bash
# Ingest benchmark: evidenced vs. just moving the same bytes vs. the naive two-pass
# `sha256sum` + move, into the `fs` store and into S3 (a private Garage). Writes the figures to
# docs/benchmarks.md and prints them. One command: bench/run.sh (see bench/README.md for the
# environment variables that change sizes and paths).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The settings given in the environment, for the report's command line.
ENV_USED=
for v in BENCH_DIR BENCH_BIG_GIB BENCH_BIG_MIB BENCH_BATCH_FILES BENCH_BATCH_MIB BENCH_REPEAT BENCH_FS_REPEAT BENCH_S3_REPEAT BENCH_CACHE; do
    if [[ -n ${!v:-} ]]; then ENV_USED+="$v=${!v} "; fi
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
BENCH_DIR=${BENCH_DIR:-/var/tmp/evidenced-bench}
BIG_MIB=${BENCH_BIG_MIB:-$(( ${BENCH_BIG_GIB:-2} * 1024 ))}
BATCH_FILES=${BENCH_BATCH_FILES:-24}
BATCH_MIB=${BENCH_BATCH_MIB:-40}
# fs steps take seconds and vary with the (virtual) disk: more repeats; S3 steps take longer and
# every upload stays in Garage until the end (disk space).
FS_REPEAT=${BENCH_FS_REPEAT:-${BENCH_REPEAT:-5}}
S3_REPEAT=${BENCH_S3_REPEAT:-${BENCH_REPEAT:-3}}
OUT=${BENCH_OUT:-$REPO/docs/benchmarks.md}
CACHE_MODE=${BENCH_CACHE:-auto} # auto | cold | warm
# evidenced's S3 defaults, given to rclone as well.
THRESHOLD_MIB=16 PART_MIB=8 IN_FLIGHT=3
GARAGE_KEY=GK0123456789abcdef01234567
GARAGE_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
BUCKET=evidence

RUN_STARTED=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for v in BIG_MIB BATCH_FILES BATCH_MIB FS_REPEAT S3_REPEAT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ $BENCH_DIR == /* && $BENCH_DIR != / && $BENCH_DIR != "$HOME" ]] || die "BENCH_DIR must be an absolute path other than / and \$HOME"

# ------------------------------------------------------------------ tools
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required${2:+ ($2)}"; }
if [[ ! -x /usr/bin/time ]]; then
    log "installing GNU time (Debian package 'time')"
    apt-get install -y time >/dev/null || die "/usr/bin/time is required (apt-get install time)"
fi
need rclone "apt-get install rclone"
need sha256sum
need cargo
GARAGE=${GARAGE:-$HOME/.cargo/bin/garage}
[[ -x $GARAGE ]] || GARAGE=$(command -v garage) || die "garage is required (cargo install garage --locked)"

# ------------------------------------------------------------------ work dir
W=$BENCH_DIR
MARK=.evidenced-bench
if [[ -e $W ]]; then
    [[ -e $W/$MARK || -z $(ls -A "$W") ]] || die "$W exists and was not made by this script; refusing to clean it"
fi
GARAGE_PID=
clean_work() {
    [[ -e $W/$MARK ]] || return 0
    chmod -R u+w "$W" 2>/dev/null || true
    rm -rf "$W"
}
LOGS=$BENCH_DIR.log
on_exit() {
    local rc=$?
    if [[ -d $W/log && -e $W/$MARK ]] && [[ ! -e $LOGS || -e $LOGS/$MARK ]]; then
        rm -rf "$LOGS" && cp -r "$W/log" "$LOGS" && touch "$LOGS/$MARK" || true
        cp "$W/garage/garage.log" "$LOGS/" 2>/dev/null || true
    fi
    if [[ -n $GARAGE_PID ]]; then kill "$GARAGE_PID" 2>/dev/null || true; wait "$GARAGE_PID" 2>/dev/null || true; fi
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $W (BENCH_KEEP=1)"; else clean_work; fi
    ((rc == 0)) || log "failed (exit $rc); the logs of every step are in $LOGS"
}
trap on_exit EXIT
trap 'exit 130' INT TERM
clean_work
mkdir -p "$W"/{in/big,in/batch,out,run,log}
touch "$W/$MARK"

BIG_BYTES=$((BIG_MIB << 20))
BATCH_BYTES=$((BATCH_FILES * BATCH_MIB << 20))
TOTAL=$((BIG_BYTES + BATCH_BYTES))
# Inputs + one fs output at a time + every S3 upload (Garage keeps them until the end) + slack.
NEED_KIB=$(((TOTAL * (2 + 3 * S3_REPEAT) + (1 << 30)) >> 10))
AVAIL_KIB=$(df -Pk "$W" | awk 'NR==2 {print $4}')
((AVAIL_KIB > NEED_KIB)) || die "$W needs about $((NEED_KIB >> 20)) GiB free, has $((AVAIL_KIB >> 20)) GiB"

# ------------------------------------------------------------------ build
# The source state the binary is built from (the tree may carry uncommitted work); taken before and
# after the build, so a change in between is noticed.
src_state() {
    local st
    st=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if (cd "$REPO" && git status --porcelain -- src Cargo.toml Cargo.lock migrations 2>/dev/null | grep -q .); then
        st+=" plus uncommitted changes under src/ (\`git diff HEAD -- src | sha256sum\`: $(cd "$REPO" && git diff HEAD -- src | sha256sum | cut -c1-12))"
    fi
    echo "$st"
}
SRC_STATE=$(src_state)
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
    log "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$REPO" && cargo build --release --locked)
else
    SRC_STATE+=" (BENCH_NO_BUILD=1: the binary was not rebuilt and may be older)"
fi
EVIDENCED=$CARGO_TARGET_DIR/release/evidenced
[[ -x $EVIDENCED ]] || die "no binary at $EVIDENCED"
[[ $(src_state) == "$SRC_STATE" ]] || SRC_STATE+=" (the source changed while it was being built: now $(src_state))"
# Builds with the \`store.verify_readback\` key (fs read-back verification optional) get one more fs row.
mkdir -p "$W/probe"
printf '[node]\nid = "probe"\nstate_dir = "%s/probe/state"\n[catalog]\nurl = "sqlite://%s/probe/c.db"\n[store]\nkind = "fs"\npath = "%s/probe/store"\nverify_readback = true\n' "$W" "$W" "$W" >"$W/probe/c.toml"
if (cd "$W/probe" && "$EVIDENCED" --config c.toml token list >/dev/null 2>&1); then READBACK_KEY=1; else READBACK_KEY=0; fi
rm -rf "$W/probe"

# ------------------------------------------------------------------ inputs
log "generating inputs: 1 x $BIG_MIB MiB, $BATCH_FILES x $BATCH_MIB MiB (from /dev/urandom)"
head -c "${BIG_MIB}M" /dev/urandom >"$W/in/big/BWC1_P100_20240315083000_0001.mp4"
for ((i = 1; i <= BATCH_FILES; i++)); do
    head -c "${BATCH_MIB}M" /dev/urandom >"$W/in/batch/$(printf 'BWC2_P200_20240315%02d0000_%04d.mp4' $((i % 24)) "$i")"
done
sync

# ------------------------------------------------------------------ page cache
if [[ $CACHE_MODE == auto || $CACHE_MODE == cold ]]; then
    if (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
        CACHE_MODE=cold
    elif [[ $CACHE_MODE == cold ]]; then
        die "BENCH_CACHE=cold but /proc/sys/vm/drop_caches is not writable"
    else
        CACHE_MODE=warm
    fi
fi
case $CACHE_MODE in
cold) CACHE_TEXT='cold: `sync; echo 3 > /proc/sys/vm/drop_caches` before every measured step, so every method reads its input from disk' ;;
warm) CACHE_TEXT='warm: `sync`, then every input read once (`cat … > /dev/null`) before every measured step, so every method finds its input in the page cache (dropping caches was not permitted or not asked for)' ;;
*) die "BENCH_CACHE must be auto, cold or warm" ;;
esac
log "page cache: $CACHE_MODE"
prepare_cache() {
    sync
    if [[ $CACHE_MODE == cold ]]; then
        echo 3 >/proc/sys/vm/drop_caches
    else
        find "$W/in" -type f -exec cat {} + >/dev/null
    fi
}

# ------------------------------------------------------------------ measuring
declare -A SECS CPU RSS ANON FILEB SRV HOST # key "scenario/method" -> space-separated values, one per repeat
STEP=0
# Largest RssAnon / RssFile (KiB) of the direct child of PID, sampled every 50 ms until PID exits.
# (ru_maxrss counts both: anonymous memory and the pages of the binary and its shared libraries.)
sample_rss() {
    local pid=$1 child k v _ state
    PEAK_ANON=0 PEAK_FILE=0
    while :; do
        state=
        while IFS=$':\t ' read -r k v _; do [[ $k == State ]] && { state=$v; break; }; done </proc/"$pid"/status 2>/dev/null || true
        [[ -n $state && $state != Z && $state != X ]] || break
        child=
        read -r child _ </proc/"$pid"/task/"$pid"/children 2>/dev/null || true
        if [[ -n $child ]]; then
            while IFS=$':\t ' read -r k v _; do
                case $k in
                RssAnon) ((v > PEAK_ANON)) && PEAK_ANON=$v ;;
                RssFile) ((v > PEAK_FILE)) && PEAK_FILE=$v ;;
                esac
            done </proc/"$child"/status 2>/dev/null || true
        fi
        sleep 0.05
    done
}
# CPU time (user + system, clock ticks) Garage has used so far.
CLK_TCK=$(getconf CLK_TCK)
garage_ticks() { awk '{print $14 + $15}' /proc/"$GARAGE_PID"/stat; }
# Busy CPU time (clock ticks) of the whole machine so far: user, nice, system, irq, softirq, steal.
host_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
# measure SCENARIO METHOD CMD...: identical cache state, then the command under GNU time.
measure() {
    local scen=$1 meth=$2
    shift 2
    STEP=$((STEP + 1))
    local tag=$STEP-$scen-$meth tp
    prepare_cache
    log "run $tag"
    local t0=0 t1=0 h0 h1
    [[ -n $GARAGE_PID ]] && t0=$(garage_ticks)
    h0=$(host_ticks)
    /usr/bin/time -o "$W/log/$tag.time" -f '%e %U %S %M' "$@" >"$W/log/$tag.out" 2>"$W/log/$tag.err" &
    tp=$!
    sample_rss "$tp"
    if ! wait "$tp"; then
        log "$tag failed; stdout and stderr:"
        tail -n 30 "$W/log/$tag.out" "$W/log/$tag.err" >&2
        exit 1
    fi
    h1=$(host_ticks)
    [[ -n $GARAGE_PID ]] && t1=$(garage_ticks)
    HOST[$scen/$meth]+="$(awk -v a="$h0" -v b="$h1" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / hz}') "
    local e u s m
    read -r e u s m < <(tail -n 1 "$W/log/$tag.time")
    SRV[$scen/$meth]+="$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / hz}') "
    SECS[$scen/$meth]+="$e "
    CPU[$scen/$meth]+="$(awk -v u="$u" -v s="$s" 'BEGIN {printf "%.2f", u + s}') "
    RSS[$scen/$meth]+="$m "
    ANON[$scen/$meth]+="$PEAK_ANON "
    FILEB[$scen/$meth]+="$PEAK_FILE "
}

input_of() { echo "$W/in/$1"; } # big | batch
files_of() { [[ $1 == big ]] && echo 1 || echo "$BATCH_FILES"; }
bytes_of() { [[ $1 == big ]] && echo "$BIG_BYTES" || echo "$BATCH_BYTES"; }

# Checks evidenced's summary line: every file archived, none failed.
check_ingest() {
    local tag=$1 want=$2 line
    line=$(grep -E '^archived ' "$W/log/$STEP-$tag.out" || true)
    [[ $line == "archived $want, already archived (duplicates) 0, skipped 0, failed 0" ]] ||
        die "$tag: expected $want files archived, evidenced said: ${line:-nothing}"
}

evidenced_config() { # FILE N STORE_TOML
    cat >"$1" <<EOF
[node]
id = "bench"
state_dir = "$W/run/state-$2"
[catalog]
url = "sqlite://$W/run/catalog-$2.db"
$3
[log]
format = "human"
filter = "info"
EOF
}

# ------------------------------------------------------------------ references
# The binary alone: what the loader maps before any work (counts towards every peak RSS below).
BASE_RSS=$(/usr/bin/time -f '%M' "$EVIDENCED" --version 2>&1 >/dev/null | tail -n 1)
SHARED_LIBS=$(ldd "$EVIDENCED" 2>/dev/null | wc -l)
# Raw read speed of the disk for the big input in the chosen cache state.
prepare_cache
READ_SECS=$(/usr/bin/time -f '%e' cat "$W/in/big/"* 2>&1 >/dev/null | tail -n 1)
# Process start-up alone, in the same cache state (the loader reads the binary and its libraries).
prepare_cache
START_SECS=$(/usr/bin/time -f '%e' "$EVIDENCED" --version 2>&1 >/dev/null | tail -n 1)

# ------------------------------------------------------------------ fs
RUN=0
for r in $(seq 1 "$FS_REPEAT"); do
    for what in big batch; do
        src=$(input_of $what)
        n=$(files_of $what)

        d=$W/out/fs-plain
        mkdir -p "$d"
        measure fs-$what plain bash -c 'cp -r -- "$1"/. "$2"/ && sync' _ "$src" "$d"
        [[ $(find "$d" -type f | wc -l) == "$n" ]] || die "fs plain copied the wrong number of files"
        rm -rf "$d"

        d=$W/out/fs-naive
        mkdir -p "$d"
        measure fs-$what naive bash -c 'find "$1" -type f -exec sha256sum -- {} + >"$3" && cp -r -- "$1"/. "$2"/ && sync' \
            _ "$src" "$d" "$W/run/naive-$r-$what.sha256"
        rm -rf "$d"

        RUN=$((RUN + 1))
        cfg=$W/run/fs-$RUN.toml
        evidenced_config "$cfg" "$RUN" "[store]
kind = \"fs\"
path = \"$W/out/fs-evidenced\""
        measure fs-$what evidenced bash -c 'cd "$1" && exec "$2" --config "$3" ingest --quiet "$4"' _ "$W/run" "$EVIDENCED" "$cfg" "$src"
        check_ingest fs-$what-evidenced "$n"
        [[ $(find "$W/out/fs-evidenced/originals" -type f -name original | wc -l) == "$n" ]] || die "fs store holds the wrong number of originals"
        chmod -R u+w "$W/out/fs-evidenced"
        rm -rf "$W/out/fs-evidenced"

        if ((READBACK_KEY)); then
            RUN=$((RUN + 1))
            cfg=$W/run/fs-$RUN.toml
            evidenced_config "$cfg" "$RUN" "[store]
kind = \"fs\"
path = \"$W/out/fs-evidenced\"
verify_readback = true"
            measure fs-$what evidenced-readback bash -c 'cd "$1" && exec "$2" --config "$3" ingest --quiet "$4"' _ "$W/run" "$EVIDENCED" "$cfg" "$src"
            check_ingest fs-$what-evidenced-readback "$n"
            chmod -R u+w "$W/out/fs-evidenced"
            rm -rf "$W/out/fs-evidenced"
        fi
    done
done

# ------------------------------------------------------------------ s3 (Garage)
free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    else
        local p
        while :; do
            p=$(shuf -i 20000-60000 -n 1)
            ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }
        done
    fi
}
GPORT=$(free_port)
GRPC=$(free_port)
while [[ $GRPC == "$GPORT" ]]; do GRPC=$(free_port); done
mkdir -p "$W/garage"
cat >"$W/garage/garage.toml" <<EOF
metadata_dir = "$W/garage/meta"
data_dir = "$W/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$GRPC"
rpc_public_addr = "127.0.0.1:$GRPC"
rpc_secret = "$(printf 'ab%.0s' {1..32})"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$GPORT"
root_domain = ".s3.garage.localhost"
EOF
ENDPOINT=http://127.0.0.1:$GPORT
log "starting Garage on $ENDPOINT"
GARAGE_DEFAULT_ACCESS_KEY=$GARAGE_KEY GARAGE_DEFAULT_SECRET_KEY=$GARAGE_SECRET GARAGE_DEFAULT_BUCKET=$BUCKET RUST_LOG=warn \
    "$GARAGE" -c "$W/garage/garage.toml" server --single-node --default-bucket >/dev/null 2>>"$W/garage/garage.log" &
GARAGE_PID=$!

# rclone, configured from the environment only (remote "bench"). Its AWS SDK refuses a custom
# AWS_CA_BUNDLE with its own transport ("LoadCustomCABundleError"); the endpoint is plain HTTP anyway.
unset AWS_CA_BUNDLE
: >"$W/run/rclone.conf"
export RCLONE_CONFIG=$W/run/rclone.conf
export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other RCLONE_CONFIG_BENCH_ENV_AUTH=false
export RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=$GARAGE_KEY RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=$GARAGE_SECRET
export RCLONE_CONFIG_BENCH_ENDPOINT=$ENDPOINT RCLONE_CONFIG_BENCH_REGION=garage RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true
RCLONE_FLAGS=(--s3-upload-cutoff "${THRESHOLD_MIB}M" --s3-chunk-size "${PART_MIB}M" --s3-upload-concurrency "$IN_FLIGHT"
    --s3-disable-checksum --s3-no-check-bucket --transfers 1 --no-traverse --contimeout 5s --timeout 60s)

deadline=$((SECONDS + 60))
until rclone lsf --retries 1 --low-level-retries 1 "bench:$BUCKET" >/dev/null 2>&1; do
    kill -0 "$GARAGE_PID" 2>/dev/null || { tail -n 20 "$W/garage/garage.log" >&2; die "Garage exited"; }
    ((SECONDS < deadline)) || { tail -n 20 "$W/garage/garage.log" >&2; die "Garage did not answer within 60 s"; }
    sleep 0.3
done

# Bytes stored under a prefix (the evidenced prefix also holds small manifest.json objects).
s3_bytes() { rclone size --json "bench:$BUCKET/$1" | sed -E 's/.*"bytes":([0-9]+).*/\1/'; }

for r in $(seq 1 "$S3_REPEAT"); do
    for what in big batch; do
        src=$(input_of $what)
        n=$(files_of $what)
        b=$(bytes_of $what)

        p=plain-$what-$r
        measure s3-$what plain rclone copy "${RCLONE_FLAGS[@]}" "$src" "bench:$BUCKET/$p"
        [[ $(s3_bytes "$p") == "$b" ]] || die "rclone uploaded the wrong number of bytes to $p"

        p=naive-$what-$r
        measure s3-$what naive bash -c 'find "$1" -type f -exec sha256sum -- {} + >"$2" && shift 2 && exec rclone copy "$@"' \
            _ "$src" "$W/run/naive-s3-$r-$what.sha256" "${RCLONE_FLAGS[@]}" "$src" "bench:$BUCKET/$p"
        [[ $(s3_bytes "$p") == "$b" ]] || die "rclone uploaded the wrong number of bytes to $p"

        RUN=$((RUN + 1))
        p=evidenced-$what-$r
        cfg=$W/run/s3-$RUN.toml
        evidenced_config "$cfg" "$RUN" "[store]
kind = \"s3\"
bucket = \"$BUCKET\"
prefix = \"$p\"
endpoint = \"$ENDPOINT\"
region = \"garage\"
force_path_style = true
access_key_id = \"$GARAGE_KEY\"
secret_access_key = \"$GARAGE_SECRET\"
multipart_threshold = $((THRESHOLD_MIB << 20))
part_size = $((PART_MIB << 20))
parts_in_flight = $IN_FLIGHT"
        measure s3-$what evidenced bash -c 'cd "$1" && exec "$2" --config "$3" ingest --quiet "$4"' _ "$W/run" "$EVIDENCED" "$cfg" "$src"
        check_ingest s3-$what-evidenced "$n"
        got=$(s3_bytes "$p")
        ((got >= b)) || die "evidenced stored $got bytes under $p, expected at least $b"
    done
done

kill "$GARAGE_PID" 2>/dev/null || true
wait "$GARAGE_PID" 2>/dev/null || true
GARAGE_PID=

# ------------------------------------------------------------------ report
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
maxof() { tr ' ' '\n' | grep . | sort -g | tail -n 1; }
minof() { tr ' ' '\n' | grep . | sort -g | head -n 1; }
gib() { awk -v b="$1" 'BEGIN {printf "%.2f GiB", b / 1073741824}'; }

label() { [[ $1 == evidenced-readback ]] && echo 'evidenced, `verify_readback = true`' || echo "$1"; }
TARGETS_MET=1
SUMMARY=
table() { # SCENARIO TITLE BYTES
    local scen=$1 title=$2 bytes=$3 plain m s c rss ratio mbs verdict rss_max range
    plain=$(median <<<"${SECS[$scen/plain]}")
    echo "### $title"
    echo
    if [[ $scen == s3-* ]]; then
        echo "| method | seconds | range (s) | MB/s | × plain | CPU s (user+sys) | Garage CPU s | host CPU s | peak RSS (MiB) |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    else
        echo "| method | seconds | range (s) | MB/s | × plain | CPU s (user+sys) | host CPU s | peak RSS (MiB) |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    fi
    for m in plain naive evidenced evidenced-readback; do
        [[ -n ${SECS[$scen/$m]+x} ]] || continue
        s=$(median <<<"${SECS[$scen/$m]}")
        c=$(median <<<"${CPU[$scen/$m]}")
        rss=$(maxof <<<"${RSS[$scen/$m]}")
        range="$(minof <<<"${SECS[$scen/$m]}")–$(maxof <<<"${SECS[$scen/$m]}")"
        mbs=$(awk -v b="$bytes" -v s="$s" 'BEGIN {printf "%.0f", (s > 0) ? b / s / 1e6 : 0}')
        ratio=$(awk -v s="$s" -v p="$plain" 'BEGIN {printf "%.2f", (p > 0) ? s / p : 0}')
        if [[ $scen == s3-* ]]; then
            printf '| %s | %.2f | %s | %s | %s | %.2f | %.2f | %.2f | %.1f |\n' "$(label "$m")" "$s" "$range" "$mbs" "$ratio" "$c" "$(median <<<"${SRV[$scen/$m]}")" "$(median <<<"${HOST[$scen/$m]}")" "$(awk -v k="$rss" 'BEGIN {print k / 1024}')"
        else
            printf '| %s | %.2f | %s | %s | %s | %.2f | %.2f | %.1f |\n' "$(label "$m")" "$s" "$range" "$mbs" "$ratio" "$c" "$(median <<<"${HOST[$scen/$m]}")" "$(awk -v k="$rss" 'BEGIN {print k / 1024}')"
        fi
    done
    echo
    s=$(median <<<"${SECS[$scen/evidenced]}")
    ratio=$(awk -v s="$s" -v p="$plain" 'BEGIN {printf "%.2f", (p > 0) ? s / p : 0}')
    if awk -v r="$ratio" 'BEGIN {exit !(r <= 1.25)}'; then verdict=met; else verdict="not met"; TARGETS_MET=0; fi
    echo "target: evidenced ≤ 1.25 × plain: **$verdict** (${ratio}×)"
    echo
    if [[ -n ${SECS[$scen/evidenced-readback]+x} ]]; then
        local rb
        rb=$(median <<<"${SECS[$scen/evidenced-readback]}")
        echo "read-back verification: $(awk -v a="$rb" -v b="$s" 'BEGIN {printf "%+.2f s (%+.0f %%)", a - b, (b > 0) ? 100 * (a - b) / b : 0}') wall against the default (median against median)"
        echo
    fi
    rss_max=$(maxof <<<"${RSS[$scen/evidenced]}")
    local rss_mib anon_mib file_mib
    rss_mib=$(awk -v k="$rss_max" 'BEGIN {printf "%.1f", k / 1024}')
    anon_mib=$(awk -v k="$(maxof <<<"${ANON[$scen/evidenced]}")" 'BEGIN {printf "%.1f", k / 1024}')
    file_mib=$(awk -v k="$(maxof <<<"${FILEB[$scen/evidenced]}")" 'BEGIN {printf "%.1f", k / 1024}')
    local rverdict
    if ((rss_max < 64 * 1024)); then rverdict=met; else rverdict="not met"; TARGETS_MET=0; fi
    echo "evidenced peak RSS: $rss_mib MiB — target < 64 MiB: **$rverdict**"
    echo "(sampled every 50 ms: at most $anon_mib MiB anonymous, $file_mib MiB file-backed, i.e. pages of the binary and its shared libraries)"
    echo
    SUMMARY+="| $title | ${ratio}× | $verdict | $rss_mib | $rverdict |"$'\n'
}

FS_DEV=$(df -P "$W" | awk 'NR==2 {print $1}')
FS_TYPE=$(df -PT "$W" | awk 'NR==2 {print $2}')
DISK=$(lsblk -ndo NAME,SIZE,ROTA,MODEL "$FS_DEV" 2>/dev/null | awk '{printf "%s %s, lsblk ROTA=%s%s", $1, $2, $3, (NF > 3 ? ", model " substr($0, index($0, $4)) : "")}')
# Guest memory features that make page-cache-heavy steps vary between repeats: free page reporting
# (freed memory, e.g. after drop_caches, goes back to the host and is faulted in again on reuse)
# and DAMON reclaim (cold pages paged out proactively).
VM_MEM=
for d in /sys/bus/virtio/devices/*; do
    [[ $(cat "$d/device" 2>/dev/null) == 0x0005 ]] || continue
    [[ $(cut -c6 "$d/features" 2>/dev/null) == 1 ]] && VM_MEM+="virtio-balloon free page reporting is on; "
done
for k in /sys/kernel/mm/damon/admin/kdamonds/*/state; do
    [[ -r $k && $(cat "$k") == on ]] && { VM_MEM+="a DAMON kdamond is running; "; break; }
done
grep -qw hypervisor /proc/cpuinfo && DISK+="; a virtual machine (cpuinfo flag \`hypervisor\`), so reads and writes may be served by the host's cache"
CPU_MODEL=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
RAM=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
SHA_EXT=$(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no)
WALL=$(($(date +%s) - RUN_STARTED))

DOC=$(mktemp)
{
    echo "# Benchmarks"
    echo
    echo "Ingest throughput and memory of \`evidenced ingest\` against just moving the same bytes and"
    echo "against the naive two-pass \`sha256sum\` + move, into the \`fs\` store and into S3."
    echo
    echo "- **Command:** \`${ENV_USED}bench/run.sh\` (from the repository root; \`CARGO_TARGET_DIR=$CARGO_TARGET_DIR\`)"
    echo "- **Date:** $(date -u '+%Y-%m-%d %H:%M UTC'); the whole run (build check, input generation, every step) took $((WALL / 60)) min $((WALL % 60)) s"
    echo "- **Machine:** $(nproc) CPUs (nproc), $CPU_MODEL (SHA extensions: $SHA_EXT), $RAM RAM, Linux $(uname -r);"
    echo "  load average $LOAD_BEFORE before the run, $(cut -d' ' -f1-3 /proc/loadavg) after"
    echo "- **Work dir:** \`$W\` on $FS_DEV (${FS_TYPE}${DISK:+; $DISK}); Garage's data and metadata live there too"
    echo "- **Software:** evidenced $SRC_STATE (release build), $(rclone version 2>/dev/null | head -n 1), Garage $("$GARAGE" --version 2>/dev/null | awk '{print $2}' | sed 's/^cargo://'), $(sha256sum --version | head -n 1)"
    echo "- **Sizes:** big file 1 × $BIG_MIB MiB ($(gib "$BIG_BYTES"), $BIG_BYTES bytes); batch $BATCH_FILES × $BATCH_MIB MiB camera-sized files ($(gib "$BATCH_BYTES"), $BATCH_BYTES bytes); random bytes from \`/dev/urandom\`"
    echo "- **Page cache:** $CACHE_TEXT"
    if [[ -n $VM_MEM ]]; then
        echo "- **Guest memory:** ${VM_MEM%; }: memory freed before a step is returned to the host and faulted back"
        echo "  in when the step writes the page cache, so fs steps vary between repeats (see the range column)"
    fi
    echo "- **Repeats:** $FS_REPEAT per method for fs, $S3_REPEAT for s3, interleaved (plain, naive, evidenced, then again); seconds"
    echo "  and CPU are the median, peak RSS the maximum"
    echo "- **References:** reading the big input with \`cat\` in this cache state: $(awk -v b="$BIG_BYTES" -v s="$READ_SECS" 'BEGIN {printf "%.0f", (s > 0) ? b / s / 1e6 : 0}') MB/s;"
    echo "  \`evidenced --version\` alone peaks at $(awk -v k="$BASE_RSS" 'BEGIN {printf "%.1f", k / 1024}') MiB RSS (the binary and the $SHARED_LIBS shared libraries \`ldd\` lists)"
    echo "  and takes $START_SECS s in this cache state (process start-up alone, paid once per \`evidenced ingest\`)"
    echo
    echo "## Summary"
    echo
    echo "| scenario | evidenced ÷ plain | ≤ 1.25× | evidenced peak RSS (MiB) | < 64 MiB |"
    echo "|---|---:|---|---:|---|"
    RESULTS=$(
        table fs-big "fs — big file" "$BIG_BYTES"
        table fs-batch "fs — batch of $BATCH_FILES files" "$BATCH_BYTES"
        table s3-big "s3 (Garage) — big file" "$BIG_BYTES"
        table s3-batch "s3 (Garage) — batch of $BATCH_FILES files" "$BATCH_BYTES"
        echo "@@SUMMARY@@"
        printf '%s' "$SUMMARY"
        echo "@@MET@@ $TARGETS_MET"
    )
    sed -n '/^@@SUMMARY@@$/,/^@@MET@@/p' <<<"$RESULTS" | sed '1d;$d'
    echo
    if [[ $(sed -n 's/^@@MET@@ //p' <<<"$RESULTS") == 1 ]]; then echo "All targets met."; else echo "Some targets are **not met** (see below)."; fi
    echo
    echo "## Results"
    echo
    echo "Seconds are wall time (median; range over the repeats). MB/s is 10^6 bytes per second of wall time."
    echo "× plain is the wall time divided by the plain move's."
    echo "CPU s is user + system time of the measured process and its children; Garage CPU s is what the"
    echo "server used during the step; host CPU s is all busy CPU time of the machine during the step (every"
    echo "process and kernel thread, e.g. writeback): far above the other two means something else was running."
    echo "Peak RSS is GNU time's maximum resident set size of the largest process."
    echo
    sed '/^@@SUMMARY@@$/,$d' <<<"$RESULTS"
    echo "## Method"
    echo
    echo "Every method runs on the big file and, separately, on the batch, each into a fresh destination,"
    echo "one after the other in the same run, with the same page-cache state before each step (above)."
    echo "Each step is timed by GNU \`/usr/bin/time\` (wall, user, system, peak RSS)."
    echo
    echo "- **fs, plain:** \`cp -r\` to a directory on the same file system, then \`sync\` (the store fsyncs,"
    echo "  so the copy must reach the disk too)."
    echo "- **fs, naive:** \`sha256sum\` over the input, then the same \`cp\` + \`sync\`."
    echo "- **fs, evidenced:** \`evidenced --config CFG ingest --quiet INPUT\` with \`[store] kind = \"fs\"\` in the work dir,"
    echo "  a fresh SQLite catalog per run, \`[node] id = \"bench\"\` and no docks. Per file the store hashes while"
    echo "  it writes a temporary file, fsyncs it, renames it, fsyncs the directory, then writes the manifest and"
    if ((READBACK_KEY)); then
        echo "  commits to the catalog. This build makes read-back verification optional (\`store.verify_readback\`,"
        echo "  off by default): the extra row turns it on (the file is read back from disk, page cache dropped, and"
        echo "  hashed again before it counts as archived)."
    else
        echo "  commits to the catalog; before that it reads the file back from disk (page cache dropped for it) and"
        echo "  hashes it again (this build always does)."
    fi
    echo "- **s3, plain:** \`rclone copy\` with the same multipart settings as evidenced's defaults:"
    echo "  \`${RCLONE_FLAGS[*]}\`."
    echo "  \`--s3-disable-checksum\` stops rclone from reading each file once more to compute an MD5 before"
    echo "  uploading; \`--transfers 1\` because \`evidenced ingest\` takes one file at a time; the connect and idle"
    echo "  timeouts are evidenced's (5 s, 60 s) instead of rclone's 1 min and 5 min."
    echo "- **s3, naive:** \`sha256sum\`, then the same \`rclone copy\`."
    echo "- **s3, evidenced:** \`evidenced ingest\` with \`[store] kind = \"s3\"\`, multipart threshold $THRESHOLD_MIB MiB, part size"
    echo "  $PART_MIB MiB, $IN_FLIGHT parts in flight, a SHA-256 on every part and the composite checksum checked after completion."
    echo "- **Garage:** a private single-node Garage (SQLite metadata engine) on free local ports, started like the"
    echo "  integration tests start it; it runs on the same $(nproc) CPUs as the client, so its work (checksum"
    echo "  verification, block hashing, writing) competes with the client's."
    echo
    echo "## What each method does per byte"
    echo
    echo "- **fs, plain:** GNU \`cp\` copies with \`copy_file_range\`, page cache to page cache inside the kernel:"
    echo "  one read from disk, one in-kernel copy, no hashing; \`sync\` then writes it once."
    echo "- **fs, evidenced:** one read from disk, SHA-256, and the bytes cross the kernel boundary twice (\`read\`"
    echo "  into the process, \`write\` back out) where \`cp\` copies once inside the kernel; read-back verification"
    echo "  adds a second read from disk, a third crossing and a second SHA-256. When the disk is slower than the"
    echo "  CPU the extra work can hide behind the I/O (except the second read); when the disk is fast (a VM disk"
    echo "  backed by the host's cache can be) the CPU work shows."
    echo "- **fs, naive:** \`sha256sum\` reads the input once (from disk), then \`cp\` finds it in the page cache"
    echo "  when it fits in RAM (here it does: $RAM), so the naive method's second read is cheap in this benchmark."
    echo "- **s3, plain:** rclone is not a bare byte mover: over plain HTTP it signs every part's payload"
    echo "  (SigV4 \`X-Amz-Content-Sha256\` = SHA-256 of the part) and sends \`Content-MD5\`, so it hashes every byte"
    echo "  with SHA-256 and MD5 (seen with \`rclone --dump headers\`), and Garage checks both."
    echo "- **s3, evidenced:** \`UNSIGNED-PAYLOAD\` plus \`x-amz-checksum-sha256\` on every part (Garage verifies it),"
    echo "  and the whole-file SHA-256 kept alongside: two SHA-256 passes per byte on the client, one read from disk."
    echo "  Memory: part buffers, bounded by the parts in flight (the README's estimate, (parts_in_flight + 1) × part"
    echo "  size, is $(((IN_FLIGHT + 1) * PART_MIB)) MiB here: compare the anonymous peak above), on top of the baseline of the binary"
    echo "  itself (References above)."
    if ldd "$EVIDENCED" 2>/dev/null | grep -q libavcodec; then
        echo "- **The binary itself:** it links FFmpeg's shared libraries (for the media worker, a subcommand of the"
        echo "  same binary), which bring in $SHARED_LIBS shared libraries in all. Ingest never calls them, but the loader maps"
        echo "  and relocates them in every process: that is most of the baseline RSS above, counted in every peak"
        echo "  RSS here, and most of the start-up time when the page cache is cold."
    fi
    echo
    echo "Rerun with \`bench/run.sh\`; the logs of every step of the last run are kept in \`$LOGS\`. Smaller"
    echo "sizes for a quick run, e.g."
    echo "\`BENCH_BIG_MIB=256 BENCH_BATCH_FILES=4 BENCH_BATCH_MIB=20 bench/run.sh\` (see \`bench/README.md\`)."
} >"$DOC"
mkdir -p "$(dirname "$OUT")"
chmod 644 "$DOC"
# Keep the media section that bench/media.sh maintains at the end of the same document.
if [ -f "$OUT" ] && grep -q '^<!-- [a-z]*-bench -->$' "$OUT"; then
  sed -n '/^<!-- [a-z]*-bench -->$/,$p' "$OUT" >> "$DOC"
fi
mv "$DOC" "$OUT"
cat "$OUT"
log "wrote $OUT (whole run: $((WALL / 60)) min $((WALL % 60)) s)"
