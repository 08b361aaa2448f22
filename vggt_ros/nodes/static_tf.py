"""The node's /tf_static buffer: enough to find the fixed base_frame -> camera optical transform
(the chaining itself is ``geometry.frames.StaticFrames``; this adds the rclpy messages)."""
from __future__ import annotations

from typing import Iterable

from geometry_msgs.msg import TransformStamped

from vggt_ros.geometry.frames import StaticFrames
from vggt_ros.nodes.conversions import transform_to_pose

__all__ = ["StaticTransforms"]


class StaticTransforms(StaticFrames):
    """child frame -> (parent frame, parent_from_child 4x4), from /tf_static messages."""

    def add(self, transforms: Iterable[TransformStamped]) -> None:
        """Store (or replace) each transform; a frame has one parent in a TF tree."""
        for t in transforms:
            self.add_edge(t.header.frame_id, t.child_frame_id, transform_to_pose(t.transform))
