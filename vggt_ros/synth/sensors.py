"""Synthetic scale sensors: a registered depth camera and wheel odometry, with realistic errors.

They let the metric-scale sources be tested end to end on data whose true scale is known. The
ground truth (poses, the rendered depth) stays exact; only these sensor readings are degraded:

* **Depth** (as a RealSense/OAK/Azure ``aligned_depth_to_color`` stream): the rendered depth,
  registered to the colour camera by construction, with noise whose 1-sigma grows with the
  square of the range (stereo and structured light: ``sigma = base + quadratic * z**2``), no
  reading (0) beyond ``max_range`` or closer than ``min_range``, at depth edges (the flying
  pixels drivers filter out) and at random speckle holes.
* **Unregistered depth** (``--depth-unregistered``: a plain ``depth/image_raw`` stream): the
  same sensor as its own camera (``DepthCamera``): 5 cm to the colour camera's right, turned
  1 degree, a wider field of view on a larger grid (as a RealSense's 848x480 depth beside its
  640x480 colour: finer than the colour pixels, so every colour pixel gets a reading), in its
  own optical frame, whose
  extrinsic to the colour camera goes on ``/tf_static``.
* **Wheel odometry** of a base the camera is rigidly mounted on (``MOUNT``: the camera 0.1 m
  ahead of and 0.3 m above ``base_link``): the true base motion integrated step by step, each
  step's travel off by ``travel_noise`` (relative, 1-sigma) and its heading by
  ``heading_noise_deg``, so the pose drifts as real odometry does while each short stretch of
  travel stays accurate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from vggt_ros.geometry.camera import se3_inverse
from vggt_ros.synth import intrinsics
from vggt_ros.topics.odom_frame import BODY_FROM_OPTICAL

__all__ = ["DepthNoise", "OdometryNoise", "MOUNT", "DepthCamera", "depth_camera",
           "noisy_depth", "wheel_odometry"]

# base_link -> camera optical frame: REP-103 camera axes, 0.1 m forward and 0.3 m up.
MOUNT = BODY_FROM_OPTICAL.copy()
MOUNT[:3, 3] = [0.1, 0.0, 0.3]


DEPTH_FRAME_ID = "camera_depth_optical_frame"


@dataclass(frozen=True)
class DepthCamera:
    """A depth camera of its own beside the colour camera."""

    K: np.ndarray  # 3x3, its own pixels
    width: int
    height: int
    colour_from_depth: np.ndarray  # 4x4, the static extrinsic colour optical <- depth optical
    frame_id: str = DEPTH_FRAME_ID

    def cam_from_world(self, colour_from_world: np.ndarray) -> np.ndarray:
        return se3_inverse(self.colour_from_depth) @ colour_from_world


def depth_camera(colour_width: int, colour_height: int) -> DepthCamera:
    """The unregistered depth camera of a colour camera of this size (module docstring)."""
    width, height = colour_width * 5 // 4, colour_height * 5 // 4
    colour_from_depth = np.eye(4)
    colour_from_depth[:3, :3] = Rotation.from_euler("y", -1.0, degrees=True).as_matrix()
    colour_from_depth[:3, 3] = [0.05, 0.0, 0.0]
    return DepthCamera(intrinsics(width, height, hfov_deg=80.0), width, height,
                       colour_from_depth)


@dataclass(frozen=True)
class DepthNoise:
    base: float = 0.002  # metres, 1-sigma at zero range
    quadratic: float = 0.0025  # 1-sigma per square metre of range (1 cm at 2 m)
    min_range: float = 0.2  # metres
    max_range: float = 6.0  # metres
    edge_step: float = 0.1  # a relative depth step to a neighbour above this makes a hole
    hole_share: float = 0.02  # random speckle holes


@dataclass(frozen=True)
class OdometryNoise:
    travel_noise: float = 0.02  # relative 1-sigma of each step's travel
    heading_noise_deg: float = 0.2  # 1-sigma of each step's heading error


def noisy_depth(depth: np.ndarray, rng: np.random.Generator,
                noise: DepthNoise = DepthNoise()) -> np.ndarray:
    """A depth sensor's reading of the exact ``depth`` (metres), 0 where it has none."""
    depth = np.asarray(depth, dtype=np.float64)
    sigma = noise.base + noise.quadratic * depth ** 2
    out = depth + sigma * rng.standard_normal(depth.shape)
    padded = np.pad(depth, 1, mode="edge")
    neighbours = (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:])
    step = np.max([np.abs(n - depth) for n in neighbours], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        edge = step / depth > noise.edge_step  # both sides of a depth edge
    holes = (edge | (rng.random(depth.shape) < noise.hole_share) | ~np.isfinite(depth)
             | (depth < noise.min_range) | (depth > noise.max_range))
    return np.where(holes, 0.0, out)


def wheel_odometry(world_from_cam: np.ndarray, rng: np.random.Generator,
                   noise: OdometryNoise = OdometryNoise()) -> np.ndarray:
    """[N,4,4] ``odom_from_base`` poses (odom = the base's first pose) of a camera trajectory
    [N,4,4] mounted at ``MOUNT``, integrated from noisy steps (module docstring)."""
    world_from_base = np.asarray(world_from_cam) @ se3_inverse(MOUNT)
    poses = [np.eye(4)]
    for k in range(1, len(world_from_base)):
        step = se3_inverse(world_from_base[k - 1]) @ world_from_base[k]
        step[:3, 3] *= 1.0 + noise.travel_noise * rng.standard_normal()
        heading = np.eye(4)
        heading[:3, :3] = Rotation.from_euler(
            "z", noise.heading_noise_deg * rng.standard_normal(), degrees=True).as_matrix()
        poses.append(poses[-1] @ step @ heading)
    return np.stack(poses)
