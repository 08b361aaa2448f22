"""Small pieces shared by the prediction heads."""
from __future__ import annotations

import torch
from torch import Tensor


def sincos_embedding(positions: Tensor, dim: int, base: float) -> Tensor:
    """[M] positions -> [M, dim] float32: dim/2 sines then dim/2 cosines of pos * base^(-k/(dim/2)).

    Evaluated in float64 and cast at the end like the reference (float32 on MPS, which has no
    float64), so the DPT and tracker position embeddings match it bit for bit.
    """
    if dim % 2:
        raise ValueError(f"sin/cos embedding needs an even width, got {dim}")
    device = positions.device
    wide = torch.float32 if device.type == "mps" else torch.float64
    half = dim // 2
    omega = 1.0 / base ** (torch.arange(half, dtype=wide, device=device) / half)
    angles = positions.reshape(-1, 1).to(wide) * omega
    return torch.cat((angles.sin(), angles.cos()), dim=1).float()
