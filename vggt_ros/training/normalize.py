"""Ground-truth normalisation as in the VGGT paper.

VGGT predicts geometry in the frame of the window's first camera and at an arbitrary global
scale, so the targets are put in the same form: every pose is re-expressed relative to the
first camera (which becomes the identity) and the whole scene is scaled so that the mean
Euclidean distance of the valid points to the origin is 1. The same factor scales depths and
translations, keeping depth, point map and cameras mutually consistent. The predictions are
NOT normalised: the network has to learn to output this canonical scale itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vggt_ros.geometry.pose_encoding import extri_intri_to_pose_encoding
from vggt_ros.geometry.reprojection import rigid_inverse

MIN_MEAN_DISTANCE = 1e-6  # a scene whose points all sit at the origin cannot be normalised


@dataclass
class NormalizedScene:
    """Targets of one batch, in the first camera's frame and at unit mean point distance."""

    cam_from_world: Tensor  # [B,S,4,4], cam_from_world[:, 0] == identity
    intrinsics: Tensor  # [B,S,3,3] (unchanged: scaling the scene does not move pixels)
    depth: Tensor  # [B,S,H,W]
    world_points: Tensor  # [B,S,H,W,3] in the first camera's frame
    valid: Tensor  # [B,S,H,W] bool
    pose_enc: Tensor  # [B,S,9]
    scale: Tensor  # [B] factor applied to the metric scene


def depth_to_camera_points(depth: Tensor, intrinsics: Tensor) -> Tensor:
    """[B,S,H,W] depth and [B,S,3,3] K -> [B,S,H,W,3] points in each camera's OpenCV frame.

    Pixel (u, v) is the integer index, the convention of VGGT's depth and intrinsics.
    """
    _, _, height, width = depth.shape
    v, u = torch.meshgrid(torch.arange(height, device=depth.device, dtype=depth.dtype),
                          torch.arange(width, device=depth.device, dtype=depth.dtype),
                          indexing="ij")
    fx = intrinsics[..., 0, 0, None, None]
    fy = intrinsics[..., 1, 1, None, None]
    cx = intrinsics[..., 0, 2, None, None]
    cy = intrinsics[..., 1, 2, None, None]
    return torch.stack(((u - cx) * depth / fx, (v - cy) * depth / fy, depth), dim=-1)


def _check_inputs(cam_from_world: Tensor, intrinsics: Tensor, depth: Tensor,
                  valid: Tensor) -> None:
    if depth.dim() != 4:
        raise ValueError(f"depth must be [B,S,H,W], got {tuple(depth.shape)}")
    lead = depth.shape[:2]
    if cam_from_world.shape != (*lead, 4, 4):
        raise ValueError(f"cam_from_world must be [B,S,4,4] = {(*lead, 4, 4)}, "
                         f"got {tuple(cam_from_world.shape)}")
    if intrinsics.shape != (*lead, 3, 3):
        raise ValueError(f"intrinsics must be [B,S,3,3] = {(*lead, 3, 3)}, "
                         f"got {tuple(intrinsics.shape)}")
    if valid.shape != depth.shape or valid.dtype != torch.bool:
        raise ValueError(f"valid must be a bool mask shaped like depth {tuple(depth.shape)}, "
                         f"got {valid.dtype} {tuple(valid.shape)}")


def normalize_scene(cam_from_world: Tensor, intrinsics: Tensor, depth: Tensor,
                    valid: Tensor) -> NormalizedScene:
    """Metric ground truth of a batch of windows -> VGGT's normalised targets.

    cam_from_world: [B,S,4,4] OpenCV camera-from-world poses; intrinsics: [B,S,3,3] in the pixels
    of the depth maps; depth: [B,S,H,W] z-depth; valid: [B,S,H,W] bool, False where the ground
    truth is unknown (those pixels do not influence the scale and are zeroed in the outputs).
    """
    _check_inputs(cam_from_world, intrinsics, depth, valid)
    valid = valid & torch.isfinite(depth) & (depth > 0)
    depth = torch.where(valid, depth, torch.zeros_like(depth))
    # cam_i_from_cam0 = cam_i_from_world @ world_from_cam0
    relative = cam_from_world @ rigid_inverse(cam_from_world[:, :1])
    cam0_from_cam = rigid_inverse(relative)
    cam_points = depth_to_camera_points(depth, intrinsics)
    rot = cam0_from_cam[:, :, None, None, :3, :3]
    trans = cam0_from_cam[:, :, None, None, :3, 3]
    points = (rot @ cam_points[..., None])[..., 0] + trans

    weights = valid.to(points.dtype)
    count = weights.flatten(1).sum(1)
    if bool((count == 0).any()):
        empty = torch.nonzero(count == 0).flatten().tolist()
        raise ValueError(f"windows {empty} of the batch have no valid depth pixel to normalise by")
    mean_distance = (points.norm(dim=-1) * weights).flatten(1).sum(1) / count
    if bool((mean_distance < MIN_MEAN_DISTANCE).any()):
        raise ValueError("a window's valid points all lie at the first camera's centre; "
                         "its scale is undefined")
    scale = 1.0 / mean_distance
    relative = relative.clone()
    relative[..., :3, 3] = relative[..., :3, 3] * scale[:, None, None]
    points = torch.where(valid[..., None], points * scale[:, None, None, None, None],
                         torch.zeros_like(points))
    depth = depth * scale[:, None, None, None]
    height, width = depth.shape[-2:]
    pose_enc = extri_intri_to_pose_encoding(relative, intrinsics, (height, width))
    return NormalizedScene(cam_from_world=relative, intrinsics=intrinsics, depth=depth,
                           world_points=points, valid=valid, pose_enc=pose_enc, scale=scale)
