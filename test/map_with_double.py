"""``vggt_map`` with the ground-truth predictor double, for tests that need the command line in
a child process (signals, exit codes) but not the network.

    python test/map_with_double.py FRAMES WIDTH HEIGHT SEED VGGT_MAP_ARGUMENTS...

FRAMES WIDTH HEIGHT SEED are the ``vggt_synth`` arguments of the bag. With
``VGGT_TEST_PAUSE=STAGE:N`` (STAGE: ``read`` = the N-th frame read, ``predict`` = the N-th window
predicted, ``write`` = the final write) the run creates the file ``VGGT_TEST_MARKER`` at that
point and pauses there for ``VGGT_TEST_PAUSE_S`` seconds, so that a test can signal it there.
"""
from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from vggt_ros.export.outputs import MapOutputs
from vggt_ros.offline import cli
from vggt_ros.offline.mapper import OfflineMapper
from vggt_ros.pipeline.types import Frame, WindowPrediction
from vggt_ros.synth import make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor


class Pause:
    """Counts the stages reached; at the one named in VGGT_TEST_PAUSE, marks and sleeps."""

    def __init__(self) -> None:
        stage, _, count = os.environ.get("VGGT_TEST_PAUSE", "").partition(":")
        self.stage, self.count = stage, int(count or 0)
        self.marker = os.environ.get("VGGT_TEST_MARKER", "")
        self.seconds = float(os.environ.get("VGGT_TEST_PAUSE_S", "10"))
        self.reached: Counter[str] = Counter()

    def __call__(self, stage: str) -> None:
        self.reached[stage] += 1
        if stage == self.stage and self.reached[stage] == self.count:
            Path(self.marker).touch()
            time.sleep(self.seconds)


PAUSE = Pause()


class PausingPredictor:
    """The double, pausing once a window's prediction is computed (still inside predict)."""

    def __init__(self, inner: GroundTruthPredictor) -> None:
        self.inner = inner

    def predict(self, frames: Sequence[Frame]) -> WindowPrediction:
        prediction = self.inner.predict(frames)
        PAUSE("predict")
        return prediction

    def track(self, frames: Sequence[Frame], query_uv: Any) -> Any:
        return self.inner.track(frames, query_uv)

    def describe(self) -> dict[str, str]:
        return self.inner.describe()


def _pausing_frames(original):
    def frames(self, *args):
        for frame in original(self, *args):
            PAUSE("read")
            yield frame
    return frames


def _pausing_finish(original):
    def finish(self, *args, **kwargs):
        PAUSE("write")
        return original(self, *args, **kwargs)
    return finish


def main(argv: Sequence[str]) -> int:
    frames, width, height, seed = (int(v) for v in argv[:4])
    OfflineMapper._frames = _pausing_frames(OfflineMapper._frames)
    MapOutputs.finish = _pausing_finish(MapOutputs.finish)
    sequence = make_sequence(frames, width, height, seed)
    return cli.main(list(argv[4:]), predictor_factory=lambda _settings: PausingPredictor(
        GroundTruthPredictor(sequence, seed=7)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
