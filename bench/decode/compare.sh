#!/bin/sh
# compare.sh: two builds' decode steps in one run, on the same GPU, interleaved, so that a change
# is measured against its baseline under the same clocks and load (timings of different runs or
# machines do not compare). Each round runs the baseline's decode_bench, then the candidate's, over
# the same points; the table gives each point's median over the rounds of the steps' medians, and
# the candidate's time over the baseline's.
#   compare.sh BASE_DECODE_BENCH NEW_DECODE_BENCH [OUT]
# Environment: POINTS (default 1:128,4:128,16:128,64:128), STEPS (30), ROUNDS (3), PYTHON
# (python3); BASE_ENV and NEW_ENV, settings (VAR=value ...) each side runs with, so that one
# binary can be compared with itself at two settings of a launch-time knob, e.g.
#   NEW_ENV="MLK_STREAM_L2_AHEAD=262144" compare.sh B/decode_bench B/decode_bench OUT
# OUT (default ./compare) gets base.jsonl, new.jsonl and table.txt, which is also printed.
# Exit status 1 when a binary is missing or a run fails (its output is shown).
set -u
base=${1:?usage: compare.sh BASE_DECODE_BENCH NEW_DECODE_BENCH [OUT]}
new=${2:?usage: compare.sh BASE_DECODE_BENCH NEW_DECODE_BENCH [OUT]}
out=${3:-compare}
points=${POINTS:-1:128,4:128,16:128,64:128}
steps=${STEPS:-30}
rounds=${ROUNDS:-3}
py=${PYTHON:-python3}
for b in "$base" "$new"; do
  [ -x "$b" ] || { echo "compare.sh: no decode_bench at $b" >&2; exit 1; }
done
mkdir -p "$out" || exit 1
rm -f "$out/base.jsonl" "$out/new.jsonl"
r=1
while [ "$r" -le "$rounds" ]; do
  for which in base new; do
    if [ "$which" = base ]; then bin=$base settings=${BASE_ENV:-}; else bin=$new settings=${NEW_ENV:-}; fi
    # shellcheck disable=SC2086 # settings are words: VAR=value ...
    env $settings "$bin" --points="$points" --steps="$steps" --label="$which" --json="$out/$which.jsonl" \
      > "$out/$which.log" 2>&1 ||
      { cat "$out/$which.log"; echo "compare.sh: the $which run of round $r failed" >&2; exit 1; }
  done
  r=$((r + 1))
done
"$py" - "$out/base.jsonl" "$out/new.jsonl" > "$out/table.txt" <<'PYEOF' || exit 1
import json, statistics, sys

def medians(path):
    pts = {}
    for line in open(path):
        rec = json.loads(line)
        if rec.get("kind") == "point":
            pts.setdefault((rec["batch"], rec["context"]), []).append(rec["median_ms"])
    return pts

base, new = medians(sys.argv[1]), medians(sys.argv[2])
print("| batch | context | base ms | new ms | new / base | rounds |")
print("| --- | --- | --- | --- | --- | --- |")
for key in sorted(base):
    if key not in new:
        continue
    b, n = statistics.median(base[key]), statistics.median(new[key])
    print(f"| {key[0]} | {key[1]} | {b:.4f} | {n:.4f} | {n / b:.3f} | {len(base[key])} |")
PYEOF
cat "$out/table.txt"
