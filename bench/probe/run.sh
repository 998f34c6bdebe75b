#!/bin/sh
# run.sh [OUT]: on the GPU machine, the synchronization probe (bench/probe/probe.c) from a build
# (BUILD, default build-device as tests/gpu/stage.sh makes it): its table in OUT/probe.txt and one
# JSON object per row in OUT/probe.jsonl. About 30 seconds; a time limit of 150 s stops a probe
# that misbehaves. QUICK=1 runs fewer iterations (a few seconds).
set -u
BUILD=${BUILD:-build-device}
OUT=${1:-${OUT:-probe-out}}
mkdir -p "$OUT" || exit 2
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
  echo "SKIP: no CUDA driver on this machine (libcuda.so.1 not found): the probe needs a GPU"
  exit 77
fi
rm -f "$OUT/probe.jsonl"
timeout 150 "$BUILD/bench/sync_probe" "$BUILD/bench/sync_probe.sm_90a.ptx" --json="$OUT/probe.jsonl" \
  ${QUICK:+--quick} > "$OUT/probe.txt" 2>&1
rc=$?
cat "$OUT/probe.txt"
[ $rc -eq 124 ] && echo "run.sh: the probe passed its 150 s limit"
exit $rc
