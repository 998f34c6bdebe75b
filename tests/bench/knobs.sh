#!/bin/sh
# knobs.sh: bench/decode/knobs.sh on the CPU simulator with the tiny Llama's decode_bench (the
# simulator has no knobs to read, so this checks the script: a row per setting and point, a
# setting of two variables, and a failing setting reported as such with exit status 1).
#   knobs.sh DECODE_BENCH_TINY PYTHON SOURCE_DIR
set -u
bench=$1 py=$2 src=$3
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
fail=0
MLK_BACKEND=cpu PYTHON="$py" POINTS=1:8,3:8 STEPS=3 ROUNDS=1 DECODE_BENCH="$bench" \
  KNOBS="MLK_POLL_BACKOFF_NS=0 MLK_STREAM_L2_AHEAD=4096,MLK_POLL_BACKOFF_NS=64" \
  sh "$src/bench/decode/knobs.sh" "$dir/out" > "$dir/log" 2>&1 ||
  { cat "$dir/log"; echo "FAIL: knobs.sh exited $?"; fail=1; }
for s in "MLK_POLL_BACKOFF_NS=0" "MLK_STREAM_L2_AHEAD=4096 MLK_POLL_BACKOFF_NS=64"; do
  for b in 1 3; do
    grep -Eq "^\| $s \| $b \| 8 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$" "$dir/out/table.txt" ||
      { cat "$dir/out/table.txt"; echo "FAIL: no row of '$s' batch $b"; fail=1; }
  done
done
# a setting the simulator refuses: its row says failed, the exit status is 1
MLK_BACKEND=cpu PYTHON="$py" POINTS=1:8 STEPS=3 ROUNDS=1 DECODE_BENCH="$bench" \
  KNOBS="MLK_SIM_CHECK=7" sh "$src/bench/decode/knobs.sh" "$dir/out2" > "$dir/err" 2>&1 &&
  { cat "$dir/err"; echo "FAIL: a failing setting accepted"; fail=1; }
grep -q "^| MLK_SIM_CHECK=7 | failed |" "$dir/out2/table.txt" ||
  { cat "$dir/err"; echo "FAIL: the failed setting's row"; fail=1; }
[ $fail -eq 0 ] && echo "ok: knobs.sh"
exit $fail
