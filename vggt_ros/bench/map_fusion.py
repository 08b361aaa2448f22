"""How long one window's map fusion takes, while the map fills and once it is full.

    python -m vggt_ros.bench.map_fusion [--points 200000] [--max-map-points 2000000]

Each window inserts ``--points`` points (a Gaussian cloud moving along x, about one new voxel
per point at the default 2 cm voxels: the costly case) into one ``VoxelMap``, as
``Pipeline`` does per window (``max_window_points``, ``max_map_points``). Prints the median
milliseconds of an insertion while the map fills and after it is full (then every insertion
also evicts). The map fusion runs beside the next window (docs/PERFORMANCE.md), so this is the
time it must stay under for the map to keep up with the windows.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Optional, Sequence

import numpy as np

from vggt_ros.pipeline.map_fusion import VoxelMap


def insertion_times(points: int, max_map_points: int, windows: int, voxel_size: float,
                    seed: int = 0) -> tuple[list[float], list[float]]:
    """Seconds of each insertion (filling, full) over ``windows`` windows."""
    rng = np.random.default_rng(seed)
    vmap = VoxelMap(voxel_size, max_map_points)
    filling, full = [], []
    for window in range(windows):
        cloud = rng.normal(size=(points, 3)) * [1.5, 1.0, 1.0] + [0.3 * window, 0.0, 3.0]
        colors = rng.integers(0, 256, size=(points, 3), dtype=np.uint8)
        was_full = len(vmap) == max_map_points
        start = time.perf_counter()
        vmap.insert(cloud, colors)
        (full if was_full else filling).append(time.perf_counter() - start)
    return filling, full


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggt_ros.bench.map_fusion",
                                description=__doc__.split("\n")[0])
    p.add_argument("--points", type=int, default=200_000, help="points per window")
    p.add_argument("--max-map-points", type=int, default=2_000_000)
    p.add_argument("--windows", type=int, default=20)
    p.add_argument("--voxel-size", type=float, default=0.02)
    args = p.parse_args(argv)
    filling, full = insertion_times(args.points, args.max_map_points, args.windows,
                                    args.voxel_size)
    for name, times in (("while the map fills", filling), ("once it is full", full)):
        median = f"{statistics.median(times) * 1e3:.1f} ms" if times else "n/a (never full)"
        print(f"insertion of {args.points} points {name}: median {median} over "
              f"{len(times)} windows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
