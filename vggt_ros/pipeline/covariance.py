"""How uncertain each published pose is: the covariance of ``nav_msgs/Odometry``.

A fusion stack (robot_localization, Nav2's smoothers) weighs every input by its covariance, so
zeros ("perfect") or a constant make it trust a bad window as much as a good one. VGGT gives no
uncertainty of its own; this model builds one from what the pipeline does measure, per
keyframe step (from the previous keyframe to this one, ``d`` odom units apart):

    q           = chaining quality x pose quality  (>= 1; 1 = a clean fit)
    sigma_step  = DRIFT_PER_DISTANCE * d * q   (+)   scale_uncertainty * d
    sigma_angle = ANGLE_NOISE_RAD * q

* chaining quality: ``points`` fits: 1 / inlier ratio (the share of overlap points the Sim(3)
  explains); ``centres`` and ``previous_scale``, which fall back on a few camera centres or
  on one shared depth map, ``CENTRES_QUALITY`` and ``CARRIED_QUALITY``. The window's robust
  RMS residual (odom units) is added once per window as a placement error, times the same q;
* pose quality: the pose solver's median reprojection error in pixels (1 px is nominal), and
  ``DEGENERATE_QUALITY`` when its poses do not explain the image motion;
* ``scale_uncertainty``: the scale filter's relative 1-sigma (metric sources), as an error
  proportional to the distance moved.

``(+)`` is a sum of variances. Pose variances accumulate over the trajectory (the odometry
drifts: ``position_std`` grows with the path), twist variances are the step's own over the
step's time. Everything is isotropic, so it holds whatever frame the pose is re-expressed in,
and floors keep every matrix positive definite. The constants are nominal visual-odometry
numbers, not fitted: what matters to a fusion filter is that a poor window is weighed less.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from vggt_ros.pipeline.types import PoseUncertainty, WindowResult

__all__ = ["UncertaintyTracker", "chaining_quality", "pose_covariance", "twist_covariance"]

DRIFT_PER_DISTANCE = 0.02  # position 1-sigma per unit travelled with a clean fit
ANGLE_NOISE_RAD = math.radians(0.2)  # rotation 1-sigma per keyframe step with a clean fit
CENTRES_QUALITY = 3.0
CARRIED_QUALITY = 5.0
DEGENERATE_QUALITY = 10.0
MIN_INLIER_RATIO = 0.05  # below this a fit is as bad as it gets
NOMINAL_REPROJECTION_PX = 1.0
POSITION_FLOOR = 1e-3  # odom units
ANGLE_FLOOR_RAD = math.radians(0.05)


def chaining_quality(method: str, inlier_ratio: float) -> float:
    """The chaining part of q (module docstring): >= 1, 1 for a clean ``points`` fit."""
    if method == "points":
        ratio = inlier_ratio if math.isfinite(inlier_ratio) else 1.0
        return 1.0 / max(ratio, MIN_INLIER_RATIO)
    if method == "centres":
        return CENTRES_QUALITY
    if method == "previous_scale":
        return CARRIED_QUALITY
    return 1.0  # first window of a trajectory: odom is defined by it


def window_quality(result: WindowResult) -> float:
    """q >= 1 of the module docstring: how much worse than a clean fit this window is."""
    quality = chaining_quality(result.chaining.method, result.chaining.inlier_ratio)
    pose = result.pose
    if pose is not None:
        if math.isfinite(pose.reprojection_px):
            quality *= max(1.0, pose.reprojection_px / NOMINAL_REPROJECTION_PX)
        if pose.degenerate:
            quality *= DEGENERATE_QUALITY
    return quality


class UncertaintyTracker:
    """Accumulates the model over one trajectory; ``restart`` with a new one."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self._position_var = POSITION_FLOOR ** 2
        self._angle_var = ANGLE_FLOOR_RAD ** 2
        self._last_position: Optional[np.ndarray] = None

    def window(self, result: WindowResult) -> Optional[PoseUncertainty]:
        """The uncertainty of the window's newest keyframe (None if it placed none)."""
        if not result.new_keyframes:
            return None
        quality = window_quality(result)
        scale_std = 0.0
        if result.scale is not None and result.scale.metric and math.isfinite(
                result.scale.uncertainty):
            scale_std = result.scale.uncertainty
        residual = result.chaining.residual
        if math.isfinite(residual):
            self._position_var += (residual * quality) ** 2
        step_position_var = step_angle_var = 0.0
        for keyframe in result.new_keyframes:
            position = keyframe.odom_from_cam[:3, 3]
            distance = (0.0 if self._last_position is None
                        else float(np.linalg.norm(position - self._last_position)))
            self._last_position = position
            step_position_var = ((DRIFT_PER_DISTANCE * distance * quality) ** 2
                                 + (scale_std * distance) ** 2 + POSITION_FLOOR ** 2)
            step_angle_var = (ANGLE_NOISE_RAD * quality) ** 2 + ANGLE_FLOOR_RAD ** 2
            self._position_var += step_position_var
            self._angle_var += step_angle_var
        return PoseUncertainty(position_std=math.sqrt(self._position_var),
                               rotation_std=math.sqrt(self._angle_var),
                               step_position_std=math.sqrt(step_position_var),
                               step_rotation_std=math.sqrt(step_angle_var))


def pose_covariance(uncertainty: PoseUncertainty) -> np.ndarray:
    """6x6 (x, y, z, roll, pitch, yaw) covariance of the accumulated pose."""
    return np.diag([uncertainty.position_std ** 2] * 3 + [uncertainty.rotation_std ** 2] * 3)


def twist_covariance(uncertainty: PoseUncertainty, dt_s: float) -> np.ndarray:
    """6x6 covariance of a twist measured over one keyframe step of ``dt_s`` seconds."""
    if not dt_s > 0:
        raise ValueError(f"a twist needs a positive time step, got {dt_s}")
    return np.diag([(uncertainty.step_position_std / dt_s) ** 2] * 3
                   + [(uncertainty.step_rotation_std / dt_s) ** 2] * 3)
