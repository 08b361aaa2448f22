"""The pipeline's part of the ``/diagnostics`` status, shared by the node and the output bag.

The node adds what only a live process knows (input rates, queue, rejected input, device
memory); the pipeline's chaining result, pose health, scale status, resets, map size and stage
timings are reported the same way live and in a mapped bag. ``scale`` is ``metric`` only while a
source is active and healthy; a depth or odometry source that is not (yet) raises the level to
WARN and says why, since odometry in unknown units must not be fused as metres.

Pose health is what lets an operator without ground truth see a bad trajectory: the status
goes WARN, saying what is wrong and what to change, when the last window's poses do not explain
the image motion its tracks show, when the camera head (in use) disagrees with the tracks, or
when the predicted focal length disagrees with the CameraInfo.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from vggt_ros.pipeline.intrinsics import FOCAL_DISAGREEMENT_WARN
from vggt_ros.pipeline.pose_solver import DISAGREEMENT_WARN_DEG
from vggt_ros.pipeline.timings import network_seconds
from vggt_ros.pipeline.types import ChainingStatus, PoseHealth
from vggt_ros.topics.messages import DIAGNOSTIC_OK, DIAGNOSTIC_WARN

__all__ = ["status_name", "hardware_id", "pipeline_status", "pose_problems", "falling_behind",
           "latency_values"]
# Pipeline.stats counters (present once counted) -> diagnostics key
POSE_COUNTERS = {"pose_fallback_frames": "pose.fallback_frames_total",
                 "pose_extrapolated_frames": "pose.extrapolated_frames_total",
                 "pose_disagreement_windows": "pose.disagreement_windows",
                 "pose_degenerate_windows": "pose.degenerate_windows",
                 "pose_focal_warning_windows": "pose.focal_warning_windows"}

# Pipeline.stats["scale"] keys reported as scale.<key>: the source, its current scale (odom
# units per VGGT unit of the last window), its relative 1-sigma uncertainty, the windows it
# scaled, skipped (no measurement) or rejected (an outlier), and why the last one was not scaled.
SCALE_KEYS = ("source", "value", "uncertainty", "windows_scaled", "windows_skipped",
              "windows_rejected", "reason")


def status_name(node_name: str) -> str:
    """The DiagnosticStatus name of a node (its fully qualified name, so two cameras' nodes
    in their namespaces are told apart), e.g. ``/cam1/vggt: pipeline``."""
    return f"{node_name}: pipeline"


def hardware_id(camera_frame: str, device: str) -> str:
    """The DiagnosticStatus hardware_id: which camera, on which device."""
    return f"{camera_frame or 'camera (no frame yet)'} on {device}"


def pose_problems(pose: PoseHealth) -> list[str]:
    """What is wrong with a window's poses and what to change, one sentence each (empty when
    nothing is). A disagreement between tracks and camera head matters only while the camera
    head's poses are the ones used."""
    problems = []
    if pose.degenerate:
        advice = ("check the model/checkpoint, try pose_source refined"
                  if pose.pose_source == "camera_head" else
                  "check the model/checkpoint, the CameraInfo and that the scene is static")
        problems.append(f"poses do not explain the tracked image motion "
                        f"({pose.unexplained_motion:.0%} of {pose.track_motion_px:.1f} px left): "
                        f"{advice}")
    if pose.pose_source == "camera_head" and pose.disagreement_deg > DISAGREEMENT_WARN_DEG:
        problems.append(f"tracks and camera head disagree by {pose.disagreement_deg:.1f} deg: "
                        f"try pose_source refined")
    if pose.focal_disagreement > FOCAL_DISAGREEMENT_WARN:
        problems.append(f"predicted focal length differs from the CameraInfo by "
                        f"{pose.focal_disagreement:.0%}: check the CameraInfo matches this "
                        f"camera and resolution")
    return problems


def _pose_values(pose: Optional[PoseHealth], stats: Mapping[str, Any]) -> dict[str, Any]:
    values = {"pose.source": stats.get("pose_source", ""),
              "pose.intrinsics_source": stats.get("intrinsics_source", "")}
    if pose is not None:
        values.update({"pose.inlier_ratio": pose.inlier_ratio,
                       "pose.reprojection_px": pose.reprojection_px,
                       "pose.track_motion_px": pose.track_motion_px,
                       "pose.unexplained_motion": pose.unexplained_motion,
                       "pose.disagreement_deg": pose.disagreement_deg,
                       "pose.focal_disagreement": pose.focal_disagreement,
                       "pose.fallback_frames": pose.fallback_frames,
                       "pose.extrapolated_frames": pose.extrapolated_frames,
                       "pose.depth_aligned_frames": pose.depth_aligned_frames,
                       "pose.degenerate": pose.degenerate,
                       "pose.warning": pose.warning})
    values.update({key: stats.get(stat, 0) for stat, key in POSE_COUNTERS.items()})
    return values


