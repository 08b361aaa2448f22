"""What the device itself can do: the attention kernels of one aggregator layer under each
SDPA backend, and the bf16 matrix rate (CUDA only)."""
from __future__ import annotations

from typing import Any

import torch

from vggt_ros.bench.timing import Clock
from vggt_ros.model import VGGTConfig


def probe_attention(args, clock: Clock, cfg: VGGTConfig) -> list[dict[str, Any]]:
    """Global-attention kernel of one aggregator layer under each SDPA backend."""
    from torch.nn.attention import sdpa_kernel

    from vggt_ros.model.fast import SDPA_BACKENDS

    rows = []
    tokens = 5 + (args.height // cfg.patch_size) * (args.width // cfg.patch_size)
    heads, dim = cfg.num_heads, cfg.embed_dim // cfg.num_heads
    for s in args.probe_frames:
        n = s * tokens
        q, k, v = (torch.randn(1, heads, n, dim, device=clock.device, dtype=torch.bfloat16)
                   for _ in range(3))
        for name in ("flash", "cudnn", "efficient"):
            row: dict[str, Any] = {"frames": s, "backend": name}
            try:
                with sdpa_kernel([SDPA_BACKENDS[name]]):
                    row["ms"] = clock.median(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
                row["tflops"] = 4 * n * n * heads * dim / (row["ms"] * 1e-3) / 1e12
            except RuntimeError as err:
                row["error"] = str(err).splitlines()[0][:120]
            rows.append(row)
    return rows


def probe_matmul(clock: Clock) -> float:
    a, b = (torch.randn(8192, 8192, device=clock.device, dtype=torch.bfloat16) for _ in range(2))
    return 2 * 8192 ** 3 / (clock.median(lambda: a @ b) * 1e-3) / 1e12
