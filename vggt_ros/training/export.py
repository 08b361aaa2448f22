"""Write a trained model as a self-describing safetensors file (what ``load_vggt`` reads).

Metadata keys: ``config`` (VGGTConfig JSON, so the loader needs no side file), ``recipe`` (how
it was trained) and ``metrics`` (held-out evaluation), all JSON strings as safetensors requires.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vggt_ros.model import VGGT

EXPORT_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def export_model(model: VGGT, path: Path, recipe: dict[str, Any],
                 metrics: Optional[dict[str, Any]] = None, dtype: str = "float16") -> Path:
    """Save ``model``'s weights cast to ``dtype`` with config/recipe/metrics metadata."""
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(EXPORT_DTYPES)}, got {dtype!r}")
    cast = EXPORT_DTYPES[dtype]
    tensors = {k: (v.detach().to("cpu", cast) if v.is_floating_point() else v.detach().cpu())
               .contiguous() for k, v in model.state_dict().items()}
    metadata = {"config": model.config.to_json(), "recipe": json.dumps(recipe, sort_keys=True)}
    if metrics is not None:
        metadata["metrics"] = json.dumps(metrics, sort_keys=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    path.chmod(0o644)  # save_file creates 0600; a shipped package file must be world-readable
    return path


def read_metadata(path: Path) -> dict[str, Any]:
    """The JSON metadata of an exported file, parsed (keys without JSON stay strings)."""
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        raw = handle.metadata() or {}
    parsed: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


def update_metadata(path: Path, updates: dict[str, Any]) -> None:
    """Rewrite ``path`` with some metadata entries replaced (values stored as JSON), keeping
    the tensors and the other entries (e.g. to add held-out ``metrics`` after evaluation)."""
    path = Path(path)
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        metadata = dict(handle.metadata() or {})
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    metadata.update({k: json.dumps(v, sort_keys=True) for k, v in updates.items()})
    save_file(tensors, str(path), metadata=metadata)
    path.chmod(0o644)
