#!/bin/sh
# layer.sh: bench/decode/layer.sh on the CPU simulator with the tiny Llama's decode_bench: a table
# of layer 1 and its chain per batch and a line per slot count, in OUT and on the output, and with AGAINST a
# second build's medians beside each op; a missing binary and a failing run are errors (exit
# status 1).
#   layer.sh DECODE_BENCH_TINY PYTHON SOURCE_DIR
set -u
bench=$1 py=$2 src=$3
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
fail=0
MLK_BACKEND=cpu DECODE_BENCH="$bench" PYTHON="$py" BATCHES="1 3" CONTEXT=8 LAYER=1 STEPS=3 SLOTS="2 3" \
  sh "$src/bench/decode/layer.sh" "$dir/out" > "$dir/log" 2>&1 ||
  { cat "$dir/log"; echo "FAIL: layer.sh exited $?"; fail=1; }
for b in 1 3; do
  for want in "batch $b" "layer 1" "kv_append" "matvec_silu" "layer span: " \
              "layer 1: ready and end times"; do
    grep -q "$want" "$dir/out/layer_b$b.txt" || { echo "FAIL: no '$want' in layer_b$b.txt"; fail=1; }
  done
  [ -s "$dir/out/trace_b$b.json" ] || { echo "FAIL: no trace of batch $b"; fail=1; }
done
[ "$(grep -c '^slots [23]: batch  1, context     8: median' "$dir/out/slots.txt")" = 2 ] ||
  { cat "$dir/out/slots.txt"; echo "FAIL: the slot lines"; fail=1; }
# AGAINST: a second build traced too, its medians and the differences beside each op
MLK_BACKEND=cpu DECODE_BENCH="$bench" AGAINST="$bench" PYTHON="$py" BATCHES="1" CONTEXT=8 LAYER=1 \
  STEPS=3 SLOTS="" sh "$src/bench/decode/layer.sh" "$dir/out4" > "$dir/log" 2>&1 ||
  { cat "$dir/log"; echo "FAIL: layer.sh with AGAINST exited $?"; fail=1; }
grep -q "against: run us (median)" "$dir/out4/layer_b1.txt" &&
  grep -q "^against: layer span" "$dir/out4/layer_b1.txt" &&
  grep "kv_append" "$dir/out4/layer_b1.txt" | grep -Eq " [+-][0-9]+\.[0-9]{2} *$" &&
  [ -s "$dir/out4/trace_b1.against.json" ] ||
  { cat "$dir/out4/layer_b1.txt"; echo "FAIL: the AGAINST columns"; fail=1; }
DECODE_BENCH="$bench" AGAINST="$dir/none" sh "$src/bench/decode/layer.sh" "$dir/out5" > "$dir/err" 2>&1 &&
  { echo "FAIL: a missing AGAINST accepted"; fail=1; }
grep -q "no decode_bench at $dir/none (AGAINST)" "$dir/err" || { cat "$dir/err"; echo "FAIL: AGAINST's message"; fail=1; }
# a binary that is not there: a message naming it, exit 1
DECODE_BENCH="$dir/none" sh "$src/bench/decode/layer.sh" "$dir/out2" > "$dir/err" 2>&1 &&
  { echo "FAIL: a missing decode_bench accepted"; fail=1; }
grep -q "no decode_bench at $dir/none" "$dir/err" || { cat "$dir/err"; echo "FAIL: its message"; fail=1; }
# a run that fails (a context the tiny model's KV cache cannot hold): its batch reported, exit 1
MLK_BACKEND=cpu DECODE_BENCH="$bench" PYTHON="$py" BATCHES="1" CONTEXT=100000 SLOTS="" \
  sh "$src/bench/decode/layer.sh" "$dir/out3" > "$dir/err" 2>&1 &&
  { cat "$dir/err"; echo "FAIL: a failing run accepted"; fail=1; }
grep -q "batch 1 failed" "$dir/err" || { cat "$dir/err"; echo "FAIL: the failed batch's message"; fail=1; }
[ $fail = 0 ] && echo "layer.sh: ok"
exit $fail
