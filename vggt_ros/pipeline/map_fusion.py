"""A bounded, coloured voxel map of the odom frame, built from confident window points.

Each occupied voxel keeps the running mean position and colour of the points that fell into it,
so overlapping windows refine rather than duplicate the cloud. Voxels are hashed into one int64
key (21 bits per axis, i.e. +-2^20 voxels around the origin). An insertion is one ``np.unique``
over the new points, per-voxel sums by ``np.bincount`` and a ``searchsorted`` lookup: no Python
loop per point.

Layout, for speed once the map is large: a voxel's data (sums x, y, z, r, g, b, count and the
insertion that last updated it) stays in one row of preallocated arrays for its whole life,
and only a sorted index (key, row) is kept in key order. A new voxel takes a row freed by an
eviction or the next unused one, so inserting moves 16 bytes per existing voxel (the index),
not the 72 of every voxel's data as when the data itself was kept sorted (docs/PERFORMANCE.md).

Memory is bounded by ``max_points`` voxels. When an insertion goes past it, the voxels that were
updated longest ago are dropped (a rolling map around the recent trajectory), because a live
robot cares most about where it is now and old areas are re-added when they are seen again.
"""
from __future__ import annotations

import numpy as np

PERCENTILE_SAMPLES = 100_000
_BITS = 21
_OFFSET = 1 << (_BITS - 1)
_MASK = (1 << _BITS) - 1


