"""The node's output messages as plain data: nested dicts in the ROS field layout.

Each message is built here once; the live node converts the dict to an rclpy message and the
offline mapper's bag writer serialises it with rosbags, so both carry the same fields and the
same checks (a non-finite K, a negative stamp or a wrong cloud shape raise ``ValueError`` and
only that message is skipped). Array fields are NumPy arrays (``uint8`` for byte data), so
neither side copies large buffers element by element. Conventions:

* stamps are integer nanoseconds, converted to ``builtin_interfaces/Time`` here;
* poses are 4x4 float64 ``parent_from_child`` matrices (e.g. ``odom_from_cam``);
* depth and confidence images are 32FC1 with NaN for invalid pixels (REP-117/118);
* clouds use the one layout of :mod:`vggt_ros.io.pointcloud`: x, y, z FLOAT32 at offsets
  0/4/8 and ``rgb`` at 12 (a uint32 0x00RRGGBB in a FLOAT32 field), unorganised, not dense.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from vggt_ros.geometry.camera import pose_to_translation_quaternion
from vggt_ros.io.images import encode_32fc1, encode_rgb8
from vggt_ros.io.pointcloud import FLOAT32, field_offsets, pack_points
from vggt_ros.io.stamps import split_ns

__all__ = [
    "DIAGNOSTIC_OK", "DIAGNOSTIC_WARN", "DIAGNOSTIC_ERROR",
    "stamp", "header", "rgb_image", "float_image", "camera_info", "pointcloud", "pose",
    "transform_stamped", "tf_message", "pose_stamped", "odometry", "path",
    "diagnostic_status", "diagnostic_array",
]

# diagnostic_msgs/DiagnosticStatus levels (a byte on the wire).
DIAGNOSTIC_OK, DIAGNOSTIC_WARN, DIAGNOSTIC_ERROR = 0, 1, 2

Message = dict[str, Any]


def stamp(stamp_ns: int) -> Message:
    """Integer nanoseconds -> builtin_interfaces/Time (stamps before 1970 are not valid ROS)."""
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise ValueError(f"ROS stamps cannot be negative, got {stamp_ns} ns")
    return dict(zip(("sec", "nanosec"), split_ns(stamp_ns)))


def header(stamp_ns: int, frame_id: str) -> Message:
    return {"stamp": stamp(stamp_ns), "frame_id": frame_id}


def _bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


def rgb_image(rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Message:
    """HxWx3 uint8 RGB -> an unpadded rgb8 Image."""
    height, width = np.asarray(rgb).shape[:2]
    return {"header": header(stamp_ns, frame_id), "height": height, "width": width,
            "encoding": "rgb8", "is_bigendian": False, "step": 3 * width,
            "data": _bytes(encode_rgb8(rgb))}


def float_image(values: np.ndarray, stamp_ns: int, frame_id: str) -> Message:
    """HxW float array (depth in map units, confidence) -> 32FC1 Image, NaN kept as invalid."""
    height, width = np.asarray(values).shape[:2]
    return {"header": header(stamp_ns, frame_id), "height": height, "width": width,
            "encoding": "32FC1", "is_bigendian": False, "step": 4 * width,
            "data": _bytes(encode_32fc1(values))}


def camera_info(k: np.ndarray, width: int, height: int, stamp_ns: int,
                frame_id: str) -> Message:
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
    return {"header": header(stamp_ns, frame_id), "height": int(height), "width": int(width),
            "distortion_model": "plumb_bob", "d": np.zeros(0), "k": k.reshape(-1),
            "r": np.eye(3).reshape(-1), "p": p.reshape(-1)}


def pointcloud(points: np.ndarray, colors: Optional[np.ndarray], stamp_ns: int,
               frame_id: str) -> Message:
    """[N,3] points (+ [N,3] uint8 RGB) -> unorganised PointCloud2 (layout: module docstring)."""
    layout, data = pack_points(points, colors)
    n = len(points)
    fields = [{"name": name, "offset": offset, "datatype": FLOAT32, "count": 1}
              for name, offset in field_offsets(layout)]
    return {"header": header(stamp_ns, frame_id), "height": 1, "width": n, "fields": fields,
            "is_bigendian": False, "point_step": layout.itemsize,
            "row_step": layout.itemsize * n, "data": _bytes(data), "is_dense": False}


def pose(parent_from_child: np.ndarray) -> Message:
    """4x4 pose -> geometry_msgs/Pose."""
    translation, quat = pose_to_translation_quaternion(parent_from_child)
    return {"position": dict(zip("xyz", map(float, translation))),
            "orientation": dict(zip("xyzw", map(float, quat)))}


def transform_stamped(parent_from_child: np.ndarray, stamp_ns: int, parent: str,
                      child: str) -> Message:
    """The child's pose in the parent frame, as tf2 expects it."""
    p = pose(parent_from_child)
    return {"header": header(stamp_ns, parent), "child_frame_id": child,
            "transform": {"translation": p["position"], "rotation": p["orientation"]}}


