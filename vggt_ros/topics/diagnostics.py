"""The pipeline's part of the ``/diagnostics`` status, shared by the node and the output bag.

The node adds what only a live process knows (input rates, queue, rejected input, device
memory); the pipeline's chaining result, scale status, resets, map size and stage timings are
reported the same way live and in a mapped bag.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from vggt_ros.pipeline.types import ChainingStatus
from vggt_ros.topics.messages import DIAGNOSTIC_OK, DIAGNOSTIC_WARN

__all__ = ["status_name", "pipeline_status"]


def status_name(node_name: str) -> str:
    """The DiagnosticStatus name, e.g. ``vggt: pipeline``."""
    return f"{node_name}: pipeline"


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
    values["resets"] = stats["resets"]
    values["last_reset_reason"] = stats["last_reset_reason"]
    values["map_points"] = stats["map_points"]
    values.update({f"pipeline.{k}": stats[k] for k in
                   ("frames_in", "keyframes", "dropped_non_keyframes", "windows")})
    values.update({f"timing.{k}_s": v for k, v in stats["timings"].items()})
    return level, message, values
