"""Trajectory and depth accuracy metrics for non-metric (up-to-scale) estimates.

VGGT's odometry is only defined up to a similarity, so the estimate is aligned to ground truth
with ONE global Sim(3) (Umeyama) before the absolute trajectory error is measured, as VGGT,
VGGT-Long and the TUM benchmark tools report it. Depth is likewise up to scale, so each
predicted depth map is scaled by the ratio of medians before AbsRel / delta<1.25 (the
monocular-depth convention used in the VGGT paper's comparisons). A trajectory that claims to be
metric is also measured after a rigid SE(3) alignment with no scale fitted (``ate_se3``, in
ground-truth metres): that is the number metric scale must win, since the Sim(3) alignment
would forgive any scale.

Poses are 4x4 ``world_from_cam`` matrices (camera pose in its trajectory frame); stamps are
integer nanoseconds.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from vggt_ros.geometry.sim3 import Sim3Error, sim3_matrix, umeyama_sim3


class MetricsError(ValueError):
    """The inputs cannot give a meaningful metric (reason in the message)."""


def _positions(name: str, positions: np.ndarray) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"{name} must be [N,3], got {positions.shape}")
    if not np.isfinite(positions).all():
        raise ValueError(f"{name} contains NaN or inf")
    return positions


def _poses(name: str, poses: np.ndarray) -> np.ndarray:
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"{name} must be [N,4,4], got {poses.shape}")
    if not np.isfinite(poses).all():
        raise ValueError(f"{name} contains NaN or inf")
    return poses


def align_sim3(est_positions: np.ndarray, gt_positions: np.ndarray) -> np.ndarray:
    """4x4 Sim(3) ``gt_from_est`` minimising the squared position error (needs >= 3 poses
    that are not collinear)."""
    est = _positions("est_positions", est_positions)
    gt = _positions("gt_positions", gt_positions)
    if est.shape != gt.shape:
        raise ValueError(f"est and gt must match, got {est.shape} and {gt.shape}")
    scale, rotation, translation = umeyama_sim3(est, gt)
    return sim3_matrix(scale, rotation, translation)


def ate_rmse(est_positions: np.ndarray, gt_positions: np.ndarray) -> float:
    """RMS position error (gt units) after the best global Sim(3) alignment."""
    est = _positions("est_positions", est_positions)
    gt = _positions("gt_positions", gt_positions)
    gt_from_est = align_sim3(est, gt)
    aligned = est @ gt_from_est[:3, :3].T + gt_from_est[:3, 3]
    return float(np.sqrt(np.mean(np.sum((aligned - gt) ** 2, axis=1))))


def path_length(positions: np.ndarray) -> float:
    """Total length of the polyline through the positions (gt units)."""
    positions = _positions("positions", positions)
    return float(np.linalg.norm(np.diff(positions, axis=0), axis=1).sum())


def associate(stamps_a: np.ndarray, stamps_b: np.ndarray,
              max_diff_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (ia, ib) of stamps that are each other's nearest neighbour and at most
    ``max_diff_ns`` apart.

    Mutual nearest neighbours make the matching one-to-one whatever the two rates are (an
    estimate at 10 Hz against ground truth at 100 Hz pairs each estimate with one ground-truth
    pose, never two estimates with the same pose). Pairs are returned in order of ``stamps_a``.
    """
    a = np.asarray(stamps_a, dtype=np.int64)
    b = np.asarray(stamps_b, dtype=np.int64)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"stamps must be 1-D, got {a.shape} and {b.shape}")
    if max_diff_ns < 0:
        raise ValueError(f"max_diff_ns must be >= 0, got {max_diff_ns}")
    empty = np.zeros(0, dtype=np.int64)
    if a.size == 0 or b.size == 0:
        return empty, empty
    a_to_b = _nearest(a, b)
    b_to_a = _nearest(b, a)
    ia = np.arange(a.size)
    keep = (b_to_a[a_to_b] == ia) & (np.abs(a - b[a_to_b]) <= max_diff_ns)
    return ia[keep], a_to_b[keep]


