"""One configuration object for every VGGT-structured model we build.

The defaults are VGGT-1B (facebook/VGGT-1B). The fixture model in
``shared/vggt_spec/fixtures/small_config.json`` uses the same field names, so
``VGGTConfig(**json.load(f))`` builds the tiny test model through the very same code path.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class VGGTConfig:
    # Image / patch grid. img_size fixes the DINO absolute position table (img_size/patch_size)^2.
    img_size: int = 518
    patch_size: int = 14
    # Aggregator (alternating frame/global attention). embed_dim is also the DINO width.
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    rope_freq: float = 100.0
    init_values: float = 0.01
    # DINOv2 patch embed (ViT with registers); its width is embed_dim.
    dino_depth: int = 24
    dino_heads: int = 16
    # Camera head: trunk over the S camera tokens, dim 2*embed_dim.
    cam_trunk_depth: int = 4
    cam_heads: int = 16
    cam_iters: int = 4
    # DPT heads (depth, point; the track feature extractor shares out_channels and layers).
    dpt_features: int = 256
    dpt_out_channels: list[int] = field(default_factory=lambda: [256, 512, 1024, 1024])
    dpt_layers: list[int] = field(default_factory=lambda: [4, 11, 17, 23])
    # Track head. trk_features is both the feature-map width and the tracker latent size.
    trk_features: int = 128
    trk_iters: int = 4
    trk_corr_levels: int = 7
    trk_corr_radius: int = 4
    trk_hidden: int = 384
    trk_depth: int = 6
    trk_stride: int = 2
    trk_virtual_tracks: int = 64
    trk_attn_heads: int = 8
    trk_max_scale: int = 518
    # Which heads exist (a disabled head has no parameters and no output keys).
    enable_camera: bool = True
    enable_depth: bool = True
    enable_point: bool = True
    enable_track: bool = True

    def __post_init__(self) -> None:
        self.dpt_out_channels = list(self.dpt_out_channels)
        self.dpt_layers = list(self.dpt_layers)
        problems = []
        if len(self.dpt_out_channels) != 4 or len(self.dpt_layers) != 4:
            problems.append("dpt_out_channels and dpt_layers need exactly 4 entries")
        if any(not 0 <= i < self.depth for i in self.dpt_layers):
            problems.append(f"dpt_layers {self.dpt_layers} must lie in [0, depth={self.depth})")
        if self.img_size % self.patch_size:
            problems.append("img_size must be a multiple of patch_size")
        for name, heads, dim in (("num_heads", self.num_heads, self.embed_dim),
                                 ("dino_heads", self.dino_heads, self.embed_dim),
                                 ("cam_heads", self.cam_heads, 2 * self.embed_dim),
                                 ("trk_attn_heads", self.trk_attn_heads, self.trk_hidden)):
            if heads <= 0 or dim % heads:
                problems.append(f"{name}={heads} must divide its width {dim}")
        if (self.embed_dim // max(self.num_heads, 1)) % 4:
            problems.append("aggregator head dim must be a multiple of 4 (2D RoPE)")
        if problems:
            raise ValueError("invalid VGGTConfig: " + "; ".join(problems))

    # Derived sizes (kept here so every module computes them the same way).
    @property
    def cached_layers(self) -> list[int]:
        """Aggregator layers whose outputs the heads read (DPT layers plus the last one)."""
        return sorted(set(self.dpt_layers) | {self.depth - 1})

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VGGTConfig":
        """Build from a dict, rejecting unknown keys with a clear message."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown VGGTConfig fields: {unknown}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "VGGTConfig":
        return cls.from_dict(json.loads(text))
