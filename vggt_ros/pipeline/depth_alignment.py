"""A window's poses aligned to the depth sensor: projective point-to-plane ICP (RGB-D odometry).

Why: the pose solver's translations are only as long as the image motion its tracks show, and
the demo model's track head shows about 80 % of the motion a translation causes (median over
the windows of the ``make demo`` sequence, against tracks reprojected with the sensor's depth
and the true poses; with those tracks the solver's translations are exact). Its windows came
out ~15 % short, whatever depth the tracks were lifted with (docs/SCALE.md). A depth camera
measures the motion itself: each keyframe's depth image is the scene seen from its pose.

Per window, for every keyframe but the first that has a depth image (KinectFusion's ICP):

1. the first keyframe's sensor depth is lifted to about ``SOURCE_POINTS`` points (a pixel grid,
   readings within ``[min_range, max_range]``), in metres in its camera;
2. from the solved pose (its translation in metres through the window's measured metres per
   unit), each point is moved into the keyframe and projected; it is paired with the
   keyframe's own sensor point at that pixel (projective association) unless the two are
   further apart than a share of the depth, a share that shrinks over ``STAGES`` (coarse to
   fine: the track poses are a few centimetres off);
3. each iteration solves the linearised point-to-plane least squares (normals from the
   keyframe's depth image) for a 6-DoF update.

The aligned pose replaces the solved one only when the alignment is well posed (at least
``MIN_PAIRS`` pairs, and normal equations that constrain every direction: a flat wall leaves
three directions free, a corridor one) and the depth image disagrees with the solved pose: the
aligned pose must explain it clearly better (``MIN_GAIN``). Otherwise the keyframe keeps its
track pose. On the demo windows the aligned rotations are better too (0.27 deg error instead
of 0.89, the median window's mean, before the gate).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from vggt_ros.geometry.camera import project_points, se3_inverse, unproject_to_camera
from vggt_ros.pipeline.types import Frame, WindowPrediction

__all__ = ["align_to_depth", "SOURCE_POINTS", "STAGES", "MIN_PAIRS", "MIN_CONSTRAINT",
           "MIN_GAIN"]

SOURCE_POINTS = 4000  # first-keyframe points aligned (a grid over its depth image)
# Largest distance of a pair, as a share of its depth, per stage of ITERATIONS iterations.
STAGES = (0.1, 0.05, 0.02)
ITERATIONS = 5
MIN_PAIRS = 300
# Neighbours whose depths differ by more than this share lie on two surfaces: no normal there
# (on a 64x48 test window the largest pose error was 3 mm with 0.2, 7 mm without the rule,
# 21 mm with 0.05, which drops the normals of slanted floors there too).
EDGE_JUMP = 0.2
# Smallest eigenvalue of the point-to-plane normal equations (rotation columns divided by the
# pairs' median depth, so every direction is in metres) over the largest: the demo windows'
# lowest is 1.5e-2, a single plane's is ~0.
MIN_CONSTRAINT = 1e-3
# The aligned pose replaces the solved one only if it explains the depth image better by this
# many times one pair's noise (``_cost``): where the tracks are right, the alignment would only
# trade them for the depth image's noise. Measured gains: with the ground-truth double's exact
# tracks (64x48, vggt_synth's sensor noise) below 64 in 95 % of the keyframes (median -18:
# the alignment's optimum is not this cost's); with the demo model's tracks (320x240) a median
# of 2100. Gates of 30, 100 and 300 give that demo trajectory's scale within 0.2 % of each
# other (docs/SCALE.md).
MIN_GAIN = 100.0


def _sensor_points(depth_m: np.ndarray, k: np.ndarray, min_range: float,
                   max_range: float) -> np.ndarray:
    """[H,W,3] camera points in metres, NaN where the reading is missing or out of range."""
    depth = np.asarray(depth_m, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth >= min_range) & (depth <= max_range)
    points = np.full(depth.shape + (3,), np.nan)
    points[valid] = unproject_to_camera(depth[None], k[None], valid[None])
    return points


def _normals(points: np.ndarray) -> np.ndarray:
    """[H,W,3] unit normals from the neighbouring points (NaN at holes, the border and depth
    edges, where the neighbours lie on two surfaces)."""
    along_u, along_v = np.full_like(points, np.nan), np.full_like(points, np.nan)
    along_u[:, 1:-1] = points[:, 2:] - points[:, :-2]
    along_v[1:-1] = points[2:] - points[:-2]
    normal = np.cross(along_u, along_v)
    with np.errstate(invalid="ignore", divide="ignore"):
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        edge = np.maximum(np.abs(along_u[..., 2]), np.abs(along_v[..., 2])) > (
            EDGE_JUMP * points[..., 2])
    normal[edge] = np.nan
    return normal


def _associate(source: np.ndarray, target: np.ndarray, normals: np.ndarray, k: np.ndarray,
               pose: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(source points moved by ``pose``, the target point and normal at the pixel each lands
    on (NaN where none), the moved points' depth): projective association."""
    height, width = target.shape[:2]
    pixels, depth = project_points(source, pose, k)
    moved = source @ pose[:3, :3].T + pose[:3, 3]
    cols, rows = np.rint(np.nan_to_num(pixels, nan=-1.0)).astype(np.int64).T
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    pair, normal = np.full_like(moved, np.nan), np.full_like(moved, np.nan)
    pair[inside] = target[rows[inside], cols[inside]]
    normal[inside] = normals[rows[inside], cols[inside]]
    return moved, pair, normal, depth


