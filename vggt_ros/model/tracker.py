"""Iterative point tracker (ARCHITECTURE.md §7.2, the reference's BaseTrackerPredictor).

Coordinates live in feature-map units (pixels / stride) inside the loop. Each iteration
correlates the current track features with a feature pyramid around the current positions,
embeds the motion since frame 0, and lets the update transformer predict coordinate and feature
updates. Frame 0 always stays at the query.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import VGGTConfig
from .head_layers import sincos_embedding
from .layers import Mlp
from .update_former import EfficientUpdateFormer

QUERY_POS_BASE = 10000.0
FLOW_FREQ_SCALE = 1000.0


def bilinear_sample(fmap: Tensor, coords: Tensor, padding_mode: str) -> Tensor:
    """grid_sample with pixel coordinates (x, y): pixel i maps to i * 2/(size-1) - 1.

    fmap [N,C,H,W], coords [N,h,w,2] -> [N,C,h,w] (align_corners=True convention).
    """
    height, width = fmap.shape[-2:]
    # Python-float scales, not a tensor built on the host: no host-to-device copy per call, so
    # the tracker loop can be captured in a CUDA graph (the values round to the same floats).
    coords = coords.to(fmap.dtype)
    grid = torch.stack((coords[..., 0] * (2 / max(width - 1, 1)),
                        coords[..., 1] * (2 / max(height - 1, 1))), dim=-1) - 1
    return F.grid_sample(fmap, grid, align_corners=True, padding_mode=padding_mode)


def sample_at_points(fmap: Tensor, points: Tensor) -> Tensor:
    """fmap [B,C,H,W] at points [B,N,2] (border padding) -> [B,N,C]."""
    sampled = bilinear_sample(fmap, points.unsqueeze(2), padding_mode="border")  # [B,C,N,1]
    return sampled.squeeze(3).permute(0, 2, 1)


def query_position_table(dim: int, height: int, width: int, device: torch.device) -> Tensor:
    """[1, dim, height, width] sin/cos table: first dim/2 channels from x, the rest from y.

    The table is separable, so it is assembled from the per-column and per-row embeddings
    (identical values to embedding every pixel, without the full-size float64 intermediate).
    """
    half = dim // 2
    x_emb = sincos_embedding(torch.arange(width, dtype=torch.float32, device=device), half,
                             QUERY_POS_BASE)  # [W, half]
    y_emb = sincos_embedding(torch.arange(height, dtype=torch.float32, device=device), half,
                             QUERY_POS_BASE)  # [H, half]
    x_part = x_emb.t()[:, None, :].expand(half, height, width)
    y_part = y_emb.t()[:, :, None].expand(half, height, width)
    return torch.cat((x_part, y_part), dim=0)[None]


def flow_embedding(flow: Tensor, dim: int) -> Tensor:
    """[..., 2] -> [..., 2*dim]: per axis, dim interleaved sin/cos channels (x block, then y)."""
    freqs = torch.arange(0, dim, 2, device=flow.device, dtype=torch.float32) * (
        FLOW_FREQ_SCALE / dim)

    def axis(coord: Tensor) -> Tensor:
        angles = coord * freqs
        return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)

    return torch.cat((axis(flow[..., 0:1]), axis(flow[..., 1:2])), dim=-1)


class CorrelationPyramid:
    """Dot-product correlation of track features with a multi-level feature pyramid, sampled on
    a (2r+1)^2 window around each track position at every level.

    ``local``: the reference correlates every track with every pixel of every level, then
    samples the (2r+1)^2 window from that volume (N x H x W values per frame and iteration, a
    416 MB tensor at 256 tracks over 8 frames of 196x259 features). Bilinear sampling is linear,
    so sampling the FEATURES on the window and correlating only there gives the same values up
    to the order of the float sums (zero padding included: an outside corner adds a zero
    feature, as it adds a zero correlation), at (2r+1)^2 instead of H x W dot products per
    track. Off in the reference model (bit-for-bit with the official code), on in the fast path.
    """

    def __init__(self, fmaps: Tensor, levels: int, radius: int, local: bool = False) -> None:
        self.local = local
        B, S, C, H, W = fmaps.shape
        self.pyramid = [fmaps]
        for _ in range(levels - 1):
            pooled = F.avg_pool2d(self.pyramid[-1].reshape(B * S, C, H, W), kernel_size=2,
                                  stride=2)
            H, W = pooled.shape[-2:]
            self.pyramid.append(pooled.reshape(B, S, C, H, W))
        steps = torch.linspace(-radius, radius, 2 * radius + 1, device=fmaps.device,
                               dtype=fmaps.dtype)
        # Window ORDER: component 0 (x) follows the slow index, so sample a*(2r+1)+b sits at
        # (x + a - r, y + b - r).
        self.window = torch.stack(torch.meshgrid(steps, steps, indexing="ij"), dim=-1)[None]

    def sample(self, track_feats: Tensor, coords: Tensor) -> Tensor:
        """track_feats [B,S,N,C], coords [B,S,N,2] -> [B,S,N,levels*(2r+1)^2]."""
        if self.local:
            return self._sample_local(track_feats, coords)
        B, S, N, C = track_feats.shape
        out = []
        for level, fmap in enumerate(self.pyramid):
            H, W = fmap.shape[-2:]
            corr = torch.matmul(track_feats, fmap.view(B, S, C, H * W)) / math.sqrt(C)
            centres = coords.reshape(B * S * N, 1, 1, 2) / (2 ** level)
            sampled = bilinear_sample(corr.reshape(B * S * N, 1, H, W), centres + self.window,
                                      padding_mode="zeros")
            out.append(sampled.view(B, S, N, -1))
        return torch.cat(out, dim=-1).contiguous()

    def _sample_local(self, track_feats: Tensor, coords: Tensor) -> Tensor:
        B, S, N, C = track_feats.shape
        window = self.window.reshape(1, 1, -1, 2)  # [1,1,(2r+1)^2,2] in the reference's order
        feats = track_feats.reshape(B * S, N, 1, C)
        out = []
        for level, fmap in enumerate(self.pyramid):
            H, W = fmap.shape[-2:]
            centres = coords.reshape(B * S, N, 1, 2) / (2 ** level)
            around = bilinear_sample(fmap.reshape(B * S, C, H, W), centres + window,
                                     padding_mode="zeros")  # [B*S, C, N, (2r+1)^2]
            corr = torch.matmul(feats, around.permute(0, 2, 1, 3)) / math.sqrt(C)
            out.append(corr.view(B, S, N, -1))
        return torch.cat(out, dim=-1).contiguous()


class BaseTrackerPredictor(nn.Module):
    def __init__(self, config: VGGTConfig) -> None:
        super().__init__()
        latent = config.trk_features
        if latent % 4:
            raise ValueError(f"trk_features must be a multiple of 4, got {latent}")
        self.latent_dim = latent
        self.stride = config.trk_stride
        self.corr_levels = config.trk_corr_levels
        self.corr_radius = config.trk_corr_radius
        self.max_scale = config.trk_max_scale
        self.transformer_dim = 3 * latent + 4  # motion(latent+4) + corr(latent) + feature(latent)
        corr_dim = self.corr_levels * (2 * self.corr_radius + 1) ** 2

        self.corr_mlp = Mlp(corr_dim, config.trk_hidden, latent)
        self.query_ref_token = nn.Parameter(torch.zeros(1, 2, self.transformer_dim))
        self.updateformer = EfficientUpdateFormer(
            depth=config.trk_depth, input_dim=self.transformer_dim,
            hidden_size=config.trk_hidden, output_dim=latent + 2,
            num_heads=config.trk_attn_heads, num_virtual_tracks=config.trk_virtual_tracks)
        self.fmap_norm = nn.LayerNorm(latent)
        self.ffeat_norm = nn.GroupNorm(1, latent)
        self.ffeat_updater = nn.Sequential(nn.Linear(latent, latent), nn.GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(latent, 1))
        self.conf_predictor = nn.Sequential(nn.Linear(latent, 1))

    def forward(self, query_points: Tensor, fmaps: Tensor, iters: int,
                local_correlation: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """query_points [B,N,2] pixels (x, y) in frame 0; fmaps [B,S,C,Hf,Wf];
        ``local_correlation``: see ``CorrelationPyramid`` (same values, other float order).

        Returns tracks [B,S,N,2] in pixels (last iteration), vis and conf [B,S,N] in (0, 1).
        """
        B, N, _ = query_points.shape
        _, S, C, Hf, Wf = fmaps.shape
        latent = self.latent_dim
        fmaps = self.fmap_norm(fmaps.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)

        query = query_points / float(self.stride)
        coords = query.reshape(B, 1, N, 2).repeat(1, S, 1, 1)
        track_feats = sample_at_points(fmaps[:, 0], coords[:, 0]).unsqueeze(1).repeat(1, S, 1, 1)
        correlation = CorrelationPyramid(fmaps, self.corr_levels, self.corr_radius,
                                         local_correlation)

        # Position of each query in the frame-0 feature map: constant over the iterations.
        pos_table = query_position_table(self.transformer_dim, Hf, Wf, fmaps.device)
        query_pos = sample_at_points(pos_table.expand(B, -1, -1, -1), coords[:, 0])
        query_pos = query_pos.reshape(B * N, 1, -1)
        ref_token = torch.cat((self.query_ref_token[:, :1],
                               self.query_ref_token[:, 1:].expand(-1, S - 1, -1)), dim=1)

        for _ in range(iters):
            coords = coords.detach()
            corr = correlation.sample(track_feats, coords)
            corr = self.corr_mlp(corr.permute(0, 2, 1, 3).reshape(B * N, S, -1))
            flows = (coords - coords[:, 0:1]).permute(0, 2, 1, 3).reshape(B * N, S, 2)
            motion = torch.cat((flow_embedding(flows, latent // 2), flows / self.max_scale,
                                flows / self.max_scale), dim=-1)
            feats = track_feats.permute(0, 2, 1, 3).reshape(B * N, S, latent)
            x = torch.cat((motion, corr, feats), dim=2) + query_pos
            x = x + ref_token.to(x.dtype)
            delta = self.updateformer(x.reshape(B, N, S, -1)).reshape(B * N, S, -1)

            feats = feats.reshape(B * N * S, latent)
            feat_delta = delta[:, :, 2:].reshape(B * N * S, latent)
            feats = self.ffeat_updater(self.ffeat_norm(feat_delta)) + feats
            track_feats = feats.reshape(B, N, S, latent).permute(0, 2, 1, 3)
            coords = coords + delta[:, :, :2].reshape(B, N, S, 2).permute(0, 2, 1, 3)
            coords[:, 0] = query

        flat_feats = track_feats.reshape(B * S * N, latent)
        vis = torch.sigmoid(self.vis_predictor(flat_feats).reshape(B, S, N))
        conf = torch.sigmoid(self.conf_predictor(flat_feats).reshape(B, S, N))
        return coords * self.stride, vis, conf
