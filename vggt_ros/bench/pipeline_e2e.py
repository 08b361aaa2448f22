"""Where a window's time goes: ``Pipeline.add_frame`` with a real predictor, stage by stage.

    python -m vggt_ros.bench.pipeline_e2e                      # demo model, CPU
    python -m vggt_ros.bench.pipeline_e2e --config 1b --device cuda --pose-source camera_head

Rendered frames of a synthetic sequence (``vggt_ros.synth``, 640x480 by default, every frame a
keyframe) go through the pipeline the node and ``vggt_map`` use. The first ``--warmup-windows``
windows are not reported (a compiled network builds its graphs there). Per timed window it
reports the median of each stage (``WindowResult.timings``), the network's own time (the
window prediction's forward pass plus the pose solver's track requests, preprocessing
excluded), the end-to-end time of the ``add_frame`` calls that made the window, and their ratio;
also what ran beside the critical path (the map points during the track request, the map
fusion during the next window) and the end-to-end time until the window's own points are fused.
Issue 17's targets: end to end <= 1.3x the network on a GPU, the non-network stages <= 25 % of
the window on a CPU-only run of the demo model.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from vggt_ros.bench.models import build_config, random_model
from vggt_ros.inference.builder import build_predictor
from vggt_ros.inference.predictor import VGGTPredictor
from vggt_ros.model.fast import TRACKER_PRECISIONS
from vggt_ros.pipeline.pipeline import Pipeline, PipelineConfig, WindowFailed
from vggt_ros.pipeline.timings import NETWORK_STAGES, network_seconds
from vggt_ros.pipeline.types import Frame
from vggt_ros.synth import make_sequence

# Reported rows: name -> the WindowResult.timings keys summed into it.
STAGES = {
    "preprocess": ("predict.preprocess", "track.preprocess"),
    "network: window": ("predict.inference",),
    "network: track": ("track.inference",),
    "postprocess": ("predict.postprocess", "track.postprocess"),
    "pose solve": ("solve",),
    "chain": ("chain",),
    "fuse": ("fuse",),
}
# Work that ran beside the window's critical path (vggt_ros/pipeline/background.py), not
# counted in "other": the map points, computed during the track request, and the map fusion,
# which runs during the next window ("fuse" above is only the wait for it).
BESIDE = {
    "beside the track request: map points": ("chain.pixels",),
    "beside the next window: fusion": ("fuse.background",),
}


def build(args: argparse.Namespace) -> VGGTPredictor:
    """The demo model or a checkpoint through the builder; a named config with random weights."""
    if args.config == "demo":
        return build_predictor(checkpoint=args.checkpoint, device=args.device,
                               precision="auto", preprocess_mode="crop", image_size=0,
                               compile_model=not args.no_compile,
                               tracker_precision=args.tracker_precision, log=lambda _: None)
    device = torch.device(args.device)
    cfg = build_config(args.config)
    return VGGTPredictor(random_model(cfg, 0, device), device=device, image_size=cfg.img_size,
                         name=f"{args.config} (random weights)",
                         compile_model=not args.no_compile,
                         tracker_precision=args.tracker_precision)


def window_rows(pipeline: Pipeline, frames: Sequence[Frame]) -> list[dict[str, float]]:
    """Per window: its stage timings and ``end_to_end`` (the add_frame calls since the last
    window, the one that ran the window included), seconds. A failed window (random weights
    can predict an unusable camera) is reported and left out."""
    rows = []
    elapsed = 0.0
    for frame in frames:
        start = time.perf_counter()
        try:
            results = pipeline.add_frame(frame)
        except WindowFailed as err:
            print(f"window left out: {err.reason}", file=sys.stderr)
            elapsed = 0.0
            continue
        elapsed += time.perf_counter() - start
        for result in results:
            rows.append({**result.timings, "end_to_end": elapsed})
            elapsed = 0.0
    return rows


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Median milliseconds per window of each reported stage, the network, the rest and the
    end to end time, with the issue's two ratios."""
    def median_ms(keys: Sequence[str]) -> float:
        return statistics.median(sum(r.get(k, 0.0) for k in keys) for r in rows) * 1e3

    out = {name: median_ms(keys) for name, keys in STAGES.items()}
    staged = [k for keys in STAGES.values() for k in keys]
    out["other"] = statistics.median(
        r["end_to_end"] - sum(r.get(k, 0.0) for k in staged) for r in rows) * 1e3
    out.update({name: median_ms(keys) for name, keys in BESIDE.items()})
    out["network"] = median_ms(NETWORK_STAGES)
    out["end_to_end"] = median_ms(("end_to_end",))
    out["end_to_end / network"] = out["end_to_end"] / out["network"]
    # The same window until its own points are fused too (the next row reports that fusion).
    with_fusion = [(r["end_to_end"] - r.get("fuse", 0.0) + after.get("fuse.background", 0.0))
                   for r, after in zip(rows, rows[1:])]
    if with_fusion:
        out["end_to_end with its fusion"] = statistics.median(with_fusion) * 1e3
        out["end_to_end with its fusion / network"] = (out["end_to_end with its fusion"]
                                                       / out["network"])
    out["non-network share"] = statistics.median(
        1.0 - network_seconds(r) / r["end_to_end"] for r in rows)
    return out


