"""The scale sensors of a bag (depth images, wheel odometry) for ``vggt_map``.

Depth images are large, so they are read alongside the colour images, in recording order, and
only the last few are kept: before a colour frame is matched, the depth stream is read up to
the frame's stamp plus the tolerance. Odometry samples are small and read whole up front,
with the camera mount from the bag's ``/tf_static``. Frames then get their data through the
same :class:`~vggt_ros.pipeline.sensors.SensorMatcher` the live node uses.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from vggt_ros.geometry.camera import translation_quaternion_to_pose
from vggt_ros.geometry.frames import StaticFrames
from vggt_ros.io.bag_messages import BagError
from vggt_ros.io.bag_reader import Bag, decoded_messages, list_topics
from vggt_ros.io.image_stream import ImageRecord, read_image_stream
from vggt_ros.io.images import ImageDecodeError, decode_depth
from vggt_ros.io.stamps import join_ns
from vggt_ros.pipeline.sensors import (DepthImage, OdometryTrack, Problem, SensorMatcher,
                                       StampedBuffer)
from vggt_ros.pipeline.types import Frame

__all__ = ["BagSensors", "ODOMETRY_TYPE", "TF_TYPE"]

ODOMETRY_TYPE = "nav_msgs/msg/Odometry"
TF_TYPE = "tf2_msgs/msg/TFMessage"
TF_STATIC_TOPIC = "/tf_static"
DEPTH_BUFFER = 16  # depth images kept around the colour frame being matched


def _pose(position, orientation) -> np.ndarray:
    return translation_quaternion_to_pose(
        np.array([position.x, position.y, position.z]),
        np.array([orientation.x, orientation.y, orientation.z, orientation.w]))


class BagSensors:
    """Attaches the bag's depth (``depth_topic``) or odometry (``odom_topic``) to frames."""

    def __init__(self, bag: str | Path, tolerance_s: float, max_gap_s: float,
                 depth_topic: Optional[str] = None, odom_topic: Optional[str] = None) -> None:
        tolerance_ns = int(round(tolerance_s * 1e9))
        self._tolerance_ns = tolerance_ns
        self._depth_records: Optional[Iterator[ImageRecord]] = None
        self._pending: Optional[ImageRecord] = None
        self.problems: list[Problem] = []  # depth images that did not decode
        depth = odometry = None
        mounts = StaticFrames()
        if depth_topic:
            depth = StampedBuffer(DEPTH_BUFFER)
            self._depth_records = read_image_stream(Bag(bag), depth_topic)
        if odom_topic:
            odometry = self._read_odometry(Path(bag), odom_topic, max_gap_s, mounts)
        self._depth = depth
        self.matcher = SensorMatcher(tolerance_ns, depth, odometry, mounts.lookup)

    @staticmethod
    def _read_odometry(bag: Path, topic: str, max_gap_s: float,
                       mounts: StaticFrames) -> OdometryTrack:
        track = OdometryTrack(max_gap_ns=int(round(max_gap_s * 1e9)), max_samples=10_000_000)
        topics = {topic: ODOMETRY_TYPE}
        if TF_STATIC_TOPIC in list_topics(bag):
            topics[TF_STATIC_TOPIC] = TF_TYPE
        source = Bag(bag)
        for raw, msg in decoded_messages(source.messages(topics), bag):
            if raw.topic == TF_STATIC_TOPIC:
                for t in msg.transforms:
                    mounts.add_edge(t.header.frame_id, t.child_frame_id,
                                    _pose(t.transform.translation, t.transform.rotation))
                continue
            track.add(join_ns(msg.header.stamp.sec, msg.header.stamp.nanosec),
                      _pose(msg.pose.pose.position, msg.pose.pose.orientation),
                      msg.child_frame_id)
        if track.newest_stamp() is None:
            raise BagError(f"odometry topic {topic!r} in {bag} has no messages")
        return track

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
            self._depth.add(record.stamp_ns, DepthImage(metres, record.frame_id))

    def close(self) -> None:
        if self._depth_records is not None:
            self._depth_records.close()
