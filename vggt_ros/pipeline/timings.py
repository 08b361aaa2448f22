"""What a window's stage timings (``WindowResult.timings``, seconds) add up to.

The pipeline times each stage of a window: ``predict`` (with the predictor's own
``predict.preprocess``, ``predict.inference``, ``predict.postprocess``), ``track`` (the pose
solver's track requests, with ``track.preprocess`` / ``track.inference`` /
``track.postprocess`` summed over them), ``solve``, ``chain``, ``fuse`` and ``window`` (all of
it). Two stages run beside the worker (``pipeline/background.py``) and are not part of
``window``: ``chain.pixels`` (the window's map points, during the track request) and
``fuse.background`` (the PREVIOUS window's map fusion, during this window); ``fuse`` is only
how long this window waited for that fusion. The network's own time is the two ``inference`` parts; everything else is the pipeline
around it, which issue 17 holds to a fraction of the network's time. One definition here keeps
the node's diagnostics, ``vggt_map``'s summary and the benchmark reporting the same thing.
"""
from __future__ import annotations

import statistics
from typing import Mapping, Sequence

__all__ = ["NETWORK_STAGES", "network_seconds", "window_stage_medians"]

NETWORK_STAGES = ("predict.inference", "track.inference")


def network_seconds(timings: Mapping[str, float]) -> float:
    """The network's forward passes of one window (window prediction and track requests)."""
    return sum(timings.get(stage, 0.0) for stage in NETWORK_STAGES)


def window_stage_medians(windows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Median milliseconds per window of every stage any window reports, plus ``network``
    (a stage a window did not run counts as 0 there); empty without windows."""
    if not windows:
        return {}
    stages = sorted({stage for timings in windows for stage in timings})
    out = {stage: statistics.median(t.get(stage, 0.0) for t in windows) * 1e3
           for stage in stages}
    out["network"] = statistics.median(network_seconds(t) for t in windows) * 1e3
    return out
