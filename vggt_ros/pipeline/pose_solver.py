"""Window poses solved from the network's own point tracks and depth ("VGGT + BA").

Why: the camera head is the network's least reliable output (the small demo model never learned
relative motion at all), while its depth and its tracks are good. The VGGT paper's best poses
come from exactly this recipe: the network's depth lifts tracked pixels to 3D, and a bundle
adjustment on the tracks re-estimates the cameras. Per window:

1. **Queries**: up to ``num_queries`` pixels on each anchor keyframe, one per cell of a grid over
   the real image content (so they spread over the whole view), each the most textured pixel of
   its cell among those with confident depth. Texture because the track head follows image
   structure; confident depth because the pixel becomes a 3D point.
2. **Tracks**: the predictor's track head follows them through the window (the same
   ``track_window`` the ``track_points`` service uses). Observations with visibility < 0.5 are
   dropped.
3. **PnP**: each frame's pose from the anchor points (depth x K^-1 pixel, placed with the anchor's
   pose) and their tracked pixels, OpenCV's RANSAC around SQPnP. The demo model's track head
   loses a window's last frames in two ways, each caught before RANSAC can fit whichever wrong
   pixels agree: its tracks snap back towards their queries (the frame's tracked motion drops
   below half of what the two frames before it extrapolate to), or most of them disagree
   (inliers fewer than ``min_inlier_share`` of the visible tracks; with the true poses only
   17-40 % are within the threshold there). Such a frame is moved on at the constant velocity
   of its two nearest solved frames instead, and reported. A frame with fewer than
   ``min_inliers`` inliers keeps its camera-head pose where the camera head reproduces the
   window's tracked motion, and is moved on like a lost frame where it does not (the demo
   model's head never learned motion); either is reported.
4. **Bundle adjustment** (``refine``): every pose but the window's first (it defines the
   window's frame, as in VGGT) and every query's depth (log-depth, with a prior to the network's
   depth that also fixes the window's scale) jointly minimise the robust (Huber) reprojection
   error of all observations, whitened by the tracks' measured noise, with a weak prior towards
   the camera head and a constant-velocity prior over consecutive frames (angular and linear
   acceleration, from the frames' stamps; a change of speed weighs more than a turn, and the
   prior weighs less the better the tracks are). Each observation also ties the point's depth
   in the observing camera to that frame's own network depth at the tracked pixel
   (``frame_depth_sigma``; each frame's depth map on the current estimate's scale): the
   anchor's depth alone leaves every other camera's distance along its rays to the tracks.
   The prior reaches across the seam (``seam_prior``): the previous window's frame before
   this window's anchor (the first overlap keyframe) joins
   as a fixed pose without observations, moved into this window's frame and scale through the
   anchor's pose and depth in both windows. A Levenberg-Marquardt with an analytic Jacobian that
   eliminates the depths (Schur complement), in ``vggt_ros.pipeline.bundle_adjustment``;
   measured in docs/MODEL.md.

The health numbers (inliers, reprojection error, disagreement with the camera head, how much of
the image motion the chosen poses explain) are computed in every mode, so a window whose poses
do not explain what the tracks show is flagged even when the camera head's poses are used.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import cv2
import numpy as np

from vggt_ros.geometry.camera import project_points, se3_inverse
from vggt_ros.pipeline.bundle_adjustment import AdjustmentProblem, adjust
from vggt_ros.pipeline.map_fusion import confidence_mask
from vggt_ros.pipeline.types import Frame, PoseHealth, TrackPrediction, WindowPrediction

# The per-frame PnPs of a one-anchor window (PoseSolver._pnp_ahead): one worker per frame at
# most, no more than the host has cores.
_PNP_THREADS = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1),
                                  thread_name_prefix="pnp")

POSE_SOURCES = ("camera_head", "tracks", "refined")
VISIBLE = 0.5  # track-head visibility from which a tracked pixel counts as an observation
# A window "does not explain its tracks" when the chosen poses leave more than this share of the
# tracked image motion unexplained (a static estimate while the image moves gives ~1).
UNEXPLAINED_MOTION_WARN = 0.5
MIN_TRACK_MOTION_PX = 2.0  # below this the image barely moved: nothing to explain
DISAGREEMENT_WARN_DEG = 5.0
MAX_DEPTH_CHANGE = 0.3  # log-depth a bundle-adjustment round may move a query (x0.74..x1.35)
# A frame whose tracked motion from its anchor is below this share of the motion its two
# predecessors extrapolate to has lost its tracks (measured in docs/MODEL.md).
SNAP_BACK = 0.5
HUBER_SCALE = 2.0  # Huber scale of the bundle adjustment, in sigmas of 2D error
# Floor of the measured track noise that whitens the residuals: with exact tracks the priors then
# move the poses by far less than 1e-6 of the path (0.01 px moved a chained map by 2e-6).
MIN_TRACK_SIGMA_PX = 0.001
# The demo model's track errors are correlated within a frame: its poses are 3-5x worse than
# independent noise of the measured size gives (docs/MODEL.md). The whitening sigma is this
# multiple of the measured one.
TRACK_NOISE_INFLATION = 2.0
# A frame's depth at a tracked pixel is used only where its four neighbouring pixels' depths
# differ by at most this ratio: a larger step is an object edge, where the tracked pixel may sit
# on either side (sub-pixel track errors then mean a different surface).
MAX_NEIGHBOUR_DEPTH_STEP = 0.05

# (frames in window order, anchor index, [N,2] original pixels of the anchor) -> tracks in window
# order (TrackPrediction with [S,N,2] original pixels)
TrackFn = Callable[[Sequence[Frame], int, np.ndarray], TrackPrediction]


@dataclass(frozen=True)
class PoseSolverConfig:
    """How windows are solved; the user-facing fields come from vggt_ros.settings."""

    pose_source: str = "refined"
    num_queries: int = 256  # per anchor keyframe
    anchors: int = 1  # anchor keyframes per window: the first, then evenly spaced
    # RANSAC / Huber threshold as a share of the model image width (tracks are in model pixels,
    # whose count depends on the model: 224 for the demo model, 518 for VGGT-1B).
    threshold: float = 0.02
    min_inliers: int = 12
    # A frame whose PnP explains fewer than this share of its visible tracks has lost them (the
    # demo model's track head does on a window's last frame): it is moved on at its neighbours'
    # velocity instead (0.3 / 0.5 / 0.6 / 0.7 measured on the demo sequence, docs/MODEL.md).
    min_inlier_share: float = 0.5
    depth_sigma: float = 0.05  # prior on each query's log-depth (the network's depth)
    prior_rot_deg: float = 180.0  # weak prior towards the camera head's rotations
    prior_trans: float = 100.0  # ... and translations, in units of the window's median depth
    max_iterations: int = 30
    conf_threshold: float = 1.0  # queries need at least this depth confidence
    # Constant-velocity prior of the bundle adjustment over consecutive solved frames: sigma
    # of the angular acceleration (deg/s^2) and of the camera centre's acceleration (window
    # median depths / s^2); 0 switches a part off. Moderate values for a mobile robot (at
    # 10 keyframes/s: 0.5 deg and 0.5 % of the depth per frame^2), weighed in full at the
    # nominal track noise and less for better tracks; measured in docs/MODEL.md.
    smooth_rot_deg_s2: float = 50.0
    smooth_centre_s2: float = 0.5
    # ... and of the centre's acceleration ALONG its direction of motion, a change of speed
    # (window median depths / s^2; 0: the same as across it): a vehicle's speed changes more
    # slowly than its direction (at 10 keyframes/s 0.125 % of the depth per frame^2).
    # The demo model's windows' step lengths scatter by 20-35 % (docs/MODEL.md).
    smooth_speed_s2: float = 0.125
    # Carry the constant-velocity prior across the seam: the previous window's frame before
    # this window's anchor joins the bundle adjustment as a fixed pose without observations
    # (measured in docs/MODEL.md).
    seam_prior: bool = True
    # Sigma (log) of the network's depth of each observing frame at the tracked pixel against
    # the point's depth in that camera, in the bundle adjustment (each frame's depth map on the
    # current estimate's scale: its shape counts, not its scale); 0 leaves the term out. The
    # network predicts depth for every frame, but only the anchor's lifted the points, so
    # nothing tied a point's distance along each observing ray (measured in docs/MODEL.md).
    frame_depth_sigma: float = 0.05

    def validate(self) -> None:
        checks = [
            ("pose_source", self.pose_source in POSE_SOURCES, f"one of {list(POSE_SOURCES)}"),
            ("num_queries", self.num_queries >= 8, ">= 8"),
            ("anchors", self.anchors >= 1, ">= 1"),
            ("threshold", 0 < self.threshold < 1, "in (0, 1)"),
            ("min_inliers", self.min_inliers >= 6, ">= 6"),
            ("min_inlier_share", 0 <= self.min_inlier_share < 1, "in [0, 1)"),
            ("depth_sigma", self.depth_sigma > 0, "> 0"),
            ("prior_rot_deg", self.prior_rot_deg > 0, "> 0"),
            ("prior_trans", self.prior_trans > 0, "> 0"),
            ("max_iterations", self.max_iterations >= 1, ">= 1"),
            ("smooth_rot_deg_s2", self.smooth_rot_deg_s2 >= 0, ">= 0"),
            ("smooth_centre_s2", self.smooth_centre_s2 >= 0, ">= 0"),
            ("smooth_speed_s2", self.smooth_speed_s2 >= 0, ">= 0"),
            ("frame_depth_sigma", self.frame_depth_sigma >= 0, ">= 0"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"PoseSolverConfig.{name} must be {rule}, got "
                                 f"{getattr(self, name)!r}")


@dataclass
class PoseSolution:
    cam_from_world: np.ndarray  # [S,4,4] the poses to use (per pose_source)
    solver_poses: np.ndarray  # [S,4,4] the track-based poses (head pose where unsolved)
    health: PoseHealth


@dataclass
class WindowTracks:
    """Tracked queries of one window, in model pixels of each frame."""

    anchor: np.ndarray  # [M] window index of each query's anchor frame
    query_uv: np.ndarray  # [M,2] model pixels on the anchor
    depth: np.ndarray  # [M] the anchor's network depth at the query
    uv: np.ndarray  # [S,M,2] model pixels per frame
    visible: np.ndarray  # [S,M] bool
    weight: np.ndarray  # [S,M] track confidence in [0.1, 1]
    anchors: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _SolvedWindow:
    """What the next window's seam prior needs from the previous one."""

    stamps_ns: list[int]
    poses: np.ndarray  # [S,4,4] the solved poses, window frame
    solved: np.ndarray  # [S] bool: from the tracks (not extrapolated, not the head's)
    depth: np.ndarray  # [S,h,w] window units
    depth_conf: np.ndarray  # [S,h,w]


