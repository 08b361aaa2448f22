"""Top-level VGGT network: aggregator plus the camera, point, depth and track heads.

Submodule names and their registration order (aggregator, camera_head, point_head, depth_head,
track_head) define the state_dict keys and order of the official checkpoint. A head disabled in
the config is not built at all, so it has no parameters and produces no output keys.
"""
from __future__ import annotations

import contextlib
from collections.abc import Collection
from typing import Optional

import torch
from torch import Tensor, nn

from .aggregator import Aggregator
from .camera_head import CameraHead
from .config import VGGTConfig
from .dpt_head import DPTHead
from .track_head import TrackHead

HEAD_NAMES = ("camera", "depth", "point", "track")


def batched_inputs(images: Tensor, query_points: Optional[Tensor]
                   ) -> tuple[Tensor, Optional[Tensor]]:
    """Check the forward inputs and add the batch axis the way upstream does: [S,3,H,W] ->
    [1,S,3,H,W] and [N,2] -> [1,N,2]. Raises ValueError/TypeError naming the bad input."""
    if images.dim() == 4:
        images = images.unsqueeze(0)
    if images.dim() != 5 or images.shape[2] != 3:
        raise ValueError(f"images must be [S,3,H,W] or [B,S,3,H,W], got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images must be a float tensor in [0,1], got {images.dtype}")
    if query_points is not None:
        if query_points.dim() == 2:
            query_points = query_points.unsqueeze(0)
        if (query_points.dim() != 3 or query_points.shape[-1] != 2
                or query_points.shape[0] != images.shape[0]):
            raise ValueError(f"query_points must be [N,2] or [B,N,2] with B={images.shape[0]}, "
                             f"got {tuple(query_points.shape)}")
    return images, query_points


class VGGT(nn.Module):
    """Visual Geometry Grounded Transformer (ARCHITECTURE.md §1)."""

    def __init__(self, config: Optional[VGGTConfig] = None) -> None:
        super().__init__()
        self.config = config if config is not None else VGGTConfig()
        cfg = self.config
        self.aggregator = Aggregator(cfg)
        self.camera_head = CameraHead(cfg) if cfg.enable_camera else None
        self.point_head = (DPTHead(cfg, output_dim=4, activation="inv_log", conf_activation="expp1")
                           if cfg.enable_point else None)
        self.depth_head = (DPTHead(cfg, output_dim=2, activation="exp", conf_activation="expp1")
                           if cfg.enable_depth else None)
        self.track_head = TrackHead(cfg) if cfg.enable_track else None

    @property
    def enabled_heads(self) -> tuple[str, ...]:
        return tuple(name for name in HEAD_NAMES if getattr(self, f"{name}_head") is not None)

    def select_heads(self, heads: Optional[Collection[str]], with_queries: bool,
                     default: Collection[str] = HEAD_NAMES) -> set[str]:
        """Validate a per-call head request. heads=None takes the built heads among ``default``
        (every head for the reference, fewer for the fast path); the track head runs exactly
        when query points are given."""
        if heads is None:
            selected = {h for h in default if h in self.enabled_heads and h != "track"}
            if with_queries and self.track_head is not None:
                selected.add("track")
        else:
            if isinstance(heads, str):
                raise TypeError(f"heads must be a collection of names, e.g. ('{heads}',), "
                                f"not the string {heads!r}")
            selected = set(heads)
            unknown = sorted(selected - set(HEAD_NAMES))
            if unknown:
                raise ValueError(f"unknown heads {unknown}; valid names are {list(HEAD_NAMES)}")
            disabled = sorted(selected - set(self.enabled_heads))
            if disabled:
                raise ValueError(f"heads {disabled} are disabled in this model's config")
        if "track" in selected and not with_queries:
            raise ValueError("the track head needs query_points")
        if with_queries and "track" not in selected:
            reason = "is disabled in the config" if self.track_head is None else "was not requested"
            raise ValueError(f"query_points given but the track head {reason}")
        return selected

    def forward(self, images: Tensor, query_points: Optional[Tensor] = None,
                heads: Optional[Collection[str]] = None) -> dict[str, Tensor | list[Tensor]]:
        """Run the network.

        images: [S,3,H,W] or [B,S,3,H,W], RGB in [0,1], H and W multiples of the patch size.
        query_points: optional [N,2] or [B,N,2] pixel (x, y) positions in frame 0 to track.
        heads: optional subset of ("camera", "depth", "point", "track") to run in this call, so
        callers that only need poses and depth can skip the point head.
        Returns the official output dict (ARCHITECTURE.md §1) restricted to the heads run.
        """
        images, query_points = batched_inputs(images, query_points)
        selected = self.select_heads(heads, query_points is not None)
        tokens, patch_start_idx = self.aggregator(images)
        return self.run_heads(tokens, patch_start_idx, images, query_points, selected)

    def run_heads(self, tokens: list[Optional[Tensor]], patch_start_idx: int, images: Tensor,
                  query_points: Optional[Tensor], heads: Collection[str]
                  ) -> dict[str, Tensor | list[Tensor]]:
        """The second half of ``forward``: the ``heads`` (validated by ``select_heads``) on the
        aggregator's outputs. Public for callers that also need the aggregated tokens
        (training losses on them) or run the aggregator their own way."""
        predictions: dict[str, Tensor | list[Tensor]] = {}
        # The reference runs these heads in full fp32 even inside a CUDA autocast region.
        fp32_region = (torch.autocast("cuda", enabled=False) if images.is_cuda
                       else contextlib.nullcontext())
        with fp32_region:
            if "camera" in heads:
                pose_enc_list = self.camera_head(tokens)
                predictions["pose_enc"] = pose_enc_list[-1]
                predictions["pose_enc_list"] = pose_enc_list
            if "depth" in heads:
                depth, depth_conf = self.depth_head(tokens, images, patch_start_idx)
                predictions["depth"] = depth
                predictions["depth_conf"] = depth_conf
            if "point" in heads:
                points, points_conf = self.point_head(tokens, images, patch_start_idx)
                predictions["world_points"] = points
                predictions["world_points_conf"] = points_conf
        if "track" in heads:
            track, vis, conf = self.track_head(tokens, images, patch_start_idx, query_points)
            predictions["track"] = track
            predictions["vis"] = vis
            predictions["conf"] = conf
        if not self.training:
            predictions["images"] = images
        return predictions
