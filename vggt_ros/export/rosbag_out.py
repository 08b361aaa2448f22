"""The mapper's results as a ROS 2 bag (``outputs.mcap``), to replay in RViz or feed to other
nodes exactly as if the live node had produced them.

Topics (message layouts as the live node publishes them, see ``vggt_ros.nodes.conversions``):
``/tf`` odom -> camera optical frame per keyframe, ``/vggt/depth`` 32FC1 (map units, NaN =
invalid) with ``/vggt/depth/camera_info`` (K of the depth image) and ``/vggt/depth/confidence``
32FC1, ``/vggt/points`` one PointCloud2 per window (x, y, z FLOAT32 + packed ``rgb`` at offset
12, point_step 16), ``/vggt/odometry`` and ``/vggt/path`` (all keyframes so far, per window).

Messages are built through ``vggt_ros.io.bag_messages`` (rosbags typestore, ROS 2 Kilted), never
rclpy, so this runs on machines without ROS. The bag is assembled by ``BagWriter`` in a
temporary directory and only its finished single ``.mcap`` file is renamed onto the output
path; rosbags and the mcap tools read such a file directly.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from vggt_ros.geometry.camera import pose_to_translation_quaternion
from vggt_ros.io.atomic import PathLike
from vggt_ros.io.bag_messages import header
from vggt_ros.io.bag_writer import BagWriter
from vggt_ros.io.images import encode_32fc1
from vggt_ros.io.pointcloud import FLOAT32, field_offsets, pack_points
from vggt_ros.pipeline.types import KeyframeResult, WindowResult

TOPICS: dict[str, str] = {
    "/tf": "tf2_msgs/msg/TFMessage",
    "/vggt/depth": "sensor_msgs/msg/Image",
    "/vggt/depth/camera_info": "sensor_msgs/msg/CameraInfo",
    "/vggt/depth/confidence": "sensor_msgs/msg/Image",
    "/vggt/points": "sensor_msgs/msg/PointCloud2",
    "/vggt/odometry": "nav_msgs/msg/Odometry",
    "/vggt/path": "nav_msgs/msg/Path",
}



def _pose(pose: np.ndarray) -> tuple[dict, dict]:
    t, q = pose_to_translation_quaternion(pose)
    return (dict(zip("xyz", map(float, t))), dict(zip("xyzw", map(float, q))))


def tf_message(pose: np.ndarray, stamp_ns: int, parent: str, child: str) -> dict:
    translation, rotation = _pose(pose)
    return {"transforms": [{"header": header(stamp_ns, parent), "child_frame_id": child,
                            "transform": {"translation": translation, "rotation": rotation}}]}


def pose_message(pose: np.ndarray) -> dict:
    position, orientation = _pose(pose)
    return {"position": position, "orientation": orientation}


def float_image(values: np.ndarray, stamp_ns: int, frame_id: str) -> dict:
    """HxW float -> 32FC1 Image fields (little-endian, NaN kept as invalid)."""
    height, width = values.shape
    return {"header": header(stamp_ns, frame_id), "height": height, "width": width,
            "encoding": "32FC1", "is_bigendian": 0, "step": 4 * width,
            "data": np.frombuffer(encode_32fc1(values), dtype=np.uint8)}


def camera_info(k: np.ndarray, width: int, height: int, stamp_ns: int, frame_id: str) -> dict:
    """Pinhole CameraInfo of an undistorted image (d empty, r identity, p = [K | 0])."""
    p = np.zeros((3, 4))
    p[:, :3] = k
    return {"header": header(stamp_ns, frame_id), "height": height, "width": width,
            "distortion_model": "plumb_bob", "k": np.asarray(k, np.float64).ravel(),
            "r": np.eye(3).ravel(), "p": p.ravel()}


def pointcloud(points: np.ndarray, colors: np.ndarray, stamp_ns: int, frame_id: str) -> dict:
    """The live node's cloud layout (vggt_ros.io.pointcloud), as rosbags message fields."""
    layout, data = pack_points(points, colors)
    fields = [{"name": name, "offset": offset, "datatype": FLOAT32, "count": 1}
              for name, offset in field_offsets(layout)]
    return {"header": header(stamp_ns, frame_id), "height": 1, "width": len(points),
            "fields": fields, "is_bigendian": False, "point_step": layout.itemsize,
            "row_step": layout.itemsize * len(points),
            "data": np.frombuffer(data, dtype=np.uint8), "is_dense": False}


