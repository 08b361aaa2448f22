"""TUM trajectory files ('stamp tx ty tz qx qy qz qw' per line), the format the evaluation
tools of the TUM RGB-D benchmark and most SLAM papers read.

Stamps are integer nanoseconds in memory and exact decimal seconds on disk (no float rounding),
so a trajectory written and read back associates with the same ground-truth stamps.
"""
from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from vggt_ros.io.atomic import atomic_output
from vggt_ros.io.stamps import NS_PER_S, format_seconds


def format_stamp(stamp_ns: int) -> str:
    """Integer nanoseconds -> exact 'seconds.nanoseconds' (9 decimals, no float rounding)."""
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise ValueError(f"negative stamp {stamp_ns} ns")
    return format_seconds(stamp_ns)


def write_tum(path: str | os.PathLike, stamps_ns: np.ndarray, world_from_cam: np.ndarray) -> None:
    """TUM trajectory 'stamp tx ty tz qx qy qz qw' of world_from_cam, written atomically."""
    stamps = np.asarray(stamps_ns)
    poses = np.asarray(world_from_cam, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] not in ((4, 4), (3, 4)) or len(poses) != len(stamps):
        raise ValueError(f"need N stamps and N poses [N,4,4], got {stamps.shape} stamps and "
                         f"poses {poses.shape}")
    quats = Rotation.from_matrix(poses[:, :3, :3]).as_quat() if len(poses) else np.zeros((0, 4))
    lines = ["# timestamp tx ty tz qx qy qz qw"]
    for stamp, t, q in zip(stamps, poses[:, :3, 3], quats):
        values = " ".join(f"{x:.9f}" for x in (*t, *q))
        lines.append(f"{format_stamp(stamp)} {values}")
    with atomic_output(path) as handle:
        handle.write("\n".join(lines) + "\n")


def read_tum(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(stamps_ns [N] int64, world_from_cam [N,4,4]) from a TUM file; '#' lines skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TUM file not found: {path}")
    stamps, rows = [], []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cols = line.split()
        if len(cols) != 8:
            raise ValueError(f"{path}:{lineno}: expected 8 columns, got {len(cols)}")
        try:
            stamps.append(int((Decimal(cols[0]) * NS_PER_S).to_integral_value()))
            rows.append([float(c) for c in cols[1:]])
        except (InvalidOperation, ValueError) as exc:
            raise ValueError(f"{path}:{lineno}: not a number: {line!r}") from exc
    values = np.array(rows, dtype=np.float64).reshape(-1, 7)
    norms = np.linalg.norm(values[:, 3:], axis=1)
    if np.any(~np.isfinite(values)) or np.any(norms < 1e-9):
        bad = int(np.argmax(~np.isfinite(values).all(axis=1) | (norms < 1e-9)))
        raise ValueError(f"{path}: pose {bad} has a non-finite value or a zero quaternion")
    poses = np.tile(np.eye(4), (len(values), 1, 1))
    if len(values):
        poses[:, :3, :3] = Rotation.from_quat(values[:, 3:] / norms[:, None]).as_matrix()
    poses[:, :3, 3] = values[:, :3]
    return np.array(stamps, dtype=np.int64), poses
