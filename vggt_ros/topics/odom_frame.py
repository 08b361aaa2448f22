"""The REP-105 ``odom`` frame that every published pose, cloud and track point is expressed in.

The pipeline chains windows in its own frame: the first keyframe's camera OPTICAL frame (z
forward, y down). Published as it is, a robot would appear to lie on its side and planar motion
would happen in odom's x-z plane. REP-105 wants odom to be a world-fixed frame with z up in
which the robot's pose is continuous, and by convention ``odom -> base_link`` starts at
identity. So the outputs use one rigid re-anchoring, fixed when a trajectory's first pose is
published::

    odom_from_pipeline = body_from_cam @ inverse(pipeline_from_cam(first keyframe))

where ``body`` is the frame whose pose is published:

* ``base_frame`` set (a robot with a URDF): ``body`` is the base frame and ``body_from_cam`` the
  camera mount read from ``/tf_static``. odom is the initial base pose, and its z is up
  whenever the base's is (the mount says where down is).
* ``base_frame`` empty (a bare camera): ``body`` is a camera-body frame the node owns,
  ``<optical frame>_body``, rotated from the optical frame as REP-103 rotates a camera link
  (x forward, y left, z up). odom is the initial camera-body pose, so it is level when the
  camera starts level. The node also publishes the static ``body -> optical`` edge, unless the
  optical frame already has a parent on ``/tf_static`` (a URDF): it never gives a frame a
  second parent.

Every trajectory reset re-anchors: the new trajectory's odom is its own first pose again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from vggt_ros.geometry.camera import se3_inverse

__all__ = ["BODY_FROM_OPTICAL", "Mount", "MountLookup", "camera_body_frame", "camera_body_mount",
           "OdomAnchor"]

# REP-103: an optical frame (x right, y down, z forward) as seen from its body frame (x forward,
# y left, z up).
BODY_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0, 0.0],
                              [-1.0, 0.0, 0.0, 0.0],
                              [0.0, -1.0, 0.0, 0.0],
                              [0.0, 0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Mount:
    """Where a camera sits on the body whose pose is published."""

    body_frame: str
    body_from_cam: np.ndarray  # 4x4 rigid: the optical frame's pose in the body frame
    owns_edge: bool  # the node publishes ``body -> optical`` itself (camera-body mode)


# optical frame id -> its Mount, or None while it is not known (e.g. /tf_static not yet seen).
MountLookup = Callable[[str], Optional[Mount]]


def camera_body_frame(optical_frame: str) -> str:
    """The camera-body frame the node owns for ``optical_frame``: a name no URDF uses."""
    return f"{optical_frame}_body"


def camera_body_mount(optical_frame: str) -> Mount:
    """The mount of a bare camera: its own body frame, REP-103 rotation, no offset."""
    return Mount(camera_body_frame(optical_frame), BODY_FROM_OPTICAL, owns_edge=True)


class OdomAnchor:
    """``odom_from_pipeline`` of the current trajectory (module docstring); None until the
    trajectory's first pose is published."""

    def __init__(self) -> None:
        self.odom_from_pipeline: Optional[np.ndarray] = None

    def restart(self) -> None:
        """A new trajectory: its first published pose will be the new odom origin."""
        self.odom_from_pipeline = None

    def body_pose(self, mount: Mount, pipeline_from_cam: np.ndarray) -> np.ndarray:
        """``odom_from_body`` of a keyframe; the first call of a trajectory fixes the anchor,
        so that pose is exactly identity."""
        cam_from_body = se3_inverse(mount.body_from_cam)
        if self.odom_from_pipeline is None:
            self.odom_from_pipeline = mount.body_from_cam @ se3_inverse(pipeline_from_cam)
            return np.eye(4)
        return self.odom_from_pipeline @ pipeline_from_cam @ cam_from_body

    def points(self, points: np.ndarray) -> np.ndarray:
        """[N,3] pipeline points in odom (float64 math, the caller's dtype). Requires an
        anchor."""
        if self.odom_from_pipeline is None:
            raise RuntimeError("no odom anchor yet")
        rotation, translation = self.odom_from_pipeline[:3, :3], self.odom_from_pipeline[:3, 3]
        moved = np.asarray(points, dtype=np.float64) @ rotation.T + translation
        return moved.astype(np.asarray(points).dtype, copy=False)
