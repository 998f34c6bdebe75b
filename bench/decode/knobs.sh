#!/bin/sh
# knobs.sh: the launch-time knobs of the device tiles (mlk_desc.h MlkDevTune) measured in one run:
# for each setting of KNOBS, compare.sh of one decode_bench with itself, the defaults as the base
# and the setting as the new side, interleaved round by round, so that every ratio is taken under
# the same clocks and load. On the GPU machine, from the repository root:
#   BUILD=build-device sh bench/decode/knobs.sh OUT
# Environment: KNOBS (settings, space-separated, each VAR=value or several joined by commas:
# default "MLK_POLL_BACKOFF_NS=256 MLK_STREAM_L2_AHEAD=32768 MLK_MMA_STAGE_RING=0"), POINTS (default 1:128,16:128,64:128),
# STEPS (20), ROUNDS (2), DECODE_BENCH (default $BUILD/examples/decode_bench), PYTHON. OUT
# (default ./knobs) gets a directory per setting and table.txt (every setting's rows: setting,
# batch, context, base ms, new ms, new / base), which is also printed. Exit status 1 when a
# comparison fails (the others still run).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${BUILD:-build}
OUT=${1:-${OUT:-knobs}}
BIN=${DECODE_BENCH:-$BUILD/examples/decode_bench}
DEFAULT_KNOBS="MLK_POLL_BACKOFF_NS=256 MLK_STREAM_L2_AHEAD=32768 MLK_MMA_STAGE_RING=0"
KNOBS=${KNOBS:-$DEFAULT_KNOBS}
export POINTS=${POINTS:-1:128,16:128,64:128} STEPS=${STEPS:-20} ROUNDS=${ROUNDS:-2}
[ -x "$BIN" ] || { echo "knobs.sh: no decode_bench at $BIN (set BUILD or DECODE_BENCH)" >&2; exit 1; }
mkdir -p "$OUT" || exit 1
echo "| setting | batch | context | base ms | new ms | new / base |" > "$OUT/table.txt"
echo "| --- | --- | --- | --- | --- | --- |" >> "$OUT/table.txt"
rc=0
i=0
for knob in $KNOBS; do
  i=$((i + 1))
  dir="$OUT/$i"
  settings=$(echo "$knob" | tr ',' ' ')
  echo "== $settings"
  if NEW_ENV="$settings" sh "$HERE/compare.sh" "$BIN" "$BIN" "$dir" > "$dir.log" 2>&1; then
    # compare.sh's rows: | batch | context | base | new | ratio | rounds |
    grep -E '^\| [0-9]' "$dir/table.txt" |
      awk -F'|' -v s="$settings" '{printf "| %s |%s|%s|%s|%s|%s|\n", s, $2, $3, $4, $5, $6}' \
        >> "$OUT/table.txt"
  else
    tail -5 "$dir.log"
    echo "knobs.sh: the comparison of $settings failed (all of it in $dir.log)"
    echo "| $settings | failed | | | | |" >> "$OUT/table.txt"
    rc=1
  fi
done
cat "$OUT/table.txt"
exit $rc
