"""Alternating frame/global attention over DINO patch tokens (ARCHITECTURE.md §3).

Returns one entry per aggregator layer: the [B,S,P,2C] concatenation of the frame-block and
global-block outputs for the layers the heads read (``config.cached_layers``) and ``None`` for
the rest, so a 24-layer run keeps only 4 layer outputs alive.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .config import VGGTConfig
from .dino import DinoViT
from .layers import (Block, BlockRunner, Positions, RopePositions, RotaryPositionEmbedding2D,
                     patch_positions, run_block, run_block_checkpointed)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PATCH_START_IDX = 5  # camera token + 4 register tokens


class Aggregator(nn.Module):
    """DINO patch embedding + special tokens + ``depth`` (frame block, global block) pairs."""

    def __init__(self, config: VGGTConfig) -> None:
        super().__init__()
        if config.num_register_tokens + 1 != PATCH_START_IDX:
            raise ValueError("the VGGT heads expect exactly 4 register tokens (patch_start_idx 5)")
        dim = config.embed_dim
        self.patch_size = config.patch_size
        self.cached_layers = frozenset(config.cached_layers)
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, config.num_register_tokens, dim))
        self.patch_embed = DinoViT(config)
        self.rope = RotaryPositionEmbedding2D(config.rope_freq)

        def make_block() -> Block:
            return Block(dim, config.num_heads, mlp_ratio=config.mlp_ratio, qk_norm=True,
                         rope=self.rope, init_values=config.init_values)

        self.frame_blocks = nn.ModuleList(make_block() for _ in range(config.depth))
        self.global_blocks = nn.ModuleList(make_block() for _ in range(config.depth))
        self.register_buffer("_resnet_mean", torch.empty(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("_resnet_std", torch.empty(1, 1, 3, 1, 1), persistent=False)
        self.reset_constant_buffers()
        nn.init.normal_(self.camera_token, std=1e-6)
        nn.init.normal_(self.register_token, std=1e-6)
        self._positions: dict[tuple, RopePositions] = {}
        # Recompute every DINO and aggregator block in the backward pass (training memory).
        self.gradient_checkpointing = False

    def reset_constant_buffers(self, device: Optional[torch.device] = None) -> None:
        """(Re)create the ImageNet constants; the loader calls this after a meta-device build,
        because non-persistent buffers are not part of the state_dict it assigns."""
        device = device if device is not None else self._resnet_mean.device
        dtype = self._resnet_mean.dtype
        self._resnet_mean = torch.tensor(IMAGENET_MEAN, device=device, dtype=dtype).view(1, 1, 3, 1, 1)
        self._resnet_std = torch.tensor(IMAGENET_STD, device=device, dtype=dtype).view(1, 1, 3, 1, 1)

    def normalize(self, images: Tensor) -> Tensor:
        """Images in [0,1] ([..., 3, H, W]) -> ImageNet-normalised, as DINO was trained."""
        return (images - self._resnet_mean.view(3, 1, 1)) / self._resnet_std.view(3, 1, 1)

    def special_tokens(self, batch: int, frames: int) -> Tensor:
        """Camera + register tokens [B*S, PATCH_START_IDX, C] that lead every frame's tokens.

        Each is stored twice ([1,2,X,C]): index 0 for frame 0, the reference frame the
        predictions are expressed in, and index 1 for every other frame.
        """
        def per_frame(token: Tensor) -> Tensor:
            first = token[:, :1].expand(batch, 1, *token.shape[2:])
            rest = token[:, 1:].expand(batch, frames - 1, *token.shape[2:])
            return torch.cat((first, rest), dim=1).reshape(batch * frames, *token.shape[2:])

        return torch.cat((per_frame(self.camera_token), per_frame(self.register_token)), dim=1)

    def grid_positions(self, h: int, w: int, device: torch.device) -> RopePositions:
        """RoPE positions of one frame's tokens on an h x w patch grid (cached)."""
        # Keyed by device too: the reference keys by (h, w) only and hands CPU tensors to CUDA.
        key = (h, w, device, torch.is_inference_mode_enabled())
        positions = self._positions.get(key)
        if positions is None:
            positions = patch_positions(h, w, PATCH_START_IDX, device)
            self._positions[key] = positions
        return positions

    def run_block(self, block: Block, x: Tensor, pos: Optional[Positions]) -> Tensor:
        """The default ``BlockRunner`` of this aggregator and its DINO: a plain call, or a
        recomputed one in the backward pass when ``gradient_checkpointing`` is on."""
        if self.gradient_checkpointing:
            return run_block_checkpointed(block, x, pos)
        return run_block(block, x, pos)

    def forward(self, images: Tensor, run_block: Optional[BlockRunner] = None
                ) -> tuple[list[Optional[Tensor]], int]:
        """images [B,S,3,H,W] in [0,1] -> (per-layer tokens [B,S,P,2C] or None, patch_start_idx).

        ``run_block`` runs every DINO and aggregator block (default ``self.run_block``).
        """
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"aggregator expects images [B,S,3,H,W], got {tuple(images.shape)}")
        b, s, _, height, width = images.shape
        h, w = self.patch_embed.patch_grid(height, width)
        run = run_block or self.run_block
        patch_tokens = self.patch_embed(self.normalize(images).reshape(b * s, 3, height, width),
                                        run)
        return self.alternate(patch_tokens.unflatten(0, (b, s)), h, w, run), PATCH_START_IDX

    def alternate(self, patch_tokens: Tensor, h: int, w: int,
                  run_block: Optional[BlockRunner] = None,
                  rope: Optional[tuple[Positions, Positions]] = None,
                  run_global_block: Optional[BlockRunner] = None) -> list[Optional[Tensor]]:
        """DINO patch tokens [B,S,h*w,C] -> the per-layer outputs of the alternating blocks.

        rope: the (frame, global) token positions; default the integer positions of the grid,
        gathered into rotations per call (the reference). A caller may pass prebuilt
        ``RopeTable``s instead. run_global_block: the runner of the global blocks (default
        ``run_block``), e.g. one that gives them an approximate attention function.
        """
        b, s, _, c = patch_tokens.shape
        tokens = torch.cat((self.special_tokens(b, s), patch_tokens.reshape(b * s, -1, c)), dim=1)
        p = tokens.shape[1]
        if rope is None:
            frame_pos = self.grid_positions(h, w, patch_tokens.device)
            rope = (frame_pos, frame_pos.repeat_tokens(s))
        frame_pos, global_pos = rope
        run = run_block or self.run_block
        run_global = run_global_block or run

        outputs: list[Optional[Tensor]] = []
        for index, (frame_block, global_block) in enumerate(zip(self.frame_blocks,
                                                                self.global_blocks)):
            tokens = run(frame_block, tokens.reshape(b * s, p, c), frame_pos)
            frame_out = tokens.reshape(b, s, p, c)
            tokens = run_global(global_block, tokens.reshape(b, s * p, c), global_pos)
            if index in self.cached_layers:
                outputs.append(torch.cat((frame_out, tokens.reshape(b, s, p, c)), dim=-1))
            else:
                outputs.append(None)
        return outputs
