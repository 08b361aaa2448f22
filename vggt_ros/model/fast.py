"""Fast inference path for VGGT: same network, same weights, fewer wasted passes.

The reference modules follow the official numerics op by op (fp32 weights cast on every call
under autocast, fp32 residual stream, RoPE tables gathered per attention call, fp32 DPT heads
without TF32, every head run whenever built); that is needed for bit parity with the fixtures.
This module does not copy their graph: it runs the *same modules* through their seams (block
runner, compute dtype, prebuilt RoPE and position tables, pluggable DPT body, head selection)
and supplies only the kernels, the dtype policy, the caches and the graphs:

* weights of the big matrix products (DINO, aggregator, DPT convs) are stored once in the compute
  dtype (bf16 on Ampere+ CUDA), so no per-call casts and half the weight memory;
* the residual stream, the LayerNorms feeding it, LayerScale and the aggregated tokens stay fp32,
  so rounding does not accumulate over the 72 residual blocks;
* RoPE cos/sin are built once per (grid, frame count) with exact fp32 angles and applied with one
  fused multiply-add; no host synchronisation anywhere in the forward;
* attention goes to ``F.scaled_dot_product_attention`` with bf16 q/k/v (a flash kernel; torch
  picks cuDNN's on Hopper);
* on CUDA the block function and the DPT heads are compiled (fixed shapes) to fuse the
  element-wise passes, and the launch-bound camera head and tracker replay as CUDA graphs; a
  shape never compiled before is compiled in the caller, or, once a live node has warmed up,
  run eagerly while it compiles in the background (``compiled_call``, ``unseen_shapes``);
* only the requested heads run (default: camera + depth, no point head); DPT convs run in the
  compute dtype (channels-last on CUDA); the camera head stays fp32 (tiny compute), the
  tracker correlates only around each track (``tracker_local_correlation``) in the precision
  ``tracker_precision`` picks;
* DINO patch tokens are cached per frame key, so a sliding window re-encodes only new frames;
* a track request over the last window's frames re-uses that window's aggregated tokens instead
  of re-running the backbone (exact when the query frame is the window's first; see
  ``FastOptions.reuse_permuted_tokens`` for the opt-in approximation otherwise);
* opt-in, off by default: block-sparse global attention for long windows
  (``FastOptions.sparse_global``, ``sparse_attention.py``), an approximation given to the global
  blocks through the block's attention-function seam.

On CPU the compute dtype is fp32 and the path does the reference's arithmetic (no extra work),
plus the cache and the head selection.
"""
from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .aggregator import PATCH_START_IDX
from .compiled_call import CompiledPerShape
from .dpt_head import DPTHead
from .fp8 import convert_block_linears
from .layers import AttendFn, Block, Positions, RopeTable
from .sparse_attention import BlockSparseAttention, SparseGlobalAttention
from .vggt import VGGT, batched_inputs

FAST_DEFAULT_HEADS = ("camera", "depth")
SDPA_BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                 "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}


TRACKER_PRECISIONS = ("fp32", "tf32", "bf16")


@contextlib.contextmanager
def tracker_precision_context(precision: str, device: torch.device):
    """The arithmetic of the tracker's matrix products (``FastOptions.tracker_precision``).

    TF32 is a process-wide switch in torch: it is set for the call and restored after it (the
    predictor runs one model call at a time). Inside a CUDA graph capture the choice is baked
    into the captured kernels, so a replay needs no switch.
    """
    if precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False):
            yield
    elif precision == "tf32" and device.type == "cuda":
        before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(before)
    else:
        yield


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
    # The torch.compile backend: inductor (the fast one); "eager" / "aot_eager" trace the same
    # graphs without generating kernels (debugging, and tests of the compile logic on CPU).
    compile_backend: Union[str, Callable] = "inductor"
    cuda_graph_camera: bool = True  # replay the launch-bound camera head as a CUDA graph
    cuda_graph_tracker: bool = True  # same for the iterative tracker (per S, N, feature size)
    # The tracker's correlation computed only on each track's sampling window instead of the
    # whole feature map (model/tracker.py CorrelationPyramid: same values, other float order).
    # None: on the CPU only, where it halves the demo model's tracker time; on an H200 it
    # saved nothing (docs/PERFORMANCE.md).
    tracker_local_correlation: Optional[bool] = None
    # The tracker's matrix products: "fp32" (the reference's arithmetic), "tf32" (CUDA's
    # TensorFloat-32 GEMMs, fp32 elsewhere) or "bf16" (autocast). Their speed and their
    # distance from fp32 tracks: `python -m vggt_ros.bench.tracker`, docs/PERFORMANCE.md.
    tracker_precision: str = "fp32"
    # Attention kernels to try first, e.g. ("cudnn",); the rest stay as fallbacks. None keeps
    # torch's own order.
    sdpa_priority: Optional[tuple[str, ...]] = None
    # Allow only the sdpa_priority backends (no fallback). On torch 2.11 / H200 cuDNN is
    # already torch's own first choice here, so neither switch changes the speed there.
    sdpa_exclusive: bool = False
    # The transformer blocks' Linears (DINO and aggregator) as FP8 GEMMs with row-wise scales
    # (vggt_ros/model/fp8.py). Opt-in: its accuracy cost is measured by `vggt_bench --variants
    # fp8`, and it needs an FP8-capable GPU (Hopper) to be faster.
    fp8_blocks: bool = False
    # Approximate global attention for long windows (block-sparse, sparse_attention.py): None
    # (the default) keeps exact attention; windows below its min_frames stay exact too.
    sparse_global: Optional[SparseGlobalAttention] = None

    def __post_init__(self) -> None:
        if self.sparse_global is not None and not isinstance(self.sparse_global,
                                                             SparseGlobalAttention):
            raise ValueError(f"sparse_global must be a SparseGlobalAttention or None, got "
                             f"{type(self.sparse_global).__name__}")
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
        if self.tracker_precision not in TRACKER_PRECISIONS:
            raise ValueError(f"tracker_precision must be one of {TRACKER_PRECISIONS}, got "
                             f"{self.tracker_precision!r}")


