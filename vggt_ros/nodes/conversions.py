"""ROS messages <-> NumPy for the vggt node (and for tests and tools that read its output).

Outgoing messages are built once, as plain data, by :mod:`vggt_ros.topics.messages` (shared
with the offline mapper's output bag); the builders here only convert that data to rclpy at
the node's edge. The readers (images, CameraInfo, clouds, poses) work on whole arrays
(``frombuffer``): a per-point or per-pixel Python loop would cost seconds per cloud.
:func:`pointcloud2_to_numpy` locates fields by name and offset, so it also reads the 32-byte
``PointXYZRGB`` layout of other publishers.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseStamped, Transform, TransformStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from vggt_ros.geometry.camera import translation_quaternion_to_pose
from vggt_ros.io.images import decode_32fc1, decode_compressed, decode_depth, decode_image
from vggt_ros.io.stamps import join_ns
from vggt_ros.nodes.rclpy_messages import to_rclpy
from vggt_ros.pipeline.types import CameraIntrinsics
from vggt_ros.topics import messages

__all__ = [
    "CameraInfoError",
    "stamp_to_time",
    "time_to_ns",
    "make_header",
    "image_to_rgb",
    "image_to_depth",
    "rgb_to_image",
    "float_image",
    "image_to_float",
    "camera_info_from_k",
    "camera_info_to_intrinsics",
    "pointcloud2_from_numpy",
    "pointcloud2_to_numpy",
    "transform_to_pose",
    "transform_stamped",
    "pose_stamped",
    "odometry",
]

# PointField datatype -> NumPy base type (byte order is added from the message).
_FIELD_TYPES = {
    PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2",
    PointField.UINT16: "u2", PointField.INT32: "i4", PointField.UINT32: "u4",
    PointField.FLOAT32: "f4", PointField.FLOAT64: "f8",
}


class CameraInfoError(ValueError):
    """A CameraInfo the pipeline cannot use (uncalibrated, NaN, zero size)."""


# --- time and headers -----------------------------------------------------------------------

def stamp_to_time(stamp_ns: int) -> Time:
    """Integer nanoseconds -> builtin_interfaces/Time (stamps before 1970 are not valid ROS)."""
    return to_rclpy(Time, messages.stamp(stamp_ns))


def time_to_ns(stamp: Time) -> int:
    return join_ns(stamp.sec, stamp.nanosec)


def make_header(stamp_ns: int, frame_id: str) -> Header:
    return to_rclpy(Header, messages.header(stamp_ns, frame_id))


# --- images ---------------------------------------------------------------------------------

def image_to_rgb(msg: Image | CompressedImage) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage -> HxWx3 uint8 RGB; raises ``ImageDecodeError``
    (with ``kind``)."""
    if isinstance(msg, CompressedImage):
        return decode_compressed(msg.format, msg.data)
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                        bool(msg.is_bigendian))


def image_to_depth(msg: Image) -> np.ndarray:
    """A depth sensor_msgs/Image (16UC1 mm, 32FC1 m) -> HxW float32 metres, NaN = no reading;
    raises ``ImageDecodeError`` (with ``kind``)."""
    return decode_depth(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                        bool(msg.is_bigendian))


