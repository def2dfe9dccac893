#!/usr/bin/env bash
# Media benchmark: proxy generation by evidenced-media-worker against the ffmpeg CLI with the
# same settings on the same files in the same run, and the time from docking a 1080p 60 s
# recording to a playable proxy through the real daemon. Prints a markdown report and writes it
# to docs/benchmarks-media.md.
#
#   bench/media.sh                 # defaults: 3 repeats
#   BENCH_REPEATS=1 bench/media.sh # quicker
# The same report also replaces the media section at the end of docs/benchmarks.md (after the
# `<!-- media-bench -->` marker), which bench/run.sh keeps when it rewrites the ingest part.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/evidenced-target}"
REPEATS="${BENCH_REPEATS:-3}"
WORK="${BENCH_DIR:-/var/tmp/evidenced-media-bench}"
OUT_DOC="docs/benchmarks-media.md"

rm -rf "$WORK"; mkdir -p "$WORK/in" "$WORK/out"
cleanup() { [ -n "${DAEMON_PID:-}" ] && kill "$DAEMON_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

echo "== building release binaries" >&2
cargo build --release --bins -q
BIN="$CARGO_TARGET_DIR/release"

echo "== generating inputs" >&2
# A body-camera-like 1080p30 H.264 High + AAC recording, 60 s (too tall for the 720p proxy: re-encoded).
ffmpeg -v error -f lavfi -i "testsrc2=size=1920x1080:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
  -t 60 -c:v libx264 -preset superfast -pix_fmt yuv420p -c:a aac -b:a 128k "$WORK/in/cam-1080p-60s.mp4"
# An interview-room MJPEG/PCM AVI, 640x480, 60 s (not browser-safe: re-encoded).
ffmpeg -v error -f lavfi -i "testsrc2=size=640x480:rate=15" -f lavfi -i "sine=frequency=300:sample_rate=16000" \
  -t 60 -c:v mjpeg -q:v 5 -c:a pcm_s16le "$WORK/in/room-480p-60s.avi"
# A 720p HEVC file, 30 s, when libx265 is available.
if ffmpeg -hide_banner -encoders 2>/dev/null | grep libx265 >/dev/null; then  # not -q: SIGPIPE + pipefail
  ffmpeg -v error -f lavfi -i "testsrc2=size=1280x720:rate=25" -f lavfi -i "sine=frequency=500:sample_rate=48000" \
    -t 30 -c:v libx265 -preset ultrafast -tag:v hvc1 -c:a aac "$WORK/in/hevc-720p-30s.mp4" 2>/dev/null
fi

secs() { /usr/bin/time -f %e -o "$WORK/t" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; return 1; }; cat "$WORK/t"; }
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

report=$(mktemp)
{
  echo "# Media benchmarks"
  echo
  echo "- **Command:** \`bench/media.sh\` (CARGO_TARGET_DIR=$CARGO_TARGET_DIR), $REPEATS repeats, median wall time"
  echo "- **Date:** $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(ffmpeg -version | head -1 | cut -d' ' -f1-3)"
  echo "- **Settings (both sides):** libx264 preset veryfast, crf 23, maxrate 2.5 Mb/s, bufsize 5 Mb, GOP 2 s, threads auto, yuv420p, scaled to at most 720 p; AAC 128 kb/s 48 kHz; MP4 with faststart"
  echo
  echo "## Proxy generation: evidenced-media-worker vs the ffmpeg CLI"
  echo
  echo "| input | ffmpeg CLI s | evidenced s | evidenced ÷ ffmpeg | within 10 % |"
  echo "|---|---:|---:|---:|---|"
} > "$report"

for f in "$WORK"/in/*; do
  name=$(basename "$f")
  h=$(ffprobe -v error -select_streams v:0 -show_entries stream=height -of csv=p=0 "$f")
  fps=$(ffprobe -v error -select_streams v:0 -show_entries stream=avg_frame_rate -of csv=p=0 "$f")
  gop=$(python3 -c "from fractions import Fraction as F; print(round(2*F('$fps')))")
  scale="scale=-2:$(( h > 720 ? 720 : h )),format=yuv420p"
  ch=$(ffprobe -v error -select_streams a:0 -show_entries stream=channels -of csv=p=0 "$f")
  ac=$(( ch >= 2 ? 2 : 1 ))
  ff=(); ev=()
  for _ in $(seq "$REPEATS"); do
    rm -f "$WORK/out/"*
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || cat "$f" > /dev/null
    ff+=("$(secs ffmpeg -v error -y -i "$f" -vf "$scale" -c:v libx264 -preset veryfast -crf 23 -maxrate 2500000 \
            -bufsize 5000000 -g "$gop" -threads 0 -c:a aac -b:a 128000 -ar 48000 -ac "$ac" -movflags +faststart \
            "$WORK/out/ffmpeg.mp4")")
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || cat "$f" > /dev/null
    ev+=("$(secs "$BIN/evidenced-media-worker" proxy "$f" "$WORK/out/evidenced.mp4" --max-height 720 \
            --video-bitrate 2500000 --audio-bitrate 128000 --remux-allowed false)")
  done
  f_med=$(printf '%s\n' "${ff[@]}" | median); e_med=$(printf '%s\n' "${ev[@]}" | median)
  ratio=$(python3 -c "print(f'{$e_med/$f_med:.2f}')")
  ok=$(python3 -c "print('met' if $e_med <= 1.10*$f_med else 'not met')")
  echo "| $name | $f_med | $e_med | $ratio | $ok |" >> "$report"
done

echo "== dock to playable through the daemon" >&2
D="$WORK/daemon"; mkdir -p "$D/dock"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$D/evidenced.toml" <<EOF
[node]
id = "bench"
state_dir = "$D/state"
[catalog]
url = "sqlite://$D/catalog.db"
[store]
kind = "fs"
path = "$D/archive"
[[dock]]
path = "$D/dock"
settle = "1s"
[api]
listen = "127.0.0.1:$port"
[ingest]
scan_interval = "1s"
EOF
TOKEN=$("$BIN/evidenced" --config "$D/evidenced.toml" token create --name bench --role supervisor 2>/dev/null | tail -n1)
"$BIN/evidenced" --config "$D/evidenced.toml" run 2>"$D/daemon.log" &
DAEMON_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
start=$(date +%s.%N)
cp "$WORK/in/cam-1080p-60s.mp4" "$D/dock/.incoming.mp4" && mv "$D/dock/.incoming.mp4" "$D/dock/cam-1080p-60s.mp4"
archived=""; playable=""
for _ in $(seq 1200); do
  body=$(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/api/v1/recordings" || true)
  now=$(date +%s.%N)
  if [ -z "$archived" ] && echo "$body" | grep -q '"state":"archived"'; then archived=$now; fi
  if echo "$body" | grep -q '"playable":true'; then playable=$now; break; fi
  if echo "$body" | grep -q '"media_state":"failed"'; then echo "media failed" >&2; break; fi
  sleep 0.1
done
kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true; DAEMON_PID=""
{
  echo
  echo "## Dock to playable: a 1080p30 H.264/AAC recording of 60 s, settle = 1 s"
  echo
  if [ -n "$playable" ]; then
    python3 -c "print(f'- archived (hashed, stored, catalogued) after **{$archived-$start:.1f} s**; playable proxy after **{$playable-$start:.1f} s** (includes the 1 s settle and up to 1 s of polling)')"
  else
    echo "- did not become playable (see the daemon log)"
  fi
} >> "$report"
mkdir -p docs
cp "$report" "$OUT_DOC"
. bench/doc-section.sh
replace_section media "$report"
cat "$report"
