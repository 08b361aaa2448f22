"""Places each window's prediction into one odom frame (VGGT-Long style chaining).

The first window defines odom: its frame 0 is the origin and its scale is 1 (or the configured
metric scale, or the first metric measurement). Every later window is aligned to the PREVIOUS window by a Sim(3) ``S`` that maps
new-window coordinates into previous-window coordinates, and placed by composition
``odom_from_new = odom_from_prev @ S``. Estimates for ``S``, tried in order:

1. ``points``: the overlapping keyframes' dense Depth+Cam points (the same pixels in both
   windows, each unprojected with its own window's poses), pixels confident in both windows
   (absolute threshold and VGGT-Long's ``0.1 * min(median conf)``), weights
   ``sqrt(c1 * c2)``, IRLS-Huber. This is the recipe whose ablation VGGT-Long reports (conf
   weights and IRLS each cut KITTI ATE by 25-30 %). VGGT-Long's delta (0.1) is in chunk units,
   which VGGT normalises to about unit scene size; here ``huber_delta`` is taken relative to the
   overlap's median depth so that it means the same in every window, whatever its scale.
   With ``pose_seams`` (the pipeline's choice whenever the pose solver's poses are used) the
   points give only the scale; the rotation and translation are those of the overlap keyframes'
   own poses (as in ``centres``, at that scale), and the scale is fitted under that very motion
   (``robust_scale``: the same weights and IRLS-Huber, one closed-form parameter, on a grid of
   about ``SCALE_FIT_SAMPLES`` pixels). Two windows' depth of the same keyframe differ
   in shape as well as scale, and a point fit turns that into a rotation of the next window
   (demo model, window 5 / overlap 2: an RMSE of 1.7-4.8 deg per seam against 1.3-4.0 deg from
   the solved poses, docs/MODEL.md). The camera head's poses keep VGGT-Long's full point fit.
2. ``centres``: the overlap cameras: rotation = chordal mean of the relative orientations, scale
   = ratio of the centres' spreads, translation from their centroids. Needs two or more centres
   at least 1 % of the scene depth apart; otherwise scale is unobservable (static camera).
3. ``previous_scale``: the previous window's scale carried through the first shared keyframe:
   relative scale = median over pixels of depth_prev / depth_new of that frame (any confidence;
   1.0 if no pixel has valid depth in both), rotation and translation from that frame's poses.
   Carrying it through the shared depth (rather than reusing the number) keeps it right when
   consecutive windows are normalised differently, as VGGT's are.

A scale-jump guard rejects a ``points`` or ``centres`` estimate whose relative scale differs
from the carried reference of (3) by more than ``max_scale_jump``; rejection falls through to the
next estimate. Every fallback sets ``ChainingStatus.method`` and explains itself in ``warning``.

Metric scale: with a measured scale source (a depth sensor, the robot's odometry) the Sim(3)
chosen above is only the prediction. ``ScaleFilter`` fuses its relative scale with the window's
measurement (``pipeline/scale_filter.py``), and the transform is rescaled to the filtered scale
about the first shared keyframe's camera centre, so the trajectory stays continuous there.

A keyframe seen in several windows keeps ONE pose and one depth map: those of its first
placement. Re-placing it would make published TF jump backwards in time and would double its
points in the map; its later observations still serve as chaining correspondences.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

from vggt_ros.geometry.camera import (se3_inverse, to_homogeneous, unproject_depth,
                                     unproject_flat_to_camera)
from vggt_ros.geometry.sim3 import (Sim3Error, confidence_weights, robust_scale,
                                    robust_sim3, rotation_mean, sim3_matrix)
from vggt_ros.pipeline.covariance import chaining_quality
from vggt_ros.pipeline.map_fusion import confidence_mask
from vggt_ros.pipeline.scale_filter import ScaleFilter, unfiltered_status
from vggt_ros.pipeline.types import (ChainingStatus, Frame, KeyframeResult, ScaleMeasurement,
                                     ScaleStatus, WindowPrediction, WindowResult)

MIN_BASELINE_RATIO = 0.01  # centre spread / median depth below which scale is unobservable
LOW_INLIER_RATIO = 0.5  # a points fit with fewer inliers than this is accepted with a warning
# Overlap pixels the Sim(3) fit samples, on a regular grid (518x392 frames give ~200k per
# shared keyframe). 7 parameters from ~20k weighted points: the fit's error is bound by the
# predictions' own errors long before this many points (docs/PERFORMANCE.md, issue 17).
FIT_SAMPLES = 20_000
# With pose seams the points give one parameter, the scale (a ratio of depths): its standard
# error from n weighted points falls as 1/sqrt(n), so a few thousand pin it far below the
# depth's own bias between windows (measured with the ground-truth double, docs/PERFORMANCE.md).
SCALE_FIT_SAMPLES = 4_000
RELATIVE_CONF = 0.1  # VGGT-Long: mask below 0.1 * min(median confidence)


@dataclass(frozen=True)
class _Placed:
    """A placed window: what the next window is aligned to."""

    prediction: WindowPrediction
    odom_from_window: np.ndarray  # 4x4 Sim(3)
    scale: float  # odom units per window unit


@dataclass(frozen=True)
class WindowPixels:
    """What placing a window takes from its depth alone, before its poses are final: which
    pixels are valid and confident (``keep``, every frame), which keyframes are new (``rows``)
    and the map points of those, in their own cameras (an even subsample of their confident
    pixels, at most ``max_window_points``; ``counts`` per new keyframe, in ``rows`` order).

    Split from ``Chainer.place`` so that the pipeline can compute it beside the pose solver's
    track request (the GPU busy, the CPU idle): then placing the window only moves these points
    by one Sim(3) per keyframe.
    """

    stamps_ns: tuple[int, ...]
    keep: np.ndarray  # [S,h,w] bool
    rows: tuple[int, ...]
    counts: tuple[int, ...]
    camera_points: np.ndarray  # [N,3] float64
    colors: np.ndarray  # [N,3] uint8


@dataclass(frozen=True)
class _Estimate:
    method: str
    transform: np.ndarray  # 4x4 Sim(3): previous-window coords from new-window coords
    scale: float
    residual: float = float("nan")  # previous-window units
    inlier_ratio: float = float("nan")
    num_points: int = 0


def check_prediction(prediction: WindowPrediction, frames: Sequence[Frame]) -> None:
    """Raise ValueError naming the field if a predictor's output does not fit the contract."""
    num = len(frames)
    if list(prediction.stamps_ns) != [f.stamp_ns for f in frames]:
        raise ValueError("prediction.stamps_ns do not match the window's frames")
    depth = np.asarray(prediction.depth)
    if depth.ndim != 3 or depth.shape[0] != num or min(depth.shape) == 0:
        raise ValueError(f"prediction.depth must be [{num},h,w], got {depth.shape}")
    checks = {
        "cam_from_world": (np.shape(prediction.cam_from_world), [(num, 4, 4), (num, 3, 4)]),
        "intrinsics": (np.shape(prediction.intrinsics), [(num, 3, 3)]),
        "depth_conf": (np.shape(prediction.depth_conf), [depth.shape]),
        "images": (np.shape(prediction.images), [depth.shape + (3,)]),
    }
    for name, (shape, allowed) in checks.items():
        if shape not in allowed:
            raise ValueError(f"prediction.{name} must have shape {allowed[0]}, got {shape}")
    if len(prediction.mappings) != num:
        raise ValueError(f"prediction.mappings must have {num} entries, got "
                         f"{len(prediction.mappings)}")
    if not np.isfinite(prediction.cam_from_world).all() or not np.isfinite(
            prediction.intrinsics).all():
        raise ValueError("prediction poses or intrinsics contain NaN or inf")


