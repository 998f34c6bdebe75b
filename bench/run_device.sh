#!/bin/sh
# run_device.sh: the mlp benchmark and its PyTorch peer in one run on the GPU machine, from the
# repository root with a prebuilt build directory. Prints the table docs/performance.md records.
set -u
BUILD=${BUILD:-build}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader 2>&1
# the floor's read rate, measured here (bench/floor.h): mlp_bench divides by it
f=$(mktemp)
if python3 bench/decode/floor.py --json "$f"; then
  MLK_READ_GBPS=$(python3 -c 'import json, sys; print(round(json.load(open(sys.argv[1]))["read_gbps"]))' "$f")
  export MLK_READ_GBPS
fi
rm -f "$f"
"$BUILD"/mlp_bench 500 4
PYTHONUNBUFFERED=1 python3 bench/mlp_torch.py 500 4 2>&1 | grep -v Warning
