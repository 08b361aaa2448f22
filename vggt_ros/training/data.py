"""Training batches rendered on the fly from the procedural scenes of ``vggt_ros.synth``.

Why it is built this way:
* Rendering is the expensive part, so a pool of rendered scene clips is kept and many windows
  are drawn from every clip (random length, random frame gaps, random direction, random crop
  size), refreshing a few clips per batch.
* All per-pixel work (ray casting, cropping, colour jitter, track ground truth) is torch code
  that runs where the clip lives: on a GPU trainer the clips are rendered and the batches built
  on the GPU in the training process (about 2 s of NumPy-speed CPU rendering per 32-frame clip
  otherwise), on a CPU trainer in DataLoader worker processes. Window sampling decisions
  (sizes, frames, queries, jitter strengths) are drawn on the host from one NumPy generator, so
  both places produce the same kind of batch.
* A clip is rendered once as a square image with the principal point at its centre; each batch
  centre-crops it to a size (multiples of 14) so that the principal point stays at the image
  centre, which is the only camera model VGGT's pose encoding can express.
* The focal length is random per clip, so the network must estimate the field of view.
* Training scene seeds are drawn below ``HELD_OUT_SEED_MIN`` and evaluation uses seeds at or
  above it: the split is that one constant.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vggt_ros.geometry.reprojection import reproject_queries
from vggt_ros.synth import TRAJECTORIES, make_sequence
from vggt_ros.synth.render import render_views_torch

HELD_OUT_SEED_MIN = 1_000_000  # scene seeds >= this are held out: never drawn for training
PATCH = 14


def held_out_seeds(count: int, offset: int = 0) -> list[int]:
    """The evaluation scene seeds (disjoint from every training seed)."""
    return [HELD_OUT_SEED_MIN + offset + i for i in range(count)]


def centered_intrinsics(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """Square-pixel K with the principal point at (W/2, H/2), VGGT's camera model."""
    focal = width / (2.0 * np.tan(np.radians(hfov_deg) / 2.0))
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class DataConfig:
    """What the random windows look like (all image sizes multiples of 14)."""

    widths: tuple[int, ...] = (224,)
    min_height: int = 112
    max_height: int = 224
    min_frames: int = 2
    max_frames: int = 8
    max_gap: int = 4  # frames skipped between consecutive window frames: 1..max_gap
    batch_size: int = 8
    clip_frames: int = 32  # frames rendered per scene clip
    pool_size: int = 6  # clips a worker keeps
    refresh_per_batch: int = 2  # clips replaced before each batch
    num_tracks: int = 64  # 0 disables track ground truth
    hfov_deg: tuple[float, float] = (55.0, 85.0)
    trajectories: tuple[str, ...] = TRAJECTORIES
    color_jitter: float = 0.15
    seed_range: tuple[int, int] = field(default=(0, HELD_OUT_SEED_MIN))

    def __post_init__(self) -> None:
        problems = []
        sizes = (*self.widths, self.min_height, self.max_height)
        if any(s <= 0 or s % PATCH for s in sizes):
            problems.append(f"widths and heights must be positive multiples of {PATCH}: {sizes}")
        if self.min_height > self.max_height:
            problems.append("min_height > max_height")
        if not 1 <= self.min_frames <= self.max_frames:
            problems.append(f"need 1 <= min_frames <= max_frames, got {self.min_frames}, "
                            f"{self.max_frames}")
        if self.max_gap < 1 or self.clip_frames < 1 + (self.max_frames - 1):
            problems.append("max_gap must be >= 1 and clip_frames >= max_frames")
        if self.batch_size < 1 or self.pool_size < 1 or self.refresh_per_batch < 0:
            problems.append("batch_size and pool_size must be >= 1, refresh_per_batch >= 0")
        lo, hi = self.seed_range
        if not 0 <= lo < hi:
            problems.append(f"seed_range {self.seed_range} is empty")
        unknown = set(self.trajectories) - set(TRAJECTORIES)
        if unknown or not self.trajectories:
            problems.append(f"trajectories must be a non-empty subset of {TRAJECTORIES}")
        if problems:
            raise ValueError("invalid DataConfig: " + "; ".join(problems))

    @property
    def render_side(self) -> int:
        return max(*self.widths, self.max_height)

    def check_training_split(self) -> None:
        """Refuse a training run that would draw a held-out seed."""
        if self.seed_range[1] > HELD_OUT_SEED_MIN:
            raise ValueError(f"training seed_range {self.seed_range} overlaps the held-out seeds "
                             f">= {HELD_OUT_SEED_MIN}")