def _block_in_dtype(block: Block, x: Tensor, pos: Optional[Positions],
                    dtype: torch.dtype) -> Tensor:
    """The block itself, its matrix products in ``dtype`` on an fp32 residual stream. One
    ``torch.compile`` graph serves every block of the same structure and token shape (the
    block's parameters become graph inputs, they are not baked in)."""
    return block(x, pos, compute_dtype=dtype)


def _block_with_attention(block: Block, x: Tensor, pos: Optional[Positions], dtype: torch.dtype,
                          attend: AttendFn) -> Tensor:
    """``_block_in_dtype`` with another attention function (its own compiled function, so a
    compile failure of the approximation leaves the exact blocks compiled)."""
    return block(x, pos, compute_dtype=dtype, attend=attend)


def _all_finite(out: dict[str, Tensor | list[Tensor]]) -> bool:
    """Whether every output tensor is finite (one host synchronisation)."""
    tensors = [t for key, t in out.items() if isinstance(t, Tensor) and key != "images"]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()) if tensors else True


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


class FastVGGT(nn.Module):
    """Runs a ``VGGT``'s parameters through the fast schedule (module docstring).

    Takes ownership of ``model``: its matrix weights are converted to the compute dtype in
    place (no second copy in memory). Use the reference ``VGGT`` itself for official numerics.
    """

    def __init__(self, model: VGGT, options: Optional[FastOptions] = None,
                 log: Optional[Callable[[str], None]] = None) -> None:
        super().__init__()
        if not isinstance(model, VGGT):
            raise TypeError(f"FastVGGT wraps a vggt_ros.model.VGGT, got {type(model).__name__}")
        self.model = model.eval()
        self.options = options or FastOptions()
        self.cache = PatchTokenCache(self.options.cache_frames)
        self._tables: dict[tuple, Any] = {}
        self._last: Optional[_Window] = None
        self.dtype = self.options.dtype or default_compute_dtype(self.device)
        self._convert_weights()
        backend = self.options.compile_backend
        self._block = CompiledPerShape(_block_in_dtype, "VGGT block",
                                       self._on_cuda_unless_set(self.options.compile_blocks),
                                       backend, log)
        self._dpt_body = CompiledPerShape(DPTHead.body, "DPT head",
                                          self._on_cuda_unless_set(self.options.compile_heads),
                                          backend, log)
        self._sparse_block = CompiledPerShape(_block_with_attention,
                                              "VGGT global block (block-sparse attention)",
                                              self._block.enabled, backend, log)
        self._graphs: dict[tuple, Optional[_GraphedCall]] = {}
        self.nonfinite_fallbacks = 0  # windows re-run eagerly after non-finite compiled outputs
        self.eval()

    # ---------------------------------------------------------------- compiled graphs
    @property
    def compiles(self) -> bool:
        """Whether any part runs under torch.compile (then every new shape costs a compile)."""
        return self._block.enabled or self._dpt_body.enabled or self._sparse_block.enabled

    @property
    def unseen_shapes(self) -> str:
        """What a shape that was never compiled does: ``compile`` (now, in the caller),
        ``background`` (eager now, compiled on a thread) or ``eager`` (see ``compiled_call``)."""
        return self._block.policy

    @unseen_shapes.setter
    def unseen_shapes(self, policy: str) -> None:
        for part in self._compiled_parts:
            part.policy = policy

    @property
    def _compiled_parts(self) -> tuple[CompiledPerShape, ...]:
        return (self._block, self._dpt_body, self._sparse_block)

    def compile_stats(self) -> dict[str, float]:
        """Compiled shapes, compiles in progress, eager calls and compile seconds, summed over
        the compiled parts."""
        parts = [part.stats() for part in self._compiled_parts]
        return {**{key: sum(part[key] for part in parts) for key in parts[0]},
                "nonfinite_fallbacks": self.nonfinite_fallbacks}

    def wait_for_background_compiles(self, timeout: Optional[float] = None) -> bool:
        return all(part.wait_for_background(timeout) for part in self._compiled_parts)

    def forget_frames(self) -> None:
        """Drop the DINO cache and the last window's tokens (e.g. after a warm-up on dummy
        frames: they would only hold memory)."""
        self.cache.clear()
        self._last = None

    def close(self) -> None:
        """Stop background compiles and drop cached tensors, before the model is freed."""
        for part in self._compiled_parts:
            part.close()
        self.forget_frames()
        self._graphs.clear()

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
        if self.options.fp8_blocks:
            convert_block_linears(model.aggregator, Block, dtype)

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
    def _cached(self, key: tuple, build: Callable[[], Any]) -> Any:
        key = key + (torch.is_inference_mode_enabled(),)
        table = self._tables.get(key)
        if table is None:
            table = build()
            self._tables[key] = table
        return table

    def _rope(self, h: int, w: int, frames: int) -> RopeTable:
        """The aggregator's rotation of ``frames`` frames on an h x w grid, in the compute
        dtype (exact fp32 angles; the official bf16-autocast run rounds them to bf16, a side
        effect we do not copy)."""
        agg = self.model.aggregator

        def build() -> RopeTable:
            positions = agg.grid_positions(h, w, self.device).repeat_tokens(frames)
            head_dim = self.config.embed_dim // self.config.num_heads
            return agg.rope.table(positions, head_dim, self.device).to(self.dtype)

        return self._cached(("rope", h, w, frames), build)

    def _run_block(self, block: Block, x: Tensor, pos: Optional[Positions]) -> Tensor:
        """The ``BlockRunner`` of the fast path: compiled on CUDA, matmuls in the compute dtype."""
        return self._block(block, x, pos, self.dtype)

    # ---------------------------------------------------------------- backbone
    def encode_frames(self, images: Tensor) -> Tensor:
        """Frames [N,3,H,W] in [0,1] -> DINO patch tokens [N, h*w, C] (fp32)."""
        agg = self.model.aggregator
        dino = agg.patch_embed
        h, w = dino.patch_grid(*images.shape[-2:])
        table = self._cached(("dino_pos", h, w),
                             lambda: dino.position_embedding(h, w, torch.float32).detach())
        x = agg.normalize(images.float()).to(self.dtype)  # the patch conv runs in it
        return dino(x, self._run_block, table)

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

    def sparse_attention(self, frames: int, h: int, w: int) -> Optional[BlockSparseAttention]:
        """The block-sparse attention of the global blocks of a window of ``frames`` frames on
        an h x w grid, or None where attention stays exact (option off, or a short window)."""
        sparse = self.options.sparse_global
        if sparse is None or frames < sparse.min_frames:
            return None
        attend = self._cached(("sparse", frames, h, w),
                              lambda: BlockSparseAttention(sparse, frames, PATCH_START_IDX))
        attend.prepare(frames * (PATCH_START_IDX + h * w), self.device)  # outside the compile
        return attend

    def aggregate(self, patch_tokens: Tensor, h: int, w: int) -> list[Optional[Tensor]]:
        """Patch tokens [B,S,h*w,C] -> per-layer [B,S,P,2C] fp32 tokens (None where unused)."""
        s = patch_tokens.shape[1]
        rope = (self._rope(h, w, 1), self._rope(h, w, s))
        attend = self.sparse_attention(s, h, w)
        run_global = None
        if attend is not None:
            def run_global(block: Block, x: Tensor, pos: Optional[Positions]) -> Tensor:
                return self._sparse_block(block, x, pos, self.dtype, attend)
        return self.model.aggregator.alternate(patch_tokens, h, w, self._run_block, rope,
                                               run_global)

    # ---------------------------------------------------------------- heads
    def dpt(self, head: DPTHead, tokens: Sequence[Optional[Tensor]], images: Tensor
            ) -> Tensor | tuple[Tensor, Tensor]:
        """A DPT head on fp32 tokens with its convolutions in the compute dtype (compiled on
        CUDA), chunked over ``options.dpt_chunk`` frames; ``images`` [B,S,3,H,W] give the size.

        Returns (value [B,S,H,W,k], conf [B,S,H,W]) in fp32, or features [B,S,F,h',w'] (compute
        dtype) for a feature-only head.
        """
        tables = None
        if head.pos_embed:  # constant tables, built once per size outside the compiled body
            image_hw = tuple(images.shape[-2:])
            shape = (head.down_ratio, *(p.out_channels for p in head.projects),
                     head.scratch.output_conv1.out_channels)
            tables = self._cached(("dpt_pos", shape, image_hw), lambda: [
                t.to(self.dtype) for t in head.position_tables(image_hw, self.device)])
        return head(tokens, images, PATCH_START_IDX, self.options.dpt_chunk,
                    body=self._dpt_body, dtype=self.dtype, position_tables=tables)

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

    def track(self, tokens: Sequence[Optional[Tensor]], images: Tensor,
              query_points: Tensor, order: Optional[Sequence[int]] = None
              ) -> tuple[Tensor, Tensor, Tensor]:
        """Track head: DPT features in the compute dtype, the tracker in
        ``options.tracker_precision``. ``order`` reorders the frames' feature maps (query
        frame first) before tracking."""
        head = self.model.track_head
        fmaps = self.dpt(head.feature_extractor, tokens, images).float()
        if order is not None:
            fmaps = fmaps[:, list(order)]
        precision, local = self.options.tracker_precision, self.options.tracker_local_correlation
        if local is None:
            local = not fmaps.is_cuda

        def run(queries: Tensor, maps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            with tracker_precision_context(precision, maps.device):
                outputs = head.tracker(queries, maps, head.iters, local_correlation=local)
            return tuple(x.float() for x in outputs)

        tracks, vis, conf = self._maybe_graphed(f"tracker.{precision}.{int(local)}", run,
                                                self.options.cuda_graph_tracker,
                                                query_points.float(), fmaps.contiguous())
        return tracks, vis, conf

    # ---------------------------------------------------------------- whole model
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
        selected = self.model.select_heads(heads, query_points is not None, FAST_DEFAULT_HEADS)
        out = self._forward(images, query_points, selected, frame_keys)
        if self.compiles and not _all_finite(out):
            self._stop_compiling()
            out = self._forward(images, query_points, selected, frame_keys)
        return out

    def _stop_compiling(self) -> None:
        """Compiled code gave non-finite outputs: run eagerly from now on (correct first).

        Seen on an H200 (torch 2.11) with the embedded demo model, until the RoPE swap that
        inductor miscompiled was rewritten (``RopeTable.rotate``, docs/PERFORMANCE.md); kept as
        the safety net against the next such compiler bug. Tokens made by the compiled code
        (the DINO cache, the last window's) are dropped with it.
        """
        self.nonfinite_fallbacks += 1
        for part in self._compiled_parts:
            part.disable("it returned non-finite outputs where eager code runs")
        self.cache.clear()
        self._last = None

    def _forward(self, images: Tensor, query_points: Optional[Tensor], selected: set[str],
                 frame_keys: Optional[Sequence[Hashable]]) -> dict[str, Tensor | list[Tensor]]:
        grid = self.model.aggregator.patch_embed.patch_grid(*images.shape[-2:])
        order = (self._reusable_order(frame_keys, tuple(images.shape))
                 if selected == {"track"} else None)
        if order is not None:
            tokens = self._last.tokens
        else:
            with self.attention_context():
                patch = self.patch_tokens(images, frame_keys)
                tokens = self.aggregate(patch, *grid)
            if frame_keys is not None and self.model.track_head is not None:
                self._last = _Window(tuple(frame_keys), tokens, tuple(images.shape))

        out: dict[str, Tensor | list[Tensor]] = {}
        if "camera" in selected:
            poses = self.camera(tokens)
            out["pose_enc"], out["pose_enc_list"] = poses[-1], poses
        if "depth" in selected:
            out["depth"], out["depth_conf"] = self.dpt(self.model.depth_head, tokens, images)
        if "point" in selected:
            out["world_points"], out["world_points_conf"] = self.dpt(self.model.point_head, tokens,
                                                                     images)
        if "track" in selected:
            out["track"], out["vis"], out["conf"] = self.track(tokens, images, query_points, order)
        out["images"] = images
        return out
