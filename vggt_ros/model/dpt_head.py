"""DPT dense-prediction head (ARCHITECTURE.md §6): depth_head, point_head and the track features.

Module names mirror the checkpoint keys (``norm``, ``projects.k``, ``resize_layers.k``,
``scratch.*``). The op sequence follows the reference closely on purpose (§10): the token ->
image reshape keeps the same strides, every upsampling is bilinear with align_corners=True and an
explicit output size, the residual conv unit adds relu(x), and the position embedding is built in
float64 before being cast and added with weight 0.1.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import VGGTConfig
from .head_layers import sincos_embedding

POS_EMBED_WEIGHT = 0.1
HEAD_HIDDEN = 32  # output_conv2 width, fixed in the reference


def _exp(x: Tensor) -> Tensor:
    return torch.exp(x)


def _inv_log(x: Tensor) -> Tensor:
    """Inverse of sign(x)*log1p(|x|): lets the point map span many orders of magnitude."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


def _expp1(x: Tensor) -> Tensor:
    """Confidence >= 1 (the reference's uncertainty-weighted loss needs conf > 1)."""
    return 1 + x.exp()


VALUE_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"exp": _exp, "inv_log": _inv_log}
CONF_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"expp1": _expp1}


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    return F.interpolate(x, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=True)


def uv_position_embedding(channels: int, height: int, width: int, aspect_ratio: float,
                          device: torch.device) -> Tensor:
    """Sin/cos embedding [channels, height, width] of a centred, aspect-aware (u, v) grid.

    The grid spans the image diagonal normalised to 1, so maps of every resolution of the same
    image get consistent coordinates.
    """
    if channels % 4:
        raise ValueError(f"DPT position embedding needs channels divisible by 4, got {channels}")
    diag = (aspect_ratio ** 2 + 1.0) ** 0.5
    span_x, span_y = aspect_ratio / diag, 1.0 / diag
    u = torch.linspace(-span_x * (width - 1) / width, span_x * (width - 1) / width, steps=width,
                       dtype=torch.float32, device=device)
    v = torch.linspace(-span_y * (height - 1) / height, span_y * (height - 1) / height,
                       steps=height, dtype=torch.float32, device=device)
    uu, vv = torch.meshgrid(u, v, indexing="xy")  # [height, width] each
    half = channels // 2
    emb = torch.cat((sincos_embedding(uu, half, 100.0), sincos_embedding(vv, half, 100.0)), dim=1)
    return emb.view(height, width, channels).permute(2, 0, 1)


