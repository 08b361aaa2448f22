"""Auxiliary training signals: where each patch of every frame lands in the first frame.

Why: a from-scratch aggregator has to discover cross-view correspondence before the camera
loss can say anything useful, and the camera loss reaches the patch tokens only through one
token per frame; our small demo models sat at the no-motion pose for thousands of steps. Two
losses supervise the correspondence directly, both from one projection of the patch centres
with the ground-truth depth and poses:
* flow: a linear probe on one aggregator layer's patch tokens must output each patch's
  displacement to its position in frame 0;
* matching: one attention head of a global block must attend from each patch of the later
  frames to the frame-0 patch that shows the same point.
The probe is training-only: it is not part of VGGT and is never exported, so checkpoints keep
the official key structure.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vggt_ros.geometry.reprojection import VISIBILITY_DEPTH_TOLERANCE, rigid_inverse
from vggt_ros.training.normalize import depth_to_camera_points


class FlowProbe(nn.Module):
    """LayerNorm + linear map from a patch token (2C channels) to a 2-D displacement."""

    def __init__(self, token_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(token_dim)
        self.linear = nn.Linear(token_dim, 2)

    def forward(self, tokens: Tensor, patch_start: int, grid: tuple[int, int]) -> Tensor:
        """tokens [B,S,P,2C] of one aggregator layer -> flow [B,S,h,w,2] (fractions of W, H)."""
        patches = tokens[:, :, patch_start:].float()
        out = self.linear(self.norm(patches))
        return out.reshape(*tokens.shape[:2], *grid, 2)


class PatchProjection(NamedTuple):
    """Patch centres of every frame of a batch projected into frame 0."""

    centres: Tensor  # [h,w,2] pixel (x, y) of the patch centres
    uv0: Tensor  # [B,S,h,w,2] their pixels in frame 0
    z0: Tensor  # [B,S,h,w] their depth in camera 0
    ok: Tensor  # [B,S,h,w] bool: the centre has depth and lands in front of camera 0


def project_patch_centres_to_first_frame(depth: Tensor, cam_from_cam0: Tensor,
                                         intrinsics: Tensor, valid: Tensor, patch: int
                                         ) -> PatchProjection:
    """Where the centre of every patch of every frame lands in frame 0.

    depth/valid [B,S,H,W], cam_from_cam0 [B,S,4,4] (frame 0 the identity), intrinsics
    [B,S,3,3], ``patch`` the patch size in pixels.
    """
    centre = patch // 2
    depth_c = depth[..., centre::patch, centre::patch]
    valid_c = valid[..., centre::patch, centre::patch]
    shifted = intrinsics.clone()  # sample pixel (centre + p*k) as pixel k of a subgrid
    shifted[..., :2, 2] = (intrinsics[..., :2, 2] - centre) / patch
    shifted[..., :2, :2] = intrinsics[..., :2, :2] / patch
    points = depth_to_camera_points(depth_c, shifted)  # [B,S,h,w,3] in each camera
    cam0_from_cam = rigid_inverse(cam_from_cam0)
    rot, trans = cam0_from_cam[:, :, None, None, :3, :3], cam0_from_cam[:, :, None, None, :3, 3]
    in_cam0 = (rot @ points[..., None])[..., 0] + trans
    k0 = intrinsics[:, :1, None, None]  # [B,1,1,1,3,3]
    z0 = in_cam0[..., 2]
    ok = valid_c & (z0 > 1e-6 * depth_c.clamp(min=1e-6))
    z_safe = torch.where(ok, z0, torch.ones_like(z0))
    uv0 = torch.stack((k0[..., 0, 0] * in_cam0[..., 0] / z_safe + k0[..., 0, 2],
                       k0[..., 1, 1] * in_cam0[..., 1] / z_safe + k0[..., 1, 2]), dim=-1)
    rows, cols = depth_c.shape[-2:]
    grid = [torch.arange(n, device=depth.device, dtype=depth.dtype) * patch + centre
            for n in (rows, cols)]
    v, u = torch.meshgrid(*grid, indexing="ij")
    return PatchProjection(torch.stack((u, v), dim=-1), uv0, z0, ok)


def patch_flow(projection: PatchProjection, image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Ground-truth displacement of every patch centre to its projection in frame 0.

    -> (flow [B,S,h,w,2] as fractions of the image width and height, valid [B,S,h,w] bool).
    The flow is geometric: it is defined wherever the centre has depth and lands in front of
    camera 0, inside the image or not, occluded or not, because the poses determine it either
    way.
    """
    height, width = image_hw
    uv0 = projection.uv0
    scale = torch.tensor([width, height], device=uv0.device, dtype=uv0.dtype)
    flow = (uv0 - projection.centres) / scale
    return torch.where(projection.ok[..., None], flow, torch.zeros_like(flow)), projection.ok


