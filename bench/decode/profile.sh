#!/bin/sh
# profile.sh: one decode step under Nsight Compute, and where the megakernel's warps spend it, in
# one command on the GPU machine (from the repository root, with a staged build):
#
#   BUILD=build-device sh bench/decode/profile.sh OUT
#
# Profiles one launch of decode_bench at POINT (after SKIP launches: warm-up steps first) with the
# WarpStateStats and SourceCounters sections (warp-state sampling per SASS instruction; clocks not
# locked, as the benchmark runs), exports the per-instruction table (OUT/source.csv) and prints
# bench/decode/ncu_table.py's table of it (OUT/table.txt): each function's share of the samples
# and its top stall reasons, and with FUNCTION set, that function's hottest instructions and its
# samples by opcode. OUT/step.ncu-rep is the report (ncu --import to look further).
#
# Settings (environment): POINT (batch:context, default 1:128), SKIP (5), FUNCTION (none), NCU
# (ncu), PYTHON (python3), DECODE_BENCH (default $BUILD/examples/decode_bench). About a minute.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${BUILD:-build}
OUT=${1:-${OUT:-/tmp/mlk-profile}}
BIN=${DECODE_BENCH:-$BUILD/examples/decode_bench}
POINT=${POINT:-1:128}
SKIP=${SKIP:-5}
NCU=${NCU:-ncu}
PY=${PYTHON:-python3}
[ -x "$BIN" ] || { echo "profile.sh: no decode_bench at $BIN (set BUILD or DECODE_BENCH)" >&2; exit 1; }
command -v "$NCU" > /dev/null 2>&1 || { echo "profile.sh: no Nsight Compute ('$NCU' not found; set NCU)" >&2; exit 1; }
mkdir -p "$OUT" || exit 1
rm -f "$OUT/step.ncu-rep"
timeout 300 "$NCU" --clock-control none -k regex:mlk_ --launch-skip "$SKIP" --launch-count 1 \
  --section WarpStateStats --section SourceCounters --import-source no -o "$OUT/step" \
  "$BIN" --points="$POINT" --steps=3 > "$OUT/ncu.log" 2>&1
rc=$?
[ $rc -eq 0 ] && [ -f "$OUT/step.ncu-rep" ] ||
  { tail -20 "$OUT/ncu.log"; echo "profile.sh: ncu exited $rc (log: $OUT/ncu.log)" >&2; exit 1; }
timeout 120 "$NCU" --import "$OUT/step.ncu-rep" --page source --csv --print-source sass \
  > "$OUT/source.csv" 2> "$OUT/export.log" ||
  { cat "$OUT/export.log"; echo "profile.sh: the source export failed" >&2; exit 1; }
"$PY" "$HERE/ncu_table.py" "$OUT/source.csv" ${FUNCTION:+--function "$FUNCTION" --ops} \
  > "$OUT/table.txt" 2>&1
rc=$?
cat "$OUT/table.txt"
exit $rc
