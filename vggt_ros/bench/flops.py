"""Counted floating-point operations of each VGGT stage, from the config and the input shapes.

Why count instead of profile: a benchmark needs the arithmetic floor (FLOPs / peak rate) to say
how far a measured time is from what the hardware allows, without a profiler on the device.
The convention is torch's ``FlopCounterMode``: 2*M*N*K per matrix product, convolutions as
2 * batch * weight elements * output pixels (input pixels for transposed convolutions),
attention as its two matrix products. Element-wise work, norms, resampling and grid sampling
are not counted. ``test/test_bench.py`` checks these formulas against FlopCounterMode.
All counts are for one scene (batch 1).
"""
from __future__ import annotations

from vggt_ros.model.config import VGGTConfig

PATCH_START = 5  # camera + 4 register tokens per frame in the aggregator
DPT_HIDDEN = 32  # width of the DPT output_conv2


def block_flops(sequences: int, tokens: int, dim: int, hidden: int) -> int:
    """Pre-norm transformer block: qkv, proj, 2-layer MLP and the two attention products."""
    linear = 2 * sequences * tokens * (dim * 3 * dim + dim * dim + 2 * dim * hidden)
    attention = 4 * sequences * tokens * tokens * dim
    return linear + attention


def _conv(cin: int, cout: int, k: int, pixels: int) -> int:
    return 2 * cin * cout * k * k * pixels


