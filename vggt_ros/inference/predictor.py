"""Run VGGT on a list of camera images and return NumPy geometry in both pixel systems.

Everything downstream (live node, offline mapper, track service) goes through ``run_vggt``;
``VGGTPredictor`` only adapts it to the ``Predictor`` protocol of ``vggt_ros.pipeline.types``,
so preprocessing, precision handling and the mapping back to camera pixels exist once.

Precision is resolved by ``vggt_ros.inference.device``. ``VGGTPredictor`` with precision
"auto" on CUDA uses the fast path instead (``vggt_ros.model.fast``: bf16 weights, DINO
patch-token cache keyed by frame, point head off, track requests re-using the last window's
tokens); "fp32", "bf16" and "fp16" keep the reference path with the official numerics.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable, Hashable, Optional, Sequence, Union

import numpy as np
import torch

from vggt_ros.geometry.camera import to_homogeneous, unproject_depth
from vggt_ros.geometry.pose_encoding import pose_encoding_to_extri_intri
from vggt_ros.inference.device import AUTOCAST_DTYPES, resolve_device, resolve_precision
from vggt_ros.inference.device_preprocessing import preprocess_on_device
from vggt_ros.inference.preprocessing import MODES, preprocess_images_uint8, to_float_images
from vggt_ros.inference.warmup import WarmupPlan, WarmupReport, run_warmup
from vggt_ros.model.fast import FastOptions, FastVGGT
from vggt_ros.model.sparse_attention import SparseGlobalAttention
from vggt_ros.model.vggt import VGGT
from vggt_ros.pipeline.types import Frame, PreprocessMapping, TrackPrediction, WindowPrediction

__all__ = ["InferenceResult", "ModelInputs", "run_vggt", "VGGTPredictor"]


@dataclass(frozen=True)
class ModelInputs:
    """Frames as the network sees them: the float batch [S,3,h,w] on the model's device, the
    uint8 images (host array, or a device tensor with device preprocessing) and each frame's
    crop/pad mapping. Kept by ``VGGTPredictor`` so that the pose solver's track request over
    the window it just predicted does not preprocess the same frames again."""

    tensor: torch.Tensor
    seen: Union[np.ndarray, torch.Tensor]
    mappings: list[PreprocessMapping]


def preprocess_for_model(images: Sequence[np.ndarray], preprocess_mode: str, image_size: int,
                         device: torch.device, device_preprocessing: bool) -> ModelInputs:
    """``run_vggt``'s preprocessing: on the device (one upload per frame) or with Pillow."""
    if device_preprocessing:
        tensor, seen, mappings = preprocess_on_device(images, preprocess_mode, image_size, device)
    else:
        seen, mappings = preprocess_images_uint8(images, preprocess_mode, image_size)
        tensor = torch.from_numpy(to_float_images(seen)).to(device)
    return ModelInputs(tensor, seen, mappings)


@dataclass
class InferenceResult:
    """One forward pass, frame order as given. Geometry fields are None when not requested."""

    mappings: list[PreprocessMapping]
    images: Optional[np.ndarray] = None  # [S,h,w,3] uint8, what the network saw (geometry)
    cam_from_world: Optional[np.ndarray] = None  # [S,4,4] float64, world = frame-0 camera
    intrinsics: Optional[np.ndarray] = None  # [S,3,3] float64, model pixels
    intrinsics_original: Optional[np.ndarray] = None  # [S,3,3] float64, original pixels
    depth: Optional[np.ndarray] = None  # [S,h,w] float32
    depth_conf: Optional[np.ndarray] = None  # [S,h,w] float32
    tracks_uv: Optional[np.ndarray] = None  # [S,N,2] original pixels of each frame
    track_visibility: Optional[np.ndarray] = None  # [S,N]
    track_confidence: Optional[np.ndarray] = None  # [S,N]
    timings: dict[str, float] = field(default_factory=dict)
    inputs: Optional[ModelInputs] = None  # what the network was given (for re-use)

    @functools.cached_property
    def world_points(self) -> np.ndarray:
        """[S,h,w,3] float64 points unprojected from depth (computed on first use: it is large)."""
        if self.depth is None:
            raise ValueError("world_points need the depth and camera predictions "
                             "(run_vggt was called with geometry=False)")
        return unproject_depth(self.depth, self.cam_from_world, self.intrinsics)


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration as err:
        raise ValueError("the model has no parameters; cannot tell its device") from err


def _check_images(images: Sequence[np.ndarray]) -> None:
    if len(images) == 0:
        raise ValueError("run_vggt needs at least one image")
    shapes = {np.shape(img) for img in images}
    if len(shapes) > 1:
        raise ValueError(f"all images of one call must have the same size, got shapes "
                         f"{sorted(shapes)}; resize them before inference")


