#!/bin/sh
# run_all_device.sh: everything the GPU machine checks and measures in one call (the device time
# is scarce): the GPU tests, then the benchmarks with their PyTorch peers. Logs under $OUT.
set -u
BUILD=${BUILD:-build}
OUT=${OUT:-/tmp/mlk-out}
mkdir -p "$OUT"
sh tests/gpu/run_device.sh 2>&1 | tee "$OUT/tests.log"
for v in "" _nosplit _split3 _plain; do # attention split by default, not split, split in 3; plain RoPE
  echo "== $BUILD/tests/test_llama_gpu$v"
  timeout 300 "$BUILD"/tests/test_llama_gpu$v 2>&1 | tee "$OUT/llama_gpu$v.log" | tail -15
done
echo "== benchmarks"
timeout 200 sh bench/run_device.sh 2>&1 | tee "$OUT/bench_mlp.log"
echo "== llama bench (batch 1, then 8) and its PyTorch peer, same run"
timeout 200 "$BUILD"/examples/llama_bench 50 128 1 2>&1 | tee "$OUT/bench_llama.log"
timeout 100 "$BUILD"/examples/llama_bench 50 128 8 2>&1 | tee -a "$OUT/bench_llama.log"
echo "== llama bench, dynamic schedule (batch 1)"
timeout 200 "$BUILD"/examples/llama_bench_dyn 50 128 1 2>&1 | tee -a "$OUT/bench_llama.log"
echo "== llama trace (static, batch 1, the last 2 of 10 steps; tracing on costs what it shows)"
MLK_TRACE="$OUT/llama_trace.json" MLK_TRACE_RUNS=2 timeout 100 "$BUILD"/examples/llama_bench 10 128 1 2>&1 | tee "$OUT/llama_trace.log"
MLK_TRACE="$OUT/llama_trace_dyn.json" MLK_TRACE_RUNS=2 timeout 100 "$BUILD"/examples/llama_bench_dyn 10 128 1 2>&1 | tee "$OUT/llama_trace_dyn.log"
echo "== the same with attention not split over the context (mlkc --attn-split=1)"
timeout 200 "$BUILD"/examples/llama_bench_nosplit 50 128 1 2>&1 | tee -a "$OUT/bench_llama.log"
timeout 100 "$BUILD"/examples/llama_bench_nosplit 50 128 8 2>&1 | tee -a "$OUT/bench_llama.log"
PYTHONUNBUFFERED=1 timeout 300 python3 bench/llama_torch.py 50 128 2>&1 | grep -v -i warn | tee -a "$OUT/bench_llama.log"
