#!/usr/bin/env bash
# Where the pose solver's track request spends its time through VGGTPredictor (GPU).
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
timeout 400 python3 - <<'PY'
import statistics, time
import numpy as np, torch
from vggt_ros.bench.pose_solver import track_case
from vggt_ros.pipeline.tracking import track_window
predictor, window, sync = track_case("cuda", "1b", 8, 518, 392)
model = predictor.model
calls = []
orig = model.aggregate
model.aggregate = lambda *a, **k: (calls.append(1), orig(*a, **k))[1]
for q in (64, 256):
    rng = np.random.default_rng(q)
    query = np.column_stack([rng.uniform(8, 510, q), rng.uniform(8, 384, q)])
    for _ in range(3):
        track_window(predictor, window, 0, query)
    n0 = len(calls); walls = []; stages = {}
    for _ in range(10):
        sync(); t = time.perf_counter()
        pred = predictor.track(window, query)
        sync(); walls.append(1e3 * (time.perf_counter() - t))
        for k, v in pred.timings.items():
            stages.setdefault(k, []).append(1e3 * v)
    print(f"queries {q}: wall median {statistics.median(walls):.1f} ms; aggregate calls in 10 "
          f"requests: {len(calls) - n0}; stages " + ", ".join(
              f"{k} {statistics.median(v):.1f}" for k, v in stages.items()))
PY
