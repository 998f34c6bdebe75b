#!/bin/sh
# layer.sh: where one decode layer's time goes, in one command on the GPU machine (or on the
# simulator with MLK_BACKEND=cpu), from the repository root with a built (or staged) build
# directory:
#
#   BUILD=build-device sh bench/decode/layer.sh OUT
#
# For each batch of BATCHES: one traced decode_bench run (MLK_TRACE, the last run kept) at context
# CONTEXT, then bench/decode/trace_layer.py's table of layer LAYER (its ops in start order: tasks,
# window, running and waiting times, a streamed matvec's phases) and its chain (trace_layer.py
# --chain: each op's ready times and last end), printed and kept in OUT/layer_bB.txt with the
# trace in OUT/trace_bB.json. Then, for each slot count of SLOTS, the
# step time at the first batch with that many weight-stream slots (MLK_STREAM_SLOTS), in
# OUT/slots.txt. A batch whose run fails leaves its file with the error and sets the exit status.
# With AGAINST (another build's decode_bench), each batch is traced with it too
# (OUT/trace_bB.against.json) and the table gains that build's median running time of each op and
# the difference (trace_layer.py --against): a change's effect op by op, both traces taken in the
# same call.
#
# Settings (environment): BATCHES (default "1 16"), CONTEXT (128), LAYER (5), STEPS (traced steps,
# 6), SLOTS (default "2 3 4"; empty: none), DECODE_BENCH (default $BUILD/examples/decode_bench),
# AGAINST (none), PYTHON (python3).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${BUILD:-build}
OUT=${1:-${OUT:-/tmp/mlk-layer}}
BIN=${DECODE_BENCH:-$BUILD/examples/decode_bench}
BATCHES=${BATCHES:-1 16}
CONTEXT=${CONTEXT:-128}
LAYER=${LAYER:-5}
STEPS=${STEPS:-6}
SLOTS=${SLOTS-2 3 4}
PY=${PYTHON:-python3}
AGAINST=${AGAINST:-}

[ -x "$BIN" ] || { echo "layer.sh: no decode_bench at $BIN (set BUILD or DECODE_BENCH)" >&2; exit 1; }
[ -z "$AGAINST" ] || [ -x "$AGAINST" ] || { echo "layer.sh: no decode_bench at $AGAINST (AGAINST)" >&2; exit 1; }
mkdir -p "$OUT" || exit 1
rc=0
first=
for b in $BATCHES; do
  first=${first:-$b}
  log="$OUT/layer_b$b.txt" trace="$OUT/trace_b$b.json"
  rm -f "$trace"
  echo "== batch $b, context $CONTEXT, layer $LAYER"
  against= otrace="$OUT/trace_b$b.against.json"
  rm -f "$otrace"
  if [ -n "$AGAINST" ]; then
    against="--against $otrace"
    MLK_TRACE="$otrace" MLK_TRACE_RUNS=1 timeout -k 10 120 "$AGAINST" --points="$b:$CONTEXT" \
      --steps="$STEPS" > "$log" 2>&1 ||
      { tail -5 "$log"; echo "layer.sh: batch $b failed with AGAINST's build (in $log)"; rc=1; continue; }
  fi
  # shellcheck disable=SC2086 # against is words: --against PATH
  if MLK_TRACE="$trace" MLK_TRACE_RUNS=1 timeout -k 10 120 "$BIN" --points="$b:$CONTEXT" \
       --steps="$STEPS" > "$log" 2>&1 &&
     "$PY" "$HERE/trace_layer.py" "$trace" --layer "$LAYER" $against >> "$log" 2>&1 &&
     "$PY" "$HERE/trace_layer.py" "$trace" --layer "$LAYER" --chain >> "$log" 2>&1; then
    sed -n '/, layer /,$p' "$log"
  else
    tail -5 "$log"
    echo "layer.sh: batch $b failed (all of it in $log)"
    rc=1
  fi
done
if [ -n "$SLOTS" ] && [ -n "$first" ]; then
  : > "$OUT/slots.txt"
  for s in $SLOTS; do
    printf 'slots %s: ' "$s" >> "$OUT/slots.txt"
    MLK_STREAM_SLOTS=$s timeout -k 10 120 "$BIN" --points="$first:$CONTEXT" --steps=30 2>&1 |
      grep -E 'median' >> "$OUT/slots.txt" || { echo "(failed)" >> "$OUT/slots.txt"; rc=1; }
  done
  echo "== weight-stream slots, batch $first"
  cat "$OUT/slots.txt"
fi
exit $rc
