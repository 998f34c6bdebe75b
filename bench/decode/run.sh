#!/bin/sh
# run.sh: the decode benchmark in one command on the GPU machine, from the repository root with a
# built (or staged) build directory:
#
#   BUILD=build-device sh bench/decode/run.sh OUT
#
# In one run, in this order: the floor (floor.py: streaming-read and copy rates), mlkc's cold
# start (decode_bench --start-only on an empty cubin cache: the model's built-in cubin where the
# build had ptxas, mlkc --cubin), the same with the PTX compiled by the driver (MLK_BUILTIN_CUBIN=0,
# another empty cache), mlkc's warm start and every point (decode_bench again: a cache hit, or the
# built-in cubin), the peer at the same points (bench/llama_torch.py), then the
# table (report.py), printed last and kept in OUT/table.txt, with everything in OUT/decode.json.
# Each stage's output goes to OUT/NAME.log (its last lines are shown) and its records to
# OUT/floor.json, OUT/mlkc.jsonl, OUT/peer.jsonl. A stage that fails or passes its time limit
# leaves its columns empty; the table is printed all the same and the exit status is 1.
#
# Settings (environment): POINTS (batch:context,...; default the 8 points below), STEPS (timed
# steps per mlkc point, 50), PEER_STEPS (100), SKIP (stages to leave out: floor, mlkc_cold,
# mlkc_cold_jit, mlkc, peer), DECODE_BENCH (the mlkc binary, default $BUILD/examples/decode_bench), PYTHON
# (python3), FLOOR_ARGS and PEER_ARGS (extra arguments of floor.py and llama_torch.py).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${BUILD:-build}
OUT=${1:-${OUT:-/tmp/mlk-decode}}
BIN=${DECODE_BENCH:-$BUILD/examples/decode_bench}
POINTS=${POINTS:-1:128,1:2048,16:128,64:128,4:128,4:2048,16:2048,64:2048}
STEPS=${STEPS:-50}
PEER_STEPS=${PEER_STEPS:-100}
SKIP=${SKIP:-}
PY=${PYTHON:-python3}
FLOOR_ARGS=${FLOOR_ARGS:-}
PEER_ARGS=${PEER_ARGS:-}

mkdir -p "$OUT" || exit 1
rm -f "$OUT/floor.json" "$OUT/mlkc.jsonl" "$OUT/peer.jsonl" "$OUT/decode.json" "$OUT/table.txt"
CACHE=$(mktemp -d) || exit 1
trap 'rm -rf "$CACHE"' EXIT
rc=0
T0=$(date +%s)

# Starts a program with DECODE_BENCH_T0_NS set to the CLOCK_MONOTONIC time just before exec, so
# that decode_bench measures its start from the launch.
LAUNCH='import os, sys, time
os.environ["DECODE_BENCH_T0_NS"] = str(time.clock_gettime_ns(time.CLOCK_MONOTONIC))
os.execv(sys.argv[1], sys.argv[1:])'

. "$HERE/timed.sh"
# stage NAME SECONDS CMD...: runs CMD under a time limit (timed.sh) with its output in
# $OUT/NAME.log, shows the log's last lines (warnings left out); a failure or a time-out sets rc.
stage() {
  name=$1 limit=$2
  shift 2
  case " $SKIP " in *" $name "*) echo "== $name: skipped"; return 0 ;; esac
  echo "== $name"
  timed "$limit" "$OUT/$name.log" "$@"
  grep -v -i -e warn -e '^ *warnings\.' "$OUT/$name.log" | tail -n 12
  echo "   ($name: $timed_how, $timed_secs s)"
  [ "$timed_status" -eq 0 ] || rc=1
}

[ -x "$BIN" ] || echo "bench/decode: no mlkc binary at $BIN (build it, sh tests/gpu/stage.sh, or set BUILD)"
if command -v nvidia-smi > /dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw \
    --format=csv > "$OUT/gpu.txt" 2>&1
  cat "$OUT/gpu.txt"
fi
# shellcheck disable=SC2086 # FLOOR_ARGS and PEER_ARGS are lists of words
stage floor 60 "$PY" "$HERE/floor.py" --json "$OUT/floor.json" $FLOOR_ARGS
stage mlkc_cold 60 env MLK_CACHE_DIR="$CACHE" "$PY" -c "$LAUNCH" "$BIN" --points="$POINTS" --start-only \
  --label=cold --json="$OUT/mlkc.jsonl"
stage mlkc_cold_jit 60 env MLK_CACHE_DIR="$CACHE/jit" MLK_BUILTIN_CUBIN=0 "$PY" -c "$LAUNCH" "$BIN" \
  --points="$POINTS" --start-only --label=cold_jit --json="$OUT/mlkc.jsonl"
stage mlkc 150 env MLK_CACHE_DIR="$CACHE" "$PY" -c "$LAUNCH" "$BIN" --points="$POINTS" --steps="$STEPS" \
  --label=warm --json="$OUT/mlkc.jsonl"
# shellcheck disable=SC2086
stage peer 270 env PYTHONUNBUFFERED=1 "$PY" "$HERE/../llama_torch.py" --points "$POINTS" \
  --steps "$PEER_STEPS" --json "$OUT/peer.jsonl" $PEER_ARGS
echo "== report ($(($(date +%s) - T0)) s so far)"
"$PY" "$HERE/report.py" --floor "$OUT/floor.json" --mlkc "$OUT/mlkc.jsonl" --peer "$OUT/peer.jsonl" \
  --targets "$HERE/targets.json" --json "$OUT/decode.json" > "$OUT/table.txt" || rc=1
cat "$OUT/table.txt"
echo "bench/decode: $(($(date +%s) - T0)) s, exit $rc; logs and decode.json in $OUT"
exit $rc
