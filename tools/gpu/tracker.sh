#!/usr/bin/env bash
# Issue 12 / 17: the track request per tracker switch (tracker_precision fp32/tf32/bf16 x
# tracker_local_correlation off/on): VGGT-1B random weights at S=8, 518x392, 64 and 256
# queries (DPT features + tracker from the window's tokens; the DPT features alone), the
# tracks' distance from fp32/full, and with the embedded demo model (trained tracker) each
# variant's median error against the synthetic scene's true tracks. Budget: < 3 min.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/tracker_out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
DEMO=demo
python3 -c "import safetensors" 2>/dev/null || { echo "safetensors missing: no demo-model rows"; DEMO=; }
# Two processes: one model per process, as in the pipeline.
timeout 150 python3 -m vggt_ros.bench.tracker --device cuda --config 1b --frames 8 \
  --width 518 --height 392 --queries 64 256 --repeats 20 --json "$OUT/tracker.json" 2>&1 | tail -16
[ -z "$DEMO" ] || timeout 120 python3 -m vggt_ros.bench.tracker --device cuda --models demo \
  --frames 8 --json "$OUT/tracker_demo.json" 2>&1 | tail -8