def _cost(source: np.ndarray, target: np.ndarray, normals: np.ndarray, k: np.ndarray,
          pose: np.ndarray) -> tuple[float, float]:
    """(how badly ``pose`` explains the target depth image, the noise of one pair): the
    point-to-plane distances in units of the finest stage's pair distance, squared and capped
    at 1, summed over the source points (one without a pair counts as a capped one); and the
    mean of those squares over the pairs within the cap."""
    moved, pair, normal, depth = _associate(source, target, normals, k, pose)
    with np.errstate(invalid="ignore"):
        scaled = ((moved - pair) * normal).sum(axis=1) / (STAGES[-1] * depth)
    squares = np.minimum(np.nan_to_num(scaled, nan=1.0) ** 2, 1.0)
    inliers = squares[squares < 1.0]
    return float(squares.sum()), float(inliers.mean()) if len(inliers) else 1.0


def _align(source: np.ndarray, target: np.ndarray, normals: np.ndarray, k: np.ndarray,
           pose: np.ndarray) -> Optional[np.ndarray]:
    """``pose`` (target camera from source camera, metres) refined, or None when ill posed."""
    for share in STAGES:
        for _ in range(ITERATIONS):
            moved, pair, normal, depth = _associate(source, target, normals, k, pose)
            with np.errstate(invalid="ignore"):
                used = (np.isfinite(pair).all(axis=1) & np.isfinite(normal).all(axis=1)
                        & (np.linalg.norm(moved - pair, axis=1) <= share * depth))
            if used.sum() < MIN_PAIRS:
                return None
            p, q, n = moved[used], pair[used], normal[used]
            jacobian = np.column_stack([np.cross(p, n), n])  # d residual / d (rotation, shift)
            try:
                step = -np.linalg.solve(jacobian.T @ jacobian,
                                        jacobian.T @ ((p - q) * n).sum(axis=1))
            except np.linalg.LinAlgError:
                return None
            update = np.eye(4)
            update[:3, :3] = Rotation.from_rotvec(step[:3]).as_matrix()
            update[:3, 3] = step[3:]
            pose = update @ pose
    jacobian[:, :3] /= np.median(p[:, 2])
    eigen = np.linalg.eigvalsh(jacobian.T @ jacobian)
    return pose if eigen[0] >= MIN_CONSTRAINT * eigen[-1] else None


def align_to_depth(cam_from_world: np.ndarray, prediction: WindowPrediction,
                   frames: Sequence[Frame], metres_per_unit: float, min_range: float,
                   max_range: float) -> tuple[np.ndarray, int]:
    """(the window's poses [S,4,4] in window units with every keyframe that could be aligned
    to the first keyframe's sensor depth replaced by its aligned pose (module docstring), how
    many were)."""
    poses = np.array(cam_from_world, dtype=np.float64)
    if frames[0].depth_m is None:
        return poses, 0
    k = [m.intrinsics_to_original(np.asarray(kk, dtype=np.float64))
         for m, kk in zip(prediction.mappings, prediction.intrinsics)]
    source = _sensor_points(frames[0].depth_m, k[0], min_range, max_range)
    stride = max(1, int(np.sqrt(source.shape[0] * source.shape[1] / SOURCE_POINTS)))
    source = source[::stride, ::stride].reshape(-1, 3)
    source = source[np.isfinite(source).all(axis=1)]
    if len(source) < MIN_PAIRS:
        return poses, 0
    aligned = 0
    for s in range(1, len(frames)):
        if frames[s].depth_m is None:
            continue
        relative = poses[s] @ se3_inverse(poses[0])
        relative[:3, 3] *= metres_per_unit
        target = _sensor_points(frames[s].depth_m, k[s], min_range, max_range)
        normals = _normals(target)
        refined = _align(source, target, normals, k[s], relative)
        if refined is None:
            continue
        cost, noise = _cost(source, target, normals, k[s], refined)
        if _cost(source, target, normals, k[s], relative)[0] - cost < MIN_GAIN * noise:
            continue
        refined[:3, 3] /= metres_per_unit
        poses[s] = refined @ poses[0]
        aligned += 1
    return poses, aligned