def table(summary: dict[str, float]) -> str:
    lines = ["| stage | median ms per window |", "| --- | --- |"]
    for name, value in summary.items():
        if name.endswith("/ network"):
            lines.append(f"| {name} | {value:.2f}x |")
        elif name == "non-network share":
            lines.append(f"| {name} | {value:.0%} |")
        else:
            lines.append(f"| {name} | {value:.1f} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggt_ros.bench.pipeline_e2e",
                                description=__doc__.split("\n")[0])
    p.add_argument("--config", default="demo",
                   help="demo (the embedded model, or --checkpoint), or 1b / tiny / a JSON "
                        "config with random weights")
    p.add_argument("--checkpoint", default="", help="weights for --config demo")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-compile", action="store_true", help="run the fast path uncompiled")
    p.add_argument("--tracker-precision", default="fp32", choices=TRACKER_PRECISIONS,
                   help="the fast path's tracker arithmetic (setting tracker_precision)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--window-size", type=int, default=8)
    p.add_argument("--overlap", type=int, default=2)
    p.add_argument("--windows", type=int, default=8, help="timed windows")
    p.add_argument("--warmup-windows", type=int, default=2)
    p.add_argument("--pose-source", nargs="+", default=["refined"],
                   help="one run per pose_source, same predictor")
    p.add_argument("--preprocess", nargs="+", default=["auto"], choices=("auto", "device", "host"),
                   help="where frames are resized: auto (the predictor's default: the device "
                        "for the fast path on CUDA), device (torch) or host (Pillow); one run "
                        "per choice and pose_source")
    p.add_argument("--pipelined", nargs="+", default=["off"], choices=("off", "on"),
                   help="PipelineConfig.pipelined, one run per choice: on, a window's host "
                        "stage runs beside the next window's prediction, so end_to_end is the "
                        "time per window of a stream whose frames wait (throughput), not one "
                        "window's latency, and its stages overlap ('other' is then negative)")
    p.add_argument("--json", type=Path, help="write the summaries here")
    args = p.parse_args(argv)

    predictor = build(args)
    new_per_window = args.window_size - args.overlap
    count = args.window_size + new_per_window * (args.warmup_windows + args.windows - 1)
    seq = make_sequence(count, args.width, args.height, seed=1)
    frames = [seq.frame(i) for i in range(count)]
    report = {"predictor": predictor.describe(), "size": [args.width, args.height],
              "window": args.window_size, "overlap": args.overlap, "runs": {}}
    print(json.dumps(report["predictor"]), flush=True)
    default = predictor.device_preprocessing
    runs = [(s, w, p) for s in args.pose_source for w in args.preprocess for p in args.pipelined]
    for source, where, pipelined in runs:
        predictor.device_preprocessing = default if where == "auto" else where == "device"
        config = PipelineConfig(window_size=args.window_size, overlap=args.overlap,
                                keyframe_min_interval=0.0, pose_source=source,
                                pipelined=pipelined == "on")
        rows = window_rows(Pipeline(predictor, config), frames)[args.warmup_windows:]
        if not rows:
            raise SystemExit("no timed window: raise --windows")
        summary = summarise(rows)
        name = (f"{source}, preprocess on {predictor.describe()['preprocess_on']}"
                + (", pipelined" if pipelined == "on" else ""))
        report["runs"][name] = {"windows": len(rows), "median_ms": summary}
        print(f"\npose_source {name}, {args.width}x{args.height}, window "
              f"{args.window_size} / overlap {args.overlap}, {len(rows)} windows after "
              f"{args.warmup_windows} warm-up", flush=True)
        print(table(summary), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
