#!/usr/bin/env bash
# Network targets of issue 17 beside the official-numerics path, plus the FP8 variant.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch; print(torch.__version__, torch.version.cuda)"
timeout 400 python3 -m vggt_ros.bench.cli --device cuda --frames 8,32 --extra-frames "" \
  --probe-frames "" --variants fp8 --json $OUT/bench_fp8.json 2>&1 | grep -v "^\s*$" | tail -45
