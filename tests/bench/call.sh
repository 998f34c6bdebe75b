#!/bin/sh
# call.sh: bench/decode/call.sh on the CPU simulator with the tiny Llama's decode_bench as the
# staged build's, as its baseline and as a candidate in cmp/: each stage's status line and table in
# the summary as it ends (the stages listed with spaces and commas; the layer stage traces
# LAYER_BENCH), everything in one archive, an unknown stage reported with exit status 1 after the
# others ran, a stage stopped at its limit reported so (exit status 1), and a missing candidate
# refused by name before anything runs; the probe stage (PROBE_ONLY) and the sass stage
# (SASS_CUBIN, SASS_GREP) on stand-ins.
#   call.sh DECODE_BENCH_TINY PYTHON SOURCE_DIR
set -u
bench=$1 py=$2 src=$3
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
fail=0
mkdir -p "$dir/b/examples" "$dir/b/cmp"
cp "$bench" "$dir/b/examples/decode_bench"
cp "$bench" "$dir/b/cmp/decode_bench.same"
# the layer stage's build: the tiny one behind a wrapper that leaves a mark when it runs
printf '#!/bin/sh\ntouch "%s"\nexec "%s" "$@"\n' "$dir/traced" "$bench" > "$dir/b/layer_bench"
chmod +x "$dir/b/layer_bench"
(cd "$src" && MLK_BACKEND=cpu PYTHON="$py" BUILD="$dir/b" STAGES="compare,table layer,bogus" \
  CMP_POINTS=1:8 CMP_ROUNDS=1 CMP_STEPS=3 TABLE_POINTS=1:8 TABLE_STEPS=3 \
  TABLE_SKIP="floor mlkc_cold_jit peer" LAYER=1 LAYER_CONTEXT=8 \
  LAYER_BENCH="$dir/b/layer_bench" \
  sh bench/decode/call.sh "$dir/out") > "$dir/log" 2>&1 &&
  { cat "$dir/log"; echo "FAIL: exit status 0 with an unknown stage"; fail=1; }
s=$dir/out/summary.txt
for want in "^== compare: exit 0, [0-9]+ s$" "^new: $dir/b/cmp/decode_bench.same$" \
            "^\| 1 \| 8 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| 1 \|$" "^== table: exit 0, [0-9]+ s$" \
            "^== layer: exit 0, [0-9]+ s$" "layer 1: ready and end times" \
            "^traced: $dir/b/layer_bench$" \
            "^== bogus: no such stage"; do
  grep -Eq "$want" "$s" || { cat "$s"; echo "FAIL: no '$want' in the summary"; fail=1; }
done
[ -f "$dir/traced" ] || { echo "FAIL: the layer stage did not run LAYER_BENCH"; fail=1; }
# the stages in their order, each line after the one before it
[ "$(grep -o '^== [a-z]*' "$s" | tr '\n' ' ')" = "== compare == table == layer == bogus " ] ||
  { cat "$s"; echo "FAIL: the stages' order"; fail=1; }
tar tzf "$dir/out/call.tgz" > "$dir/list" 2>&1 && grep -q "compare/table.txt" "$dir/list" &&
  grep -q "table/mlkc.jsonl" "$dir/list" && grep -q "layer/trace_b1.json" "$dir/list" ||
  { cat "$dir/list"; echo "FAIL: the archive"; fail=1; }
# a stage past its limit: stopped, reported as such, exit 1 (a baseline that never finishes)
printf '#!/bin/sh\nsleep 60\n' > "$dir/b/slow"
chmod +x "$dir/b/slow"
(cd "$src" && BUILD="$dir/b" BASE="$dir/b/slow" STAGES=compare COMPARE_S=1 \
  sh bench/decode/call.sh "$dir/out3") > "$dir/log" 2>&1 &&
  { cat "$dir/log"; echo "FAIL: exit status 0 with a stage stopped"; fail=1; }
grep -Eq "^== compare: time limit \(1 s\), [0-9]+ s$" "$dir/out3/summary.txt" ||
  { cat "$dir/out3/summary.txt"; echo "FAIL: the stopped stage's line"; fail=1; }
# a candidate that is not there: named, exit 1, no stage run
(cd "$src" && BUILD="$dir/b" CANDIDATES="$dir/b/cmp/none" sh bench/decode/call.sh "$dir/out2") \
  > "$dir/log" 2>&1 && { echo "FAIL: a missing candidate accepted"; fail=1; }
grep -q "no decode_bench at $dir/b/cmp/none" "$dir/log" || { cat "$dir/log"; echo "FAIL: its message"; fail=1; }
grep -q "^== " "$dir/out2/summary.txt" && { cat "$dir/out2/summary.txt"; echo "FAIL: a stage ran"; fail=1; }
# the probe and sass stages, on stand-ins: the probe gets the staged PTX and --only=PROBE_ONLY, its
# table lands in the summary; cuobjdump's matches of SASS_GREP are counted and shown; sass without
# a cubin is reported (exit 1)
mkdir -p "$dir/b/bench" "$dir/bin"
printf '#!/bin/sh\necho "probe table: $*"\n' > "$dir/b/bench/sync_probe"
printf '#!/bin/sh\nprintf "  LDG.E.STRONG.GPU R2, [R4]\\n  CCTL.IVALL\\n  IADD3 R1, R1, 1\\n"\n' \
  > "$dir/bin/cuobjdump"
chmod +x "$dir/b/bench/sync_probe" "$dir/bin/cuobjdump"
(cd "$src" && PATH="$dir/bin:$PATH" BUILD="$dir/b" STAGES=probe,sass PROBE_ONLY=handoff_row \
  SASS_CUBIN="$dir/k.cubin" sh bench/decode/call.sh "$dir/out4") > "$dir/log" 2>&1 ||
  { cat "$dir/log"; echo "FAIL: the probe and sass stages' exit status"; fail=1; }
for want in "^== probe: exit 0, [0-9]+ s$" \
            "^probe table: $dir/b/bench/sync_probe.sm_90a.ptx --only=handoff_row$" \
            "^== sass: exit 0, [0-9]+ s$" "^sass of $dir/k.cubin: 2 lines match 'CCTL\|STRONG.GPU'$" \
            "CCTL.IVALL"; do
  grep -Eq "$want" "$dir/out4/summary.txt" ||
    { cat "$dir/out4/summary.txt"; echo "FAIL: no '$want' in the summary"; fail=1; }
done
(cd "$src" && BUILD="$dir/b" STAGES=sass sh bench/decode/call.sh "$dir/out5") > "$dir/log" 2>&1 &&
  { echo "FAIL: sass without a cubin passed"; fail=1; }
grep -q "^== sass: no SASS_CUBIN given" "$dir/out5/summary.txt" ||
  { cat "$dir/out5/summary.txt"; echo "FAIL: sass without a cubin not reported"; fail=1; }
[ $fail -eq 0 ] && echo "ok: call.sh"
exit $fail
