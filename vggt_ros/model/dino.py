"""DINOv2 ViT with register tokens, used by the aggregator as its patch embedding.

Key names follow the checkpoint (``aggregator.patch_embed.*``): ``cls_token``, ``pos_embed``,
``register_tokens``, ``mask_token`` (never used at inference, but present in the file),
``patch_embed.proj``, ``blocks.N``, ``norm``. Only the final-normed patch tokens leave the module.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import VGGTConfig
from .layers import Block, BlockRunner, run_block

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

    def patch_grid(self, height: int, width: int) -> tuple[int, int]:
        """Patch rows and columns of an image; a ValueError unless both sides are multiples of
        the patch size."""
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch size "
                             f"{self.patch_size}")
        return height // self.patch_size, width // self.patch_size

    def position_embedding(self, h: int, w: int, dtype: torch.dtype) -> Tensor:
        """Absolute position table for an h x w patch grid, shape [1, 1 + h*w, dim].

        The stored grid is used as is only for the exact square training grid; any other grid is
        resampled in float32 with antialiased bicubic at an explicit output size (the reference
        behaviour; antialias changes the kernel even when upsampling). Public so a caller that
        sees one grid many times can build it once and pass it to ``forward``.
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

    def forward(self, images: Tensor, run_block: BlockRunner = run_block,
                position_table: Optional[Tensor] = None) -> Tensor:
        """Normalised images [N,3,H,W] -> final-normed patch tokens [N, h*w, dim].

        The patch convolution runs in the images' dtype; CLS, registers and position table
        promote the stream to their dtype (fp32), so a caller with lower-precision conv weights
        passes images in that precision. ``run_block`` runs each block (see ``BlockRunner``);
        ``position_table`` replaces ``position_embedding(h, w)`` (e.g. a cached one).
        """
        n, _, height, width = images.shape
        h, w = self.patch_grid(height, width)
        x = self.patch_embed(images)
        x = torch.cat((self.cls_token.expand(n, -1, -1), x), dim=1)
        x = x + (self.position_embedding(h, w, x.dtype) if position_table is None
                 else position_table)
        x = torch.cat((x[:, :1], self.register_tokens.expand(n, -1, -1), x[:, 1:]), dim=1)
        for block in self.blocks:
            x = run_block(block, x, None)
        x = self.norm(x)
        return x[:, 1 + self.num_register_tokens:]
