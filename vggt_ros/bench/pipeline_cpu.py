"""CPU cost of the pipeline around the network: chaining and map fusion per window.

The network is replaced by the ground-truth double with its predictions computed beforehand,
so only what runs on the CPU after inference (Sim(3) fit, unprojection, filtering, voxel map)
is timed, at the real model resolution.

    python -m vggt_ros.bench.pipeline_cpu --width 518 --height 392 --window-size 16 --overlap 4
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Optional, Sequence

from vggt_ros.pipeline.pipeline import Pipeline, PipelineConfig
from vggt_ros.synth import make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor


class _Cached:
    """The ground-truth double with memoised predictions: after a first pass over the
    sequence, `predict` costs nothing and only the pipeline's own work is timed."""

    def __init__(self, double: GroundTruthPredictor) -> None:
        self.double, self.predictions = double, {}

    def predict(self, frames):
        key = tuple(f.stamp_ns for f in frames)
        if key not in self.predictions:
            self.predictions[key] = self.double.predict(frames)
        return self.predictions[key]

    def track(self, frames, query_uv):
        """The pose solver's track requests are answered by the double (exact, cheap)."""
        return self.double.track(frames, query_uv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggt_ros.bench.pipeline_cpu", description=__doc__)
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--width", type=int, default=518)
    p.add_argument("--height", type=int, default=392)
    p.add_argument("--window-size", type=int, default=16)
    p.add_argument("--overlap", type=int, default=4)
    args = p.parse_args(argv)

    seq = make_sequence(args.frames, args.width, args.height, seed=1)
    frames = [seq.frame(i) for i in range(len(seq))]
    config = PipelineConfig(window_size=args.window_size, overlap=args.overlap)
    predictor = _Cached(GroundTruthPredictor(seq, seed=0))
    warmup = Pipeline(predictor, config)
    for frame in frames:
        warmup.add_frame(frame)
    pipeline = Pipeline(predictor, config)
    chain, fuse = [], []
    for frame in frames:
        for result in pipeline.add_frame(frame):
            chain.append(result.timings["chain"])
            fuse.append(result.timings["fuse"])
    report = {"size": [args.width, args.height], "window": args.window_size,
              "overlap": args.overlap, "windows": len(chain),
              "chain_ms_median_after_first": statistics.median(chain[1:]) * 1e3,
              "fuse_ms_median": statistics.median(fuse) * 1e3}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
