"""VGGT's 9-number camera encoding "absT_quaR_FoV" <-> camera matrices (torch).

Layout: [tx, ty, tz, qx, qy, qz, qw, fov_h, fov_w]; the pose is camera-from-world in OpenCV
axes, the quaternion is scalar-last, FoVs are in radians and the principal point is the image
centre. The op sequence follows ARCHITECTURE.md §5 so results match the reference to float
rounding. All functions accept any number of leading dimensions.
"""
from __future__ import annotations

import torch

__all__ = [
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "pose_encoding_to_extri_intri",
    "extri_intri_to_pose_encoding",
]


def _check_image_size(image_size_hw: tuple[int, int]) -> tuple[int, int]:
    if len(image_size_hw) != 2 or min(image_size_hw) <= 0:
        raise ValueError(f"image_size_hw must be (height, width) > 0, got {image_size_hw}")
    return int(image_size_hw[0]), int(image_size_hw[1])


def quaternion_to_matrix(quat_xyzw: torch.Tensor) -> torch.Tensor:
    """[...,4] XYZW -> [...,3,3]; divides by |q|^2 so the network's non-unit outputs are valid."""
    if quat_xyzw.shape[-1] != 4:
        raise ValueError(f"quaternion must have last dim 4, got {tuple(quat_xyzw.shape)}")
    x, y, z, w = torch.unbind(quat_xyzw, -1)
    s = 2.0 / (quat_xyzw * quat_xyzw).sum(-1)
    rot = torch.stack(
        (
            1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
            s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
            s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
        ),
        -1,
    )
    return rot.reshape(quat_xyzw.shape[:-1] + (3, 3))


def matrix_to_quaternion(rot: torch.Tensor) -> torch.Tensor:
    """[...,3,3] -> [...,4] XYZW with qw >= 0.

    Four candidate quaternions are formed and the one with the largest |component| (the best
    conditioned) is kept; denominators are floored at 0.1 as in the reference, which keeps the
    unused candidates finite without changing the chosen one.
    """
    if rot.shape[-2:] != (3, 3):
        raise ValueError(f"rotation must have shape [...,3,3], got {tuple(rot.shape)}")
    lead = rot.shape[:-2]
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = torch.unbind(rot.reshape(lead + (9,)), -1)
    q_abs = torch.sqrt(torch.clamp(torch.stack(
        (
            1.0 + m00 + m11 + m22,
            1.0 + m00 - m11 - m22,
            1.0 - m00 + m11 - m22,
            1.0 - m00 - m11 + m22,
        ),
        -1,
    ), min=0.0))
    # Row i: candidate computed from component i being the largest; columns are (w, x, y, z).
    candidates = torch.stack(
        (
            torch.stack((q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01), -1),
            torch.stack((m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20), -1),
            torch.stack((m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21), -1),
            torch.stack((m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2), -1),
        ),
        -2,
    )
    floor = torch.tensor(0.1, dtype=q_abs.dtype, device=q_abs.device)
    candidates = candidates / (2.0 * q_abs[..., None].max(floor))
    best = q_abs.argmax(-1)[..., None, None].expand(lead + (1, 4))
    wxyz = torch.gather(candidates, -2, best).squeeze(-2)
    xyzw = wxyz[..., [1, 2, 3, 0]]
    return torch.where(xyzw[..., 3:4] < 0, -xyzw, xyzw)


def pose_encoding_to_extri_intri(pose_enc: torch.Tensor, image_size_hw: tuple[int, int]
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """[...,9] -> (cam_from_world [...,3,4], intrinsics [...,3,3] float32) for an (H, W) image.

    The intrinsics are float32 whatever the encoding dtype, as in the reference.
    """
    if pose_enc.shape[-1] != 9:
        raise ValueError(f"pose encoding must have last dim 9, got {tuple(pose_enc.shape)}")
    height, width = _check_image_size(image_size_hw)
    trans = pose_enc[..., :3]
    rot = quaternion_to_matrix(pose_enc[..., 3:7])
    extrinsics = torch.cat([rot, trans[..., None]], dim=-1)
    fy = (height / 2.0) / torch.tan(pose_enc[..., 7] / 2.0)
    fx = (width / 2.0) / torch.tan(pose_enc[..., 8] / 2.0)
    intrinsics = torch.zeros(pose_enc.shape[:-1] + (3, 3), dtype=torch.float32,
                             device=pose_enc.device)
    intrinsics[..., 0, 0] = fx
    intrinsics[..., 1, 1] = fy
    intrinsics[..., 0, 2] = width / 2
    intrinsics[..., 1, 2] = height / 2
    intrinsics[..., 2, 2] = 1.0
    return extrinsics, intrinsics


def extri_intri_to_pose_encoding(extrinsics: torch.Tensor, intrinsics: torch.Tensor,
                                 image_size_hw: tuple[int, int]) -> torch.Tensor:
    """(cam_from_world [...,3,4|4,4], intrinsics [...,3,3]) -> [...,9] float32 encoding.

    The FoV is recomputed from fx, fy and the image size; the principal point is not encoded
    (the model assumes it at the image centre).
    """
    if extrinsics.shape[-1] != 4 or extrinsics.shape[-2] not in (3, 4):
        raise ValueError(f"extrinsics must be [...,3,4] or [...,4,4], "
                         f"got {tuple(extrinsics.shape)}")
    if intrinsics.shape[-2:] != (3, 3) or intrinsics.shape[:-2] != extrinsics.shape[:-2]:
        raise ValueError(f"intrinsics {tuple(intrinsics.shape)} must be [...,3,3] with the "
                         f"leading dims of extrinsics {tuple(extrinsics.shape)}")
    height, width = _check_image_size(image_size_hw)
    trans = extrinsics[..., :3, 3]
    quat = matrix_to_quaternion(extrinsics[..., :3, :3])
    fov_h = 2 * torch.atan((height / 2) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((width / 2) / intrinsics[..., 0, 0])
    return torch.cat([trans, quat, fov_h[..., None], fov_w[..., None]], dim=-1).float()
