"""ROS messages <-> NumPy for the vggt node (and for tests and tools that read its output).

Every builder works on whole arrays (``tobytes`` / ``frombuffer``): a per-point or per-pixel
Python loop would cost seconds per cloud. Conventions:

* stamps are integer nanoseconds (``builtin_interfaces/Time`` only at the message boundary);
* poses are 4x4 float64 ``parent_from_child`` matrices (e.g. ``odom_from_cam``);
* depth and confidence images are 32FC1 with NaN for invalid pixels (REP-117/118);
* PointCloud2 uses the compact PCL-compatible layout of :mod:`vggt_ros.io.pointcloud` (shared
  with the offline mapper's output bag): x, y, z FLOAT32 at offsets 0/4/8 and ``rgb`` at
  offset 12 (a uint32 0x00RRGGBB stored in a FLOAT32 field), ``point_step`` 16,
  unorganised (height 1), ``is_dense`` False. Readers (RViz, PCL, depth tools, our own
  :func:`pointcloud2_to_numpy`) locate fields by name and offset, so this is read like the
  32-byte ``PointXYZRGB`` layout while sending half the bytes.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseStamped, Transform, TransformStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from vggt_ros.geometry.camera import pose_to_translation_quaternion, translation_quaternion_to_pose
from vggt_ros.io.images import decode_32fc1, decode_image, encode_32fc1, encode_rgb8
from vggt_ros.io.pointcloud import field_offsets, pack_points
from vggt_ros.pipeline.types import CameraIntrinsics

__all__ = [
    "CameraInfoError",
    "stamp_to_time",
    "time_to_ns",
    "make_header",
    "image_to_rgb",
    "rgb_to_image",
    "float_image",
    "image_to_float",
    "camera_info_from_k",
    "camera_info_to_intrinsics",
    "pointcloud2_from_numpy",
    "pointcloud2_to_numpy",
    "pose_to_transform",
    "transform_to_pose",
    "transform_stamped",
    "pose_stamped",
    "odometry",
]

_NS = 1_000_000_000

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
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise ValueError(f"ROS stamps cannot be negative, got {stamp_ns} ns")
    return Time(sec=stamp_ns // _NS, nanosec=stamp_ns % _NS)


def time_to_ns(stamp: Time) -> int:
    return int(stamp.sec) * _NS + int(stamp.nanosec)


def make_header(stamp_ns: int, frame_id: str) -> Header:
    return Header(stamp=stamp_to_time(stamp_ns), frame_id=frame_id)


# --- images ---------------------------------------------------------------------------------

def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> HxWx3 uint8 RGB; raises ``ImageDecodeError`` (with ``kind``)."""
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                        bool(msg.is_bigendian))


def rgb_to_image(rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    height, width = np.asarray(rgb).shape[:2]
    return Image(header=make_header(stamp_ns, frame_id), height=height, width=width,
                 encoding="rgb8", is_bigendian=False, step=3 * width, data=encode_rgb8(rgb))


def float_image(values: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """HxW float array (depth in map units, confidence) -> 32FC1 Image, NaN kept as invalid."""
    height, width = np.asarray(values).shape[:2]
    return Image(header=make_header(stamp_ns, frame_id), height=height, width=width,
                 encoding="32FC1", is_bigendian=False, step=4 * width,
                 data=encode_32fc1(values))


def image_to_float(msg: Image) -> np.ndarray:
    """32FC1 Image -> HxW float32."""
    if msg.encoding != "32FC1":
        raise ValueError(f"expected a 32FC1 image, got encoding '{msg.encoding}'")
    return decode_32fc1(msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))


# --- camera info ----------------------------------------------------------------------------

def camera_info_from_k(k: np.ndarray, width: int, height: int, stamp_ns: int,
                       frame_id: str) -> CameraInfo:
    """A pinhole CameraInfo for an undistorted image of ``width`` x ``height`` (REP-104).

    d is empty with model plumb_bob (no distortion: our depth is predicted on the undistorted
    model grid), r is identity (monocular), p = [K | 0]. K must describe THIS image size, which
    is what lets depth_image_proc pair it with the depth image.
    """
    k = np.asarray(k, dtype=np.float64)
    if k.shape != (3, 3) or not np.isfinite(k).all():
        raise ValueError(f"K must be a finite 3x3 matrix, got {k}")
    p = np.zeros((3, 4))
    p[:, :3] = k
    return CameraInfo(header=make_header(stamp_ns, frame_id), height=int(height),
                      width=int(width), distortion_model="plumb_bob", d=[],
                      k=k.reshape(-1), r=np.eye(3).reshape(-1), p=p.reshape(-1))


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
    """[N,3] points (+ [N,3] uint8 RGB) -> unorganised PointCloud2 (layout: module docstring)."""
    layout, data = pack_points(points, colors)
    n = len(points)
    fields = [PointField(name=name, offset=offset, datatype=PointField.FLOAT32, count=1)
              for name, offset in field_offsets(layout)]
    return PointCloud2(header=make_header(stamp_ns, frame_id), height=1, width=n,
                       fields=fields, is_bigendian=False, point_step=layout.itemsize,
                       row_step=layout.itemsize * n, data=data, is_dense=False)


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

def pose_to_transform(pose: np.ndarray) -> Transform:
    translation, quat = pose_to_translation_quaternion(pose)
    t = Transform()
    t.translation.x, t.translation.y, t.translation.z = (float(v) for v in translation)
    t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w = (float(v) for v in quat)
    return t


def transform_to_pose(transform: Transform) -> np.ndarray:
    """geometry_msgs/Transform or Pose -> 4x4 float64 parent_from_child."""
    if isinstance(transform, Pose):
        tr, rot = transform.position, transform.orientation
    else:
        tr, rot = transform.translation, transform.rotation
    return translation_quaternion_to_pose(np.array([tr.x, tr.y, tr.z]),
                                          np.array([rot.x, rot.y, rot.z, rot.w]))


def _pose_msg(pose: np.ndarray) -> Pose:
    t = pose_to_transform(pose)
    msg = Pose()
    msg.position.x, msg.position.y, msg.position.z = (t.translation.x, t.translation.y,
                                                      t.translation.z)
    msg.orientation = t.rotation
    return msg


def transform_stamped(pose: np.ndarray, stamp_ns: int, parent: str,
                      child: str) -> TransformStamped:
    """``pose`` = parent_from_child (child's pose in the parent frame), as tf2 expects."""
    return TransformStamped(header=make_header(stamp_ns, parent), child_frame_id=child,
                            transform=pose_to_transform(pose))


def pose_stamped(pose: np.ndarray, stamp_ns: int, frame_id: str) -> PoseStamped:
    return PoseStamped(header=make_header(stamp_ns, frame_id), pose=_pose_msg(pose))


def odometry(pose: np.ndarray, stamp_ns: int, parent: str, child: str) -> Odometry:
    """Odometry with the pose only: twist and both covariances are left zero (VGGT gives no
    uncertainty; consumers that fuse odometry must set their own covariances)."""
    msg = Odometry(header=make_header(stamp_ns, parent), child_frame_id=child)
    msg.pose.pose = _pose_msg(pose)
    return msg