@dataclass
class Clip:
    """Rendered frames of one scene: square images with exact ground truth."""

    seed: int
    rgb: Tensor  # [L,side,side,3] uint8, on the rendering device
    depth: Tensor  # [L,side,side] float32, same device
    cam_from_world: np.ndarray  # [L,4,4] float64
    K: np.ndarray  # [3,3] float64, centred principal point


def render_clip(seed: int, config: DataConfig, rng: np.random.Generator,
                device: torch.device = torch.device("cpu")) -> Clip:
    """Render ``config.clip_frames`` consecutive frames of a random trajectory of scene ``seed``
    on ``device``."""
    side = config.render_side
    total = int(rng.integers(config.clip_frames, 4 * config.clip_frames + 1))
    trajectory = str(rng.choice(config.trajectories))
    sequence = make_sequence(num_frames=total, width=side, height=side, seed=seed,
                             trajectory=trajectory)
    start = int(rng.integers(0, total - config.clip_frames + 1))
    K = centered_intrinsics(side, side, float(rng.uniform(*config.hfov_deg)))
    poses = sequence.cam_from_world[start:start + config.clip_frames]
    rgb, depth = render_views_torch(sequence.scene, K, side, side, poses, device)
    return Clip(seed=seed, rgb=rgb, depth=depth, cam_from_world=poses, K=K)


def sample_window_indices(length: int, frames: int, max_gap: int,
                          rng: np.random.Generator) -> np.ndarray:
    """Indices of a ``frames``-frame window in a clip of ``length``: random gaps and direction."""
    if not 1 <= frames <= length:
        raise ValueError(f"cannot take {frames} frames from a clip of {length}")
    gaps = rng.integers(1, max_gap + 1, size=frames - 1)
    while gaps.sum() > length - 1:  # shrink the largest gap until the window fits the clip
        gaps[np.argmax(gaps)] -= 1
    start = int(rng.integers(0, length - int(gaps.sum())))
    indices = start + np.concatenate(([0], np.cumsum(gaps)))
    return indices[::-1].copy() if rng.random() < 0.5 else indices


def track_ground_truth(depth: Tensor, cam_from_world: Tensor, K: Tensor,
                       queries: Tensor) -> tuple[Tensor, Tensor]:
    """Reproject frame-0 pixels ``queries`` (integer x, y) into every frame of a window.

    depth [S,H,W], cam_from_world [S,4,4], K [3,3], queries [N,2] -> (tracks [S,N,2] float32,
    visible [S,N] bool); with a leading batch dimension B on all four, a batch of windows.
    Results are on depth's device. The geometry and the visibility test are the shared track
    ground truth (``vggt_ros.geometry.reprojection``); as training targets, tracks are 0 where
    the point is not inside the frame, and frame 0 always sees its own queries.
    """
    truth = reproject_queries(depth, torch.as_tensor(cam_from_world), torch.as_tensor(K),
                              torch.as_tensor(queries))
    tracks = torch.where(truth.inside[..., None], truth.pixels, torch.zeros_like(truth.pixels))
    visible = truth.visible.clone()
    visible[..., 0, :] = True
    return tracks.float(), visible


def _jitter(rgb: Tensor, strength: float, rng: np.random.Generator) -> Tensor:
    """Per-frame brightness/contrast changes (exposure differs between real frames) of
    [B,S,H,W,3] uint8 images."""
    if strength <= 0:
        return rgb
    shape = (*rgb.shape[:2], 1, 1, 1)
    gain = 1.0 + rng.uniform(-strength, strength, size=shape)
    bias = 255.0 * rng.uniform(-strength, strength, size=shape) / 3.0
    gain_t, bias_t = (torch.as_tensor(a, dtype=torch.float32, device=rgb.device)
                      for a in (gain, bias))
    return (rgb.float() * gain_t + bias_t).clamp(0, 255).to(torch.uint8)


