"""Which messages a processed window produces, in the order the node publishes them.

Per new keyframe: ``depth``, ``depth/camera_info``, ``depth/confidence`` and, when a pose can
be given for it, ``/tf`` as ``tf_mode`` says (the keyframe also joins the path). The first pose
of a trajectory in camera-body mode also brings the static ``body -> optical`` edge on
``/tf_static``. Per window: ``points``, then ``odometry`` of the newest keyframe (with the
covariance of ``pipeline/covariance.py`` and the twist from the keyframe before it) and the
``path`` so far.

``tf_mode`` (why: a robot with wheel odometry already has ``odom -> base_link``, and a frame
may have only one parent):

* ``odom_tree``: ``odom_frame -> body``, the node owns the odom tree;
* ``separate_odom``: ``body -> odom_frame``, the inverse edge: ``odom_frame`` (e.g.
  ``vggt_odom``) hangs below the robot's body, so VGGT's path and clouds show where they belong
  while ``base_link`` keeps its one parent;
* ``odometry_only``: no pose on ``/tf``; the ``odometry`` message is for a fusion node
  (robot_localization) that publishes the tree. The live node and
the output bag both take their messages from here; the node filters them by its ``publish_*``
switches.

Poses and clouds are re-anchored into the REP-105 odom frame (``topics.odom_frame``): nothing
placed in odom is output before the trajectory's first pose is known, because before that odom
is not defined (base_frame mode waiting for the camera mount).

Messages are returned as :class:`Output` with a ``build`` function rather than built: the node
builds only what it publishes, and a message that cannot be built (``ValueError``, e.g. a
predicted K with NaN) is skipped and counted by the caller without losing the others.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from scipy.spatial.transform import Rotation

from vggt_ros.geometry.camera import se3_inverse
from vggt_ros.pipeline.covariance import pose_covariance, twist_covariance
from vggt_ros.pipeline.types import KeyframeResult, WindowResult
from vggt_ros.topics import messages
from vggt_ros.topics.odom_frame import MountLookup, OdomAnchor, camera_body_mount

__all__ = ["Output", "WindowOutputs", "TF_MODES"]

TF_MODES = ("odom_tree", "separate_odom", "odometry_only")


@dataclass(frozen=True)
class Output:
    topic: str  # a name of vggt_ros.topics.table.OUTPUTS
    stamp_ns: int
    build: Callable[[], messages.Message]


class WindowOutputs:
    """Turns WindowResults into Outputs; keeps the path and the odom anchor, which
    ``restart_trajectory`` forgets when the pipeline starts a new trajectory.

    ``mount`` says which frame's pose goes on TF and odometry (the node composes base_frame
    from /tf_static; the default is the camera-body frame); ``on_bad_pose`` hears about a pose
    that is left out of TF, odometry and the path (non-finite, or not newer than the last one:
    TF never goes backwards in time within a trajectory).
    """

    def __init__(self, odom_frame: str, mount: MountLookup = camera_body_mount,
                 on_bad_pose: Callable[[str], None] = lambda reason: None,
                 tf_mode: str = "odom_tree") -> None:
        if tf_mode not in TF_MODES:
            raise ValueError(f"tf_mode must be one of {TF_MODES}, got {tf_mode!r}")
        self.tf_mode = tf_mode
        self.odom_frame = odom_frame
        self._mount = mount
        self._on_bad_pose = on_bad_pose
        self.anchor = OdomAnchor()
        self._path: list[messages.Message] = []
        self._last_pose_stamp: Optional[int] = None
        self._before_last: Optional[tuple[np.ndarray, int]] = None  # (odom_from_body, stamp)
        self._last: Optional[tuple[np.ndarray, int]] = None

    def restart_trajectory(self) -> None:
        self._path = []
        self.anchor.restart()
        self._last_pose_stamp = None
        self._before_last = self._last = None

    def window(self, result: WindowResult) -> list[Output]:
        outputs: list[Output] = []
        newest = None
        for kf in result.new_keyframes:
            newest = self._keyframe(kf, outputs) or newest
        if self.anchor.odom_from_pipeline is None:
            return outputs  # odom not defined yet: only the optical-frame depth outputs
        stamp = result.stamps_ns[-1]
        odom = self.odom_frame
        points = self.anchor.points(result.points)
        outputs.append(Output("points", stamp, lambda: messages.pointcloud(
            points, result.colors, stamp, odom)))
        if newest is not None:
            frame, pose, kf_stamp = newest
            covariance, twist, twist_cov = self._odometry_extras(result)
            outputs.append(Output("odometry", kf_stamp, lambda: messages.odometry(
                pose, kf_stamp, odom, frame, covariance, twist, twist_cov)))
        poses = list(self._path)
        outputs.append(Output("path", stamp, lambda: messages.path(poses, stamp, odom)))
        return outputs

    def _odometry_extras(self, result: WindowResult) -> tuple[Optional[np.ndarray], Optional[
            tuple[np.ndarray, np.ndarray]], Optional[np.ndarray]]:
        """(pose covariance, twist, twist covariance) of the newest pose; the twist is the
        body's motion since the keyframe before it, in the body frame (None for a
        trajectory's first pose)."""
        uncertainty = result.uncertainty
        covariance = pose_covariance(uncertainty) if uncertainty is not None else None
        if self._before_last is None:
            return covariance, None, None
        (previous, t0), (current, t1) = self._before_last, self._last
        dt = (t1 - t0) / 1e9
        step = se3_inverse(previous) @ current
        linear = current[:3, :3].T @ (current[:3, 3] - previous[:3, 3]) / dt
        angular = Rotation.from_matrix(step[:3, :3]).as_rotvec() / dt
        twist_cov = twist_covariance(uncertainty, dt) if uncertainty is not None else None
        return covariance, (linear, angular), twist_cov

    def map(self, points: np.ndarray, colors: np.ndarray, stamp_ns: int) -> Optional[Output]:
        """The accumulated map (pipeline frame) in odom, stamped with the last window's newest
        keyframe; None while odom is not defined."""
        if self.anchor.odom_from_pipeline is None:
            return None
        points = self.anchor.points(points)
        return Output("map_points", stamp_ns, lambda: messages.pointcloud(
            points, colors, stamp_ns, self.odom_frame))

    def to_odom(self, points: np.ndarray) -> Optional[np.ndarray]:
        """Pipeline points (e.g. tracked query points) in odom; None while it is not defined."""
        if self.anchor.odom_from_pipeline is None:
            return None
        return self.anchor.points(points)

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
        mount = self._mount(frame_id)
        if mount is None:
            return None
        if not np.isfinite(kf.odom_from_cam).all():
            self._on_bad_pose(f"non-finite pose for keyframe {stamp}")
            return None
        if self._last_pose_stamp is not None and stamp <= self._last_pose_stamp:
            self._on_bad_pose(f"keyframe {stamp} ns is not newer than the last pose "
                              f"({self._last_pose_stamp} ns): TF must not go back in time")
            return None
        first = self.anchor.odom_from_pipeline is None
        pose = self.anchor.body_pose(mount, kf.odom_from_cam)
        self._last_pose_stamp = stamp
        self._before_last, self._last = self._last, (pose, stamp)
        body = mount.body_frame
        if first and mount.owns_edge:
            outputs.append(Output("/tf_static", stamp, lambda: messages.tf_message(
                mount.body_from_cam, stamp, body, frame_id)))
        if self.tf_mode == "odom_tree":
            outputs.append(Output("/tf", stamp, lambda: messages.tf_message(pose, stamp, odom,
                                                                            body)))
        elif self.tf_mode == "separate_odom":
            outputs.append(Output("/tf", stamp, lambda: messages.tf_message(
                se3_inverse(pose), stamp, body, odom)))
        self._path.append(messages.pose_stamped(pose, stamp, odom))
        return body, pose, stamp