class ResidualConvUnit(nn.Module):
    """conv2(relu(conv1(relu(x)))) + relu(x).

    The skip adds the ReLU-ed input: the reference applies an in-place ReLU that overwrites x.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FeatureFusionBlock(nn.Module):
    """RefineNet fusion: [x + RCU1(skip)] -> RCU2 -> bilinear upsample -> 1x1 out_conv."""

    def __init__(self, features: int, has_skip: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)  # registered first: key order
        if has_skip:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: Tensor, skip: Optional[Tensor] = None,
                size: Optional[Sequence[int]] = None) -> Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:  # the last block doubles the resolution
            size = (int(x.shape[-2] * 2), int(x.shape[-1] * 2))
        return self.out_conv(_resize(x, size))


class DPTScratch(nn.Module):
    """Channel reduction (``layer*_rn``), fusion (``refinenet*``) and output convolutions."""

    def __init__(self, out_channels: Sequence[int], features: int, output_dim: int,
                 feature_only: bool) -> None:
        super().__init__()
        for i, channels in enumerate(out_channels, start=1):
            setattr(self, f"layer{i}_rn",
                    nn.Conv2d(channels, features, kernel_size=3, padding=1, bias=False))
        self.refinenet1 = FeatureFusionBlock(features)
        self.refinenet2 = FeatureFusionBlock(features)
        self.refinenet3 = FeatureFusionBlock(features)
        self.refinenet4 = FeatureFusionBlock(features, has_skip=False)
        conv1_out = features if feature_only else features // 2
        self.output_conv1 = nn.Conv2d(features, conv1_out, kernel_size=3, padding=1)
        if not feature_only:
            self.output_conv2 = nn.Sequential(
                nn.Conv2d(conv1_out, HEAD_HIDDEN, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.Conv2d(HEAD_HIDDEN, output_dim, kernel_size=1),
            )

    def fuse(self, maps: Sequence[Tensor]) -> Tensor:
        """Four multi-scale maps (fine to coarse) -> one fused map at twice the finest size."""
        l1, l2, l3, l4 = (getattr(self, f"layer{i}_rn")(m) for i, m in enumerate(maps, start=1))
        out = self.refinenet4(l4, size=l3.shape[2:])
        out = self.refinenet3(out, l3, size=l2.shape[2:])
        out = self.refinenet2(out, l2, size=l1.shape[2:])
        out = self.refinenet1(out, l1)
        return self.output_conv1(out)


class DPTHead(nn.Module):
    """Dense head over 4 aggregator layers; value + confidence maps, or features only."""

    def __init__(self, config: VGGTConfig, output_dim: int = 4, activation: str = "inv_log",
                 conf_activation: str = "expp1", features: Optional[int] = None,
                 down_ratio: int = 1, pos_embed: bool = True, feature_only: bool = False) -> None:
        super().__init__()
        if not feature_only:
            if activation not in VALUE_ACTIVATIONS:
                raise ValueError(f"unknown DPT activation {activation!r}; "
                                 f"known: {sorted(VALUE_ACTIVATIONS)}")
            if conf_activation not in CONF_ACTIVATIONS:
                raise ValueError(f"unknown DPT conf_activation {conf_activation!r}; "
                                 f"known: {sorted(CONF_ACTIVATIONS)}")
            if output_dim < 2:
                raise ValueError(f"output_dim must be >= 2 (value + confidence), got {output_dim}")
        features = config.dpt_features if features is None else features
        out_channels = list(config.dpt_out_channels)
        dim_in = 2 * config.embed_dim
        self.patch_size = config.patch_size
        self.layers = list(config.dpt_layers)
        self.down_ratio = down_ratio
        self.pos_embed = pos_embed
        self.feature_only = feature_only
        self.activation = activation
        self.conf_activation = conf_activation

        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, c, kernel_size=1) for c in out_channels)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
        ])
        self.scratch = DPTScratch(out_channels, features, output_dim, feature_only)

    def forward(self, tokens: Sequence[Optional[Tensor]], images: Tensor, patch_start_idx: int,
                frames_chunk_size: Optional[int] = 8, *, body: Optional[DPTBody] = None,
                dtype: Optional[torch.dtype] = None,
                position_tables: Optional[Sequence[Tensor]] = None
                ) -> Union[Tensor, tuple[Tensor, Tensor]]:
        """tokens: per-layer aggregator outputs [B,S,P,2C] (None for unused layers);
        images [B,S,3,H,W] (only its shape is used).

        Returns (value [B,S,H,W,output_dim-1], conf [B,S,H,W]), or features
        [B,S,F,H/down,W/down] when feature_only. Frames are processed in chunks to bound the
        memory of the full-resolution maps; chunking does not change the numbers.
        The keywords are the seams of a faster caller: ``body`` replaces ``DPTHead.body`` (e.g.
        a compiled one), ``dtype`` is the convolutions' dtype (see ``body``) and
        ``position_tables`` replaces ``self.position_tables(...)`` (e.g. cached ones).
        """
        if images.dim() != 5:
            raise ValueError(f"images must be [B,S,3,H,W], got shape {tuple(images.shape)}")
        H, W = images.shape[-2:]
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"image size {H}x{W} is not a multiple of patch {self.patch_size}")
        for layer in self.layers:
            if layer >= len(tokens) or tokens[layer] is None:
                raise ValueError(f"DPT head needs aggregator layer {layer}, which is missing")
        S = images.shape[1]
        if frames_chunk_size is not None and frames_chunk_size <= 0:
            raise ValueError(f"frames_chunk_size must be positive, got {frames_chunk_size}")
        if position_tables is None and self.pos_embed:
            position_tables = self.position_tables((H, W), images.device)
        body = DPTHead.body if body is None else body
        grid = (H // self.patch_size, W // self.patch_size)
        step = S if frames_chunk_size is None else frames_chunk_size
        chunks = [body(self, [tokens[layer][:, start:start + step, patch_start_idx:]
                              for layer in self.layers],
                       position_tables, grid, self.output_size(grid), dtype)
                  for start in range(0, S, step)]
        if len(chunks) == 1:
            return chunks[0]
        if self.feature_only:
            return torch.cat(chunks, dim=1)
        return (torch.cat([c[0] for c in chunks], dim=1), torch.cat([c[1] for c in chunks], dim=1))

    def output_size(self, grid: tuple[int, int]) -> tuple[int, int]:
        """Size of the output maps for a patch grid (the image size / ``down_ratio``)."""
        return (int(grid[0] * self.patch_size / self.down_ratio),
                int(grid[1] * self.patch_size / self.down_ratio))

    def position_tables(self, image_hw: tuple[int, int], device: torch.device) -> list[Tensor]:
        """The weighted uv embeddings [1,C,h,w] added after each of the four projections and to
        the output maps, for an image of ``image_hw`` (float32)."""
        H, W = image_hw
        grid = (H // self.patch_size, W // self.patch_size)
        sizes = [(proj.out_channels, *grid) for proj in self.projects]
        sizes.append((self.scratch.output_conv1.out_channels, *self.output_size(grid)))
        return [(uv_position_embedding(c, h, w, W / H, device) * POS_EMBED_WEIGHT)[None]
                for c, h, w in sizes]

    def body(self, layers: Sequence[Tensor], position_tables: Optional[Sequence[Tensor]],
             grid: tuple[int, int], out_hw: tuple[int, int], dtype: Optional[torch.dtype] = None
             ) -> Union[Tensor, tuple[Tensor, Tensor]]:
        """The head on the patch tokens [B,S,h*w,2C] of its four layers (one chunk of frames).

        A function of its inputs only (the position tables are passed in), so ``torch.compile``
        can trace it once per head and size and fuse the element-wise work between the
        convolutions. dtype: cast the normed tokens to it, for conv weights stored in it (the
        fast path), and return the value and confidence in fp32; None keeps the reference
        numerics.
        """
        ph, pw = grid
        B, S = layers[0].shape[:2]
        maps = []
        for k, x in enumerate(layers):
            x = self.norm(x.reshape(B * S, -1, x.shape[-1]))
            if dtype is not None:
                x = x.to(dtype)
            # Same strides as the reference (a channels-last view), so the conv sees the same
            # memory layout (and a channels-last 1x1 conv needs no copy).
            x = x.permute(0, 2, 1).reshape(x.shape[0], x.shape[-1], ph, pw)
            x = self.projects[k](x)
            if position_tables is not None:
                x = x + position_tables[k]
            maps.append(self.resize_layers[k](x))
        out = _resize(self.scratch.fuse(maps), out_hw)
        if position_tables is not None:
            out = out + position_tables[-1]
        if self.feature_only:
            return out.view(B, S, *out.shape[1:])
        out = self.scratch.output_conv2(out)
        if dtype is not None:
            out = out.float()
        out = out.permute(0, 2, 3, 1)  # [N,H,W,C]
        value = VALUE_ACTIVATIONS[self.activation](out[..., :-1])
        conf = CONF_ACTIVATIONS[self.conf_activation](out[..., -1])
        return value.view(B, S, *value.shape[1:]), conf.view(B, S, *conf.shape[1:])


# DPTHead.body's signature: (head, layers, position_tables, grid, out_hw, dtype) -> outputs.
DPTBody = Callable[..., Union[Tensor, tuple[Tensor, Tensor]]]
