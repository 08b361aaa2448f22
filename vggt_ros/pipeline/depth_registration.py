"""Depth from a separate depth camera, re-expressed on the colour camera's pixel grid.

The depth scale (``scale_measure.depth_scale``) compares sensor and predicted depth pixel by
pixel, so the sensor's depth must be in the colour camera's frame and grid. A driver's
``aligned_depth_to_color`` stream already is; a plain ``depth/image_raw`` is not: it comes from
another optical centre (a stereo pair's left imager, a ToF module a few centimetres away),
with its own intrinsics and size. This module does what such a driver does:

1. lift every valid depth pixel to a 3D point with the depth camera's ``K``;
2. move it into the colour optical frame through ``colour_from_depth`` (TF's static
   ``colour_optical <- depth_optical``);
3. project it with the colour ``K`` and keep, per colour pixel, the nearest point (a z-buffer:
   a foreground object hides the background the depth camera sees beside it).

Colour pixels no depth pixel lands on stay NaN (holes stay holes: nothing is interpolated, and
a sensor's missing reading never becomes a value; a depth grid coarser than the colour
camera's leaves a regular pattern of empty pixels, which the median of a scale does not
mind). The output depth is the point's z in the
colour frame, so metres stay metres.
"""
from __future__ import annotations

import numpy as np

from vggt_ros.geometry.camera import project_points, se3_inverse, unproject_depth

__all__ = ["reproject_depth"]


def reproject_depth(depth_m: np.ndarray, k_depth: np.ndarray, colour_from_depth: np.ndarray,
                    k_colour: np.ndarray, colour_size: tuple[int, int]) -> np.ndarray:
    """``depth_m`` (HxW metres of the depth camera, NaN/0/inf = no reading) as seen by the
    colour camera: a ``colour_size`` = (height, width) float32 image, NaN where no depth
    pixel landed (module docstring)."""
    depth = np.asarray(depth_m, dtype=np.float64)
    height, width = colour_size
    valid = np.isfinite(depth) & (depth > 0)
    # The colour optical frame plays the world: the depth camera sits at colour_from_depth.
    depth_from_colour = se3_inverse(np.asarray(colour_from_depth, dtype=np.float64))
    points = unproject_depth(depth[None], depth_from_colour[None],
                             np.asarray(k_depth, dtype=np.float64)[None], valid[None])
    points = points[points[:, 2] > 0]
    pixels, z = project_points(points, np.eye(4), k_colour)
    u, v = np.rint(pixels).astype(np.int64).T
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    out = np.full(height * width, np.inf)
    np.minimum.at(out, v[inside] * width + u[inside], z[inside])  # the z-buffer
    out[np.isinf(out)] = np.nan
    return out.reshape(height, width).astype(np.float32)
