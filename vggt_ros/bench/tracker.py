"""``python -m vggt_ros.bench.tracker``: the track request's cost and accuracy per tracker switch.

The pose solver's track request (``pose_queries`` pixels on a window's first keyframe, the
window's tokens re-used) is a DPT feature head plus the iterative tracker. This times, for every
``FastOptions`` combination of ``tracker_precision`` (fp32 / tf32 / bf16) and
``tracker_local_correlation``:

* on VGGT-1B random weights (``--config``), the whole request (DPT features + tracker) from the
  window's aggregated tokens, and the DPT features alone, per query count;
* the tracks' distance from the fp32 full-correlation tracks on the same inputs (pixels);
* with ``--models demo``, the same distance for the embedded demo model on a rendered sequence, whose
  tracker was trained, and each variant's error against the true tracks (the ground truth of
  the synthetic scene): a rounding that random weights hide would show there.

Prints a table of medians; ``--json`` writes every sample.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from vggt_ros.bench.models import (add_window_arguments, build_config, random_inputs,
                                    random_model, random_query_points)
from vggt_ros.bench.timing import wall_samples_ms
from vggt_ros.model.fast import TRACKER_PRECISIONS, FastOptions, FastVGGT

VARIANTS = [dict(tracker_precision=p, tracker_local_correlation=local)
            for p, local in itertools.product(TRACKER_PRECISIONS, (False, True))]
REFERENCE = VARIANTS[0]  # fp32, full correlation volume: the official tracker's arithmetic

WARMUP_CALLS = 3  # compiles, CUDA graph capture


def selected_variants(args) -> list[dict[str, Any]]:
    """The variants of ``--precisions`` x ``--correlation``; fp32/full (the reference of the
    distances) always."""
    return [v for v in VARIANTS if v == REFERENCE or (
        v["tracker_precision"] in args.precisions
        and ("local" if v["tracker_local_correlation"] else "full") in args.correlation)]


def variant_name(variant: dict[str, Any]) -> str:
    local = "local" if variant["tracker_local_correlation"] else "full"
    return f"{variant['tracker_precision']}/{local}"


def _distance(tracks: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Per-track pixel distance over the frames after the query frame."""
    d = (tracks[:, 1:] - reference[:, 1:]).norm(dim=-1).flatten().double().cpu()
    return {"median_px": d.median().item(), "p99_px": d.quantile(0.99).item(),
            "max_px": d.max().item()}


def bench_random(args, device: torch.device, sync) -> dict[str, Any]:
    """Times and distances on VGGT-1B random weights (the real cost of the network)."""
    fast = FastVGGT(random_model(build_config(args.config), 0, device), FastOptions())
    head = fast.model.track_head
    images, _ = random_inputs(args.frames, args.height, args.width, 0, device, seed=3)
    grid = fast.model.aggregator.patch_embed.patch_grid(args.height, args.width)
    out: dict[str, Any] = {"times_ms": {}, "distance": {}}
    with torch.inference_mode():
        tokens = fast.aggregate(fast.patch_tokens(images, None), *grid)
        out["times_ms"]["dpt_features"] = wall_samples_ms(
            lambda: fast.dpt(head.feature_extractor, tokens, images), args.repeats, sync,
            WARMUP_CALLS)
        for queries in args.queries:
            points = random_query_points(queries, args.width, args.height, device, queries)
            reference = None
            for variant in selected_variants(args):
                fast.options = dataclasses.replace(fast.options, **variant)
                name = f"q{queries}.{variant_name(variant)}"
                out["times_ms"][name] = wall_samples_ms(
                    lambda: fast.track(tokens, images, points), args.repeats, sync, WARMUP_CALLS)
                tracks = fast.track(tokens, images, points)[0]
                if variant == REFERENCE:
                    reference = tracks
                out["distance"][name] = _distance(tracks, reference)
    return out


