"""A tiny /tf_static buffer: enough to find the fixed base_frame -> camera optical transform.

tf2_ros (Buffer, TransformListener) is not available with the PyPI ROS wheels, and the node
only needs rigid, time-independent mounts (REP-105: URDF ``base_link -> camera_link ->
camera_optical_frame``), so this keeps each static child's parent and pose and chains them.
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
from geometry_msgs.msg import TransformStamped

from vggt_ros.nodes.conversions import transform_to_pose

__all__ = ["StaticTransforms"]


class StaticTransforms:
    """child frame -> (parent frame, parent_from_child 4x4), from /tf_static messages."""

    def __init__(self) -> None:
        self._edges: dict[str, tuple[str, np.ndarray]] = {}

    def add(self, transforms: Iterable[TransformStamped]) -> None:
        """Store (or replace) each transform; a frame has one parent in a TF tree."""
        for t in transforms:
            self._edges[t.child_frame_id.lstrip("/")] = (t.header.frame_id.lstrip("/"),
                                                         transform_to_pose(t.transform))

    def parent(self, frame: str) -> Optional[str]:
        """The static parent of ``frame``, or None if it has none (yet)."""
        edge = self._edges.get(frame.lstrip("/"))
        return edge[0] if edge else None

    def lookup(self, ancestor: str, frame: str) -> Optional[np.ndarray]:
        """``ancestor_from_frame`` when ``ancestor`` is reached by walking up from ``frame``
        through static transforms; None while that chain is not (yet) known."""
        ancestor, frame = ancestor.lstrip("/"), frame.lstrip("/")
        pose = np.eye(4)
        seen = set()
        while frame != ancestor:
            if frame in seen or frame not in self._edges:
                return None  # incomplete chain (or a loop in malformed input)
            seen.add(frame)
            frame, parent_from_frame = self._edges[frame]
            pose = parent_from_frame @ pose
        return pose
