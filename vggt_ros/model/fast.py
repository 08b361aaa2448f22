"""Fast inference path for VGGT: same network, same weights, fewer wasted passes.

Why a second forward path at all: the reference modules follow the official numerics op by op
(fp32 weights cast on every call under autocast, fp32 residual stream, RoPE tables gathered per
attention call, fp32 DPT heads without TF32, every head run whenever built). That is needed for
bit parity with the fixtures, and it stays untouched. This module runs the *same parameters*
through a leaner schedule:

* weights of the big matrix products (DINO, aggregator, DPT convs) are stored once in the compute
  dtype (bf16 on Ampere+ CUDA), so no per-call casts and half the weight memory;
* the residual stream, the LayerNorms feeding it, LayerScale and the aggregated tokens stay fp32,
  so rounding does not accumulate over the 72 residual blocks;
* RoPE cos/sin are built once per (grid, frame count) with exact fp32 angles and applied with one
  fused multiply-add; no host synchronisation anywhere in the forward;
* attention goes to ``F.scaled_dot_product_attention`` with bf16 q/k/v (a flash kernel; torch
  picks cuDNN's on Hopper);
* on CUDA the block function and the DPT heads are compiled (fixed shapes) to fuse the
  element-wise passes, and the launch-bound camera head and tracker replay as CUDA graphs;
* only the requested heads run (default: camera + depth, no point head); DPT convs run in the
  compute dtype (channels-last on CUDA); the camera head and the tracker stay fp32 (tiny
  compute, accuracy-critical iterative refinement);
* DINO patch tokens are cached per frame key, so a sliding window re-encodes only new frames;
* a track request over the last window's frames re-uses that window's aggregated tokens instead
  of re-running the backbone (exact when the query frame is the window's first; see
  ``FastOptions.reuse_permuted_tokens`` for the opt-in approximation otherwise).

On CPU the compute dtype is fp32 and the path does the reference's arithmetic (no extra work),
plus the cache and the head selection.
"""
from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .aggregator import PATCH_START_IDX, _frame_tokens
from .dpt_head import (CONF_ACTIVATIONS, POS_EMBED_WEIGHT, VALUE_ACTIVATIONS, DPTHead,
                       uv_position_embedding)
from .layers import Block, patch_positions
from .vggt import VGGT, batched_inputs

FAST_DEFAULT_HEADS = ("camera", "depth")
SDPA_BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                 "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}


