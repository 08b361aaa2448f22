"""A tree of static frames (``/tf_static``): each child's parent and pose, chained on lookup.

tf2_ros (Buffer, TransformListener) is not available with the PyPI ROS wheels, and only rigid,
time-independent mounts are needed (REP-105: URDF ``base_link -> camera_link ->
camera_optical_frame``). The node fills it from /tf_static messages, the offline mapper from a
bag's /tf_static.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["StaticFrames"]


class StaticFrames:
    """child frame -> (parent frame, parent_from_child 4x4)."""

    def __init__(self) -> None:
        self._edges: dict[str, tuple[str, np.ndarray]] = {}

    def add_edge(self, parent: str, child: str, parent_from_child: np.ndarray) -> None:
        """Store (or replace) an edge; a frame has one parent in a TF tree."""
        self._edges[child.lstrip("/")] = (parent.lstrip("/"),
                                          np.asarray(parent_from_child, dtype=np.float64))

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

    def _root_from(self, frame: str) -> tuple[str, np.ndarray]:
        """(the topmost static ancestor of ``frame``, root_from_frame)."""
        frame = frame.lstrip("/")
        pose = np.eye(4)
        seen = set()
        while frame in self._edges and frame not in seen:
            seen.add(frame)
            frame, parent_from_frame = self._edges[frame]
            pose = parent_from_frame @ pose
        return frame, pose

    def between(self, target: str, source: str) -> Optional[np.ndarray]:
        """``target_from_source`` for any two frames of one static tree (siblings too: a
        depth and a colour optical frame both hang below ``camera_link``); None while they
        are not (yet) connected."""
        target_root, root_from_target = self._root_from(target)
        source_root, root_from_source = self._root_from(source)
        if target_root != source_root:
            return None
        return np.linalg.inv(root_from_target) @ root_from_source
