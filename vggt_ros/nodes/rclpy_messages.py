"""Plain-data messages (``vggt_ros.topics.messages``) -> rclpy messages, at the node's edge.

One generic conversion driven by each message class's own field types, so adding an output
needs no code here. NumPy arrays go in without element-by-element checks: byte and number
sequences become ``array.array`` (rclpy's own storage), fixed-size arrays float64 ndarrays.
"""
from __future__ import annotations

import array
import importlib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosidl_parser.definition import AbstractSequence, Array, BasicType, NamespacedType

from vggt_ros.topics.table import Topic

__all__ = ["message_class", "to_rclpy", "qos_profile"]

# rosidl basic type -> (array.array typecode, NumPy dtype)
_NUMBERS = {
    "uint8": ("B", np.uint8), "int8": ("b", np.int8), "uint16": ("H", np.uint16),
    "int16": ("h", np.int16), "uint32": ("I", np.uint32), "int32": ("i", np.int32),
    "uint64": ("Q", np.uint64), "int64": ("q", np.int64), "float": ("f", np.float32),
    "double": ("d", np.float64),
}


@lru_cache(maxsize=None)
def message_class(msgtype: str) -> type:
    """"sensor_msgs/msg/Image" (or "sensor_msgs/Image") -> the rclpy message class."""
    package, *_, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _namespaced_class(kind: NamespacedType) -> type:
    return getattr(importlib.import_module(".".join(kind.namespaces)), kind.name)


def to_rclpy(msgtype: str | type, fields: Mapping[str, Any]) -> Any:
    """Build the rclpy message of type ``msgtype`` from ``fields`` (nested dicts; missing
    fields keep their defaults, unknown names raise ValueError)."""
    cls = message_class(msgtype) if isinstance(msgtype, str) else msgtype
    kinds = dict(zip(cls.get_fields_and_field_types(), cls.SLOT_TYPES))
    msg = cls()
    for name, value in fields.items():
        if name not in kinds:
            raise ValueError(f"{cls.__name__} has no field {name!r}")
        setattr(msg, name, _value(kinds[name], value))
    return msg


def _value(kind: Any, value: Any) -> Any:
    if isinstance(kind, NamespacedType):
        return to_rclpy(_namespaced_class(kind), value) if isinstance(value, Mapping) else value
    if isinstance(kind, (AbstractSequence, Array)):
        item = kind.value_type
        if isinstance(item, NamespacedType):
            return [_value(item, v) for v in value]
        if isinstance(item, BasicType) and item.typename in _NUMBERS:
            typecode, dtype = _NUMBERS[item.typename]
            values = np.ascontiguousarray(value, dtype=dtype).reshape(-1)
            if isinstance(kind, Array):
                return values
            return array.array(typecode, values.tobytes())
        return list(value)
    if isinstance(kind, BasicType):
        if kind.typename in ("float", "double"):
            return float(value)
        if kind.typename == "boolean":
            return bool(value)
        if kind.typename == "octet":
            return bytes([int(value)])
        return int(value)
    return str(value)


def qos_profile(topic: Topic) -> QoSProfile:
    """The rclpy QoS of an output topic (reliable; latched = transient local)."""
    durability = (DurabilityPolicy.TRANSIENT_LOCAL if topic.latched
                  else DurabilityPolicy.VOLATILE)
    return QoSProfile(depth=topic.depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=durability)
