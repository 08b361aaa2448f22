"""Block-sparse global attention: an opt-in, training-free approximation for long windows.

Why: the aggregator's global attention is quadratic in the window (S frames of ~1041 tokens at
392x518), so at S=32 the 24 global layers take ~60 % of the forward and at S=128 nearly all of
it. Its attention maps are sparse in practice: a patch attends mostly to the patches of other
frames that show the same surface, and to the special tokens. The method follows "Faster VGGT
with Block-Sparse Global Attention" (arXiv 2509.07120), written here from its description:

1. put the special tokens (camera + registers of every frame) first, so the patch tokens of each
   frame are contiguous and blocks of ``block_size`` tokens are regions of one or two frames;
2. average the (rotated, normalised) queries and keys per block and estimate the block-to-block
   attention mass as ``softmax(mean_q . mean_k / sqrt(d) + log(tokens in the key block))``;
3. for every query block (per head) keep the key blocks with the largest estimated mass until
   their sum reaches ``mass`` (a cumulative threshold), capped at ``max_ratio`` of all blocks;
4. always keep the block itself (the diagonal), the key blocks holding special tokens and, by
   default, the first frame's (the reference frame); query blocks holding special tokens
   attend to everything (the camera token is what the camera head reads);
5. attend only over the kept blocks: FlexAttention with a ``BlockMask`` built from the selection
   (compiled; the fast kernel), or SDPA with the block mask expanded to a token mask (dense
   arithmetic, for the CPU and for tests).

With ``mass=1`` (and any ``max_ratio`` that keeps everything) every block is kept and the result
is exact attention up to float rounding. The approximation changes the model's outputs; how much
is measured by ``vggt_bench --approx`` (docs/PERFORMANCE.md), never assumed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, flex_attention

SPARSE_KERNELS = ("auto", "flex", "dense")


@dataclass(frozen=True)
class SparseGlobalAttention:
    """Settings of the block-sparse global attention (``FastOptions.sparse_global``)."""

    block_size: int = 128  # tokens per block (FlexAttention's native tile is 128)
    mass: float = 0.9  # estimated attention mass each query block's kept key blocks must cover
    max_ratio: float = 1.0  # at most this fraction of the key blocks per query block
    keep_first_frame: bool = True  # the reference frame's blocks are always kept
    min_frames: int = 32  # windows with fewer frames run exact attention
    kernel: str = "auto"  # flex (FlexAttention), dense (SDPA + token mask), auto: flex on CUDA

    def __post_init__(self) -> None:
        if isinstance(self.block_size, bool) or not isinstance(self.block_size, int) \
                or self.block_size < 16 or self.block_size % 16:
            raise ValueError(f"block_size must be a multiple of 16 (>= 16), got "
                             f"{self.block_size!r}")
        if not 0.0 < self.mass <= 1.0:
            raise ValueError(f"mass must be in (0, 1] (1 keeps every block), got {self.mass!r}")
        if not 0.0 < self.max_ratio <= 1.0:
            raise ValueError(f"max_ratio must be in (0, 1], got {self.max_ratio!r}")
        if isinstance(self.min_frames, bool) or not isinstance(self.min_frames, int) \
                or self.min_frames < 1:
            raise ValueError(f"min_frames must be an int >= 1, got {self.min_frames!r}")
        if self.kernel not in SPARSE_KERNELS:
            raise ValueError(f"kernel must be one of {SPARSE_KERNELS}, got {self.kernel!r}")

    @property
    def keeps_everything(self) -> bool:
        return self.mass >= 1.0 and self.max_ratio >= 1.0

    @classmethod
    def parse(cls, text: str) -> "SparseGlobalAttention":
        """``"mass=0.9,max_ratio=0.25,block_size=128"`` (any fields; the rest default)."""
        fields = {"block_size": int, "mass": float, "max_ratio": float, "min_frames": int,
                  "kernel": str, "keep_first_frame": _parse_bool}
        values = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            name, sep, value = item.partition("=")
            if not sep or name.strip() not in fields:
                raise ValueError(f"sparse attention setting {item!r}: expected NAME=VALUE with "
                                 f"NAME one of {sorted(fields)}")
            try:
                values[name.strip()] = fields[name.strip()](value.strip())
            except ValueError as err:
                raise ValueError(f"sparse attention setting {item!r}: {err}") from None
        return cls(**values)

    def describe(self) -> str:
        return (f"mass={self.mass:g},max_ratio={self.max_ratio:g},block_size={self.block_size},"
                f"keep_first_frame={self.keep_first_frame},min_frames={self.min_frames},"
                f"kernel={self.kernel}")


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def special_first_order(frames: int, tokens_per_frame: int, special: int,
                        device: torch.device) -> Tensor:
    """Token order with every frame's special tokens first, then the patch tokens frame by
    frame: ``order[i]`` is the original index of the token at position i."""
    index = torch.arange(frames * tokens_per_frame, device=device).view(frames, tokens_per_frame)
    return torch.cat((index[:, :special].reshape(-1), index[:, special:].reshape(-1)))


def forced_blocks(tokens: int, block_size: int, special_tokens: int, first_frame_end: int,
                  device: torch.device) -> Tensor:
    """[Qb, Kb] bool: blocks kept whatever the estimate says (in the special-first order).

    The diagonal; key blocks overlapping the special tokens [0, special_tokens) or, when
    ``first_frame_end`` > special_tokens, the first frame's patches; every key block of a query
    block overlapping the special tokens.
    """
    nb = -(-tokens // block_size)
    start = torch.arange(nb, device=device) * block_size
    always_key = start < max(special_tokens, first_frame_end)
    special_query = start < special_tokens
    diagonal = torch.eye(nb, dtype=torch.bool, device=device)
    return diagonal | always_key[None, :] | special_query[:, None]


def _block_means(x: Tensor, block_size: int) -> tuple[Tensor, Tensor]:
    """x [B,H,N,D] -> per-block means [B,H,nb,D] (fp32) and tokens per block [nb]."""
    n = x.shape[2]
    nb = -(-n // block_size)
    padded = F.pad(x.float(), (0, 0, 0, nb * block_size - n))
    sums = padded.unflatten(2, (nb, block_size)).sum(3)
    counts = (n - torch.arange(nb, device=x.device) * block_size).clamp(max=block_size)
    return sums / counts[:, None].to(sums.dtype), counts


def select_blocks(q: Tensor, k: Tensor, options: SparseGlobalAttention, forced: Tensor
                  ) -> tuple[Tensor, Tensor]:
    """Which key blocks each query block attends to.

    q, k [B,H,N,D] (in the special-first order); forced [Qb,Kb] from ``forced_blocks``.
    Returns (counts [B,H,Qb] int32, indices [B,H,Qb,Kb] int32): the first ``counts`` entries of
    ``indices`` are the kept key blocks, ascending; the dropped ones follow.
    """
    bs = options.block_size
    q_mean, _ = _block_means(q, bs)
    k_mean, k_counts = _block_means(k, bs)
    nb = k_mean.shape[2]
    logits = q_mean @ k_mean.transpose(-1, -2) / math.sqrt(q.shape[-1])
    mass = torch.softmax(logits + k_counts.float().log(), dim=-1)  # [B,H,Qb,Kb]
    order = torch.argsort(mass + 2.0 * forced, dim=-1, descending=True)
    forced_count = forced.sum(-1)  # [Qb]
    if options.keeps_everything:
        counts = torch.full(mass.shape[:-1], nb, dtype=torch.long, device=q.device)
    else:
        sorted_mass = mass.gather(-1, order)
        before = sorted_mass.cumsum(-1) - sorted_mass  # mass of the blocks ranked above
        if options.mass < 1.0:
            needed = (before < options.mass).sum(-1)
        else:  # only the cap limits
            needed = torch.full(mass.shape[:-1], nb, dtype=torch.long, device=q.device)
        cap = max(1, math.ceil(options.max_ratio * nb))
        counts = torch.maximum(needed.clamp(max=cap), forced_count)
    # The kept blocks in ascending order (the kernel walks K/V forwards), the dropped ones after.
    dropped = torch.arange(nb, device=q.device) >= counts[..., None]
    ascending = torch.sort(order + dropped * nb, dim=-1).values
    return counts.to(torch.int32), (ascending % nb).to(torch.int32)


def kept_mask(counts: Tensor, indices: Tensor) -> Tensor:
    """[B,H,Qb,Kb] bool of the kept blocks from ``select_blocks``'s output."""
    nb = indices.shape[-1]
    rank_kept = torch.arange(nb, device=indices.device) < counts[..., None]
    return torch.zeros_like(rank_kept).scatter(-1, indices.long(), rank_kept)


