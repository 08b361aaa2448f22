"""Random-weight VGGT models and inputs of a chosen size: what the benchmarks time and what the
tests use as their random models (no checkpoint needed)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import torch

from vggt_ros.model import VGGT, VGGTConfig

TINY_CONFIG = dict(img_size=70, embed_dim=64, depth=4, num_heads=4, dino_depth=2, dino_heads=4,
                   cam_trunk_depth=2, cam_heads=4, dpt_features=32,
                   dpt_out_channels=[16, 32, 64, 64], dpt_layers=[0, 1, 2, 3], trk_features=32,
                   trk_iters=2, trk_corr_levels=3, trk_corr_radius=2, trk_hidden=64, trk_depth=2)
FOV_BIAS = 0.5  # raises random-init FoV outputs so ReLU'd FoVs (infinite focal) are rare


def build_config(name: str) -> VGGTConfig:
    if name == "1b":
        return VGGTConfig()
    if name == "tiny":
        return VGGTConfig(**TINY_CONFIG)
    path = Path(name)
    if not path.is_file():
        raise SystemExit(f"--config must be 1b, tiny or a JSON file, got {name!r}")
    return VGGTConfig.from_json(path.read_text())


def add_window_arguments(parser: argparse.ArgumentParser) -> None:
    """--device, --config, --frames, --width, --height of the benchmarks that time one window
    of VGGT-1B at the model's input size (the pose solver's, the tracker's): their defaults are
    the window issue 12's and issue 17's targets are stated for (S=8, 518x392, a GPU)."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--config", default="1b", help="1b, tiny or a VGGTConfig JSON file")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--width", type=int, default=518)
    parser.add_argument("--height", type=int, default=392)


def random_model(cfg: VGGTConfig, seed: int, device: torch.device) -> VGGT:
    """Seeded default-initialised weights (eval mode) with the FoV outputs raised by FOV_BIAS,
    so focal lengths are finite; shared by the benchmarks and the tests' random models."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = VGGT(cfg)
    if model.camera_head is not None:
        with torch.no_grad():
            model.camera_head.pose_branch.fc2.bias[7:] += FOV_BIAS
    return model.eval()


def random_query_points(n: int, w: int, h: int, device: torch.device, seed: int
                        ) -> torch.Tensor:
    """[1,n,2] seeded query pixels anywhere in a w x h frame (the tracker benchmarks' queries,
    seeded by their count so every variant tracks the same points)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return (torch.rand(1, n, 2, generator=gen) * torch.tensor([w - 1.0, h - 1.0])).to(device)


def random_inputs(s: int, h: int, w: int, n: int, device: torch.device, seed: int
                  ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Seeded images [1,s,3,h,w] in [0,1] and n query pixels in frame 0 (None when n is 0)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    images = torch.rand(1, s, 3, h, w, generator=gen).to(device)
    scale = torch.tensor([w - 1.0, h - 1.0])
    queries = (torch.rand(1, n, 2, generator=gen) * scale).to(device) if n else None
    return images, queries
