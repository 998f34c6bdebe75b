#!/bin/sh
# run_device.sh: the mlp benchmark and its PyTorch peer in one run on the GPU machine, from the
# repository root with a prebuilt build directory. Prints the table docs/performance.md records.
set -u
BUILD=${BUILD:-build}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader 2>&1
"$BUILD"/mlp_bench 500 4
PYTHONUNBUFFERED=1 python3 bench/mlp_torch.py 500 4 2>&1 | grep -v Warning
