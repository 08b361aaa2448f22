"""Transformer building blocks shared by DINO, the aggregator and the camera head.

Everything here follows ARCHITECTURE.md §3.5/§10 to the op: a fused ``qkv`` Linear,
``F.scaled_dot_product_attention`` with its default scale, LayerScale as a plain multiply and
residuals written ``x + gamma * branch``. Mathematically equal rewrites (three Linears, a manual
softmax, ...) change the last bits and break parity with the reference fixtures.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


class Mlp(nn.Module):
    """fc1 -> exact (erf) GELU -> fc2; the output width defaults to the input width."""

    def __init__(self, dim: int, hidden_dim: int, out_dim: Optional[int] = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim if out_dim is None else out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel learned residual scale (parameter name ``gamma`` as in the checkpoint)."""

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class RopePositions(NamedTuple):
    """Integer (y, x) token positions plus the RoPE table length they need.

    Carrying ``table_len`` (max position + 1) next to the positions lets the RoPE module pick its
    cached table without reading ``positions.max()`` back from the device on every call.
    """

    yx: Tensor  # [B or 1, N, 2] int64
    table_len: int

    def repeat_tokens(self, times: int) -> "RopePositions":
        """Positions for ``times`` frames concatenated along the token axis (global attention)."""
        return RopePositions(self.yx.repeat(1, times, 1), self.table_len)


class RopeTable(NamedTuple):
    """Per-token rotation of a whole token sequence: (cos, sin_signed) [N, D] for head dim D.

    An alternative to ``RopePositions`` for callers that run the same grid many times (the fast
    path): built once per (grid, frame count) by ``RotaryPositionEmbedding2D.table`` and applied
    with one fused multiply-add instead of two table gathers and a chunk/cat per axis.
    """

    cos: Tensor
    sin_signed: Tensor

    def to(self, dtype: torch.dtype) -> "RopeTable":
        return RopeTable(self.cos.to(dtype), self.sin_signed.to(dtype))

    def rotate(self, t: Tensor) -> Tensor:
        """2D RoPE on t [..., N, D]: each half (y, x) is rotate_half-ed within itself.

        ``rotate_half(t) * sin`` equals ``swap(t) * sin_signed`` where swap exchanges the two
        quarters of each half and sin_signed negates the first quarter.

        The swap is a concatenation of the four quarters, not ``unflatten(...).flip(...)``: the
        same permutation, but torch 2.11's inductor on an H200 compiled the flip wrongly for
        head dim 32 in the per-frame blocks (batch of frames against one table): NaN or 20 %
        wrong tokens where eager code was right (docs/PERFORMANCE.md, the demo model's NaN).
        """
        q = t.shape[-1] // 4
        swapped = torch.cat((t[..., q:2 * q], t[..., :q], t[..., 3 * q:], t[..., 2 * q:3 * q]),
                            dim=-1)
        return torch.addcmul(t * self.cos, swapped, self.sin_signed)


# What the attention layers accept as token positions: integer positions (the reference's
# per-call table gather) or a prebuilt rotation table.
Positions = Union[RopePositions, RopeTable]


def patch_positions(h: int, w: int, num_special: int, device: torch.device) -> RopePositions:
    """Per-frame token positions: special tokens at (0, 0), patch (i, j) at (i + 1, j + 1).

    The +1 offset keeps every patch distinct from the special tokens, which get no rotation.
    Row-major order matches the patch flattening of the conv embedding.
    """
    ys = torch.arange(h, device=device, dtype=torch.long) + 1
    xs = torch.arange(w, device=device, dtype=torch.long) + 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(h * w, 2)
    special = torch.zeros(num_special, 2, device=device, dtype=torch.long)
    yx = torch.cat([special, grid], dim=0).unsqueeze(0)
    return RopePositions(yx, max(h, w) + 1)