def _in_pixel_box(uv: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Which points lie on the pixels [x0, x1) x [y0, y1) (pixel centres at integers)."""
    x0, y0, x1, y1 = box
    return (np.isfinite(uv).all(1) & (uv[:, 0] >= x0 - 0.5) & (uv[:, 0] <= x1 - 0.5)
            & (uv[:, 1] >= y0 - 0.5) & (uv[:, 1] <= y1 - 0.5))


def _model_queries(query_uv: np.ndarray, mapping: PreprocessMapping) -> np.ndarray:
    """Original frame-0 pixels [N,2] -> model pixels, rejecting points the network never sees."""
    query_uv = np.asarray(query_uv, dtype=np.float64)
    if query_uv.ndim != 2 or query_uv.shape[1] != 2 or len(query_uv) == 0:
        raise ValueError(f"query_uv must be [N,2] pixels (x, y) with N >= 1, got {query_uv.shape}")
    width, height = mapping.original_size
    inside = _in_pixel_box(query_uv, (0, 0, width, height))
    if not inside.all():
        raise ValueError(f"query points {np.flatnonzero(~inside).tolist()} lie outside the "
                         f"{width}x{height} image of frame 0")
    model_uv = mapping.to_model(query_uv)
    seen = _in_pixel_box(model_uv, mapping.valid)
    if not seen.all():
        raise ValueError(f"query points {np.flatnonzero(~seen).tolist()} fall in the part of "
                         f"frame 0 that the crop preprocessing removes; use preprocess_mode pad")
    return model_uv


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_vggt(model: torch.nn.Module, images: Sequence[np.ndarray],
             query_uv: Optional[np.ndarray] = None, *, precision: str = "auto",
             preprocess_mode: str = "crop", image_size: int = 518,
             geometry: bool = True,
             frame_keys: Optional[Sequence[Hashable]] = None,
             device_preprocessing: bool = False,
             inputs: Optional[ModelInputs] = None) -> InferenceResult:
    """Preprocess ``images`` (same-size HxWx3/4 uint8), run ``model`` on its current device and
    convert the outputs to NumPy, with intrinsics and tracks also in original pixels.

    ``query_uv`` ([N,2] original pixels of images[0]) adds point tracks; ``geometry=False``
    skips the camera and depth heads when only tracks are wanted. The model must be in eval
    mode; it is not modified. A ``FastVGGT`` model runs in its own precision (``precision``
    only validates the device) and uses ``frame_keys`` (one unique key per image) for its DINO
    cache and track-token re-use; other models ignore the keys.

    ``device_preprocessing`` resizes on the model's device (``device_preprocessing.py``: one
    upload per frame, torch's antialiased bicubic) instead of with Pillow on the CPU (upstream's
    numerics, the default). Only what the caller uses comes back to the host: the images the
    network saw (uint8) and the cameras and depth with ``geometry``, the tracks with queries.
    ``inputs``: ``images`` already preprocessed with these settings (``result.inputs`` of an
    earlier call on the same images), so they are not preprocessed again.
    """
    if model.training:
        raise ValueError("the model is in training mode; call model.eval() before inference")
    if not geometry and query_uv is None:
        raise ValueError("nothing to compute: geometry=False and no query_uv")
    _check_images(images)
    device = _model_device(model)
    precision = resolve_precision(precision, device)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    if inputs is None:
        inputs = preprocess_for_model(images, preprocess_mode, image_size, device,
                                      device_preprocessing)
    elif len(inputs.mappings) != len(images):
        raise ValueError(f"inputs hold {len(inputs.mappings)} frames, images {len(images)}")
    tensor, seen, mappings = inputs.tensor, inputs.seen, inputs.mappings
    heads = ("camera", "depth") if geometry else ()
    queries = None
    if query_uv is not None:
        queries = torch.from_numpy(_model_queries(query_uv, mappings[0])).float().to(device)
        heads += ("track",)
    _sync(device)
    timings["preprocess"] = time.perf_counter() - start

    start = time.perf_counter()
    fast = isinstance(model, FastVGGT)
    autocast = (torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])
                if precision in AUTOCAST_DTYPES and not fast else contextlib.nullcontext())
    extra = {"frame_keys": frame_keys} if fast else {}
    with torch.inference_mode(), autocast:
        out = model(tensor, query_points=queries, heads=heads, **extra)
    _sync(device)
    timings["inference"] = time.perf_counter() - start

    start = time.perf_counter()
    result = InferenceResult(mappings=mappings, timings=timings, inputs=inputs)
    wanted: dict[str, torch.Tensor] = {}
    if geometry:
        height, width = tensor.shape[-2:]
        extrinsics, intrinsics = pose_encoding_to_extri_intri(out["pose_enc"][0].float(),
                                                              (height, width))
        wanted.update(extrinsics=extrinsics, intrinsics=intrinsics,
                      maps=torch.stack([out["depth"][0, ..., 0], out["depth_conf"][0]]).float())
        if torch.is_tensor(seen):  # the images only when still on the device
            wanted["images"] = seen.permute(0, 2, 3, 1)
    if queries is not None:
        wanted.update(tracks=out["track"][0].float(), visibility=out["vis"][0].float(),
                      confidence=out["conf"][0].float())
    host = _to_host(wanted)
    if geometry:
        result.cam_from_world = to_homogeneous(host["extrinsics"].astype(np.float64))
        result.intrinsics = host["intrinsics"].astype(np.float64)
        result.intrinsics_original = np.stack(
            [m.intrinsics_to_original(k) for m, k in zip(mappings, result.intrinsics)])
        result.depth, result.depth_conf = host["maps"][0], host["maps"][1]
        result.images = host.get("images", seen)
    if queries is not None:
        tracks = host["tracks"].astype(np.float64)  # [S,N,2] model px
        result.tracks_uv = np.stack([m.to_original(t) for m, t in zip(mappings, tracks)])
        result.track_visibility = host["visibility"]
        result.track_confidence = host["confidence"]
    timings["postprocess"] = time.perf_counter() - start
    return result


def _to_host(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The outputs the caller uses, as NumPy arrays. From a CUDA device every tensor is copied
    into its own page-locked buffer without waiting, then the stream is waited for once: one
    synchronisation instead of one per output, and DMA straight into the arrays instead of
    through the driver's staging buffers (about 18 MB per 8-frame window at 518x392). The
    buffers are fresh per call, since the arrays outlive it: a caller that keeps a window's
    arrays (the track history, the chainer's keyframes) keeps its page-locked buffers, and
    torch's pinned-memory cache recycles them once they are dropped."""
    cuda = [t for t in tensors.values() if t.is_cuda]
    if not cuda:
        return {name: t.numpy() for name, t in tensors.items()}
    host = {}
    for name, t in tensors.items():
        buffer = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        buffer.copy_(t, non_blocking=True)
        host[name] = buffer
    torch.cuda.current_stream(cuda[0].device).synchronize()
    return {name: t.numpy() for name, t in host.items()}


