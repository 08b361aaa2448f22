"""The scale sensors' data matched to colour frames by stamp, for the node and the mapper.

A depth camera and wheel odometry are separate streams with their own rates and clocks'
jitter, so a colour frame gets:

* the depth image whose stamp is nearest to its own, if it is within ``tolerance`` (a depth
  image from another moment shows another view: its scale ratio would be wrong). Depth
  registered to the colour camera (same size and frame_id, drivers call it
  aligned_depth_to_color or depth_registered) is used as is; any other depth is reprojected
  into the colour camera (``depth_registration``) with the depth image's own CameraInfo, the
  colour CameraInfo and the static transform colour optical <- depth optical from TF. Without
  one of those the frame gets no depth and the problem says which is missing;
* the robot's odometry pose at its stamp, interpolated between the two odometry samples around
  it (linear position, slerp rotation) when they are at most ``max_gap`` apart, and carried to
  the camera through the static mount ``base -> camera`` (the camera does not sit at the base's
  origin, and the base's rotation moves it).

Every reason a frame does not get its data is returned as a ``(kind, reason)`` problem, which
the node counts in ``/diagnostics`` (``rejected.<kind>``) and the mapper in its summary; the
frame itself always goes on (the scale filter then keeps the previous scale and says so).
"""
from __future__ import annotations

import bisect
import threading
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable, Generic, Optional, TypeVar

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from vggt_ros.pipeline.depth_registration import reproject_depth
from vggt_ros.pipeline.types import CameraIntrinsics, Frame

__all__ = ["StampedBuffer", "DepthImage", "OdometryTrack", "SensorMatcher", "Problem",
           "DEPTH_PROBLEMS", "ODOMETRY_PROBLEMS", "camera_info_topic_of"]

T = TypeVar("T")
Problem = tuple[str, str]  # (kind, reason)
DEPTH_PROBLEMS = ("depth_unmatched", "depth_no_camera_info", "depth_no_extrinsic")
ODOMETRY_PROBLEMS = ("odometry_unmatched", "odometry_no_mount")
# base frame -> camera optical frame -> base_from_camera (None while unknown)
MountLookup = Callable[[str, str], Optional[np.ndarray]]
# colour optical frame, depth optical frame -> colour_from_depth (None while unknown)
ExtrinsicLookup = Callable[[str, str], Optional[np.ndarray]]


def camera_info_topic_of(image_topic: str, explicit: str = "") -> str:
    """The CameraInfo topic of an image topic: ``explicit`` if set, else the image topic's
    sibling ``camera_info`` (image_transport's rule: /camera/depth/image_raw ->
    /camera/depth/camera_info)."""
    if explicit:
        return explicit
    namespace, _, _ = image_topic.rpartition("/")
    return f"{namespace}/camera_info" if namespace or image_topic.startswith("/") else "camera_info"


class StampedBuffer(Generic[T]):
    """The newest ``max_items`` items by stamp, searched by nearest stamp; thread-safe (the
    node's callbacks add, its worker reads)."""

    def __init__(self, max_items: int) -> None:
        self._items: deque[tuple[int, T]] = deque(maxlen=max_items)
        self._cond = threading.Condition()

    def add(self, stamp_ns: int, item: T) -> None:
        with self._cond:
            self._items.append((int(stamp_ns), item))
            self._cond.notify_all()

    def newest_stamp(self) -> Optional[int]:
        with self._cond:
            return max((s for s, _ in self._items), default=None)

    def nearest(self, stamp_ns: int, tolerance_ns: int) -> Optional[T]:
        """The item nearest to ``stamp_ns`` if at most ``tolerance_ns`` away, else None."""
        with self._cond:
            if not self._items:
                return None
            found_stamp, item = min(self._items, key=lambda pair: abs(pair[0] - stamp_ns))
        return item if abs(found_stamp - stamp_ns) <= tolerance_ns else None

    def wait_until(self, stamp_ns: int, timeout_s: float) -> bool:
        """Block until an item stamped ``stamp_ns`` or later is in (True) or ``timeout_s``
        passed (False): the depth of a colour frame often arrives a few ms after it."""
        with self._cond:
            return self._cond.wait_for(
                lambda: any(s >= stamp_ns for s, _ in self._items), timeout_s)


@dataclass(frozen=True)
class DepthImage:
    depth_m: np.ndarray  # HxW float32 metres, NaN where the sensor has no reading
    frame_id: str
    intrinsics: Optional[CameraIntrinsics] = None  # the depth image's own CameraInfo


