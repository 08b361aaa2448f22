"""Strict JSON files (summary.json, vggt_eval's metrics): NaN/inf become null, NumPy scalars
become plain numbers, so any JSON parser, not only Python's, reads them."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from vggt_ros.io.atomic import PathLike, atomic_output


def to_jsonable(value: Any) -> Any:
    """Recursively convert NumPy values, dataclasses (e.g. ChainingStatus in pipeline stats)
    and non-finite floats into strict-JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: PathLike, data: dict[str, Any]) -> Path:
    path = Path(path)
    with atomic_output(path) as handle:
        json.dump(to_jsonable(data), handle, indent=2, sort_keys=False, allow_nan=False)
        handle.write("\n")
    return path
