"""The lifecycle part of the node's /diagnostics: its state, what start-up cost, what failed.

Why a record of its own: an operator (or a lifecycle manager's log) must be able to tell from
/diagnostics alone whether the node is waiting to be configured, configured but inactive,
processing, or stuck after a failed transition, and how long its start-up took (model load and
warm-up). The node fills a :class:`StartupRecord`; this module words it, without rclpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vggt_ros.topics.messages import DIAGNOSTIC_ERROR, DIAGNOSTIC_OK

__all__ = ["StartupRecord", "lifecycle_values", "idle_status"]


@dataclass
class StartupRecord:
    """What the last ``configure`` did (NaN: not measured yet) and the last transition error."""

    configure_s: float = math.nan
    model_load_s: float = math.nan
    warmup_s: float = math.nan
    warmup: str = "none"  # WarmupReport.summary(), or why there was none
    last_error: str = ""  # "<transition> failed: <reason>", cleared by a successful configure


def lifecycle_values(state: str, record: StartupRecord) -> dict[str, Any]:
    """The diagnostics values every status carries, whatever the state."""
    return {"lifecycle_state": state, "startup.configure_s": record.configure_s,
            "startup.model_load_s": record.model_load_s, "startup.warmup_s": record.warmup_s,
            "startup.warmup": record.warmup, "lifecycle.last_error": record.last_error}


def idle_status(state: str, record: StartupRecord) -> tuple[int, str]:
    """(level, message) while the node is not processing. A failed transition is an ERROR
    until a configure succeeds: the node is in a defined state, but not the one asked for."""
    if record.last_error:
        return DIAGNOSTIC_ERROR, f"{state}: {record.last_error}"
    if state == "unconfigured":
        return DIAGNOSTIC_OK, "unconfigured: waiting for configure"
    if state == "inactive":
        return DIAGNOSTIC_OK, "inactive: configured and warmed up, waiting for activate"
    if state == "configuring":
        return DIAGNOSTIC_OK, "configuring: loading the model and warming it up"
    return DIAGNOSTIC_OK, state
