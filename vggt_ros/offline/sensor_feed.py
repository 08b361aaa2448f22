"""The scale sensors of a bag (depth images, wheel odometry) for ``vggt_map``.

Depth images are large, so they are read alongside the colour images, in recording order, and
only the last few are kept: before a colour frame is matched, the depth stream is read up to
the frame's stamp plus the tolerance. Each depth image carries the depth CameraInfo logged
with it (when the bag has one), for depth that must be reprojected into the colour camera.
Odometry samples are small and read whole up front, from a nav_msgs/Odometry topic or, with
no topic, from the robot's ``odom -> base_link`` edge on ``/tf``. The static transforms (the
camera mount, the depth camera's extrinsic) come from the bag's ``/tf_static``. Frames then
get their data through the same :class:`~vggt_ros.pipeline.sensors.SensorMatcher` the live
node uses.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from vggt_ros.geometry.camera import translation_quaternion_to_pose
from vggt_ros.geometry.frames import StaticFrames
from vggt_ros.io.bag_messages import CAMERA_INFO_TYPE, IMAGE_TYPE, BagError
from vggt_ros.io.bag_reader import Bag, decoded_messages, list_topics
from vggt_ros.io.image_stream import ImageRecord, read_image_stream
from vggt_ros.io.images import ImageDecodeError, decode_depth
from vggt_ros.io.stamps import join_ns
from vggt_ros.pipeline.sensors import (DepthImage, OdometryTrack, Problem, SensorMatcher,
                                       StampedBuffer, camera_info_topic_of)
from vggt_ros.pipeline.types import Frame

__all__ = ["BagSensors", "OdometrySource", "ODOMETRY_TYPE", "TF_TYPE"]

ODOMETRY_TYPE = "nav_msgs/msg/Odometry"
TF_TYPE = "tf2_msgs/msg/TFMessage"
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
DEPTH_BUFFER = 16  # depth images kept around the colour frame being matched


def _pose(position, orientation) -> np.ndarray:
    return translation_quaternion_to_pose(
        np.array([position.x, position.y, position.z]),
        np.array([orientation.x, orientation.y, orientation.z, orientation.w]))


@dataclass(frozen=True)
class OdometrySource:
    """Where the robot's odometry is: a nav_msgs/Odometry ``topic``, or (``topic`` empty) the
    ``parent -> child`` transform on /tf."""

    topic: str
    parent: str = "odom"
    child: str = "base_link"

    def describe(self) -> str:
        return self.topic or f"{TF_TOPIC} {self.parent} -> {self.child}"


def _static_frames(bag: Path) -> StaticFrames:
    frames = StaticFrames()
    for _, msg in decoded_messages(Bag(bag).messages({TF_STATIC_TOPIC: TF_TYPE}), bag):
        for t in msg.transforms:
            frames.add_edge(t.header.frame_id, t.child_frame_id,
                            _pose(t.transform.translation, t.transform.rotation))
    return frames


def _read_odometry(bag: Path, source: OdometrySource, max_gap_s: float) -> OdometryTrack:
    """Every odometry sample of the bag, as ``odom_from_base`` poses by stamp."""
    track = OdometryTrack(max_gap_ns=int(round(max_gap_s * 1e9)), max_samples=10_000_000)
    if source.topic:
        messages = Bag(bag).messages({source.topic: ODOMETRY_TYPE})
        for _, msg in decoded_messages(messages, bag):
            track.add(join_ns(msg.header.stamp.sec, msg.header.stamp.nanosec),
                      _pose(msg.pose.pose.position, msg.pose.pose.orientation),
                      msg.child_frame_id)
    else:
        edge = (source.parent.lstrip("/"), source.child.lstrip("/"))
        for _, msg in decoded_messages(Bag(bag).messages({TF_TOPIC: TF_TYPE}), bag):
            for t in msg.transforms:
                if (t.header.frame_id.lstrip("/"), t.child_frame_id.lstrip("/")) == edge:
                    track.add(join_ns(t.header.stamp.sec, t.header.stamp.nanosec),
                              _pose(t.transform.translation, t.transform.rotation), edge[1])
    if track.newest_stamp() is None:
        raise BagError(f"odometry {source.describe()!r} in {bag} has no messages")
    return track


class BagSensors:
    """Attaches the bag's depth (``depth_topic``) or odometry (``odometry``) to frames."""

    def __init__(self, bag: str | Path, tolerance_s: float, max_gap_s: float,
                 depth_topic: Optional[str] = None, depth_info_topic: str = "",
                 odometry: Optional[OdometrySource] = None) -> None:
        tolerance_ns = int(round(tolerance_s * 1e9))
        self._tolerance_ns = tolerance_ns
        self._depth_records: Optional[Iterator[ImageRecord]] = None
        self._pending: Optional[ImageRecord] = None
        self.problems: list[Problem] = []  # depth images that did not decode
        bag = Path(bag)
        topics = list_topics(bag)
        statics = _static_frames(bag) if TF_STATIC_TOPIC in topics else StaticFrames()
        depth = track = None
        if depth_topic:
            depth = StampedBuffer(DEPTH_BUFFER)
            info_topic = camera_info_topic_of(depth_topic, depth_info_topic)
            has_info = topics.get(info_topic) == CAMERA_INFO_TYPE
            if depth_info_topic and not has_info:
                raise BagError(f"depth_info_topic {info_topic!r} ({CAMERA_INFO_TYPE}) is not in "
                               f"bag {bag}")
            self._depth_records = read_image_stream(Bag(bag), depth_topic,
                                                    info_topic if has_info else None,
                                                    accepted_types=(IMAGE_TYPE,))
        if odometry is not None:
            track = _read_odometry(bag, odometry, max_gap_s)
        self._depth = depth
        self.matcher = SensorMatcher(tolerance_ns, depth, track, statics.lookup, statics.between)

    def attach(self, frame: Frame) -> tuple[Frame, list[Problem]]:
        """``frame`` with its depth / odometry, and why it got none (kind, reason)."""
        if self._depth_records is not None:
            self._read_depth_until(frame.stamp_ns + self._tolerance_ns)
        frame, problems = self.matcher.attach(frame)
        problems = self.problems + problems
        self.problems = []
        return frame, problems

    def _read_depth_until(self, stamp_ns: int) -> None:
        while True:
            record = self._pending or next(self._depth_records, None)
            self._pending = None
            if record is None:
                return
            if record.stamp_ns > stamp_ns:
                self._pending = record  # belongs to a later frame
                return
            try:
                metres = decode_depth(record.encoding, record.height, record.width,
                                      record.step, record.data, record.is_bigendian)
            except ImageDecodeError as exc:
                self.problems.append((f"depth_{exc.kind}", f"depth image at {record.stamp_ns} "
                                      f"ns: {exc}"))
                continue
            self._depth.add(record.stamp_ns, DepthImage(metres, record.frame_id,
                                                        record.camera_info))

    def close(self) -> None:
        if self._depth_records is not None:
            self._depth_records.close()
