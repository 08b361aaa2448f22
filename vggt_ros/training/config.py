"""What a training run is: its settings (``TrainConfig``) and its learning-rate schedule.

Kept apart from the loop so the command line, the benchmark and the checkpoints can read a
run's settings without importing the training machinery.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from vggt_ros.training.data import DataConfig
from vggt_ros.training.losses import LossWeights

LOSS_NAMES = ("camera", "depth", "point", "track")


@dataclass
class TrainConfig:
    steps: int = 1000  # total steps of the whole run (the LR schedule spans them)
    lr: float = 3e-4
    min_lr_ratio: float = 0.05
    warmup_steps: int = 200
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    bf16: bool = True  # autocast on CUDA only
    gradient_checkpointing: bool = False
    train_track: bool = True
    # Heads whose losses are computed (the others are not even run, which saves their forward).
    losses: tuple[str, ...] = LOSS_NAMES
    # Parameters to train (empty: all); see ``select_trainable``.
    trainable: tuple[str, ...] = ()
    seed: int = 0
    num_workers: int = 0  # DataLoader processes for CPU rendering
    # Render the training scenes on the training GPU (in this process) instead of in CPU
    # workers: ~2 s of CPU time per 32-frame clip otherwise limits a GPU trainer.
    render_on_gpu: bool = True
    time_limit_s: float = 0.0  # 0: no limit
    log_every: int = 10
    save_every: int = 0  # extra checkpoints every N steps (0: only at the end of the chunk)
    weights: LossWeights = field(default_factory=LossWeights)
    flow_layer: int = -1  # aggregator layer the flow probe reads (must be in dpt_layers)
    data: DataConfig = field(default_factory=DataConfig)


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warmup to ``lr`` then cosine decay to ``lr * min_lr_ratio`` at ``steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
