"""Host CPU of the chaining's point fit and of the pose solver's query selection, per window.

    python -m vggt_ros.bench.chaining_cpu [--windows 7] [--repeats 4]

Windows of the ground-truth double (``vggt_ros.synth.gt_double``, 2 % depth noise, 0.3 deg /
0.01 pose noise) at the size VGGT gives 640x480 frames (518x392; the room is rendered at a
quarter of that and upsampled, which costs the renderer 16x less and the timed code nothing),
window 8 / overlap 2. Prints the median process CPU milliseconds of

* ``Chainer.place`` with its window points already computed (what the pipeline's critical path
  runs), with the full Sim(3) point fit (``pose_seams=False``, the camera head's seams) and
  with the scale-only fit of the pose seams (``pose_seams=True``, the default pose_source
  refined); the two alternate so a busy machine slows both alike;
* ``select_queries`` on one anchor keyframe (the pose solver's 256 queries).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from vggt_ros.pipeline.chaining import Chainer
from vggt_ros.pipeline.pose_solver import select_queries
from vggt_ros.pipeline.types import Frame, WindowPrediction
from vggt_ros.pipeline.window import WindowManager
from vggt_ros.synth import SyntheticSequence, intrinsics, make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor

WIDTH, HEIGHT, UPSAMPLE = 518, 392, 4


@dataclass
class _Prerendered(SyntheticSequence):
    """A sequence whose frames were rendered beforehand (``render`` looks them up)."""

    rgb: Optional[np.ndarray] = None  # [N,H,W,3] uint8
    depth: Optional[np.ndarray] = None  # [N,H,W] float32

    def render(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.rgb[i], self.depth[i]


def upsampled_sequence(count: int, seed: int = 1) -> SyntheticSequence:
    """``count`` frames of WIDTH x HEIGHT, rendered at 1 / UPSAMPLE and repeated per pixel."""
    small = make_sequence(count, -(-WIDTH // UPSAMPLE), -(-HEIGHT // UPSAMPLE), seed=seed)

    def up(image: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(image, UPSAMPLE, 0), UPSAMPLE, 1)[:HEIGHT, :WIDTH]

    renders = [small.render(i) for i in range(count)]
    return _Prerendered(stamps_ns=small.stamps_ns, cam_from_world=small.cam_from_world,
                        K=intrinsics(WIDTH, HEIGHT), width=WIDTH, height=HEIGHT,
                        scene=small.scene, rgb=np.stack([up(rgb) for rgb, _ in renders]),
                        depth=np.stack([up(depth) for _, depth in renders]))


def place_times(predictions: Sequence[WindowPrediction], windows: Sequence[list[Frame]],
                repeats: int) -> dict[bool, list[float]]:
    """Process CPU seconds of each ``place`` after the first window, by ``pose_seams``."""
    times: dict[bool, list[float]] = {False: [], True: []}
    for repeat in range(repeats):
        for seams in ((False, True) if repeat % 2 == 0 else (True, False)):
            chainer = Chainer(pose_seams=seams)
            for index, (prediction, window) in enumerate(zip(predictions, windows)):
                pixels = chainer.pixels(prediction, window)
                start = time.process_time()
                chainer.place(prediction, window, index=index, pixels=pixels)
                if index:
                    times[seams].append(time.process_time() - start)
    return times


def query_times(prediction: WindowPrediction, repeats: int) -> list[float]:
    """Process CPU seconds of ``select_queries`` on the window's first keyframe."""
    conf = np.where(prediction.depth_conf[0] >= 1.0, prediction.depth_conf[0], 0.0)
    out = []
    for _ in range(repeats):
        start = time.process_time()
        select_queries(prediction.images[0], prediction.depth[0], conf,
                       prediction.mappings[0].valid, 256, 1.0)
        out.append(time.process_time() - start)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggt_ros.bench.chaining_cpu",
                                description=__doc__.split("\n")[0])
    p.add_argument("--windows", type=int, default=7)
    p.add_argument("--repeats", type=int, default=4, help="passes over the windows per fit")
    args = p.parse_args(argv)
    sequence = upsampled_sequence(8 + 6 * (args.windows - 1))
    manager = WindowManager(window_size=8, overlap=2)
    windows = [w for w in (manager.add(sequence.frame(i)) for i in range(len(sequence))) if w]
    double = GroundTruthPredictor(sequence, depth_noise=0.02, rot_noise_deg=0.3,
                                  trans_noise=0.01, seed=1)
    predictions = [double.predict(w) for w in windows]
    times = place_times(predictions, windows, args.repeats)
    queries = query_times(predictions[0], 5 * args.repeats)
    ms = lambda values: statistics.median(values) * 1e3  # noqa: E731
    print(f"{WIDTH}x{HEIGHT}, window 8 / overlap 2, median process CPU ms over "
          f"{len(times[True])} placements")
    print(f"Chainer.place, full Sim(3) point fit (pose_seams False): {ms(times[False]):.1f}")
    print(f"Chainer.place, scale-only fit (pose_seams True, pose_source refined): "
          f"{ms(times[True]):.1f}")
    print(f"select_queries, one anchor, 256 queries: {ms(queries):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
