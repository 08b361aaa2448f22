"""Is a trajectory believable? Metrics next to their baselines, and warnings when it is not.

Why: an ATE of "14 % of the path" means nothing on its own; a camera that never moved scores
about the same on a loop. Every trajectory metric is therefore reported beside what two trivial
estimates would score: a camera that never moves (``no_motion``) and one that never turns
(``identity_rotation``). An estimate no better than those, or one that turns far less than the
ground truth (or than its own tracks say), is flagged as degenerate in words a user reads.

Without ground truth the per-window pose health of the pose solver decides: windows whose poses
do not explain the tracked image motion, or where tracks and camera head disagree.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from vggt_ros.evaluation.metrics import align_sim3, path_length
from vggt_ros.geometry.sim3 import Sim3Error
from vggt_ros.pipeline.pose_solver import DISAGREEMENT_WARN_DEG
from vggt_ros.pipeline.types import PoseHealth

# A trajectory turning less than this share of the ground truth's total rotation is degenerate.
MIN_ROTATION_RATIO = 0.5
# An ATE above this share of the no-motion baseline's is "no better than not moving".
NO_BETTER_THAN_STATIC = 0.8
# Share of windows with a pose-health problem from which the whole trajectory is flagged.
BAD_WINDOW_SHARE = 0.25
MIN_GT_ROTATION_DEG = 10.0  # below this the ground truth barely turns: no rotation check


def _angles_deg(rotations_a: np.ndarray, rotations_b: np.ndarray) -> np.ndarray:
    rel = np.swapaxes(rotations_a, -1, -2) @ rotations_b
    cos = (np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def total_rotation_deg(world_from_cam: np.ndarray) -> float:
    """Sum of the rotation angles between consecutive poses: how much the camera turned."""
    rotations = np.asarray(world_from_cam, dtype=np.float64)[:, :3, :3]
    return float(_angles_deg(rotations[:-1], rotations[1:]).sum()) if len(rotations) > 1 else 0.0


def no_motion_baseline(gt_world_from_cam: np.ndarray) -> dict[str, float]:
    """What a camera that never moves would score: its best Sim(3) placement is the ground
    truth's centroid (ATE), and every relative motion it reports is zero (RPE)."""
    gt = np.asarray(gt_world_from_cam, dtype=np.float64)
    positions = gt[:, :3, 3]
    ate = float(np.sqrt(np.mean(np.sum((positions - positions.mean(0)) ** 2, axis=1))))
    length = path_length(positions)
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    turns = _angles_deg(gt[:-1, :3, :3], gt[1:, :3, :3])
    return {
        "ate_rmse": ate,
        "ate_percent_of_path": 100.0 * ate / length if length > 0 else float("nan"),
        "rpe_trans_rmse": float(np.sqrt(np.mean(steps ** 2))) if len(steps) else 0.0,
        "rpe_rot_rmse_deg": float(np.sqrt(np.mean(turns ** 2))) if len(turns) else 0.0,
    }


def orientation_errors_deg(est_world_from_cam: np.ndarray,
                           gt_world_from_cam: np.ndarray) -> np.ndarray:
    """Per-pose orientation error after the ATE's Sim(3) alignment (its rotation applied)."""
    est = np.asarray(est_world_from_cam, dtype=np.float64)
    gt = np.asarray(gt_world_from_cam, dtype=np.float64)
    gt_from_est = align_sim3(est[:, :3, 3], gt[:, :3, 3])
    rotation = gt_from_est[:3, :3] / np.cbrt(np.linalg.det(gt_from_est[:3, :3]))
    return _angles_deg(rotation @ est[:, :3, :3], gt[:, :3, :3])


def identity_rotation_baseline_deg(gt_world_from_cam: np.ndarray) -> float:
    """Mean orientation error of a camera that never turns, placed at the best fixed
    orientation (the ground truth's mean rotation)."""
    rotations = np.asarray(gt_world_from_cam, dtype=np.float64)[:, :3, :3]
    mean = Rotation.from_matrix(rotations).mean().as_matrix()
    return float(_angles_deg(mean[None], rotations).mean())


