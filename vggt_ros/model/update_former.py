"""The tracker's transformer (ARCHITECTURE.md §7.2 step 7): time attention along each track,
space attention between tracks routed through a small set of learned virtual tracks.

Attention is torch's ``nn.MultiheadAttention`` called exactly as the reference does (same tensor
object for query/key/value in self-attention, default ``need_weights``), so the same kernels
run; a functional rewrite differs in the last bits (§10).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import Mlp


class AttnBlock(nn.Module):
    """Self-attention block. The residual starts from the NORMALISED input (reference quirk)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x)
        x = x + self.attn(x, x, x)[0]
        return x + self.mlp(self.norm2(x))


class CrossAttnBlock(nn.Module):
    """x attends to context; the residual again starts from the normalised x."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        x = self.norm1(x)
        context = self.norm_context(context)
        x = x + self.cross_attn(x, context, context)[0]
        return x + self.mlp(self.norm2(x))


class EfficientUpdateFormer(nn.Module):
    """[B,N,S,input_dim] track tokens -> [B,N,S,output_dim] updates."""

    def __init__(self, depth: int, input_dim: int, hidden_size: int, output_dim: int,
                 num_heads: int, num_virtual_tracks: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.num_virtual_tracks = num_virtual_tracks
        self.input_norm = nn.LayerNorm(input_dim)
        self.input_transform = nn.Linear(input_dim, hidden_size)
        self.output_norm = nn.LayerNorm(hidden_size)
        self.flow_head = nn.Linear(hidden_size, output_dim)
        # Misspelled exactly as in the checkpoint.
        self.virual_tracks = nn.Parameter(torch.zeros(1, num_virtual_tracks, 1, hidden_size))

        def blocks(block_type: type) -> nn.ModuleList:
            return nn.ModuleList(block_type(hidden_size, num_heads, mlp_ratio)
                                 for _ in range(depth))

        self.time_blocks = blocks(AttnBlock)
        self.space_virtual_blocks = blocks(AttnBlock)
        self.space_point2virtual_blocks = blocks(CrossAttnBlock)
        self.space_virtual2point_blocks = blocks(CrossAttnBlock)

    def forward(self, x: Tensor) -> Tensor:
        init_tokens = self.input_transform(self.input_norm(x))
        B, _, T, _ = init_tokens.shape
        virtual = self.virual_tracks.repeat(B, 1, T, 1)
        tokens = torch.cat((init_tokens, virtual), dim=1)
        N = tokens.shape[1]
        n_points = N - self.num_virtual_tracks
        for time_block, virtual_self, point_from_virtual, virtual_from_point in zip(
                self.time_blocks, self.space_virtual_blocks, self.space_point2virtual_blocks,
                self.space_virtual2point_blocks):
            # Time: attention along each track's S frames.
            tokens = time_block(tokens.contiguous().view(B * N, T, -1)).view(B, N, T, -1)
            # Space, per frame: virtual <- points, virtual <-> virtual, points <- virtual.
            space = tokens.permute(0, 2, 1, 3).contiguous().view(B * T, N, -1)
            points, virtual = space[:, :n_points], space[:, n_points:]
            virtual = virtual_from_point(virtual, points)
            virtual = virtual_self(virtual)
            points = point_from_virtual(points, virtual)
            space = torch.cat((points, virtual), dim=1)
            tokens = space.view(B, T, N, -1).permute(0, 2, 1, 3)
        tokens = tokens[:, :n_points] + init_tokens
        return self.flow_head(self.output_norm(tokens))