def tf_message(parent_from_child: np.ndarray, stamp_ns: int, parent: str,
               child: str) -> Message:
    return {"transforms": [transform_stamped(parent_from_child, stamp_ns, parent, child)]}


def pose_stamped(parent_from_child: np.ndarray, stamp_ns: int, frame_id: str) -> Message:
    return {"header": header(stamp_ns, frame_id), "pose": pose(parent_from_child)}


def odometry(parent_from_child: np.ndarray, stamp_ns: int, parent: str, child: str,
             pose_covariance: Optional[np.ndarray] = None,
             twist: Optional[tuple[np.ndarray, np.ndarray]] = None,
             twist_covariance: Optional[np.ndarray] = None) -> Message:
    """The child's pose in the parent frame, and its ``twist`` (linear, angular velocity in the
    CHILD frame, as nav_msgs/Odometry defines it). Covariances are 6x6 over (x, y, z, roll,
    pitch, yaw); what is not given stays zero (unknown)."""
    msg: Message = {"header": header(stamp_ns, parent), "child_frame_id": child,
                    "pose": {"pose": pose(parent_from_child)}}
    if pose_covariance is not None:
        msg["pose"]["covariance"] = _covariance(pose_covariance)
    if twist is not None:
        linear, angular = (np.asarray(v, dtype=np.float64) for v in twist)
        if not (np.isfinite(linear).all() and np.isfinite(angular).all()):
            raise ValueError(f"twist must be finite, got {linear}, {angular}")
        msg["twist"] = {"twist": {"linear": dict(zip("xyz", map(float, linear))),
                                  "angular": dict(zip("xyz", map(float, angular)))}}
        if twist_covariance is not None:
            msg["twist"]["covariance"] = _covariance(twist_covariance)
    return msg


def _covariance(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (6, 6) or not np.isfinite(matrix).all():
        raise ValueError(f"a covariance must be a finite 6x6 matrix, got {matrix.shape}")
    return matrix.reshape(-1)


def path(poses: Sequence[Message], stamp_ns: int, frame_id: str) -> Message:
    """nav_msgs/Path of ``pose_stamped`` messages."""
    return {"header": header(stamp_ns, frame_id), "poses": list(poses)}


def diagnostic_status(level: int, name: str, message: str, hardware_id: str,
                      values: dict[str, Any]) -> Message:
    """One DiagnosticStatus; values are shown as text (floats with 6 significant digits)."""
    return {"level": level, "name": name, "message": message, "hardware_id": hardware_id,
            "values": [{"key": key, "value": _text(value)} for key, value in values.items()]}


def diagnostic_array(statuses: Sequence[Message], stamp_ns: int) -> Message:
    return {"header": header(stamp_ns, ""), "status": list(statuses)}


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
