"""Model surgery before training: build or load the model, choose what it trains, and the
optimiser over what it trains."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn

from vggt_ros.model import VGGT, VGGTConfig, load_vggt
from vggt_ros.training.config import TrainConfig

LAST_BLOCKS_PREFIX = "aggregator.last"


def _under(name: str, prefix: str) -> bool:
    """Whether parameter ``name`` is ``prefix`` itself or lies in the module it names."""
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".")


def select_trainable(model: VGGT, specs: tuple[str, ...]) -> int:
    """Freeze every parameter except those named by ``specs``; returns the trainable count.

    A spec is a parameter-name prefix (``camera_head``, ``aggregator.global_blocks.7``) or
    ``aggregator.lastN``: the last N frame/global block pairs. Fine-tuning one head on a frozen
    backbone needs no backward pass through the rest, which is what makes a CPU stage
    affordable. Empty ``specs`` leaves everything trainable.
    """
    if not specs:
        for param in model.parameters():
            param.requires_grad_(True)
        return sum(p.numel() for p in model.parameters())
    prefixes: list[str] = []
    depth = len(model.aggregator.frame_blocks)
    for spec in specs:
        if spec.startswith(LAST_BLOCKS_PREFIX):
            count_text = spec[len(LAST_BLOCKS_PREFIX):]
            if not count_text.isdigit() or not 1 <= int(count_text) <= depth:
                raise ValueError(f"trainable {spec!r}: expected {LAST_BLOCKS_PREFIX}N with "
                                 f"1 <= N <= {depth}")
            prefixes += [f"aggregator.{kind}.{i}." for kind in ("frame_blocks", "global_blocks")
                         for i in range(depth - int(count_text), depth)]
        else:
            prefixes.append(spec)
    names = [name for name, _ in model.named_parameters()]
    unmatched = [p for p in prefixes if not any(_under(n, p) for n in names)]
    if unmatched:
        raise ValueError(f"trainable {unmatched} match no parameter of the model (examples: "
                         f"camera_head, {LAST_BLOCKS_PREFIX}2, depth_head)")
    count = 0
    for name, param in model.named_parameters():
        chosen = any(_under(name, p) for p in prefixes)
        param.requires_grad_(chosen)
        count += param.numel() if chosen else 0
    return count


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases, norms, tokens and position tables (1-D or tokens)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        tokenlike = name.endswith(("token", "tokens", "pos_embed")) or "query_ref" in name
        (no_decay if param.dim() < 2 or tokenlike else decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=config.lr, betas=config.betas, fused=False)


def build_model(model_config: Optional[VGGTConfig], init_checkpoint: Optional[Path],
                device: torch.device) -> VGGT:
    """Random init from ``model_config`` or a strict load of ``init_checkpoint`` (fine-tuning)."""
    if init_checkpoint is not None:
        model = load_vggt(init_checkpoint, config=model_config, device=device,
                          dtype=torch.float32)
    else:
        model = VGGT(model_config or VGGTConfig()).to(device)
    return model.train()