class RotaryPositionEmbedding2D(nn.Module):
    """2D rotary embedding: first half of each head rotated by y, second half by x.

    Tables are built exactly as ARCHITECTURE.md §3.4 describes (float32 ``1/base**e``, an einsum
    outer product, duplicated, cast, then cos/sin) so rotations match the reference bit for bit.
    The einsum is deliberately kept: under CUDA autocast it rounds the angles to bf16 like the
    reference does. The cache key therefore includes the autocast state (the reference keys by
    dtype only, so its first call decides the angles for all later ones, §9) and inference mode
    (inference tensors cannot be reused by a later autograd forward).
    """

    def __init__(self, frequency: float = 100.0) -> None:
        super().__init__()
        self.base = float(frequency)
        self._tables: dict[tuple, tuple[Tensor, Tensor]] = {}

    def _table(self, dim: int, length: int, device: torch.device,
               dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        key = (dim, length, device, dtype, torch.is_autocast_enabled(device.type),
               torch.is_inference_mode_enabled())
        table = self._tables.get(key)
        if table is None:
            exponents = torch.arange(0, dim, 2, device=device).float() / dim
            inv_freq = 1.0 / (self.base ** exponents)
            steps = torch.arange(length, device=device, dtype=inv_freq.dtype)
            angles = torch.einsum("i,j->ij", steps, inv_freq).to(dtype)
            angles = torch.cat((angles, angles), dim=-1)
            table = (angles.cos().to(dtype), angles.sin().to(dtype))
            self._tables[key] = table
        return table

    @staticmethod
    def _rotate_half(t: Tensor) -> Tensor:
        half = t.shape[-1] // 2
        return torch.cat((-t[..., half:], t[..., :half]), dim=-1)

    def _rotate(self, t: Tensor, pos: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        cos_p = F.embedding(pos, cos)[:, None]
        sin_p = F.embedding(pos, sin)[:, None]
        return (t * cos_p) + (self._rotate_half(t) * sin_p)

    def table(self, positions: RopePositions, head_dim: int, device: torch.device) -> RopeTable:
        """The fp32 rotation of every token of ``positions`` (one sequence, [1, N, 2]).

        Built from the same fp32 table as ``forward`` uses outside autocast, so applying it
        rotates exactly as ``forward`` does there (up to the rounding of the fused update).
        """
        axis = head_dim // 2
        with torch.autocast(device.type, enabled=False):  # exact fp32 angles, whoever calls
            cos, sin = self._table(axis, positions.table_len, device, torch.float32)
        sign = torch.ones(axis, device=device)
        sign[: axis // 2] = -1.0
        yx = positions.yx[0]
        cos_t = torch.cat((F.embedding(yx[:, 0], cos), F.embedding(yx[:, 1], cos)), dim=-1)
        sin_t = torch.cat((F.embedding(yx[:, 0], sin) * sign, F.embedding(yx[:, 1], sin) * sign),
                          dim=-1)
        return RopeTable(cos_t, sin_t)

    def forward(self, tokens: Tensor, positions: RopePositions) -> Tensor:
        """Rotate ``tokens`` [B, heads, N, D] by ``positions.yx`` [B or 1, N, 2]."""
        axis_dim = tokens.shape[-1] // 2
        cos, sin = self._table(axis_dim, positions.table_len, tokens.device, tokens.dtype)
        t_y, t_x = tokens.chunk(2, dim=-1)
        t_y = self._rotate(t_y, positions.yx[..., 0], cos, sin)
        t_x = self._rotate(t_x, positions.yx[..., 1], cos, sin)
        return torch.cat((t_y, t_x), dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection, optional qk-norm and RoPE."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False,
                 rope: Optional[RotaryPositionEmbedding2D] = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def project_qkv(self, x: Tensor, pos: Optional[Positions] = None
                    ) -> tuple[Tensor, Tensor, Tensor]:
        """[B,N,C] -> q, k, v [B,heads,N,D] as attended: qk-norm and RoPE applied. Public so
        training code can supervise the attention logits this layer really computes."""
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if isinstance(pos, RopeTable):
            q, k = pos.rotate(q), pos.rotate(k)
        elif self.rope is not None and pos is not None:
            q = self.rope(q, pos)
            k = self.rope(k, pos)
        return q, k, v

    def forward(self, x: Tensor, pos: Optional[Positions] = None,
                attend: Optional["AttendFn"] = None) -> Tensor:
        """attend: what computes attention from q, k, v [B,heads,N,D] (default: exact SDPA);
        the seam for approximate attention (``vggt_ros.model.sparse_attention``)."""
        b, n, c = x.shape
        q, k, v = self.project_qkv(x, pos)
        x = F.scaled_dot_product_attention(q, k, v) if attend is None else attend(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both residual branches.

    ``rope`` (aggregator only) is one instance shared by all blocks, so its table cache is
    built once per grid; it has no parameters, hence no checkpoint keys.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = False,
                 rope: Optional[RotaryPositionEmbedding2D] = None, norm_eps: float = 1e-5,
                 init_values: float = 0.01) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm, rope=rope)
        self.ls1 = LayerScale(dim, init_values)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values)

    def forward(self, x: Tensor, pos: Optional[Positions] = None,
                compute_dtype: Optional[torch.dtype] = None,
                attend: Optional["AttendFn"] = None) -> Tensor:
        """compute_dtype: the dtype the normalised inputs of the matrix products are cast to,
        for weights stored in it (the fast path's bf16); the residual stream keeps x's dtype, so
        rounding does not accumulate over the blocks. None: the reference numerics, where
        autocast (if any) decides. attend: the attention function (default exact SDPA)."""
        x = x + self.ls1(self.attn(_cast(self.norm1(x), compute_dtype), pos, attend))
        return x + self.ls2(self.mlp(_cast(self.norm2(x), compute_dtype)))


def _cast(x: Tensor, dtype: Optional[torch.dtype]) -> Tensor:
    return x if dtype is None else x.to(dtype)


# Computes attention from q, k, v [B,heads,N,D] -> [B,heads,N,D]; exact SDPA unless a caller
# supplies an approximation (the fast path's block-sparse global attention).
AttendFn = Callable[[Tensor, Tensor, Tensor], Tensor]

# Runs one block of a stack: (block, tokens, positions or None) -> tokens. The stacks
# (DinoViT, Aggregator) take one, so a caller can choose how blocks run (compiled, in another
# dtype, recomputed in the backward pass) without a second copy of the model's graph.
BlockRunner = Callable[[Block, Tensor, Optional[Positions]], Tensor]


def run_block(block: Block, x: Tensor, pos: Optional[Positions]) -> Tensor:
    """The plain block call (the reference's)."""
    return block(x, pos)


def run_block_checkpointed(block: Block, x: Tensor, pos: Optional[Positions]) -> Tensor:
    """The block with its activations recomputed in the backward pass (training memory);
    a plain call when no gradient is recorded."""
    if not torch.is_grad_enabled():
        return block(x, pos)
    return checkpoint(block, x, pos, use_reentrant=False)
