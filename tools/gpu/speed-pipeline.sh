#!/usr/bin/env bash
# Issue 17 part 1 (helper speed-pipeline): the pipeline around the network on the H200.
# `python -m vggt_ros.bench.pipeline_e2e` drives Pipeline.add_frame with VGGT-1B random weights
# (fast path, compiled, bf16) on rendered 640x480 frames, window 8 / overlap 2, every frame a
# keyframe; 4 warm-up windows per run (the first ones compile: the 8-frame window, the 6-new-frame
# windows, the track request), then 12 timed windows. Four runs in one process with one predictor
# (the graphs compile once): pose_source camera_head and refined, each with the device
# preprocessing (the default on CUDA) and with Pillow on the host (the old path) for comparison.
# Prints per stage the median ms per window, the network (window forward + track request
# forwards), end to end, the ratio end-to-end / network (target <= 1.3x) and the non-network share.
# Also: |torch-on-CUDA resize - Pillow| in uint8 levels on rendered frames (SKIP_RESIZE=1 skips
# it; PREPROCESS=device runs the device preprocessing only). Budget: < 6 min.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/speed_pipeline_out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, PIL; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'PIL', PIL.__version__)"
echo "== 1. device resize vs Pillow (uint8 levels; 518 px target)"
[ -n "$SKIP_RESIZE" ] || timeout 60 python3 - <<'PY' 2>&1 | tail -8
import numpy as np, torch
from vggt_ros.inference.device_preprocessing import preprocess_on_device
from vggt_ros.inference.preprocessing import preprocess_images_uint8
from vggt_ros.synth import make_sequence
for w, h in [(640, 480), (1280, 720)]:
    seq = make_sequence(3, w, h, seed=2)
    ims = [seq.render(i)[0] for i in range(3)]
    for mode in ("crop", "pad"):
        host, maps_h = preprocess_images_uint8(ims, mode, 518)
        _, seen, maps_d = preprocess_on_device(ims, mode, 518, torch.device("cuda"))
        d = np.abs(seen.permute(0, 2, 3, 1).cpu().numpy().astype(int) - host.astype(int))
        print(f"{w}x{h} {mode}: max {d.max()} mean {d.mean():.4f} share>0 {(d > 0).mean():.4f} "
              f"mappings equal {maps_h == maps_d}")
PY
echo "== 2. pipeline_e2e, VGGT-1B random weights, cuda, 640x480, window 8 / overlap 2"
timeout 330 python3 -m vggt_ros.bench.pipeline_e2e --config 1b --device cuda \
  --width 640 --height 480 --window-size 8 --overlap 2 --warmup-windows 4 --windows 12 \
  --pose-source camera_head refined --preprocess ${PREPROCESS:-device host} \
  --json "$OUT/pipeline_e2e.json" 2>&1 | grep -v "^\s*$" | tail -80
