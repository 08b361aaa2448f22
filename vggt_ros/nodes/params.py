"""The vggt node's ROS parameters, declared from ``vggt_ros.settings`` (the single definition).

Three checks guard the values, each reported as a human-readable reason:
1. ROS itself: every parameter is declared with its type and an Integer/FloatingPointRange, so
   a wrong type or out-of-range override fails at declaration or at ``set_parameters``;
2. ``settings.validate``: choices and cross-parameter rules (e.g. overlap < window_size);
3. ``PipelineConfig.validate()``: the pipeline's own rules, not repeated here.
At startup any failure ends the node with the reason (see ``vggt_node.main``); at runtime the
on-set callback rejects it, and also rejects changes to parameters that only take effect at
construction (model, window geometry, frames), instead of silently ignoring them.
"""
from __future__ import annotations

from typing import Any, Callable

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterException,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

from vggt_ros import settings
from vggt_ros.pipeline.pipeline import PipelineConfig

__all__ = [
    "LIVE_PARAMETERS",
    "ParameterError",
    "declare_and_read",
    "check",
    "pipeline_config",
    "on_set_callback",
]

# Parameters read on every use (publishing switches and timer periods); all others are read
# once when the node is built, so changing them live is refused.
LIVE_PARAMETERS = frozenset({
    "publish_tf", "publish_depth", "publish_points", "publish_map",
    "map_publish_period", "diagnostics_period", "idle_flush_timeout",
})

_ROS_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}
_INT64_MAX = 2**63 - 1


class ParameterError(ValueError):
    """Parameter values the node cannot run with; the message lists every reason."""


def _descriptor(s: settings.Setting) -> ParameterDescriptor:
    d = ParameterDescriptor(name=s.name, type=_ROS_TYPES[s.type], description=s.description,
                            read_only=False)
    if s.choices:
        d.additional_constraints = "one of: " + ", ".join(map(str, s.choices))
    if s.name not in LIVE_PARAMETERS:
        d.additional_constraints = (d.additional_constraints + "; " if s.choices else "") + \
            "read at startup only"
    if s.type is int and (s.min is not None or s.max is not None):
        d.integer_range = [IntegerRange(
            from_value=int(s.min if s.min is not None else -_INT64_MAX),
            to_value=int(s.max if s.max is not None else _INT64_MAX), step=0)]
    elif s.type is float and (s.min is not None or s.max is not None):
        d.floating_point_range = [FloatingPointRange(
            from_value=float(s.min if s.min is not None else float("-inf")),
            to_value=float(s.max if s.max is not None else float("inf")), step=0.0)]
    return d


def declare_and_read(node: Node) -> dict[str, Any]:
    """Declare every setting on ``node`` (overrides from yaml / -p apply) and return the values.

    Raises ParameterError naming the parameter when an override has the wrong type or is out
    of range; rclpy's own exceptions say this less clearly.
    """
    for s in settings.SETTINGS:
        try:
            node.declare_parameter(s.name, s.default, _descriptor(s))
        except InvalidParameterTypeException as err:
            raise ParameterError(f"parameter {s.name} must be a {s.type.__name__} "
                                 f"(e.g. {s.default!r}): {err}") from err
        except (InvalidParameterValueException, ParameterException) as err:
            raise ParameterError(f"parameter {s.name}: {err}") from err
    return {s.name: node.get_parameter(s.name).value for s in settings.SETTINGS}


def pipeline_config(values: dict[str, Any]) -> PipelineConfig:
    """The PipelineConfig of these parameter values (the ``pipeline`` group, same names)."""
    return PipelineConfig.from_settings(values)


def check(values: dict[str, Any]) -> list[str]:
    """Every reason these values are unusable (empty list = fine)."""
    problems = settings.validate(values)
    if problems:
        return problems
    try:
        pipeline_config(values).validate()
    except (TypeError, ValueError) as err:
        return [str(err)]
    return []


def on_set_callback(current: Callable[[], dict[str, Any]]
                    ) -> Callable[[list[Parameter]], SetParametersResult]:
    """An ``add_on_set_parameters_callback`` validator; ``current()`` returns the live values."""

    def validate(params: list[Parameter]) -> SetParametersResult:
        values = dict(current())
        for p in params:
            if p.name not in settings.BY_NAME:
                continue  # not ours (e.g. use_sim_time): rclpy handles it
            if p.name not in LIVE_PARAMETERS and p.value != values.get(p.name):
                return SetParametersResult(
                    successful=False,
                    reason=f"{p.name} is read at startup only; restart the node to change it "
                           f"(runtime-changeable: {', '.join(sorted(LIVE_PARAMETERS))})")
            values[p.name] = p.value
        problems = check(values)
        return SetParametersResult(successful=not problems, reason="; ".join(problems))

    return validate