def bench_demo(args, device: torch.device) -> dict[str, Any]:
    """Distances and errors against the truth with the trained demo model on a rendered
    sequence (8 frames, the demo's size and trajectory kind)."""
    from vggt_ros.inference.predictor import VGGTPredictor
    from vggt_ros.model.embedded import embedded_image_size, load_embedded_model
    from vggt_ros.pipeline.tracking import track_window
    from vggt_ros.synth import make_sequence
    from vggt_ros.synth.gt_double import GroundTruthPredictor

    size = embedded_image_size()
    predictor = VGGTPredictor(load_embedded_model(device), device=device, image_size=size,
                              fast=True, fast_options=FastOptions())
    out: dict[str, Any] = {}
    for seed in args.demo_seeds:
        sequence = make_sequence(args.frames, 320, 240, seed=seed, trajectory="loop")
        frames = [sequence.frame(i) for i in range(args.frames)]
        truth_source = GroundTruthPredictor(sequence, track_noise_px=0.0, track_outliers=0.0)
        rng = np.random.default_rng(seed)
        query = np.column_stack([rng.uniform(8, 312, 256), rng.uniform(8, 232, 256)])
        truth = track_window(truth_source, frames, 0, query)
        seen = truth.visibility[1:] > 0.5
        predictor.predict(frames)
        reference = None
        for variant in selected_variants(args):
            predictor.model.options = dataclasses.replace(predictor.model.options, **variant)
            tracks = track_window(predictor, frames, 0, query).tracks_uv
            if variant == REFERENCE:
                reference = tracks
            error = np.linalg.norm(tracks[1:] - truth.tracks_uv[1:], axis=-1)[seen]
            moved = np.linalg.norm(tracks[1:] - reference[1:], axis=-1)
            out.setdefault(variant_name(variant), []).append(
                {"seed": seed, "median_error_px": float(np.nanmedian(error)),
                 "median_from_fp32_px": float(np.nanmedian(moved)),
                 "max_from_fp32_px": float(np.nanmax(moved)),
                 "non_finite_tracks": int((~np.isfinite(tracks)).any(axis=-1).sum())})
    return out


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggt_ros.bench.tracker",
                                description=__doc__.splitlines()[0])
    add_window_arguments(p)
    p.add_argument("--queries", type=int, nargs="+", default=[64, 256])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--models", nargs="+", choices=("random", "demo"), default=["random"],
                   help="random: --config's random weights (times, distances); demo: the "
                        "embedded demo model's tracks against the truth")
    p.add_argument("--demo-seeds", type=int, nargs="+",
                   default=[1_000_201, 1_000_202, 1_000_203, 1_000_204])
    p.add_argument("--precisions", nargs="+", choices=TRACKER_PRECISIONS,
                   default=list(TRACKER_PRECISIONS),
                   help="tracker_precision values to time (fp32/full, the reference, always)")
    p.add_argument("--correlation", nargs="+", choices=("full", "local"),
                   default=["full", "local"], help="tracker_local_correlation off / on")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    results = {}
    if "random" in args.models:
        results["random"] = bench_random(args, device, sync)
    if "demo" in args.models:
        results["demo"] = bench_demo(args, device)
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         **results}, indent=1))
    print(f"track request, S={args.frames}, {args.device}; distances from "
          f"{variant_name(REFERENCE)} tracks")
    if "random" in results:
        random = results["random"]
        print(f"model {args.config} random weights, {args.width}x{args.height}, medians of "
              f"{args.repeats}; distances in model pixels")
        dpt = statistics.median(random["times_ms"]["dpt_features"])
        print(f"  DPT features alone {dpt:8.2f} ms")
        for name, samples in random["times_ms"].items():
            if name in random["distance"]:
                d = random["distance"][name]
                print(f"  {name:18s} {statistics.median(samples):8.2f} ms   distance median "
                      f"{d['median_px']:.4f} p99 {d['p99_px']:.4f} max {d['max_px']:.4f} px")
    if "demo" in results:
        print("embedded demo model, 320x240 renders, 256 queries, one value per sequence "
              f"{args.demo_seeds}; pixels of the 320x240 image")
    for name, rows in results.get("demo", {}).items():
        print(f"  {name:12s} error vs truth (median) "
              + " ".join(f"{r['median_error_px']:.3f}" for r in rows)
              + "   from fp32/full median " + " ".join(f"{r['median_from_fp32_px']:.4f}"
                                                   for r in rows)
              + " max " + " ".join(f"{r['max_from_fp32_px']:.3f}" for r in rows)
              + "   non-finite " + " ".join(str(r["non_finite_tracks"]) for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