def confidence_mask(conf: np.ndarray, threshold: float = 0.0, percentile: float = 0.0,
                    valid: np.ndarray | None = None) -> np.ndarray:
    """Pixels to keep: ``valid`` and conf >= threshold and conf >= the ``percentile``-th
    percentile of the confidences passing those first tests (drops the least confident
    ``percentile`` % of what is left).

    Both are used because VGGT's absolute confidence varies between scenes (the percentile
    adapts) while a hard floor stops a uniformly bad window from contributing its "best" points.
    """
    conf = np.asarray(conf)
    if not 0.0 <= percentile < 100.0:
        raise ValueError(f"percentile must be in [0, 100), got {percentile}")
    keep = np.isfinite(conf)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != conf.shape:
            raise ValueError(f"valid mask shape {valid.shape} != confidence shape {conf.shape}")
        keep &= valid
    keep &= conf >= threshold
    count = int(keep.sum())
    if percentile > 0.0 and count:
        # Beyond PERCENTILE_SAMPLES candidates the percentile comes from an even subsample of
        # them (a window of 518x392 frames has millions): its standard error is then about
        # 0.15 percentile points, and the full sort took tens of milliseconds per window.
        step = max(1, count // PERCENTILE_SAMPLES)
        sample = conf.reshape(-1)[::step][keep.reshape(-1)[::step]]
        if not sample.size:  # the candidates all fall between the subsample's pixels
            sample = conf[keep]
        keep &= conf >= np.percentile(sample, percentile)
    return keep


class VoxelMap:
    """Voxel-hashed coloured point map with bounded size (see module docstring)."""

    def __init__(self, voxel_size: float, max_points: int) -> None:
        if not (np.isfinite(voxel_size) and voxel_size > 0):
            raise ValueError(f"voxel_size must be a positive number, got {voxel_size}")
        if max_points < 1:
            raise ValueError(f"max_points must be >= 1, got {max_points}")
        self.voxel_size = float(voxel_size)
        self.max_points = int(max_points)
        self.dropped_out_of_range = 0  # points beyond +-2^20 voxels (runaway scale), not stored
        self.clear()

    def clear(self) -> None:
        self._keys = np.zeros(0, dtype=np.int64)  # the index, sorted by key
        self._rows = np.zeros(0, dtype=np.int64)  # the data row of each indexed key
        self._sums = np.zeros((0, 7), dtype=np.float64)  # x, y, z, r, g, b, count per row
        self._updated = np.zeros(0, dtype=np.int64)  # insertion counter of the row's last update
        self._used = 0  # rows [0, _used) were ever given out
        self._free = np.zeros(0, dtype=np.int64)  # rows given back by evictions
        self._insertions = 0

    def __len__(self) -> int:
        return len(self._keys)

    def insert(self, points: np.ndarray, colors: np.ndarray) -> None:
        """Add points [N,3] (map units, finite) with colours [N,3] uint8."""
        points = np.asarray(points, dtype=np.float64)
        colors = np.asarray(colors)
        if points.ndim != 2 or points.shape[1] != 3 or colors.shape != points.shape:
            raise ValueError(f"points and colors must both be [N,3], got {points.shape} and "
                             f"{colors.shape}")
        if not np.isfinite(points).all():
            raise ValueError("points contain NaN or inf: filter invalid depth before inserting")
        self._insertions += 1
        cells = np.floor(points / self.voxel_size).astype(np.int64) + _OFFSET
        in_range = ((cells >= 0) & (cells <= _MASK)).all(axis=1)
        self.dropped_out_of_range += int((~in_range).sum())
        cells, points, colors = cells[in_range], points[in_range], colors[in_range]
        if len(points) == 0:
            return
        keys = (cells[:, 0] << (2 * _BITS)) | (cells[:, 1] << _BITS) | cells[:, 2]
        new_keys, inverse = np.unique(keys, return_inverse=True)
        inverse = inverse.reshape(-1)
        sums = np.empty((len(new_keys), 7))
        for column, values in enumerate((*points.T, *colors.T)):
            sums[:, column] = np.bincount(inverse, weights=values, minlength=len(new_keys))
        sums[:, 6] = np.bincount(inverse, minlength=len(new_keys))

        pos = np.searchsorted(self._keys, new_keys)
        found = pos < len(self._keys)
        found[found] = self._keys[pos[found]] == new_keys[found]
        hit = self._rows[pos[found]]
        self._sums[hit] += sums[found]
        self._updated[hit] = self._insertions
        miss = ~found
        rows = self._take_rows(int(miss.sum()))
        self._sums[rows] = sums[miss]
        self._updated[rows] = self._insertions
        self._keys = np.insert(self._keys, pos[miss], new_keys[miss])
        self._rows = np.insert(self._rows, pos[miss], rows)
        self._enforce_bound()

    def _take_rows(self, count: int) -> np.ndarray:
        """``count`` data rows for new voxels: freed ones first, then unused ones (the arrays
        grow by half their size at a time up to ``max_points``, so growing costs O(1) per
        voxel; past it, only to what an insertion needs, which evictions then give back)."""
        reused, self._free = self._free[:count], self._free[count:]
        fresh = count - len(reused)
        if self._used + fresh > len(self._sums):
            capacity = max(self._used + fresh,
                           min(max(len(self._sums) * 3 // 2, 1024), self.max_points))
            self._sums = np.concatenate([self._sums, np.zeros((capacity - len(self._sums), 7))])
            self._updated = np.concatenate(
                [self._updated, np.zeros(capacity - len(self._updated), dtype=np.int64)])
        rows = np.concatenate([reused, np.arange(self._used, self._used + fresh)])
        self._used += fresh
        return rows

    def _enforce_bound(self) -> None:
        excess = len(self._keys) - self.max_points
        if excess <= 0:
            return
        # The ``excess`` least recently updated voxels, the lower keys first among equally old
        # ones, found by counting: ``_updated`` holds small insertion counters, so no sort of
        # the whole map is needed.
        updated = self._updated[self._rows]  # in key order
        per_update = np.bincount(updated)
        cutoff = int(np.searchsorted(np.cumsum(per_update), excess))  # last update dropped
        older = int(per_update[:cutoff].sum())
        keep = updated > cutoff
        at_cutoff = np.flatnonzero(updated == cutoff)
        keep[at_cutoff[excess - older:]] = True
        self._free = np.concatenate([self._free, self._rows[~keep]])
        self._keys = self._keys[keep]
        self._rows = self._rows[keep]

    def points(self) -> np.ndarray:
        """[M,3] float32 mean position of each voxel's points, in key order."""
        sums = self._sums[self._rows]
        return (sums[:, :3] / sums[:, 6:]).astype(np.float32)

    def colors(self) -> np.ndarray:
        """[M,3] uint8 mean colour of each voxel's points, in key order."""
        sums = self._sums[self._rows]
        return np.clip(np.rint(sums[:, 3:6] / sums[:, 6:]), 0, 255).astype(np.uint8)
