"""Cost of ONE optimisation step of a VGGT model at a realistic window (memory and time).

Answers "can this GPU fine-tune VGGT-1B?" without the 5 GB weights: the cost of a step does
not depend on the weight values, so the model is built with random weights. Synthetic inputs
and targets of the right shapes are used (no renderer: only the network's cost is measured).
"""
from __future__ import annotations

import time
from typing import Any, Optional

import torch

from vggt_ros.model import VGGT, VGGTConfig
from vggt_ros.training.config import TrainConfig
from vggt_ros.training.trainer import Trainer


def synthetic_batch(frames: int, height: int, width: int, num_tracks: int,
                    generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A batch of one window with plausible ground truth (cameras stepping forward)."""
    cam_from_world = torch.eye(4).repeat(1, frames, 1, 1)
    cam_from_world[0, :, 2, 3] = -0.1 * torch.arange(frames, dtype=torch.float32)
    focal = float(width)
    intrinsics = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    depth = 1.0 + torch.rand(1, frames, height, width, generator=generator)
    batch = {
        "images": torch.randint(0, 256, (1, frames, 3, height, width), generator=generator,
                                dtype=torch.uint8),
        "depth": depth,
        "valid": torch.ones(1, frames, height, width, dtype=torch.bool),
        "cam_from_world": cam_from_world,
        "intrinsics": intrinsics.expand(1, frames, 3, 3).clone(),
    }
    if num_tracks:
        queries = torch.rand(1, num_tracks, 2, generator=generator) * torch.tensor([width, height])
        batch["query_points"] = queries
        batch["tracks"] = queries[:, None].expand(1, frames, num_tracks, 2).clone()
        batch["track_vis"] = torch.ones(1, frames, num_tracks, dtype=torch.bool)
    return batch


def one_step_benchmark(device: torch.device, config: Optional[VGGTConfig] = None,
                       frames: int = 8, height: int = 392, width: int = 518,
                       num_tracks: int = 64, gradient_checkpointing: bool = True,
                       bf16: bool = True, repeats: int = 2) -> dict[str, Any]:
    """Time ``repeats`` steps (the first includes CUDA/cuDNN warm-up) and the peak memory."""
    generator = torch.Generator().manual_seed(0)
    model = VGGT(config or VGGTConfig()).to(device).train()
    train_config = TrainConfig(steps=repeats, warmup_steps=1, bf16=bf16,
                               gradient_checkpointing=gradient_checkpointing,
                               train_track=num_tracks > 0)
    trainer = Trainer(model, train_config, device)
    batch = synthetic_batch(frames, height, width, num_tracks, generator)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times, losses = [], []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize(device)
        tick = time.perf_counter()
        losses.append(trainer.train_step(batch)["total"])
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - tick)
    result = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "frames": frames, "height": height, "width": width, "num_tracks": num_tracks,
        "bf16": bf16, "gradient_checkpointing": gradient_checkpointing,
        "step_s": times, "loss": losses, "device": str(device),
    }
    if cuda:
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
        result["gpu"] = torch.cuda.get_device_name(device)
    return result