class OdometryTrack:
    """The robot's ``odom_from_base`` poses by stamp, interpolated (module docstring)."""

    def __init__(self, max_gap_ns: int, max_samples: int = 100_000) -> None:
        self.max_gap_ns = int(max_gap_ns)
        self._stamps: deque[int] = deque(maxlen=max_samples)
        self._poses: deque[np.ndarray] = deque(maxlen=max_samples)
        self.base_frame = ""  # child_frame_id of the odometry
        self._lock = threading.Condition()

    def add(self, stamp_ns: int, odom_from_base: np.ndarray, base_frame: str) -> None:
        """Append a sample; one older than the newest is ignored (odometry only goes on)."""
        with self._lock:
            if self._stamps and stamp_ns <= self._stamps[-1]:
                return
            self._stamps.append(int(stamp_ns))
            self._poses.append(np.asarray(odom_from_base, dtype=np.float64))
            self.base_frame = base_frame
            self._lock.notify_all()

    def newest_stamp(self) -> Optional[int]:
        with self._lock:
            return self._stamps[-1] if self._stamps else None

    def wait_until(self, stamp_ns: int, timeout_s: float) -> bool:
        """Block until a sample stamped ``stamp_ns`` or later is in (True) or ``timeout_s``
        passed (False): a frame can only be interpolated once odometry after it arrived."""
        with self._lock:
            return self._lock.wait_for(
                lambda: bool(self._stamps) and self._stamps[-1] >= stamp_ns, timeout_s)

    def at(self, stamp_ns: int) -> Optional[np.ndarray]:
        """``odom_from_base`` at ``stamp_ns``, or None outside the samples or across a gap
        longer than ``max_gap_ns``."""
        with self._lock:
            stamps = list(self._stamps)
            i = bisect.bisect_left(stamps, stamp_ns)
            if i < len(stamps) and stamps[i] == stamp_ns:
                return self._poses[i].copy()
            if i == 0 or i == len(stamps) or stamps[i] - stamps[i - 1] > self.max_gap_ns:
                return None
            before, after = self._poses[i - 1], self._poses[i]
            t = (stamp_ns - stamps[i - 1]) / (stamps[i] - stamps[i - 1])
        pose = np.eye(4)
        pose[:3, 3] = (1.0 - t) * before[:3, 3] + t * after[:3, 3]
        slerp = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([before[:3, :3],
                                                                  after[:3, :3]])))
        pose[:3, :3] = slerp(t).as_matrix()
        return pose


class SensorMatcher:
    """Attaches the matching depth image and odometry pose to frames (module docstring)."""

    def __init__(self, tolerance_ns: int, depth: Optional[StampedBuffer[DepthImage]] = None,
                 odometry: Optional[OdometryTrack] = None,
                 mount: MountLookup = lambda base, camera: None,
                 extrinsic: ExtrinsicLookup = lambda colour, depth: None) -> None:
        self.tolerance_ns = int(tolerance_ns)
        self.depth = depth
        self.odometry = odometry
        self.mount = mount
        self.extrinsic = extrinsic

    def attach(self, frame: Frame) -> tuple[Frame, list[Problem]]:
        problems: list[Problem] = []
        if self.depth is not None:
            depth, problem = self._depth(frame)
            frame = replace(frame, depth_m=depth)
            problems += [problem] if problem else []
        if self.odometry is not None:
            pose, problem = self._odometry(frame)
            frame = replace(frame, odom_from_camera=pose)
            problems += [problem] if problem else []
        return frame, problems

    def _depth(self, frame: Frame) -> tuple[Optional[np.ndarray], Optional[Problem]]:
        found = self.depth.nearest(frame.stamp_ns, self.tolerance_ns)
        if found is None:
            return None, ("depth_unmatched", f"no depth image within "
                          f"{self.tolerance_ns / 1e6:g} ms of the frame at {frame.stamp_ns} ns")
        if _registered(found, frame):
            return found.depth_m, None
        colour, own = frame.camera_info, found.intrinsics
        if own is None or colour is None:
            missing = " and ".join(name for name, info in (("depth", own), ("colour", colour))
                                   if info is None)
            return None, ("depth_no_camera_info", f"depth ({found.frame_id!r}, "
                          f"{_size(found.depth_m.shape)}) is not registered to the colour "
                          f"camera ({frame.frame_id!r}, {_size(frame.image.shape)}) and the "
                          f"{missing} CameraInfo needed to reproject it is missing")
        if (own.height, own.width) != found.depth_m.shape[:2]:
            return None, ("depth_no_camera_info", f"the depth CameraInfo is for "
                          f"{own.width}x{own.height}, the depth image is "
                          f"{_size(found.depth_m.shape)}")
        if (colour.height, colour.width) != frame.image.shape[:2]:
            return None, ("depth_no_camera_info", f"the colour CameraInfo is for "
                          f"{colour.width}x{colour.height}, the image is "
                          f"{_size(frame.image.shape)}")
        colour_from_depth = (np.eye(4) if found.frame_id in ("", frame.frame_id)
                             else self.extrinsic(frame.frame_id, found.frame_id))
        if colour_from_depth is None:
            return None, ("depth_no_extrinsic", f"depth is in {found.frame_id!r}, colour in "
                          f"{frame.frame_id!r}, and no static transform between them is on "
                          f"/tf_static: the depth cannot be reprojected into the colour camera")
        return reproject_depth(found.depth_m, own.k, colour_from_depth, colour.k,
                               frame.image.shape[:2]), None

    def _odometry(self, frame: Frame) -> tuple[Optional[np.ndarray], Optional[Problem]]:
        odom_from_base = self.odometry.at(frame.stamp_ns)
        if odom_from_base is None:
            newest = self.odometry.newest_stamp()
            since = ("no odometry received" if newest is None else
                     f"newest odometry {(frame.stamp_ns - newest) / 1e9:+.2f} s from the frame")
            return None, ("odometry_unmatched", f"no odometry around the frame at "
                          f"{frame.stamp_ns} ns ({since})")
        base_from_camera = self.mount(self.odometry.base_frame, frame.frame_id)
        if base_from_camera is None:
            return None, ("odometry_no_mount", f"no static transform {self.odometry.base_frame}"
                          f" -> {frame.frame_id} (the camera mount) on /tf_static")
        return odom_from_base @ base_from_camera, None


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


def _registered(depth: DepthImage, frame: Frame) -> bool:
    """Depth on the colour camera's grid already: same frame, size and (when both are known)
    intrinsics."""
    if depth.frame_id not in ("", frame.frame_id) or depth.depth_m.shape != frame.image.shape[:2]:
        return False
    if depth.intrinsics is None or frame.camera_info is None:
        return True
    return bool(np.allclose(depth.intrinsics.k, frame.camera_info.k, rtol=1e-6, atol=1e-6))
