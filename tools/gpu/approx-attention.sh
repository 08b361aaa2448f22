#!/usr/bin/env bash
# Issue 17 part 3 (helper approx-attention): block-sparse global attention (FastOptions.sparse_global,
# arXiv 2509.07120) against exact attention on the fast path, VGGT-1B random weights, 392x518, at
# S=32/64/128: a FlexAttention-vs-dense kernel check on the device, then per S the exact and the
# approximate camera+depth latency (median of 3 after the first call; first call = compile), the
# speed-up, the pose-encoding max abs error and depth median relative error against the exact fast
# path on the same inputs, and (last, eager) the share of key blocks kept per global layer.
# Setting: mass=0.9 (cumulative estimated attention mass), max_ratio=0.25 (at most 1/4 of the key
# blocks per query block). Budget: < 7 min (python capped at 400 s; the JSON is saved per case).
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/approx_out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
timeout 400 python3 -m vggt_ros.bench.cli --device cuda --config 1b --height 392 --width 518 \
  --paths fast --frames "" --extra-frames "" --probe-frames "" --queries 0 \
  --window 32 --stride 16 --accuracy-frames 32 --warmup 1 --reps 2 \
  --approx "mass=0.9,max_ratio=0.25" --approx-frames 32,64,128 --approx-reps 3 \
  --json "$OUT/approx.json" 2>&1 | grep -v "^\s*$" | tail -40
echo "== Markdown (docs/PERFORMANCE.md)"
python3 -m vggt_ros.bench.cli --render "$OUT/approx.json" 2>&1 | tail -8
