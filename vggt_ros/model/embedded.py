"""The small demo model shipped inside the package (``vggt_ros/data/demo_model.safetensors``).

The official VGGT-1B weights (5 GB) cannot be bundled or downloaded, so the package carries a
VGGT-structured model of under 8 M parameters, trained by ``vggt_train`` on the procedural
scenes of ``vggt_ros.synth`` only. It lets ``make demo`` and the node without a checkpoint
produce real geometry on synthetic-looking input; it is NOT a substitute for the official
model on real images. Its config, training recipe and held-out metrics live in the file's
metadata (see docs/MODEL.md).
"""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Union

import torch

from vggt_ros.model.config import VGGTConfig
from vggt_ros.model.loading import CheckpointError, load_vggt
from vggt_ros.model.vggt import VGGT

__all__ = ["EMBEDDED_MODEL_PATH", "DESCRIPTION", "load_embedded_model", "embedded_config",
           "embedded_image_size"]

EMBEDDED_MODEL_PATH = Path(__file__).resolve().parent.parent / "data" / "demo_model.safetensors"
DESCRIPTION = (
    "embedded DEMO model: a small VGGT-structured network (<8 M parameters) trained only on "
    "synthetic vggt_ros.synth scenes; expect poor results on real images. For real use pass "
    "the official VGGT-1B weights (model.pt or model.safetensors from the facebook/VGGT-1B "
    "release, downloaded yourself) through the 'checkpoint' parameter / --checkpoint")
_LOG = logging.getLogger(__name__)


def _require_file() -> Path:
    if not EMBEDDED_MODEL_PATH.is_file():
        raise CheckpointError(f"{EMBEDDED_MODEL_PATH}: the embedded demo model is missing from "
                              "this install; pass the official weights as the checkpoint")
    return EMBEDDED_MODEL_PATH


@lru_cache(maxsize=1)
def embedded_config() -> VGGTConfig:
    """The demo model's architecture, read from the file's metadata (no weights loaded)."""
    from safetensors import safe_open

    path = _require_file()
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        text = (handle.metadata() or {}).get("config")
    if text is None:
        raise CheckpointError(f"{path}: no 'config' metadata; the file is not a vggt_ros export")
    return VGGTConfig.from_json(text)


def embedded_image_size() -> int:
    """Input width the demo model was trained at (pass it as the preprocessing image size)."""
    return embedded_config().img_size


def load_embedded_model(device: Union[str, torch.device] = "cpu") -> VGGT:
    """The demo model in fp32 and eval mode on ``device``; logs what it is."""
    model = load_vggt(_require_file(), device=device, dtype=torch.float32)
    _LOG.info("%s (%s)", DESCRIPTION, EMBEDDED_MODEL_PATH)
    return model
