"""Build the predictor from user settings; shared by the live node and the offline mapper.

One function so both entry points resolve ``checkpoint``/``device`` identically and fail with
the same clear message. No rclpy here, and never a download: an empty ``checkpoint`` means
the small demo model embedded in the package (when it ships one), otherwise the user must
point ``checkpoint`` at the official weights.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Callable, Optional

import torch

from vggt_ros.pipeline.types import Predictor

__all__ = ["ModelUnavailableError", "resolve_device", "build_predictor"]

_EMBEDDED_MODULE = "vggt_ros.model.embedded"
_LOG = logging.getLogger(__name__)


class ModelUnavailableError(RuntimeError):
    """No model can be built from the given settings (no checkpoint, bad device, ...)."""


def resolve_device(device: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; an explicit CUDA device must exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ModelUnavailableError(f"device '{device}' is not a valid torch device "
                                    f"(use auto, cpu, cuda or cuda:N)") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelUnavailableError(f"device '{device}' requested but CUDA is not available "
                                        f"(torch {torch.__version__}); use device:=cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelUnavailableError(f"device '{device}' requested but only "
                                        f"{torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type != "cpu":
        raise ModelUnavailableError(f"device '{device}' is not supported (use auto, cpu, cuda)")
    return dev


def _load_model(checkpoint: str, dev: torch.device) -> tuple[torch.nn.Module, str]:
    """-> (model, name for logs and diagnostics)."""
    from vggt_ros.model import load_vggt

    if checkpoint:
        return load_vggt(checkpoint, device=dev), Path(checkpoint).name
    if importlib.util.find_spec(_EMBEDDED_MODULE) is None:
        raise ModelUnavailableError(
            "no checkpoint given and this install has no embedded demo model: set the "
            "'checkpoint' parameter to the official VGGT weights (model.pt or "
            "model.safetensors, e.g. from the facebook/VGGT-1B release); nothing is downloaded")
    from vggt_ros.model.embedded import load_embedded_model

    return load_embedded_model().to(dev).eval(), "embedded demo model"


def build_predictor(checkpoint: str, device: str, precision: str, preprocess_mode: str,
                    image_size: int, compile_model: bool = True,
                    log: Optional[Callable[[str], None]] = None) -> Predictor:
    """Load the model named by ``checkpoint`` (empty: the embedded demo) and wrap it for the
    pipeline. Raises ModelUnavailableError / CheckpointError with the reason."""
    from vggt_ros.inference import VGGTPredictor

    dev = resolve_device(device)
    model, name = _load_model(checkpoint, dev)
    image_size = image_size or model.config.img_size  # 0: the size the model was trained at
    predictor = VGGTPredictor(model, device=dev, precision=precision,
                              preprocess_mode=preprocess_mode, image_size=image_size, name=name,
                              compile_model=compile_model)
    params = sum(p.numel() for p in model.parameters())
    (log or _LOG.info)(f"loaded model '{name}' ({checkpoint or 'no checkpoint given'}): "
                       f"{params / 1e6:.1f} M parameters on {dev}, precision "
                       f"{predictor.precision}, preprocess {preprocess_mode} {image_size}px")
    return predictor
