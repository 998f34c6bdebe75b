#!/bin/sh
# trace_layer.sh: bench/decode/trace_layer.py over a trace of the tiny Llama on the CPU simulator:
# the table of layer 1 lists its ops (the fused q/k/v matvecs, rope, the append, attention, the
# MLP) in start order with a layer span; an unknown layer or run is a clear error; a GPU trace's
# summed chunk waits and pumps (a hand-written one) come out as their medians; --against puts
# another trace's medians and the differences beside the ops; --chain the ops' ready and end times.
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
# a GPU trace's streamed tasks carry their summed chunk waits and pumps: their medians in the table
cat > "$dir/gpu.json" <<'JSON'
{"traceEvents": [
{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "run 1"}},
{"ph": "X", "name": "matvec@t[l=2]", "cat": "matvec", "pid": 1, "tid": 0, "ts": 10, "dur": 8,
 "args": {"task": 0, "of": 3, "wait_us": 1, "staged_us": 1, "first_us": 2, "body_us": 7,
          "chunk_wait_us": 0.2, "issue_us": 1.0}},
{"ph": "X", "name": "matvec@t[l=2]", "cat": "matvec", "pid": 1, "tid": 1, "ts": 11, "dur": 9,
 "args": {"task": 1, "of": 3, "wait_us": 1, "staged_us": 1, "first_us": 2, "body_us": 8,
          "chunk_wait_us": 0.3, "issue_us": 1.5}},
{"ph": "X", "name": "matvec@t[l=2]", "cat": "matvec", "pid": 1, "tid": 2, "ts": 12, "dur": 9,
 "args": {"task": 2, "of": 3, "wait_us": 1, "staged_us": 1, "first_us": 2, "body_us": 8,
          "chunk_wait_us": 0.4, "issue_us": 2.5}},
{"ph": "X", "name": "rope@t[l=2]", "cat": "rope", "pid": 1, "tid": 0, "ts": 30, "dur": 2,
 "args": {"task": 0, "of": 1, "wait_us": 0}}
]}
JSON
"$py" "$src/bench/decode/trace_layer.py" "$dir/gpu.json" --layer 2 > "$dir/gpu.txt" 2>&1 ||
  { cat "$dir/gpu.txt"; echo "FAIL: trace_layer.py on a GPU trace"; fail=1; }
grep -q "chunk waits / issue us" "$dir/gpu.txt" && grep "matvec@t" "$dir/gpu.txt" | grep -q "0.30 / 1.50" &&
  grep "rope@t" "$dir/gpu.txt" | grep -Eq -- "- +- *$" ||
  { cat "$dir/gpu.txt"; echo "FAIL: the chunk waits / issue column"; fail=1; }
# --against: another trace's medians beside the ops it has (matvec: 9 here, 6.5 there), "-" for
# the one it lacks (rope), and its layer span
cat > "$dir/other.json" <<'JSON'
{"traceEvents": [
{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "run 1"}},
{"ph": "X", "name": "matvec@t[l=2]", "cat": "matvec", "pid": 1, "tid": 0, "ts": 10, "dur": 6,
 "args": {"task": 0, "of": 2, "wait_us": 0}},
{"ph": "X", "name": "matvec@t[l=2]", "cat": "matvec", "pid": 1, "tid": 1, "ts": 10, "dur": 7,
 "args": {"task": 1, "of": 2, "wait_us": 0}}
]}
JSON
"$py" "$src/bench/decode/trace_layer.py" "$dir/gpu.json" --layer 2 --against "$dir/other.json" \
  > "$dir/against.txt" 2>&1 || { cat "$dir/against.txt"; echo "FAIL: --against exited $?"; fail=1; }
grep "matvec@t" "$dir/against.txt" | grep -Eq "6\.50 +\+2\.50 *$" &&
  grep "rope@t" "$dir/against.txt" | grep -Eq -- "- +- +- +- *$" &&
  grep -q "^against: layer span 7.0 us" "$dir/against.txt" ||
  { cat "$dir/against.txt"; echo "FAIL: the --against columns"; fail=1; }
"$py" "$src/bench/decode/trace_layer.py" "$dir/gpu.json" --layer 5 --against "$dir/other.json" \
  > "$dir/err.txt" 2>&1 && { echo "FAIL: a layer neither trace has accepted"; fail=1; }
# --chain: the ops in the order of their median ready time, ready times and last end from the
# layer's first ready task (matvec ready at 10, 11, 12 and ending at 21; rope ready at 30, ends 32)
"$py" "$src/bench/decode/trace_layer.py" "$dir/gpu.json" --layer 2 --chain > "$dir/chain.txt" 2>&1 ||
  { cat "$dir/chain.txt"; echo "FAIL: --chain exited $?"; fail=1; }
grep "matvec@t" "$dir/chain.txt" | grep -Eq "^matvec@t\[l=2\] +3 +0\.0 +1\.0 +2\.0 +11\.0 *$" &&
  grep "rope@t" "$dir/chain.txt" | grep -Eq " +1 +20\.0 +20\.0 +20\.0 +22\.0 *$" &&
  [ "$(grep -n 'matvec@t' "$dir/chain.txt" | cut -d: -f1)" -lt "$(grep -n 'rope@t' "$dir/chain.txt" | cut -d: -f1)" ] ||
  { cat "$dir/chain.txt"; echo "FAIL: the --chain table"; fail=1; }
"$py" "$src/bench/decode/trace_layer.py" "$dir/gpu.json" --layer 2 --chain --against "$dir/other.json" \
  > "$dir/err.txt" 2>&1 && { echo "FAIL: --chain with --against accepted"; fail=1; }
grep -q "separate tables" "$dir/err.txt" || { cat "$dir/err.txt"; echo "FAIL: --chain --against message"; fail=1; }
[ $fail = 0 ] && echo "trace_layer: ok"
exit $fail