def rgb_to_image(rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    return to_rclpy(Image, messages.rgb_image(rgb, stamp_ns, frame_id))


def float_image(values: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """HxW float array (depth in map units, confidence) -> 32FC1 Image, NaN kept as invalid."""
    return to_rclpy(Image, messages.float_image(values, stamp_ns, frame_id))


def image_to_float(msg: Image) -> np.ndarray:
    """32FC1 Image -> HxW float32."""
    if msg.encoding != "32FC1":
        raise ValueError(f"expected a 32FC1 image, got encoding '{msg.encoding}'")
    return decode_32fc1(msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))


# --- camera info ----------------------------------------------------------------------------

def camera_info_from_k(k: np.ndarray, width: int, height: int, stamp_ns: int,
                       frame_id: str) -> CameraInfo:
    """A pinhole CameraInfo for an undistorted image (see ``messages.camera_info``)."""
    return to_rclpy(CameraInfo, messages.camera_info(k, width, height, stamp_ns, frame_id))


def camera_info_to_intrinsics(msg: CameraInfo) -> CameraIntrinsics:
    """CameraInfo -> CameraIntrinsics; rejects what would silently corrupt the geometry."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if msg.width <= 0 or msg.height <= 0:
        raise CameraInfoError(f"CameraInfo has zero size ({msg.width}x{msg.height})")
    if not np.isfinite(k).all():
        raise CameraInfoError(f"CameraInfo K has non-finite entries: {k.reshape(-1).tolist()}")
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise CameraInfoError(f"CameraInfo is uncalibrated or invalid (fx={k[0, 0]}, "
                              f"fy={k[1, 1]}; REP-104: K[0] == 0 means uncalibrated)")
    return CameraIntrinsics(k=k, width=int(msg.width), height=int(msg.height))


# --- point clouds ---------------------------------------------------------------------------

def pointcloud2_from_numpy(points: np.ndarray, colors: Optional[np.ndarray], stamp_ns: int,
                           frame_id: str) -> PointCloud2:
    """[N,3] points (+ [N,3] uint8 RGB) -> unorganised PointCloud2 (``messages.pointcloud``)."""
    return to_rclpy(PointCloud2, messages.pointcloud(points, colors, stamp_ns, frame_id))


def pointcloud2_to_numpy(msg: PointCloud2) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """PointCloud2 -> ([N,3] float32 xyz, [N,3] uint8 RGB or None), by the message's own
    field offsets, so it reads any layout with x/y/z (and a packed ``rgb`` or ``rgba``)."""
    order = ">" if msg.is_bigendian else "<"
    by_name = {f.name: f for f in msg.fields}
    missing = [n for n in "xyz" if n not in by_name]
    if missing:
        raise ValueError(f"PointCloud2 lacks fields {missing} (has {list(by_name)})")
    colour_name = "rgb" if "rgb" in by_name else ("rgba" if "rgba" in by_name else None)
    names = ["x", "y", "z"] + ([colour_name] if colour_name else [])
    formats = []
    for name in names:
        field = by_name[name]
        if field.datatype not in _FIELD_TYPES or field.count != 1:
            raise ValueError(f"PointCloud2 field {name} has unsupported datatype "
                             f"{field.datatype} / count {field.count}")
        # The colour is a packed uint32 whatever the declared type (FLOAT32 or UINT32).
        formats.append(order + ("u4" if name == colour_name else _FIELD_TYPES[field.datatype]))
    dtype = np.dtype({"names": names, "formats": formats,
                      "offsets": [by_name[n].offset for n in names],
                      "itemsize": msg.point_step})
    n = msg.width * msg.height
    rows = np.frombuffer(msg.data, np.uint8)
    if rows.size < msg.row_step * msg.height or msg.row_step < msg.point_step * msg.width:
        raise ValueError(f"PointCloud2 data ({rows.size} bytes) does not match "
                         f"{msg.height}x{msg.width} points of {msg.point_step} bytes")
    rows = rows[: msg.row_step * msg.height].reshape(msg.height, msg.row_step)
    cloud = np.ascontiguousarray(rows[:, : msg.point_step * msg.width]).view(dtype).reshape(n)
    xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1).astype(np.float32)
    if colour_name is None:
        return xyz, None
    packed = cloud[colour_name].astype(np.uint32)
    rgb = np.stack([(packed >> 16) & 0xFF, (packed >> 8) & 0xFF, packed & 0xFF], axis=1)
    return xyz, rgb.astype(np.uint8)


# --- poses ----------------------------------------------------------------------------------

def transform_to_pose(transform: Transform) -> np.ndarray:
    """geometry_msgs/Transform or Pose -> 4x4 float64 parent_from_child."""
    if isinstance(transform, Pose):
        tr, rot = transform.position, transform.orientation
    else:
        tr, rot = transform.translation, transform.rotation
    return translation_quaternion_to_pose(np.array([tr.x, tr.y, tr.z]),
                                          np.array([rot.x, rot.y, rot.z, rot.w]))


def transform_stamped(pose: np.ndarray, stamp_ns: int, parent: str,
                      child: str) -> TransformStamped:
    """``pose`` = parent_from_child (child's pose in the parent frame), as tf2 expects."""
    return to_rclpy(TransformStamped, messages.transform_stamped(pose, stamp_ns, parent, child))


def pose_stamped(pose: np.ndarray, stamp_ns: int, frame_id: str) -> PoseStamped:
    return to_rclpy(PoseStamped, messages.pose_stamped(pose, stamp_ns, frame_id))


def odometry(pose: np.ndarray, stamp_ns: int, parent: str, child: str) -> Odometry:
    """Odometry with the pose only (see ``messages.odometry``)."""
    return to_rclpy(Odometry, messages.odometry(pose, stamp_ns, parent, child))