def trajectory_health(est_world_from_cam: np.ndarray,
                      gt_world_from_cam: Optional[np.ndarray] = None,
                      ate: Optional[dict[str, float]] = None,
                      windows: Sequence[PoseHealth] = ()) -> dict[str, Any]:
    """Totals, baselines and warnings for one trajectory.

    ``gt_world_from_cam`` are the ground-truth poses associated with the estimate's (same
    length), ``ate`` the ATE the metrics already computed, ``windows`` the pose health of every
    window. Returns a JSON-ready dict whose ``warnings`` list is empty for a believable
    trajectory; ``degenerate`` is True when any warning says the trajectory is not one.
    """
    est = np.asarray(est_world_from_cam, dtype=np.float64)
    out: dict[str, Any] = {
        "estimate": {"total_rotation_deg": total_rotation_deg(est),
                     "path_length": path_length(est[:, :3, 3]) if len(est) > 1 else 0.0},
    }
    warnings: list[str] = []
    if gt_world_from_cam is not None and len(est) >= 3:
        gt = np.asarray(gt_world_from_cam, dtype=np.float64)
        gt_rotation = total_rotation_deg(gt)
        baseline = no_motion_baseline(gt)
        out["ground_truth"] = {"total_rotation_deg": gt_rotation,
                               "path_length": path_length(gt[:, :3, 3])}
        try:
            orientation = orientation_errors_deg(est, gt)
        except Sim3Error:  # no alignment: the estimate stands still, or both paths are lines
            orientation = np.full(len(est), np.nan)
            if out["estimate"]["path_length"] <= 1e-9 * out["ground_truth"]["path_length"]:
                warnings.append("the estimate does not move at all")
        out["orientation_error_deg"] = {"mean": float(orientation.mean()),
                                        "median": float(np.median(orientation)),
                                        "max": float(orientation.max())}
        out["baselines"] = {"no_motion": baseline,
                            "identity_rotation": {
                                "orientation_error_mean_deg":
                                    identity_rotation_baseline_deg(gt)}}
        ratio = out["estimate"]["total_rotation_deg"] / gt_rotation if gt_rotation > 0 else 1.0
        out["rotation_ratio"] = ratio
        # Turning far less is a frozen or collapsed estimate; turning far more is rotation noise
        # (jittering poses add up their angles): both mean the orientations cannot be trusted.
        if gt_rotation >= MIN_GT_ROTATION_DEG and not (
                MIN_ROTATION_RATIO <= ratio <= 1.0 / MIN_ROTATION_RATIO):
            warnings.append(f"the estimate turns {out['estimate']['total_rotation_deg']:.0f} deg "
                            f"while the ground truth turns {gt_rotation:.0f} deg")
        if ate is not None and ate["rmse"] > NO_BETTER_THAN_STATIC * baseline["ate_rmse"]:
            warnings.append(f"ATE {ate['rmse']:.3g} is no better than a camera that never moves "
                            f"({baseline['ate_rmse']:.3g})")
    if windows:
        count = len(windows)
        degenerate = sum(w.degenerate for w in windows)
        disagree = sum(w.disagreement_deg > DISAGREEMENT_WARN_DEG for w in windows)
        fallback = sum(w.fallback_frames for w in windows)
        extrapolated = sum(w.extrapolated_frames for w in windows)
        out["windows"] = {"count": count, "degenerate": degenerate,
                          "tracks_disagree_with_camera_head": disagree,
                          "fallback_frames": fallback,
                          "extrapolated_frames": extrapolated,
                          "median_reprojection_px": _nanmedian([w.reprojection_px
                                                                for w in windows]),
                          "median_inlier_ratio": _nanmedian([w.inlier_ratio for w in windows])}
        if degenerate > BAD_WINDOW_SHARE * count:
            warnings.append(f"in {degenerate} of {count} windows the poses do not explain the "
                            f"image motion the tracks show")
        if disagree > BAD_WINDOW_SHARE * count and windows[0].pose_source == "camera_head":
            warnings.append(f"in {disagree} of {count} windows the camera head disagrees with "
                            f"the tracks: try pose_source refined")
    out["warnings"] = warnings
    out["degenerate"] = bool(warnings)
    return out


def _nanmedian(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.median(finite)) if finite else float("nan")
