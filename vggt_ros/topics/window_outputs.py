"""Which messages a processed window produces, in the order the node publishes them.

Per new keyframe: ``depth``, ``depth/camera_info``, ``depth/confidence`` and, when a pose can
be given for it, ``/tf`` (the keyframe also joins the path). Per window: ``points``, then
``odometry`` of the newest keyframe and the ``path`` so far. The live node and the output bag
both take their messages from here; the node filters them by its ``publish_*`` switches.

Messages are returned as :class:`Output` with a ``build`` function rather than built: the node
builds only what it publishes, and a message that cannot be built (``ValueError``, e.g. a
predicted K with NaN) is skipped and counted by the caller without losing the others.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from vggt_ros.pipeline.types import KeyframeResult, WindowResult
from vggt_ros.topics import messages

__all__ = ["Output", "ChildPose", "optical_pose", "WindowOutputs"]

# (frame, odom_from_frame) of a keyframe for TF and odometry, or None while unknown.
ChildPose = Callable[[KeyframeResult], Optional[tuple[str, np.ndarray]]]


@dataclass(frozen=True)
class Output:
    topic: str  # a name of vggt_ros.topics.table.OUTPUTS
    stamp_ns: int
    build: Callable[[], messages.Message]


def optical_pose(kf: KeyframeResult) -> tuple[str, np.ndarray]:
    """The camera optical frame's own pose (no base_frame)."""
    return kf.frame_id, kf.odom_from_cam


class WindowOutputs:
    """Turns WindowResults into Outputs; keeps the path, which ``restart_path`` empties when
    the pipeline starts a new trajectory.

    ``child_pose`` picks the frame whose pose goes on TF and odometry (the node composes
    base_frame from /tf_static); ``on_bad_pose`` hears about a non-finite pose, which is left
    out of TF, odometry and the path.
    """

    def __init__(self, odom_frame: str, child_pose: ChildPose = optical_pose,
                 on_bad_pose: Callable[[str], None] = lambda reason: None) -> None:
        self.odom_frame = odom_frame
        self._child_pose = child_pose
        self._on_bad_pose = on_bad_pose
        self._path: list[messages.Message] = []

    def restart_path(self) -> None:
        self._path = []

    def window(self, result: WindowResult) -> list[Output]:
        outputs: list[Output] = []
        newest = None
        for kf in result.new_keyframes:
            newest = self._keyframe(kf, outputs)
        stamp = result.stamps_ns[-1]
        odom = self.odom_frame
        outputs.append(Output("points", stamp, lambda: messages.pointcloud(
            result.points, result.colors, stamp, odom)))
        if newest is not None:
            frame, pose, kf_stamp = newest
            outputs.append(Output("odometry", kf_stamp, lambda: messages.odometry(
                pose, kf_stamp, odom, frame)))
        poses = list(self._path)
        outputs.append(Output("path", stamp, lambda: messages.path(poses, stamp, odom)))
        return outputs

    def map(self, points: np.ndarray, colors: np.ndarray, stamp_ns: int) -> Output:
        """The accumulated map, stamped with the last window's newest keyframe."""
        return Output("map_points", stamp_ns, lambda: messages.pointcloud(
            points, colors, stamp_ns, self.odom_frame))

    def _keyframe(self, kf: KeyframeResult, outputs: list[Output]
                  ) -> Optional[tuple[str, np.ndarray, int]]:
        """Append the keyframe's outputs; returns (frame, odom_from_frame, stamp) for the
        odometry, or None when no pose can be given for it."""
        stamp, frame_id, odom = kf.stamp_ns, kf.frame_id, self.odom_frame
        height, width = kf.depth.shape
        outputs += [
            Output("depth", stamp, lambda: messages.float_image(kf.depth, stamp, frame_id)),
            Output("depth/camera_info", stamp, lambda: messages.camera_info(
                kf.intrinsics, width, height, stamp, frame_id)),
            Output("depth/confidence", stamp, lambda: messages.float_image(
                kf.confidence, stamp, frame_id)),
        ]
        child = self._child_pose(kf)
        if child is None:
            return None
        frame, pose = child
        if not np.isfinite(pose).all():
            self._on_bad_pose(f"non-finite pose for keyframe {stamp}")
            return None
        outputs.append(Output("/tf", stamp, lambda: messages.tf_message(pose, stamp, odom,
                                                                        frame)))
        self._path.append(messages.pose_stamped(pose, stamp, odom))
        return frame, pose, stamp