def window_valid_mask(prediction: WindowPrediction,
                      rows: Optional[Sequence[int]] = None, step: int = 1) -> np.ndarray:
    """[S,h,w] pixels with finite positive depth inside the real (unpadded) image content
    (only the frames ``rows``, in that order, when given; only every ``step``-th row and column,
    i.e. ``[:, ::step, ::step]`` of the full mask, computed on those pixels alone)."""
    rows = range(len(prediction.mappings)) if rows is None else rows
    depth = np.asarray(prediction.depth)[list(rows), ::step, ::step]
    valid = np.isfinite(depth) & (depth > 0)
    inside = np.zeros_like(valid)
    first = lambda start: -(-max(start, 0) // step)  # noqa: E731 - first grid index >= start
    for i, s in enumerate(rows):  # per frame, a box slice (no pixel loop)
        x0, y0, x1, y1 = prediction.mappings[s].valid
        inside[i, first(y0):first(y1), first(x0):first(x1)] = True
    return valid & inside


def _grid_stride(pixels: int, samples: int) -> int:
    """Pixel step of a regular grid that keeps about ``samples`` of ``pixels``."""
    return max(1, int(np.sqrt(pixels / samples)))


def odom_from_cameras(odom_from_window: np.ndarray, cam_from_world: np.ndarray) -> np.ndarray:
    """[S,4,4] rigid camera poses in odom from a window Sim(3) and the window's poses
    (the Sim(3)'s scale moves the centres but must not scale the rotations)."""
    scale = np.cbrt(np.linalg.det(odom_from_window[:3, :3]))
    out = odom_from_window @ se3_inverse(cam_from_world)
    out[:, :3, :3] /= scale
    return out


class Chainer:
    """Turns successive WindowPredictions into odom-frame WindowResults (module docstring)."""

    def __init__(self, conf_threshold: float = 1.0, conf_percentile: float = 20.0,
                 metric_scale: float = 0.0, huber_delta: float = 0.1, irls_iters: int = 5,
                 max_scale_jump: float = 3.0, max_window_points: int = 200_000,
                 min_fit_points: int = 100, scale_filter: Optional[ScaleFilter] = None,
                 pose_seams: bool = False) -> None:
        if max_scale_jump <= 1.0:
            raise ValueError(f"max_scale_jump must be > 1, got {max_scale_jump}")
        self.conf_threshold = conf_threshold
        self.conf_percentile = conf_percentile
        self.metric_scale = metric_scale
        self.huber_delta = huber_delta
        self.irls_iters = irls_iters
        self.max_scale_jump = max_scale_jump
        self.max_window_points = max_window_points
        self.min_fit_points = min_fit_points
        self.scale_filter = scale_filter  # None: the scale is metric_scale's, chained
        # the points' fit gives only the scale, the overlap keyframes' poses the rest (module
        # docstring, 1.): for poses the pose solver fitted to the tracks
        self.pose_seams = pose_seams
        self.windows_placed = 0
        self._reset_reason = ""
        self._prev: Optional[_Placed] = None
        self._keyframes: dict[int, KeyframeResult] = {}

    def reset(self, reason: str) -> None:
        """Start a new odom frame with the next window (reported as method ``reset``)."""
        self._prev = None
        self._keyframes = {}
        self._reset_reason = reason

    def keyframes(self) -> dict[int, KeyframeResult]:
        """First placements of the last window's keyframes, by stamp (a fresh dict)."""
        return dict(self._keyframes)

    def pixels(self, prediction: WindowPrediction, frames: Sequence[Frame]) -> WindowPixels:
        """The part of placing a window that its poses do not change (see ``WindowPixels``):
        call it once the previous window is placed and the depth and intrinsics are final."""
        check_prediction(prediction, frames)
        valid = window_valid_mask(prediction)
        keep = confidence_mask(prediction.depth_conf, self.conf_threshold, self.conf_percentile,
                               valid)
        rows = tuple(s for s, frame in enumerate(frames) if frame.stamp_ns not in self._keyframes)
        picked = np.flatnonzero(keep[list(rows)])  # the new keyframes' confident pixels
        if len(picked) > self.max_window_points:  # an even subsample of them
            picked = picked[np.linspace(0, len(picked) - 1, self.max_window_points).astype(int)]
        # their flat indices in the whole window: row i of the new keyframes is frame rows[i]
        size = keep[0].size
        row, pixel = np.divmod(picked, size)
        flat = np.asarray(rows, dtype=np.int64)[row] * size + pixel
        camera_points = unproject_flat_to_camera(prediction.depth, prediction.intrinsics, flat)
        images = np.asarray(prediction.images)
        colors = images.reshape(-1, images.shape[-1])[flat].astype(np.uint8)
        return WindowPixels(stamps_ns=tuple(f.stamp_ns for f in frames), keep=keep, rows=rows,
                            counts=tuple(int(c) for c in np.bincount(row, minlength=len(rows))),
                            camera_points=camera_points, colors=colors)

    def place(self, prediction: WindowPrediction, frames: Sequence[Frame], index: int = 0,
              measurement: ScaleMeasurement = ScaleMeasurement(reason="not measured"),
              pixels: Optional[WindowPixels] = None) -> WindowResult:
        """Place one window; ``frames`` are the keyframes it was predicted from, in order;
        ``measurement`` is its metric scale for the scale filter (ignored without one);
        ``pixels`` is this window's ``pixels()`` if the caller computed it beforehand."""
        check_prediction(prediction, frames)
        if pixels is None:
            pixels = self.pixels(prediction, frames)
        elif pixels.stamps_ns != tuple(f.stamp_ns for f in frames):
            raise ValueError("pixels were computed for another window")
        cam_from_world = to_homogeneous(prediction.cam_from_world)
        prediction = replace(prediction, cam_from_world=cam_from_world)
        if self._prev is None:
            status, odom_from_window, scale, scale_status = self._first(measurement)
        else:
            status, odom_from_window, scale, scale_status = self._chain(prediction, measurement)

        odom_from_cam = odom_from_cameras(odom_from_window, cam_from_world)
        previous = self._keyframes
        placed = {}
        for s, frame in enumerate(frames):
            placed[frame.stamp_ns] = (self._keyframe(prediction, frame, s, odom_from_cam[s],
                                                     scale, pixels.keep[s])
                                      if s in pixels.rows else previous[frame.stamp_ns])
        self._keyframes = placed
        self._prev = _Placed(prediction, odom_from_window, scale)
        self.windows_placed += 1
        return WindowResult(index=index, stamps_ns=[f.stamp_ns for f in frames],
                            new_keyframes=[placed[frames[s].stamp_ns] for s in pixels.rows],
                            points=_odom_points(pixels, odom_from_window, cam_from_world),
                            colors=pixels.colors, chaining=status, scale=scale_status)

    def _first(self, measurement: ScaleMeasurement
               ) -> tuple[ChainingStatus, np.ndarray, float, ScaleStatus]:
        if self.scale_filter is not None:
            scale_status = self.scale_filter.first(measurement)
        else:
            scale_status = unfiltered_status("fixed" if self.metric_scale > 0 else "none",
                                             self.metric_scale if self.metric_scale > 0 else 1.0)
        scale = scale_status.scale
        if self.windows_placed == 0 or not self._reset_reason:
            status = ChainingStatus(method="first", scale=scale)
        else:
            status = ChainingStatus(method="reset", scale=scale,
                                    warning=f"odom restarted: {self._reset_reason}")
        return status, sim3_matrix(scale, np.eye(3), np.zeros(3)), scale, scale_status

    def _chain(self, prediction: WindowPrediction, measurement: ScaleMeasurement
               ) -> tuple[ChainingStatus, np.ndarray, float, ScaleStatus]:
        prev = self._prev
        shared = [s for s in prediction.stamps_ns if s in prev.prediction.stamps_ns]
        if not shared:
            raise ValueError("window shares no keyframe with the previous window: cannot chain")
        ia = [prev.prediction.stamps_ns.index(s) for s in shared]
        ib = [prediction.stamps_ns.index(s) for s in shared]
        reference = _depth_ratio(prev.prediction, ia[0], prediction, ib[0])
        warnings = []
        estimate = None
        for method, attempt in (("points", self._fit_points), ("centres", self._fit_centres)):
            try:
                candidate = attempt(prev.prediction, ia, prediction, ib)
            except Sim3Error as err:
                warnings.append(f"{method}: {err}")
                continue
            ratio = candidate.scale / reference
            if max(ratio, 1.0 / ratio) > self.max_scale_jump:
                warnings.append(f"{candidate.method}: scale {candidate.scale:.4g} jumps by more "
                                f"than {self.max_scale_jump:g}x from the shared-depth "
                                f"reference {reference:.4g}")
                continue
            estimate = candidate
            break
        if estimate is None:
            estimate = _previous_scale(prev.prediction, ia[0], prediction, ib[0], reference)
        elif estimate.method == "points" and estimate.inlier_ratio < LOW_INLIER_RATIO:
            warnings.append(f"points: low inlier ratio {estimate.inlier_ratio:.2f}")
        transform = estimate.transform
        if self.scale_filter is not None:
            scale_status = self.scale_filter.next(
                estimate.scale, measurement,
                chaining_quality(estimate.method, estimate.inlier_ratio))
            scale = scale_status.scale
            pivot = se3_inverse(prev.prediction.cam_from_world[ia[0]])[:3, 3]
            transform = _rescaled(transform, scale / (prev.scale * estimate.scale), pivot)
        else:
            scale = prev.scale * estimate.scale
            scale_status = unfiltered_status("fixed" if self.metric_scale > 0 else "none", scale)
        status = ChainingStatus(method=estimate.method, scale=scale,
                                residual=estimate.residual * prev.scale,
                                inlier_ratio=estimate.inlier_ratio,
                                num_points=estimate.num_points, warning="; ".join(warnings))
        return status, prev.odom_from_window @ transform, scale, scale_status

    def _fit_points(self, prev: WindowPrediction, ia: list[int], new: WindowPrediction,
                    ib: list[int]) -> _Estimate:
        if prev.depth.shape[1:] != new.depth.shape[1:]:
            raise Sim3Error(f"depth sizes differ ({prev.depth.shape[1:]} vs "
                            f"{new.depth.shape[1:]}): no pixel correspondence")
        # Every test runs on a regular pixel grid of about FIT_SAMPLES overlap pixels only
        # (SCALE_FIT_SAMPLES when the points give only the scale).
        samples = SCALE_FIT_SAMPLES if self.pose_seams else FIT_SAMPLES
        step = _grid_stride(len(ia) * prev.depth[0].size, samples)
        grid = (slice(None), slice(None, None, step), slice(None, None, step))
        conf_a = np.asarray(prev.depth_conf)[ia, ::step, ::step].astype(np.float64)
        conf_b = np.asarray(new.depth_conf)[ib, ::step, ::step].astype(np.float64)
        weights, mask = confidence_weights(conf_a, conf_b, RELATIVE_CONF)
        mask &= (conf_a >= self.conf_threshold) & (conf_b >= self.conf_threshold)
        mask &= window_valid_mask(prev, ia, step) & window_valid_mask(new, ib, step)
        count = int(mask.sum())
        if count < self.min_fit_points:
            raise Sim3Error(f"only {count} confident overlap pixels (need {self.min_fit_points})")
        pixels = np.zeros((len(ia),) + prev.depth.shape[1:], dtype=bool)
        pixels[grid] = mask  # the grid's pixels in full-frame coordinates, same order
        dst = unproject_depth(prev.depth[ia], prev.cam_from_world[ia], prev.intrinsics[ia],
                              pixels)
        src = unproject_depth(new.depth[ib], new.cam_from_world[ib], new.intrinsics[ib], pixels)
        # Huber delta relative to the overlap's median depth: window units are arbitrary.
        delta = self.huber_delta * float(np.median(prev.depth[ia][pixels]))
        if self.pose_seams:
            # The seam's motion is the overlap keyframes' own (``_overlap_motion``): dst ≈
            # centre_a + s R (src - centre_b), so only s is fitted, on those very residuals.
            rotation, centre_a, centre_b = _overlap_rotation(prev, ia, new, ib)
            fit = robust_scale((src - centre_b) @ rotation.T, dst - centre_a, weights[mask],
                               delta, self.irls_iters)
            transform = sim3_matrix(fit.scale, rotation, centre_a - fit.scale * rotation
                                    @ centre_b)
        else:
            fit = robust_sim3(src, dst, weights[mask], delta, self.irls_iters)
            transform = fit.matrix()
        return _Estimate("points", transform, fit.scale, fit.residual, fit.inlier_ratio,
                         fit.num_points)

    def _fit_centres(self, prev: WindowPrediction, ia: list[int], new: WindowPrediction,
                     ib: list[int]) -> _Estimate:
        if len(ia) < 2:
            raise Sim3Error("one shared keyframe: centres cannot give a scale")
        pose_a = se3_inverse(prev.cam_from_world[ia])
        pose_b = se3_inverse(new.cam_from_world[ib])
        centre_a, centre_b = pose_a[:, :3, 3], pose_b[:, :3, 3]
        spread_a = np.sqrt(np.sum((centre_a - centre_a.mean(0)) ** 2))
        spread_b = np.sqrt(np.sum((centre_b - centre_b.mean(0)) ** 2))
        depth_a = _median_depth(prev, ia)
        depth_b = _median_depth(new, ib)
        if not (spread_a >= MIN_BASELINE_RATIO * depth_a and spread_b >= MIN_BASELINE_RATIO
                * depth_b):
            raise Sim3Error(f"overlap cameras barely moved (baseline below "
                            f"{MIN_BASELINE_RATIO:.0%} of the scene depth)")
        scale = float(spread_a / spread_b)
        rotation, translation, residual = _overlap_motion(prev, ia, new, ib, scale)
        return _Estimate("centres", sim3_matrix(scale, rotation, translation), scale, residual,
                         num_points=len(ia))

    def _keyframe(self, prediction: WindowPrediction, frame: Frame, s: int,
                  odom_from_cam: np.ndarray, scale: float, keep: np.ndarray) -> KeyframeResult:
        depth = np.where(keep, prediction.depth[s] * scale, np.nan).astype(np.float32)
        k_model = np.array(prediction.intrinsics[s], dtype=np.float64)
        mapping = prediction.mappings[s]
        return KeyframeResult(
            stamp_ns=frame.stamp_ns, frame_id=frame.frame_id, odom_from_cam=odom_from_cam,
            depth=depth, confidence=np.asarray(prediction.depth_conf[s], dtype=np.float32),
            intrinsics=k_model, image=prediction.images[s], mapping=mapping,
            intrinsics_original=mapping.intrinsics_to_original(k_model))

def _odom_points(pixels: WindowPixels, odom_from_window: np.ndarray,
                 cam_from_world: np.ndarray) -> np.ndarray:
    """[N,3] float32: the window's map points moved from their cameras into odom, one
    ``odom <- window <- camera`` Sim(3) per new keyframe."""
    out = np.empty((len(pixels.camera_points), 3), dtype=np.float32)
    world_from_cam = se3_inverse(cam_from_world)
    start = 0
    for row, count in zip(pixels.rows, pixels.counts):
        odom_from_cam = odom_from_window @ world_from_cam[row]
        part = pixels.camera_points[start:start + count]
        out[start:start + count] = part @ odom_from_cam[:3, :3].T + odom_from_cam[:3, 3]
        start += count
    return out


def _overlap_rotation(prev: WindowPrediction, ia: list[int], new: WindowPrediction,
                      ib: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rotation, centroid in ``prev``, centroid in ``new``) of the shared keyframes' cameras:
    the rotation is the chordal mean of their relative orientations."""
    pose_a = se3_inverse(prev.cam_from_world[ia])
    pose_b = se3_inverse(new.cam_from_world[ib])
    rotation = rotation_mean(pose_a[:, :3, :3] @ np.swapaxes(pose_b[:, :3, :3], 1, 2))
    return rotation, pose_a[:, :3, 3].mean(0), pose_b[:, :3, 3].mean(0)


def _overlap_motion(prev: WindowPrediction, ia: list[int], new: WindowPrediction, ib: list[int],
                    scale: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(rotation, translation, centre residual) of the Sim(3) with ``scale`` that best maps the
    shared keyframes' cameras in ``new`` onto theirs in ``prev``: rotation the chordal mean of
    their relative orientations, translation matching the centroids of their centres."""
    rotation, mean_a, mean_b = _overlap_rotation(prev, ia, new, ib)
    translation = mean_a - scale * rotation @ mean_b
    centre_a = se3_inverse(prev.cam_from_world[ia])[:, :3, 3]
    centre_b = se3_inverse(new.cam_from_world[ib])[:, :3, 3]
    residual = float(np.sqrt(np.mean(np.sum(
        (centre_a - (scale * centre_b @ rotation.T + translation)) ** 2, axis=1))))
    return rotation, translation, residual


def _rescaled(transform: np.ndarray, factor: float, pivot: np.ndarray) -> np.ndarray:
    """``transform`` (a Sim(3) into previous-window coordinates) followed by a scaling by
    ``factor`` about ``pivot`` (previous-window coordinates), which stays where it was."""
    about_pivot = sim3_matrix(factor, np.eye(3), (1.0 - factor) * np.asarray(pivot))
    return about_pivot @ transform


def _median_depth(prediction: WindowPrediction, rows: list[int]) -> float:
    depth = prediction.depth[rows]
    good = np.isfinite(depth) & (depth > 0)
    return float(np.median(depth[good])) if good.any() else float("inf")


def _depth_ratio(prev: WindowPrediction, a: int, new: WindowPrediction, b: int) -> float:
    """Median depth_prev / depth_new over pixels valid in both (1.0 when none are), on the
    fit's regular grid of about FIT_SAMPLES pixels: a median needs no more."""
    if prev.depth.shape[1:] != new.depth.shape[1:]:
        return 1.0
    step = _grid_stride(prev.depth[a].size, FIT_SAMPLES)
    da = prev.depth[a][::step, ::step].astype(np.float64)
    db = new.depth[b][::step, ::step].astype(np.float64)
    good = np.isfinite(da) & np.isfinite(db) & (da > 0) & (db > 0)
    return float(np.median(da[good] / db[good])) if good.any() else 1.0


def _previous_scale(prev: WindowPrediction, a: int, new: WindowPrediction, b: int,
                    scale: float) -> _Estimate:
    """Relative Sim(3) from one shared frame's two poses and a given relative scale."""
    pose_a = se3_inverse(prev.cam_from_world[a])
    pose_b = se3_inverse(new.cam_from_world[b])
    rotation = pose_a[:3, :3] @ pose_b[:3, :3].T
    translation = pose_a[:3, 3] - scale * rotation @ pose_b[:3, 3]
    return _Estimate("previous_scale", sim3_matrix(scale, rotation, translation), scale)