def _nearest(query: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Index into ``ref`` of the nearest stamp for every ``query`` stamp (ref need not be
    sorted)."""
    order = np.argsort(ref, kind="stable")
    ref_sorted = ref[order]
    right = np.clip(np.searchsorted(ref_sorted, query), 0, ref.size - 1)
    left = np.clip(right - 1, 0, ref.size - 1)
    use_left = np.abs(query - ref_sorted[left]) <= np.abs(ref_sorted[right] - query)
    return order[np.where(use_left, left, right)]


def absolute_trajectory_error(est_poses: np.ndarray, gt_poses: np.ndarray,
                              with_scale: bool = True) -> dict[str, float]:
    """ATE of associated poses after one global Sim(3) (SE(3), scale 1, with ``with_scale``
    False): RMSE, mean, median, max (gt units), RMSE as a percentage of the ground-truth path
    length, and the alignment's scale."""
    est = _poses("est_poses", est_poses)
    gt = _poses("gt_poses", gt_poses)
    if est.shape != gt.shape:
        raise ValueError(f"est and gt must match, got {est.shape} and {gt.shape}")
    if len(est) < 3:
        raise MetricsError(f"ATE needs at least 3 associated poses, got {len(est)}")
    try:
        gt_from_est = sim3_matrix(*umeyama_sim3(est[:, :3, 3], gt[:, :3, 3],
                                                with_scale=with_scale))
    except Sim3Error as exc:
        raise MetricsError(f"cannot align the trajectories: {exc}") from None
    aligned = est[:, :3, 3] @ gt_from_est[:3, :3].T + gt_from_est[:3, 3]
    err = np.linalg.norm(aligned - gt[:, :3, 3], axis=1)
    length = path_length(gt[:, :3, 3])
    rmse = float(np.sqrt(np.mean(err ** 2)))
    return {
        "rmse": rmse,
        "mean": float(err.mean()),
        "median": float(np.median(err)),
        "max": float(err.max()),
        "path_length": length,
        "rmse_percent_of_path": 100.0 * rmse / length if length > 0 else float("nan"),
        "scale": float(np.cbrt(np.linalg.det(gt_from_est[:3, :3]))),
        "num_poses": int(len(est)),
    }


def relative_pose_error(est_poses: np.ndarray, gt_poses: np.ndarray, delta: int = 1,
                        scale: float = 1.0) -> dict[str, float]:
    """RPE over pose pairs ``delta`` frames apart (TUM definition).

    For each i: E = inv(inv(G_i) G_{i+d}) inv(P_i) P_{i+d}, with the estimate's translations
    multiplied by ``scale`` first (the Sim(3) scale from the ATE alignment, so the translation
    error is in gt units). Reports RMSE/mean of ||t(E)|| and of the rotation angle of E in
    degrees. Drift-free estimates give 0 whatever their global placement.
    """
    est = _poses("est_poses", est_poses).copy()
    gt = _poses("gt_poses", gt_poses)
    if est.shape != gt.shape:
        raise ValueError(f"est and gt must match, got {est.shape} and {gt.shape}")
    if delta < 1:
        raise ValueError(f"delta must be >= 1, got {delta}")
    if len(est) <= delta:
        raise MetricsError(f"RPE with delta {delta} needs more than {delta} poses, "
                           f"got {len(est)}")
    est[:, :3, 3] *= scale
    rel_est = np.linalg.inv(est[:-delta]) @ est[delta:]
    rel_gt = np.linalg.inv(gt[:-delta]) @ gt[delta:]
    err = np.linalg.inv(rel_gt) @ rel_est
    trans = np.linalg.norm(err[:, :3, 3], axis=1)
    cos_angle = (np.trace(err[:, :3, :3], axis1=1, axis2=2) - 1.0) / 2.0
    rot = np.degrees(np.arccos(np.clip(cos_angle, -1.0, 1.0)))
    return {
        "delta": int(delta),
        "trans_rmse": float(np.sqrt(np.mean(trans ** 2))),
        "trans_mean": float(trans.mean()),
        "rot_rmse_deg": float(np.sqrt(np.mean(rot ** 2))),
        "rot_mean_deg": float(rot.mean()),
        "num_pairs": int(len(err)),
    }


def evaluate_trajectory(est_stamps_ns: np.ndarray, est_poses: np.ndarray,
                        gt_stamps_ns: np.ndarray, gt_poses: np.ndarray,
                        max_diff_ns: int = 20_000_000, rpe_delta: int = 1) -> dict[str, Any]:
    """Associate by stamp, then ATE (Sim(3)-aligned), ``ate_se3`` (rigidly aligned, no scale
    fitted) and RPE (scale from the Sim(3) alignment).

    This one function is what both ``vggt_eval`` and ``vggt_map --gt`` report, so the two can
    never disagree.
    """
    est = _poses("est_poses", est_poses)
    gt = _poses("gt_poses", gt_poses)
    if len(est) != len(est_stamps_ns) or len(gt) != len(gt_stamps_ns):
        raise ValueError("each trajectory needs one stamp per pose")
    ie, ig = associate(est_stamps_ns, gt_stamps_ns, max_diff_ns)
    if len(ie) < 3:
        raise MetricsError(f"only {len(ie)} of {len(est)} estimated poses have a ground-truth "
                           f"pose within {max_diff_ns / 1e6:g} ms (need >= 3)")
    ate = absolute_trajectory_error(est[ie], gt[ig])
    out: dict[str, Any] = {
        "associated": int(len(ie)),
        "estimated_poses": int(len(est)),
        "ground_truth_poses": int(len(gt)),
        "max_diff_ms": max_diff_ns / 1e6,
        "ate": ate,
        "ate_se3": absolute_trajectory_error(est[ie], gt[ig], with_scale=False),
    }
    if len(ie) > rpe_delta:
        out["rpe"] = relative_pose_error(est[ie], gt[ig], rpe_delta, ate["scale"])
    return out


def aligned_positions(est_poses: np.ndarray, gt_poses: np.ndarray) -> np.ndarray:
    """Estimated camera positions mapped into the ground-truth frame by the ATE alignment
    (for plotting the two trajectories on top of each other)."""
    est = _poses("est_poses", est_poses)
    gt = _poses("gt_poses", gt_poses)
    gt_from_est = align_sim3(est[:, :3, 3], gt[:, :3, 3])
    return est[:, :3, 3] @ gt_from_est[:3, :3].T + gt_from_est[:3, 3]


def depth_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """AbsRel and delta<1.25 of depth maps [S,H,W] (or one [H,W]) after per-frame median
    scaling.

    Valid pixels are those where both depths are finite and positive. Each frame's prediction
    is multiplied by median(gt)/median(pred) over its valid pixels; AbsRel = mean |d - g| / g
    and delta = share of pixels with max(d/g, g/d) < 1.25 are computed per frame and averaged
    over frames (frames with no valid pixel are left out and counted).
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"predicted and ground-truth depth must have one shape, got "
                         f"{pred.shape} and {gt.shape}")
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
    if pred.ndim != 3 or pred.size == 0:
        raise ValueError(f"depth must be [S,H,W] or [H,W], got {pred.shape}")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(pred) & np.isfinite(gt) & (pred > 0) & (gt > 0)
    counts = valid.reshape(len(pred), -1).sum(axis=1)
    used = counts > 0
    if not used.any():
        raise MetricsError("no pixel has a finite positive depth in both prediction and "
                           "ground truth")
    pred_m = np.where(valid, pred, np.nan)[used]
    gt_m = np.where(valid, gt, np.nan)[used]
    ratio = np.nanmedian(gt_m.reshape(len(gt_m), -1), axis=1) / np.nanmedian(
        pred_m.reshape(len(pred_m), -1), axis=1)
    scaled = pred_m * ratio[:, None, None]
    abs_rel = np.nanmean((np.abs(scaled - gt_m) / gt_m).reshape(len(gt_m), -1), axis=1)
    worst = np.fmax(scaled / gt_m, gt_m / scaled)
    with np.errstate(invalid="ignore"):
        good = np.where(np.isnan(worst), np.nan, worst < 1.25)
    delta = np.nanmean(good.reshape(len(gt_m), -1), axis=1)
    return {
        "abs_rel": float(abs_rel.mean()),
        "delta_1_25": float(delta.mean()),
        "frames": int(used.sum()),
        "frames_without_valid_pixels": int((~used).sum()),
        "valid_pixels": int(counts.sum()),
    }


def combine_depth_metrics(per_frame: list[dict[str, float]]) -> dict[str, float]:
    """Merge :func:`depth_metrics` results of single frames (or frame batches) into the
    frame-averaged totals that one call over all frames would have given."""
    used = [m for m in per_frame if m["frames"] > 0]
    if not used:
        raise MetricsError("no frame with valid depth to combine")
    frames = sum(m["frames"] for m in used)
    return {
        "abs_rel": float(sum(m["abs_rel"] * m["frames"] for m in used) / frames),
        "delta_1_25": float(sum(m["delta_1_25"] * m["frames"] for m in used) / frames),
        "frames": int(frames),
        "frames_without_valid_pixels": int(sum(m["frames_without_valid_pixels"]
                                               for m in per_frame)),
        "valid_pixels": int(sum(m["valid_pixels"] for m in used)),
    }
