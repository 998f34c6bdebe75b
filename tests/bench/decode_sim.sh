#!/bin/sh
# decode_sim.sh: bench/decode/run.sh end to end without a GPU: decode_bench over the llama_tiny
# model on the CPU simulator (two cold processes and a warm one, two small points), the floor and the peer
# left out (they need PyTorch and a GPU), then the report. Checks the records and the table.
#   sh tests/bench/decode_sim.sh DECODE_BENCH_TINY PYTHON REPO_ROOT
set -u
BIN=$1 PY=$2 ROOT=$3
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
fail() {
  echo "FAIL: $*"
  sed 's/^/  | /' "$OUT/run.log"
  exit 1
}
MLK_BACKEND=cpu DECODE_BENCH=$BIN PYTHON=$PY POINTS=1:8,4:20 STEPS=6 SKIP="floor peer" \
  sh "$ROOT/bench/decode/run.sh" "$OUT" > "$OUT/run.log" 2>&1 || fail "run.sh exited $?"
grep -q '^== floor: skipped' "$OUT/run.log" || fail "the floor stage was not skipped"
[ "$(grep -c '"kind": "start"' "$OUT/mlkc.jsonl")" = 3 ] || fail "not 3 start records"
grep -q '"label": "cold"' "$OUT/mlkc.jsonl" || fail "no cold start record"
grep -q '"label": "cold_jit"' "$OUT/mlkc.jsonl" || fail "no cold start record with the PTX compiled"
grep -q '"t0": "launch"' "$OUT/mlkc.jsonl" || fail "the start was not measured from the launch"
[ "$(grep -c '"kind": "point".*"checked": true' "$OUT/mlkc.jsonl")" = 2 ] || fail "not 2 checked points"
grep -q '"kv_context": 21,' "$OUT/mlkc.jsonl" || fail "the KV context is not the longest point's + 1"
for row in 'batch 1, ctx 8 ' 'batch 4, ctx 20 '; do
  grep "^$row" "$OUT/table.txt" | grep -q 'n/a (mlkc not timed on a GPU)$' || fail "row '$row'"
done
grep -q '^cold (empty cache) .*n/a (not on a GPU)$' "$OUT/table.txt" || fail "cold start row"
grep -q '^cold, PTX compiled .*n/a (not on a GPU)$' "$OUT/table.txt" || fail "cold JIT start row"
grep -q '^0 pass, 0 miss, 5 other$' "$OUT/table.txt" || fail "summary"
"$PY" -c 'import json, sys; r = json.load(open(sys.argv[1])); assert len(r["points"]) == 2' \
  "$OUT/decode.json" || fail "decode.json"
echo "ok: bench/decode/run.sh on the simulator"
