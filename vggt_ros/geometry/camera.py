"""NumPy camera helpers shared by the pipeline and the ROS nodes.

Conventions (see ``vggt_ros.pipeline.types``): poses are ``cam_from_world`` in the OpenCV optical
frame; quaternions exchanged with ROS are scalar-last (x, y, z, w). Everything accepts batches so
callers never loop over frames in Python.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = [
    "se3_inverse",
    "to_homogeneous",
    "unproject_depth",
    "unproject_to_camera",
    "unproject_flat_to_camera",
    "project_points",
    "pose_to_translation_quaternion",
    "translation_quaternion_to_pose",
]


def _check_pose_shape(name: str, poses: np.ndarray) -> None:
    if poses.ndim < 2 or poses.shape[-1] != 4 or poses.shape[-2] not in (3, 4):
        raise ValueError(f"{name} must have shape [...,3,4] or [...,4,4], got {poses.shape}")


def to_homogeneous(poses: np.ndarray) -> np.ndarray:
    """[...,3,4] or [...,4,4] -> [...,4,4] float64, so poses can be chained with ``@``."""
    poses = np.asarray(poses)
    _check_pose_shape("poses", poses)
    out = np.zeros(poses.shape[:-2] + (4, 4), dtype=np.float64)
    out[..., :3, :] = poses[..., :3, :]
    out[..., 3, 3] = 1.0
    return out


def se3_inverse(poses: np.ndarray) -> np.ndarray:
    """Closed-form inverse [R^T | -R^T t] of rigid transforms [...,3,4] or [...,4,4] -> [...,4,4].

    Closed form rather than ``np.linalg.inv`` because it is exact for rotations, cheap for
    batches, and is what the reference code uses (so unprojections match it).
    """
    poses = np.asarray(poses)
    _check_pose_shape("poses", poses)
    rot = poses[..., :3, :3]
    trans = poses[..., :3, 3:4]
    rot_t = np.swapaxes(rot, -1, -2)
    out = np.zeros(poses.shape[:-2] + (4, 4), dtype=np.float64)
    out[..., :3, :3] = rot_t
    out[..., :3, 3:4] = -(rot_t @ trans)
    out[..., 3, 3] = 1.0
    return out


def unproject_depth(depth: np.ndarray, cam_from_world: np.ndarray,
                    intrinsics: np.ndarray, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Depth maps -> world points [S,H,W,3] float64, exactly as VGGT's reference unprojection.

    Pixel (u, v) is the integer index (no +0.5 centre shift) because that is how the network's
    depth and intrinsics are defined. Camera points are rounded to float32 before the float64
    camera-to-world transform, reproducing the reference numbers.

    With ``mask`` ([S,H,W] bool) only those pixels are unprojected and [N,3] is returned, the
    same values as ``unproject_depth(...)[mask]`` at a fraction of the cost (the pipeline needs
    a subsample of confident pixels of 518-wide frames, not every pixel).
    """
    depth = np.asarray(depth)
    if depth.ndim == 4 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 3:
        raise ValueError(f"depth must have shape [S,H,W] or [S,H,W,1], got {depth.shape}")
    cam_from_world = np.asarray(cam_from_world)
    intrinsics = np.asarray(intrinsics)
    num, height, width = depth.shape
    _check_pose_shape("cam_from_world", cam_from_world)
    if cam_from_world.shape[:-2] != (num,):
        raise ValueError(f"cam_from_world must be [{num},3|4,4] for {num} depth maps, "
                         f"got {cam_from_world.shape}")
    if intrinsics.shape != (num, 3, 3):
        raise ValueError(f"intrinsics must be [{num},3,3], got {intrinsics.shape}")

    world_from_cam = se3_inverse(cam_from_world)
    if mask is None:  # every pixel: [H,W] grids broadcast per frame
        v, u = np.mgrid[0:height, 0:width].astype(np.float64)
        return np.stack([_unproject_pixels(u, v, depth[s], intrinsics[s], world_from_cam[s])
                         for s in range(num)])
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != depth.shape:
        raise ValueError(f"mask must have the depth's shape {depth.shape}, got {mask.shape}")
    parts = []
    for s in range(num):  # per frame: no per-pixel copies of the frame's K and pose
        v, u = np.nonzero(mask[s])
        parts.append(_unproject_pixels(u.astype(np.float64), v.astype(np.float64),
                                       depth[s][mask[s]], intrinsics[s], world_from_cam[s]))
    return np.concatenate(parts) if parts else np.zeros((0, 3))


def unproject_to_camera(depth: np.ndarray, intrinsics: np.ndarray,
                        mask: np.ndarray) -> np.ndarray:
    """Masked depth pixels -> [N,3] float64 points in their own cameras, frame by frame in mask
    order: the camera-frame half of ``unproject_depth(..., mask)`` (the same float32-rounded
    values), for points whose poses are not known yet."""
    depth, mask = np.asarray(depth), np.asarray(mask, dtype=bool)
    if depth.ndim != 3 or mask.shape != depth.shape:
        raise ValueError(f"depth and mask must both be [S,H,W], got {depth.shape} and "
                         f"{mask.shape}")
    return unproject_flat_to_camera(depth, intrinsics, np.flatnonzero(mask))


