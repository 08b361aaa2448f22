"""The vggt node's ROS parameters, declared from ``vggt_ros.settings`` (the single definition).

Four checks guard the values, each reported with the parameter's name and what it expects:
1. ROS itself: every parameter is declared with its type and an Integer/FloatingPointRange, so
   a wrong type or out-of-range override fails at declaration or at ``set_parameters``;
   startup-only parameters are declared read-only, so tools show that they cannot change;
2. ``settings.validate``: choices and cross-parameter rules (e.g. overlap < window_size);
3. ``PipelineConfig.validate()``: the pipeline's own rules, not repeated here;
4. the overrides themselves: a name the node does not declare (a typo) fails start-up with a
   suggestion, and a ``-p name:=value`` of the wrong type is reported even when rcl silently
   keeps the ``--params-file`` value instead (it does when both are given).
At startup any failure ends the node with the reason (see ``vggt_node.main``); at runtime
:class:`ExplainedRefusals` words every refusal (unknown name, read-only, type, range, rule)
with the parameter's name and the reason, instead of rclpy's generic texts.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, Optional, Sequence

import yaml

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
    ParameterNotDeclaredException,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

from vggt_ros import settings
from vggt_ros.pipeline.pipeline import PipelineConfig

__all__ = [
    "LIVE_PARAMETERS",
    "ParameterError",
    "UnknownParameter",
    "declare_and_read",
    "command_line_overrides",
    "check",
    "pipeline_config",
    "on_set_callback",
    "refusal",
    "set_startup_parameters_writable",
    "ExplainedRefusals",
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
_EXPECTED = {bool: "a bool (true or false)", int: "an integer",
             float: "a double (write 1.0, not 1)", str: "a string"}


class ParameterError(ValueError):
    """Parameter values the node cannot run with; the message lists every reason."""


class UnknownParameter(ParameterNotDeclaredException):
    """A parameter name the node does not have; the text suggests the closest one (rclpy's
    own says only "Invalid access to undeclared parameter(s): []")."""

    def __init__(self, names: Sequence[str], known: Sequence[str]) -> None:
        super().__init__(list(names))
        self.text = "; ".join(unknown_name(name, known) for name in names)

    def __str__(self) -> str:
        return self.text


def expected(s: settings.Setting) -> str:
    """What a value of ``s`` must be, in words, e.g. "an integer (e.g. 8)"."""
    return f"{_EXPECTED[s.type]} (e.g. {s.default!r})"


def unknown_name(name: str, known: Sequence[str]) -> str:
    """Why ``name`` is refused: not a parameter of this node, and the closest one that is."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{name!r} is not a parameter of this node{hint}"


def _descriptor(s: settings.Setting) -> ParameterDescriptor:
    d = ParameterDescriptor(name=s.name, type=_ROS_TYPES[s.type], description=s.description,
                            read_only=s.name not in LIVE_PARAMETERS)
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


def declare_and_read(node: Node, command_line: Sequence[str] = ()) -> dict[str, Any]:
    """Declare every setting on ``node`` (overrides from yaml / -p apply) and return the values.

    Raises ParameterError naming the parameter and the type it expects when an override has
    the wrong type or is out of range, when an override names no parameter of the node, or when
    ``command_line`` (the process's arguments) has a ``-p`` of the wrong type.
    """
    problems: dict[str, str] = {}  # parameter name -> the first reason found
    overrides = getattr(node, "_parameter_overrides", {})  # rclpy keeps them here only
    for s in settings.SETTINGS:
        try:
            node.declare_parameter(s.name, s.default, _descriptor(s))
        except InvalidParameterTypeException:
            given = overrides[s.name].value if s.name in overrides else None
            problems[s.name] = f"parameter {s.name} must be {expected(s)}, got {given!r}"
        except (InvalidParameterValueException, ParameterException) as err:
            problems[s.name] = f"parameter {s.name}: {err}"
    for name, raw in command_line_overrides(command_line).items():
        s = settings.BY_NAME.get(name)
        value = _yaml_value(raw)
        if s is not None and name not in problems and value is not None and _type_error(s, value):
            problems[name] = (f"-p {name}:={raw}: {name} must be {expected(s)} (rcl kept "
                              f"{node.get_parameter(name).value!r} instead)")
    declared = set(node._parameters)
    for name in overrides:
        if name not in declared and name not in problems and not name.startswith(
                "qos_overrides."):
            problems[name] = unknown_name(name, sorted(declared))
    if problems:
        raise ParameterError("; ".join(problems.values()))
    return {s.name: node.get_parameter(s.name).value for s in settings.SETTINGS}


