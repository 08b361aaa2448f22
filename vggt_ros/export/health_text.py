"""A mapping run's trajectory health in words: the lines ``vggt_map`` prints are the lines
report.png draws.

Why one module: a number without its baseline misleads (an ATE of 15 % of the path is what a
camera that never moves scores on a loop), so every metric is written beside what a trivial
estimate would score, and a degenerate trajectory gets one unmistakable warning line. Printing
and drawing the same text keeps the terminal, the report and summary.json telling one story.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

WARNING_PREFIX = "WARNING: degenerate trajectory: "


def _num(value: Any, digits: int = 3) -> str:
    """A number for people: ``n/a`` for missing or non-finite values (strict JSON's null)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}g}"


def _percent(share: Any) -> str:
    return "n/a" if share is None else _num(100 * share)


def health_lines(health: Mapping[str, Any], trajectory: Optional[Mapping[str, Any]] = None,
                 pose_source: str = "", intrinsics_source: str = "") -> list[str]:
    """Metric rows, each with its baseline after ``|`` (the columns line up in a fixed-width
    font): ``health`` is ``trajectory_health(...)``; ``trajectory`` the ``metrics.trajectory``
    of summary.json (None without ground truth); the sources name where poses and intrinsics
    came from."""
    rows: list[tuple[str, str, str]] = []  # (label, value, baseline)
    estimate = health["estimate"]
    ate = (trajectory or {}).get("ate")
    baselines = health.get("baselines")
    if ate and baselines:
        still = baselines["no_motion"]
        rows.append(("ATE", f"{_num(ate['rmse'])} ({_num(ate['rmse_percent_of_path'])} % of "
                     f"path)", f"never moves: {_num(still['ate_rmse'])} "
                     f"({_num(still['ate_percent_of_path'])} %)"))
        rpe = trajectory.get("rpe")
        if rpe:
            rows.append(("RPE per frame",
                         f"{_num(rpe['trans_rmse'])}, {_num(rpe['rot_rmse_deg'])} deg",
                         f"never moves: {_num(still['rpe_trans_rmse'])}, "
                         f"{_num(still['rpe_rot_rmse_deg'])} deg"))
        never_turns = baselines["identity_rotation"]["orientation_error_mean_deg"]
        rows.append(("orientation",
                     f"{_num(health['orientation_error_deg']['mean'])} deg mean error",
                     f"never turns: {_num(never_turns)} deg"))
    turned = f"{_num(estimate['total_rotation_deg'], 4)} deg"
    if "ground_truth" in health:
        rows.append(("total rotation", turned, f"ground truth: "
                     f"{_num(health['ground_truth']['total_rotation_deg'], 4)} deg"))
    else:
        rows.append(("total rotation", turned,
                     f"path length {_num(estimate['path_length'])} (no ground truth)"))
    sources = ", ".join(part for part in (f"poses {pose_source}" if pose_source else "",
                                          f"intrinsics {intrinsics_source}"
                                          if intrinsics_source else "") if part)
    windows = health.get("windows")
    if windows:
        rows.append(("pose solver", f"{_num(windows['median_reprojection_px'])} px "
                     f"reprojection, {_percent(windows['median_inlier_ratio'])} % inliers",
                     sources))
        rows.append(("windows", f"{windows['degenerate']} of {windows['count']} degenerate",
                     f"{windows['tracks_disagree_with_camera_head']} head/tracks disagree, "
                     f"{windows['fallback_frames']} fallback frames, "
                     f"{windows['extrapolated_frames']} extrapolated"))
    elif sources:
        rows.append(("sources", sources, ""))
    width = max(len(value) for _, value, _ in rows) + 2
    return [f"{label:<16}{value:<{width}}| {baseline}".rstrip(" |") for label, value, baseline
            in rows]


def warning_line(health: Mapping[str, Any]) -> str:
    """``WARNING: degenerate trajectory: <reasons>``, or "" for a believable trajectory."""
    if not health.get("degenerate"):
        return ""
    return WARNING_PREFIX + "; ".join(health["warnings"])
