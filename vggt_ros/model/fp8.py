"""FP8 matrix products for the transformer blocks: an opt-in speed switch of the fast path.

Why: at S=32 the blocks' GEMMs are the largest cost after global attention, and on Hopper an
FP8 (e4m3) GEMM has twice the bf16 peak. A probe on the H200 measured row-wise scaled
``torch._scaled_mm`` 1.1-1.4x faster than bf16 for the block GEMMs at S=8 and 1.3-1.7x at S=32
(issue 17). What it costs in accuracy is the question ``vggt_bench --variants fp8`` answers
against the fp32 run of the same weights; it stays off by default.

Scaling (why row-wise): e4m3 has 3 mantissa bits and a range of +-448, so one scale per tensor
would let a few large activations (VGGT's special tokens) flush the rest towards zero. Each
weight row (output channel) gets its own scale once, each activation row (token) its own scale
per call; the product is rescaled by the outer product of the two, inside the GEMM.

``Fp8Linear`` replaces an ``nn.Linear`` inside the fast path's converted model only; the
reference model and the checkpoint keys are untouched (the fast path converts the loaded
weights in place, as it does for bf16).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

E4M3 = torch.float8_e4m3fn
E4M3_MAX = float(torch.finfo(E4M3).max)  # 448
_TINY = 1e-12  # keeps an all-zero row from dividing by zero


def quantize_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """[M, K] -> (e4m3 [M, K], fp32 scale [M, 1]) with x ~= q * scale row by row."""
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp_min(_TINY)
    scale = amax / E4M3_MAX
    return (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


class Fp8Linear(nn.Module):
    """y = x W^T + b with W and x in e4m3 (row-wise scales) and y in ``out_dtype``.

    The weight is quantised once at conversion; the activation on every call (one extra
    element-wise pass, which torch.compile fuses with the LayerNorm or GELU before it).
    """

    def __init__(self, weight_q: Tensor, weight_scale: Tensor, bias: Tensor | None,
                 out_dtype: torch.dtype) -> None:
        super().__init__()
        self.in_features = weight_q.shape[1]
        self.out_features = weight_q.shape[0]
        self.out_dtype = out_dtype
        # Non-persistent: these are a derived format of the checkpoint's weight, never saved.
        self.register_buffer("weight_q", weight_q, persistent=False)
        self.register_buffer("weight_scale", weight_scale.reshape(1, -1), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.to(out_dtype),
                             persistent=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, out_dtype: torch.dtype) -> "Fp8Linear":
        """Quantise ``linear``'s weight per output channel; its dimensions must be multiples
        of 16 (what the FP8 GEMM kernels require)."""
        if linear.in_features % 16 or linear.out_features % 16:
            raise ValueError(f"FP8 GEMMs need dimensions divisible by 16, got "
                             f"{linear.out_features}x{linear.in_features}")
        with torch.no_grad():
            weight_q, scale = quantize_rows(linear.weight.detach())
            bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(weight_q, scale, bias, out_dtype)

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        x_q, x_scale = quantize_rows(x.reshape(-1, self.in_features))
        # weight_q.t() is the column-major [K, N] operand the FP8 GEMM wants; no copy.
        y = torch._scaled_mm(x_q, self.weight_q.t(), scale_a=x_scale, scale_b=self.weight_scale,
                             out_dtype=self.out_dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"out_dtype={self.out_dtype}")


def convert_block_linears(root: nn.Module, block_type: type, out_dtype: torch.dtype) -> int:
    """Replace the ``nn.Linear``s inside every ``block_type`` module under ``root`` (attention
    qkv/proj, MLP fc1/fc2) with ``Fp8Linear``; returns how many were replaced. Patch embeddings,
    heads and everything outside the blocks keep their dtype."""
    replaced = 0
    for block in [m for m in root.modules() if isinstance(m, block_type)]:
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, Fp8Linear.from_linear(child, out_dtype))
                    replaced += 1
    return replaced