def frame_key(frame: Frame) -> tuple:
    """Cache key of a frame: stamp, frame id, shape and a checksum of a pixel subsample, so a
    re-used stamp with a different image never hits the DINO cache."""
    image = np.ascontiguousarray(frame.image[::7, ::7])
    return (frame.stamp_ns, frame.frame_id, frame.image.shape, zlib.crc32(image.tobytes()))


class VGGTPredictor:
    """The ``Predictor`` used by the pipeline: a VGGT model on one device with fixed settings.

    ``fast``: None picks the fast path for precision "auto" on CUDA (a ``VGGT`` model only);
    True forces it (also on CPU, where it is fp32 with the cache), False keeps the reference.
    The fast path converts the model's weights in place (the predictor owns the model).
    ``sparse_global``: the fast path's opt-in block-sparse global attention (approximate).
    ``tracker_precision``: the fast path's tracker arithmetic (``FastOptions.tracker_precision``).
    ``device_preprocessing``: None resizes on the device for the fast path on CUDA and keeps
    upstream's Pillow preprocessing otherwise (``run_vggt``).
    """

    def __init__(self, model: torch.nn.Module, device: Union[str, torch.device] = "auto",
                 precision: str = "auto", preprocess_mode: str = "crop", image_size: int = 518,
                 name: str = "vggt", fast: Optional[bool] = None,
                 fast_options: Optional[FastOptions] = None, compile_model: bool = True,
                 log: Optional[Callable[[str], None]] = None,
                 sparse_global: Optional[SparseGlobalAttention] = None,
                 tracker_precision: str = "fp32",
                 device_preprocessing: Optional[bool] = None) -> None:
        if preprocess_mode not in MODES:
            raise ValueError(f"preprocess_mode must be one of {MODES}, got {preprocess_mode!r}")
        self.device = resolve_device(str(device))
        self.precision = resolve_precision(precision, self.device)
        self.preprocess_mode = preprocess_mode
        self.image_size = image_size
        self.name = name
        is_vggt = isinstance(model, (VGGT, FastVGGT))
        if fast is None:
            fast = precision == "auto" and self.device.type == "cuda" and is_vggt
        if fast and not is_vggt:
            raise ValueError(f"the fast path needs a vggt_ros VGGT model, got {type(model).__name__}")
        model = model.to(self.device).eval()
        if fast and not isinstance(model, FastVGGT):
            dtype = {"fp32": torch.float32, **AUTOCAST_DTYPES}[self.precision]
            no_compile = {} if compile_model else {"compile_blocks": False, "compile_heads": False}
            model = FastVGGT(model, fast_options or FastOptions(
                dtype=dtype, sparse_global=sparse_global, tracker_precision=tracker_precision,
                **no_compile), log=log)
        self.fast = bool(fast)
        self.model = model
        if device_preprocessing is None:
            device_preprocessing = self.fast and self.device.type == "cuda"
        self.device_preprocessing = bool(device_preprocessing)
        # The pipeline may call track() from a service thread while predict() runs in the
        # worker: one model, one device, so calls take turns.
        self._lock = threading.Lock()
        self._last_inputs: Optional[tuple[list[Hashable], ModelInputs]] = None

    def _run(self, frames: Sequence[Frame], query_uv: Optional[np.ndarray],
             geometry: bool) -> InferenceResult:
        if len(frames) == 0:
            raise ValueError("a window needs at least one frame")
        # Keys let the fast path reuse DINO tokens of frames seen in the previous window, and
        # a call over the last call's frames in the same order (the pose solver's track
        # request after its window's predict) reuse their preprocessing.
        keys = [frame_key(f) for f in frames]
        with self._lock:
            last = self._last_inputs
            result = run_vggt(self.model, [f.image for f in frames], query_uv,
                              precision=self.precision, preprocess_mode=self.preprocess_mode,
                              image_size=self.image_size, geometry=geometry,
                              frame_keys=keys if self.fast else None,
                              device_preprocessing=self.device_preprocessing,
                              inputs=last[1] if last is not None and last[0] == keys else None)
            self._last_inputs = (keys, result.inputs)
            return result

    def predict(self, frames: Sequence[Frame]) -> WindowPrediction:
        result = self._run(frames, None, geometry=True)
        return WindowPrediction(
            stamps_ns=[f.stamp_ns for f in frames], cam_from_world=result.cam_from_world,
            intrinsics=result.intrinsics, depth=result.depth, depth_conf=result.depth_conf,
            images=result.images, mappings=result.mappings, timings=result.timings)

    def track(self, frames: Sequence[Frame], query_uv: np.ndarray) -> TrackPrediction:
        result = self._run(frames, query_uv, geometry=False)
        return TrackPrediction(
            stamps_ns=[f.stamp_ns for f in frames], tracks_uv=result.tracks_uv,
            visibility=result.track_visibility, confidence=result.track_confidence,
            timings=result.timings)

    @property
    def compiles(self) -> bool:
        """Whether the network runs compiled graphs (one per input shape: warm up every shape)."""
        return isinstance(self.model, FastVGGT) and self.model.compiles

    def warm_up(self, plan: WarmupPlan, log: Optional[Callable[[str], None]] = None
                ) -> WarmupReport:
        """Run ``plan`` (``vggt_ros.inference.warmup``), compiling each shape in this call.
        From then on a shape the plan did not cover runs eagerly while it compiles in the
        background, instead of stalling a window (``FastVGGT.unseen_shapes``)."""
        report = run_warmup(self, plan, log)
        self._last_inputs = None  # the dummy frames would only hold memory
        if isinstance(self.model, FastVGGT):
            self.model.forget_frames()  # the dummy frames' tokens would only hold memory
            self.model.unseen_shapes = "background"
        return report

    def compile_stats(self) -> dict[str, float]:
        """Compiled shapes, compiles in progress, eager calls of unseen shapes, compile seconds
        (all zero for a network that is not compiled)."""
        if isinstance(self.model, FastVGGT):
            return self.model.compile_stats()
        return {"compiled_shapes": 0, "compiling": 0, "eager_calls": 0, "compile_s": 0.0,
                "nonfinite_fallbacks": 0}

    def close(self) -> None:
        """Free the model: stop background compiles, drop it and return the GPU memory its
        tensors held to the driver (the node's lifecycle cleanup). Unusable afterwards."""
        with self._lock:
            if isinstance(self.model, FastVGGT):
                self.model.close()
            self.model = None
            self._last_inputs = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def describe(self) -> dict[str, str]:
        params = sum(p.numel() for p in self.model.parameters())
        return {"name": self.name, "device": str(self.device), "precision": self.precision,
                "path": "fast" if self.fast else "reference",
                "compiled": "yes" if self.compiles else "no",
                "preprocess_mode": self.preprocess_mode, "image_size": str(self.image_size),
                "preprocess_on": "device" if self.device_preprocessing else "host (Pillow)",
                # the fast path's tracker has its own arithmetic; the reference runs the model's
                "tracker_precision": (self.model.options.tracker_precision if self.fast
                                      else self.precision),
                "parameters": f"{params / 1e6:.1f}M"}
