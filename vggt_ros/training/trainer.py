"""Optimisation loop: AdamW, warmup + cosine LR, bf16 autocast, clipping, resumable chunks.

A run is a sequence of chunks, each bounded by ``time_limit_s`` (the GPU machine gives at most
10 minutes per command): a chunk resumes from the last checkpoint (``checkpoints.py``), trains
until its time is nearly spent, saves model, optimiser, step and RNG state, and returns.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn

from vggt_ros.model import VGGT
from vggt_ros.training.checkpoints import (checkpoint_exists, load_checkpoint, restore,
                                           save_checkpoint)
from vggt_ros.training.config import LOSS_NAMES, TrainConfig, lr_at
from vggt_ros.training.correspondence import FlowProbe
from vggt_ros.training.data import make_loader
from vggt_ros.training.model_setup import build_optimizer, select_trainable
from vggt_ros.training.objective import compute_losses


class Trainer:
    """One chunk of a (possibly longer) run; see the module docstring."""

    def __init__(self, model: VGGT, config: TrainConfig, device: torch.device,
                 checkpoint_path: Optional[Path] = None, log_path: Optional[Path] = None) -> None:
        self.model = model
        self.config = config
        self.device = device
        self.checkpoint_path = checkpoint_path
        self.log_path = log_path
        unknown = sorted(set(config.losses) - set(LOSS_NAMES))
        if unknown or not config.losses:
            raise ValueError(f"losses must be a non-empty subset of {LOSS_NAMES}, "
                             f"got {config.losses}")
        self.trainable_parameters = select_trainable(model, config.trainable)
        self.probe = (FlowProbe(2 * model.config.embed_dim).to(device)
                      if config.weights.flow > 0 else None)
        # The probe's parameters come after the model's, so model parameter indices (and
        # optimiser state) are the same with and without it.
        self.optimizer = build_optimizer(
            nn.ModuleList([model] + ([self.probe] if self.probe is not None else [])), config)
        self.step = 0
        self.previous_wall_s = 0.0  # training time of the earlier chunks of this run
        model.aggregator.gradient_checkpointing = config.gradient_checkpointing
        if checkpoint_path is not None and checkpoint_exists(checkpoint_path):
            state = load_checkpoint(checkpoint_path)
            self.step = restore(state, model, self.optimizer, self.probe)
            self.previous_wall_s = float(json.loads(state["extra"]).get("wall_s_total", 0.0))
        self._chunk_start = time.monotonic()

    def _log(self, record: dict[str, Any]) -> None:
        if self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def train_step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, self.config)
        self.optimizer.zero_grad(set_to_none=True)
        losses = compute_losses(self.model, batch, self.config, self.device, self.probe)
        if not torch.isfinite(losses["total"]):
            raise FloatingPointError(f"non-finite loss at step {self.step}: "
                                     f"{ {k: float(v) for k, v in losses.items()} }")
        losses["total"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for group in self.optimizer.param_groups for p in group["params"]],
            self.config.grad_clip)
        self.optimizer.step()
        self.step += 1
        out = {k: float(v.detach()) for k, v in losses.items()}
        out["grad_norm"] = float(grad_norm)
        return out

    def run(self, batches: Optional[Any] = None) -> dict[str, Any]:
        """Train until ``config.steps`` or the chunk's time limit; returns a summary."""
        config = self.config
        start = self._chunk_start = time.monotonic()
        if batches is None:
            # A new data seed per chunk: a resumed run sees new scenes, not a replay.
            on_gpu = config.render_on_gpu and self.device.type == "cuda"
            batches = make_loader(config.data, seed=config.seed * 1_000_003 + self.step,
                                  num_workers=config.num_workers,
                                  pin_memory=self.device.type == "cuda",
                                  device=self.device if on_gpu else torch.device("cpu"))
        iterator = iter(batches)
        first_step, last, step_time = self.step, {}, 0.0
        window_start, window_steps = time.monotonic(), 0
        while self.step < config.steps:
            elapsed = time.monotonic() - start
            # Stop while there is still time for one more step and the save.
            if config.time_limit_s and elapsed + 2 * step_time + 20 > config.time_limit_s:
                break
            tick = time.monotonic()
            batch = next(iterator)
            last = self.train_step(batch)
            step_time = 0.9 * step_time + 0.1 * (time.monotonic() - tick) if step_time else \
                time.monotonic() - tick
            window_steps += 1
            if self.step % config.log_every == 0 or self.step == config.steps:
                now = time.monotonic()
                record = {"step": self.step, "lr": lr_at(self.step - 1, config),
                          "frames": int(batch["images"].shape[1]),
                          "hw": list(batch["images"].shape[-2:]),
                          "s_per_step": (now - window_start) / window_steps,
                          "elapsed_s": now - start, **last}
                self._log(record)
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                  for k, v in record.items()}), flush=True)
                window_start, window_steps = now, 0
            if (config.save_every and self.step % config.save_every == 0
                    and self.checkpoint_path is not None):
                self.save()
        if self.checkpoint_path is not None and self.step > first_step:
            self.save()
        return {"step": self.step, "steps_this_chunk": self.step - first_step,
                "wall_s": time.monotonic() - start, "wall_s_total": self.wall_s_total,
                "last": last, "done": self.step >= config.steps}

    @property
    def wall_s_total(self) -> float:
        return self.previous_wall_s + time.monotonic() - self._chunk_start

    def save(self) -> None:
        save_checkpoint(self.checkpoint_path, self.model, self.optimizer, self.step,
                        {"train_config": asdict(self.config), "wall_s_total": self.wall_s_total,
                         "device": (torch.cuda.get_device_name(self.device)
                                    if self.device.type == "cuda" else "cpu")}, self.probe)
