"""Optimisation loop: AdamW, warmup + cosine LR, bf16 autocast, clipping, resumable chunks.

A run is a sequence of chunks, each bounded by ``time_limit_s`` (the GPU machine gives at most
10 minutes per command): a chunk resumes from the last checkpoint, trains until its time is
nearly spent, saves model, optimiser, step and RNG state, and returns. The checkpoint is written
as parts of at most ``MAX_PART_BYTES`` so it can travel through the device tool's file limits,
and the optimiser moments are stored in bf16 to halve its size (3 significant digits: far below
the noise of the moment estimates themselves).
"""
from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from vggt_ros.model import VGGT, VGGTConfig, load_vggt
from vggt_ros.model.aggregator import PATCH_START_IDX
from vggt_ros.training.correspondence import (FlowProbe, first_frame_attention_logits, flow_loss,
                                              matching_loss, matching_patch_targets, patch_flow,
                                              project_patch_centres_to_first_frame)
from vggt_ros.training.data import DataConfig, make_loader
from vggt_ros.training.losses import (LossWeights, camera_loss, confidence_regression_loss,
                                      track_loss)
from vggt_ros.training.normalize import normalize_scene

MAX_PART_BYTES = 15 * 1024 * 1024
PART_SUFFIX = ".part"
MOMENT_KEYS = ("exp_avg", "exp_avg_sq")
LOSS_NAMES = ("camera", "depth", "point", "track")
LAST_BLOCKS_PREFIX = "aggregator.last"


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


def enable_gradient_checkpointing(model: VGGT) -> int:
    """Recompute every transformer block of the aggregator (and its DINO) in the backward pass.

    The model has no switch of its own, so each block's ``forward`` is wrapped on the instance:
    parameter names (and so checkpoint keys) stay unchanged. Returns the number of blocks wrapped.
    """
    aggregator = model.aggregator
    blocks = [*aggregator.frame_blocks, *aggregator.global_blocks,
              *getattr(aggregator.patch_embed, "blocks", [])]
    for block in blocks:
        plain = block.forward

        def forward(*args: Any, _plain: Callable = plain, **kwargs: Any) -> Tensor:
            if not torch.is_grad_enabled():
                return _plain(*args, **kwargs)
            return checkpoint(_plain, *args, use_reentrant=False, **kwargs)

        block.forward = forward
    return len(blocks)


def compute_losses(model: VGGT, batch: dict[str, Tensor], config: TrainConfig,
                   device: torch.device, probe: Optional[FlowProbe] = None
                   ) -> dict[str, Tensor]:
    """Forward one batch and return every loss term plus their weighted ``total``.

    Auxiliary correspondence terms (training/correspondence.py): with a ``probe``, the patch
    flow read from aggregator layer ``config.flow_layer`` (one the DPT heads cache); with
    ``weights.match > 0``, the middle global block's attention (head 0) from later frames'
    patches to frame 0's, against the patch that really shows the same point.
    """
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    images = batch["images"].float() / 255.0
    target = normalize_scene(batch["cam_from_world"], batch["intrinsics"], batch["depth"],
                             batch["valid"])
    with_track = (config.train_track and "track" in config.losses
                  and model.track_head is not None and "query_points" in batch)
    heads = [h for h in config.losses if h in model.enabled_heads
             and (h != "track" or with_track)]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16,
                              enabled=config.bf16 and device.type == "cuda")
    w = config.weights
    frames = images.shape[1]
    aggregator = model.aggregator
    match_block = (aggregator.global_blocks[len(aggregator.global_blocks) // 2]
                   if w.match > 0 and frames > 1 else None)
    captured: dict[str, Any] = {}

    def keep_layers(_module: nn.Module, _inputs: Any, output: Any) -> None:
        captured["layers"] = output[0]

    def keep_block_input(_module: nn.Module, args: Any) -> None:
        captured["match_input"] = args

    hooks = []  # they must return None: a returned value would replace the output/inputs
    if probe is not None:
        hooks.append(aggregator.register_forward_hook(keep_layers))
    if match_block is not None:
        hooks.append(match_block.register_forward_pre_hook(keep_block_input))
    try:
        with autocast:
            pred = model(images, query_points=batch["query_points"] if with_track else None,
                         heads=heads)
    finally:
        for hook in hooks:
            hook.remove()
    losses: dict[str, Tensor] = {}
    patch = model.config.patch_size
    if probe is not None or match_block is not None:
        projection = project_patch_centres_to_first_frame(
            target.depth, target.cam_from_world, target.intrinsics, target.valid, patch)
    if probe is not None:
        grid = (images.shape[-2] // patch, images.shape[-1] // patch)
        target_flow, flow_valid = patch_flow(projection, images.shape[-2:])
        layer = captured["layers"][config.flow_layer]
        if layer is None:
            raise ValueError(f"flow_layer {config.flow_layer} is not an output layer of the "
                             f"aggregator (the cached ones: {model.config.dpt_layers})")
        losses["flow"] = w.flow * flow_loss(probe(layer, PATCH_START_IDX, grid), target_flow,
                                            flow_valid)
    if match_block is not None:
        block_tokens, positions = captured["match_input"]
        logits = first_frame_attention_logits(match_block, block_tokens, positions, frames,
                                              PATCH_START_IDX)
        losses["match"] = w.match * matching_loss(
            logits, matching_patch_targets(projection, target.depth, target.valid, patch))
    if "pose_enc_list" in pred:
        losses["camera"] = w.camera * camera_loss(pred["pose_enc_list"], target.pose_enc, w)
    if "depth" in pred:
        losses["depth"] = w.depth * confidence_regression_loss(
            pred["depth"], pred["depth_conf"], target.depth[..., None], target.valid, w.conf_alpha)
    if "world_points" in pred:
        losses["point"] = w.point * confidence_regression_loss(
            pred["world_points"], pred["world_points_conf"], target.world_points, target.valid,
            w.conf_alpha)
    if with_track:
        losses["track"] = w.track * track_loss(pred["track"], pred["vis"], batch["tracks"],
                                               batch["track_vis"])
    if not losses:
        raise ValueError("the model produced no output that has a loss")
    losses["total"] = sum(losses.values())
    return losses


# ---------------------------------------------------------------- checkpoints

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


# ---------------------------------------------------------------- training

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
        if config.gradient_checkpointing:
            enable_gradient_checkpointing(model)
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
