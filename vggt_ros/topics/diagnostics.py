"""The pipeline's part of the ``/diagnostics`` status, shared by the node and the output bag.

The node adds what only a live process knows (input rates, queue, rejected input, device
memory); the pipeline's chaining result, scale status, resets, map size and stage timings are
reported the same way live and in a mapped bag. ``scale`` is ``metric`` only while a source is
active and healthy; a depth or odometry source that is not (yet) raises the level to WARN and
says why, since odometry in unknown units must not be fused as metres.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from vggt_ros.pipeline.types import ChainingStatus
from vggt_ros.topics.messages import DIAGNOSTIC_OK, DIAGNOSTIC_WARN

__all__ = ["status_name", "hardware_id", "pipeline_status", "falling_behind", "latency_values"]

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


def pipeline_status(chaining: Optional[ChainingStatus], stats: Mapping[str, Any]
                    ) -> tuple[int, str, dict[str, Any]]:
    """(level, message, values) from the last window's chaining (None before the first
    window) and ``Pipeline.stats``. A chaining warning raises the level to WARN."""
    level, message, values = DIAGNOSTIC_OK, "running", {}
    if chaining is not None:
        values.update({"chaining.method": chaining.method, "chaining.scale": chaining.scale,
                       "chaining.residual": chaining.residual,
                       "chaining.inlier_ratio": chaining.inlier_ratio,
                       "chaining.num_points": chaining.num_points,
                       "chaining.warning": chaining.warning})
        if chaining.warning:
            level, message = DIAGNOSTIC_WARN, f"chaining: {chaining.warning}"
    else:
        message = "waiting for the first window"
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
                   ("frames_in", "keyframes", "dropped_non_keyframes", "windows")})
    values.update({f"timing.{k}_s": v for k, v in stats["timings"].items()})
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
