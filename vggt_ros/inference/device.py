"""Where and in which precision the network runs, resolved from the user's settings.

Kept apart from the predictor so the builder, the predictor and the benchmark resolve "auto"
the same way, and so a bad ``device`` fails with the same message everywhere.

Precision follows the upstream recommendation (ARCHITECTURE.md §9): on CUDA the trunk runs
under bf16 (fp16 before Ampere) autocast while the model keeps its camera/depth heads in fp32;
on CPU everything is fp32, because CPU autocast would also lower LayerNorm and attention.
"""
from __future__ import annotations

import torch

from vggt_ros.settings import BY_NAME

__all__ = ["PRECISIONS", "AUTOCAST_DTYPES", "ModelUnavailableError", "resolve_device",
           "resolve_precision"]

PRECISIONS = BY_NAME["precision"].choices
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto" -> bf16 on Ampere+ CUDA, fp16 on older CUDA, fp32 on CPU; rejects CPU bf16/fp16."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if device.type != "cuda":
        if precision in AUTOCAST_DTYPES:
            raise ValueError(f"precision {precision} needs a CUDA device (got {device}); "
                             f"use fp32 or auto on CPU")
        return "fp32"
    if precision == "auto":
        return "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp16"
    return precision
