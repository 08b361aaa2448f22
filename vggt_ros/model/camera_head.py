"""Camera head (ARCHITECTURE.md §4): iterative refinement of the 9-number pose encoding.

The camera tokens of the last aggregator layer are normalised once (T0). Each iteration embeds
the current raw estimate, turns it into an adaptive-LayerNorm modulation of T0, runs the trunk
(attention across the S frames of a scene) and adds a predicted delta to the raw estimate. Every
iteration emits the activated encoding [t(3), quat xyzw(4), fov_h, fov_w] with ReLU on the FoVs.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import VGGTConfig
from .layers import Block, Mlp

POSE_DIM = 9  # absT_quaR_FoV


def activate_pose(raw: Tensor) -> Tensor:
    """Translation and quaternion stay linear; field-of-view angles are made non-negative."""
    return torch.cat((raw[..., :7], F.relu(raw[..., 7:])), dim=-1)


class CameraHead(nn.Module):
    def __init__(self, config: VGGTConfig) -> None:
        super().__init__()
        dim = 2 * config.embed_dim
        self.num_iterations = config.cam_iters
        self.trunk = nn.Sequential(*(
            Block(dim, config.cam_heads, mlp_ratio=config.mlp_ratio,
                  init_values=config.init_values)
            for _ in range(config.cam_trunk_depth)))
        self.token_norm = nn.LayerNorm(dim)
        self.trunk_norm = nn.LayerNorm(dim)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_DIM))
        self.embed_pose = nn.Linear(POSE_DIM, dim)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.adaln_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim, dim // 2, POSE_DIM)

    def forward(self, tokens: Sequence[Optional[Tensor]],
                num_iterations: Optional[int] = None) -> list[Tensor]:
        """tokens: per-layer aggregator outputs; the last one [B,S,P,2C] is used.

        Returns one activated pose encoding [B,S,9] per iteration (the last is the estimate).
        """
        iterations = self.num_iterations if num_iterations is None else num_iterations
        if iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {iterations}")
        if not tokens or tokens[-1] is None:
            raise ValueError("camera head needs the last aggregator layer's tokens")
        last = tokens[-1]
        if last.dim() != 4 or last.shape[-1] != self.token_norm.normalized_shape[0]:
            raise ValueError(f"expected tokens [B,S,P,{self.token_norm.normalized_shape[0]}], "
                             f"got {tuple(last.shape)}")
        pose_tokens = self.token_norm(last[:, :, 0])
        B, S, _ = pose_tokens.shape

        raw: Optional[Tensor] = None
        outputs = []
        for _ in range(iterations):
            if raw is None:
                embedded = self.embed_pose(self.empty_pose_tokens.expand(B, S, -1))
            else:
                embedded = self.embed_pose(raw.detach())
            shift, scale, gate = self.poseLN_modulation(embedded).chunk(3, dim=-1)
            modulated = gate * (self.adaln_norm(pose_tokens) * (1 + scale) + shift)
            modulated = self.trunk(modulated + pose_tokens)
            delta = self.pose_branch(self.trunk_norm(modulated))
            raw = delta if raw is None else raw + delta
            outputs.append(activate_pose(raw))
        return outputs
