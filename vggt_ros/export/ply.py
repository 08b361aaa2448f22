"""Coloured point cloud -> binary little-endian PLY (x, y, z float32; red, green, blue uchar).

The property names and types are the ones MeshLab, CloudCompare, Open3D and COLMAP read as a
coloured cloud; the body is one packed NumPy record array, written in a single call.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vggt_ros.io.atomic import PathLike, atomic_output

_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                    ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def write_ply(path: PathLike, points: np.ndarray, colors: np.ndarray) -> Path:
    """Write ``points`` [N,3] (any float) with ``colors`` [N,3] uint8 RGB; N may be 0."""
    points = np.asarray(points)
    colors = np.asarray(colors)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be [N,3], got {points.shape}")
    if colors.shape != points.shape or colors.dtype != np.uint8:
        raise ValueError(f"colors must be [{len(points)},3] uint8, got {colors.shape} "
                         f"{colors.dtype}")
    if not np.isfinite(points).all():
        raise ValueError("points contain NaN or inf; filter them before export")
    vertices = np.empty(len(points), dtype=_VERTEX)
    for axis, name in enumerate("xyz"):
        vertices[name] = points[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = colors[:, channel]
    header = (
        "ply\n"
        "format binary_little_endian 1.0\n"
        "comment vggt_ros fused map (odom frame)\n"
        f"element vertex {len(vertices)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        "end_header\n"
    )
    path = Path(path)
    with atomic_output(path, "wb") as handle:
        handle.write(header.encode("ascii"))
        handle.write(vertices.tobytes())
    return path
