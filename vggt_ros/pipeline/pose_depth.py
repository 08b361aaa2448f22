"""The depth the pose solver lifts its tracks with: the depth sensor's, where it measured one.

Why: the pose solver turns tracked pixels into 3D points with a depth, and the window's
translations come out in whatever geometry that depth describes. With the network's depth they
are the network's geometry; the depth scale (``scale_measure.depth_scale``) then puts its depth
map into metres, and the motion follows only if the network's depth is the true scene up to one
scale. Lifting with the sensor's depth (the RGB-D visual-odometry recipe) gives the motion the
sensor's geometry: with the ground-truth double's depth bent to ``scale * depth ** 0.8``, the
trajectory's Sim(3) alignment scale goes from 0.980 to 1.000 (test/test_pose_depth.py). The demo
model's depth is close to the scene's (with exact tracks its windows come out 1.4 % short);
its short windows are its tracks', which ``depth_alignment`` corrects.

Units: the sensor's metres are divided by the window's measured metres per window unit, so
the points stay in the window's units (the chaining's overlap fit and the map use the
network's depth in those units) and the chaining's scale puts them into metres like the rest
of the window.

A query keeps the network's depth where the sensor has no valid value there (a hole, outside
``[min_range, max_range]``, no depth image matched its anchor keyframe). Where both have one,
the sensor's is used even when the two disagree: a disagreement is either the network's bias
(what this is for: dropping the queries where the two disagree by more than 3 robust sigmas,
which are those where the network is most wrong, left the bent-depth windows' translations
3-4 % off where taking every sensor value gave them exact) or a depth edge the sensor sampled
on the other surface, an outlier the PnP's RANSAC and the bundle adjustment's Huber loss
already reject.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from vggt_ros.pipeline.pose_solver import WindowTracks
from vggt_ros.pipeline.types import Frame, PreprocessMapping, WindowPrediction

__all__ = ["with_sensor_depth", "POSE_DEPTHS"]

POSE_DEPTHS = ("sensor", "network")  # the pose_depth setting's choices


def _sensor_at(mapping: PreprocessMapping, depth_m: np.ndarray,
               query_uv: np.ndarray) -> np.ndarray:
    """[N] sensor metres at model pixels (nearest original pixel, as
    ``PreprocessMapping.sample_original``); NaN outside the original image."""
    depth_m = np.asarray(depth_m, dtype=np.float64)
    uv = np.rint(mapping.to_original(query_uv)).astype(np.int64)
    height, width = depth_m.shape
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    out = np.full(len(uv), np.nan)
    out[inside] = depth_m[uv[inside, 1], uv[inside, 0]]
    return out


def with_sensor_depth(tracks: WindowTracks, prediction: WindowPrediction,
                      frames: Sequence[Frame], metres_per_unit: float, min_range: float,
                      max_range: float) -> tuple[WindowTracks, int]:
    """(``tracks`` with each query's depth taken from its anchor's sensor depth, in window
    units, where valid (module docstring); how many queries got it)."""
    sensor = np.full(len(tracks.depth), np.nan)
    for a in np.unique(tracks.anchor):
        if frames[a].depth_m is None:
            continue
        of_anchor = tracks.anchor == a
        sensor[of_anchor] = _sensor_at(prediction.mappings[a], frames[a].depth_m,
                                       tracks.query_uv[of_anchor])
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(sensor) & (sensor >= min_range) & (sensor <= max_range)
    depth = np.where(usable, sensor / metres_per_unit, tracks.depth)
    return replace(tracks, depth=depth), int(usable.sum())