def flow_loss(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Mean L1 over valid patches of [B,S,h,w,2] flows (0 when nothing is valid)."""
    error = F.l1_loss(pred.float(), target.float(), reduction="none").sum(-1)
    mask = valid.to(error.dtype)
    return (error * mask).sum() / mask.sum().clamp(min=1.0)


def matching_patch_targets(projection: PatchProjection, depth: Tensor, valid: Tensor,
                           patch: int) -> Tensor:
    """For every patch of frames 1..S-1, the row-major index of the frame-0 patch that shows
    its centre, or -1 where that point is outside frame 0, hidden there (frame 0's depth at
    the spot disagrees by more than the relative ``VISIBILITY_DEPTH_TOLERANCE`` of the track
    ground truth) or has no depth.

    ``projection`` of the batch's ``depth``/``valid`` [B,S,H,W]; returns [B,S-1,h,w] int64.
    """
    _, uv0, z0, ok = projection
    height, width = depth.shape[-2:]
    rows, cols = height // patch, width // patch
    x, y = uv0[..., 0], uv0[..., 1]
    inside = ok & (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    px = torch.where(inside, x, torch.zeros_like(x)).round().long().clamp(0, width - 1)
    py = torch.where(inside, y, torch.zeros_like(y)).round().long().clamp(0, height - 1)
    batch = torch.arange(depth.shape[0], device=depth.device)[:, None, None, None]
    seen = depth[:, 0][batch, py, px]
    visible = inside & valid[:, 0][batch, py, px] & ((seen - z0).abs() <= VISIBILITY_DEPTH_TOLERANCE * z0)
    index = (py // patch).clamp(max=rows - 1) * cols + (px // patch).clamp(max=cols - 1)
    return torch.where(visible, index, torch.full_like(index, -1))[:, 1:]


def first_frame_attention_logits(block: nn.Module, tokens: Tensor, positions: Any,
                                 frames: int, patch_start: int, head: int = 0) -> Tensor:
    """Attention logits of one head of a global block: every patch query of frames 1..S-1
    against the patch keys of frame 0.

    Runs the block's own query/key path (``norm1`` then ``Attention.project_qkv``, with the
    SDPA default 1/sqrt(d) scale) on the block input ``tokens`` [B,S*P,C], so a loss on these
    logits trains exactly the weights the model attends with. Returns [B,S-1,hw,hw] float32.
    """
    b, n, _ = tokens.shape
    per_frame = n // frames
    q, k, _ = block.attn.project_qkv(block.norm1(tokens.float()), positions)
    q = q[:, head].reshape(b, frames, per_frame, -1)[:, 1:, patch_start:]
    k = k[:, head].reshape(b, frames, per_frame, -1)[:, 0, patch_start:]
    return torch.einsum("bsqd,bkd->bsqk", q, k) * block.attn.head_dim ** -0.5


def matching_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy of [B,S-1,hw,hw] attention logits against [B,S-1,h,w] target patch
    indices (-1 ignored); 0 when no patch has a target."""
    flat_targets = targets.reshape(-1)
    if not bool((flat_targets >= 0).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), flat_targets, ignore_index=-1)
