"""A Predictor that answers from a synthetic sequence's ground truth, in VGGT's conventions.

It lets the chaining, mapping and node code be tested for what THEY do, with every error
attributable: each window comes back the way VGGT reports it (frame 0 at the origin, its own
arbitrary scale drawn per window), optionally degraded by multiplicative depth noise, pose
noise, a focal-length error, and track noise and outliers. Preprocessing is the identity (model
size = original size), so depth pixels are camera pixels and the intrinsics are the sequence's
K (times ``1 + focal_error``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from vggt_ros.geometry.camera import se3_inverse
from vggt_ros.geometry.reprojection import reproject_queries
from vggt_ros.pipeline.types import Frame, PreprocessMapping, TrackPrediction, WindowPrediction
from vggt_ros.synth import SyntheticSequence

CONF_MAX = 10.0  # confidence of a noise-free pixel (VGGT's is 1 + exp(x) >= 1)
_CACHE_FRAMES = 64


class GroundTruthPredictor:
    """Ground truth of ``sequence`` looked up by stamp (see module docstring)."""

    def __init__(self, sequence: SyntheticSequence, scale_range: tuple[float, float] = (0.3, 3.0),
                 depth_noise: float = 0.0, rot_noise_deg: float = 0.0, trans_noise: float = 0.0,
                 seed: int = 0, track_noise_px: float = 0.0, track_outliers: float = 0.0,
                 focal_error: float = 0.0) -> None:
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        if min(depth_noise, rot_noise_deg, trans_noise, track_noise_px) < 0:
            raise ValueError("noise levels must be >= 0")
        if not 0 <= track_outliers <= 1:
            raise ValueError(f"track_outliers must be a share in [0, 1], got {track_outliers}")
        if focal_error <= -1:
            raise ValueError(f"focal_error must be > -1, got {focal_error}")
        self.sequence = sequence
        self.scale_range = (float(low), float(high))
        self.depth_noise = depth_noise
        self.rot_noise_deg = rot_noise_deg
        self.trans_noise = trans_noise
        self.track_noise_px = track_noise_px  # Gaussian noise on every tracked pixel (x and y)
        self.track_outliers = track_outliers  # share of tracks replaced by random pixels
        self.focal_error = focal_error  # predicted focal lengths are (1 + focal_error) x true
        self._rng = np.random.default_rng(seed)
        self._index = {int(s): i for i, s in enumerate(sequence.stamps_ns)}
        self._renders: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.window_scales: list[float] = []  # window units per world unit, one per predict()

    def describe(self) -> dict[str, str]:
        return {"model": "ground-truth double", "device": "cpu", "precision": "float64"}

    def _lookup(self, frames: Sequence[Frame]) -> list[int]:
        if len(frames) == 0:
            raise ValueError("need at least one frame")
        missing = [f.stamp_ns for f in frames if f.stamp_ns not in self._index]
        if missing:
            raise ValueError(f"stamps not in the synthetic sequence: {missing}")
        return [self._index[f.stamp_ns] for f in frames]

    def _depth(self, index: int) -> np.ndarray:
        if index not in self._renders:
            if len(self._renders) >= _CACHE_FRAMES:
                self._renders.pop(next(iter(self._renders)))
            self._renders[index] = self.sequence.render(index)
        return self._renders[index][1]

    def _mapping(self) -> PreprocessMapping:
        size = (self.sequence.width, self.sequence.height)
        return PreprocessMapping(original_size=size, model_size=size, scale=1.0, offset_x=0.0,
                                 offset_y=0.0, valid=(0, 0, size[0], size[1]))

    def predict(self, frames: Sequence[Frame]) -> WindowPrediction:
        idx = self._lookup(frames)
        scale = float(self._rng.uniform(*self.scale_range))
        self.window_scales.append(scale)
        gt = self.sequence.cam_from_world[idx]
        cam_from_window = gt @ se3_inverse(gt[0])
        cam_from_window[:, :3, 3] *= scale
        cam_from_window[1:] = self._perturb(cam_from_window[1:], scale)
        depth = np.stack([self._depth(i) for i in idx]).astype(np.float64) * scale
        noise = self._rng.standard_normal(depth.shape)
        if self.depth_noise > 0:
            depth *= 1.0 + self.depth_noise * noise
            conf = 1.0 + (CONF_MAX - 1.0) * np.exp(-0.5 * noise**2)
        else:
            conf = np.full(depth.shape, CONF_MAX)
        return WindowPrediction(
            stamps_ns=[f.stamp_ns for f in frames], cam_from_world=cam_from_window,
            intrinsics=np.repeat(self._predicted_k()[None], len(idx), axis=0),
            depth=depth.astype(np.float32), depth_conf=conf.astype(np.float32),
            images=np.stack([f.image for f in frames]), mappings=[self._mapping()] * len(idx))

    def _predicted_k(self) -> np.ndarray:
        k = self.sequence.K.copy()
        k[0, 0] *= 1.0 + self.focal_error
        k[1, 1] *= 1.0 + self.focal_error
        return k

    def _perturb(self, cam_from_window: np.ndarray, scale: float) -> np.ndarray:
        """Left-multiply small random rigid motions (translation noise in world units)."""
        n = len(cam_from_window)
        noise = np.tile(np.eye(4), (n, 1, 1))
        if self.rot_noise_deg > 0:
            rotvec = self._rng.standard_normal((n, 3))
            rotvec *= np.radians(self.rot_noise_deg) / np.sqrt(3.0)  # per-axis share of the angle
            noise[:, :3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
        if self.trans_noise > 0:
            noise[:, :3, 3] = self._rng.standard_normal((n, 3)) * self.trans_noise * scale
        return noise @ cam_from_window

    def track(self, frames: Sequence[Frame], query_uv: np.ndarray) -> TrackPrediction:
        """Exact reprojection of the query pixels' surface points (depth at the nearest pixel),
        by the track ground truth the training data uses (``geometry.reprojection``): visible
        where the point is in the image and agrees with the rendered depth there."""
        idx = self._lookup(frames)
        truth = reproject_queries(torch.from_numpy(np.stack([self._depth(i) for i in idx])),
                                  torch.from_numpy(self.sequence.cam_from_world[idx]),
                                  torch.from_numpy(np.asarray(self.sequence.K)),
                                  torch.from_numpy(np.asarray(query_uv, dtype=np.float64)))
        tracks = truth.pixels.numpy().copy()
        tracks[1:] += self._rng.standard_normal(tracks[1:].shape) * self.track_noise_px
        outlier = self._rng.random(tracks.shape[:2]) < self.track_outliers
        outlier[0] = False  # the query frame's track is the query itself
        size = (self.sequence.width - 1, self.sequence.height - 1)
        tracks[outlier] = self._rng.uniform((0, 0), size, (int(outlier.sum()), 2))
        return TrackPrediction(stamps_ns=[f.stamp_ns for f in frames], tracks_uv=tracks,
                               visibility=truth.visible.double().numpy(),
                               confidence=truth.inside.double().numpy())