def odometry(pose: np.ndarray, stamp_ns: int, parent: str, child: str) -> dict:
    """Pose only; zero twist and covariances (VGGT gives no uncertainty), as the live node."""
    return {"header": header(stamp_ns, parent), "child_frame_id": child,
            "pose": {"pose": pose_message(pose)}}


class OutputBagWriter:
    """Streams WindowResults into a bag as they arrive (so depth maps are never all held in
    memory) and publishes the finished ``.mcap`` at ``path`` only on :meth:`close`."""

    def __init__(self, path: PathLike, odom_frame: str = "odom") -> None:
        self.path = Path(path)
        self.odom_frame = odom_frame
        self.counts: dict[str, int] = {topic: 0 for topic in TOPICS}
        self._path_poses: list[dict] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                          dir=self.path.parent))
        self._bag: Optional[BagWriter] = BagWriter(self._tmp / "bag", storage="mcap")
        try:
            self._bag.__enter__()
        except BaseException:
            self._bag = None
            self.abort()
            raise

    def __enter__(self) -> "OutputBagWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _write(self, topic: str, msg: dict, stamp_ns: int) -> None:
        if self._bag is None:
            raise RuntimeError("output bag already closed")
        self._bag.write(topic, TOPICS[topic], msg, int(stamp_ns))
        self.counts[topic] += 1

    def write_keyframe(self, kf: KeyframeResult) -> None:
        stamp = kf.stamp_ns
        self._write("/tf", tf_message(kf.odom_from_cam, stamp, self.odom_frame, kf.frame_id),
                    stamp)
        height, width = kf.depth.shape
        self._write("/vggt/depth", float_image(kf.depth, stamp, kf.frame_id), stamp)
        self._write("/vggt/depth/camera_info",
                    camera_info(kf.intrinsics, width, height, stamp, kf.frame_id), stamp)
        self._write("/vggt/depth/confidence", float_image(kf.confidence, stamp, kf.frame_id),
                    stamp)
        self._write("/vggt/odometry",
                    odometry(kf.odom_from_cam, stamp, self.odom_frame, kf.frame_id), stamp)
        self._path_poses.append({"header": header(stamp, self.odom_frame),
                                 "pose": pose_message(kf.odom_from_cam)})

    def write_window(self, result: WindowResult) -> None:
        """All new keyframes of the window, its cloud, and the path so far."""
        for kf in result.new_keyframes:
            self.write_keyframe(kf)
        stamp = result.stamps_ns[-1]
        self._write("/vggt/points", pointcloud(result.points, result.colors, stamp,
                                               self.odom_frame), stamp)
        if self._path_poses:
            self._write("/vggt/path", {"header": header(stamp, self.odom_frame),
                                       "poses": list(self._path_poses)}, stamp)

    def close(self) -> Path:
        """Finish the bag and move its ``.mcap`` onto ``path`` (atomic rename)."""
        if self._bag is None:
            raise RuntimeError("output bag already closed")
        bag, self._bag = self._bag, None
        try:
            bag.__exit__(None, None, None)
            (mcap,) = (self._tmp / "bag").glob("*.mcap")
            os.replace(mcap, self.path)
        finally:
            self.abort()
        return self.path

    def abort(self) -> None:
        """Drop the partial bag; the output path is left untouched."""
        bag, self._bag = self._bag, None
        if bag is not None:
            try:
                bag.__exit__(RuntimeError, RuntimeError("aborted"), None)
            except Exception:  # the bag is being thrown away; its own error is secondary
                pass
        shutil.rmtree(self._tmp, ignore_errors=True)