def make_batch(clips: list[Clip], config: DataConfig, rng: np.random.Generator
               ) -> dict[str, Tensor]:
    """One batch: every window has the same frame count and image size (random per batch).

    Keys: images [B,S,3,H,W] uint8, depth [B,S,H,W] float32, valid [B,S,H,W] bool,
    cam_from_world [B,S,4,4] float32, intrinsics [B,S,3,3] float32, seeds [B] int64 and, with
    tracks enabled, query_points [B,N,2], tracks [B,S,N,2] float32, track_vis [B,S,N] bool.
    Every tensor is on the clips' device. The random choices are made on the host; then each
    key is built by a few batched tensor operations (a per-window loop of small device
    operations took 68 ms for 64 windows on an H200).
    """
    device = clips[0].rgb.device
    width = int(rng.choice(config.widths))
    heights = np.arange(config.min_height, config.max_height + 1, PATCH)
    height = int(rng.choice(heights))
    frames = int(rng.integers(config.min_frames, config.max_frames + 1))
    b = config.batch_size
    which = rng.integers(len(clips), size=b)
    indices = np.stack([sample_window_indices(len(clips[c].rgb), frames, config.max_gap, rng)
                        for c in which])  # [B,S]
    side = clips[0].rgb.shape[1]
    x0, y0 = (side - width) // 2, (side - height) // 2  # centre crop: principal point stays
    clip_index = torch.as_tensor(which, device=device)[:, None]
    frame_index = torch.as_tensor(indices, device=device)
    crop = (clip_index, frame_index, slice(y0, y0 + height), slice(x0, x0 + width))
    rgb = torch.stack([c.rgb for c in clips])[crop]  # [B,S,h,w,3]
    depth = torch.stack([c.depth for c in clips])[crop].contiguous()
    K = np.stack([clips[c].K for c in which])
    K[:, 0, 2] -= x0
    K[:, 1, 2] -= y0
    poses = np.stack([clips[c].cam_from_world[i] for c, i in zip(which, indices)])  # [B,S,4,4]
    batch = {
        "images": _jitter(rgb, config.color_jitter, rng).permute(0, 1, 4, 2, 3).contiguous(),
        "depth": depth,
        "valid": torch.isfinite(depth) & (depth > 0),
        "cam_from_world": torch.as_tensor(poses, dtype=torch.float32, device=device),
        "intrinsics": torch.as_tensor(K, dtype=torch.float32, device=device)[:, None].expand(
            b, frames, 3, 3).contiguous(),
        "seeds": torch.as_tensor([clips[c].seed for c in which], dtype=torch.int64,
                                 device=device),
    }
    if config.num_tracks:
        queries = np.stack((rng.integers(0, width, (b, config.num_tracks)),
                            rng.integers(0, height, (b, config.num_tracks))), axis=-1)
        batch["query_points"] = torch.as_tensor(queries, dtype=torch.float32, device=device)
        batch["tracks"], batch["track_vis"] = track_ground_truth(depth, poses, K, queries)
    return batch


class SyntheticWindows(IterableDataset):
    """Endless stream of ready batches, rendered and assembled on ``device``.

    As a DataLoader dataset (CPU rendering) each worker renders its own scenes; on a GPU it is
    iterated directly in the training process.
    """

    def __init__(self, config: DataConfig, seed: int = 0,
                 device: torch.device = torch.device("cpu")) -> None:
        super().__init__()
        self.config = config
        self.seed = seed
        self.device = torch.device(device)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, worker])
        lo, hi = self.config.seed_range

        def new_clip() -> Clip:
            return render_clip(int(rng.integers(lo, hi)), self.config, rng, self.device)

        pool = [new_clip() for _ in range(self.config.pool_size)]
        while True:
            for _ in range(self.config.refresh_per_batch):
                pool[int(rng.integers(len(pool)))] = new_clip()
            yield make_batch(pool, self.config, rng)


def make_loader(config: DataConfig, seed: int, num_workers: int, pin_memory: bool = False,
                device: torch.device = torch.device("cpu")) -> Iterable[dict[str, Tensor]]:
    """Batches rendered on ``device``: a CUDA device renders in this process (no workers), the
    CPU renders in ``num_workers`` DataLoader processes (0: in this process)."""
    config.check_training_split()
    device = torch.device(device)
    if device.type != "cpu":
        return SyntheticWindows(config, seed, device)
    kwargs = {"prefetch_factor": 4, "persistent_workers": True} if num_workers > 0 else {}
    return DataLoader(SyntheticWindows(config, seed), batch_size=None, num_workers=num_workers,
                      pin_memory=pin_memory, **kwargs)
