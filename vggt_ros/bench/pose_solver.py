"""``python -m vggt_ros.bench.pose_solver``: what the pose solver adds to a window.

Two stages, timed separately because they run on different processors and need different
inputs to be representative:

* ``track``: the track-head request the solver makes per anchor (``pose_queries`` pixels on the
  window's first keyframe; ``--queries 64 128 256`` times each count), through ``VGGTPredictor`` exactly as the pipeline calls it, after
  the window's own ``predict`` (so the fast path re-uses the window's tokens). Random VGGT-1B
  weights give the real cost of the network; their tracks are meaningless.
* ``solve``: queries, PnP and bundle adjustment (``PoseSolver``) on the CPU, on a window of the
  ground-truth double at the same image size with 1 px track noise and 10 % outliers, so RANSAC
  and the bundle adjustment do the work they do on real tracks (random-weight tracks would make
  every frame fall back and time nothing).

Prints a table of medians (milliseconds); ``--json`` writes every sample.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from vggt_ros.bench.models import (add_window_arguments, build_config, random_inputs,
                                    random_model)
from vggt_ros.bench.timing import wall_samples_ms
from vggt_ros.inference.predictor import VGGTPredictor
from vggt_ros.pipeline.intrinsics import apply_intrinsics
from vggt_ros.pipeline.pose_solver import PoseSolver, PoseSolverConfig, gather_tracks
from vggt_ros.pipeline.tracking import track_window
from vggt_ros.pipeline.types import Frame
from vggt_ros.synth import make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor


def track_case(device: str, config: str, frames: int, width: int, height: int):
    """(predictor, window, sync) with the window already predicted (the pipeline's state when
    it asks for tracks: the fast path re-uses the window's tokens)."""
    dev = torch.device(device)
    model = random_model(build_config(config), 0, dev)
    predictor = VGGTPredictor(model, device=dev, image_size=width)
    rng = np.random.default_rng(0)
    window = [Frame(stamp_ns=1 + i, image=rng.integers(0, 255, (height, width, 3),
                                                       dtype=np.uint8), frame_id="cam")
              for i in range(frames)]
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    predictor.predict(window)
    return predictor, window, sync


def bench_track(case, queries: int, repeats: int) -> list[float]:
    predictor, window, sync = case
    height, width = window[0].image.shape[:2]
    rng = np.random.default_rng(queries)
    query = np.column_stack([rng.uniform(8, width - 8, queries),
                             rng.uniform(8, height - 8, queries)])
    return wall_samples_ms(lambda: track_window(predictor, window, 0, query), repeats, sync,
                           warmup=3)  # graphs, compile


def solve_case(frames: int, width: int, height: int):
    """(window, prediction, double) of the ground-truth double's window: rendered once, solved
    with every query count and pose source."""
    sequence = make_sequence(frames, width, height, seed=1_000_001, trajectory="loop")
    window = [sequence.frame(i) for i in range(frames)]
    double = GroundTruthPredictor(sequence, depth_noise=0.02, rot_noise_deg=5.0,
                                  track_noise_px=1.0, track_outliers=0.1, seed=0)
    prediction, _ = apply_intrinsics(double.predict(window), window, "camera_info")
    return window, prediction, double


def bench_solve(case, queries: int, source: str, repeats: int) -> list[float]:
    window, prediction, double = case
    config = PoseSolverConfig(pose_source=source, num_queries=queries)
    solver = PoseSolver(config)
    tracks = gather_tracks(prediction, window,
                           lambda f, a, uv: track_window(double, f, a, uv), config)
    solver.solve(prediction, tracks)  # warm-up
    return wall_samples_ms(lambda: solver.solve(prediction, tracks), repeats, lambda: None)


def bench_stage(fast, args, clock) -> dict:
    """``vggt_bench``'s pose-solver stage: what the solver adds to a window of ``args.window``
    frames at ``args.pose_queries`` queries: the track request from the window's tokens on the
    model's device (``fast``, a ``FastVGGT``), and the ``refined`` solve on the host CPU on the
    ground-truth double's window of the same size (see the module docstring for why)."""
    frames, width, height = args.window, args.width, args.height
    images, queries = random_inputs(frames, height, width, args.pose_queries, clock.device,
                                    args.seed + 2000)
    keys = [("pose-stage", i) for i in range(frames)]
    with torch.inference_mode():
        fast(images, heads=("camera", "depth"), frame_keys=keys)
        track_ms = clock.median(lambda: fast(images, queries, heads=("track",), frame_keys=keys))
    solve_ms = statistics.median(bench_solve(solve_case(frames, width, height),
                                             args.pose_queries, "refined", max(args.reps, 5)))
    return {"frames": frames, "queries": args.pose_queries, "track_ms": track_ms,
            "solve_ms": solve_ms, "total_ms": track_ms + solve_ms}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggt_ros.bench.pose_solver",
                                description=__doc__.splitlines()[0])
    add_window_arguments(p)
    p.add_argument("--queries", type=int, nargs="+", default=[256],
                   help="query counts per anchor (pose_queries), each timed")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--skip-track", action="store_true", help="time only the CPU solve")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    results = {}
    case = solve_case(args.frames, args.width, args.height)
    tracker = None if args.skip_track else track_case(args.device, args.config, args.frames,
                                                      args.width, args.height)
    for queries in args.queries:
        for source in ("tracks", "refined"):
            results[f"solve.{source}.q{queries}"] = bench_solve(case, queries, source,
                                                                args.repeats)
        if tracker is not None:
            results[f"track.q{queries}"] = bench_track(tracker, queries, args.repeats)
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "samples_ms": results}, indent=1))
    print(f"pose solver, S={args.frames}, {args.width}x{args.height}, queries {args.queries} "
          f"(track on {args.device}, model {args.config}; solve on the CPU)")
    for stage, samples in results.items():
        print(f"  {stage:22s} median {statistics.median(samples):8.1f} ms   "
              f"min {min(samples):8.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
