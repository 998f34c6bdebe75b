#!/bin/sh
# trace_layer.sh: bench/decode/trace_layer.py over a trace of the tiny Llama on the CPU simulator:
# the table of layer 1 lists its ops (the fused q/k/v matvecs, rope, the append, attention, the
# MLP) in start order with a layer span; an unknown layer or run is a clear error.
#   trace_layer.sh DECODE_BENCH_TINY PYTHON SOURCE_DIR
set -u
bench=$1 py=$2 src=$3
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
MLK_BACKEND=cpu MLK_TRACE="$dir/t.json" MLK_TRACE_RUNS=2 "$bench" --points=1:8 --steps=3 \
  > "$dir/bench.log" 2>&1 || { cat "$dir/bench.log"; echo "FAIL: decode_bench"; exit 1; }
"$py" "$src/bench/decode/trace_layer.py" "$dir/t.json" --layer 1 > "$dir/table.txt" 2>&1 ||
  { cat "$dir/table.txt"; echo "FAIL: trace_layer.py exited $?"; exit 1; }
cat "$dir/table.txt"
fail=0
for want in "layer 1" "matvec" "rope" "kv_append" "attention" "matvec_silu" "layer span: "; do
  grep -q "$want" "$dir/table.txt" || { echo "FAIL: no '$want' in the table"; fail=1; }
done
# every op row belongs to layer 1
if grep -E '\[l=[0-9]+\]' "$dir/table.txt" | grep -vq '\[l=1\]'; then
  echo "FAIL: an op of another layer in the table"; fail=1
fi
"$py" "$src/bench/decode/trace_layer.py" "$dir/t.json" --layer 99 > "$dir/err.txt" 2>&1 &&
  { echo "FAIL: layer 99 accepted"; fail=1; }
grep -q "has no op of layer 99" "$dir/err.txt" || { cat "$dir/err.txt"; echo "FAIL: layer 99 message"; fail=1; }
"$py" "$src/bench/decode/trace_layer.py" "$dir/t.json" --run 99 > "$dir/err.txt" 2>&1 &&
  { echo "FAIL: run 99 accepted"; fail=1; }
grep -q "no run 99" "$dir/err.txt" || { cat "$dir/err.txt"; echo "FAIL: run 99 message"; fail=1; }
[ $fail = 0 ] && echo "trace_layer: ok"
exit $fail
