"""DINOv2 ViT with register tokens, used by the aggregator as its patch embedding.

Key names follow the checkpoint (``aggregator.patch_embed.*``): ``cls_token``, ``pos_embed``,
``register_tokens``, ``mask_token`` (never used at inference, but present in the file),
``patch_embed.proj``, ``blocks.N``, ``norm``. Only the final-normed patch tokens leave the module.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import VGGTConfig
from .layers import Block

DINO_NORM_EPS = 1e-6


class PatchConv(nn.Module):
    """Non-overlapping patch convolution; a module of its own so the key is ``patch_embed.proj``."""

    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        """[N,3,H,W] -> [N, h*w, dim] in row-major (y, then x) order."""
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoViT(nn.Module):
    """ViT-with-registers trunk: CLS + registers + patches, pre-norm blocks, final LayerNorm."""

    def __init__(self, config: VGGTConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.patch_size = config.patch_size
        self.grid = config.img_size // config.patch_size
        self.num_register_tokens = config.num_register_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid * self.grid, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, config.num_register_tokens, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.patch_embed = PatchConv(config.patch_size, dim)
        self.blocks = nn.ModuleList(
            Block(dim, config.dino_heads, mlp_ratio=config.mlp_ratio, norm_eps=DINO_NORM_EPS,
                  init_values=1.0)
            for _ in range(config.dino_depth))
        self.norm = nn.LayerNorm(dim, eps=DINO_NORM_EPS)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.normal_(self.register_tokens, std=1e-6)

    def _position_embedding(self, h: int, w: int, dtype: torch.dtype) -> Tensor:
        """Absolute position table for an h x w patch grid, shape [1, 1 + h*w, dim].

        The stored grid is used as is only for the exact square training grid; any other grid is
        resampled in float32 with antialiased bicubic at an explicit output size (the reference
        behaviour; antialias changes the kernel even when upsampling).
        """
        if h == self.grid and w == self.grid:
            return self.pos_embed
        table = self.pos_embed.float()
        dim = table.shape[-1]
        patch = table[:, 1:].reshape(1, self.grid, self.grid, dim).permute(0, 3, 1, 2)
        patch = F.interpolate(patch, size=(h, w), mode="bicubic", antialias=True,
                              align_corners=False)
        patch = patch.permute(0, 2, 3, 1).reshape(1, h * w, dim)
        return torch.cat((table[:, :1], patch), dim=1).to(dtype)

    def forward(self, images: Tensor) -> Tensor:
        """Normalised images [N,3,H,W] -> final-normed patch tokens [N, h*w, dim]."""
        n, _, height, width = images.shape
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch size "
                             f"{self.patch_size}")
        h, w = height // self.patch_size, width // self.patch_size
        x = self.patch_embed(images)
        x = torch.cat((self.cls_token.expand(n, -1, -1), x), dim=1)
        x = x + self._position_embedding(h, w, x.dtype)
        x = torch.cat((x[:, :1], self.register_tokens.expand(n, -1, -1), x[:, 1:]), dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[:, 1 + self.num_register_tokens:]
