"""Track ground truth: where the surface points under query pixels of a window's first frame
appear in every frame of the window, and whether each frame sees them.

One implementation serves the training data (torch tensors on the training device, batches of
windows) and the pipeline's ground-truth double (NumPy arrays through ``torch.from_numpy``,
one window), so both answer the same question the same way. All geometry is float64.

Conventions (those of VGGT's depth and intrinsics): pixel (u, v) is the centre of column u,
row v; a pixel's depth is looked up at the nearest pixel (round half to even); a point lands
*inside* a frame when it is in front of the camera and its nearest pixel exists, i.e.
-0.5 < u < W - 0.5 and -0.5 < v < H - 0.5.

Visibility is a depth test: the point is seen where it is inside and the frame's depth at its
nearest pixel agrees with the point's own depth within ``VISIBILITY_DEPTH_TOLERANCE``
(relative); a nearer surface there means something occludes it. Why 0.05: the nearest-pixel
lookup is off by up to half a pixel, which on a surface seen at a grazing angle is a depth
error of several percent. Against exact ray-cast visibility (docs/MODEL.md, "Track ground
truth") 0.05 marks a third to two thirds fewer truly visible points occluded than the 0.03 the
double used (3.3 % -> 1.1 % at the pipeline tests' 64x48), with about as many hidden points
marked visible.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

VISIBILITY_DEPTH_TOLERANCE = 0.05  # relative depth gap that still counts as the same surface


class Reprojection(NamedTuple):
    """Query points of frame 0 in every frame: [..., S, N, 2] and [..., S, N]."""

    pixels: Tensor  # (u, v) float64; NaN where the point is not in front of the camera
    inside: Tensor  # bool: in front of the camera and on a pixel of the image
    visible: Tensor  # bool: inside and not occluded (depth test)


def rigid_inverse(poses: Tensor) -> Tensor:
    """Closed-form inverse of rigid [...,4,4] transforms (exact for rotations, batched)."""
    rot_t = poses[..., :3, :3].transpose(-1, -2)
    out = torch.zeros_like(poses)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -(rot_t @ poses[..., :3, 3:4])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def unproject_pixels(pixels: Tensor, depth: Tensor, intrinsics: Tensor) -> Tensor:
    """Pixels [..., N, 2] at z-depths [..., N] -> camera points [..., N, 3] (pinhole K
    [..., 3, 3] without skew)."""
    k = intrinsics[..., None, :, :]
    x = (pixels[..., 0] - k[..., 0, 2]) * depth / k[..., 0, 0]
    y = (pixels[..., 1] - k[..., 1, 2]) * depth / k[..., 1, 1]
    return torch.stack((x, y, depth), dim=-1)


def at_nearest_pixel(maps: Tensor, pixels: Tensor) -> Tensor:
    """Values of maps [..., H, W] at the nearest pixel of pixels [..., N, 2] (clamped to the
    image; NaN pixels read pixel (0, 0)) -> [..., N]."""
    height, width = maps.shape[-2:]
    pixels = torch.nan_to_num(pixels, nan=0.0)
    u = pixels[..., 0].round().long().clamp(0, width - 1)
    v = pixels[..., 1].round().long().clamp(0, height - 1)
    return torch.gather(maps.flatten(-2), -1, v * width + u)


def reproject_queries(depth: Tensor, cam_from_world: Tensor, intrinsics: Tensor,
                      queries: Tensor, tolerance: float = VISIBILITY_DEPTH_TOLERANCE
                      ) -> Reprojection:
    """Project frame 0's query pixels through its depth into every frame of a window.

    depth [..., S, H, W] (rendered z-depth of every frame), cam_from_world [..., S, 4, 4],
    intrinsics [..., 3, 3] (shared by the frames), queries [..., N, 2] pixel (u, v) in frame 0;
    the leading dimensions (none, or a batch of windows) must agree. Results are on depth's
    device.
    """
    device = depth.device
    poses = cam_from_world.to(device, torch.float64)
    k = intrinsics.to(device, torch.float64)
    queries = queries.to(device, torch.float64)
    height, width = depth.shape[-2:]
    z0 = at_nearest_pixel(depth[..., 0, :, :], queries).double()
    points = unproject_pixels(queries, z0, k)  # [..., N, 3] in camera 0
    cam_from_cam0 = poses @ rigid_inverse(poses[..., :1, :, :])  # [..., S, 4, 4]
    # Element-wise products and a sum in a fixed order (no matmul, whose BLAS path depends on
    # the batch shape): a batch of windows gives the same numbers as one window at a time.
    rot, trans = cam_from_cam0[..., None, :3, :3], cam_from_cam0[..., None, :3, 3]
    cam = (rot * points[..., None, :, None, :]).sum(-1) + trans  # [..., S, N, 3]
    z = cam[..., 2]
    k = k[..., None, None, :, :]
    pixels = torch.stack((k[..., 0, 0] * cam[..., 0] / z + k[..., 0, 2],
                          k[..., 1, 1] * cam[..., 1] / z + k[..., 1, 2]), dim=-1)
    in_front = z > 0
    pixels = torch.where(in_front[..., None], pixels, torch.full_like(pixels, torch.nan))
    u, v = pixels[..., 0], pixels[..., 1]
    inside = in_front & (u > -0.5) & (u < width - 0.5) & (v > -0.5) & (v < height - 0.5)
    seen = at_nearest_pixel(depth, pixels).double()
    visible = inside & ((seen - z).abs() <= tolerance * z)
    return Reprojection(pixels, inside, visible)
