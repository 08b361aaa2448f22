"""Load a VGGT checkpoint (.pt/.pth or .safetensors) into a ready-to-run model.

Why it is built this way:
* The model is constructed on the ``meta`` device and the file's tensors are *assigned* as the
  parameters, so the 5 GB VGGT-1B is never allocated twice (random init + copy).
* Pickles are read with ``weights_only=True``: a file that needs arbitrary objects unpickled is
  rejected, never executed.
* Key matching is strict, with one exception: keys of a head that the config disables are
  ignored, so the official file can feed e.g. a model without the track head.
* Every failure surfaces as one ``CheckpointError`` that names the file and what is wrong.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor

from .config import VGGTConfig
from .vggt import VGGT

PICKLE_SUFFIXES = (".pt", ".pth")
SAFETENSORS_SUFFIX = ".safetensors"
NESTING_KEYS = ("model", "state_dict")
HEAD_PREFIXES = {"camera": "camera_head.", "depth": "depth_head.", "point": "point_head.",
                 "track": "track_head."}
SHOWN_KEYS = 5  # how many offending keys an error message lists


class CheckpointError(RuntimeError):
    """The checkpoint file is missing, unreadable, or does not fit the model."""


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f", ... ({len(keys)} in total)" if len(keys) > SHOWN_KEYS else "")


def _read_pickle(path: Path) -> dict[str, Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/unsafe files
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise CheckpointError(
                f"{path}: refused to load, the pickle contains objects other than tensors and "
                f"plain containers (loaded with weights_only=True): {detail}") from exc
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): "
                              f"{type(exc).__name__}: {detail}") from exc
    if isinstance(obj, dict) and not any(isinstance(v, Tensor) for v in obj.values()):
        for key in NESTING_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state_dict (dict of tensors), "
                              f"got {type(obj).__name__}")
    return obj


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], Optional[VGGTConfig]]:
    from safetensors import safe_open

    try:
        tensors: dict[str, Tensor] = {}
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            for key in handle.keys():
                tensors[key] = handle.get_tensor(key)
    except Exception as exc:  # SafetensorError, OSError, ...
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): "
                              f"{type(exc).__name__}: {exc}") from exc
    config = None
    if "config" in metadata:
        try:
            config = VGGTConfig.from_json(metadata["config"])
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: invalid model config in the file metadata: {exc}") from exc
    return tensors, config


def _drop_disabled_heads(state: dict[str, Tensor], config: VGGTConfig) -> dict[str, Tensor]:
    disabled = tuple(prefix for head, prefix in HEAD_PREFIXES.items()
                     if not getattr(config, f"enable_{head}"))
    if not disabled:
        return state
    return {k: v for k, v in state.items() if not k.startswith(disabled)}


def _check_state(path: Path, model: VGGT, state: dict[str, Tensor]) -> None:
    """Strict key and shape check with a readable message (load_state_dict's is a wall of text)."""
    non_tensors = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if non_tensors:
        raise CheckpointError(f"{path}: entries that are not tensors: {_first(non_tensors)}")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [f"{k} (file {list(state[k].shape)}, model {list(v.shape)})"
                 for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_first(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_first(unexpected)}")
    if misshaped:
        problems.append(f"{len(misshaped)} keys with the wrong shape: {_first(misshaped)}")
    if problems:
        raise CheckpointError(f"{path}: checkpoint does not match the model config; "
                              + "; ".join(problems))


def load_vggt(path: Union[str, os.PathLike], config: Optional[VGGTConfig] = None,
              device: Union[str, torch.device] = "cpu",
              dtype: Optional[torch.dtype] = None) -> VGGT:
    """Build a VGGT from ``path`` and return it in eval mode on ``device``.

    config: the architecture; when None it is read from a safetensors file's ``config`` metadata
    (JSON), else the VGGT-1B defaults. Keys of heads the config disables are ignored.
    dtype: cast floating weights after loading (None keeps the file's dtype).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        state, file_config = _read_safetensors(path)
    elif suffix in PICKLE_SUFFIXES:
        state, file_config = _read_pickle(path), None
    else:
        raise CheckpointError(f"{path}: unsupported checkpoint extension {suffix!r}; expected "
                              f"{', '.join(PICKLE_SUFFIXES + (SAFETENSORS_SUFFIX,))}")
    config = config or file_config or VGGTConfig()
    with torch.device("meta"):
        model = VGGT(config)
    state = _drop_disabled_heads(state, config)
    _check_state(path, model, state)
    model.load_state_dict(state, strict=True, assign=True)
    del state  # the model now owns the tensors; dropping the dict lets a cast free the originals
    model.aggregator.reset_constant_buffers(torch.device("cpu"))
    left_on_meta = [name for name, t in [*model.named_parameters(), *model.named_buffers()]
                    if t.is_meta]
    if left_on_meta:
        raise RuntimeError(f"internal error: tensors not materialised after loading: "
                           f"{_first(left_on_meta)}")
    return model.to(device=device, dtype=dtype).eval()
