"""Track head (ARCHITECTURE.md §7): DPT feature maps at half resolution + iterative tracker."""
from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor, nn

from .config import VGGTConfig
from .dpt_head import DPTHead
from .tracker import BaseTrackerPredictor


class TrackHead(nn.Module):
    def __init__(self, config: VGGTConfig) -> None:
        super().__init__()
        self.iters = config.trk_iters
        self.feature_extractor = DPTHead(config, features=config.trk_features,
                                         down_ratio=config.trk_stride, pos_embed=False,
                                         feature_only=True)
        self.tracker = BaseTrackerPredictor(config)

    def forward(self, tokens: Sequence[Optional[Tensor]], images: Tensor, patch_start_idx: int,
                query_points: Tensor,
                iters: Optional[int] = None) -> tuple[Tensor, Tensor, Tensor]:
        """Track query_points [B,N,2] (pixels (x, y) in frame 0) through images [B,S,3,H,W].

        Returns tracks [B,S,N,2] (pixels, last iteration), vis [B,S,N], conf [B,S,N].
        """
        iters = self.iters if iters is None else iters
        if iters < 1:
            raise ValueError(f"track iterations must be >= 1, got {iters}")
        if query_points.dim() != 3 or query_points.shape[-1] != 2:
            raise ValueError(f"query_points must be [B,N,2], got {tuple(query_points.shape)}")
        if query_points.shape[0] != images.shape[0]:
            raise ValueError(f"query_points batch {query_points.shape[0]} != images batch "
                             f"{images.shape[0]}")
        fmaps = self.feature_extractor(tokens, images, patch_start_idx)
        return self.tracker(query_points, fmaps, iters)
