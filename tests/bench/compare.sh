#!/bin/sh
# compare.sh: bench/decode/compare.sh on the CPU simulator with the tiny Llama's decode_bench as
# both builds (and as a third, EXTRA): a table row per point over two rounds, the second in the
# turned order; a missing binary and a failing run are errors (exit status 1); NEW_ENV's settings
# reach the new side's runs only.
#   compare.sh DECODE_BENCH_TINY PYTHON SOURCE_DIR
set -u
bench=$1 py=$2 src=$3
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
fail=0
MLK_BACKEND=cpu PYTHON="$py" POINTS=1:8,3:8 STEPS=3 ROUNDS=2 \
  sh "$src/bench/decode/compare.sh" "$bench" "$bench" "$dir/out" > "$dir/log" 2>&1 ||
  { cat "$dir/log"; echo "FAIL: compare.sh exited $?"; fail=1; }
for b in 1 3; do
  grep -Eq "^\| $b \| 8 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| 2 \|$" "$dir/out/table.txt" ||
    { cat "$dir/out/table.txt"; echo "FAIL: no row of batch $b"; fail=1; }
done
# EXTRA: a third build, its own columns in every row
MLK_BACKEND=cpu PYTHON="$py" POINTS=1:8 STEPS=3 ROUNDS=2 EXTRA="$bench" \
  sh "$src/bench/decode/compare.sh" "$bench" "$bench" "$dir/out5" > "$dir/log" 2>&1 ||
  { cat "$dir/log"; echo "FAIL: compare.sh with EXTRA exited $?"; fail=1; }
grep -q "^| batch | context | base ms | new ms | new / base | extra1 ms | extra1 / base | rounds |$" \
  "$dir/out5/table.txt" &&
  grep -Eq "^\| 1 \| 8 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| 2 \|$" "$dir/out5/table.txt" &&
  [ "$(grep -c '"kind": *"point"' "$dir/out5/extra1.jsonl")" -eq 2 ] ||
  { cat "$dir/out5/table.txt"; echo "FAIL: EXTRA's columns or runs"; fail=1; }
# the order turns by a side every round: round 2 starts with the new build
printf 'round 1: base new extra1\nround 2: new extra1 base\n' > "$dir/order"
cmp -s "$dir/order" "$dir/out5/order.txt" ||
  { cat "$dir/out5/order.txt"; echo "FAIL: the rounds' order"; fail=1; }
EXTRA="$dir/none3" sh "$src/bench/decode/compare.sh" "$bench" "$bench" "$dir/out6" > "$dir/err" 2>&1 &&
  { echo "FAIL: a missing EXTRA decode_bench accepted"; fail=1; }
grep -q "no decode_bench at $dir/none3" "$dir/err" || { cat "$dir/err"; echo "FAIL: EXTRA's message"; fail=1; }
# a binary that is not there: a message naming it, exit 1
sh "$src/bench/decode/compare.sh" "$dir/none" "$bench" "$dir/out2" > "$dir/err" 2>&1 &&
  { echo "FAIL: a missing decode_bench accepted"; fail=1; }
grep -q "no decode_bench at $dir/none" "$dir/err" || { cat "$dir/err"; echo "FAIL: its message"; fail=1; }
# a run that fails (a batch the tiny model does not take): the run named, exit 1
MLK_BACKEND=cpu PYTHON="$py" POINTS=999:8 STEPS=3 ROUNDS=1 \
  sh "$src/bench/decode/compare.sh" "$bench" "$bench" "$dir/out3" > "$dir/err" 2>&1 &&
  { cat "$dir/err"; echo "FAIL: a failing run accepted"; fail=1; }
grep -q "the base run of round 1 failed" "$dir/err" || { cat "$dir/err"; echo "FAIL: the failed run's message"; fail=1; }
# settings for one side only: NEW_ENV reaches the new runs (here a value the simulator refuses,
# so the new side fails and the base side, run first, did not)
MLK_BACKEND=cpu PYTHON="$py" POINTS=1:8 STEPS=3 ROUNDS=1 NEW_ENV="MLK_SIM_CHECK=7" \
  sh "$src/bench/decode/compare.sh" "$bench" "$bench" "$dir/out4" > "$dir/err" 2>&1 &&
  { cat "$dir/err"; echo "FAIL: NEW_ENV did not reach the new run"; fail=1; }
grep -q "the new run of round 1 failed" "$dir/err" && grep -q "MLK_SIM_CHECK='7'" "$dir/err" ||
  { cat "$dir/err"; echo "FAIL: NEW_ENV's failure not the new run's"; fail=1; }
[ $fail -eq 0 ] && echo "ok: compare.sh"
exit $fail
