#!/bin/sh
# stage.sh: copies what the GPU machine runs out of a build directory into a small one (the
# device tool carries at most 64 MiB): the test and example binaries, stripped, and the PTX the
# scripts read. Usage: sh tests/gpu/stage.sh [BUILD] [STAGE]   (defaults: build, build-device)
# then on the GPU machine: BUILD=build-device sh tests/gpu/run_all_device.sh, and the decode
# benchmark: BUILD=build-device sh bench/decode/run.sh "$OUT" (its scripts come with the tree).
# LEAVE_OUT: file names not to stage (e.g. "mlk-run test_llama_gpu_nosplit"), for a carry limit;
# the size is printed, with a warning past 60 MiB.
set -eu
BUILD=${1:-build}
STAGE=${2:-build-device}
LEAVE_OUT=${LEAVE_OUT:-}
rm -rf "$STAGE"
mkdir -p "$STAGE/tests" "$STAGE/examples" "$STAGE/tools"
for f in test_mlp_gpu test_diff_gpu test_diff_gpu_dyn test_diff_batch test_diff_batch_wide test_diff_events test_trace \
         test_watchdog test_llama_gpu test_llama_gpu_nosplit test_llama_gpu_split3 \
         test_llama_gpu_plain test_ckpt_llama test_kv runtime_ckpt test_mlk_run test_nccl \
         runtime_gpu runtime_gpu_kernels.ptx mlp.sm_90a.ptx mlp.sm_80.ptx; do
  [ -f "$BUILD/tests/$f" ] && cp "$BUILD/tests/$f" "$STAGE/tests/"
done
for f in mlp_demo llama_bench llama_bench_dyn llama_bench_nosplit decode_bench; do
  [ -f "$BUILD/examples/$f" ] && cp "$BUILD/examples/$f" "$STAGE/examples/"
done
[ -f "$BUILD/mlp_bench" ] && cp "$BUILD/mlp_bench" "$STAGE/"
# the synchronization probe (bench/probe/run.sh) and its PTX
if [ -f "$BUILD/bench/sync_probe" ]; then
  mkdir -p "$STAGE/bench"
  cp "$BUILD/bench/sync_probe" "$BUILD/bench/sync_probe.sm_90a.ptx" "$STAGE/bench/"
fi
# mlk-run compiles where it runs (LLVM linked in statically, ~40 MB stripped); there, it finds its
# model families with MLKC_STDLIB=stdlib (the tree's).
[ -f "$BUILD/tools/mlk-run" ] && cp "$BUILD/tools/mlk-run" "$STAGE/tools/"
for f in "$STAGE"/tests/* "$STAGE"/examples/* "$STAGE"/tools/* "$STAGE"/mlp_bench "$STAGE"/bench/sync_probe; do
  case "$f" in *.ptx) ;; *) strip "$f" 2>/dev/null || true ;; esac
done
for f in $LEAVE_OUT; do
  find "$STAGE" -name "$f" -type f -exec rm -f {} +
done
du -sh "$STAGE"
kib=$(du -sk "$STAGE" | cut -f1)
if [ "$kib" -gt $((60 * 1024)) ]; then
  echo "stage.sh: $STAGE is $((kib / 1024)) MiB, near or past a 64 MiB carry: LEAVE_OUT=\"mlk-run\" takes ~37 MiB off"
fi