def unproject_flat_to_camera(depth: np.ndarray, intrinsics: np.ndarray,
                             flat: np.ndarray) -> np.ndarray:
    """The pixels at increasing flat indices ``flat`` of ``depth`` [S,H,W] -> [N,3] float64
    points in their own cameras, frame by frame: ``unproject_to_camera`` for a caller that
    already has the pixels' indices (no pass over every pixel of every frame to find them)."""
    depth = np.asarray(depth)
    if depth.ndim != 3:
        raise ValueError(f"depth must be [S,H,W], got {depth.shape}")
    intrinsics = np.asarray(intrinsics)
    if intrinsics.shape != (len(depth), 3, 3):
        raise ValueError(f"intrinsics must be [{len(depth)},3,3], got {intrinsics.shape}")
    flat = np.asarray(flat, dtype=np.int64)
    size = depth.shape[1] * depth.shape[2]
    # Increasing indices: each frame's pixels are one slice, unprojected with that frame's K as
    # scalars (a K gathered per pixel made this 3x slower).
    bounds = np.searchsorted(flat, np.arange(len(depth) + 1) * size)
    parts = [np.zeros((0, 3))]
    for s in range(len(depth)):
        pixel = flat[bounds[s]:bounds[s + 1]] - s * size
        v, u = np.divmod(pixel, depth.shape[2])
        parts.append(_camera_points(u.astype(np.float64), v.astype(np.float64),
                                    depth[s].reshape(-1)[pixel], intrinsics[s]))
    return np.concatenate(parts)


def _camera_points(u: np.ndarray, v: np.ndarray, d: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Pixels (u, v) with depth d -> camera points [..., 3], rounded to float32 (as VGGT's
    reference unprojection does) and returned as float64; ``k`` is one [3,3] or one per
    pixel [...,3,3]."""
    return np.stack(((u - k[..., 0, 2]) * d / k[..., 0, 0], (v - k[..., 1, 2]) * d / k[..., 1, 1],
                     np.broadcast_to(d, u.shape)), axis=-1).astype(np.float32).astype(np.float64)


def _unproject_pixels(u: np.ndarray, v: np.ndarray, d: np.ndarray, k: np.ndarray,
                      world_from_cam: np.ndarray) -> np.ndarray:
    """Pixels (u, v) with depth d of one camera -> world points [..., 3] float64.

    The rotation is written out term by term (no BLAS), so a pixel gets the same bits whether
    it is unprojected with its whole frame or alone, which the masked path promises.
    """
    cam = _camera_points(u, v, d, k)
    rot, trans = world_from_cam[:3, :3], world_from_cam[:3, 3]
    return np.stack([cam[..., 0] * rot[i, 0] + cam[..., 1] * rot[i, 1] + cam[..., 2] * rot[i, 2]
                     + trans[i] for i in range(3)], axis=-1)


def project_points(points_world: np.ndarray, cam_from_world: np.ndarray,
                   intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points [N,3] -> (pixels [N,2], depth [N]) for one camera (pinhole, no distortion).

    Points at or behind the camera get NaN pixels instead of a mirrored, wrong projection.
    """
    points_world = np.asarray(points_world, dtype=np.float64)
    if points_world.ndim != 2 or points_world.shape[1] != 3:
        raise ValueError(f"points_world must be [N,3], got {points_world.shape}")
    pose = to_homogeneous(np.asarray(cam_from_world, dtype=np.float64))
    if pose.shape != (4, 4):
        raise ValueError(f"cam_from_world must be one 3x4 or 4x4 pose, got {pose.shape}")
    k = np.asarray(intrinsics, dtype=np.float64)
    if k.shape != (3, 3):
        raise ValueError(f"intrinsics must be 3x3, got {k.shape}")
    cam = points_world @ pose[:3, :3].T + pose[:3, 3]
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        pix = (cam @ k.T)[:, :2] / z[:, None]
    pix[z <= 0] = np.nan
    return pix, z


def pose_to_translation_quaternion(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4x4 (or 3x4) pose -> (translation [3], quaternion [4] x,y,z,w) as ROS messages want."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape not in ((3, 4), (4, 4)):
        raise ValueError(f"pose must be 3x4 or 4x4, got {pose.shape}")
    quat = Rotation.from_matrix(pose[:3, :3]).as_quat()  # scalar-last
    return pose[:3, 3].copy(), quat


def translation_quaternion_to_pose(translation: np.ndarray, quat_xyzw: np.ndarray) -> np.ndarray:
    """(translation [3], quaternion x,y,z,w [4]) -> 4x4 float64 pose (quaternion normalised)."""
    translation = np.asarray(translation, dtype=np.float64)
    quat_xyzw = np.asarray(quat_xyzw, dtype=np.float64)
    if translation.shape != (3,) or quat_xyzw.shape != (4,):
        raise ValueError(f"need translation [3] and quaternion [4], got {translation.shape} "
                         f"and {quat_xyzw.shape}")
    if not np.isfinite(quat_xyzw).all() or np.linalg.norm(quat_xyzw) < 1e-12:
        raise ValueError(f"quaternion must be finite and non-zero, got {quat_xyzw}")
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_quat(quat_xyzw).as_matrix()
    pose[:3, 3] = translation
    return pose