def anchor_indices(num_frames: int, anchors: int) -> list[int]:
    """The first frame, then evenly spaced ones (never more than the frames)."""
    count = min(anchors, num_frames)
    return sorted({int(round(i * (num_frames - 1) / max(count - 1, 1))) for i in range(count)}
                  if count > 1 else {0})


def select_queries(image: np.ndarray, depth: np.ndarray, conf: np.ndarray,
                   box: tuple[int, int, int, int], count: int,
                   conf_threshold: float) -> np.ndarray:
    """[N<=count, 2] integer model pixels (x, y): per grid cell over ``box`` the most textured
    pixel with finite positive depth and confidence >= ``conf_threshold`` (2 px from the box
    edge, where the track head's correlation window would leave the image)."""
    x0, y0, x1, y1 = box
    x0, y0 = max(x0, 0) + 2, max(y0, 0) + 2
    x1, y1 = min(x1, depth.shape[1]) - 2, min(y1, depth.shape[0]) - 2
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 2))
    # The channels' mean, summed plane by plane: the same float32 values as
    # ``.mean(axis=2)`` (sums of three uint8 are exact), without its slow strided reduction.
    channels = np.asarray(image)
    grey = (channels[..., 0].astype(np.float32) + channels[..., 1] + channels[..., 2]) / 3
    texture = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    usable = np.isfinite(depth) & (depth > 0) & (conf >= conf_threshold)
    score = np.where(usable, texture + 1e-3, -1.0)[y0:y1, x0:x1]
    height, width = score.shape
    cols = max(1, int(round(math.sqrt(count * width / height))))
    rows = max(1, count // cols)
    return _cell_maxima(score, np.linspace(0, height, rows + 1).astype(int),
                        np.linspace(0, width, cols + 1).astype(int)) + (x0, y0)


def _cell_maxima(score: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """[N,2] float (x, y) of each grid cell's first maximum (``np.argmax``'s pick, row-major
    in the cell), cells in row-major order; empty cells and cells whose maximum is negative
    give none. Whole-image reductions instead of a Python loop over the cells (256 per anchor
    by default, most of the query selection's time)."""
    row_starts = np.unique(ys[:-1][ys[1:] > ys[:-1]])  # empty bands (repeated edges) dropped
    col_starts = np.unique(xs[:-1][xs[1:] > xs[:-1]])
    if not len(row_starts) or not len(col_starts):
        return np.zeros((0, 2))
    height, width = score.shape
    cell_max = np.maximum.reduceat(np.maximum.reduceat(score, row_starts, axis=0), col_starts,
                                   axis=1)
    heights = np.diff(np.append(row_starts, height))
    widths = np.diff(np.append(col_starts, width))
    at_max = score == np.repeat(np.repeat(cell_max, heights, axis=0), widths, axis=1)
    # the first maximum in row-major order within a cell is the smallest flat image index
    flat = np.where(at_max, np.arange(score.size).reshape(score.shape), score.size)
    first = np.minimum.reduceat(np.minimum.reduceat(flat, row_starts, axis=0), col_starts,
                                axis=1)[cell_max >= 0]
    return np.column_stack([first % width, first // width]).astype(np.float64)


def gather_tracks(prediction: WindowPrediction, frames: Sequence[Frame], track: TrackFn,
                  config: PoseSolverConfig) -> WindowTracks:
    """Queries on the anchor keyframes, tracked through the window (model pixels)."""
    num = len(frames)
    anchors = anchor_indices(num, config.anchors)
    per_anchor = max(8, config.num_queries)
    parts = []
    for a in anchors:
        mapping = prediction.mappings[a]
        # the anchor's own frame only: the mask is per pixel (no percentile)
        valid_conf = confidence_mask(prediction.depth_conf[a], config.conf_threshold, 0.0)
        conf = np.where(valid_conf, prediction.depth_conf[a], 0.0)
        query = select_queries(prediction.images[a], prediction.depth[a], conf, mapping.valid,
                               per_anchor, config.conf_threshold)
        if len(query) == 0:
            continue
        answer = track(frames, a, mapping.to_original(query))
        uv = np.stack([prediction.mappings[s].to_model(answer.tracks_uv[s]) for s in range(num)])
        visible = (np.asarray(answer.visibility) >= VISIBLE) & np.isfinite(uv).all(axis=2)
        visible[a] = True
        uv[a] = query  # the anchor's own observation is the query itself
        weight = np.clip(np.nan_to_num(np.asarray(answer.confidence, dtype=np.float64)), 0.1, 1.0)
        weight[a] = 1.0
        depth = prediction.depth[a][query[:, 1].astype(int), query[:, 0].astype(int)]
        parts.append((np.full(len(query), a), query, depth.astype(np.float64), uv, visible,
                      weight))
    if not parts:
        empty = np.zeros((num, 0))
        return WindowTracks(np.zeros(0, int), np.zeros((0, 2)), np.zeros(0),
                            np.zeros((num, 0, 2)), empty.astype(bool), empty, anchors)
    anchor, query, depth = (np.concatenate(p) for p in list(zip(*parts))[:3])
    uv, visible, weight = (np.concatenate(p, axis=1) for p in list(zip(*parts))[3:])
    return WindowTracks(anchor, query, depth, uv, visible, weight, anchors)


def _lift(tracks: WindowTracks, intrinsics: np.ndarray, poses: np.ndarray,
          depth: Optional[np.ndarray] = None) -> np.ndarray:
    """[M,3] world points of the queries from their anchors' depth, K and pose."""
    depth = tracks.depth if depth is None else depth
    k_inv = np.linalg.inv(intrinsics[tracks.anchor])
    rays = np.einsum("mij,mj->mi", k_inv, np.column_stack([tracks.query_uv,
                                                           np.ones(len(depth))]))
    cam = rays * depth[:, None]
    world_from_anchor = se3_inverse(poses[tracks.anchor])
    return np.einsum("mij,mj->mi", world_from_anchor[:, :3, :3], cam) + world_from_anchor[:, :3, 3]


def _frame_depths(prediction: WindowPrediction, tracks: WindowTracks,
                  conf_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """([S,M] log of each frame's network depth at its tracked pixel; [S,M] usable: visible,
    inside the image, the four neighbouring pixels' depths finite, positive and of confidence
    >= ``conf_threshold``, and within ``MAX_NEIGHBOUR_DEPTH_STEP`` of each other: across a
    depth edge no interpolation means anything). Interpolated bilinearly in INVERSE depth: on a
    plane the inverse depth is affine in the pixel, so the interpolation is exact there. The
    bundle adjustment ties each observed point's depth in the observing camera to it."""
    depth = np.asarray(prediction.depth)  # gathered below, not converted whole (13 MB at 518)
    conf = np.asarray(prediction.depth_conf)
    num, height, width = depth.shape
    uv = np.nan_to_num(tracks.uv, nan=-1.0)
    x, y = uv[..., 0], uv[..., 1]
    usable = tracks.visible & (x >= 0) & (y >= 0) & (x <= width - 1) & (y <= height - 1)
    x0 = np.clip(np.floor(x), 0, width - 2).astype(int)
    y0 = np.clip(np.floor(y), 0, height - 2).astype(int)
    fx, fy = np.clip(x - x0, 0, 1), np.clip(y - y0, 0, 1)
    frame = np.arange(num)[:, None]
    inverse = np.zeros_like(x)
    nearest = np.full_like(x, np.inf)
    farthest = np.zeros_like(x)
    for dy, dx, share in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)),
                          (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        corner = depth[frame, y0 + dy, x0 + dx].astype(np.float64)
        usable &= ((conf[frame, y0 + dy, x0 + dx] >= conf_threshold) & np.isfinite(corner)
                   & (corner > 0))
        corner = np.where(usable, corner, 1.0)
        inverse += share / corner
        nearest, farthest = np.minimum(nearest, corner), np.maximum(farthest, corner)
    usable &= farthest <= (1.0 + MAX_NEIGHBOUR_DEPTH_STEP) * nearest  # no depth edge inside
    return -np.log(np.where(usable, inverse, 1.0)), usable


def _on_current_scale(log_depth: np.ndarray, used: np.ndarray, poses: np.ndarray,
                      k: np.ndarray, tracks: WindowTracks, depth: np.ndarray) -> np.ndarray:
    """[S,M] the frames' log-depths, each frame's shifted by the median of (log z - log
    depth) over its ``used`` observations, z being the points' depth in that camera under the
    current ``poses`` and query ``depth``: each frame's depth map then lends the bundle
    adjustment its shape, not its scale. The demo model's depth maps of one window disagree
    in scale from frame to frame; tied to their own scales the term pulled the step lengths
    with them (docs/MODEL.md). With exact data the shifts are zero."""
    world = _lift(tracks, k, poses, depth)
    z = np.einsum("sj,mj->sm", poses[:, 2, :3], world) + poses[:, 2, 3:4]
    gap = np.where(used, np.log(np.maximum(z, 1e-12)) - log_depth, np.nan)
    with np.errstate(all="ignore"):
        shift = np.nanmedian(np.where(used.any(axis=1)[:, None], gap, 0.0), axis=1)
    return log_depth + shift[:, None]


def _pnp(points: np.ndarray, uv: np.ndarray, k: np.ndarray,
         threshold_px: float) -> tuple[Optional[np.ndarray], np.ndarray]:
    """(cam_from_world or None, inlier mask) from 3D-2D matches by RANSAC + LM refinement."""
    inliers = np.zeros(len(points), dtype=bool)
    if len(points) < 6:
        return None, inliers
    obj = np.ascontiguousarray(points, dtype=np.float64)
    img = np.ascontiguousarray(uv, dtype=np.float64)
    ok, rvec, tvec, idx = cv2.solvePnPRansac(
        obj, img, k, None, iterationsCount=200, reprojectionError=threshold_px,
        confidence=0.999, flags=cv2.SOLVEPNP_SQPNP)
    if not ok or idx is None or len(idx) < 6:
        return None, inliers
    inliers[idx.ravel()] = True
    rvec, tvec = cv2.solvePnPRefineLM(obj[inliers], img[inliers], k, None, rvec, tvec)
    pose = np.eye(4)
    pose[:3, :3] = cv2.Rodrigues(rvec)[0]
    pose[:3, 3] = tvec.ravel()
    err = np.linalg.norm(project_points(obj, pose, k)[0] - img, axis=1)
    inliers = np.nan_to_num(err, nan=np.inf) <= threshold_px
    return pose, inliers


def _median_motions(tracks: WindowTracks, anchor: int) -> np.ndarray:
    """[S] median distance (model pixels) the anchor's visible queries moved to each frame
    (0 on the anchor, nan where none is visible)."""
    moved = np.linalg.norm(tracks.uv - tracks.query_uv[None], axis=2)  # [S,M]
    mine = (tracks.anchor == anchor)[None] & tracks.visible
    out = np.array([np.median(moved[s, mine[s]]) if mine[s].any() else np.nan
                    for s in range(len(moved))])
    out[anchor] = 0.0
    return out


def _tracks_snapped_back(motion: np.ndarray, frame: int, anchor: int,
                         min_motion: float) -> bool:
    """The track head's way of losing a frame (docs/MODEL.md): its tracks fall back towards
    their queries, so the image motion from the anchor (``motion``, per frame) drops below half
    of what the two frames before it extrapolate to, and PnP then fits a pose near the
    anchor's. A camera would have to reverse sharply within one keyframe interval to do that."""
    step = 1 if frame > anchor else -1
    if abs(frame - anchor) < 2:
        return False
    expected = 2.0 * motion[frame - step] - motion[frame - 2 * step]
    # nan (False) when a frame has no visible track
    return bool(expected >= min_motion and motion[frame] < SNAP_BACK * expected)


def _extrapolate(poses: np.ndarray, solved: np.ndarray,
                 untrusted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(poses, extrapolated mask): each untrusted frame, in order, moved on from its two nearest
    known predecessors (or successors) at their constant velocity; a frame without two known
    neighbours on one side keeps its pose (the camera head's)."""
    poses, known = poses.copy(), solved.copy()
    extrapolated = np.zeros_like(solved)
    for s in np.flatnonzero(untrusted):
        for a, b in ((s - 1, s - 2), (s + 1, s + 2)):
            if 0 <= min(a, b) and max(a, b) < len(poses) and known[a] and known[b]:
                poses[s] = poses[a] @ se3_inverse(poses[b]) @ poses[a]
                known[s] = extrapolated[s] = True
                break
    return poses, extrapolated


def _rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles between rotations [...,3,3] in degrees."""
    rel = np.swapaxes(a, -1, -2) @ b
    cos = (np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


class PoseSolver:
    """Solves each window's poses from its tracks and depth (module docstring)."""

    def __init__(self, config: PoseSolverConfig) -> None:
        config.validate()
        self.config = config
        self._previous: Optional[_SolvedWindow] = None

    def solve(self, prediction: WindowPrediction, tracks: WindowTracks) -> PoseSolution:
        head = np.array(prediction.cam_from_world, dtype=np.float64)
        num = len(head)
        k = np.asarray(prediction.intrinsics, dtype=np.float64)
        width = prediction.depth.shape[2]
        threshold = self.config.threshold * width
        health = PoseHealth(pose_source=self.config.pose_source,
                            observations=int(tracks.visible.sum() - len(tracks.anchor)))
        poses, solved, extrapolated, inlier_ratio = self._initial_poses(head, k, tracks,
                                                                         threshold)
        health.solved_frames = int(solved.sum())
        health.extrapolated_frames = int(extrapolated.sum())
        health.fallback_frames = int(num - solved.sum() - extrapolated.sum())
        health.inlier_ratio = inlier_ratio
        depth = tracks.depth
        if self.config.pose_source == "refined" and solved.sum() >= 2:
            times = (np.asarray(prediction.stamps_ns, dtype=np.int64)
                     - int(prediction.stamps_ns[0])) * 1e-9
            ghost = self._seam_ghost(prediction, poses[0]) if self.config.seam_prior else None
            frame_depth = (_frame_depths(prediction, tracks, self.config.conf_threshold)
                           if self.config.frame_depth_sigma else None)
            poses, depth = self._bundle_adjust(poses, head, k, tracks, solved, threshold, times,
                                               ghost, frame_depth)
            poses, _ = _extrapolate(poses, solved, extrapolated)  # from the refined neighbours
        relative = lambda p: p @ se3_inverse(p[0])  # noqa: E731 - poses relative to frame 0
        health.disagreement_deg = float(_rotation_angle_deg(
            relative(poses)[solved, :3, :3], relative(head)[solved, :3, :3]).max(initial=0.0))
        chosen = head if self.config.pose_source == "camera_head" else poses
        self._motion_health(health, chosen, k, tracks,
                            depth if chosen is poses else tracks.depth)
        warnings = []
        if health.fallback_frames:
            warnings.append(f"{health.fallback_frames} of {num} frames kept the camera-head pose "
                            f"(fewer than {self.config.min_inliers} track inliers)")
        if health.extrapolated_frames:
            warnings.append(f"{health.extrapolated_frames} of {num} frames moved on at their "
                            f"neighbours' velocity (their tracks snapped back, or fewer than "
                            f"{self.config.min_inlier_share:.0%} of them agree)")
        if health.disagreement_deg > DISAGREEMENT_WARN_DEG:
            warnings.append(f"tracks and camera head disagree by "
                            f"{health.disagreement_deg:.1f} deg")
        health.degenerate = bool(health.track_motion_px >= MIN_TRACK_MOTION_PX
                                 and health.unexplained_motion > UNEXPLAINED_MOTION_WARN)
        if health.degenerate:
            warnings.append(f"the poses leave {health.unexplained_motion:.0%} of the tracked "
                            f"image motion ({health.track_motion_px:.1f} px) unexplained")
        health.warning = "; ".join(warnings)
        self._previous = _SolvedWindow(list(prediction.stamps_ns), poses.copy(), solved.copy(),
                                       np.asarray(prediction.depth),
                                       np.asarray(prediction.depth_conf))
        return PoseSolution(cam_from_world=chosen, solver_poses=poses, health=health)

    # ----------------------------------------------------------------------------- stages
    @staticmethod
    def _pnp_ahead(points: np.ndarray, k: np.ndarray, tracks: WindowTracks,
                   threshold: float) -> dict[int, Future]:
        """With one anchor every frame's PnP uses the same lifted points, so all of them can
        start at once: OpenCV releases the GIL, and on a many-core host the 7 RANSACs of a
        window run side by side instead of one after another. Same calls, same results (each
        RANSAC seeds its own generator)."""
        return {s: _PNP_THREADS.submit(_pnp, points[tracks.visible[s]],
                                       tracks.uv[s, tracks.visible[s]], k[s], threshold)
                for s in range(1, len(k))}

    def _initial_poses(self, head: np.ndarray, k: np.ndarray, tracks: WindowTracks,
                       threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """PnP per frame from the points of its NEAREST solved anchor, frames taken in order of
        that distance: tracks degrade with the motion they span, so each pose comes from the
        shortest tracks available. The first anchor keeps the head's pose of frame 0 (it
        defines the window's frame); other anchors are lifted with their solved poses."""
        num = len(head)
        poses = head.copy()
        solved = np.zeros(num, dtype=bool)
        solved[0] = True
        tried = solved.copy()
        untrusted = np.zeros(num, dtype=bool)  # tracks mostly disagree with their PnP pose
        unplaced = np.zeros(num, dtype=bool)  # too few tracks for a PnP pose at all
        used = inliers = 0
        anchors = np.unique(tracks.anchor)
        motion = {int(a): _median_motions(tracks, int(a)) for a in anchors}
        points = _lift(tracks, k, poses)  # re-lifted whenever another anchor gets its pose
        ahead = (self._pnp_ahead(points, k, tracks, threshold)
                 if anchors.tolist() == [0] else {})
        while True:
            ready = anchors[solved[anchors]]
            candidates = [(int(np.abs(ready - s).min()), s) for s in range(num) if not tried[s]]
            if not candidates or not len(ready):
                break
            _, s = min(candidates)
            tried[s] = True
            nearest = ready[np.abs(ready - s) == np.abs(ready - s).min()]
            if s not in anchors and _tracks_snapped_back(motion[int(nearest[0])], s,
                                                         int(nearest[0]), 2.0 * threshold):
                untrusted[s] = True
                continue
            obs = np.isin(tracks.anchor, nearest) & tracks.visible[s]
            pose, inl = (ahead[s].result() if s in ahead
                         else _pnp(points[obs], tracks.uv[s, obs], k[s], threshold))
            if pose is None or inl.sum() < self.config.min_inliers:
                unplaced[s] = s not in anchors
                continue
            used += int(obs.sum())
            inliers += int(inl.sum())
            if inl.sum() < self.config.min_inlier_share * obs.sum() and s not in anchors:
                untrusted[s] = True
                continue
            poses[s], solved[s] = pose, True
            if s in anchors:
                points = _lift(tracks, k, poses)
        if unplaced.any() and not _head_explains_tracks(head, k, tracks):
            untrusted |= unplaced  # a camera head that misses the motion is no fallback
        poses, extrapolated = _extrapolate(poses, solved, untrusted)
        return poses, solved, extrapolated, (inliers / used if used else float("nan"))

    def _seam_ghost(self, prediction: WindowPrediction,
                    anchor_pose: np.ndarray) -> Optional[tuple[np.ndarray, float]]:
        """The previous window's frame before this window's anchor, in this window's frame
        and units (the anchor's depth in both windows gives the scale), and its time from
        the anchor (negative); None where the previous window does not hold this anchor with
        a solved frame before it. The constant-velocity prior over (that frame, anchor, next)
        then carries the previous window's motion across the seam, where the chained
        trajectory's translation directions were worst (docs/MODEL.md)."""
        prev, anchor_stamp = self._previous, int(prediction.stamps_ns[0])
        if prev is None or anchor_stamp not in prev.stamps_ns:
            return None
        j = prev.stamps_ns.index(anchor_stamp)
        if j < 1 or not (prev.solved[j - 1] and prev.solved[j]):
            return None
        new_depth, old_depth = np.asarray(prediction.depth[0]), prev.depth[j]
        if new_depth.shape != old_depth.shape:
            return None
        threshold = self.config.conf_threshold
        valid = ((np.asarray(prediction.depth_conf[0]) >= threshold)
                 & (prev.depth_conf[j] >= threshold) & (new_depth > 0) & (old_depth > 0)
                 & np.isfinite(new_depth) & np.isfinite(old_depth))
        if valid.sum() < 16:
            return None
        scale = float(np.median(new_depth[valid] / old_depth[valid]))
        relative = prev.poses[j - 1] @ se3_inverse(prev.poses[j])  # ghost_from_anchor
        relative[:3, 3] *= scale
        seconds = (int(prev.stamps_ns[j - 1]) - anchor_stamp) * 1e-9
        if not (np.isfinite(scale) and scale > 0 and seconds < 0):
            return None
        return relative @ anchor_pose, seconds

    def _bundle_adjust(self, poses: np.ndarray, head: np.ndarray, k: np.ndarray,
                       tracks: WindowTracks, solved: np.ndarray, threshold: float,
                       times: np.ndarray, ghost: Optional[tuple[np.ndarray, float]] = None,
                       frame_depth: Optional[tuple[np.ndarray, np.ndarray]] = None,
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Jointly refine the solved poses (frame 0 fixed) and the queries' depths over the PnP
        inliers, then once more with every observation the refined geometry explains within
        the threshold (a track PnP rejected for one frame can still fit the joint solution)."""
        frame = np.arange(len(poses))[:, None]
        mask = (tracks.visible & (frame != tracks.anchor[None]) & solved[:, None]
                & solved[tracks.anchor][None])
        depth = tracks.depth
        before = _reprojection_errors(poses, k, tracks, depth)
        mask &= before <= threshold  # start from the PnP inliers
        if mask.sum() < 6:
            return poses, depth
        start = float(np.median(before[mask]))
        # The tracks' noise, measured on the inliers (the median of a 2D Gaussian error is
        # 1.18 sigma), whitens the reprojection residuals, so the priors weigh in only as far
        # as the tracks are uncertain: exact tracks give exact poses. Inflated (the track
        # head's errors are correlated within a frame, docs/MODEL.md) and capped at the
        # RANSAC threshold's nominal sigma.
        sigma_px = float(np.clip(TRACK_NOISE_INFLATION * start / 1.18, MIN_TRACK_SIGMA_PX,
                                 threshold / 2.0))
        # The frames' depth and the constant-velocity prior weigh as configured at the nominal
        # sigma (the demo model's tracks), and by the square of the measured sigma's share of
        # it below: better tracks leave them less to say, and exact tracks stay exact (to 1e-6
        # of the path across differently cut windows) although the interpolated depth is not
        # exact everywhere (up to ~1 % where two planes meet in the ground-truth double) and
        # exact motion is not of constant velocity.
        trust = (sigma_px / (threshold / 2.0)) ** 2
        if frame_depth is not None:
            frame_depth = (frame_depth[0],
                           np.where(frame_depth[1], trust / self.config.frame_depth_sigma, 0.0))
        adjusted, new_depth = poses, depth
        for _ in range(2):
            adjusted, new_depth = self._adjust(adjusted, new_depth, head, k, tracks, solved, mask,
                                               sigma_px, times, ghost, frame_depth, trust)
            errors = _reprojection_errors(adjusted, k, tracks, new_depth)
            grown = mask | (tracks.visible & (errors <= threshold) & (frame != tracks.anchor[None])
                            & solved[:, None] & solved[tracks.anchor][None])
            if grown.sum() < 6 or (grown == mask).all():
                break
            mask = grown
        # The joint fit trades a little per-frame reprojection error for consistency across
        # frames and with the network's depth; a fit that doubles it has diverged (a bad start,
        # a degenerate window): keep the PnP poses then.
        if not float(np.median(errors[mask])) <= max(2.0 * start, 0.25 * threshold):
            return poses, depth
        return adjusted, new_depth

    def _adjust(self, poses: np.ndarray, depth: np.ndarray, head: np.ndarray, k: np.ndarray,
                tracks: WindowTracks, solved: np.ndarray, mask: np.ndarray, sigma_px: float,
                times: np.ndarray, ghost: Optional[tuple[np.ndarray, float]] = None,
                frame_depth: Optional[tuple[np.ndarray, np.ndarray]] = None,
                smooth_trust: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """One Levenberg-Marquardt solve over the observations in ``mask``
        (vggt_ros.pipeline.bundle_adjustment), residuals whitened by ``sigma_px``. A ``ghost``
        (pose, seconds) is put before frame 0 as a fixed frame without observations: it only
        takes part in the constant-velocity prior, whose whitening weights ``smooth_trust``
        scales. ``frame_depth`` ([S,M] frames' log-depth at the tracks, [S,M] its whitening
        weight) adds the frames' depth term."""
        cfg = self.config
        rays = np.einsum("mij,mj->mi", np.linalg.inv(k[tracks.anchor]),
                         np.column_stack([tracks.query_uv, np.ones(len(tracks.anchor))]))
        target = np.nan_to_num(tracks.uv)
        weight = np.where(mask, np.sqrt(tracks.weight) / sigma_px, 0.0)
        depth_target = depth_weight = None
        if frame_depth is not None:
            depth_weight = np.where(mask, frame_depth[1], 0.0)
            depth_target = _on_current_scale(frame_depth[0], depth_weight > 0, poses, k, tracks,
                                             depth)
        g = 0 if ghost is None else 1
        if g:
            pad = lambda a, first: np.concatenate([first[None], a])  # noqa: E731
            poses, head, k = pad(poses, ghost[0]), pad(head, ghost[0]), pad(k, k[0])
            target, weight = pad(target, target[0] * 0.0), pad(weight, weight[0] * 0.0)
            times, solved = pad(times, np.float64(ghost[1])), pad(solved, np.bool_(True))
            if frame_depth is not None:
                depth_target = pad(depth_target, depth_target[0] * 0.0)
                depth_weight = pad(depth_weight, depth_weight[0] * 0.0)
        scene_depth = float(np.median(tracks.depth))
        smooth_centre = (smooth_trust / (cfg.smooth_centre_s2 * scene_depth)
                         if cfg.smooth_centre_s2 else 0.0)
        centre_whitening = (_centre_whitening(poses, smooth_centre,
                                              cfg.smooth_centre_s2 / cfg.smooth_speed_s2)
                            if cfg.smooth_centre_s2 and cfg.smooth_speed_s2 else None)
        problem = AdjustmentProblem(
            k=k, rays=rays, anchor=tracks.anchor + g, net_depth=tracks.depth,
            target=target, weight=weight, head=head,
            # the window's frame 0 (and a ghost) stays: it defines the window frame
            free=np.flatnonzero(solved[g + 1:]) + g + 1,
            prior_rot=1.0 / math.radians(cfg.prior_rot_deg),
            prior_trans=1.0 / (cfg.prior_trans * scene_depth),
            depth_sigma=cfg.depth_sigma, huber=HUBER_SCALE, max_depth_change=MAX_DEPTH_CHANGE,
            smooth_rot=(smooth_trust / math.radians(cfg.smooth_rot_deg_s2)
                        if cfg.smooth_rot_deg_s2 else 0.0),
            smooth_centre=smooth_centre, centre_whitening=centre_whitening,
            smooth_frames=solved, times=times, frame_log_depth=depth_target,
            frame_depth_weight=depth_weight)
        adjusted, new_depth = adjust(problem, poses, depth, cfg.max_iterations)
        adjusted, poses = adjusted[g:], poses[g:]
        if not (np.all(np.isfinite(adjusted)) and np.all(np.isfinite(new_depth))):
            return poses, depth
        return adjusted, new_depth

    def _motion_health(self, health: PoseHealth, poses: np.ndarray, k: np.ndarray,
                       tracks: WindowTracks, depth: np.ndarray) -> None:
        """How far the tracked pixels moved from their anchors, and how much of that the
        poses reproduce (median reprojection error of every visible observation)."""
        health.reprojection_px, health.track_motion_px = _motion_fit(poses, k, tracks, depth)
        if health.track_motion_px > 0:
            health.unexplained_motion = health.reprojection_px / health.track_motion_px


def _centre_whitening(poses: np.ndarray, across: float, ratio: float) -> np.ndarray:
    """[S,3,3] whitening of each frame's centre acceleration: ``across`` times the identity,
    ``ratio`` times that along the frame's direction of motion (its neighbours' centres in
    ``poses``, the solve's start; a frame at either end or not moving gets the identity)."""
    centres = se3_inverse(poses)[:, :3, 3]
    along = np.zeros_like(centres)
    along[1:-1] = centres[2:] - centres[:-2]
    norm = np.linalg.norm(along, axis=1, keepdims=True)
    along = np.divide(along, norm, out=np.zeros_like(along), where=norm > 0)
    outer = along[:, :, None] * along[:, None, :]
    return across * (np.eye(3)[None] + (ratio - 1.0) * outer)


def _motion_fit(poses: np.ndarray, k: np.ndarray, tracks: WindowTracks,
                depth: np.ndarray) -> tuple[float, float]:
    """(median reprojection error, median tracked motion) in pixels over every visible
    observation away from its anchor (nan, nan without one)."""
    observed = tracks.visible & (np.arange(len(poses))[:, None] != tracks.anchor[None])
    if not observed.any():
        return float("nan"), float("nan")
    errors = _reprojection_errors(poses, k, tracks, depth)[observed]
    moved = np.linalg.norm(tracks.uv - tracks.query_uv[None], axis=2)[observed]
    return float(np.median(errors)), float(np.median(moved))


def _head_explains_tracks(head: np.ndarray, k: np.ndarray, tracks: WindowTracks) -> bool:
    """Whether the camera head's poses reproduce the window's tracked motion (the same test
    that flags a degenerate window): only then is the head a fallback for a frame the tracks
    cannot place. The demo model's head, which never learned motion, is not (docs/MODEL.md)."""
    reprojection, moved = _motion_fit(head, k, tracks, tracks.depth)
    return not (moved >= MIN_TRACK_MOTION_PX and reprojection > UNEXPLAINED_MOTION_WARN * moved)


def _reprojection_errors(poses: np.ndarray, k: np.ndarray, tracks: WindowTracks,
                         depth: np.ndarray) -> np.ndarray:
    """[S,M] pixel distance between each query's point reprojected into each frame and its
    track there (inf behind the camera)."""
    world = _lift(tracks, k, poses, depth)
    cam = np.einsum("sij,mj->smi", poses[:, :3, :3], world) + poses[:, None, :3, 3]
    pix = np.einsum("sij,smj->smi", k, cam)
    in_front = cam[..., 2] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        errors = np.linalg.norm(pix[..., :2] / pix[..., 2:3] - tracks.uv, axis=2)
    return np.where(in_front, np.nan_to_num(errors, nan=np.inf), np.inf)
