#!/bin/sh
# run_device.sh: runs the prebuilt GPU tests on a machine with an NVIDIA GPU, from the repository
# root, with the build directory built elsewhere (the GPU machine needs no LLVM, re2c or lemon:
# binaries load libcuda.so.1 at run time). Writes logs under $OUT when set.
set -u
BUILD=${BUILD:-build}
OUT=${OUT:-/tmp/mlk-out}
mkdir -p "$OUT"
fail=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
echo "== $BUILD/tests/test_mlp_gpu"
"$BUILD"/tests/test_mlp_gpu || fail=1
echo "== $BUILD/tests/runtime_gpu"
"$BUILD"/tests/runtime_gpu "$BUILD"/tests/runtime_gpu_kernels.ptx || fail=1
echo "== $BUILD/tests/test_diff_gpu (every op at odd sizes, GPU vs simulator)"
"$BUILD"/tests/test_diff_gpu 0 || fail=1
# the tiles' knobs away from their defaults (mlk_desc.h MlkDevTune): every one changed
knobs="MLK_STREAM_L2_AHEAD=1048576 MLK_POLL_BACKOFF_NS=256 MLK_MMA_STAGE_RING=0"
echo "== $BUILD/tests/test_diff_gpu with the tiles' knobs changed ($knobs)"
env $knobs "$BUILD"/tests/test_diff_gpu 0 || fail=1
echo "== $BUILD/tests/test_diff_gpu_dyn (the same, compiled for the dynamic schedule)"
"$BUILD"/tests/test_diff_gpu_dyn 0 || fail=1
echo "== $BUILD/tests/test_diff_batch (matvecs at batches 9..64: the tensor-core path, GPU vs simulator)"
"$BUILD"/tests/test_diff_batch 0 || fail=1
echo "== $BUILD/tests/test_diff_batch_wide (batches 65, 100, 160: more than one pass of 64 rows, GPU vs simulator)"
"$BUILD"/tests/test_diff_batch_wide 0 65,100,160 || fail=1
echo "== $BUILD/tests/test_diff_batch at batches 2, 4 and 5 (batch_ops' k = 4096 matvecs split from 4: x does not fit whole)"
"$BUILD"/tests/test_diff_batch 0 2,4,5 || fail=1
echo "== $BUILD/tests/test_diff_batch and _wide with the split matvecs off (MLK_MATVEC_SPLIT_CAP=1: every large-batch task alone, the plain tensor-core path)"
MLK_MATVEC_SPLIT_CAP=1 "$BUILD"/tests/test_diff_batch 0 || fail=1
MLK_MATVEC_SPLIT_CAP=1 "$BUILD"/tests/test_diff_batch_wide 0 65,100,160 || fail=1
echo "== $BUILD/tests/test_diff_events (explicit events, megakernels reading each other's outputs, GPU vs simulator)"
"$BUILD"/tests/test_diff_events 0 || fail=1
echo "== $BUILD/tests/test_diff_batch with the knobs changed (x staged in the tiles' scratch)"
env $knobs "$BUILD"/tests/test_diff_batch 0 || fail=1
echo "== $BUILD/tests/test_trace gpu"
"$BUILD"/tests/test_trace gpu "$OUT" || fail=1
echo "== $BUILD/tests/test_watchdog gpu"
"$BUILD"/tests/test_watchdog gpu || fail=1
echo "== $BUILD/tests/runtime_ckpt gpu (checkpoint loads through cuMemcpyHtoD from the mapping)"
"$BUILD"/tests/runtime_ckpt gpu || fail=1
echo "== $BUILD/tests/test_ckpt_llama gpu (a sharded checkpoint loaded, decode equal to set params)"
"$BUILD"/tests/test_ckpt_llama gpu || fail=1
echo "== $BUILD/tests/test_kv gpu (page accounting, continuous batching against sequences alone)"
"$BUILD"/tests/test_kv gpu || fail=1
echo "== $BUILD/tests/test_mlk_run gpu (mlk-run on Llama and Qwen2 checkpoints, greedy, against the C reference)"
[ -f "$BUILD/tools/mlk-run" ] && { MLKC_STDLIB=stdlib "$BUILD"/tests/test_mlk_run "$BUILD"/tools/mlk-run 1 gpu || fail=1; }
echo "== $BUILD/tests/test_kv gpu with the knobs changed (a small Llama whose matvecs the stream takes)"
env $knobs "$BUILD"/tests/test_kv gpu || fail=1
echo "== $BUILD/tests/test_nccl (a world's NCCL communicator: one rank on this GPU)"
"$BUILD"/tests/test_nccl || fail=1
if [ -f "$BUILD/tools/mlk-run" ]; then
  # two ranks on one GPU (the host sums their collectives) against one rank: the same tokens,
  # logits within f32 reduction order and one bf16 step of a KV cache element (a sum in another
  # order can round a key one bf16 step apart: 2.5e-5 seen on the H200), the tolerance of tp_world
  echo "== mlk-run --tp 2 against --tp 1 on the GPU (tests/hf/fixtures/llama-gqa7)"
  fx=tests/hf/fixtures/llama-gqa7
  for tp in 1 2; do
    MLKC_STDLIB=stdlib "$BUILD"/tools/mlk-run --model $fx --prompts $fx/prompts.txt --steps 8 \
      --tp $tp --logits-out "$OUT/tp$tp.f32" > "$OUT/tp$tp.ids" 2> "$OUT/tp$tp.err" || fail=1
    grep "model:" "$OUT/tp$tp.err"
  done
  cmp "$OUT/tp1.ids" "$OUT/tp2.ids" && echo "tokens: equal" || fail=1
  python3 - "$OUT/tp1.f32" "$OUT/tp2.f32" <<'PY' || fail=1
import sys, numpy as np
a, b = (np.fromfile(p, dtype=np.float32) for p in sys.argv[1:3])
e = float(np.linalg.norm(a - b) / np.linalg.norm(a))
print(f"logits: {a.size} floats, rel L2 {e:.3g} (tol 2e-3)")
sys.exit(0 if a.size == b.size and e < 2e-3 else 1)
PY
fi
echo "== demo"
"$BUILD"/examples/mlp_demo 20 || fail=1
if command -v ptxas >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/ptxas ]; then
  PTXAS=$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)
  for a in sm_90a sm_80; do
    if [ -f "$BUILD/tests/mlp.$a.ptx" ]; then
      echo "== ptxas -v $a"
      "$PTXAS" -v -arch=$a "$BUILD/tests/mlp.$a.ptx" -o "$OUT/mlp.$a.cubin" 2>&1 | tail -3
    fi
  done
fi
exit $fail
