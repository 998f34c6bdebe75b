#!/bin/sh
# call.sh: a session's device call in one command on the GPU machine, from the repository root with
# a staged build directory (tests/gpu/stage.sh) whose cmp/ holds the candidates' decode_bench
# builds (bench/decode/variants.sh):
#
#   sh bench/decode/call.sh "$OUT"
#
# Runs the stages of STAGES in order, each under its own time limit, so that a call cut short (the
# machine's time running out, a stage that hangs) still returns what the earlier stages measured:
#   compare  bench/decode/compare.sh: BASE against every candidate (the first as its NEW side, the
#            rest as EXTRA), interleaved rounds at CMP_POINTS;
#   tests    tests/gpu/run_device.sh: the GPU tests of the staged build;
#   table    bench/decode/run.sh: the floor, mlkc and the peer at TABLE_POINTS;
#   layer    bench/decode/layer.sh: layer LAYER's table and chain at batch 1, of LAYER_BENCH (with
#            LAYER_AGAINST, another decode_bench traced in the same stage, each op's difference);
#   probe    the synchronization probe (bench/probe) of the staged build, PROBE_ONLY one of its
#            probes (--only) or all of them;
#   sass     the SASS of SASS_CUBIN (a cubin made here by ptxas from `mlkc --emit=ptx`) by
#            cuobjdump: counted and matched against SASS_GREP (an extended regex), each match with
#            its neighbouring instructions, in the summary.
# Each stage appends to OUT/summary.txt as soon as it ends: a line "== STAGE: exit S, N s" ("time
# limit" when it was stopped), then its table (the tests: their failures, or the passed line). The
# stages' own outputs go into one archive, OUT/call.tgz (the machine returns few files). Exit
# status 1 when a stage failed or was stopped, or a candidate or BASE is missing.
#
# Settings (environment): BUILD (build-device), BASE (the baseline decode_bench; default
# $BUILD/examples/decode_bench, this tree's), TABLE_BENCH (the build the table stage times;
# default BASE), LAYER_BENCH (the build the layer stage traces; default BASE), LAYER_AGAINST (none),
# CANDIDATES (decode_bench paths; default every
# $BUILD/cmp/decode_bench.*), STAGES ("compare tests table layer": spaces or commas between them),
# CMP_POINTS (1:128,1:2048,4:128,16:128), CMP_ROUNDS (2), CMP_STEPS (20), TABLE_POINTS
# (1:128,4:128,16:128,64:128,1:2048), TABLE_STEPS (20), PEER_STEPS (10), TABLE_SKIP (run.sh's
# SKIP: mlkc_cold_jit), LAYER (5), LAYER_CONTEXT (128), and the stages' limits in seconds:
# COMPARE_S (150), TESTS_S (100), TABLE_S (230), LAYER_S (40), PROBE_S (60), SASS_S (60);
# PROBE_ONLY (none: every probe), SASS_CUBIN (none), SASS_GREP (CCTL|STRONG.GPU).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: call.sh OUT}
BUILD=${BUILD:-build-device}
BASE=${BASE:-$BUILD/examples/decode_bench}
TABLE_BENCH=${TABLE_BENCH:-$BASE}
LAYER_BENCH=${LAYER_BENCH:-$BASE}
LAYER_AGAINST=${LAYER_AGAINST:-}
STAGES=${STAGES:-compare tests table layer}
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT
summary=$OUT/summary.txt
rm -f "$summary" "$OUT/call.tgz"
rc=0

if [ -z "${CANDIDATES+set}" ]; then
  CANDIDATES=
  for f in "$BUILD"/cmp/decode_bench.*; do
    [ -f "$f" ] && CANDIDATES="$CANDIDATES $f"
  done
fi
for b in "$BASE" "$TABLE_BENCH" "$LAYER_BENCH" $LAYER_AGAINST $CANDIDATES; do
  [ -x "$b" ] || { echo "call.sh: no decode_bench at $b" | tee -a "$summary" >&2; exit 1; }
done
command -v nvidia-smi > /dev/null 2>&1 &&
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >> "$summary" 2>&1

