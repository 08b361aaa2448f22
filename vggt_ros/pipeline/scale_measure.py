"""One window's metric scale, measured from a depth sensor or from the robot's odometry.

VGGT predicts each window in its own arbitrary units. A sensor that measures metres gives, per
window, how many metres one window unit is; :mod:`vggt_ros.pipeline.scale_filter` then fuses
these measurements with the chaining's relative scales. The two published recipes:

* ``depth`` (VGGT-SLAM's maintainer, VSLAM-LAB #154): the median of sensor depth / predicted
  depth over pixels the network is confident about and the sensor measures within its valid
  range. The ratios are taken in log space (a ratio of 2 and one of 0.5 are equally far from
  1), pixels further than ``OUTLIER_SIGMAS`` robust sigmas from the median are rejected (depth
  edges, flying pixels, reflections), and the median of the rest is the scale.
* ``odometry``: the scale that best maps the estimated camera travel onto the travel the robot
  measured over the same keyframe stamps. It is fitted to the distances between every pair of
  keyframes, which need no rotation between the two frames (wheel odometry and VGGT disagree on
  where "forward" is, and a straight drive leaves that rotation undetermined anyway). When the
  robot moved less than ``min_travel`` the scale is not observable: nothing is measured, and the
  filter keeps the previous scale.

A measurement carries a relative 1-sigma uncertainty, so the filter can weigh it; a window
without one says why (``reason``).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from vggt_ros.geometry.camera import se3_inverse
from vggt_ros.pipeline.chaining import window_valid_mask
from vggt_ros.pipeline.map_fusion import confidence_mask
from vggt_ros.pipeline.types import Frame, ScaleMeasurement, WindowPrediction

__all__ = ["depth_scale", "odometry_scale", "OUTLIER_SIGMAS"]

OUTLIER_SIGMAS = 3.0  # robust sigmas (1.4826 MAD) beyond which a ratio is an outlier
MAD_TO_SIGMA = 1.4826
MIN_DEPTH_PIXELS = 200  # fewer usable pixels than this say nothing about a whole window
MAX_DEPTH_PIXELS = 200_000  # an even subsample is plenty for one number, and bounds CPU time
# Pixels of one depth image are not independent samples (a sensor's error is correlated over
# the image, and so is the network's), so a window's depth scale is never trusted beyond this.
DEPTH_UNCERTAINTY_FLOOR = 0.005
# Likewise for odometry: wheel slip and a wheel radius a little off make travel errors of a
# percent or so that no number of keyframes averages away.
ODOMETRY_UNCERTAINTY_FLOOR = 0.01
MIN_ESTIMATED_TRAVEL = 1e-9  # window units: poses that did not move cannot be scaled


def _skip(reason: str) -> ScaleMeasurement:
    return ScaleMeasurement(reason=reason)


def _robust_centre(values: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(median of the inliers, their robust sigma, inlier mask): one pass of MAD rejection."""
    median = np.median(values)
    sigma = MAD_TO_SIGMA * np.median(np.abs(values - median))
    inliers = np.abs(values - median) <= max(OUTLIER_SIGMAS * sigma, 1e-12)
    kept = values[inliers]
    centre = float(np.median(kept))
    return centre, float(MAD_TO_SIGMA * np.median(np.abs(kept - centre))), inliers


