#!/usr/bin/env bash
# Issue 12 (helper pose-solver): what the pose solver adds per window at S=8, 518x392, for
# pose_queries 64 / 128 / 256: the track-head request on the GPU (VGGT-1B random weights, fast
# path, after the window's predict) and the CPU solve in both modes (pose_source tracks: queries +
# PnP-RANSAC; refined: + the Schur-complement Levenberg-Marquardt bundle adjustment), on the
# ground-truth double's window with 1 px track noise and 10 % outliers. Medians of 20.
# Also the solve with one BLAS thread (the BA does no large GEMM, but PnP/LAPACK may thread).
# Budget: < 4 min (python capped at 160 s + 60 s; most of the second is re-rendering the window).
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/pose_solver_out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, numpy, scipy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__, 'scipy', scipy.__version__)"
python3 -c "import cv2; print('opencv', cv2.__version__)" || { echo "opencv-python missing: the pose solver needs cv2 (solvePnPRansac)"; exit 1; }
echo "host CPU: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
timeout 160 python3 -m vggt_ros.bench.pose_solver --device cuda --config 1b --frames 8 \
  --width 518 --height 392 --queries 64 128 256 --repeats 20 --json "$OUT/pose_solver.json" 2>&1 | tail -12
echo "== solve only, OPENBLAS_NUM_THREADS=1"
OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 timeout 60 python3 -m vggt_ros.bench.pose_solver --skip-track \
  --frames 8 --width 518 --height 392 --queries 64 128 256 --repeats 20 \
  --json "$OUT/pose_solver_1thread.json" 2>&1 | tail -8