def dense_block_attention(q: Tensor, k: Tensor, v: Tensor, keep: Tensor, block_size: int
                          ) -> Tensor:
    """Attention of q over k/v [B,H,N,D] restricted to the kept blocks ``keep`` [B,H,Qb,Kb],
    computed densely (SDPA with the token mask, one head at a time to bound memory)."""
    n = q.shape[2]
    out = torch.empty_like(q)
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            mask = keep[b, h].repeat_interleave(block_size, 0).repeat_interleave(block_size, 1)
            out[b, h] = F.scaled_dot_product_attention(q[b, h], k[b, h], v[b, h],
                                                       attn_mask=mask[:n, :n])
    return out


def _flex_from_selection(q: Tensor, k: Tensor, v: Tensor, counts: Tensor, indices: Tensor,
                         block_size: int) -> Tensor:
    """FlexAttention over the kept blocks (see ``flex_block_attention``)."""
    n = q.shape[2]
    keep = kept_mask(counts, indices)

    def kept(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return keep[b, h, q_idx // block_size, kv_idx // block_size]

    block_mask = BlockMask.from_kv_blocks(torch.zeros_like(counts), indices, counts, indices,
                                          BLOCK_SIZE=block_size, mask_mod=kept,
                                          seq_lengths=(n, n))
    return flex_attention(q, k, v, block_mask=block_mask)


_COMPILED_FLEX: Optional[Callable] = None


def flex_block_attention(q: Tensor, k: Tensor, v: Tensor, counts: Tensor, indices: Tensor,
                         block_size: int) -> Tensor:
    """The same attention through FlexAttention: a ``BlockMask`` whose kept blocks are "full",
    so the fused kernel visits only them and evaluates no element mask. Its ``mask_mod`` (true
    exactly on the kept blocks) states the same mask element-wise: FlexAttention's semantics,
    which its unfused reference implementation (eager, CPU) follows.

    Inside torch.compile (the compiled global block) this is traced into the block's graph.
    Called eagerly on CUDA, mask building and kernel run as one compiled function of their
    own (eager flex materialises all scores, and a fresh mask closure per call would make a
    separately compiled flex_attention recompile)."""
    global _COMPILED_FLEX
    if q.is_cuda and not torch.compiler.is_compiling():
        if _COMPILED_FLEX is None:
            _COMPILED_FLEX = torch.compile(_flex_from_selection, dynamic=False)
        return _COMPILED_FLEX(q, k, v, counts, indices, block_size)
    return _flex_from_selection(q, k, v, counts, indices, block_size)


class BlockSparseAttention:
    """The attention function of the global blocks of one window shape (module docstring).

    Called as ``attend(q, k, v)`` with q/k/v [B,H,S*P,D] in the aggregator's token order
    (frame-major, special tokens at the start of each frame); returns [B,H,S*P,D] in that order.
    ``record`` (a list), when set, receives the kept fraction of key blocks of each call made
    outside torch.compile (instrumentation for the benchmark).
    """

    def __init__(self, options: SparseGlobalAttention, frames: int, special: int) -> None:
        self.options = options
        self.frames = frames
        self.special = special
        self.record: Optional[list[float]] = None
        self._tables: dict[tuple, tuple[Tensor, Tensor, Tensor]] = {}

    def prepare(self, n: int, device: torch.device) -> None:
        """Build the constant tables for n tokens now (call outside torch.compile, so the
        compiled graph reads them instead of building them)."""
        self._layout(n, device)

    def _layout(self, n: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """(order, inverse order, forced blocks) for n tokens, built once per device as normal
        tensors (usable in and outside inference mode)."""
        key = (n, device)
        found = self._tables.get(key)
        if found is None:
            if n % self.frames:
                raise ValueError(f"block-sparse attention for {self.frames} frames got {n} "
                                 f"tokens (not a multiple)")
            per_frame = n // self.frames
            special_tokens = self.frames * self.special
            first_end = special_tokens + (per_frame - self.special if self.options.keep_first_frame
                                          else 0)
            with torch.inference_mode(False):
                order = special_first_order(self.frames, per_frame, self.special, device)
                inverse = torch.argsort(order)
                forced = forced_blocks(n, self.options.block_size, special_tokens, first_end,
                                       device)
            found = (order, inverse, forced)
            self._tables[key] = found
        return found

    def kernel(self, device: torch.device) -> str:
        if self.options.kernel != "auto":
            return self.options.kernel
        return "flex" if device.type == "cuda" else "dense"

    def __call__(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        order, inverse, forced = self._layout(q.shape[2], q.device)
        q, k, v = (t.index_select(2, order) for t in (q, k, v))
        counts, indices = select_blocks(q, k, self.options, forced)
        if self.record is not None and not torch.compiler.is_compiling():
            self.record.append(counts.double().mean().item() / indices.shape[-1])
        bs = self.options.block_size
        if self.kernel(q.device) == "flex":
            out = flex_block_attention(q, k, v, counts, indices, bs)
        else:
            out = dense_block_attention(q, k, v, kept_mask(counts, indices), bs)
        return out.index_select(2, inverse)