def dino_flops(cfg: VGGTConfig, frames: int, height: int, width: int) -> int:
    """DINO patch embedding (patch conv + ViT blocks) for ``frames`` images."""
    hw = (height // cfg.patch_size) * (width // cfg.patch_size)
    tokens = 1 + cfg.num_register_tokens + hw
    conv = frames * _conv(3, cfg.embed_dim, cfg.patch_size, hw)
    hidden = int(cfg.embed_dim * cfg.mlp_ratio)
    return conv + cfg.dino_depth * block_flops(frames, tokens, cfg.embed_dim, hidden)


def alternating_flops(cfg: VGGTConfig, frames: int, height: int, width: int) -> int:
    """The aggregator's frame + global blocks (without the DINO patch embedding)."""
    tokens = PATCH_START + (height // cfg.patch_size) * (width // cfg.patch_size)
    hidden = int(cfg.embed_dim * cfg.mlp_ratio)
    per_layer = (block_flops(frames, tokens, cfg.embed_dim, hidden)
                 + block_flops(1, frames * tokens, cfg.embed_dim, hidden))
    return cfg.depth * per_layer


def camera_flops(cfg: VGGTConfig, frames: int, iterations: int | None = None) -> int:
    dim = 2 * cfg.embed_dim
    iters = cfg.cam_iters if iterations is None else iterations
    trunk = cfg.cam_trunk_depth * block_flops(1, frames, dim, int(dim * cfg.mlp_ratio))
    per_iter = 2 * frames * (9 * dim + dim * 3 * dim + dim * (dim // 2) + (dim // 2) * 9) + trunk
    return iters * per_iter


def dpt_flops(cfg: VGGTConfig, frames: int, height: int, width: int, features: int | None = None,
              output_dim: int = 2, down_ratio: int = 1, feature_only: bool = False,
              ) -> int:
    """One DPT head (depth: output_dim 2; point: 4; track features: feature_only, down 2)."""
    f = cfg.dpt_features if features is None else features
    oc = cfg.dpt_out_channels
    ph, pw = height // cfg.patch_size, width // cfg.patch_size
    grid = ph * pw
    h4, w4 = (ph - 1) // 2 + 1, (pw - 1) // 2 + 1
    sizes = [16 * grid, 4 * grid, grid, h4 * w4]  # pixels of the 4 multi-scale maps
    total = sum(_conv(2 * cfg.embed_dim, c, 1, grid) for c in oc)  # projects
    total += _conv(oc[0], oc[0], 4, grid) + _conv(oc[1], oc[1], 2, grid)  # transposed: input px
    total += _conv(oc[3], oc[3], 3, sizes[3])
    total += sum(_conv(c, f, 3, s) for c, s in zip(oc, sizes))  # layer*_rn
    rcu = 2 * _conv(f, f, 3, 1)  # per pixel of one residual conv unit
    total += rcu * sizes[3] + _conv(f, f, 1, sizes[2])  # refinenet4: RCU2, out_conv at l3 size
    total += 2 * rcu * sizes[2] + _conv(f, f, 1, sizes[1])  # refinenet3
    total += 2 * rcu * sizes[1] + _conv(f, f, 1, sizes[0])  # refinenet2
    total += 2 * rcu * sizes[0] + _conv(f, f, 1, 4 * sizes[0])  # refinenet1 (doubles)
    total += _conv(f, f if feature_only else f // 2, 3, 4 * sizes[0])  # output_conv1
    if not feature_only:
        out_px = int(ph * cfg.patch_size / down_ratio) * int(pw * cfg.patch_size / down_ratio)
        total += _conv(f // 2, DPT_HIDDEN, 3, out_px) + _conv(DPT_HIDDEN, output_dim, 1, out_px)
    return frames * total


def _mha_flops(sequences: int, q_tokens: int, kv_tokens: int, dim: int, hidden: int) -> int:
    """nn.MultiheadAttention block + MLP on the query tokens (tracker blocks)."""
    proj = 2 * sequences * (q_tokens * dim * dim + kv_tokens * 2 * dim * dim + q_tokens * dim * dim)
    attention = 4 * sequences * q_tokens * kv_tokens * dim
    mlp = 2 * sequences * q_tokens * 2 * dim * hidden
    return proj + attention + mlp


def tracker_flops(cfg: VGGTConfig, frames: int, queries: int, height: int, width: int,
                  iterations: int | None = None) -> int:
    """The iterative tracker (correlation, update transformer, feature updates)."""
    iters = cfg.trk_iters if iterations is None else iterations
    latent, hid = cfg.trk_features, cfg.trk_hidden
    mlp_hidden = 4 * hid
    hf, wf = height // cfg.trk_stride, width // cfg.trk_stride
    corr = 0
    for _ in range(cfg.trk_corr_levels):
        corr += 2 * frames * queries * latent * hf * wf
        hf, wf = hf // 2, wf // 2
    corr_dim = cfg.trk_corr_levels * (2 * cfg.trk_corr_radius + 1) ** 2
    tdim = 3 * latent + 4
    n, v, s = queries, cfg.trk_virtual_tracks, frames
    former = 2 * n * s * tdim * hid + 2 * n * s * hid * (latent + 2)
    former += cfg.trk_depth * (
        _mha_flops(n + v, s, s, hid, mlp_hidden)  # time attention
        + _mha_flops(s, v, n, hid, mlp_hidden)  # virtual <- points
        + _mha_flops(s, v, v, hid, mlp_hidden)  # virtual <-> virtual
        + _mha_flops(s, n, v, hid, mlp_hidden))  # points <- virtual
    per_iter = corr + 2 * n * s * (corr_dim * hid + hid * latent) + former + 2 * n * s * latent ** 2
    return iters * per_iter + 2 * 2 * s * n * latent


def stage_flops(cfg: VGGTConfig, frames: int, height: int, width: int,
                queries: int = 0) -> dict[str, int]:
    """FLOPs per benchmark stage for one scene of ``frames`` images of height x width."""
    stages = {
        "dino": dino_flops(cfg, frames, height, width),
        "aggregator": dino_flops(cfg, frames, height, width)
        + alternating_flops(cfg, frames, height, width),
        "camera_head": camera_flops(cfg, frames),
        "depth_head": dpt_flops(cfg, frames, height, width, output_dim=2),
        "point_head": dpt_flops(cfg, frames, height, width, output_dim=4),
    }
    if queries:
        stages["track_head"] = (dpt_flops(cfg, frames, height, width, features=cfg.trk_features,
                                          down_ratio=cfg.trk_stride, feature_only=True)
                                + tracker_flops(cfg, frames, queries, height, width))
    return stages
