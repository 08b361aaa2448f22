"""ROS 2 messages as plain dicts for rosbags (no ROS installation needed).

Why dicts: the offline writers (``vggt_synth``, the mapper's output bag) describe messages as
nested dicts of NumPy arrays and integers; :func:`build_message` turns them into typestore
objects, filling missing fields with ROS defaults and refusing unknown field names, so a typo
fails loudly instead of writing an empty field. :class:`BagError` is the one exception the
bag readers and writers raise, with a message naming the bag, topic and problem.
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Optional

import numpy as np
from rosbags.interfaces import Nodetype
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from vggt_ros.io.stamps import split_ns

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
_NUMPY_DTYPES = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "uint8": np.uint8, "int8": np.int8,
    "uint16": np.uint16, "int16": np.int16, "uint32": np.uint32, "int32": np.int32,
    "uint64": np.uint64, "int64": np.int64, "float32": np.float32, "float64": np.float64,
}


class BagError(RuntimeError):
    """A bag cannot be read or written as asked (message says which bag/topic and why)."""


@lru_cache(maxsize=1)
def typestore() -> Typestore:
    """The ROS 2 Kilted type store (its hashes match the rclpy wheels we run against)."""
    return get_typestore(Stores.ROS2_KILTED)


def build_message(msgtype: str, fields: Any = None, ts: Optional[Typestore] = None) -> Any:
    """A typestore message object from a (nested) dict; objects pass through unchanged.

    Missing fields take ROS defaults (0, "", empty or zero-filled arrays, default nested
    messages). ``builtin_interfaces/msg/Time`` and ``Duration`` fields also accept integer
    nanoseconds. Unknown field names raise ``ValueError`` instead of being dropped.
    """
    ts = ts or typestore()
    if fields is not None and not isinstance(fields, Mapping):
        return fields
    if msgtype not in ts.fielddefs:
        raise ValueError(f"unknown message type {msgtype!r}")
    remaining = dict(fields or {})
    kwargs = {}
    for name, (node, detail) in ts.fielddefs[msgtype][1]:
        kwargs[name] = _field(node, detail, remaining.pop(name, None), ts, f"{msgtype}.{name}")
    if remaining:
        raise ValueError(f"{msgtype} has no field(s) {sorted(remaining)}")
    return ts.types[msgtype](**kwargs)


def _field(node: int, detail: Any, value: Any, ts: Typestore, where: str) -> Any:
    if node == Nodetype.BASE:
        return _scalar(detail[0], value, where)
    if node == Nodetype.NAME:
        if detail in ("builtin_interfaces/msg/Time", "builtin_interfaces/msg/Duration") and \
                isinstance(value, (int, np.integer)):
            value = dict(zip(("sec", "nanosec"), split_ns(value)))
        return build_message(detail, value, ts)
    (sub_node, sub_detail), size = detail
    if sub_node == Nodetype.BASE and sub_detail[0] in _NUMPY_DTYPES:
        arr = np.asarray([] if value is None else value, dtype=_NUMPY_DTYPES[sub_detail[0]])
        if value is None and node == Nodetype.ARRAY:
            arr = np.zeros(size, dtype=arr.dtype)
        arr = arr.ravel()
        if node == Nodetype.ARRAY and arr.size != size:
            raise ValueError(f"{where} needs exactly {size} values, got {arr.size}")
        return arr
    items = list(value) if value is not None else [None] * (size if node == Nodetype.ARRAY
                                                            else 0)
    if node == Nodetype.ARRAY and len(items) != size:
        raise ValueError(f"{where} needs exactly {size} items, got {len(items)}")
    return [_field(sub_node, sub_detail, item, ts, where) for item in items]


def _scalar(kind: str, value: Any, where: str) -> Any:
    if kind == "string" or kind == "wstring":
        return "" if value is None else str(value)
    if kind == "bool":
        return bool(value)
    if kind.startswith("float"):
        return 0.0 if value is None else float(value)
    if kind in _NUMPY_DTYPES:
        return 0 if value is None else int(value)
    raise ValueError(f"{where}: unsupported field type {kind!r}")