def depth_scale(prediction: WindowPrediction, frames: Sequence[Frame], conf_threshold: float,
                conf_percentile: float, min_range: float, max_range: float) -> ScaleMeasurement:
    """Sensor / predicted depth over the window's confident pixels (module docstring).

    ``frames[s].depth_m`` is metres on the camera grid, registered to the colour image; it is
    sampled at every model pixel through the frame's preprocessing. The confident pixels are
    the ones the map keeps (``conf_threshold``, ``conf_percentile``)."""
    valid = window_valid_mask(prediction)
    keep = confidence_mask(prediction.depth_conf, conf_threshold, conf_percentile, valid)
    logs = []
    with_depth = 0
    for s, frame in enumerate(frames):
        if frame.depth_m is None:
            continue
        with_depth += 1
        sensor = prediction.mappings[s].sample_original(frame.depth_m)
        with np.errstate(invalid="ignore"):
            usable = keep[s] & np.isfinite(sensor) & (sensor >= min_range) & (sensor <= max_range)
        logs.append(np.log(sensor[usable]) - np.log(prediction.depth[s][usable]))
    if with_depth == 0:
        return _skip("no usable depth image matched the window's keyframes (rejected.depth_* "
                     "count why)")
    ratios = np.concatenate(logs).astype(np.float64)
    if len(ratios) < MIN_DEPTH_PIXELS:
        return _skip(f"only {len(ratios)} confident pixels with sensor depth in "
                     f"[{min_range:g}, {max_range:g}] m (need {MIN_DEPTH_PIXELS})")
    if len(ratios) > MAX_DEPTH_PIXELS:
        ratios = ratios[np.linspace(0, len(ratios) - 1, MAX_DEPTH_PIXELS).astype(int)]
    centre, sigma, inliers = _robust_centre(ratios)
    kept = int(inliers.sum())
    # Standard error of a median: 1.2533 sigma / sqrt(n).
    uncertainty = max(DEPTH_UNCERTAINTY_FLOOR, 1.2533 * sigma / math.sqrt(kept))
    return ScaleMeasurement(math.exp(centre), uncertainty, kept, len(ratios) - kept)


def odometry_scale(prediction: WindowPrediction, frames: Sequence[Frame],
                   min_travel: float) -> ScaleMeasurement:
    """The pairwise-distance fit of estimated to measured camera travel (module docstring).

    ``frames[s].odom_from_camera`` is the camera's pose in the robot's odometry frame at the
    keyframe's stamp (metres); ``prediction.cam_from_world`` gives the estimated one."""
    rows = [s for s, f in enumerate(frames) if f.odom_from_camera is not None]
    if len(rows) < 2:
        return _skip(f"robot odometry at {len(rows)} of {len(frames)} keyframes (need 2)")
    measured = np.stack([np.asarray(frames[s].odom_from_camera, np.float64)[:3, 3]
                         for s in rows])
    estimated = se3_inverse(np.asarray(prediction.cam_from_world, np.float64)[rows])[:, :3, 3]
    i, j = np.triu_indices(len(rows), k=1)
    d_measured = np.linalg.norm(measured[i] - measured[j], axis=1)
    d_estimated = np.linalg.norm(estimated[i] - estimated[j], axis=1)
    travel = float(d_measured.max())
    if travel < min_travel:
        return _skip(f"the robot moved {travel:.3g} m within the window, less than "
                     f"{min_travel:g} m: scale not observable")
    if d_estimated.max() < MIN_ESTIMATED_TRAVEL:
        return _skip("the window's estimated poses do not move although the robot did")
    # Pairs shorter than half the travel carry mostly noise; the long ones fix the scale.
    long_pairs = d_measured >= 0.5 * travel
    d_measured, d_estimated = d_measured[long_pairs], d_estimated[long_pairs]
    scale = float(d_measured @ d_estimated / (d_estimated @ d_estimated))
    _, sigma, inliers = _robust_centre(d_measured - scale * d_estimated)
    d_measured, d_estimated = d_measured[inliers], d_estimated[inliers]
    scale = float(d_measured @ d_estimated / (d_estimated @ d_estimated))
    residual = d_measured - scale * d_estimated
    rms_distance = math.sqrt(float(np.mean(d_measured ** 2)))
    uncertainty = max(ODOMETRY_UNCERTAINTY_FLOOR,
                      math.sqrt(float(np.mean(residual ** 2))) / rms_distance
                      / math.sqrt(max(len(rows) - 1, 1)))
    return ScaleMeasurement(scale, uncertainty, len(rows), int((~inliers).sum()))