def command_line_overrides(argv: Sequence[str]) -> dict[str, str]:
    """``-p name:=value`` / ``--param name:=value`` of the ``--ros-args`` sections of
    ``argv`` (a ``node:name:=value`` counts as ``name``), as raw text, last one winning."""
    found: dict[str, str] = {}
    in_ros_args = False
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--ros-args":
            in_ros_args = True
        elif arg == "--":
            in_ros_args = False
        elif in_ros_args and arg in ("-p", "--param") and i + 1 < len(args) and ":=" in args[i + 1]:
            key, raw = args[i + 1].split(":=", 1)
            found[key.rsplit(":", 1)[-1]] = raw
    return found


def _yaml_value(raw: str) -> Any:
    """The value rcl reads from ``-p name:=raw`` (YAML rules)."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _type_error(s: settings.Setting, value: Any) -> bool:
    """Whether ``value`` has the wrong ROS type for ``s`` (an int is no double in ROS)."""
    return type(value) is not s.type


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
    return _own_edge_problem(values)


def _own_edge_problem(values: dict[str, Any]) -> list[str]:
    """Odometry read from /tf must not be the edge this node publishes there itself: the scale
    would measure the node's own output."""
    reads_tf = values.get("scale_source") == "odometry" and not values.get("odom_topic")
    edge = (values.get("odom_tf_parent"), values.get("odom_tf_child"))
    if reads_tf and values.get("tf_mode") == "odom_tree" and values.get("publish_tf") and \
            edge == (values.get("odom_frame"), values.get("base_frame")):
        return [f"odom_topic is empty, so the robot's odometry is read from /tf {edge[0]} -> "
                f"{edge[1]}, which this node publishes itself (odom_frame, base_frame, tf_mode "
                f"odom_tree): set tf_mode separate_odom with another odom_frame, or odom_topic"]
    return []


def on_set_callback(current: Callable[[], dict[str, Any]]
                    ) -> Callable[[list[Parameter]], SetParametersResult]:
    """An ``add_on_set_parameters_callback`` validator; ``current()`` returns the live values."""

    def validate(params: list[Parameter]) -> SetParametersResult:
        values = dict(current())
        for p in params:
            if p.name not in settings.BY_NAME:
                continue  # not ours (e.g. use_sim_time): rclpy handles it
            values[p.name] = p.value
        problems = check(values)
        return SetParametersResult(successful=not problems, reason="; ".join(problems))

    return validate


def refusal(name: str, value: Any, known: Sequence[str],
            read_only: Optional[bool] = None) -> Optional[str]:
    """Why a runtime change of ``name`` to ``value`` is refused, naming both (None: allowed by
    the per-parameter rules; cross-parameter rules are the on-set callback's). ``read_only``:
    whether the parameter is read-only now (None: unless it is live)."""
    s = settings.BY_NAME.get(name)
    if s is None:
        return None if name in known else unknown_name(name, known)
    if name not in LIVE_PARAMETERS if read_only is None else read_only:
        return (f"{name} is read at startup only (read-only); restart the node to change it, "
                f"or deactivate and clean it up (lifecycle), set it, then configure "
                f"(runtime-changeable: {', '.join(sorted(LIVE_PARAMETERS))})")
    if _type_error(s, value):
        return f"{name} must be {expected(s)}, got {value!r}"
    return s.check(value)


def set_startup_parameters_writable(node: Node, writable: bool) -> None:
    """Open (unconfigured lifecycle node) or close (configured) the startup-only parameters.

    A managed node reads them at ``configure``; between ``cleanup`` and the next ``configure``
    nothing uses them, so that is when a lifecycle manager may change them (a new checkpoint,
    another window size). Their descriptors say which holds now.
    """
    for s in settings.SETTINGS:
        if s.name not in LIVE_PARAMETERS:
            node._descriptors[s.name].read_only = not writable


class ExplainedRefusals:
    """Mixin for an rclpy Node: every refused parameter change names the parameter and says
    why. rclpy checks descriptors before any callback and words them generically ("Wrong
    parameter type, expected 'Type.INTEGER' got 'Type.DOUBLE'"; "undeclared parameter(s): []"),
    so the one method both ``set_parameters`` and the parameter services go through is wrapped.
    """

    def _set_parameters_atomically(self, parameter_list: list[Parameter]) -> SetParametersResult:
        known = sorted(self._parameters)
        unknown = [p.name for p in parameter_list if p.name not in self._parameters]
        if unknown:
            raise UnknownParameter(unknown, known)
        result = super()._set_parameters_atomically(parameter_list)
        if not result.successful:
            reasons = [r for p in parameter_list
                       if (r := refusal(p.name, p.value, known,
                                        self._descriptors[p.name].read_only))]
            result.reason = "; ".join(reasons) or result.reason
        return result
