#!/bin/sh
# ncu_table.sh: bench/decode/ncu_table.py over a hand-written Nsight Compute source export (two
# functions, three stall reasons): each function's share of the samples and its stall reasons,
# a function's instructions, opcodes (a predicate stripped) and address ranges; an unknown
# function, a CSV that is no source export and a missing file are clear errors; and
# bench/decode/profile.sh, its GPU-machine wrapper, says so when there is no ncu or no decode_bench.
#   ncu_table.sh DECODE_BENCH_TINY PYTHON SOURCE_DIR
set -u
bench=$1 py=$2 src=$3
fx="$src/tests/bench/fixtures/ncu_source.csv"
tool="$src/bench/decode/ncu_table.py"
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
fail=0
"$py" "$tool" "$fx" --function tile_a --ops --ranges 00200 --names body,load > "$dir/t.txt" 2>&1 ||
  { cat "$dir/t.txt"; echo "FAIL: ncu_table.py exited $?"; exit 1; }
cat "$dir/t.txt"
expect() {
  grep -Eq "$1" "$dir/t.txt" || { echo "FAIL: no line matching '$1'"; fail=1; }
}
expect "^100 warp samples in 2 functions"
expect "^tile_a +70\.0% +1200  wait 57%, barrier 29%, long_sb 14%"
expect "^kernel_loop +30\.0% +50  barrier 100%"
expect "^00100 +40 +40\.00%  FFMA R1, R2, R3, R1 .*wait:40 exec 1000"
expect "^FFMA +57\.1% +83\.3%"
expect "^LDG +14\.3% +8\.3%"
expect "^body +85\.7% +60\.0% +1100"
expect "^load +14\.3% +10\.0% +100"
# tile_a is listed before kernel_loop (by samples)
[ "$(grep -n -m1 '^tile_a ' "$dir/t.txt" | cut -d: -f1)" -lt "$(grep -n -m1 '^kernel_loop ' "$dir/t.txt" | cut -d: -f1)" ] ||
  { echo "FAIL: functions not in order of samples"; fail=1; }
"$py" "$tool" "$fx" --function nosuch > "$dir/e.txt" 2>&1 && { echo "FAIL: unknown function accepted"; fail=1; }
grep -q "no function 'nosuch'" "$dir/e.txt" || { cat "$dir/e.txt"; echo "FAIL: unknown function message"; fail=1; }
printf 'a,b\n1,2\n' > "$dir/other.csv"
"$py" "$tool" "$dir/other.csv" > "$dir/e.txt" 2>&1 && { echo "FAIL: a CSV without instructions accepted"; fail=1; }
grep -q "no instruction rows" "$dir/e.txt" || { cat "$dir/e.txt"; echo "FAIL: other CSV message"; fail=1; }
"$py" "$tool" "$dir/missing.csv" > "$dir/e.txt" 2>&1 && { echo "FAIL: a missing file accepted"; fail=1; }
grep -q "cannot read" "$dir/e.txt" || { cat "$dir/e.txt"; echo "FAIL: missing file message"; fail=1; }
"$py" "$tool" "$fx" --function tile_a --ranges 100,200 --names one > "$dir/e.txt" 2>&1 &&
  { echo "FAIL: too few range names accepted"; fail=1; }
grep -q "1 names for 3 ranges" "$dir/e.txt" || { cat "$dir/e.txt"; echo "FAIL: range names message"; fail=1; }
NCU=no-such-ncu DECODE_BENCH="$bench" sh "$src/bench/decode/profile.sh" "$dir/p" > "$dir/e.txt" 2>&1 &&
  { echo "FAIL: profile.sh without ncu succeeded"; fail=1; }
grep -q "no Nsight Compute ('no-such-ncu' not found" "$dir/e.txt" || { cat "$dir/e.txt"; echo "FAIL: no-ncu message"; fail=1; }
DECODE_BENCH="$dir/none" sh "$src/bench/decode/profile.sh" "$dir/p" > "$dir/e.txt" 2>&1 &&
  { echo "FAIL: profile.sh without decode_bench succeeded"; fail=1; }
grep -q "no decode_bench at $dir/none" "$dir/e.txt" || { cat "$dir/e.txt"; echo "FAIL: no-bench message"; fail=1; }
[ $fail -eq 0 ] && echo "ncu_table: ok"
exit $fail
