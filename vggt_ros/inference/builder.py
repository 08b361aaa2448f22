"""Build the predictor from user settings; shared by the live node and the offline mapper.

One function so both entry points resolve ``checkpoint``/``device`` identically and fail with
the same clear message. No rclpy here, and never a download: an empty ``checkpoint`` means
the small demo model embedded in the package (``vggt_ros.model.embedded``, which reports a
missing weights file as a ``CheckpointError``), otherwise the user points ``checkpoint`` at
the official weights.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional

import torch

from vggt_ros.inference.compile_cache import use_compile_cache
from vggt_ros.inference.device import resolve_device
from vggt_ros.inference.predictor import VGGTPredictor
from vggt_ros.model import load_vggt
from vggt_ros.model.embedded import load_embedded_model
from vggt_ros.model.sparse_attention import SparseGlobalAttention

__all__ = ["build_predictor"]

_LOG = logging.getLogger(__name__)


def _load_model(checkpoint: str, dev: torch.device) -> tuple[torch.nn.Module, str]:
    """-> (model, name for logs and diagnostics)."""
    if checkpoint:
        return load_vggt(checkpoint, device=dev), Path(checkpoint).name
    return load_embedded_model().to(dev).eval(), "embedded demo model"


def build_predictor(*, checkpoint: str, device: str, precision: str, preprocess_mode: str,
                    image_size: int, compile_model: bool = True, compile_cache_dir: str = "",
                    sparse_global_attention: float = 0.0, tracker_precision: str = "fp32",
                    log: Optional[Callable[[str], None]] = None,
                    warn: Optional[Callable[[str], None]] = None) -> VGGTPredictor:
    """Load the model named by ``checkpoint`` (empty: the embedded demo) and wrap it for the
    pipeline. The arguments are the ``predictor`` settings of ``vggt_ros.settings``, by name
    (``settings.of_group(values, "predictor")``); a compiled network keeps its graphs in the
    persistent cache under ``compile_cache_dir``. ``log`` gets the loading report, ``warn``
    the compiler's (an unseen input shape, a failed compile). Raises ModelUnavailableError /
    CheckpointError with the reason."""
    log = log or _LOG.info
    dev = resolve_device(device)
    model, name = _load_model(checkpoint, dev)
    image_size = image_size or model.config.img_size  # 0: the size the model was trained at
    sparse = (SparseGlobalAttention(max_ratio=sparse_global_attention)
              if sparse_global_attention > 0 else None)
    predictor = VGGTPredictor(model, device=dev, precision=precision,
                              preprocess_mode=preprocess_mode, image_size=image_size, name=name,
                              compile_model=compile_model, sparse_global=sparse,
                              tracker_precision=tracker_precision, log=warn or _LOG.warning)
    if sparse is not None and not predictor.fast:
        (warn or _LOG.warning)("sparse_global_attention applies to the fast path (CUDA, "
                               "precision auto) only: attention stays exact here")
    if tracker_precision != "fp32" and not predictor.fast:
        (warn or _LOG.warning)(f"tracker_precision {tracker_precision} applies to the fast path "
                               "(CUDA, precision auto) only: the tracker runs in the model's "
                               "precision here")
    params = sum(p.numel() for p in model.parameters())
    log(f"loaded model '{name}' ({checkpoint or 'no checkpoint given'}): "
        f"{params / 1e6:.1f} M parameters on {dev}, precision "
        f"{predictor.precision}, preprocess {preprocess_mode} {image_size}px")
    if predictor.compiles:
        log(f"torch.compile cache: {use_compile_cache(compile_cache_dir)}")
    return predictor
