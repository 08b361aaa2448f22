"""Which camera intrinsics a window uses: the calibration when there is one, else the network's.

Why: VGGT predicts a focal length per frame, and for a camera it has never seen that guess is a
few percent off and differs from frame to frame (the demo model's fx spreads 140-168 around a
true 160). A calibrated ``CameraInfo`` is exact and the same for every frame, so when it is
there (and ``intrinsics_source`` is ``camera_info``) its K, mapped into model pixels by the
preprocessing, replaces the predicted K everywhere downstream: the pose solver, chaining, the
map, ``depth/camera_info`` and COLMAP.

Depth rule: the network's depth is kept as it is, z along the optical axis, and only re-expressed
through the calibrated K (a pixel's point is ``z * K_cal^-1 [u, v, 1]``). The depth map is what
the network measures most directly (its per-pixel z ordering does not depend on the focal
length it guessed); changing z as well would move every point along its ray by the network's
focal error. With the ground-truth double (exact depth, wrong predicted focal) this rule gives
the exact scene.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from vggt_ros.pipeline.types import Frame, WindowPrediction

INTRINSICS_SOURCES = ("camera_info", "predicted")
# Predicted and calibrated focal lengths differing by more than this share suggest a wrong
# CameraInfo (another camera, another resolution) or a model that does not fit the camera.
FOCAL_DISAGREEMENT_WARN = 0.2


@dataclass(frozen=True)
class IntrinsicsStatus:
    source: str  # what the window used: "camera_info" or "predicted"
    focal_disagreement: float = float("nan")  # max |f_pred / f_cal - 1| (camera_info only)
    warning: str = ""


def apply_intrinsics(prediction: WindowPrediction, frames: Sequence[Frame],
                     source: str) -> tuple[WindowPrediction, IntrinsicsStatus]:
    """``prediction`` with the calibrated K (model pixels) when ``source`` is camera_info and
    every frame carries a CameraInfo; unchanged otherwise."""
    if source not in INTRINSICS_SOURCES:
        raise ValueError(f"intrinsics_source must be one of {INTRINSICS_SOURCES}, got {source!r}")
    if source == "predicted" or any(f.camera_info is None for f in frames):
        return prediction, IntrinsicsStatus(source="predicted")
    calibrated = np.stack([m.intrinsics_to_model(np.asarray(f.camera_info.k, dtype=np.float64))
                           for m, f in zip(prediction.mappings, frames)])
    predicted = np.asarray(prediction.intrinsics, dtype=np.float64)
    ratio = np.concatenate([predicted[:, 0, 0] / calibrated[:, 0, 0],
                            predicted[:, 1, 1] / calibrated[:, 1, 1]])
    disagreement = float(np.max(np.abs(ratio - 1.0)))
    warning = ""
    if disagreement > FOCAL_DISAGREEMENT_WARN:
        warning = (f"predicted focal length differs from the CameraInfo by {disagreement:.0%}: "
                   f"check that the CameraInfo belongs to this camera and resolution")
    return (replace(prediction, intrinsics=calibrated),
            IntrinsicsStatus("camera_info", disagreement, warning))
