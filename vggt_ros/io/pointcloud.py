"""The one PointCloud2 layout vggt_ros writes, as NumPy bytes (no rclpy, no rosbags).

The live node (rclpy messages) and the offline mapper's output bag (rosbags messages) wrap the
same bytes, so the two can never disagree: x, y, z FLOAT32 at offsets 0/4/8 and ``rgb`` at
offset 12, a uint32 0x00RRGGBB stored in a FLOAT32 field (PCL's convention), point_step 16;
without colours, x, y, z only (point_step 12).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32

XYZRGB = np.dtype({"names": ["x", "y", "z", "rgb"], "formats": ["<f4", "<f4", "<f4", "<u4"],
                   "offsets": [0, 4, 8, 12], "itemsize": 16})
XYZ = np.dtype({"names": ["x", "y", "z"], "formats": ["<f4"] * 3, "offsets": [0, 4, 8],
                "itemsize": 12})


def pack_points(points: np.ndarray, colors: Optional[np.ndarray] = None
                ) -> tuple[np.dtype, bytes]:
    """[N,3] points (+ [N,3] uint8 RGB) -> (point layout, little-endian point data)."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be [N,3], got {points.shape}")
    n = points.shape[0]
    layout = XYZ if colors is None else XYZRGB
    cloud = np.zeros(n, dtype=layout)
    cloud["x"], cloud["y"], cloud["z"] = points[:, 0], points[:, 1], points[:, 2]
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != (n, 3) or colors.dtype != np.uint8:
            raise ValueError(f"colors must be [{n},3] uint8, got {colors.shape} {colors.dtype}")
        c = colors.astype(np.uint32)
        cloud["rgb"] = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    return layout, cloud.tobytes()


def field_offsets(layout: np.dtype) -> list[tuple[str, int]]:
    """(name, byte offset) of every PointField of ``layout`` (all declared FLOAT32)."""
    return [(name, layout.fields[name][1]) for name in layout.names]
