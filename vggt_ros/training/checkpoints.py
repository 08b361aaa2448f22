"""Checkpoint I/O of a training run: model, optimiser, step, RNG state and flow probe.

The checkpoint is written as parts of at most ``MAX_PART_BYTES`` so it can travel through the
device tool's file limits, and the optimiser moments are stored in bf16 to halve its size (3
significant digits: far below the noise of the moment estimates themselves).
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from vggt_ros.model import VGGT, VGGTConfig

MAX_PART_BYTES = 15 * 1024 * 1024
PART_SUFFIX = ".part"
MOMENT_KEYS = ("exp_avg", "exp_avg_sq")


def _parts(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + PART_SUFFIX + "*"))


def save_checkpoint(path: Path, model: VGGT, optimizer: torch.optim.Optimizer, step: int,
                    extra: dict[str, Any], probe: Optional[nn.Module] = None) -> list[Path]:
    """Write the training state as ``path.partNN`` files of at most MAX_PART_BYTES."""
    optim_state = optimizer.state_dict()
    # state_dict() shares the per-parameter dicts with the live optimiser: build new ones, or a
    # save in the middle of a run (save_every) would leave the optimiser with bf16 moments.
    optim_state["state"] = {
        index: {k: (v.to(torch.bfloat16) if k in MOMENT_KEYS else v) for k, v in state.items()}
        for index, state in optim_state["state"].items()}
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    payload = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "optimizer": optim_state, "step": step, "rng": rng,
               "config": model.config.to_json(), "extra": json.dumps(extra)}
    if probe is not None:
        payload["probe"] = {k: v.detach().cpu() for k, v in probe.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in _parts(path):
        old.unlink()
    written = []
    for index, start in enumerate(range(0, len(data), MAX_PART_BYTES)):
        part = path.with_name(f"{path.name}{PART_SUFFIX}{index:02d}")
        part.write_bytes(data[start:start + MAX_PART_BYTES])
        written.append(part)
    return written


def checkpoint_exists(path: Path) -> bool:
    return bool(_parts(path))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Join the parts and read them (tensors and plain containers only)."""
    parts = _parts(path)
    if not parts:
        raise FileNotFoundError(f"no checkpoint parts {path}{PART_SUFFIX}NN found")
    data = b"".join(p.read_bytes() for p in parts)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"{path}: checkpoint parts {[p.name for p in parts]} do not form a "
                           f"readable checkpoint (missing or truncated part?): {exc}") from exc


def restore(state: dict[str, Any], model: VGGT, optimizer: torch.optim.Optimizer,
            probe: Optional[nn.Module] = None) -> int:
    """Load a checkpoint into model, flow probe and optimiser (moments upcast); returns the
    step."""
    saved = VGGTConfig.from_json(state["config"])
    if saved != model.config:
        raise ValueError(f"checkpoint config differs from the model's: {saved} vs {model.config}")
    if ("probe" in state) != (probe is not None):
        raise ValueError("the checkpoint was written with a different flow setting (the flow "
                         "probe is present in only one of them): keep --flow-weight 0 or > 0 "
                         "for the whole run")
    model.load_state_dict(state["model"], strict=True)
    if probe is not None:
        probe.load_state_dict(state["probe"], strict=True)
    optimizer.load_state_dict(state["optimizer"])
    for group_state in optimizer.state.values():
        for key in MOMENT_KEYS:
            if key in group_state:
                group_state[key] = group_state[key].float()
    torch.set_rng_state(state["rng"]["cpu"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["rng"]["cuda"])
    return int(state["step"])