def default_compute_dtype(device: torch.device) -> torch.dtype:
    """bf16 on Ampere+ CUDA, fp16 on older CUDA, fp32 elsewhere (CPU bf16 GEMMs are slow)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
    return torch.float32


@dataclass(frozen=True)
class FastOptions:
    """Switches of the fast path; every speed feature can be turned off on its own."""

    dtype: Optional[torch.dtype] = None  # None: default_compute_dtype(device)
    camera_fp32: bool = True  # camera head weights and math in fp32 (cheap: S tokens only)
    dpt_chunk: int = 8  # frames per DPT chunk (bounds full-resolution activation memory)
    # NHWC convolutions in the DPT heads (None: on CUDA only; on the CPU NCHW was faster).
    channels_last: Optional[bool] = None
    cache_frames: int = 64  # DINO patch-token cache capacity in frames; 0 disables it
    # A track request over exactly the last window's frames, in the same order (query on its
    # first frame), re-uses that window's aggregated tokens: the same numbers as a re-run.
    reuse_window_tokens: bool = True
    # Also re-use them when the request puts another frame first. The reference re-runs the
    # backbone with the query frame first, which changes which frame the aggregator treats as
    # its reference frame; this option keeps the window's reference frame and only reorders the
    # track feature maps: faster (docs/PERFORMANCE.md), but an approximation, so off by default.
    reuse_permuted_tokens: bool = False
    # torch.compile the transformer block (one graph per token shape; None: on for CUDA).
    # Measured on an H200 at S=8: 97 -> 69 ms, first call +7 s (docs/PERFORMANCE.md).
    compile_blocks: Optional[bool] = None
    # torch.compile the DPT heads (one graph per head and image size; None: on for CUDA).
    compile_heads: Optional[bool] = None
    cuda_graph_camera: bool = True  # replay the launch-bound camera head as a CUDA graph
    cuda_graph_tracker: bool = True  # same for the iterative tracker (per S, N, feature size)
    # Attention kernels to try first, e.g. ("cudnn",); the rest stay as fallbacks. None keeps
    # torch's own order.
    sdpa_priority: Optional[tuple[str, ...]] = None
    # Allow only the sdpa_priority backends (no fallback). On torch 2.11 / H200 cuDNN is
    # already torch's own first choice here, so neither switch changes the speed there.
    sdpa_exclusive: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sdpa_priority or ()) - set(SDPA_BACKENDS))
        if unknown:
            raise ValueError(f"unknown sdpa_priority backends {unknown}; "
                             f"known: {sorted(SDPA_BACKENDS)}")
        if self.dpt_chunk < 1:
            raise ValueError(f"dpt_chunk must be >= 1, got {self.dpt_chunk}")
        if self.cache_frames < 0:
            raise ValueError(f"cache_frames must be >= 0, got {self.cache_frames}")
        if self.dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {self.dtype}")


class BlockWeights(NamedTuple):
    """The tensors of one transformer ``Block`` plus its static sizes (a pure-tensor view that
    ``torch.compile`` can trace once and reuse for every block of the same shape)."""

    norm1_w: Tensor
    norm1_b: Tensor
    qkv_w: Tensor
    qkv_b: Tensor
    qn_w: Optional[Tensor]
    qn_b: Optional[Tensor]
    kn_w: Optional[Tensor]
    kn_b: Optional[Tensor]
    proj_w: Tensor
    proj_b: Tensor
    ls1: Tensor
    norm2_w: Tensor
    norm2_b: Tensor
    fc1_w: Tensor
    fc1_b: Tensor
    fc2_w: Tensor
    fc2_b: Tensor
    ls2: Tensor


def block_weights(block: Block) -> BlockWeights:
    """Detached views (shared storage): plain tensors let one compiled graph serve every block,
    where nn.Parameter inputs would be guarded by identity and recompiled per block."""
    attn = block.attn
    qk = isinstance(attn.q_norm, nn.LayerNorm)
    weights = BlockWeights(
        block.norm1.weight, block.norm1.bias, attn.qkv.weight, attn.qkv.bias,
        attn.q_norm.weight if qk else None, attn.q_norm.bias if qk else None,
        attn.k_norm.weight if qk else None, attn.k_norm.bias if qk else None,
        attn.proj.weight, attn.proj.bias, block.ls1.gamma, block.norm2.weight, block.norm2.bias,
        block.mlp.fc1.weight, block.mlp.fc1.bias, block.mlp.fc2.weight, block.mlp.fc2.bias,
        block.ls2.gamma)
    return BlockWeights(*(None if t is None else t.detach() for t in weights))


def rotate_pairs(t: Tensor, cos: Tensor, sin_signed: Tensor) -> Tensor:
    """2D RoPE on t [..., D]: each half (y, x) is rotate_half-ed within itself.

    ``rotate_half(t) * sin`` equals ``swap(t) * sin_signed`` where swap exchanges the two
    quarters of each half and sin_signed negates the first quarter: one copy and one fused
    multiply-add instead of chunk/cat/neg per axis.
    """
    d = t.shape[-1]
    swapped = t.unflatten(-1, (2, 2, d // 4)).flip(-2).flatten(-3)
    return torch.addcmul(t * cos, swapped, sin_signed)


def rope_tables(head_dim: int, h: int, w: int, frames: int, base: float,
                device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(cos, sin_signed) [frames*(5+h*w), 1, head_dim] for ``rotate_pairs``.

    Angles are exact fp32 products position * 1/base**e (the reference's fp32 table; the
    official bf16-autocast run rounds them to bf16, a side effect we do not copy).
    """
    yx = patch_positions(h, w, PATCH_START_IDX, device).yx[0]  # [n, 2]
    axis = head_dim // 2
    inv_freq = 1.0 / (base ** (torch.arange(0, axis, 2, device=device).float() / axis))
    sign = torch.ones(axis, device=device)
    sign[: axis // 2] = -1.0
    cos_parts, sin_parts = [], []
    for column in (0, 1):  # y half first, then x
        angles = yx[:, column].float()[:, None] * inv_freq[None]
        angles = torch.cat((angles, angles), dim=-1)
        cos_parts.append(angles.cos())
        sin_parts.append(angles.sin() * sign)
    cos = torch.cat(cos_parts, dim=-1).repeat(frames, 1)[:, None]
    sin = torch.cat(sin_parts, dim=-1).repeat(frames, 1)[:, None]
    return cos.to(dtype), sin.to(dtype)


def block_forward(x: Tensor, w: BlockWeights, heads: int, eps: float, qk_eps: float,
                  rope: Optional[tuple[Tensor, Tensor]], dtype: torch.dtype) -> Tensor:
    """One pre-norm block on an fp32 residual stream x [B,N,C] with compute-dtype matmuls."""
    b, n, c = x.shape
    d = c // heads
    y = F.layer_norm(x, (c,), w.norm1_w, w.norm1_b, eps).to(dtype)
    q, k, v = F.linear(y, w.qkv_w, w.qkv_b).view(b, n, 3, heads, d).unbind(2)
    if w.qn_w is not None:
        q = F.layer_norm(q, (d,), w.qn_w, w.qn_b, qk_eps)
        k = F.layer_norm(k, (d,), w.kn_w, w.kn_b, qk_eps)
    if rope is not None:
        q = rotate_pairs(q, *rope)
        k = rotate_pairs(k, *rope)
    # Strided [B,heads,N,D] views (last dim contiguous) go to SDPA as they are (torch 2.11 on
    # the H200 picks cuDNN's flash kernel, per the profile in docs/PERFORMANCE.md); making them
    # contiguous cost ~8 ms at S=8 in eager mode and bought nothing.
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    out = F.linear(out.transpose(1, 2).reshape(b, n, c), w.proj_w, w.proj_b)
    x = torch.addcmul(x, out, w.ls1)
    y = F.layer_norm(x, (c,), w.norm2_w, w.norm2_b, eps).to(dtype)
    y = F.linear(F.gelu(F.linear(y, w.fc1_w, w.fc1_b)), w.fc2_w, w.fc2_b)
    return torch.addcmul(x, y, w.ls2)


def _compile_fixed_shapes(fn):
    """``fn`` under torch.compile with fixed shapes. Every S gives new shapes (DINO, frame and
    global blocks; each DPT head), so the recompile limit is raised to cover typical runs."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), 64))
    return torch.compile(fn, dynamic=False)


class _CompiledWithFallback:
    """``fn`` under torch.compile when enabled; a compile failure warns once and runs ``fn``
    eagerly from then on (correct results first, speed second)."""

    def __init__(self, fn, what: str, enabled: bool) -> None:
        self.fn = fn
        self.what = what
        self.compiled = _compile_fixed_shapes(fn) if enabled else None

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except torch.cuda.OutOfMemoryError:
                raise  # the input is too big, not the compiler broken: the caller handles it
            except Exception as err:  # inductor/triton errors have many types
                warnings.warn(f"torch.compile of the {self.what} failed ({type(err).__name__}: "
                              f"{err}); running it eagerly from now on", RuntimeWarning)
                self.compiled = None
        return self.fn(*args)


class _GraphedCall:
    """A CUDA graph of ``fn(*static_inputs)``: one replay instead of hundreds of small launches.

    Only for functions without host synchronisation and with fixed input shapes; outputs are
    cloned so later replays cannot overwrite what a caller holds.
    """

    def __init__(self, fn, *examples: Tensor) -> None:
        device = examples[0].device
        self.inputs = [x.clone() for x in examples]
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up outside the graph (workspace allocation, lazy init)
                fn(*self.inputs)
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = list(fn(*self.inputs))

    def __call__(self, *xs: Tensor) -> list[Tensor]:
        for static, x in zip(self.inputs, xs):
            static.copy_(x)
        self.graph.replay()
        return [t.clone() for t in self.outputs]


class PatchTokenCache:
    """LRU map from a caller's frame key to that frame's DINO patch tokens [h*w, C].

    DINO sees each frame alone, so its output depends only on the image: a frame that stays in
    a sliding window never needs re-encoding. The caller must make keys unique per image
    (e.g. stamp + frame id + a pixel fingerprint); the image size is added here.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"cache capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._store: OrderedDict[Hashable, Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def get(self, key: Hashable) -> Optional[Tensor]:
        tokens = self._store.get(key)
        if tokens is None:
            self.misses += 1
            return None
        self.hits += 1
        self._store.move_to_end(key)
        return tokens

    def put(self, key: Hashable, tokens: Tensor) -> None:
        if self.capacity == 0:
            return
        self._store[key] = tokens
        self._store.move_to_end(key)
        while len(self._store) > self.capacity:
            self._store.popitem(last=False)

    def clear(self) -> None:
        self._store.clear()


@dataclass
class _Window:
    """Aggregated tokens of the last keyed forward, for track requests on the same frames."""

    keys: tuple[Hashable, ...]
    tokens: list[Optional[Tensor]]
    image_shape: tuple[int, ...]


def dpt_forward(head: DPTHead, layers: Sequence[Tensor], pos: Sequence[Optional[Tensor]],
                patch_hw: tuple[int, int], out_hw: tuple[int, int], dtype: torch.dtype):
    """A DPT head on the patch tokens of its layers ([B,S,P,2C] fp32 each), convs in ``dtype``.

    Pure function of its inputs (position tables ``pos`` are passed in), so ``torch.compile``
    can fuse the element-wise work between the cuDNN convolutions (ReLUs, residual adds, the
    bilinear resampling, which is slow as a stand-alone NHWC kernel: ~3.8 ms of the depth head
    at S=8 on the H200). Returns (value [B,S,H,W,k], conf [B,S,H,W]) in fp32, or the features
    [B,S,F,h',w'] of a feature-only head.
    """
    ph, pw = patch_hw
    maps = []
    b, s = layers[0].shape[:2]
    for k, x in enumerate(layers):
        x = head.norm(x).to(dtype).reshape(b * s, ph, pw, -1).permute(0, 3, 1, 2)
        x = head.projects[k](x)  # an NHWC view: channels-last 1x1 conv without a copy
        if pos[k] is not None:
            x = x + pos[k]
        maps.append(head.resize_layers[k](x))
    out = head.scratch.fuse(maps)
    out = F.interpolate(out, size=out_hw, mode="bilinear", align_corners=True)
    if pos[-1] is not None:
        out = out + pos[-1]
    if head.feature_only:
        return out.view(b, s, *out.shape[1:])
    out = head.scratch.output_conv2(out).float().permute(0, 2, 3, 1)
    value = VALUE_ACTIVATIONS[head.activation](out[..., :-1])
    conf = CONF_ACTIVATIONS[head.conf_activation](out[..., -1])
    return value.view(b, s, *value.shape[1:]), conf.view(b, s, *conf.shape[1:])


class FastVGGT(nn.Module):
    """Runs a ``VGGT``'s parameters through the fast schedule (module docstring).

    Takes ownership of ``model``: its matrix weights are converted to the compute dtype in
    place (no second copy in memory). Use the reference ``VGGT`` itself for official numerics.
    """

    def __init__(self, model: VGGT, options: Optional[FastOptions] = None) -> None:
        super().__init__()
        if not isinstance(model, VGGT):
            raise TypeError(f"FastVGGT wraps a vggt_ros.model.VGGT, got {type(model).__name__}")
        self.model = model.eval()
        self.options = options or FastOptions()
        self.cache = PatchTokenCache(self.options.cache_frames)
        self._tables: dict[tuple, Tensor | tuple[Tensor, Tensor]] = {}
        self._last: Optional[_Window] = None
        self.dtype = self.options.dtype or default_compute_dtype(self.device)
        self._convert_weights()
        agg = model.aggregator
        self._dino_w = [block_weights(b) for b in agg.patch_embed.blocks]
        self._frame_w = [block_weights(b) for b in agg.frame_blocks]
        self._global_w = [block_weights(b) for b in agg.global_blocks]
        self._block = _CompiledWithFallback(block_forward, "VGGT block",
                                            self._on_cuda_unless_set(self.options.compile_blocks))
        self._dpt_body = _CompiledWithFallback(dpt_forward, "DPT head",
                                               self._on_cuda_unless_set(self.options.compile_heads))
        self._graphs: dict[tuple, Optional[_GraphedCall]] = {}
        self.eval()

    def _on_cuda_unless_set(self, switch: Optional[bool]) -> bool:
        """A ``FastOptions`` switch whose None means: on for CUDA, off elsewhere."""
        return self.device.type == "cuda" if switch is None else switch

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def config(self):
        return self.model.config

    def _convert_weights(self) -> None:
        """Matrix weights -> compute dtype; norms feeding the fp32 residual, LayerScale, tokens
        and position tables stay fp32."""
        dtype, model = self.dtype, self.model
        convs = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
        for module in model.aggregator.modules():
            if isinstance(module, convs):
                module.to(dtype)
        for block in model.aggregator.frame_blocks + model.aggregator.global_blocks:
            block.attn.q_norm.to(dtype)
            block.attn.k_norm.to(dtype)
        dpts = [h for h in (model.depth_head, model.point_head) if h is not None]
        if model.track_head is not None:
            dpts.append(model.track_head.feature_extractor)
        channels_last = self._on_cuda_unless_set(self.options.channels_last)
        for head in dpts:
            for module in head.modules():
                if isinstance(module, convs):
                    module.to(dtype)
                    if channels_last and module.weight.dim() == 4:
                        module.to(memory_format=torch.channels_last)
        if model.camera_head is not None and not self.options.camera_fp32:
            model.camera_head.to(dtype)

    def attention_context(self) -> contextlib.AbstractContextManager:
        """The SDPA backend order of ``options.sdpa_priority`` (a no-op when unset)."""
        wanted = self.options.sdpa_priority
        if not wanted:
            return contextlib.nullcontext()
        order = [SDPA_BACKENDS[name] for name in wanted]
        if self.options.sdpa_exclusive:
            return sdpa_kernel(order)
        order += [b for b in SDPA_BACKENDS.values() if b not in order]
        return sdpa_kernel(order, set_priority=True)

    # ---------------------------------------------------------------- cached constant tables
    def _cached(self, key: tuple, build) -> Tensor | tuple[Tensor, Tensor]:
        key = key + (torch.is_inference_mode_enabled(),)
        table = self._tables.get(key)
        if table is None:
            table = build()
            self._tables[key] = table
        return table

    def _rope(self, h: int, w: int, frames: int) -> tuple[Tensor, Tensor]:
        cfg = self.config
        head_dim = cfg.embed_dim // cfg.num_heads
        return self._cached(("rope", h, w, frames), lambda: rope_tables(
            head_dim, h, w, frames, cfg.rope_freq, self.device, self.dtype))

    def _dino_pos(self, h: int, w: int) -> Tensor:
        dino = self.model.aggregator.patch_embed
        return self._cached(("dino_pos", h, w),
                            lambda: dino._position_embedding(h, w, torch.float32).detach())

    def _dpt_pos(self, channels: int, h: int, w: int, aspect: float) -> Tensor:
        return self._cached(("dpt_pos", channels, h, w, aspect), lambda: (
            uv_position_embedding(channels, h, w, aspect, self.device) * POS_EMBED_WEIGHT
        ).to(self.dtype)[None])

    # ---------------------------------------------------------------- backbone
    def encode_frames(self, images: Tensor) -> Tensor:
        """Frames [N,3,H,W] in [0,1] -> DINO patch tokens [N, h*w, C] (fp32)."""
        agg = self.model.aggregator
        dino = agg.patch_embed
        n, _, height, width = images.shape
        p = dino.patch_size
        if height % p or width % p:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {p}")
        h, w = height // p, width // p
        x = (images.float() - agg._resnet_mean[0]) / agg._resnet_std[0]
        x = dino.patch_embed(x.to(self.dtype)).float()
        x = torch.cat((dino.cls_token.expand(n, -1, -1), x), dim=1) + self._dino_pos(h, w)
        x = torch.cat((x[:, :1], dino.register_tokens.expand(n, -1, -1), x[:, 1:]), dim=1)
        heads = self.config.dino_heads
        eps = dino.norm.eps
        for weights in self._dino_w:
            x = self._block(x, weights, heads, eps, 0.0, None, self.dtype)
        x = dino.norm(x)
        return x[:, 1 + dino.num_register_tokens:]

    def patch_tokens(self, images: Tensor, frame_keys: Optional[Sequence[Hashable]]) -> Tensor:
        """images [B,S,3,H,W] -> patch tokens [B,S,h*w,C]; keyed frames come from the cache."""
        b, s, _, height, width = images.shape
        if frame_keys is None or self.cache.capacity == 0:
            return self.encode_frames(images.reshape(b * s, 3, height, width)).unflatten(0, (b, s))
        if b != 1 or len(frame_keys) != s:
            raise ValueError(f"frame_keys needs one key per frame of a single scene (B=1, S={s}); "
                             f"got B={b} and {len(frame_keys)} keys")
        keys = [(key, height, width) for key in frame_keys]
        found = [self.cache.get(key) for key in keys]
        missing = [i for i, tokens in enumerate(found) if tokens is None]
        if missing:
            fresh = self.encode_frames(images[0, missing])
            for j, i in enumerate(missing):
                found[i] = fresh[j].clone()
                self.cache.put(keys[i], found[i])
        return torch.stack(found)[None]

    def aggregate(self, patch_tokens: Tensor, h: int, w: int) -> list[Optional[Tensor]]:
        """Patch tokens [B,S,h*w,C] -> per-layer [B,S,P,2C] fp32 tokens (None where unused)."""
        agg = self.model.aggregator
        b, s, _, c = patch_tokens.shape
        tokens = torch.cat((_frame_tokens(agg.camera_token, b, s),
                            _frame_tokens(agg.register_token, b, s),
                            patch_tokens.reshape(b * s, -1, c)), dim=1)
        p = tokens.shape[1]
        frame_rope, global_rope = self._rope(h, w, 1), self._rope(h, w, s)
        heads = self.config.num_heads
        eps = agg.frame_blocks[0].norm1.eps
        qk_eps = agg.frame_blocks[0].attn.q_norm.eps
        outputs: list[Optional[Tensor]] = []
        for index, (fw, gw) in enumerate(zip(self._frame_w, self._global_w)):
            tokens = self._block(tokens.view(b * s, p, c), fw, heads, eps, qk_eps, frame_rope,
                                 self.dtype)
            frame_out = tokens.view(b, s, p, c)
            tokens = self._block(tokens.view(b, s * p, c), gw, heads, eps, qk_eps, global_rope,
                                 self.dtype)
            outputs.append(torch.cat((frame_out, tokens.view(b, s, p, c)), dim=-1)
                           if index in agg.cached_layers else None)
        return outputs

    # ---------------------------------------------------------------- heads
    def dpt(self, head: DPTHead, tokens: Sequence[Optional[Tensor]], image_hw: tuple[int, int]
            ) -> Tensor | tuple[Tensor, Tensor]:
        """A DPT head on fp32 tokens in the compute dtype, chunked over frames.

        Returns (value [B,S,H,W,k], conf [B,S,H,W]) in fp32, or features [B,S,F,h',w'] (compute
        dtype) for a feature-only head.
        """
        b, s = next(t for t in tokens if t is not None).shape[:2]
        step = self.options.dpt_chunk
        chunks = [self._dpt_chunk(head, tokens, image_hw, start, min(start + step, s))
                  for start in range(0, s, step)]
        if head.feature_only:
            return torch.cat(chunks, dim=1)
        return torch.cat([c[0] for c in chunks], dim=1), torch.cat([c[1] for c in chunks], dim=1)

    def _dpt_chunk(self, head: DPTHead, tokens: Sequence[Optional[Tensor]],
                   image_hw: tuple[int, int], start: int, end: int):
        height, width = image_hw
        ph, pw = height // head.patch_size, width // head.patch_size
        aspect = width / height
        out_hw = (int(ph * head.patch_size / head.down_ratio),
                  int(pw * head.patch_size / head.down_ratio))
        layers = [tokens[layer][:, start:end, PATCH_START_IDX:] for layer in head.layers]
        pos: list[Optional[Tensor]] = [None] * (len(layers) + 1)
        if head.pos_embed:  # constant tables, looked up outside the compiled body
            pos = [self._dpt_pos(proj.out_channels, ph, pw, aspect) for proj in head.projects]
            pos.append(self._dpt_pos(head.scratch.output_conv1.out_channels, *out_hw, aspect))
        return self._dpt_body(head, layers, pos, (ph, pw), out_hw, self.dtype)

    def camera(self, tokens: Sequence[Optional[Tensor]]) -> list[Tensor]:
        """Camera head on the camera tokens of the last layer (the only ones it reads)."""
        head = self.model.camera_head
        last = tokens[-1][:, :, :1]
        if not self.options.camera_fp32:
            last = last.to(self.dtype)

        def run(x: Tensor) -> list[Tensor]:
            return [pose.float() for pose in head([x])]

        return self._maybe_graphed("camera", run, self.options.cuda_graph_camera, last)

    def _maybe_graphed(self, name: str, fn, enabled: bool, *inputs: Tensor) -> list[Tensor]:
        """fn(*inputs) through a CUDA graph per input shape when enabled on CUDA; a refused
        capture leaves that shape eager (correct first, fast second)."""
        if not (enabled and inputs[0].is_cuda):
            return list(fn(*inputs))
        key = (name, *((tuple(x.shape), x.dtype) for x in inputs),
               torch.is_inference_mode_enabled())
        if key not in self._graphs:
            try:
                self._graphs[key] = _GraphedCall(fn, *inputs)
            except torch.cuda.OutOfMemoryError:
                raise  # not a capture problem: the caller handles it, a later call retries
            except RuntimeError as err:
                warnings.warn(f"CUDA graph capture of the {name} step failed ({err}); running it "
                              f"eagerly", RuntimeWarning)
                self._graphs[key] = None
        graphed = self._graphs[key]
        return graphed(*inputs) if graphed is not None else list(fn(*inputs))

    def track(self, tokens: Sequence[Optional[Tensor]], image_hw: tuple[int, int],
              query_points: Tensor, order: Optional[Sequence[int]] = None
              ) -> tuple[Tensor, Tensor, Tensor]:
        """Track head: DPT features in the compute dtype, tracker in fp32. ``order`` reorders
        the frames' feature maps (query frame first) before tracking."""
        head = self.model.track_head
        fmaps = self.dpt(head.feature_extractor, tokens, image_hw).float()
        if order is not None:
            fmaps = fmaps[:, list(order)]

        def run(queries: Tensor, maps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            return head.tracker(queries, maps, head.iters)

        tracks, vis, conf = self._maybe_graphed("tracker", run, self.options.cuda_graph_tracker,
                                                query_points.float(), fmaps.contiguous())
        return tracks, vis, conf

    # ---------------------------------------------------------------- whole model
    def _heads(self, heads: Optional[Collection[str]], with_queries: bool) -> set[str]:
        if heads is None:
            heads = [h for h in FAST_DEFAULT_HEADS if h in self.model.enabled_heads]
            if with_queries:
                heads.append("track")
        return self.model._select_heads(heads, with_queries)

    def _reusable_order(self, frame_keys: Optional[Sequence[Hashable]],
                        image_shape: tuple[int, ...]) -> Optional[list[int]]:
        last = self._last
        if (not self.options.reuse_window_tokens or frame_keys is None or last is None
                or last.image_shape != image_shape or len(frame_keys) != len(last.keys)
                or len(set(frame_keys)) != len(frame_keys) or set(frame_keys) != set(last.keys)):
            return None
        order = [last.keys.index(key) for key in frame_keys]
        if order != sorted(order) and not self.options.reuse_permuted_tokens:
            return None
        return order

    def forward(self, images: Tensor, query_points: Optional[Tensor] = None,
                heads: Optional[Collection[str]] = None,
                frame_keys: Optional[Sequence[Hashable]] = None
                ) -> dict[str, Tensor | list[Tensor]]:
        """Same inputs and output keys as ``VGGT.forward`` (default heads: camera + depth).

        frame_keys: optional unique key per frame (B=1) enabling the DINO cache; a keyed
        track-only call over the last keyed window's frames re-uses its tokens.
        """
        images, query_points = batched_inputs(images, query_points)
        selected = self._heads(heads, query_points is not None)
        image_hw = (images.shape[-2], images.shape[-1])
        p = self.model.aggregator.patch_size
        if image_hw[0] % p or image_hw[1] % p:
            raise ValueError(f"image size {image_hw[0]}x{image_hw[1]} is not a multiple of the "
                             f"patch size {p}")

        order = (self._reusable_order(frame_keys, tuple(images.shape))
                 if selected == {"track"} else None)
        if order is not None:
            tokens = self._last.tokens
        else:
            with self.attention_context():
                patch = self.patch_tokens(images, frame_keys)
                tokens = self.aggregate(patch, image_hw[0] // p, image_hw[1] // p)
            if frame_keys is not None and self.model.track_head is not None:
                self._last = _Window(tuple(frame_keys), tokens, tuple(images.shape))

        out: dict[str, Tensor | list[Tensor]] = {}
        if "camera" in selected:
            poses = self.camera(tokens)
            out["pose_enc"], out["pose_enc_list"] = poses[-1], poses
        if "depth" in selected:
            out["depth"], out["depth_conf"] = self.dpt(self.model.depth_head, tokens, image_hw)
        if "point" in selected:
            out["world_points"], out["world_points_conf"] = self.dpt(self.model.point_head, tokens,
                                                                     image_hw)
        if "track" in selected:
            out["track"], out["vis"], out["conf"] = self.track(tokens, image_hw, query_points,
                                                                order)
        out["images"] = images
        return out