def pipeline_status(chaining: Optional[ChainingStatus], stats: Mapping[str, Any]
                    ) -> tuple[int, str, dict[str, Any]]:
    """(level, message, values) from the last window's chaining (None before the first
    window) and ``Pipeline.stats``. A chaining warning or a pose problem of the last window
    (``pose_problems``) raises the level to WARN; the message then names each."""
    level, message, values = DIAGNOSTIC_OK, "running", {}
    problems = []
    if chaining is not None:
        values.update({"chaining.method": chaining.method, "chaining.scale": chaining.scale,
                       "chaining.residual": chaining.residual,
                       "chaining.inlier_ratio": chaining.inlier_ratio,
                       "chaining.num_points": chaining.num_points,
                       "chaining.warning": chaining.warning})
        if chaining.warning:
            problems.append(f"chaining: {chaining.warning}")
    else:
        message = "waiting for the first window"
    pose = stats.get("last_pose")
    values.update(_pose_values(pose, stats))
    if pose is not None:
        problems.extend(f"pose: {problem}" for problem in pose_problems(pose))
    if problems:
        level, message = DIAGNOSTIC_WARN, "; ".join(problems)
    values["scale"] = stats["scale_status"]
    scale = stats.get("scale")
    if scale is not None:
        values.update({f"scale.{key}": scale[key] for key in SCALE_KEYS})
        if scale["source"] in ("depth", "odometry") and not scale["metric"]:
            level = max(level, DIAGNOSTIC_WARN)
            message = f"scale not metric: {scale['reason']}; {message}"
    values["resets"] = stats["resets"]
    values["last_reset_reason"] = stats["last_reset_reason"]
    values["map_points"] = stats["map_points"]
    values.update({f"pipeline.{k}": stats[k] for k in
                   ("frames_in", "keyframes", "dropped_non_keyframes", "windows",
                    "failed_fusions")})
    values.update({f"timing.{k}_s": v for k, v in stats["timings"].items()})
    if stats["timings"]:
        values["timing.network_s"] = network_seconds(stats["timings"])
    return level, message, values


def falling_behind(new_queue_drops: int, seconds: float, keyframes_per_s: float,
                   offered_per_s: float, values: Mapping[str, Any], device: str
                   ) -> Optional[tuple[str, str]]:
    """(status message, log line) when frames were dropped from the input queue in the last
    ``seconds``: the node cannot keep up, and the log line says what to change. None when it
    keeps up. ``values`` are the node's parameter values."""
    if new_queue_drops <= 0:
        return None
    message = (f"falling behind: {new_queue_drops} frames dropped from the input queue in the "
               f"last {seconds:.1f} s")
    advice = [f"raise keyframe_min_interval (now {values['keyframe_min_interval']:g} s) or "
              f"keyframe_stride (now {values['keyframe_stride']})",
              f"lower window_size (now {values['window_size']}) or image_size (now "
              f"{values['image_size']}; 0 = the model's)"]
    if values["overlap"] > 1:
        advice.append(f"lower overlap (now {values['overlap']}): each window then brings more "
                      f"new keyframes")
    if not device.startswith("cuda"):
        advice.append("run on a GPU (device:=cuda)")
    log = (f"{message}; processing {keyframes_per_s:.1f} keyframes/s of {offered_per_s:.1f} "
           f"frames/s offered: " + ", ".join(advice))
    return message, log


def latency_values(samples_s: Sequence[float]) -> dict[str, float]:
    """``latency.stamp_to_tf_*``: percentiles of how long after its image stamp each recent
    pose reached /tf (NaN before the first). What a tf2 lookup at the image stamp must wait."""
    keys = ("p50", "p90", "max")
    if not len(samples_s):
        return {f"latency.stamp_to_tf_{k}_s": float("nan") for k in keys}
    p50, p90 = np.percentile(samples_s, [50, 90])
    return {"latency.stamp_to_tf_p50_s": float(p50), "latency.stamp_to_tf_p90_s": float(p90),
            "latency.stamp_to_tf_max_s": float(np.max(samples_s))}