. "$HERE/timed.sh"
# run STAGE LIMIT CMD...: CMD under the limit (timed.sh), its output in the archive, its status
# line in the summary at once.
run() {
  name=$1 limit=$2
  shift 2
  timed "$limit" "$work/$name.log" "$@"
  echo "== $name: $timed_how, $timed_secs s" >> "$summary"
  [ "$timed_status" -eq 0 ] || rc=1
}

for stage in $(printf '%s' "$STAGES" | tr ',' ' '); do
  case $stage in
  compare)
    set -- $CANDIDATES
    if [ $# -eq 0 ]; then
      echo "== compare: no candidates (none in $BUILD/cmp)" >> "$summary"
      continue
    fi
    new=$1
    shift
    run compare "${COMPARE_S:-150}" env POINTS="${CMP_POINTS:-1:128,1:2048,4:128,16:128}" \
      ROUNDS="${CMP_ROUNDS:-2}" STEPS="${CMP_STEPS:-20}" EXTRA="$*" \
      sh "$HERE/compare.sh" "$BASE" "$new" "$work/compare"
    { echo "base: $BASE"; echo "new: $new"; i=1
      for e in "$@"; do echo "extra$i: $e"; i=$((i + 1)); done
      cat "$work/compare/table.txt"; } >> "$summary" 2>&1
    ;;
  tests)
    run tests "${TESTS_S:-100}" env BUILD="$BUILD" OUT="$work/tests" sh tests/gpu/run_device.sh
    grep -E -i "fail|passed" "$work/tests.log" | tail -n 20 >> "$summary"
    ;;
  table)
    run table "${TABLE_S:-230}" env BUILD="$BUILD" DECODE_BENCH="$TABLE_BENCH" \
      POINTS="${TABLE_POINTS:-1:128,4:128,16:128,64:128,1:2048}" STEPS="${TABLE_STEPS:-20}" \
      PEER_STEPS="${PEER_STEPS:-10}" SKIP="${TABLE_SKIP:-mlkc_cold_jit}" \
      sh "$HERE/run.sh" "$work/table"
    { echo "timed: $TABLE_BENCH"; cat "$work/table/table.txt"; } >> "$summary" 2>&1
    ;;
  layer)
    run layer "${LAYER_S:-40}" env BUILD="$BUILD" DECODE_BENCH="$LAYER_BENCH" BATCHES=1 \
      AGAINST="$LAYER_AGAINST" \
      LAYER="${LAYER:-5}" CONTEXT="${LAYER_CONTEXT:-128}" SLOTS= sh "$HERE/layer.sh" "$work/layer"
    { echo "traced: $LAYER_BENCH${LAYER_AGAINST:+ against $LAYER_AGAINST}"; cat "$work/layer/layer_b1.txt"; } >> "$summary" 2>&1
    ;;
  probe)
    run probe "${PROBE_S:-60}" "$BUILD/bench/sync_probe" "$BUILD/bench/sync_probe.sm_90a.ptx" \
      ${PROBE_ONLY:+--only=$PROBE_ONLY}
    cat "$work/probe.log" >> "$summary"
    ;;
  sass)
    if [ -z "${SASS_CUBIN:-}" ]; then
      echo "== sass: no SASS_CUBIN given" >> "$summary"
      rc=1
      continue
    fi
    run sass "${SASS_S:-60}" cuobjdump -sass "$SASS_CUBIN"
    pat=${SASS_GREP:-CCTL|STRONG.GPU}
    { echo "sass of $SASS_CUBIN: $(grep -c -E "$pat" "$work/sass.log") lines match '$pat'"
      grep -n -E -B6 -A3 "$pat" "$work/sass.log" | head -n 300; } >> "$summary" 2>&1
    ;;
  *)
    echo "== $stage: no such stage (compare, tests, table, layer, probe, sass)" >> "$summary"
    rc=1
    ;;
  esac
done
tar czf "$OUT/call.tgz" -C "$work" . || rc=1
cat "$summary"
exit $rc
