#!/bin/sh
# compare.sh: two builds' decode steps in one run, on the same GPU, interleaved, so that a change
# is measured against its baseline under the same clocks and load (timings of different runs or
# machines do not compare). Each round runs the baseline's decode_bench and the candidate's over the
# same points, in an order that turns by one side every round (round 1 base first, round 2 new
# first, ...: a side's place in the round, e.g. a GPU warming up, does not favour it; the order is
# in OUT/order.txt); the table gives each point's median over the rounds of the steps' medians,
# and the candidate's time over the baseline's.
#   compare.sh BASE_DECODE_BENCH NEW_DECODE_BENCH [OUT]
# Environment: POINTS (default 1:128,4:128,16:128,64:128), STEPS (30), ROUNDS (3), PYTHON
# (python3); BASE_ENV and NEW_ENV, settings (VAR=value ...) each side runs with, so that one
# binary can be compared with itself at two settings of a launch-time knob, e.g.
#   NEW_ENV="MLK_STREAM_L2_AHEAD=262144" compare.sh B/decode_bench B/decode_bench OUT
# EXTRA: more candidate decode_bench binaries (space-separated paths), sides of every round after
# the new one (in the turning order), each with its own pair of columns (ms, over the baseline): several changes measured
# against one baseline in one call.
# OUT (default ./compare) gets base.jsonl, new.jsonl (extra1.jsonl, ... for EXTRA), order.txt and
# table.txt, which is also printed.
# Exit status 1 when a binary is missing or a run fails (its output is shown).
set -u
base=${1:?usage: compare.sh BASE_DECODE_BENCH NEW_DECODE_BENCH [OUT]}
new=${2:?usage: compare.sh BASE_DECODE_BENCH NEW_DECODE_BENCH [OUT]}
out=${3:-compare}
points=${POINTS:-1:128,4:128,16:128,64:128}
steps=${STEPS:-30}
rounds=${ROUNDS:-3}
py=${PYTHON:-python3}
extra=${EXTRA:-}
for b in "$base" "$new" $extra; do
  [ -x "$b" ] || { echo "compare.sh: no decode_bench at $b" >&2; exit 1; }
done
mkdir -p "$out" || exit 1
sides="base new" i=1
for b in $extra; do
  sides="$sides extra$i" i=$((i + 1))
done
for which in $sides; do
  rm -f "$out/$which.jsonl"
done
# one side's run of round r: NAME BINARY SETTINGS
run_side() {
  # shellcheck disable=SC2086 # settings are words: VAR=value ...
  env $3 "$2" --points="$points" --steps="$steps" --label="$1" --json="$out/$1.jsonl" \
    > "$out/$1.log" 2>&1 ||
    { cat "$out/$1.log"; echo "compare.sh: the $1 run of round $r failed" >&2; exit 1; }
}
# a side's binary and settings
side_bin() {
  case $1 in
  base) echo "$base" ;;
  new) echo "$new" ;;
  # shellcheck disable=SC2086 # the paths are words
  *) i=${1#extra} && set -- $extra && eval "echo \"\${$i}\"" ;;
  esac
}
side_env() {
  case $1 in
  base) echo "${BASE_ENV:-}" ;;
  new) echo "${NEW_ENV:-}" ;;
  *) echo "" ;;
  esac
}
# shellcheck disable=SC2086 # the names are words
nsides=$(echo $sides | wc -w)
: > "$out/order.txt"
r=1
while [ "$r" -le "$rounds" ]; do
  # round r starts at side (r - 1) mod nsides and goes round
  k=$(((r - 1) % nsides)) order= j=0
  for which in $sides; do
    [ "$j" -ge "$k" ] && order="$order $which"
    j=$((j + 1))
  done
  j=0
  for which in $sides; do
    [ "$j" -lt "$k" ] && order="$order $which"
    j=$((j + 1))
  done
  echo "round $r:$order" >> "$out/order.txt"
  for which in $order; do
    run_side "$which" "$(side_bin "$which")" "$(side_env "$which")"
  done
  r=$((r + 1))
done
jsonls=
for which in $sides; do
  jsonls="$jsonls $out/$which.jsonl"
done
# shellcheck disable=SC2086 # the paths are words
"$py" - $jsonls > "$out/table.txt" <<'PYEOF' || exit 1
import json, statistics, sys

def medians(path):
    pts = {}
    for line in open(path):
        rec = json.loads(line)
        if rec.get("kind") == "point":
            pts.setdefault((rec["batch"], rec["context"]), []).append(rec["median_ms"])
    return pts

base, new = medians(sys.argv[1]), medians(sys.argv[2])
extras = [medians(p) for p in sys.argv[3:]]
head = "| batch | context | base ms | new ms | new / base |"
for i in range(len(extras)):
    head += f" extra{i + 1} ms | extra{i + 1} / base |"
print(head + " rounds |")
print("| --- " * (6 + 2 * len(extras)) + "|")
for key in sorted(base):
    if key not in new or any(key not in e for e in extras):
        continue
    b, n = statistics.median(base[key]), statistics.median(new[key])
    row = f"| {key[0]} | {key[1]} | {b:.4f} | {n:.4f} | {n / b:.3f} |"
    for e in extras:
        x = statistics.median(e[key])
        row += f" {x:.4f} | {x / b:.3f} |"
    print(row + f" {len(base[key])} |")
PYEOF
cat "$out/table.txt"
